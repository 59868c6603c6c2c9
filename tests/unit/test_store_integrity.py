"""The store under hostile input: forged digests, damaged blobs and index files, gc beside builds."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from envlock.errors import CheckFailed, EnvlockError, StoreError, UsageError
from envlock.image import manifest as manifests
from envlock.image import oci
from envlock.image.build import load_image
from envlock.image.model import Image, Layer
from envlock.store import OCI_MANIFEST, EnvEntry, Store, canonical_json


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


GOOD = sha(b"good")
TRAVERSAL = "../../../planted/layer.tar"
# 64 characters after "sha256:" that walk out of blobs/sha256/: what a forged manifest carries
FORGED_PATH = "sha256:" + "./" * ((64 - len(TRAVERSAL)) // 2) + "." * ((64 - len(TRAVERSAL)) % 2) + TRAVERSAL
BAD_DIGESTS: list[Any] = [
    FORGED_PATH,
    "sha256:" + "/" * 64,
    GOOD.upper(),
    "SHA256:" + GOOD[7:],
    "sha256:" + GOOD[7:].upper(),
    "sha512:" + hashlib.sha512(b"x").hexdigest(),
    "sha512:" + GOOD[7:],
    GOOD[:-1],  # 63 hex characters
    GOOD + "0",  # 65
    GOOD + "\n",
    " " + GOOD,
    GOOD[7:],  # no algorithm
    "sha256:" + "g" * 64,
    "sha256:",
    "",
    None,
    64,
    ["sha256:" + "0" * 64],
    {"digest": GOOD},
    True,
]


def test_the_forged_digest_has_the_length_of_a_real_one() -> None:
    assert len(FORGED_PATH) == len(GOOD)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def manifest_with(layer_digest: Any, config_digest: Any = None) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest or GOOD,
            "size": 1,
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": 1}
        ],
    }


# -- one parser for every digest ---------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_DIGESTS, ids=repr)
def test_a_manifest_with_a_malformed_layer_digest_is_refused(bad: Any) -> None:
    with pytest.raises(CheckFailed, match=r"layers\[0\]\.digest"):
        manifests.parse(canonical_json(manifest_with(bad)), "the manifest")


@pytest.mark.parametrize("bad", BAD_DIGESTS, ids=repr)
def test_a_manifest_with_a_malformed_config_digest_is_refused(bad: Any) -> None:
    data = manifest_with(GOOD)
    data["config"]["digest"] = bad
    with pytest.raises(CheckFailed, match=r"config\.digest"):
        manifests.parse(canonical_json(data), "the manifest")


@pytest.mark.parametrize("bad", BAD_DIGESTS, ids=repr)
def test_an_index_with_a_malformed_digest_is_refused(bad: Any) -> None:
    index = {"manifests": [{"digest": bad, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}}]}
    with pytest.raises(CheckFailed, match=r"manifests\[0\]\.digest"):
        manifests.parse(json.dumps(index), "the index")


@pytest.mark.parametrize("bad", BAD_DIGESTS, ids=repr)
def test_a_config_with_a_malformed_diff_id_is_refused(bad: Any) -> None:
    with pytest.raises(CheckFailed, match=r"diff_ids\[1\]"):
        manifests.diff_ids({"rootfs": {"diff_ids": [GOOD, bad]}}, "the config")


@pytest.mark.parametrize(
    "document",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"42",
        b'"sha256:"',
        b'{"schemaVersion": 2}',
        b'{"config": []}',
        b'{"config": {"digest": "%s", "size": -1}, "layers": []}' % GOOD.encode(),
        b'{"config": {"digest": "%s", "size": "1"}, "layers": []}' % GOOD.encode(),
        b'{"config": {"digest": "%s", "size": true}, "layers": []}' % GOOD.encode(),
        b'{"config": {"digest": "%s"}, "layers": {}}' % GOOD.encode(),
        b'{"config": {"digest": "%s"}, "layers": [7]}' % GOOD.encode(),
        b'{"config": {"digest": "%s", "mediaType": 3}}' % GOOD.encode(),
        b'{"config": {"digest": "%s"}, "annotations": {"a": 1}}' % GOOD.encode(),
        b'{"manifests": "none"}',
        b'{"manifests": [{"digest": "%s", "platform": []}]}' % GOOD.encode(),
        b"[" * 100_000,
    ],
    ids=lambda d: repr(d[:40]),
)
def test_a_malformed_manifest_is_one_check_failure(document: bytes) -> None:
    with pytest.raises(CheckFailed, match="the manifest"):
        manifests.parse(document, "the manifest")


@pytest.mark.parametrize("bad", BAD_DIGESTS, ids=repr)
def test_the_store_never_builds_a_path_from_a_malformed_digest(store: Store, bad: Any) -> None:
    with pytest.raises(CheckFailed):
        store.blob_path(bad)
    with pytest.raises(CheckFailed):
        store.has_blob(bad)
    with pytest.raises(CheckFailed):
        store.blob_intact(bad)
    with pytest.raises(CheckFailed):
        store.tag("ref", bad, 1)
    with pytest.raises(CheckFailed):
        store.find_env(bad)


BAD_HEX: list[Any] = [
    FORGED_PATH[7:],
    GOOD[7:].upper(),
    GOOD[8:],
    GOOD[7:] + "0",
    GOOD,
    "g" * 64,
    "",
    None,
    0,
    [GOOD[7:]],
]


@pytest.mark.parametrize("bad", BAD_HEX, ids=repr)
def test_the_store_never_builds_an_artifact_path_from_a_malformed_sha256(store: Store, bad: Any) -> None:
    with pytest.raises(CheckFailed):
        store.artifact_path(bad)


@pytest.mark.parametrize("field", ["env_id", "manifest", "image_id"])
@pytest.mark.parametrize("bad", BAD_DIGESTS[:6], ids=repr)
def test_an_env_index_entry_with_a_malformed_digest_is_refused(field: str, bad: Any) -> None:
    data: dict[str, Any] = {
        "env_id": GOOD,
        "manifest": GOOD,
        "image_id": GOOD,
        "name": "x",
        "platform": "linux-64",
    }
    data[field] = bad
    with pytest.raises(CheckFailed, match=field):
        EnvEntry.parse(data, "envs/x.json")


def plant(tmp_path: Path) -> Path:
    """A file where a forged digest points: outside the store, never to be read or linked."""
    store_root = tmp_path / "store"
    target = (store_root / "blobs" / "sha256" / FORGED_PATH[7:]).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"planted by an attacker")
    assert not target.is_relative_to(store_root.resolve())
    return target


def test_a_stored_manifest_naming_a_path_outside_the_store_is_not_an_image(tmp_path: Path) -> None:
    planted = plant(tmp_path)
    store = Store(tmp_path / "store")
    config = store.put_blob(canonical_json({"rootfs": {"type": "layers", "diff_ids": [FORGED_PATH]}}))
    manifest = store.put_blob(canonical_json(manifest_with(FORGED_PATH, config)))
    env = sha(b"env")
    store.record_env(EnvEntry(env, manifest, config, "app"))

    assert store.find_env(env) is None  # not reused: the build makes it again
    assert store.image_intact(manifest) is False
    with pytest.raises(CheckFailed, match=r"layers\[0\]\.digest"):
        load_image(store, manifest)
    problems = store.fsck()
    assert any("layers[0].digest" in p for p in problems), problems
    assert store.manifest_closure(manifest) == {manifest}
    assert planted.read_bytes() == b"planted by an attacker"


def test_an_oci_layout_naming_a_path_outside_it_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    from envlock.image import base

    layout = tmp_path / "layout"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    outside = (layout / "blobs" / "sha256" / FORGED_PATH[7:]).resolve()
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_bytes(b"{}")
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"manifests": [{"digest": FORGED_PATH, "size": 2}]}))
    store = Store(tmp_path / "store")

    with pytest.raises(CheckFailed, match=r"index.json: manifests\[0\]\.digest"):
        base.resolve(store, f"oci:{layout}", "3.11")
    with pytest.raises(CheckFailed, match="is not a sha256 digest"):
        base.resolve(store, f"oci:{layout}@{FORGED_PATH}", "3.11")


# -- blobs are checked before they are trusted -------------------------------------------------


def corrupt(store: Store, digest: str, data: bytes = b"rot") -> None:
    path = store.blob_path(digest)
    path.chmod(0o644)
    path.write_bytes(data)


def test_a_published_blob_is_trusted_by_its_stamp_without_hashing(store: Store, monkeypatch) -> None:
    digest = store.put_blob(b"layer bytes")
    monkeypatch.setattr("envlock.store.file_sha256", lambda _p: pytest.fail("hashed again"))

    assert store.blob_intact(digest)


def test_a_blob_whose_stamp_differs_is_hashed_again(store: Store) -> None:
    digest = store.put_blob(b"layer bytes")
    path = store.blob_path(digest)
    os.utime(path, ns=(1, 1))  # same bytes, another mtime: hashed, found good, stamped again

    assert store.blob_intact(digest)
    corrupt(store, digest, b"layer bytez")
    assert not store.blob_intact(digest)


def test_a_blob_without_a_stamp_is_hashed(store: Store) -> None:
    digest = store.put_blob(b"from an older envlock")
    (store.verified / digest[7:]).unlink()

    assert store.blob_intact(digest)
    assert (store.verified / digest[7:]).is_file()


def test_reading_a_corrupt_blob_fails_naming_it(store: Store) -> None:
    digest = store.put_blob(b'{"a": 1}')
    corrupt(store, digest, b'{"a": 2}')

    with pytest.raises(CheckFailed, match="is corrupt") as exc:
        store.read_json(digest)
    assert digest in exc.value.message
    assert "envlock store fsck" in (exc.value.hint or "")


def test_put_blob_rewrites_a_damaged_copy(store: Store) -> None:
    digest = store.put_blob(b"config")
    corrupt(store, digest)

    assert store.put_blob(b"config") == digest
    assert store.blob_path(digest).read_bytes() == b"config"
    assert store.fsck() == []


def test_a_new_layer_replaces_a_damaged_copy_of_itself(store: Store) -> None:
    digest, _ = store.put_blob_stream(io.BytesIO(b"x" * 5000))
    corrupt(store, digest)

    writer = store.writer()
    writer.write(b"x" * 5000)
    assert store.publish(writer)[0] == digest
    assert store.blob_intact(digest)
    assert store.fsck() == []


def put_image(store: Store, layers: list[bytes]) -> tuple[EnvEntry, Image]:
    stored = [store.put_blob(data) for data in layers]
    config = {"rootfs": {"type": "layers", "diff_ids": stored}, "history": []}
    image = Image(config, tuple(Layer(d, d, len(b)) for d, b in zip(stored, layers, strict=True)))
    manifest = store.put_blob(image.manifest_bytes())
    store.put_blob(image.config_bytes)
    entry = EnvEntry(sha(b"env"), manifest, image.image_id, "app")
    store.record_env(entry)
    return entry, image


def test_an_image_with_a_damaged_layer_is_not_reused(store: Store) -> None:
    entry, image = put_image(store, [b"layer one", b"layer two"])
    assert store.find_env(entry.env_id) == entry

    corrupt(store, image.layers[1].digest)

    assert store.find_env(entry.env_id) is None


def test_a_layer_cache_entry_whose_blob_is_damaged_is_a_miss(store: Store) -> None:
    from envlock.image import venv

    layer = Layer(store.put_blob(b"tar"), "", 3)
    venv.cache_by_key(store, "k" * 64, layer)
    assert venv.cached_by_key(store, "k" * 64, "x") is not None

    corrupt(store, layer.digest)
    assert venv.cached_by_key(store, "k" * 64, "x") is None
    (store.root / "layers" / f"{'k' * 64}.json").write_text('{"digest": "../../etc/passwd", "size": 1}')
    assert venv.cached_by_key(store, "k" * 64, "x") is None


@pytest.mark.parametrize("sink", ["oci", "docker-archive"])
def test_an_export_refuses_a_damaged_blob_and_writes_nothing(store: Store, tmp_path: Path, sink: str) -> None:
    _, image = put_image(store, [b"layer one", b"layer two"])
    bad = image.layers[0].digest
    corrupt(store, bad)
    target = tmp_path / "out"

    with pytest.raises(CheckFailed, match="is corrupt") as exc:
        if sink == "oci":
            oci.write_layout(store, image, target, "app")
        else:
            oci.write_docker_archive(store, image, target, ["app:1"])
    assert bad in exc.value.message
    assert "envlock store fsck" in (exc.value.hint or "")
    assert not target.exists()


def test_an_export_refuses_a_missing_blob(store: Store, tmp_path: Path) -> None:
    _, image = put_image(store, [b"layer one"])
    store.blob_path(image.layers[0].digest).unlink()

    with pytest.raises(CheckFailed, match="is not in the store"):
        oci.write_docker_archive(store, image, tmp_path / "a.tar", ["app:1"])


def test_an_oci_export_replaces_a_damaged_blob_already_in_the_layout(store: Store, tmp_path: Path) -> None:
    _, image = put_image(store, [b"layer one"])
    target = tmp_path / "layout"
    oci.write_layout(store, image, target, "app")
    copy = target / "blobs" / "sha256" / image.layers[0].digest[7:]
    copy.unlink()
    copy.write_bytes(b"stale copy from elsewhere")

    oci.write_layout(store, image, target, "app")

    assert copy.read_bytes() == b"layer one"


# -- export targets ----------------------------------------------------------------------------


def test_oci_targets(tmp_path: Path) -> None:
    oci.check_layout_target(tmp_path / "new")  # created
    (tmp_path / "empty").mkdir()
    oci.check_layout_target(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is not a directory"):
        oci.check_layout_target(tmp_path / "file")
    with pytest.raises(UsageError, match="does not exist"):
        oci.check_layout_target(tmp_path / "missing" / "layout")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="non-empty directory and not an OCI image layout"):
        oci.check_layout_target(tmp_path / "full")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (tmp_path / "broken" / "index.json").write_text("{not json")
    with pytest.raises(UsageError, match="not a readable OCI layout"):
        oci.check_layout_target(tmp_path / "broken")


def test_oci_export_adds_to_an_existing_layout(store: Store, tmp_path: Path) -> None:
    _, image = put_image(store, [b"layer one"])
    target = tmp_path / "layout"
    oci.write_layout(store, image, target, "one")
    oci.write_layout(store, image, target, "two")

    index = json.loads((target / "index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert names == ["one", "two"]


def test_docker_archive_targets(tmp_path: Path) -> None:
    oci.check_archive_target(tmp_path / "new.tar")
    (tmp_path / "old.tar").write_text("replaced atomically")
    oci.check_archive_target(tmp_path / "old.tar")
    with pytest.raises(UsageError, match="is a directory"):
        oci.check_archive_target(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        oci.check_archive_target(tmp_path / "missing" / "a.tar")


def test_docker_archive_replaces_an_existing_file(store: Store, tmp_path: Path) -> None:
    _, image = put_image(store, [b"layer one"])
    target = tmp_path / "image.tar"
    target.write_text("an old archive")

    oci.write_docker_archive(store, image, target, ["app:1"])

    with tarfile.open(target) as tar:
        assert "manifest.json" in tar.getnames()
    assert [p.name for p in tmp_path.iterdir() if p.name != "store"] == ["image.tar"]


# -- damaged index files: fsck reports, nothing crashes ----------------------------------------


@pytest.mark.parametrize(
    "text", ["", "{", "[]", '{"manifests": 3}', '{"manifests": [{"digest": "sha256:../x"}]}', "\udcff"]
)
def test_fsck_reports_a_damaged_index_json(store: Store, text: str) -> None:
    (store.root / "index.json").write_bytes(text.encode("utf-8", "surrogateescape"))

    problems = store.fsck()

    assert len(problems) == 1 and problems[0].startswith("index.json:"), problems


@pytest.mark.parametrize(
    "text",
    ["", "nope", "[]", '{"env_id": 1}', '{"env_id": "sha256:x", "manifest": null}', "\udcff"],
)
def test_fsck_reports_a_damaged_env_index_file(store: Store, text: str) -> None:
    (store.envs / f"{'a' * 64}-linux-64.json").write_bytes(text.encode("utf-8", "surrogateescape"))

    problems = store.fsck()

    assert len(problems) == 1 and problems[0].startswith("env index file"), problems
    assert store.list_envs() == []
    assert store.find_env("sha256:" + "a" * 64) is None


def test_fsck_reports_a_stray_file_among_the_blobs(store: Store) -> None:
    (store.blobs / "notes.txt").write_text("?")

    assert store.fsck() == ["blob 'notes.txt': not a content-addressed file"]


def test_gc_refuses_a_damaged_index_json_with_one_error(store: Store) -> None:
    (store.root / "index.json").write_text("{")

    with pytest.raises(CheckFailed, match=r"index\.json") as exc:
        store.gc(None)
    assert "move" in (exc.value.hint or "")


# -- the store's file system -------------------------------------------------------------------


def test_a_store_that_is_a_file_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("not a directory")

    with pytest.raises(StoreError) as exc:
        Store(tmp_path / "home")
    assert exc.value.exit_code == 2
    assert str(tmp_path / "home") in exc.value.message


def test_a_store_under_a_file_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "home").write_text("not a directory")

    with pytest.raises(StoreError) as exc:
        Store(tmp_path / "home" / "envlock")
    assert exc.value.exit_code == 2


# -- gc and builds -----------------------------------------------------------------------------


def test_gc_waits_for_a_build_holding_the_store(store: Store) -> None:
    entry, _ = put_image(store, [b"layer"])
    store.forget_env(entry.env_id)  # unreferenced: gc removes it once it runs
    holding, release = threading.Event(), threading.Event()
    order: list[str] = []

    def build() -> None:
        with Store(store.root).using():
            holding.set()
            release.wait(10)
            order.append("build done")

    def gc() -> None:
        with Store(store.root).exclusive(waiting=lambda: order.append("gc waits")):
            order.append("gc runs")

    t = threading.Thread(target=build)
    t.start()
    holding.wait(10)
    g = threading.Thread(target=gc)
    g.start()
    time.sleep(0.3)
    assert order == ["gc waits"]
    release.set()
    t.join(10)
    g.join(10)
    assert order == ["gc waits", "build done", "gc runs"]


def test_using_is_reentrant_and_gc_runs_after_the_outermost_release(store: Store) -> None:
    with store.using(), store.using():
        pass
    assert store.gc(None) == (0, 0)


def test_a_push_refuses_a_damaged_layer_before_it_contacts_the_registry(store: Store) -> None:
    from envlock.image import registry

    _, image = put_image(store, [b"layer one"])
    corrupt(store, image.layers[0].digest)

    with pytest.raises(CheckFailed, match="is corrupt") as exc:
        registry.push(store, image, "127.0.0.1:9/never/contacted")
    assert image.layers[0].digest in exc.value.message


def test_an_oci_export_that_fails_midway_leaves_no_layout(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, image = put_image(store, [b"layer one", b"layer two"])
    target = tmp_path / "out" / "layout"
    target.parent.mkdir()

    def full_disk(files: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(oci, "write_files", full_disk)  # blobs are in, the index fails
    with pytest.raises(CheckFailed, match="No space left on device"):
        oci.write_layout(store, image, target, "app")
    assert list(target.parent.iterdir()) == []  # neither the layout nor its staging copy


def _export_in_child(root: str, target: str, ref: str, layers: list[bytes], start: Any, out: Any) -> None:
    store = Store(Path(root))
    _, image = put_image(store, layers)
    start.wait()
    try:
        out.put((ref, oci.write_layout(store, image, Path(target), ref)))
    except Exception as exc:  # reported to the parent, which fails the test with it
        out.put((ref, f"{type(exc).__name__}: {exc}"))


def test_oci_exports_racing_to_create_one_layout_all_succeed(store: Store, tmp_path: Path) -> None:
    """Processes started together (a barrier) export to the same new directory: every one
    succeeds and the layout holds every tag, with no temporary file left."""
    import multiprocessing

    _, image = put_image(store, [b"layer one", b"layer two"])
    manifest = oci.image_manifest_digest(image)
    ctx = multiprocessing.get_context("fork")
    for round_ in range(4):
        target = tmp_path / f"layout{round_}"
        refs = [f"r{i}" for i in range(6)]
        start, out = ctx.Barrier(len(refs)), ctx.Queue()
        args = [(str(store.root), str(target), ref, [b"layer one", b"layer two"], start, out) for ref in refs]
        procs = [ctx.Process(target=_export_in_child, args=a) for a in args]
        for proc in procs:
            proc.start()
        results = dict(out.get(timeout=60) for _ in procs)
        for proc in procs:
            proc.join(timeout=60)
        assert results == dict.fromkeys(refs, manifest)
        index = json.loads((target / "index.json").read_text())
        names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
        assert names == refs
        assert sorted(p.name for p in target.iterdir()) == ["blobs", "index.json", "oci-layout"]
        assert not [p for p in (target / "blobs" / "sha256").iterdir() if p.name.endswith(".tmp")]
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _tarfile_archive(store: Store, image: Image, tags: list[str]) -> bytes:
    """The docker-archive as Python's tarfile writes it: the reference the pieces must equal."""
    from envlock.image import layer as layermod

    out = io.BytesIO()
    names = [f"blobs/sha256/{la.digest[7:]}" for la in image.layers]
    config_name = f"blobs/sha256/{image.image_id[7:]}"

    def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), layermod.MTIME, 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=out, mode="w|", format=layermod.FORMAT) as tar:
        add(tar, config_name, image.config_bytes)
        for name in dict.fromkeys(names):
            add(tar, name, store.blob_path("sha256:" + name.rsplit("/", 1)[1]).read_bytes())
        manifest = [{"Config": config_name, "RepoTags": sorted(tags), "Layers": names}]
        add(tar, "manifest.json", canonical_json(manifest))
    return out.getvalue()


