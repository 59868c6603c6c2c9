"""Model records: what was trained, from which commit, in which environment and image.

One JSON note per commit under ``refs/notes/envlock`` holds a list of records
(schema ``envlock.manifest/v1``); several models may be recorded on one commit.
Reading uses ``envlock.notes`` (three git processes, whatever the number of
notes); writing takes a file lock in the git directory so two records made at
once on one commit both survive.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import fcntl
import hashlib
import json
import os
import platform as host_platform
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.errors import CheckFailed, UsageError
from envlock.gitcli import git, toplevel
from envlock.manifest import SCHEMA, Record, check_name, parse, parse_note, render_note
from envlock.notes import NOTES_REF, Notes
from envlock.notes import read as read_notes
from envlock.store import holding_store

Say = Callable[[str], None]
CHUNK = 1 << 20


def repo_root(cwd: Path) -> Path:
    root = toplevel(cwd)
    if root is None:
        raise UsageError(
            f"{cwd} is not inside a git repository", "records live in git notes: run git init first"
        )
    return root


# -- model hashing ------------------------------------------------------------------------


_SPECIAL = "not a regular file (a device, fifo or socket): a model is a file or a directory of files"


def _sha256(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) of the regular file ``path`` (a link to one is followed).

    Opened without blocking and checked with ``fstat`` before a byte is read, so a fifo or
    a device put there (even after a check) is refused instead of waiting or reading forever.

    Raises:
        UsageError: (exit 2) ``path`` is not a regular file.
        OSError: it cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{path}: {_SPECIAL}")
        h, size = hashlib.sha256(), 0
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def hash_model(path: Path) -> dict[str, Any]:
    """sha256 of a file, or a tree hash of a directory: sha256 over sorted ``path\\0sha256\\0size``
    lines of its regular files (links to regular files followed; links to nothing, fifos,
    devices and sockets inside the tree are not part of the model and are left out).

    Raises:
        UsageError: (exit 2) ``path`` does not exist, or is a device, fifo or socket.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UsageError(f"{path}: no such model file or directory") from None
    if stat.S_ISREG(mode):
        digest, size = _sha256(path)
        return {"kind": "file", "sha256": digest, "size": size, "files": 1}
    if stat.S_ISDIR(mode):
        lines, size, count = [], 0, 0
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = file.relative_to(path).as_posix()
            digest, n = _sha256(file)
            lines.append(f"{rel}\0{digest}\0{n}\n")
            size, count = size + n, count + 1
        tree = hashlib.sha256("".join(lines).encode()).hexdigest()
        return {"kind": "tree", "sha256": tree, "size": size, "files": count}
    raise UsageError(f"{path}: {_SPECIAL}")


# -- host ---------------------------------------------------------------------------------


def host_info(framework: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": host_platform.python_version(),
        "os": host_platform.platform(),
        "machine": host_platform.machine(),
    }
    from envlock.doctor import this_host

    gpus = this_host()  # gpus, gpu_archs (sm_XY) and driver, when the host has GPUs
    if gpus:
        info.update(gpus)
    probe = {
        "pytorch": "import torch; print(torch.version.cuda or '')",
        "tensorflow": "import tensorflow as t; print(t.sysconfig.get_build_info().get('cuda_version',''))",
        "jax": "import jax; print(getattr(jax.lib, 'cuda_versions', None) and jax.lib.cuda_versions or '')",
    }.get(framework or "")
    if probe:
        import importlib.util

        module = {"pytorch": "torch", "tensorflow": "tensorflow", "jax": "jax"}[framework or ""]
        if importlib.util.find_spec(module) is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                proc = subprocess.run(
                    ["python3", "-c", probe], capture_output=True, text=True, timeout=120, check=False
                )
                if proc.returncode == 0 and proc.stdout.strip():
                    info["cuda_runtime"] = proc.stdout.strip()
    return info


# -- writing ------------------------------------------------------------------------------


