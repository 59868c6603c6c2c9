"""Replicate's ``cog.yaml`` (https://github.com/replicate/cog/blob/main/docs/yaml.md): the
``build`` section's ``python_version``, ``python_packages``, ``python_requirements``,
``gpu``/``cuda`` and ``system_packages``."""

from __future__ import annotations

from pathlib import Path

from envlock.errors import SpecError
from envlock.importers import Imported
from envlock.importers.text import read_yaml, truthy


def load_cog(path: Path) -> Imported:
    """Read a cog.yaml.

    Raises:
        SpecError: invalid YAML, no ``build`` section, wrong types, a bad requirement.
    """
    from envlock.importers.requirements import read_into, read_lines

    data = read_yaml(path)
    build = data.get("build") if isinstance(data, dict) else None
    if not isinstance(build, dict):
        raise SpecError(f"{path}: no 'build' section (cog.yaml)")
    found = Imported(kind="cog", source=path)
    python = build.get("python_version")
    if python is not None:
        parts = str(python).split(".")
        found.python = ".".join(parts[:2])
    packages = build.get("python_packages") or []
    if not isinstance(packages, list):
        raise SpecError(f"{path}: build.python_packages must be a list")
    read_lines(found, "\n".join(str(p) for p in packages), path, f"{path} python_packages", set())
    requirements = build.get("python_requirements")
    if isinstance(requirements, str):
        read_into(found, path.parent / requirements, set())
    system = build.get("system_packages") or []
    if isinstance(system, list):
        found.system = [str(s) for s in system]
    if truthy(build.get("gpu")):
        cuda = build.get("cuda")
        found.cuda_hint = str(cuda) if cuda is not None else "gpu"
    if build.get("run"):
        found.warn("build.run commands (put them in your own base image, or in [image] system packages)")
    for key in ("predict", "train", "image", "concurrency"):
        if isinstance(data, dict) and key in data:
            found.warn(f"'{key}' (cog's serving settings are not part of an environment)")
    return found
