"""The few git commands envlock's fast paths need, through the git CLI (no GitPython).

``verify`` runs inside pre-commit on every commit, so it may not import heavy modules;
a ``subprocess`` call to git costs a few milliseconds and nothing at import time.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from envlock.errors import ToolMissing, UsageError


def git(args: Sequence[str], cwd: Path, stdin: bytes | None = None) -> bytes:
    """Run git; a missing binary is ``ToolMissing``, a failure ``UsageError`` with git's words."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise ToolMissing("git is not installed", "install git, e.g. apt-get install git") from None
    if proc.returncode != 0:
        from envlock.urls import redact_text

        why = redact_text(proc.stderr.decode("utf-8", "replace")).strip().splitlines()
        raise UsageError(f"git {args[0]} failed: {why[-1] if why else proc.returncode}")
    return proc.stdout


def toplevel(cwd: Path) -> Path | None:
    """The root of the git work tree holding ``cwd``, or ``None`` outside one (or without git)."""
    try:
        out = git(["rev-parse", "--show-toplevel"], cwd)
    except (ToolMissing, UsageError):
        return None
    return Path(out.decode().strip())


def cat_files(objects: Iterable[str], cwd: Path) -> list[bytes | None]:
    """Contents of many objects (``SHA`` or ``REV:PATH``) from one ``git cat-file --batch``;
    ``None`` for each that does not exist."""
    names = list(objects)
    if not names:
        return []
    if any("\n" in n for n in names):
        raise UsageError("object names may not contain newlines")
    out = git(["cat-file", "--batch"], cwd, ("\n".join(names) + "\n").encode())
    results: list[bytes | None] = []
    pos = 0
    for _ in names:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) == 3 and header[2].isdigit():
            size = int(header[2])
            results.append(out[pos : pos + size])
            pos += size + 1  # content, then a newline
        else:  # "NAME missing" / "NAME ambiguous"
            results.append(None)
    return results


@dataclass(frozen=True)
class Change:
    """One line of ``git status --porcelain``: ``index`` and ``worktree`` are its X and Y
    letters (``" "`` unchanged, ``"?"`` untracked); ``path`` is relative to the root."""

    index: str
    worktree: str
    path: str

    @property
    def staged(self) -> bool:
        return self.index not in " ?!"

    @property
    def unstaged(self) -> bool:
        """The work tree differs from the index: changed, deleted, or never added."""
        return self.worktree != " "


def status(cwd: Path, pathspecs: Sequence[str] = ()) -> list[Change]:
    """``git status --porcelain -z`` (untracked files listed one by one), limited to
    ``pathspecs``: in one process, what is staged and what is not."""
    args = ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"]
    out = git([*args, "--", *pathspecs], cwd).decode("utf-8", "surrogateescape")
    return [Change(e[0], e[1], e[3:]) for e in out.split("\0") if len(e) > 3]
