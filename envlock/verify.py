"""Fast, offline consistency checks for pre-commit: no network, no resolution, no heavy imports.

For each spec: the lock exists and parses, was made from this spec (spec-hash),
its env ID matches its content, every package is pinned with a sha256, it is in
canonical form, and every export equals what the lock renders.  Besides:

* a lock or export whose spec was deleted (an orphan);
* with ``staged``: a spec staged in git while its lock or exports are not;
* with ``records``: a model record (git notes) whose lock, at the recorded commit, no
  longer has the recorded env ID.

Input is any mix of spec, lock and export names (what pre-commit passes); each maps
back to its spec (``envlock.layout``).  git is used through its CLI, and only when asked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from envlock import export, layout
from envlock import lockfile as lockmod
from envlock.boundary import read_text
from envlock.errors import EnvlockError, UsageError
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
    if not lock_path.exists() and not lock_path.is_symlink():
        return [Problem(lock_path, "missing: the spec has no lock", relock)]
    if lock_path.is_dir():  # envlock lock cannot write there either: say so, not "re-lock"
        return [Problem(lock_path, "is a directory, not a lock", f"move it away, then {relock}")]
    try:
        text = read_text(lock_path, "lock", error=lockmod.LockError)
        lock = lockmod.parse(text, lock_path)
    except EnvlockError as exc:
        return [
            Problem(
                lock_path,
                re.sub(rf"^{re.escape(str(lock_path))}:(\d+): ", r"line \1: ", exc.message).removeprefix(
                    f"{lock_path}: "
                ),
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
        except (OSError, UnicodeDecodeError) as exc:
            why = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror or str(exc)
            found.append(Problem(path, f"export cannot be read: {why}", relock))
            continue
        if actual != expected:
            found.append(Problem(path, "export does not match the lock (edited by hand?)", relock))
    return found


@dataclass(frozen=True)
class Report:
    problems: tuple[Problem, ...]
    specs: tuple[Path, ...]  # the specs checked
    ignored: tuple[Path, ...] = ()  # names given that are not envlock's files


def orphan(path: Path) -> Problem:
    spec = layout.spec_for(path)
    kind = "lock" if path.suffix == ".lock" else "export"
    return Problem(path, f"orphaned {kind}: its spec {spec} was deleted", f"delete it, or restore {spec}")


def check(
    paths: Iterable[Path] | None = None,
    *,
    directory: Path = Path(layout.SPECS_DIR),
    staged: bool = False,
    records: bool = False,
) -> Report:
    """Check the specs behind ``paths`` (default: every spec and orphan in ``directory``).

    ``staged`` adds the git index checks (skipped outside a git work tree); ``records``
    checks every model record in git notes (``UsageError`` outside a repository).

    Raises:
        UsageError: (exit 2) a name in ``paths`` is a directory (``--help`` documents files).
    """
    if paths is not None:
        paths = list(paths)
        for path in paths:
            if path.is_dir():
                raise UsageError(
                    f"{path}: is a directory; verify takes spec, lock or export files",
                    "name the files (e.g. specs/*.toml), or give none to check every spec in specs/",
                )
    selection = layout.scan(directory) if paths is None else layout.select(paths)
    problems: list[Problem] = []
    for spec in selection.specs:
        problems.extend(verify_spec(spec))
    problems.extend(orphan(p) for p in selection.orphans)
    if staged:
        dirs = {p.parent for p in (*selection.specs, *selection.orphans)}
        if paths is None:
            dirs.add(directory)
        problems.extend(staged_problems(selection.specs, sorted(dirs)))
    if records:
        problems.extend(record_problems(Path.cwd()))
    unique = tuple(dict.fromkeys(problems))
    return Report(unique, selection.specs, selection.ignored)


def verify(paths: Iterable[Path], *, staged: bool = False, records: bool = False) -> list[Problem]:
    """The problems of the specs behind ``paths`` (spec, lock or export names)."""
    return list(check(paths, staged=staged, records=records).problems)


def _shown(absolute: Path) -> Path:
    """A path as the user would type it: relative to the current directory when inside it."""
    rel = os.path.relpath(absolute)
    return Path(absolute if rel.startswith("..") else rel)


def staged_problems(specs: Iterable[Path], directories: Iterable[Path]) -> list[Problem]:
    """A spec staged (new or changed in the index) while a lock or export of it is changed,
    deleted or untracked in the work tree: ``git add`` was forgotten.  Also a spec deleted
    in the index whose lock or exports remain.  Nothing outside a git work tree.

    Under pre-commit, unstaged changes to tracked files are stashed while hooks run, so
    those show up as a stale lock instead; untracked files are not stashed and show here.
    """
    from envlock import gitcli

    changes: dict[Path, gitcli.Change] = {}
    for directory in directories:  # each in its own repository: the files need not be in ours
        root = gitcli.toplevel(directory) if directory.is_dir() else None
        if root is not None:
            changes.update((root / c.path, c) for c in gitcli.status(directory, ["."]))
    found: list[Problem] = []
    for spec in specs:
        absolute = spec.resolve()
        change = changes.get(absolute)
        if change is None or not change.staged:
            continue
        for path in layout.derived(absolute, changes):
            if not changes[path].unstaged:
                continue
            shown = spec.with_name(path.name)
            what = {"?": "not added to git", "D": "deleted but not staged"}.get(
                changes[path].worktree, "changed but not staged"
            )
            found.append(Problem(shown, f"{what}, but {spec} is staged", f"git add {shown}"))
    for path, change in changes.items():
        if change.index == "D" and layout.spec_for(path) == path and path.parent.is_dir():
            if path.exists():  # deleted from the index only: `git rm --cached`
                continue
            leftovers = [p for p in path.parent.iterdir() if layout.spec_for(p) == path]
            found.extend(orphan(_shown(p)) for p in sorted(leftovers))
    return found


def record_problems(cwd: Path) -> list[Problem]:
    """Every model record whose lock, at the record's commit, is missing, does not parse,
    or does not have the recorded env ID (in its ``env-id`` line and by its content)."""
    from envlock import gitcli, notes

    root = gitcli.toplevel(cwd)
    if root is None:
        raise UsageError(
            "--records needs a git repository", "run it inside the repository holding the records"
        )
    read = notes.read(cwd)
    notes_ref = Path("refs/notes") / notes.NOTES_REF
    found = [
        Problem(notes_ref, error, f"fix the note: git notes --ref {notes.NOTES_REF} edit COMMIT")
        for error in read.errors
    ]
    for rec, blob in zip(read.records, notes.files_at(read.records, cwd), strict=True):
        shown = _shown(root / rec.lock)
        label = f"record {rec.name!r} at {rec.commit[:12]}"
        fix = (
            f"re-record the model, or drop the record: "
            f"git notes --ref {notes.NOTES_REF} edit {rec.note_commit[:12]}"
        )
        if blob is None:
            found.append(Problem(shown, f"{label}: the lock is not in that commit", fix))
            continue
        try:
            lock = lockmod.parse(blob.decode("utf-8", "replace"), f"{rec.commit[:12]}:{rec.lock}")
        except EnvlockError as exc:
            found.append(Problem(shown, f"{label}: the lock does not parse: {exc.message}", fix))
            continue
        if lock.env_id != rec.env_id:
            found.append(
                Problem(
                    shown,
                    f"{label}: recorded env ID {rec.env_id[:19]}… but the lock at that "
                    f"commit has {lock.env_id[:19]}…",
                    fix,
                )
            )
        found.extend(
            Problem(shown, f"{label}: the lock at that commit was edited: {message}", fix)
            for message in lockmod.problems(lock)
        )
    return found
