"""Target platforms, named as conda subdirs, and what they mean to pip resolvers.

A lock is made *for* a platform and Python version, never for the host running
envlock: resolvers get an explicit target, and wheels are ranked by that
target's tags.
"""

from __future__ import annotations

import platform as _host
import sys
from dataclasses import dataclass
from functools import cache

MANYLINUX_GLIBC = (2, 28)
"""glibc the Linux targets assume (Debian bookworm has 2.36; manylinux_2_28 wheels run on it)."""

MACOS_VERSION = (12, 0)


@dataclass(frozen=True)
class Platform:
    subdir: str
    os: str  # linux | macos | windows
    arch: str  # x86_64 | aarch64 | arm64 | amd64
    uv_target: str
    markers: str  # PEP 508 marker that selects this platform


PLATFORMS: dict[str, Platform] = {
    p.subdir: p
    for p in (
        Platform(
            "linux-64",
            "linux",
            "x86_64",
            f"x86_64-manylinux_{MANYLINUX_GLIBC[0]}_{MANYLINUX_GLIBC[1]}",
            "sys_platform == 'linux' and platform_machine == 'x86_64'",
        ),
        Platform(
            "linux-aarch64",
            "linux",
            "aarch64",
            f"aarch64-manylinux_{MANYLINUX_GLIBC[0]}_{MANYLINUX_GLIBC[1]}",
            "sys_platform == 'linux' and platform_machine == 'aarch64'",
        ),
        Platform(
            "osx-64",
            "macos",
            "x86_64",
            "x86_64-apple-darwin",
            "sys_platform == 'darwin' and platform_machine == 'x86_64'",
        ),
        Platform(
            "osx-arm64",
            "macos",
            "arm64",
            "aarch64-apple-darwin",
            "sys_platform == 'darwin' and platform_machine == 'arm64'",
        ),
        Platform(
            "win-64",
            "windows",
            "amd64",
            "x86_64-pc-windows-msvc",
            "sys_platform == 'win32' and platform_machine == 'AMD64'",
        ),
    )
}


def host_subdir() -> str | None:
    """The conda subdir of the machine running envlock, or ``None`` if unknown."""
    machine = _host.machine().lower()
    if sys.platform.startswith("linux"):
        return {"x86_64": "linux-64", "aarch64": "linux-aarch64", "arm64": "linux-aarch64"}.get(machine)
    if sys.platform == "darwin":
        return {"x86_64": "osx-64", "arm64": "osx-arm64"}.get(machine)
    if sys.platform == "win32":
        return {"amd64": "win-64", "x86_64": "win-64"}.get(machine)
    return None


def _platform_tags(p: Platform) -> list[str]:
    if p.os == "linux":
        major, newest = MANYLINUX_GLIBC
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags = []
        for minor in range(newest, 4, -1):
            tags.append(f"manylinux_{major}_{minor}_{p.arch}")
            if minor in legacy:
                tags.append(f"{legacy[minor]}_{p.arch}")
        return tags
    if p.os == "macos":
        from packaging.tags import mac_platforms

        return list(mac_platforms(MACOS_VERSION, p.arch))
    return ["win_amd64"]


@cache
def tag_ranks(subdir: str, python: str) -> dict[str, int]:
    """Map each wheel tag the target accepts to its rank (0 is the best)."""
    from packaging.tags import compatible_tags, cpython_tags

    p = PLATFORMS[subdir]
    version = tuple(int(x) for x in python.split("."))[:2]
    interpreter = f"cp{version[0]}{version[1]}"
    plats = _platform_tags(p)
    ordered = [
        *cpython_tags(version, abis=[interpreter], platforms=plats),
        *compatible_tags(version, interpreter=interpreter, platforms=plats),
    ]
    ranks: dict[str, int] = {}
    for rank, tag in enumerate(ordered):
        ranks.setdefault(str(tag), rank)
    return ranks


def wheel_rank(filename: str, subdir: str, python: str) -> int | None:
    """Rank of a wheel file for the target (lower is better), ``None`` if it cannot install."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    ranks = tag_ranks(subdir, python)
    found = [ranks[str(t)] for t in tags if str(t) in ranks]
    return min(found) if found else None


def markers(subdir: str, python: str) -> str:
    """PEP 508 marker selecting exactly this platform and Python minor version."""
    return f"{PLATFORMS[subdir].markers} and python_version == '{python}'"