@pytest.mark.parametrize(
    "layers",
    [[b"layer one"], [b"x" * 512, b"", b"y" * 10239], [b"same", b"other", b"same"], [bytes(range(256)) * 41]],
)
def test_docker_archive_pieces_are_the_bytes_tarfile_writes(
    store: Store, tmp_path: Path, layers: list[bytes]
) -> None:
    """``--load`` sends the pieces with sendfile and ``--docker-archive`` writes them: both must be
    the archive tarfile writes (pax headers, 512-byte padding, the 10240-byte record)."""
    _, image = put_image(store, layers)
    expected = _tarfile_archive(store, image, ["b:2", "a:1"])
    parts = oci.docker_archive_parts(store, image, ["b:2", "a:1"])
    joined = b"".join(p if isinstance(p, bytes) else p[0].read_bytes() for p in parts)
    assert joined == expected
    assert oci.archive_size(parts) == len(expected)
    oci.write_docker_archive(store, image, tmp_path / "a.tar", ["b:2", "a:1"])
    assert (tmp_path / "a.tar").read_bytes() == expected


def test_docker_archive_refuses_a_layer_whose_size_is_not_its_manifest_s(store: Store) -> None:
    _, image = put_image(store, [b"layer one"])
    (layer,) = image.layers
    bad = Image(image.config, (Layer(layer.digest, layer.diff_id, layer.size + 1),))
    with pytest.raises(EnvlockError, match="its manifest says 10"):
        oci.docker_archive_parts(store, bad, [])
