"""git requirements (``name @ git+URL@REV``): fetch one commit, and a content digest of a tree.

A git package is locked by its full commit (uv resolves a branch or tag to it at lock time)
and by the sha256 *tree digest* of its files, so what is built later is checked with SHA-256,
not only git's SHA-1.  URLs may hold ``${VAR}`` placeholders (expanded only for git, never
written anywhere); every message shows the URL without its user-info.  URL handling here is
deliberately minimal: scheme check and redaction only.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

from envlock.errors import CheckFailed, ServiceUnavailable, ToolMissing, UsageError
from envlock.urls import expand, redact, redact_text

_UNREACHABLE = re.compile(
    r"(Could not resolve host|Failed to connect|unable to access|Connection refused|Connection timed out"
    r"|Could not read from remote repository|does not appear to be a git repository|timed out)",
    re.I,
)


def _git(args: list[str], cwd: Path, url: str) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
        )
    except FileNotFoundError:
        raise ToolMissing("git is not installed", "install git, e.g. apt-get install git") from None
    except subprocess.TimeoutExpired:
        raise ServiceUnavailable(f"git fetch from {redact(url)} timed out") from None
    if proc.returncode != 0:
        words = redact_text(proc.stderr.strip()).splitlines()
        last = words[-1] if words else f"exit {proc.returncode}"
        if _UNREACHABLE.search(proc.stderr):
            raise ServiceUnavailable(
                f"cannot reach the git repository {redact(url)}: {last}",
                "check the URL, your network and the credentials in its ${VAR} placeholders",
            )
        raise CheckFailed(f"git {args[0]} from {redact(url)} failed: {last}")
    return proc.stdout


def checkout(url: str, commit: str, dest: Path) -> None:
    """Put the files of ``commit`` from the repository at ``url`` into ``dest`` (no ``.git`` left).

    ``url`` is the repository URL without ``git+`` (``https://``, ``ssh://``, ``file://``, with
    ``${VAR}`` placeholders allowed).  Only that commit is fetched when the server allows it
    (``--depth 1``), else the whole history.

    Raises:
        ServiceUnavailable: (exit 3) the host or repository cannot be reached; the URL is named.
        CheckFailed: (exit 1) the commit is not in the repository.
        UsageError: (exit 2) ``commit`` is not a full 40-hex commit id.
    """
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise UsageError(f"{redact(url)}: {commit!r} is not a full git commit id")
    real = expand(url, os.environ)
    dest.mkdir(parents=True, exist_ok=True)
    _git(["init", "-q", str(dest)], dest, url)
    try:
        _git(["fetch", "-q", "--depth", "1", real, commit], dest, url)
    except CheckFailed:
        _git(["fetch", "-q", real, "+refs/*:refs/remotes/origin/*"], dest, url)
    _git(["-c", "advice.detachedHead=false", "checkout", "-q", commit], dest, url)
    import shutil

    shutil.rmtree(dest / ".git")


def tree_digest(root: Path) -> str:
    """sha256 hex over the sorted lines ``PATH\\0sha256\\0MODE`` (files; MODE 755 or 644 by the
    exec bit) and ``PATH\\0symlink\\0TARGET`` of everything under ``root`` but ``.git``.

    Raises:
        CheckFailed: (exit 1) something is neither a file, a directory nor a symlink.
    """
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not (d == ".git" and Path(dirpath) == root))
        for name in [*filenames, *[d for d in dirnames if Path(dirpath, d).is_symlink()]]:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                lines.append(f"{rel}\0symlink\0{path.readlink()}\n")
            elif path.is_file():
                digest = hashlib.sha256()
                with path.open("rb") as fh:
                    while chunk := fh.read(1 << 20):
                        digest.update(chunk)
                mode = "755" if path.stat().st_mode & 0o111 else "644"
                lines.append(f"{rel}\0{digest.hexdigest()}\0{mode}\n")
            else:
                raise CheckFailed(f"{path}: not a regular file, directory or symlink")
    return hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()