@contextlib.contextmanager
def _notes_lock(root: Path) -> Iterator[None]:
    """Exclusive while a note is read, extended and written back.

    The lock lives in the *common* git directory: the notes ref is shared by the main
    checkout and every linked worktree (git-worktree(1), "refs are shared"), so a lock
    per worktree would let two of them overwrite each other's note.
    """
    out = git(["rev-parse", "--path-format=absolute", "--git-common-dir"], root).decode().strip()
    with (Path(out) / "envlock-notes.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def note_of(root: Path, commit: str) -> list[dict[str, Any]]:
    """The record objects of the note on ``commit`` as they are (``[]`` without a note).

    Records that do not parse are kept as they are, so appending never drops one.

    Raises:
        CheckFailed: the commit carries a note that is not an envlock manifest (someone
            else's note); it is never overwritten.
    """
    try:
        raw = git(["notes", "--ref", NOTES_REF, "show", "--end-of-options", commit], root)
    except UsageError:
        return []
    note = parse_note(raw, commit)
    if note.raw is None:
        raise CheckFailed(
            f"commit {commit[:12]} has a note under refs/notes/{NOTES_REF} that is not an "
            f"envlock record list ({note.warnings[0]}); not overwriting it",
            f"look at it with: git notes --ref {NOTES_REF} show {commit[:12]}; "
            "move it to another notes ref, or remove it, then record again",
        )
    return [dict(r) for r in note.raw]


def write_note(root: Path, commit: str, records: list[dict[str, Any]]) -> None:
    """Replace the note on ``commit`` with ``records`` (``manifest.render_note``)."""
    body = render_note(records)
    git(["notes", "--ref", NOTES_REF, "add", "-f", "-F", "-", "--end-of-options", commit], root, body)


def _dirty_paths(root: Path) -> list[str]:
    out = git(["status", "--porcelain", "--untracked-files=no"], root).decode()
    return sorted(line[3:] for line in out.splitlines() if line.strip())


def _tracked(root: Path, rel: str) -> bool:
    try:
        git(["ls-files", "--error-unmatch", "--", rel], root)
        return True
    except UsageError:
        return False


@dataclass(frozen=True)
class Recorded:
    """The record just written, and whether its image had to be built."""

    record: Record
    built: bool


@holding_store  # until the note names the image: gc cannot remove it in between
def record(
    model: Path,
    *,
    name: str,
    spec_path: Path,
    command: str,
    allow_dirty: bool,
    store: Any,
    push: str | None = None,
    say: Say | None = None,
    cwd: Path | None = None,
) -> Recorded:
    from envlock.image.build import build_spec

    say = say or (lambda _m: None)
    root = repo_root(cwd or Path.cwd())
    spec_abs, lock_abs = spec_path.absolute(), spec_path.absolute().with_suffix(".lock")
    try:
        spec_rel = spec_abs.relative_to(root).as_posix()
        lock_rel = lock_abs.relative_to(root).as_posix()
    except ValueError:
        raise UsageError(f"{spec_path} is not inside the repository {root}") from None
    check_name(name)
    try:
        head = git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], root).decode().strip()
    except UsageError:
        raise UsageError(f"{root} has no commit yet", "commit the code, spec and lock first") from None
    branch = git(["rev-parse", "--abbrev-ref", "HEAD"], root).decode().strip()
    dirty = _dirty_paths(root)
    untracked = [p for p in (spec_rel, lock_rel) if not _tracked(root, p)]
    if (dirty or untracked) and not allow_dirty:
        what = ", ".join([*untracked, *dirty][:5])
        raise CheckFailed(
            f"the working tree is not committed ({what}); a record must point at the code that trained",
            "commit (including the spec and lock), or pass --allow-dirty to record it as dirty",
        )
    note_of(root, head)  # someone else's note on HEAD: refuse now, before building
    model_abs = (cwd or Path.cwd()) / model if not model.is_absolute() else model
    say(f"Hashing {model}")
    try:
        model_info = hash_model(model_abs)
    except OSError as exc:
        from envlock.boundary import os_error

        raise os_error(exc, exc.filename or model, "model") from None
    try:
        model_rel = model_abs.absolute().relative_to(root).as_posix()
    except ValueError:
        model_rel = str(model_abs.absolute())
    built = build_spec(spec_abs, store=store, say=say)
    reference = None
    if push:
        from envlock.image import registry

        reference = registry.push(store, built.image, push, say)
    from envlock.spec import load

    framework = load(spec_abs).framework
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body: dict[str, Any] = {
        "schema": SCHEMA,
        "name": name,
        "model": {"path": model_rel, **model_info},
        "commit": head,
        "branch": branch,
        "dirty": bool(dirty or untracked),
        "dirty_paths": [*untracked, *dirty],
        "spec": spec_rel,
        "lock": lock_rel,
        "env_id": built.env_id,
        "image_id": built.image_id,
        "platform": built.platform,
        "base": {"reference": built.base, "digest": built.base_digest},
        "layers": [{"diff_id": la.diff_id, "created_by": la.created_by} for la in built.image.layers],
        "registry": reference,
        "command": command,
        "created": created,
        "host": host_info(framework.name if framework else None),
    }
    body["id"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]
    parsed = parse(body, head)  # what we write must read back
    with _notes_lock(root):
        records = note_of(root, head)
        records.append(body)
        write_note(root, head, records)
    return Recorded(parsed, not built.reused)


