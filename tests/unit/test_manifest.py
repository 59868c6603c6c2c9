"""Model records parsed into one typed model; the Kubernetes Job serialised, never templated."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
import yaml

from envlock.errors import CheckFailed, UsageError
from envlock.image.model import Image, Layer
from envlock.manifest import SCHEMA, Record, RecordError, check_name, parse, parse_note, render_note
from envlock.rebuilding import k8s_job

COMMIT = "a" * 40
DIGEST = "sha256:" + "b" * 64


def valid() -> dict[str, Any]:
    """A record as `envlock record` writes it."""
    return {
        "schema": SCHEMA,
        "id": "0123456789ab",
        "name": "resnet50",
        "model": {"path": "runs/m.pt", "sha256": "c" * 64, "size": 7, "kind": "file", "files": 1},
        "commit": COMMIT,
        "branch": "main",
        "dirty": False,
        "dirty_paths": [],
        "spec": "specs/vision.toml",
        "lock": "specs/vision.lock",
        "env_id": DIGEST,
        "image_id": "sha256:" + "d" * 64,
        "platform": "linux-64",
        "base": {"reference": "debian:bookworm", "digest": DIGEST},
        "layers": [{"diff_id": DIGEST, "created_by": "base"}],
        "registry": None,
        "command": "python train.py --epochs 90",
        "created": "2026-11-30T10:00:00.000001Z",
        "host": {"python": "3.11.2"},
    }


def test_a_valid_record_parses_into_typed_fields() -> None:
    rec = parse(valid(), COMMIT)
    assert rec.name == "resnet50" and rec.id == "0123456789ab" and rec.commit == COMMIT
    assert rec.model.sha256 == "c" * 64 and rec.model.size == 7
    assert rec.layers[0].diff_id == DIGEST and rec.base_digest == DIGEST
    assert rec.created_at == "2026-11-30 10:00:00"
    assert rec.to_json() == valid()


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("name", "x\n---\nkind: Secret", "model name"),
        ("name", "-rf", "model name"),
        ("name", "a" * 129, "model name"),
        ("name", 7, "'name' must be a string"),
        ("id", "../../etc", "not a hex record ID"),
        ("commit", "HEAD", "not a full hex commit name"),
        ("commit", "--output=/tmp/x", "not a full hex commit name"),
        ("lock", "../outside.lock", "not a path inside the repository"),
        ("lock", "/etc/passwd", "not a path inside the repository"),
        ("lock", "specs/x.lock\nHEAD", "control characters"),
        ("env_id", "sha256:0", "is not a sha256 digest"),
        ("image_id", None, "is not a sha256 digest"),
        ("model", "x", "'model' must be an object"),
        ("model", {"path": "m", "sha256": "zz", "size": 1}, "not a sha256 hex digest"),
        ("model", {"path": "m", "sha256": "c" * 64, "size": -1}, "non-negative integer"),
        ("layers", [{"diff_id": "sha256:../x"}], "layers[0].diff_id"),
        ("layers", {"a": 1}, "'layers' must be a list"),
        ("registry", "reg/repo:latest", "REG/REPO@sha256"),
        ("registry", "reg/repo@sha256:abc", "registry digest"),
        ("dirty", "no", "'dirty' must be true or false"),
        ("platform", "linux 64", "not a platform name"),
        ("host", [], "'host' must be an object"),
        ("schema", "envlock.manifest/v9", "is not envlock.manifest/v1"),
    ],
)
def test_bad_fields_are_record_errors_naming_the_field(field: str, value: object, words: str) -> None:
    data = valid()
    data[field] = value
    with pytest.raises(CheckFailed) as caught:
        parse(data, COMMIT)
    assert words in caught.value.message
    assert caught.value.exit_code == 1


def test_names_are_checked_at_record_time() -> None:
    assert check_name("resnet-50_v1.2") == "resnet-50_v1.2"
    for bad in ("", "a b", "x\ny", "a/b", "a@b", ".hidden", "é"):
        with pytest.raises(UsageError) as caught:
            check_name(bad)
        assert caught.value.exit_code == 2


def test_a_note_skips_bad_records_with_a_warning_naming_the_commit() -> None:
    bad = valid() | {"env_id": "sha256:0", "name": "broken"}
    note = parse_note(json.dumps({"schema": SCHEMA, "records": [valid(), bad, "text"]}).encode(), COMMIT)
    assert [r.name for r in note.records] == ["resnet50"]
    assert len(note.warnings) == 2
    assert all(w.startswith(f"note on {COMMIT[:12]}: records[") for w in note.warnings)
    assert note.raw is not None and len(note.raw) == 2  # the bad object is kept for rewriting


@pytest.mark.parametrize(
    "blob",
    [b"plain text from someone else", b"\xff\xfe", b"[1, 2]", b'{"schema": "other"}', b"[" * 100000, b""],
)
def test_a_note_that_is_not_a_manifest_is_a_warning_never_a_crash(blob: bytes) -> None:
    note = parse_note(blob, COMMIT)
    assert note.records == () and note.raw is None
    (warning,) = note.warnings
    assert warning.startswith(f"note on {COMMIT[:12]} ") and warning.endswith("ignored")


def test_render_note_keeps_the_bytes_envlock_has_always_written() -> None:
    records = [valid(), valid() | {"id": "ffffffffffff", "created": "2026-01-01T00:00:00.000000Z"}]
    old = json.dumps(
        {"schema": SCHEMA, "records": sorted(records, key=lambda r: (r["created"], r["id"]))},
        indent=2,
        sort_keys=True,
    )
    assert render_note(records) == (old + "\n").encode()


def image(cuda: str = "cpu") -> Image:
    config = {"config": {"WorkingDir": "/workspace", "Labels": {"dev.envlock.cuda": cuda}}}
    return Image(config, (Layer(DIGEST, DIGEST, 1),))


def test_k8s_job_is_one_document_whatever_the_record_holds() -> None:
    rec = parse(valid(), COMMIT)
    # a record built past the parser (as an old, template-based renderer would have taken it)
    hostile = replace(rec, name="x\n---\napiVersion: v1\nkind: Secret")
    reference = "reg.example/models/m@" + DIGEST
    for r in (rec, hostile):
        text = k8s_job(r, image(), reference, ["python", "-c", "print(1)\n---\nkind: Pod"])
        docs = list(yaml.safe_load_all(text))
        assert len(docs) == 1
        job = docs[0]
        assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == reference
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "print(1)\n---\nkind: Pod"


def test_k8s_job_is_a_valid_v1_job_with_gpu_limits_for_cuda() -> None:
    from kubernetes.client import ApiClient, V1Job

    rec = parse(valid(), COMMIT)
    text = k8s_job(rec, image("12.4"), "reg.example/m@" + DIGEST, ["python", "train.py"])
    assert text.startswith("# Generated by `envlock rebuild resnet50 --k8s-job`")
    parsed = ApiClient().deserialize(json.dumps(yaml.safe_load(text)), "V1Job", "application/json")
    assert isinstance(parsed, V1Job)
    container = parsed.spec.template.spec.containers[0]
    assert container.command == ["python", "train.py"]
    assert container.resources.limits == {"nvidia.com/gpu": "1"} or container.resources.limits == {
        "nvidia.com/gpu": 1
    }
    assert parsed.metadata.labels["envlock.dev/record"] == rec.id
    assert parsed.spec.template.spec.restart_policy == "Never"


def test_k8s_job_needs_a_digest_reference() -> None:
    rec = parse(valid(), COMMIT)
    for ref in ("reg/m:latest", "reg/m@sha256:short"):
        with pytest.raises(UsageError):
            k8s_job(rec, image(), ref, [])


def test_record_type_is_frozen() -> None:
    rec = parse(valid(), COMMIT)
    assert isinstance(rec, Record)
    with pytest.raises(AttributeError):
        rec.name = "other"  # type: ignore[misc]
    assert isinstance(RecordError("x"), CheckFailed)
