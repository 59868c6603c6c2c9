"""Pick the one artifact to install per package, for the target, from PEP 751 data."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envlock.errors import ResolutionError
from envlock.lockfile import Package, file_name
from envlock.platforms import wheel_problem, wheel_rank
from envlock.urls import written


def _location(art: Mapping[str, Any], base: Path, sources: Sequence[str]) -> str:
    if "url" in art:
        return written(str(art["url"]), sources, os.environ)
    return (base / str(art["path"])).resolve().as_uri()


def _why_none(pkg: Mapping[str, Any], rejected: list[str]) -> str:
    """The files the resolver offered and why each was rejected, or what the package was instead."""
    if rejected:
        return "; ".join(sorted(rejected))
    kind = next((k for k in ("vcs", "directory", "archive") if k in pkg), None)
    return f"it is a {kind} source, not a file from an index" if kind else "the resolver listed no files"


def from_pylock(
    data: Mapping[str, Any], platform: str, python: str, base: Path, sources: Sequence[str] = ()
) -> list[Package]:
    """Choose the best wheel for the target, else the sdist, for every locked package.

    ``base`` is the directory relative paths in the file are resolved against; ``sources``
    the spec's index and find-links URLs, whose ``${VAR}`` values go back to placeholders in
    every URL (``envlock.urls.written``): no credential reaches the lock.
    """
    from packaging.utils import canonicalize_name

    chosen = []
    for pkg in data.get("packages", []):
        name = canonicalize_name(pkg["name"])
        version = str(pkg.get("version", ""))
        ranked = []
        rejected = []
        for wheel in pkg.get("wheels", []):
            filename = wheel.get("name") or file_name(_location(wheel, base, sources))
            rank = wheel_rank(filename, platform, python)
            if rank is not None:
                ranked.append((rank, filename, wheel))
            else:
                rejected.append(f"{filename}: {wheel_problem(filename, platform, python)}")
        others: tuple[str, ...] = ()
        if ranked:
            art = min(ranked, key=lambda r: (r[0], r[1]))[2]
            digests = {str(w.get("hashes", {}).get("sha256", "")) for _, _, w in ranked if w is not art}
            others = tuple(sorted(d for d in digests if d))
        elif "sdist" in pkg:
            art = pkg["sdist"]
        else:
            if any(k in pkg for k in ("vcs", "directory", "archive")):
                chosen.append(_direct(pkg, name, version, platform, python, base, sources))
                continue
            raise ResolutionError(
                f"{name} {version} has no file for {platform} / Python {python}: {_why_none(pkg, rejected)}",
                "pick a version with a wheel for this target (or an sdist), or name a file by URL",
            )
        sha256 = art.get("hashes", {}).get("sha256")
        if not sha256:
            raise ResolutionError(
                f"{name} {version}: the index gave no sha256 for {_location(art, base, sources)}"
            )
        size = art.get("size")
        chosen.append(
            Package(
                manager="pip",
                name=name,
                version=version,
                url=_location(art, base, sources),
                sha256=sha256,
                size=size if isinstance(size, int) else None,
                other_hashes=others,
            )
        )
    return chosen


def _direct(
    pkg: Mapping[str, Any],
    name: str,
    version: str,
    platform: str,
    python: str,
    base: Path,
    sources: Sequence[str] = (),
) -> Package:
    """A direct reference (PEP 751 ``archive``, ``vcs`` or ``directory``) as a lock entry.

    Trees (git, directories) get their sha256 (a tree digest) when they are built; a
    directory's version may be unknown until then.
    """
    if "archive" in pkg:
        art = pkg["archive"]
        sha256 = art.get("hashes", {}).get("sha256")
        if not sha256:
            raise ResolutionError(f"{name} {version}: no sha256 for {_location(art, base, sources)}")
        size = art.get("size")
        return Package(
            manager="pip",
            name=name,
            version=version,
            url=_location(art, base, sources),
            sha256=sha256,
            size=size if isinstance(size, int) else None,
            source="url" if "url" in art else "path",
        )
    if "vcs" in pkg:
        vcs = pkg["vcs"]
        if vcs.get("type") != "git" or "url" not in vcs:
            raise ResolutionError(
                f"{name} {version}: {vcs.get('type')} requirements are not supported", "use git+URL@COMMIT"
            )
        url = "git+" + written(str(vcs["url"]), sources, os.environ)
        return Package("pip", name, version, url, "", source="git", commit=str(vcs.get("commit-id", "")))
    if "directory" in pkg:
        url = (base / str(pkg["directory"]["path"])).resolve().as_uri() + "/"
        return Package("pip", name, version, url, "", source="path")
    raise ResolutionError(
        f"{name} {version} has no wheel or sdist for {platform} / Python {python}",
        "envlock locks hashed files from indexes, find-links, direct URLs, git commits and paths",
    )