# -- reading ------------------------------------------------------------------------------


def read_records(cwd: Path) -> Notes:
    """Every valid record of the repository, newest first, and a warning per note or record
    that was skipped (see ``envlock.manifest``).

    Raises:
        UsageError: outside a git repository.
    """
    root = repo_root(cwd)
    notes = read_notes(root)
    ordered = sorted(notes.records, key=lambda r: (r.created, r.id), reverse=True)
    return Notes(tuple(ordered), notes.errors)


def all_records(cwd: Path, warn: Say | None = None) -> list[Record]:
    """Every valid record of the repository, newest first; ``warn`` gets one line per
    note or record that was skipped."""
    found = read_records(cwd)
    for message in found.errors:
        if warn is not None:
            warn(message)
    return list(found.records)


def _commit_of(root: Path, rev: str) -> str:
    """The full name of the commit ``rev`` names (never read as an option by git)."""
    try:
        out = git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], root)
    except UsageError:
        raise UsageError(f"{rev!r} is not a commit of this repository") from None
    return out.decode().strip()


def find(ref: str, cwd: Path, warn: Say | None = None) -> Record:
    """``NAME`` (latest), ``NAME@REV`` (latest of that name on that commit), or a record ID.

    Raises:
        UsageError: no record matches (with the closest names as a hint), or REV is not a commit.
    """
    root = repo_root(cwd)
    records = all_records(root, warn)
    name, _, rev = ref.partition("@")
    if rev:
        commit = _commit_of(root, rev)
        hits = [r for r in records if r.name == name and r.commit == commit]
        if hits:
            return hits[0]
        if any(r.name == name for r in records):
            on = sorted({r.commit[:10] for r in records if r.name == name})
            raise UsageError(f"no record of {name!r} on {rev}", f"{name} was recorded on: {', '.join(on)}")
    else:
        hits = [r for r in records if r.name == name]
        if hits:
            return hits[0]
        by_id = [r for r in records if r.id.startswith(ref) and len(ref) >= 6]
        if len(by_id) == 1:
            return by_id[0]
    names = sorted({r.name for r in records})
    close = difflib.get_close_matches(name, names, n=3)
    hint = (
        f"did you mean: {', '.join(close)}"
        if close
        else f"recorded models: {', '.join(names[:10]) or 'none'}"
    )
    raise UsageError(f"no model named {name[:80]!r}", hint)


def check_model(rec: Record, cwd: Path) -> list[str]:
    """Re-hash the recorded model file; returns problems (empty when it matches)."""
    root = repo_root(cwd)
    model = rec.model
    path = Path(model.path)
    path = path if path.is_absolute() else root / path
    try:
        now = hash_model(path)
    except UsageError as exc:
        gone = exc.message.endswith("no such model file or directory")
        return [f"{model.path}: the model file is gone" if gone else exc.message]
    except OSError as exc:
        return [f"{model.path}: cannot be read ({exc.strerror or exc})"]
    if now["sha256"] != model.sha256:
        return [f"{model.path}: sha256 is {now['sha256']}, the record says {model.sha256}"]
    return []


def commit_exists(root: Path, commit: str) -> bool:
    try:
        git(["cat-file", "-e", f"{commit}^{{commit}}"], root)
        return True
    except UsageError:
        return False
