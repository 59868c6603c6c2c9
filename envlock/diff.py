"""Semantic diff of two locks: what was added, removed or changed, and what kind of change.

Pure functions over :class:`envlock.lockfile.Lock`; no I/O.  Packages are matched by
(manager, name) within a platform; a package whose version and sha256 (and, for
conda, build) are equal is unchanged and never listed.  Versions are parsed with
``packaging`` only for packages that did change, so a diff of two 600-package
locks costs a couple of dictionary passes.

Kinds of package change:

``added`` / ``removed``  only on one side
``major`` / ``minor`` / ``patch``  the first release component that differs
``local``    only the local version differs (``2.5.1+cu121`` -> ``2.5.1+cu124``)
``build``    conda: same version, different build string
``rebuilt``  same version (and build), different file (sha256)
``other``    pre/post/dev release or epoch changes, or a version PEP 440 cannot parse

Framework packages (torch, tensorflow, jax, jaxlib and their companions from the
compat matrix) are flagged and listed first; per platform the Python, CUDA
variant and base image (reference or digest) changes are reported on their own.
``to_json`` gives the documented ``envlock.diff/v1`` schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from envlock.lockfile import Lock, Package, PlatformLock

SCHEMA = "envlock.diff/v1"
KINDS = ("added", "removed", "major", "minor", "patch", "local", "build", "rebuilt", "other")
_BUMPS = ("major", "minor", "patch")


@dataclass(frozen=True)
class ValueChange:
    """A platform-level value (Python, CUDA variant, base image) that differs."""

    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.old or '(none)'} -> {self.new or '(none)'}"


@dataclass(frozen=True)
class PackageChange:
    manager: str
    name: str
    old_version: str | None  # None when added
    new_version: str | None  # None when removed
    kind: str  # one of KINDS
    old_build: str | None = None  # conda build strings
    new_build: str | None = None
    framework: bool = False
    downgrade: bool = False

    @property
    def label(self) -> str:
        return self.name if self.manager == "pip" else f"{self.manager}:{self.name}"


@dataclass(frozen=True)
class PlatformDiff:
    name: str
    status: str  # "both", or "added" / "removed" when only one side has the platform
    python: ValueChange | None
    cuda: ValueChange | None
    base: ValueChange | None
    changes: tuple[PackageChange, ...]
    unchanged: int

    @property
    def changed(self) -> bool:
        return bool(self.status != "both" or self.python or self.cuda or self.base or self.changes)


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a display label, its env ID and an optional note
    (e.g. "stale: the spec changed since it was locked")."""

    label: str
    env_id: str
    note: str = ""


@dataclass(frozen=True)
class EnvDiff:
    a: Side
    b: Side
    summary: str
    platforms: tuple[PlatformDiff, ...]

    @property
    def identical(self) -> bool:
        return not any(p.changed for p in self.platforms)

    def counts(self) -> dict[str, int]:
        """Package changes per kind, summed over platforms (every kind present, maybe 0)."""
        out = dict.fromkeys(KINDS, 0)
        for plat in self.platforms:
            for change in plat.changes:
                out[change.kind] += 1
        return out


@cache
def _framework_names() -> tuple[frozenset[str], frozenset[str]]:
    """(main framework pip names, every framework package incl. companions)."""
    from envlock import compat
    from envlock.spec import FRAMEWORKS

    main = {"jaxlib"}
    every = {"jaxlib"}
    for name in FRAMEWORKS:
        info = compat.framework(name)
        main.add(info.pip_name)
        every.add(info.pip_name)
        every.update(info.companions)
    return frozenset(main), frozenset(every)


def classify(old: str, new: str) -> tuple[str, bool]:
    """Kind of a version change and whether it is a downgrade (``old != new``)."""
    from packaging.version import InvalidVersion, Version

    try:
        a, b = Version(old), Version(new)
    except InvalidVersion:
        return "other", False
    down = b < a
    if a.epoch != b.epoch:
        return "other", down
    if a.public == b.public:
        return ("local" if a.local != b.local else "other"), down
    ra, rb = a.release, b.release
    width = max(len(ra), len(rb), 3)
    ra = ra + (0,) * (width - len(ra))
    rb = rb + (0,) * (width - len(rb))
    for i, (x, y) in enumerate(zip(ra, rb, strict=True)):
        if x != y:
            return _BUMPS[min(i, 2)], down
    return "other", down  # same release: pre / post / dev differ


def _package_change(old: Package, new: Package, flagged: frozenset[str]) -> PackageChange | None:
    if old.version == new.version:
        if old.sha256 == new.sha256 and old.build == new.build:
            return None
        kind = "build" if old.manager == "conda" and old.build != new.build else "rebuilt"
        down = False
    else:
        kind, down = classify(old.version, new.version)
    return PackageChange(
        manager=new.manager,
        name=new.name,
        old_version=old.version,
        new_version=new.version,
        kind=kind,
        old_build=old.build,
        new_build=new.build,
        framework=new.name in flagged,
        downgrade=down,
    )


def _one_sided(p: Package, kind: str, flagged: frozenset[str]) -> PackageChange:
    added = kind == "added"
    return PackageChange(
        manager=p.manager,
        name=p.name,
        old_version=None if added else p.version,
        new_version=p.version if added else None,
        kind=kind,
        old_build=None if added else p.build,
        new_build=p.build if added else None,
        framework=p.name in flagged,
    )


