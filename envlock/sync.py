"""``envlock sync``: exchange ``refs/notes/envlock`` with a remote without losing a record.

git's own note merge strategies work on text lines, which would corrupt JSON, so
envlock merges itself: fetch the remote's notes into a side ref, record a merge
(keeping both histories), then rewrite each note whose record lists differ as
the union of both (by record ID), and push.  Records are never dropped, so two
machines that recorded different models on the same commit both keep theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from envlock.errors import ServiceUnavailable, UsageError
from envlock.gitcli import cat_files, git
from envlock.manifest import Note, parse_note
from envlock.notes import NOTES_REF
from envlock.recording import _notes_lock, repo_root, write_note
from envlock.urls import redact

REMOTE_REF = "refs/notes/envlock-remote"
LOCAL_REF = f"refs/notes/{NOTES_REF}"
Say = Callable[[str], None]


@dataclass(frozen=True)
class Synced:
    fetched: int  # records that came from the remote
    pushed: bool
    merged_notes: int


def _notes(root: Path, ref: str, warn: Say) -> dict[str, Note]:
    """Every note under ``refs/notes/REF``, parsed (``envlock.manifest.parse_note``)."""
    try:
        listing = git(["notes", "--ref", ref, "list"], root).decode().split()
    except UsageError:
        return {}
    pairs = list(zip(listing[0::2], listing[1::2], strict=True))
    out: dict[str, Note] = {}
    for (_, commit), blob in zip(pairs, cat_files((b for b, _ in pairs), root), strict=True):
        note = parse_note(blob or b"", commit)
        for message in note.warnings:
            warn(f"{ref}: {message}")
        out[commit] = note
    return out


def _has_ref(root: Path, ref: str) -> bool:
    try:
        git(["rev-parse", "--verify", "--quiet", ref], root)
        return True
    except UsageError:
        return False


def sync(remote: str = "origin", *, cwd: Path, say: Say | None = None) -> Synced:
    """Fetch the remote's notes, merge them into ours by record ID, push the result.

    Records from the remote are parsed (``envlock.manifest``): invalid ones are not merged
    and get a ``warning:`` line through ``say``; a note of ours that is not an envlock
    manifest is kept as it is.

    Raises:
        UsageError: no such remote, or not a git repository.
        ServiceUnavailable: the remote cannot be fetched from or pushed to.
    """
    say = say or (lambda _m: None)

    def warn(message: str) -> None:
        say(f"warning: {message}")

    root = repo_root(cwd)
    shown = redact(remote)  # a remote may be a URL with a password in it
    remotes = git(["remote"], root).decode().split()
    if remote.startswith("-") or any(c in remote for c in "\n\r\0"):
        raise UsageError(f"{remote[:80]!r} is not a remote name or URL", "name a remote: git remote -v")
    if remote not in remotes and "/" not in remote and ":" not in remote:
        raise UsageError(
            f"no remote named {shown!r}", f"remotes: {', '.join(remotes) or 'none'}; git remote add ..."
        )
    with _notes_lock(root):
        try:
            git(["fetch", "--quiet", "--end-of-options", remote, f"+{LOCAL_REF}:{REMOTE_REF}"], root)
            have_remote = True
        except UsageError as exc:
            if "couldn't find remote ref" in exc.message or "could not find remote ref" in exc.message:
                have_remote = False
            else:
                raise ServiceUnavailable(f"cannot fetch notes from {shown}: {exc.message}") from None
        fetched = merged = 0
        if have_remote:
            theirs = _notes(root, "envlock-remote", warn)
            if not _has_ref(root, LOCAL_REF):
                git(["update-ref", LOCAL_REF, REMOTE_REF], root)
                fetched = sum(len(v.records) for v in theirs.values())
            else:
                ours = _notes(root, NOTES_REF, lambda _m: None)
                # a merge commit keeping both histories, with our notes' content
                git(["notes", "--ref", NOTES_REF, "merge", "-q", "-s", "ours", REMOTE_REF], root)
                for commit in sorted(set(ours) | set(theirs)):
                    mine_note = ours.get(commit, Note(raw=()))
                    if mine_note.raw is None:  # someone else's note here: never overwritten
                        if commit in theirs and theirs[commit].records:
                            warn(f"kept the non-envlock note on {commit[:12]}; remote records not merged")
                        continue
                    mine = {str(r.get("id")): dict(r) for r in mine_note.raw}
                    # only records that parse come in from the remote
                    other = {r.id: r.to_json() for r in theirs.get(commit, Note()).records}
                    union = {**other, **mine}
                    if set(union) != set(mine):
                        fetched += len(set(union) - set(mine))
                        merged += 1
                        write_note(root, commit, list(union.values()))
        pushed = False
        if _has_ref(root, LOCAL_REF):
            try:
                git(["push", "--quiet", "--end-of-options", remote, f"{LOCAL_REF}:{LOCAL_REF}"], root)
                pushed = True
            except UsageError as exc:
                raise ServiceUnavailable(
                    f"cannot push notes to {shown}: {exc.message}", "envlock sync again"
                ) from None
    say(f"Synced records with {shown}: {fetched} new from the remote, {merged} note(s) merged")
    return Synced(fetched, pushed, merged)
