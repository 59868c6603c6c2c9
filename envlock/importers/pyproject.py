"""pyproject.toml: PEP 621 ``[project] dependencies``, chosen ``optional-dependencies``
groups and ``requires-python`` (https://packaging.python.org/en/latest/specifications/pyproject-toml/).
"""

from __future__ import annotations

from pathlib import Path

from envlock.errors import SpecError
from envlock.importers import Imported
from envlock.importers.text import python_from_specifier, read_toml


def load_pyproject(path: Path, extras: tuple[str, ...]) -> Imported:
    """Read the project's dependencies (and ``extras`` groups; ``all`` means every group).

    Raises:
        SpecError: invalid TOML, no ``[project]`` table, wrong types, an unknown group.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    data = read_toml(path)
    project = data.get("project")
    if not isinstance(project, dict):
        raise SpecError(f"{path}: no [project] table (PEP 621)", "envlock imports PEP 621 metadata only")
    found = Imported(kind="pyproject", source=path)
    name = project.get("name")
    found.name = name if isinstance(name, str) else None
    deps = project.get("dependencies", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise SpecError(f"{path}: [project] dependencies must be a list of strings")
    groups = project.get("optional-dependencies", {})
    if not isinstance(groups, dict):
        raise SpecError(f"{path}: [project.optional-dependencies] must be a table")
    chosen = tuple(groups) if "all" in extras and "all" not in groups else extras
    for group in chosen:
        if group not in groups:
            known = ", ".join(sorted(groups)) or "none"
            raise SpecError(f"{path}: no optional-dependencies group {group!r}", f"groups: {known}")
        values = groups[group]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise SpecError(f"{path}: optional-dependencies.{group} must be a list of strings")
        deps = [*deps, *values]
    unused = sorted(set(groups) - set(chosen))
    if unused:
        found.warn(f"optional-dependencies groups not chosen: {', '.join(unused)} (use --extra GROUP)")
    for dep in deps:
        try:
            req = Requirement(dep)
        except InvalidRequirement as exc:
            raise SpecError(f"{path}: invalid requirement {dep!r}: {exc}") from None
        if isinstance(name, str) and req.name.lower() == name.lower():
            continue  # self-references such as "proj[extra]" pull in the groups already chosen
        if str(req) not in found.packages:
            found.packages.append(str(req))
    requires = project.get("requires-python")
    if isinstance(requires, str):
        found.python = python_from_specifier(requires)
        if found.python is None:
            found.warn(f"requires-python {requires!r} allows no CPython 3.9-3.13")
    if isinstance(data.get("build-system"), dict):
        found.warn("[build-system] (the project itself is not installed; install it in the container)")
    uv = data.get("tool", {}).get("uv") if isinstance(data.get("tool"), dict) else None
    if isinstance(uv, dict) and uv.get("sources"):
        found.warn("[tool.uv.sources] (name the sources in [pip] packages as name @ URL)")
    return found
