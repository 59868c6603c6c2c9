"""Fast, offline consistency checks for pre-commit: no network, no resolution, no heavy imports.

For each spec: the lock exists and parses, was made from this spec (spec-hash),
its env ID matches its content, every package is pinned with a sha256, it is in
canonical form, and every export equals what the lock renders.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from envlock import export
from envlock import lock as lockmod
from envlock.errors import EnvlockError
from envlock.spec import load


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str
    fix: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message} (fix: {self.fix})"


def _from_error(path: Path, exc: EnvlockError, fix: str) -> Problem:
    """An error message starts with ``PATH:`` or ``PATH:LINE:``; keep the line, drop the path."""
    message, line = exc.message, None
    prefix = f"{path}:"
    if message.startswith(prefix):
        head, _, rest = message[len(prefix) :].partition(": ")
        if head.isdigit():
            line, message = int(head), rest
        else:
            message = message[len(prefix) :].lstrip()
    if exc.hint:
        message = f"{message}; {exc.hint}"
    return Problem(path, message, fix, line)


def verify_spec(spec_path: Path) -> list[Problem]:
    relock = f"envlock lock {spec_path}"
    try:
        spec = load(spec_path, strict=False)
    except EnvlockError as exc:
        return [_from_error(spec_path, exc, "correct the spec")]
    lock_path = spec_path.with_suffix(".lock")
    try:
        text = lock_path.read_text("utf-8")
    except FileNotFoundError:
        return [Problem(lock_path, "missing: the spec has no lock", relock)]
    try:
        lock = lockmod.parse(text, lock_path)
    except EnvlockError as exc:
        return [
            Problem(
                lock_path,
                exc.message.removeprefix(f"{lock_path}: "),
                f"envlock lock --upgrade {spec_path}",
            )
        ]

    found = []
    if lock.spec_hash != spec.spec_hash:
        found.append(Problem(lock_path, "stale: the spec changed since it was locked", relock))
    for message in lockmod.problems(lock):
        found.append(Problem(lock_path, f"tampered: {message}", f"envlock lock --upgrade {spec_path}"))
    if not found and lockmod.render(lock) != text:
        found.append(
            Problem(
                lock_path,
                "edited by hand: not the bytes envlock writes",
                f"envlock lock --upgrade {spec_path}",
            )
        )
    for path, expected in export.render_all(lock, spec_path).items():
        try:
            actual = path.read_text("utf-8")
        except FileNotFoundError:
            found.append(Problem(path, "missing export", relock))
            continue
        if actual != expected:
            found.append(Problem(path, "export does not match the lock (edited by hand?)", relock))
    return found


def verify(spec_paths: Iterable[Path]) -> list[Problem]:
    problems: list[Problem] = []
    for path in spec_paths:
        problems.extend(verify_spec(path))
    return problems
