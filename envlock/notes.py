"""Model records in git notes, read with the git CLI only (no GitPython: ``verify`` stays lean).

A record's home is ``refs/notes/envlock``: one JSON note per commit, holding::

    {"schema": "envlock.manifest/v1",
     "records": [{"name": "resnet50", "commit": "<sha>", "lock": "specs/vision.lock",
                  "env_id": "sha256:...", ...}, ...]}

Each record is parsed and validated by :mod:`envlock.manifest` (a bad one is skipped with a
message, never a crash).  Reading costs
three git processes whatever the number of notes: ``git notes list``, then one
``git cat-file --batch`` for the notes and one for the files they point at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from envlock.gitcli import cat_files, git
from envlock.manifest import SCHEMA, Record, parse_note

__all__ = ["NOTES_REF", "SCHEMA", "Notes", "Record", "files_at", "read"]

NOTES_REF = "envlock"  # refs/notes/envlock


@dataclass(frozen=True)
class Notes:
    """Records found (each parsed by ``envlock.manifest.parse``), plus one message per note
    or record that could not be read as an ``envlock.manifest/v1`` record (it is skipped)."""

    records: tuple[Record, ...] = ()
    errors: tuple[str, ...] = ()


def read(cwd: Path) -> Notes:
    """Every model record under ``refs/notes/envlock`` of the repository at ``cwd``.

    Raises ``UsageError`` outside a git repository and ``ToolMissing`` without git.
    """
    listing = git(["notes", "--ref", NOTES_REF, "list"], cwd).decode().split()
    pairs = list(zip(listing[0::2], listing[1::2], strict=True))  # (note blob, commit)
    records: list[Record] = []
    errors: list[str] = []
    for (_, commit), blob in zip(pairs, cat_files((b for b, _ in pairs), cwd), strict=True):
        note = parse_note(blob or b"", commit)
        records.extend(note.records)
        errors.extend(note.warnings)
    return Notes(tuple(records), tuple(errors))


def files_at(records: Iterable[Record], cwd: Path) -> list[bytes | None]:
    """Each record's lock file as it was at the record's commit (``None`` where absent)."""
    return cat_files((f"{r.commit}:{r.lock}" for r in records), cwd)