def _base(p: PlatformLock) -> str:
    if p.base_digest and p.base_digest not in p.base:
        return f"{p.base}@{p.base_digest}" if p.base else p.base_digest
    return p.base


def _value(old: str, new: str) -> ValueChange | None:
    return ValueChange(old, new) if old != new else None


def _order(change: PackageChange) -> tuple[bool, str, str]:
    return (not change.framework, change.manager, change.name)


def diff_platform(old: PlatformLock, new: PlatformLock) -> PlatformDiff:
    flagged = _framework_names()[1]
    olds = {(p.manager, p.name): p for p in old.packages}
    changes: list[PackageChange] = []
    unchanged = 0
    for p in new.packages:
        before = olds.pop((p.manager, p.name), None)
        if before is None:
            changes.append(_one_sided(p, "added", flagged))
            continue
        change = _package_change(before, p, flagged)
        if change is None:
            unchanged += 1
        else:
            changes.append(change)
    changes.extend(_one_sided(p, "removed", flagged) for p in olds.values())
    changes.sort(key=_order)
    return PlatformDiff(
        name=new.name,
        status="both",
        python=_value(old.python, new.python),
        cuda=_value(old.cuda, new.cuda),
        base=_value(_base(old), _base(new)),
        changes=tuple(changes),
        unchanged=unchanged,
    )


def _lonely(p: PlatformLock, status: str) -> PlatformDiff:
    flagged = _framework_names()[1]
    kind = "added" if status == "added" else "removed"
    changes = sorted((_one_sided(x, kind, flagged) for x in p.packages), key=_order)
    return PlatformDiff(p.name, status, None, None, None, tuple(changes), 0)


def diff_locks(a: Lock, b: Lock, label_a: str = "a", label_b: str = "b") -> EnvDiff:
    """What changed going from lock ``a`` to lock ``b``, per platform."""
    olds = {p.name: p for p in a.platforms}
    news = {p.name: p for p in b.platforms}
    platforms = []
    for name in sorted(olds.keys() | news.keys()):
        if name not in olds:
            platforms.append(_lonely(news[name], "added"))
        elif name not in news:
            platforms.append(_lonely(olds[name], "removed"))
        else:
            platforms.append(diff_platform(olds[name], news[name]))
    plats = tuple(platforms)
    return EnvDiff(Side(label_a, a.env_id), Side(label_b, b.env_id), summarize(plats), plats)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def summarize(platforms: Iterable[PlatformDiff]) -> str:
    """One line, most important first: frameworks, CUDA, Python, base, then counts.

    Counts are of distinct packages over all platforms, so a two-platform lock where
    numpy moved on both says "1 package changed".
    """
    plats = list(platforms)
    main = _framework_names()[0]
    parts: list[str] = []
    counted: dict[str, set[tuple[str, str]]] = {k: set() for k in KINDS}
    for plat in plats:
        if plat.status != "both":
            parts.append(f"platform {plat.name} {plat.status}")
            continue
        for c in plat.changes:
            counted[c.kind].add((c.manager, c.name))
    heads = []
    for plat in plats:
        for c in plat.changes:
            if plat.status != "both" or c.name not in main:
                continue
            if c.kind == "added":
                heads.append(f"{c.name} {c.new_version} added")
            elif c.kind == "removed":
                heads.append(f"{c.name} {c.old_version} removed")
            else:
                down = ", downgrade" if c.downgrade else ""
                heads.append(f"{c.name} {c.old_version} -> {c.new_version} ({c.kind}{down})")
    heads += [f"CUDA {p.cuda}" for p in plats if p.cuda]
    heads += [f"Python {p.python}" for p in plats if p.python]
    heads += [f"base {p.base}" for p in plats if p.base]
    parts = _unique(heads) + parts
    changed = sum(len(counted[k]) for k in KINDS if k not in ("added", "removed", "rebuilt"))
    if changed:
        parts.append(f"{changed} package{'s' if changed != 1 else ''} changed")
    for kind in ("added", "removed", "rebuilt"):
        if counted[kind]:
            parts.append(f"{len(counted[kind])} {kind}")
    return ", ".join(parts) if parts else "no differences"


def _change_json(c: PackageChange) -> dict[str, Any]:
    return {
        "manager": c.manager,
        "name": c.name,
        "kind": c.kind,
        "framework": c.framework,
        "downgrade": c.downgrade,
        "old_version": c.old_version,
        "new_version": c.new_version,
        "old_build": c.old_build,
        "new_build": c.new_build,
    }


def _value_json(v: ValueChange | None) -> dict[str, str] | None:
    return {"old": v.old, "new": v.new} if v else None


def to_json(diff: EnvDiff) -> dict[str, Any]:
    """The ``envlock.diff/v1`` document (see README, "envlock diff --json").

    Every key is always present; values that do not apply are ``null``.  New keys may
    be added within v1; existing keys keep their meaning.
    """
    return {
        "schema": SCHEMA,
        "a": {"label": diff.a.label, "env_id": diff.a.env_id, "note": diff.a.note},
        "b": {"label": diff.b.label, "env_id": diff.b.env_id, "note": diff.b.note},
        "identical": diff.identical,
        "summary": diff.summary,
        "counts": diff.counts(),
        "platforms": [
            {
                "name": p.name,
                "status": p.status,
                "python": _value_json(p.python),
                "cuda": _value_json(p.cuda),
                "base": _value_json(p.base),
                "unchanged": p.unchanged,
                "changes": [_change_json(c) for c in p.changes],
            }
            for p in diff.platforms
        ],
    }
