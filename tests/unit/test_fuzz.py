"""Property tests: whatever comes in (text, TOML of any shape, bytes, JSON of any shape), the
spec, lock, record and digest parsers give a result or an EnvlockError, never another
exception.  Kept fast: tuned ``max_examples``, no deadline."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from envlock import lockfile as lockmod
from envlock import spec as specmod
from envlock import tomlwrite
from envlock.digest import is_digest, parse_digest, parse_hex
from envlock.errors import EnvlockError
from envlock.image.manifest import parse as parse_manifest
from envlock.manifest import parse, parse_note

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPEC_PATH = Path("specs/fuzz.toml")

SPEC_KEYS = [
    "name", "python", "platforms", "framework", "pip", "conda", "image", "version", "cuda",
    "packages", "indexes", "index-url", "find-links", "no-index", "exclude-newer", "channels",
    "base", "system", "env", "workdir", "bytecode",
]  # fmt: skip
LOCK_KEYS = [
    "version", "env-id", "spec-hash", "meta", "platforms", "name", "python", "cuda", "base",
    "base-digest", "packages", "manager", "url", "sha256", "size", "build", "channel", "subdir",
    "md5", "depends", "env", "workdir", "system", "bytecode", "pip-options", "conda-channels",
]  # fmt: skip

scalars = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["3.11", "linux-64", "pytorch", "2.5", "12.4", "cpu", "numpy<2", "debian:bookworm", "pip"]
    ),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.booleans(),
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
)


def shapes(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """TOML documents built from the format's own keys, with values of any TOML shape."""
    values = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.sampled_from(keys) | st.text(min_size=1, max_size=8), inner, max_size=4),
        ),
        max_leaves=12,
    )
    return st.dictionaries(st.sampled_from(keys), values, max_size=8)


def toml_text(data: dict[str, Any]) -> str | None:
    try:
        return tomlwrite.dumps(data)
    except Exception:  # a shape the writer does not do (e.g. a mixed array): skip it
        return None


def spec_or_error(text: str) -> None:
    for strict in (True, False):
        try:
            result = specmod.parse(text, SPEC_PATH, strict=strict)
        except EnvlockError:
            continue
        assert isinstance(result, specmod.Spec)


def lock_or_error(text: str) -> None:
    try:
        result = lockmod.parse(text, "fuzz.lock")
    except EnvlockError:
        return
    assert isinstance(result, lockmod.Lock)
    lockmod.problems(result)  # checking a parsed lock never crashes either
    lockmod.render(result)


DEEP = "x = " + "[" * 3000 + "]" * 3000 + "\n"
HUGE = "x = " + "9" * 5000 + "\n"


@FAST
@given(st.text(max_size=300))
@example(DEEP)
@example(HUGE)
@example('python = "3.11"\n[pip]\nexclude-newer = 0001-01-01T00:00:00+14:00\n')
@example('python = "3.11"\n[pip]\nexclude-newer = "9999-12-31T23:59:59-10:00"\n')
def test_spec_parser_on_any_text(text: str) -> None:
    spec_or_error(text)


@FAST
@given(shapes(SPEC_KEYS))
def test_spec_parser_on_any_toml_shape(data: dict[str, Any]) -> None:
    text = toml_text(data)
    if text is not None:
        spec_or_error(text)
        spec_or_error('python = "3.11"\n' + text if "python" not in data else text)


@FAST
@given(st.binary(max_size=200))
def test_spec_load_on_any_bytes(tmp_path_factory: Any, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "x.toml"
    path.write_bytes(data)
    with contextlib.suppress(EnvlockError):
        specmod.load(path)


@FAST
@given(st.text(max_size=300))
@example(DEEP)
@example("version = 1\n" + HUGE)
def test_lock_parser_on_any_text(text: str) -> None:
    lock_or_error(text)


@FAST
@given(shapes(LOCK_KEYS))
def test_lock_parser_on_any_toml_shape(data: dict[str, Any]) -> None:
    for doc in (data, {**data, "version": 1}):
        text = toml_text(doc)
        if text is not None:
            lock_or_error(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=15,
)
RECORD_KEYS = [
    "schema", "id", "name", "model", "commit", "branch", "dirty", "dirty_paths", "spec", "lock",
    "env_id", "image_id", "platform", "base", "layers", "registry", "command", "created", "host",
]  # fmt: skip
records = st.dictionaries(st.sampled_from(RECORD_KEYS), json_values, max_size=19)


@FAST
@given(json_values | records)
def test_record_parser_on_any_json(data: Any) -> None:
    with contextlib.suppress(EnvlockError):
        parse(data, "a" * 40)


@FAST
@given(st.binary(max_size=300) | st.lists(json_values | records, max_size=3).map(
    lambda rs: json.dumps({"schema": "envlock.manifest/v1", "records": rs}).encode()
))  # fmt: skip
@example(b"[" * 100000)
@example(b'{"schema": "envlock.manifest/v1", "records": {"a": 1}}')
def test_note_parser_on_any_bytes(blob: bytes) -> None:
    note = parse_note(blob, "b" * 40)  # never raises
    if note.raw is None:  # not a manifest: exactly one warning says so
        assert note.records == () and len(note.warnings) == 1
    else:
        assert len(note.records) + len(note.warnings) >= len(note.raw)


@FAST
@given(json_values | st.text(max_size=80) | st.from_regex(r"sha256:[0-9a-fA-F]{60,68}", fullmatch=True))
def test_digest_parsers_on_anything(value: Any) -> None:
    for parser in (parse_digest, parse_hex):
        try:
            out = parser(value, source="fuzz")
        except EnvlockError:
            continue
        assert out == value
    if is_digest(value):
        assert parse_digest(value, source="fuzz") == value


@FAST
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
@example(b"[" * 100000)
@example(b'{"layers": [{"digest": "sha256:../../x", "size": 1}], "config": {"digest": 1}}')
def test_manifest_parser_on_anything(data: bytes) -> None:
    with contextlib.suppress(EnvlockError):
        parse_manifest(data, "fuzz")
