"""Target platforms, named as conda subdirs, and what they mean to pip resolvers.

A lock is made *for* a platform and Python version, never for the host running
envlock: resolvers get an explicit target, and wheels are ranked by that
target's tags.
"""

from __future__ import annotations

import platform as _host
import re
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
    """The platform tags of a target, best first, as pip orders them for
    ``pip download --platform manylinux_2_28_ARCH``: PEP 600 ``manylinux_2_N`` from the
    assumed glibc down to 2.5 with the PEP 599/571/513 legacy aliases, then plain
    ``linux_ARCH`` last (what pip accepts on any Linux; download.pytorch.org tags its
    ``+cpu``/``+cuXXX`` builds so)."""
    if p.os == "linux":
        major, newest = MANYLINUX_GLIBC
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags = []
        for minor in range(newest, 4, -1):
            tags.append(f"manylinux_{major}_{minor}_{p.arch}")
            if minor in legacy:
                tags.append(f"{legacy[minor]}_{p.arch}")
        tags.append(f"linux_{p.arch}")
        return tags
    if p.os == "macos":
        from packaging.tags import mac_platforms

        return list(mac_platforms(MACOS_VERSION, p.arch))
    return ["win_amd64"]


@cache
def tag_ranks(subdir: str, python: str) -> dict[str, int]:
    """Map each wheel tag the target accepts to its rank (0 is the best).

    The order is ``packaging.tags``' (pip's): for each interpreter and ABI (``cp311``,
    ``abi3``, ``none``, then older ``abi3``), every platform tag best first; then the
    ``pyXY``/``none`` tags of ``compatible_tags``.  So within one ABI a ``linux_x86_64``
    wheel ranks after every manylinux one, and a native wheel before a pure one.
    """
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


def wheel_problem(filename: str, subdir: str, python: str) -> str | None:
    """Why a wheel cannot install on the target, in words; ``None`` when it can.

    The reason names the part of the tag that is wrong (PEP 425: python tag, ABI tag,
    platform tag), e.g. ``"python tag cp312 (the target is CPython 3.11)"``.
    """
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return "not a wheel file name (PEP 427)"
    if any(str(t) in tag_ranks(subdir, python) for t in tags):
        return None
    interpreters, platforms = _accepted_parts(subdir, python)
    reasons = []
    for tag in sorted(tags, key=str):
        if tag.platform not in platforms:
            reasons.append(_platform_problem(tag.platform, subdir))
        elif tag.interpreter not in interpreters:
            reasons.append(f"python tag {tag.interpreter} (the target is CPython {python})")
        else:
            reasons.append(
                f"ABI {tag.abi} with python tag {tag.interpreter} (the target is CPython {python})"
            )
    return "; ".join(dict.fromkeys(reasons))


@cache
def _accepted_parts(subdir: str, python: str) -> tuple[frozenset[str], frozenset[str]]:
    """The python tags and the platform tags that occur in the target's accepted tags."""
    parts = [key.split("-") for key in tag_ranks(subdir, python)]
    return frozenset(p[0] for p in parts), frozenset(p[2] for p in parts)


def _platform_problem(tag: str, subdir: str) -> str:
    p = PLATFORMS[subdir]
    target = f"the target is {subdir}"
    if p.os == "linux":
        target += f", glibc {MANYLINUX_GLIBC[0]}.{MANYLINUX_GLIBC[1]}"
        if tag.startswith("musllinux"):
            return f"platform {tag} needs musl libc ({target})"
        many = re.match(r"manylinux_(\d+)_(\d+)_(.+)$", tag)
        if many and many.group(3) == p.arch:
            return f"platform {tag} needs glibc {many.group(1)}.{many.group(2)} ({target})"
    if p.os == "macos":
        mac = re.match(r"macosx_(\d+)_(\d+)_(.+)$", tag)
        if mac and mac.group(3) in (p.arch, "universal2"):
            assumed = f"macOS {MACOS_VERSION[0]}.{MACOS_VERSION[1]}"
            return f"platform {tag} needs macOS {mac.group(1)}.{mac.group(2)} ({target}, {assumed})"
    return f"platform {tag} ({target})"


def markers(subdir: str, python: str) -> str:
    """PEP 508 marker selecting exactly this platform and Python minor version."""
    return f"{PLATFORMS[subdir].markers} and python_version == '{python}'"
