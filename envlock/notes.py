"""Model records in git notes, read with the git CLI only (no GitPython: ``verify`` stays lean).

A record's home is ``refs/notes/envlock``: one JSON note per commit, holding::

    {"schema": "envlock.manifest/v1",
     "records": [{"name": "resnet50", "commit": "<sha>", "lock": "specs/vision.lock",
                  "env_id": "sha256:...", ...}, ...]}

This module knows only that minimal contract (``name``, ``commit``, ``lock`` relative to
the repository root, ``env_id``); other fields are kept in ``Record.data``.  Reading costs
three git processes whatever the number of notes: ``git notes list``, then one
``git cat-file --batch`` for the notes and one for the files they point at.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.gitcli import cat_files, git

NOTES_REF = "envlock"  # refs/notes/envlock
SCHEMA = "envlock.manifest/v1"
_FIELDS = ("name", "commit", "lock", "env_id")


@dataclass(frozen=True)
class Record:
    name: str
    commit: str
    lock: str  # path relative to the repository root
    env_id: str
    note_commit: str  # the commit the note is attached to
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Notes:
    """Records found, plus one message per note that could not be read as a manifest."""

    records: tuple[Record, ...] = ()
    errors: tuple[str, ...] = ()


def _records(note: bytes, note_commit: str) -> tuple[list[Record], str | None]:
    short = note_commit[:12]
    try:
        data = json.loads(note)
    except (UnicodeDecodeError, ValueError) as exc:
        return [], f"note on {short} is not JSON: {exc}"
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return [], f"note on {short} is not an {SCHEMA} manifest"
    raw = data.get("records")
    if not isinstance(raw, list):
        return [], f"note on {short}: 'records' must be a list"
    records = []
    for i, rec in enumerate(raw):
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in _FIELDS):
            return [], f"note on {short}: records[{i}] lacks one of {', '.join(_FIELDS)}"
        records.append(Record(rec["name"], rec["commit"], rec["lock"], rec["env_id"], note_commit, rec))
    return records, None


def read(cwd: Path) -> Notes:
    """Every model record under ``refs/notes/envlock`` of the repository at ``cwd``.

    Raises ``UsageError`` outside a git repository and ``ToolMissing`` without git.
    """
    listing = git(["notes", "--ref", NOTES_REF, "list"], cwd).decode().split()
    pairs = list(zip(listing[0::2], listing[1::2], strict=True))  # (note blob, commit)
    records: list[Record] = []
    errors: list[str] = []
    for (_, commit), blob in zip(pairs, cat_files((b for b, _ in pairs), cwd), strict=True):
        found, error = _records(blob or b"", commit)
        records.extend(found)
        if error:
            errors.append(error)
    return Notes(tuple(records), tuple(errors))


def files_at(records: Iterable[Record], cwd: Path) -> list[bytes | None]:
    """Each record's lock file as it was at the record's commit (``None`` where absent)."""
    return cat_files((f"{r.commit}:{r.lock}" for r in records), cwd)
