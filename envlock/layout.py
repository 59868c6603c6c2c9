"""Which file belongs to which spec: the names ``envlock lock`` writes beside a spec.

Beside ``DIR/NAME.toml`` live ``DIR/NAME.lock``, ``DIR/NAME.PLATFORM.requirements.txt`` and
``DIR/pylock.NAME.toml`` and, with conda packages, ``DIR/NAME.conda-lock.yml``.
Hooks and ``verify`` get any mix of these names and need the
specs behind them; :func:`spec_for` is that mapping, by name alone.  Everything here is
cheap: no parsing, at most a peek at a file's first line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from envlock.platforms import PLATFORMS

SPECS_DIR = "specs"
_STEM = r"[^./\\]+"
_LOCK = re.compile(rf"^(?P<name>{_STEM})\.lock$")
_PYLOCK = re.compile(rf"^pylock\.(?P<name>{_STEM})\.toml$")
_REQUIREMENTS = re.compile(rf"^(?P<name>{_STEM})\.(?P<platform>[^./\\]+)\.requirements\.txt$")
_CONDA_LOCK = re.compile(rf"^(?P<name>{_STEM})\.conda-lock\.yml$")
_SPEC = re.compile(rf"^(?P<name>{_STEM})\.toml$")
# The first line of every file `envlock lock` writes names it (see lock.HEADER, export.py).
_GENERATED = "envlock lock`"


def spec_for(path: Path) -> Path | None:
    """The spec a file belongs to, by name: a spec maps to itself, a lock or an export to
    the spec beside it; any other file to ``None``.  Pure: the files need not exist."""
    name = path.name
    if m := _PYLOCK.match(name):
        return path.with_name(f"{m['name']}.toml")
    if m := _SPEC.match(name):
        return path
    if m := _CONDA_LOCK.match(name):
        return path.with_name(f"{m['name']}.toml")
    if m := _LOCK.match(name):
        return path.with_name(f"{m['name']}.toml")
    if (m := _REQUIREMENTS.match(name)) and m["platform"] in PLATFORMS:
        return path.with_name(f"{m['name']}.toml")
    return None


def in_specs_dir(path: Path) -> bool:
    return path.parent.name == SPECS_DIR


def generated(path: Path) -> bool:
    """Whether a file's first line says ``envlock lock`` wrote it (``False`` if unreadable)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return _GENERATED in fh.readline(200)
    except OSError:
        return False


@dataclass(frozen=True)
class Selection:
    """What a list of file names comes to: specs to check, locks and exports whose spec is
    gone (orphans), and files that are not envlock's (ignored)."""

    specs: tuple[Path, ...] = ()
    orphans: tuple[Path, ...] = ()
    ignored: tuple[Path, ...] = ()


def select(paths: Iterable[Path]) -> Selection:
    """Map file names to specs, keeping first-seen order and dropping duplicates.

    In a directory named ``specs`` every matching name is envlock's.  Elsewhere (only when
    named explicitly) a ``NAME.toml`` is a spec only if an envlock ``NAME.lock`` is beside
    it, and a lock or export only if envlock wrote it, so ``pyproject.toml``,
    ``Cargo.toml`` + ``Cargo.lock`` or ``poetry.lock`` are ignored, not reported.  A lock
    or export whose spec does not exist is an orphan; one that is itself gone too (both
    deleted) is nothing to check.
    """
    specs: dict[Path, None] = {}
    orphans: dict[Path, None] = {}
    ignored: dict[Path, None] = {}
    for path in paths:
        spec = spec_for(path)
        ours = in_specs_dir(path)
        if spec is None:
            ignored[path] = None
        elif spec == path:
            if ours or generated(path.with_suffix(".lock")):
                specs[path] = None
            else:
                ignored[path] = None
        elif not ours and not generated(path):
            ignored[path] = None
        elif spec.is_file():
            specs[spec] = None
        elif path.is_file():
            orphans[path] = None
    return Selection(tuple(specs), tuple(orphans), tuple(ignored))


def scan(directory: Path) -> Selection:
    """Every spec in ``directory`` and every lock or export there whose spec is gone."""
    try:
        names = sorted(p for p in directory.iterdir() if p.is_file())
    except OSError:
        return Selection()
    found = select(p for p in names if spec_for(p) is not None)
    return Selection(found.specs, found.orphans)


def derived(spec: Path, candidates: Iterable[Path]) -> list[Path]:
    """The files among ``candidates`` that belong to ``spec`` (its lock and exports)."""
    return [p for p in candidates if p != spec and spec_for(p) == spec]
