"""Pick the one artifact to install per package, for the target, from PEP 751 data."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from envlock.errors import ResolutionError
from envlock.lock import Package
from envlock.platforms import wheel_problem, wheel_rank
from envlock.spec import redact


def _location(art: Mapping[str, Any], base: Path) -> str:
    if "url" in art:
        return redact(str(art["url"]))
    return (base / str(art["path"])).resolve().as_uri()


def _why_none(pkg: Mapping[str, Any], rejected: list[str]) -> str:
    """The files the resolver offered and why each was rejected, or what the package was instead."""
    if rejected:
        return "; ".join(sorted(rejected))
    kind = next((k for k in ("vcs", "directory", "archive") if k in pkg), None)
    return f"it is a {kind} source, not a file from an index" if kind else "the resolver listed no files"


def from_pylock(data: Mapping[str, Any], platform: str, python: str, base: Path) -> list[Package]:
    """Choose the best wheel for the target, else the sdist, for every locked package.

    ``base`` is the directory relative paths in the file are resolved against.
    """
    from packaging.utils import canonicalize_name

    chosen = []
    for pkg in data.get("packages", []):
        name = canonicalize_name(pkg["name"])
        version = str(pkg.get("version", ""))
        ranked = []
        rejected = []
        for wheel in pkg.get("wheels", []):
            filename = wheel.get("name") or unquote(_location(wheel, base).rsplit("/", 1)[-1])
            rank = wheel_rank(filename, platform, python)
            if rank is not None:
                ranked.append((rank, filename, wheel))
            else:
                rejected.append(f"{filename}: {wheel_problem(filename, platform, python)}")
        if ranked:
            art = min(ranked, key=lambda r: (r[0], r[1]))[2]
        elif "sdist" in pkg:
            art = pkg["sdist"]
        else:
            raise ResolutionError(
                f"{name} {version} has no file for {platform} / Python {python}: {_why_none(pkg, rejected)}",
                "pick a version with a wheel for this target (or an sdist); "
                "envlock locks hashed files from indexes or find-links only",
            )
        sha256 = art.get("hashes", {}).get("sha256")
        if not sha256:
            raise ResolutionError(f"{name} {version}: the index gave no sha256 for {_location(art, base)}")
        size = art.get("size")
        chosen.append(
            Package(
                manager="pip",
                name=name,
                version=version,
                url=_location(art, base),
                sha256=sha256,
                size=size if isinstance(size, int) else None,
            )
        )
    return chosen
