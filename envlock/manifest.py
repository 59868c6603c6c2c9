"""Model records as one typed, validated model (schema ``envlock.manifest/v1``).

A record arrives as JSON from a git note under ``refs/notes/envlock``, and notes are
fetched from remotes that anyone with push access can write (``envlock sync``), so every
field is parsed here before anything uses it: names against :data:`NAME_PATTERN`,
commits as full hex object names, digests through :func:`envlock.digest.parse_digest`,
paths as relative repository paths.  A record that fails is skipped with a warning that
names the commit its note is on; a note that is not an envlock manifest at all (plain
text, JSON of another shape) is reported the same way and never crashes a reader.

The JSON written is the record's original mapping (``Record.data``), so the bytes of
existing notes do not change when envlock rewrites them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envlock.digest import parse_digest, parse_hex
from envlock.errors import CheckFailed, UsageError

SCHEMA = "envlock.manifest/v1"
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
"""Model names: a letter or digit, then up to 127 letters, digits, ``.``, ``_`` or ``-``.

Safe as a file name, a YAML scalar, a Kubernetes label value prefix and a git note line."""

_NAME = re.compile(NAME_PATTERN)
_ID = re.compile(r"[0-9a-f]{12,64}")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 repositories
_PLATFORM = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RecordError(CheckFailed):
    """A record (or a note) that is not a valid ``envlock.manifest/v1`` record (exit 1)."""


def check_name(name: str) -> str:
    """Return ``name`` when it matches :data:`NAME_PATTERN`.

    Raises:
        UsageError: (exit 2) for anything else, naming the allowed characters.
    """
    if _NAME.fullmatch(name):
        return name
    raise UsageError(
        f"invalid model name {name[:80]!r}",
        "a name is a letter or digit, then up to 127 letters, digits, '.', '_' or '-'",
    )


@dataclass(frozen=True)
class ModelFile:
    """The trained model: ``path`` (relative to the repository root, or absolute outside it),
    ``kind`` ``"file"`` or ``"tree"``, ``sha256`` (64 hex), ``size`` in bytes, ``files`` count."""

    path: str
    kind: str
    sha256: str
    size: int
    files: int


@dataclass(frozen=True)
class Layer:
    """One image layer as recorded: ``diff_id`` (``sha256:``) and what created it."""

    diff_id: str
    created_by: str


@dataclass(frozen=True)
class Record:
    """One model record.

    ``note_commit`` is the commit the note holding it is attached to; ``data`` the record's
    JSON object as read (written back unchanged, so unknown fields survive).  Digests are
    ``sha256:<64 hex>``; ``commit`` a full hex object name; ``lock`` and ``spec`` paths
    relative to the repository root.
    """

    id: str
    name: str
    commit: str
    lock: str
    env_id: str
    image_id: str
    model: ModelFile
    note_commit: str
    platform: str = "linux-64"
    spec: str = ""
    branch: str = ""
    dirty: bool = False
    dirty_paths: tuple[str, ...] = ()
    base_reference: str = ""
    base_digest: str = ""
    layers: tuple[Layer, ...] = ()
    registry: str | None = None
    command: str = ""
    created: str = ""
    data: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def created_at(self) -> str:
        """``YYYY-MM-DD HH:MM:SS`` (UTC) for display."""
        return self.created[:19].replace("T", " ")

    def to_json(self) -> dict[str, Any]:
        """The record as JSON data (a copy of what was read or written)."""
        return json.loads(json.dumps(self.data))  # type: ignore[no-any-return]


def _str(data: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise RecordError(f"{where}: '{key}' must be a string")
    return value


def _line(data: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = _str(data, key, where, default)
    if _CONTROL.search(value):
        raise RecordError(f"{where}: '{key}' may not contain control characters")
    return value


def _repo_path(data: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = _line(data, key, where, default)
    if value == "" and default == "":
        return value
    parts = value.split("/")
    if not value or value.startswith(("/", "-")) or any(p in ("", ".", "..") for p in parts):
        raise RecordError(f"{where}: '{key}' {value[:80]!r} is not a path inside the repository")
    return value


def _int(data: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if type(value) is not int or value < 0 or value > 1 << 63:
        raise RecordError(f"{where}: '{key}' must be a non-negative integer")
    return value


def _model(value: object, where: str) -> ModelFile:
    if not isinstance(value, dict):
        raise RecordError(f"{where}: 'model' must be an object")
    kind = _str(value, "kind", where, "file")
    if kind not in ("file", "tree"):
        raise RecordError(f"{where}: model kind {kind[:20]!r} is not 'file' or 'tree'")
    return ModelFile(
        path=_line(value, "path", where),
        kind=kind,
        sha256=parse_hex(value.get("sha256"), source=f"{where}: model sha256"),
        size=_int(value, "size", where, 0),
        files=_int(value, "files", where, 1),
    )


def _layers(value: object, where: str) -> tuple[Layer, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RecordError(f"{where}: 'layers' must be a list")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise RecordError(f"{where}: layers[{i}] must be an object")
        out.append(
            Layer(
                parse_digest(item.get("diff_id"), source=f"{where}: layers[{i}].diff_id"),
                _str(item, "created_by", where, ""),
            )
        )
    return tuple(out)


def _registry(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or _CONTROL.search(value) or " " in value or "@" not in value:
        raise RecordError(f"{where}: 'registry' must be a REG/REPO@sha256:... reference")
    name, _, digest = value.rpartition("@")
    if not name or name.startswith("-"):
        raise RecordError(f"{where}: 'registry' {value[:80]!r} is not a reference")
    parse_digest(digest, source=f"{where}: registry digest")
    return value


def parse(data: object, note_commit: str, where: str | None = None) -> Record:
    """Parse one record (a JSON object) from the note on ``note_commit``.

    Raises:
        RecordError: (a ``CheckFailed``, exit 1) naming ``where`` (default ``record on
            COMMIT``) and the field, for a missing or malformed field.
        CheckFailed: for a digest that is not ``sha256:<64 hex>``.
    """
    where = where or f"record on {note_commit[:12]}"
    if not isinstance(data, dict):
        raise RecordError(f"{where}: a record must be a JSON object")
    schema = data.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise RecordError(f"{where}: schema {str(schema)[:40]!r} is not {SCHEMA}")
    name = _str(data, "name", where)
    if not _NAME.fullmatch(name):
        raise RecordError(f"{where}: model name {name[:80]!r} is not valid ({NAME_PATTERN})")
    where = f"{where} ({name})"
    ident = _str(data, "id", where)
    if not _ID.fullmatch(ident):
        raise RecordError(f"{where}: id {ident[:80]!r} is not a hex record ID")
    commit = _str(data, "commit", where)
    if not _COMMIT.fullmatch(commit):
        raise RecordError(f"{where}: commit {commit[:80]!r} is not a full hex commit name")
    platform = _str(data, "platform", where, "linux-64")
    if not _PLATFORM.fullmatch(platform):
        raise RecordError(f"{where}: platform {platform[:40]!r} is not a platform name")
    dirty = data.get("dirty", False)
    if not isinstance(dirty, bool):
        raise RecordError(f"{where}: 'dirty' must be true or false")
    dirty_paths = data.get("dirty_paths") or []
    if not isinstance(dirty_paths, list) or not all(isinstance(p, str) for p in dirty_paths):
        raise RecordError(f"{where}: 'dirty_paths' must be a list of strings")
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise RecordError(f"{where}: 'base' must be an object")
    base_digest = base.get("digest") or ""
    if base_digest:
        parse_digest(base_digest, source=f"{where}: base digest")
    host = data.get("host", {})
    if not isinstance(host, dict):
        raise RecordError(f"{where}: 'host' must be an object")
    command = data.get("command") or ""
    if not isinstance(command, str):
        raise RecordError(f"{where}: 'command' must be a string")
    return Record(
        id=ident,
        name=name,
        commit=commit,
        lock=_repo_path(data, "lock", where),
        env_id=parse_digest(data.get("env_id"), source=f"{where}: env_id"),
        image_id=parse_digest(data.get("image_id"), source=f"{where}: image_id"),
        model=_model(data.get("model"), where),
        note_commit=note_commit,
        platform=platform,
        spec=_repo_path(data, "spec", where, ""),
        branch=_line(data, "branch", where, ""),
        dirty=dirty,
        dirty_paths=tuple(dirty_paths),
        base_reference=_line(base, "reference", where, ""),
        base_digest=base_digest,
        layers=_layers(data.get("layers"), where),
        registry=_registry(data.get("registry"), where),
        command=command,
        created=_line(data, "created", where, ""),
        data=data,
    )


@dataclass(frozen=True)
class Note:
    """One note: the records that parsed, one warning per record or note that did not,
    and ``raw``: the record objects of an envlock manifest as read (``None`` when the note
    is not an envlock manifest at all)."""

    records: tuple[Record, ...] = ()
    warnings: tuple[str, ...] = ()
    raw: tuple[dict[str, Any], ...] | None = None


def parse_note(blob: bytes, note_commit: str) -> Note:
    """Parse a note's bytes: an ``envlock.manifest/v1`` object with a ``records`` list.

    Never raises for bad content: a note that is not JSON or not a manifest gives no records
    and one warning; each bad record is skipped with a warning naming the commit.
    """
    short = note_commit[:12]
    try:
        data = json.loads(blob)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Note(warnings=(f"note on {short} is not JSON ({str(exc)[:80]}); ignored",))
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return Note(warnings=(f"note on {short} is not an {SCHEMA} manifest; ignored",))
    items = data.get("records")
    if not isinstance(items, list):
        return Note(warnings=(f"note on {short}: 'records' must be a list; ignored",))
    records: list[Record] = []
    warnings: list[str] = []
    for i, item in enumerate(items):
        try:
            records.append(parse(item, note_commit, f"note on {short}: records[{i}]"))
        except CheckFailed as exc:
            warnings.append(f"{exc.message}; record skipped")
    raw = tuple(item for item in items if isinstance(item, dict))
    return Note(tuple(records), tuple(warnings), raw)


def render_note(records: Sequence[Mapping[str, Any]]) -> bytes:
    """A note's bytes for ``records`` (JSON objects): sorted by creation time and ID,
    ``indent=2``, sorted keys, a final newline (the format envlock has always written)."""
    ordered = sorted(records, key=lambda r: (str(r.get("created", "")), str(r.get("id", ""))))
    body = json.dumps({"schema": SCHEMA, "records": ordered}, indent=2, sort_keys=True) + "\n"
    return body.encode()
