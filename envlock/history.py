"""A lock across git history: the commits that changed it, and its content at any revision.

One ``git log`` process lists the commits; the lock's bytes at several revisions are
read through one ``git cat-file --batch`` process.  Paths are taken relative to the
current directory of the caller and converted to repository paths with ``./`` so a
checkout in a subdirectory works too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from envlock import lockfile as lockmod
from envlock.errors import ToolMissing, UsageError
from envlock.lockfile import Lock

_ENV_ID = re.compile(r'^env-id = "([^"]+)"$', re.MULTILINE)
_SEP, _END = "\x1f", "\x1e"


@dataclass(frozen=True)
class Revision:
    commit: str  # full sha
    date: str  # committer date, ISO 8601
    subject: str
    env_id: str | None  # None where the commit deleted the lock or it does not parse

    @property
    def short(self) -> str:
        return self.commit[:10]


def _git(args: Sequence[str], cwd: Path, stdin: bytes | None = None) -> bytes:
    git = shutil.which("git")
    if git is None:
        raise ToolMissing("git is not installed", "install git, or compare lock files directly")
    proc = subprocess.run([git, *args], cwd=cwd, input=stdin, capture_output=True, check=False, timeout=120)
    if proc.returncode != 0:
        message = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = message[-1] if message else f"git {args[0]} failed"
        if "not a git repository" in detail:
            raise UsageError(f"{cwd} is not inside a git repository", "run: git init")
        raise UsageError(detail.removeprefix("fatal: "))
    return proc.stdout


def _where(path: Path) -> tuple[Path, str]:
    """(directory to run git in, object path relative to it with ``./``)."""
    return path.parent, f"./{path.name}"


def history(path: Path, *, limit: int | None = None) -> list[Revision]:
    """Commits that changed ``path``, newest first, each with the env ID the lock had then."""
    cwd, rel = _where(path)
    if not cwd.is_dir():
        raise UsageError(f"{path}: no such directory", "name a lock inside a git checkout")
    args = ["log", f"--format=%H{_SEP}%cI{_SEP}%s{_END}"]
    if limit:
        args.append(f"-n{limit}")
    out = _git([*args, "--", rel], cwd).decode("utf-8", "replace")
    rows = []
    for record in out.split(_END):
        record = record.strip("\n")
        if not record:
            continue
        commit, date, subject = record.split(_SEP, 2)
        rows.append((commit, date, subject))
    texts = _cat(cwd, [f"{c}:{rel}" for c, _, _ in rows])
    revisions = []
    for (commit, date, subject), text in zip(rows, texts, strict=True):
        match = _ENV_ID.search(text) if text is not None else None
        revisions.append(Revision(commit, date, subject, match.group(1) if match else None))
    return revisions


def _cat(cwd: Path, objects: Sequence[str]) -> list[str | None]:
    """Contents of ``REV:PATH`` objects (``None`` where missing), one git process for all."""
    from envlock.gitcli import cat_files

    return [None if b is None else b.decode("utf-8", "replace") for b in cat_files(objects, cwd)]


def locks_at(path: Path, revs: Sequence[str]) -> dict[str, Lock]:
    """The lock at each revision (one git process); a revision without it is a UsageError."""
    cwd, rel = _where(path)
    texts = _cat(cwd, [f"{r}:{rel}" for r in revs])
    out = {}
    for rev, text in zip(revs, texts, strict=True):
        if text is None:
            raise UsageError(
                f"{path}@{rev}: no such file at that revision",
                f"list the revisions that have it: git log --oneline -- {path}",
            )
        out[rev] = lockmod.parse(text, f"{path}@{rev}")
    return out


def resolve_commit(cwd: Path, rev: str) -> str:
    """The full name of the commit ``rev`` names.

    ``rev`` comes from the user (``LOCK@REV``): it is passed after ``--end-of-options`` so
    git never reads it as an option (``--output=FILE`` would make git write a file).

    Raises:
        UsageError: ``rev`` names no commit (or holds a newline).
    """
    if not rev or any(c in rev for c in "\n\r\0"):
        raise UsageError(f"{rev[:80]!r} is not a git revision", "name a commit, a branch or a tag")
    try:
        out = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], cwd)
    except UsageError as exc:
        if "not inside a git repository" in exc.message:
            raise
        raise UsageError(
            f"{rev[:80]!r} is not a commit of this repository", "name a commit, a branch or a tag"
        ) from None
    return out.decode().strip()


def lock_at(path: Path, rev: str) -> Lock:
    """The lock file ``path`` as it was at git revision ``rev`` (validated by
    :func:`resolve_commit`, then read with ``git cat-file``: no user text reaches git's
    command line as an option)."""
    cwd, rel = _where(path)
    if not cwd.is_dir():
        raise UsageError(f"{path}: no such directory", "name a lock inside a git checkout")
    try:
        commit = resolve_commit(cwd, rev)
    except UsageError as exc:
        hint = exc.hint if "git repository" in exc.message else None
        raise UsageError(
            f"{path}@{rev[:80]}: {exc.message}",
            hint or f"list the revisions that have it: git log --oneline -- {path}",
        ) from None
    (blob,) = _cat(cwd, [f"{commit}:{rel}"])
    if blob is None:
        raise UsageError(
            f"{path}@{rev}: no such file at that revision",
            f"list the revisions that have it: git log --oneline -- {path}",
        )
    return lockmod.parse(blob, f"{path}@{rev}")
