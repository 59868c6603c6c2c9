"""Lock files of other tools: PEP 751 ``pylock.toml`` and uv's ``uv.lock``.

Both already pin every package; the import pins them with ``==`` (keeping PEP 751 markers and
the hashes of the files listed) so that locking the imported spec gives the same versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envlock.errors import SpecError
from envlock.importers import Imported
from envlock.importers.text import canonical_name, is_pypi, python_from_specifier, read_toml
from envlock.urls import strip_userinfo


def _index_of(found: Imported, url: Any) -> None:
    if isinstance(url, str) and not is_pypi(url) and url.rstrip("/") not in found.indexes:
        found.indexes.append(url.rstrip("/"))


_PYPI_FILES = "https://files.pythonhosted.org/"


def _warn_without_index(found: Imported, package: dict[str, Any]) -> None:
    """A PEP 751 package with no ``index`` whose files are not on PyPI: the spec cannot know
    where to look (uv writes no ``index`` for ``--index-url``), so say so, naming the host."""
    if "index" in package:
        return
    urls = [f.get("url") for f in package.get("wheels") or [] if isinstance(f, dict)]
    hosts = {
        strip_userinfo(u).split("/")[2]  # the host only: user info is a credential
        for u in urls
        if isinstance(u, str) and "://" in u and not u.startswith(_PYPI_FILES)
    }
    for host in sorted(hosts):
        found.warn(f"files from {host} without an index: set [pip] index-url to that host's index")


def _files(package: dict[str, Any]) -> list[dict[str, Any]]:
    """A locked package's file tables: its wheels, then its sdist (both formats use the keys)."""
    files = [*(package.get("wheels") or []), *([package["sdist"]] if "sdist" in package else [])]
    return [f for f in files if isinstance(f, dict)]


def load_pylock(path: Path) -> Imported:
    """Read a PEP 751 lock: ``[[packages]]`` with ``name``, ``version``, optional ``marker``,
    ``index`` and ``wheels``/``sdist`` hashes (https://peps.python.org/pep-0751/).

    Raises:
        SpecError: invalid TOML or a package without name/version.
    """
    data = read_toml(path)
    packages = data.get("packages")
    if not isinstance(packages, list):
        raise SpecError(f"{path}: not a PEP 751 lock (no [[packages]])")
    found = Imported(kind="pylock", source=path, pinned=True)
    requires = data.get("requires-python")
    if isinstance(requires, str):
        found.python = python_from_specifier(requires)
    for index, package in enumerate(packages):
        if not isinstance(package, dict):
            raise SpecError(f"{path}: packages[{index}] is not a table")
        name, version = package.get("name"), package.get("version")
        if not isinstance(name, str):
            raise SpecError(f"{path}: packages[{index}] has no name")
        if not isinstance(version, str):
            source = next((k for k in ("vcs", "directory", "archive") if k in package), None)
            found.warn(f"{name}: a {source or 'unversioned'} package (add it as name @ URL)")
            continue
        marker = package.get("marker")
        requirement = f"{name}=={version}" + (f"; {marker}" if isinstance(marker, str) else "")
        found.packages.append(requirement)
        _index_of(found, package.get("index"))
        _warn_without_index(found, package)
        for file in _files(package):
            digest = file.get("hashes", {}).get("sha256")
            if isinstance(digest, str):
                found.add_hash(name, "sha256:" + digest)
    return found


def load_uv_lock(path: Path) -> Imported:
    """Read uv's ``uv.lock``: every ``[[package]]`` from a registry, pinned, with markers
    taken from the dependency edges that reach it (a package reached only through marked
    edges keeps those markers, joined with ``or``).  The project itself (``virtual`` or
    ``editable`` source) is not a dependency and is left out.

    Raises:
        SpecError: invalid TOML or not uv's shape.
    """
    data = read_toml(path)
    packages = data.get("package")
    if not isinstance(packages, list):
        raise SpecError(f"{path}: not a uv lock (no [[package]])")
    found = Imported(kind="uv-lock", source=path, pinned=True)
    requires = data.get("requires-python")
    if isinstance(requires, str):
        found.python = python_from_specifier(requires)
    markers: dict[str, list[str | None]] = {}
    for package in packages:
        if not isinstance(package, dict):
            continue
        for dep in package.get("dependencies") or []:
            if isinstance(dep, dict) and isinstance(dep.get("name"), str):
                marker = dep.get("marker")
                markers.setdefault(canonical_name(dep["name"]), []).append(
                    marker if isinstance(marker, str) else None
                )
    for index, package in enumerate(packages):
        if not isinstance(package, dict):
            raise SpecError(f"{path}: package[{index}] is not a table")
        name, version = package.get("name"), package.get("version")
        if not isinstance(name, str):
            raise SpecError(f"{path}: package[{index}] has no name")
        raw_source = package.get("source")
        source: dict[str, Any] = raw_source if isinstance(raw_source, dict) else {}
        if "virtual" in source or "editable" in source:
            continue
        if "registry" not in source:
            kind = next(iter(source), "unknown")
            found.warn(f"{name}: a {kind} source (add it as name @ URL)")
            continue
        if not isinstance(version, str):
            raise SpecError(f"{path}: {name} has no version")
        _index_of(found, source.get("registry"))
        edges = markers.get(canonical_name(name), [None])
        marked = sorted({m for m in edges if m is not None})
        marker = "" if None in edges else "; " + " or ".join(f"({m})" for m in marked)
        found.packages.append(f"{name}=={version}{marker}")
        for file in _files(package):
            digest = file.get("hash")
            if isinstance(digest, str) and digest.startswith("sha256:"):
                found.add_hash(name, digest)
    return found
