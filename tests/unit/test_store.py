"""store: a valid OCI layout, content-addressed blobs, atomic writes, env index, fsck and gc."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from pathlib import Path

import pytest

from envlock.errors import CheckFailed
from envlock.store import OCI_INDEX, OCI_MANIFEST, EnvEntry, Store, canonical_json


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def env_id(label: str) -> str:
    return sha(label.encode())


def put_image(store: Store, label: str, artifacts: tuple[str, ...] = ()) -> tuple[str, str, str]:
    """Store a tiny image (config, one layer, manifest); return (manifest, config, layer) digests."""
    layer_bytes, config_bytes = f"layer of {label}".encode(), canonical_json({"label": label})
    layer, config = store.put_blob(layer_bytes), store.put_blob(config_bytes)
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"digest": config, "size": len(config_bytes)},
        "layers": [{"digest": layer, "size": len(layer_bytes)}],
    }
    if artifacts:
        manifest["annotations"] = {"dev.envlock.artifacts": ",".join(artifacts)}
    return store.put_blob(canonical_json(manifest)), config, layer


def record(store: Store, label: str, artifacts: tuple[str, ...] = ()) -> EnvEntry:
    manifest, config, _ = put_image(store, label, artifacts)
    entry = EnvEntry(env_id(label), manifest, config, label)
    store.record_env(entry)
    return entry


def put_artifact(store: Store, data: bytes) -> str:
    hexdigest = hashlib.sha256(data).hexdigest()
    store.artifact_path(hexdigest).write_bytes(data)
    return hexdigest


def leftovers(store: Store) -> list[Path]:
    return sorted(store.tmp.iterdir())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def test_a_new_store_is_an_oci_image_layout(store: Store) -> None:
    assert json.loads((store.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((store.root / "index.json").read_text())
    assert index == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    assert store.blobs == store.root / "blobs" / "sha256"
    assert store.blobs.is_dir()


def test_opening_an_existing_store_keeps_its_index(store: Store) -> None:
    digest = store.put_blob(b"manifest")
    store.tag("v1", digest, 8)

    assert Store(store.root).refs() == {"v1": digest}


def test_put_blob_returns_the_sha256_and_stores_the_bytes(store: Store) -> None:
    digest = store.put_blob(b"hello")

    assert digest == sha(b"hello")
    assert store.blob_path(digest).read_bytes() == b"hello"
    assert store.read_blob(digest) == b"hello"


def test_put_blob_twice_is_idempotent(store: Store) -> None:
    first = store.put_blob(b"same")
    second = store.put_blob(b"same")

    assert first == second
    assert [p.name for p in store.blobs.iterdir()] == [first.split(":")[1]]
    assert leftovers(store) == []


def test_blobs_are_read_only(store: Store) -> None:
    digest = store.put_blob(b"immutable")

    assert store.blob_path(digest).stat().st_mode & 0o777 == 0o444


def test_put_blob_stream_with_the_right_digest_stores_it(store: Store) -> None:
    data = b"x" * 3000

    assert store.put_blob_stream(io.BytesIO(data), expected=sha(data)) == (sha(data), 3000)
    assert store.read_blob(sha(data)) == data


def test_put_blob_stream_with_a_wrong_digest_fails_and_leaves_nothing(store: Store) -> None:
    wrong = sha(b"something else")

    with pytest.raises(CheckFailed, match="hash mismatch") as exc:
        store.put_blob_stream(io.BytesIO(b"actual bytes"), expected=wrong)

    assert wrong in exc.value.message
    assert sha(b"actual bytes") in exc.value.message
    assert list(store.blobs.iterdir()) == []
    assert leftovers(store) == []


def test_a_writer_commit_with_a_wrong_digest_fails_and_leaves_nothing(store: Store) -> None:
    writer = store.writer()
    writer.write(b"data")

    with pytest.raises(CheckFailed):
        writer.commit(store.blob_path(sha(b"other")), expected=sha(b"other"))

    assert list(store.blobs.iterdir()) == []
    assert leftovers(store) == []


def test_an_aborted_writer_leaves_nothing(store: Store) -> None:
    writer = store.writer()
    writer.write(b"half a layer")
    writer.abort()

    assert leftovers(store) == []
    assert list(store.blobs.iterdir()) == []


def test_tag_replaces_a_ref_of_the_same_name_and_keeps_others(store: Store) -> None:
    old, new, other = (store.put_blob(x) for x in (b"old", b"new", b"other"))
    store.tag("app", old, 3)
    store.tag("zzz", other, 5)
    store.tag("app", new, 3)

    assert store.refs() == {"app": new, "zzz": other}
    index = json.loads((store.root / "index.json").read_text())
    assert [m["mediaType"] for m in index["manifests"]] == [OCI_MANIFEST, OCI_MANIFEST]


def test_index_is_sorted_by_ref_and_independent_of_tag_order(tmp_path: Path) -> None:
    digests = {name: sha(name.encode()) for name in ("b", "a", "c")}
    one, two = Store(tmp_path / "one"), Store(tmp_path / "two")
    for name in ("b", "a", "c"):
        one.tag(name, digests[name], 1)
    for name in ("c", "b", "a"):
        two.tag(name, digests[name], 1)

    text = (one.root / "index.json").read_bytes()
    assert text == (two.root / "index.json").read_bytes()
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in json.loads(text)["manifests"]]
    assert names == ["a", "b", "c"]


def test_record_env_and_find_env_round_trip(store: Store) -> None:
    entry = record(store, "vision")

    assert store.find_env(entry.env_id) == entry
    assert store.list_envs() == [entry]


def test_find_env_of_an_unknown_env_is_none(store: Store) -> None:
    assert store.find_env(env_id("nothing")) is None


def test_find_env_is_none_when_its_manifest_blob_is_missing(store: Store) -> None:
    entry = record(store, "vision")
    store.blob_path(entry.manifest).unlink()

    assert store.find_env(entry.env_id) is None


def test_find_env_is_per_platform(store: Store) -> None:
    manifest, config, _ = put_image(store, "arm")
    entry = EnvEntry(env_id("arm"), manifest, config, "arm", platform="linux-aarch64")
    store.record_env(entry)

    assert store.find_env(entry.env_id, "linux-aarch64") == entry
    assert store.find_env(entry.env_id) is None


def test_fsck_of_a_healthy_store_is_clean(store: Store) -> None:
    entry = record(store, "vision")
    store.tag("vision", entry.manifest, 1)
    put_artifact(store, b"wheel")

    assert store.fsck() == []


def test_fsck_reports_a_corrupted_blob(store: Store) -> None:
    digest = store.put_blob(b"original")
    path = store.blob_path(digest)
    path.chmod(0o644)
    path.write_bytes(b"tampered")

    problems = store.fsck()

    assert len(problems) == 1
    assert problems[0].startswith(f"blob {digest.split(':')[1][:12]}")
    assert "corrupt" in problems[0]


def test_fsck_reports_a_corrupted_artifact(store: Store) -> None:
    hexdigest = put_artifact(store, b"wheel")
    store.artifact_path(hexdigest).write_bytes(b"other wheel")

    assert [p.split(":")[0] for p in store.fsck()] == [f"artifact {hexdigest[:12]}"]


def test_fsck_reports_a_missing_blob_of_a_recorded_env(store: Store) -> None:
    entry = record(store, "vision")
    _, _, layer = put_image(store, "vision")
    store.blob_path(layer).unlink()

    problems = store.fsck()

    assert problems == [f"env {entry.env_id[:19]}: missing blob {layer[:19]}"]


def test_fsck_reports_a_manifest_that_misstates_a_blob_size(store: Store) -> None:
    layer = store.put_blob(b"layer")
    config = store.put_blob(b"{}")
    manifest = store.put_blob(
        canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"digest": config, "size": 2},
                "layers": [{"digest": layer, "size": 6}],
            }
        )
    )
    entry = EnvEntry(env_id("sizes"), manifest, config, "sizes")
    store.record_env(entry)

    assert store.fsck() == [f"env {entry.env_id[:19]}: blob {layer[:19]} is 5 bytes, its manifest says 6"]


def test_fsck_reports_a_ref_to_a_missing_manifest(store: Store) -> None:
    store.tag("ghost", sha(b"never stored"), 1)

    assert store.fsck() == [f"ref ghost: missing manifest {sha(b'never stored')[:19]}"]


def test_gc_removes_what_dropped_envs_reference_and_keeps_the_rest(store: Store) -> None:
    kept_artifact = put_artifact(store, b"kept wheel")
    dropped_artifact = put_artifact(store, b"dropped wheel")
    extra_artifact = put_artifact(store, b"pinned by caller")
    kept = record(store, "kept", artifacts=(kept_artifact,))
    dropped = record(store, "dropped", artifacts=(dropped_artifact,))
    kept_blobs = store.manifest_closure(kept.manifest)
    dropped_blobs = store.manifest_closure(dropped.manifest)
    stray = store.put_blob(b"unreferenced")

    removed, freed = store.gc({kept.env_id}, keep_artifacts={extra_artifact})

    assert removed == len(dropped_blobs) + 1 + 1  # dropped image, stray blob, dropped artifact
    assert freed > 0
    assert all(store.has_blob(d) for d in kept_blobs)
    assert not any(store.has_blob(d) for d in (*dropped_blobs, stray))
    assert store.has_artifact(kept_artifact)
    assert store.has_artifact(extra_artifact)
    assert not store.has_artifact(dropped_artifact)
    assert store.list_envs() == [kept]
    assert store.fsck() == []


def test_gc_drops_the_build_keys_of_removed_images(store: Store) -> None:
    from envlock.image import buildcache

    kept, dropped = record(store, "kept"), record(store, "dropped")
    for entry in (kept, dropped):
        buildcache.remember(store, entry.manifest, [buildcache.Entry("plan", "a" * 64)])

    store.gc({kept.env_id})

    assert buildcache.recall(store, kept.manifest) == [buildcache.Entry("plan", "a" * 64)]
    assert buildcache.recall(store, dropped.manifest) is None


def test_gc_with_no_env_filter_keeps_every_recorded_env(store: Store) -> None:
    a, b = record(store, "a"), record(store, "b")
    stray = store.put_blob(b"unreferenced")

    removed, _ = store.gc(None)

    assert removed == 1
    assert not store.has_blob(stray)
    assert store.find_env(a.env_id) == a
    assert store.find_env(b.env_id) == b


def test_gc_drops_refs_to_removed_images_and_keeps_base_refs(store: Store) -> None:
    kept, dropped = record(store, "kept"), record(store, "dropped")
    base, _, _ = put_image(store, "base")
    store.tag("kept", kept.manifest, 1)
    store.tag("dropped", dropped.manifest, 1)
    store.tag("base-debian-bookworm-0123", base, 1)

    store.gc({kept.env_id})

    assert store.refs() == {"kept": kept.manifest, "base-debian-bookworm-0123": base}
    assert all(store.has_blob(d) for d in store.manifest_closure(base))


def test_gc_clears_tmp(store: Store) -> None:
    (store.tmp / "w-stale").write_bytes(b"from a killed build")

    store.gc(None)

    assert leftovers(store) == []


def _killed_builds_leftovers(store: Store) -> int:
    """What killed builds leave in tmp/: a file, and a sandbox's tree with a read-only
    directory and a symbolic link; returns their bytes (links count their own size)."""
    (store.tmp / "w-1234").write_bytes(b"x" * 1000)
    tree = store.tmp / "build-0123456789abcdef-999"
    (tree / "src" / "pkg").mkdir(parents=True)
    (tree / "src" / "pkg" / "mod.py").write_bytes(b"y" * 500)
    (tree / "out.whl").write_bytes(b"z" * 250)
    (tree / "link").symlink_to("/etc/passwd")  # its target is neither counted nor touched
    (tree / "src").chmod(0o500)
    return 1000 + 500 + 250 + (tree / "link").lstat().st_size


def test_gc_counts_the_bytes_killed_builds_left_in_tmp(store: Store) -> None:
    size = _killed_builds_leftovers(store)
    assert store.leftovers() == (4, size)

    assert store.gc(None, dry_run=True) == (4, size)
    assert store.leftovers() == (4, size)  # a dry run removes nothing

    assert store.gc(None) == (4, size)
    assert list(store.tmp.iterdir()) == []
    assert Path("/etc/passwd").exists()


def test_gc_dry_run_reports_counts_and_removes_nothing(store: Store) -> None:
    artifact = put_artifact(store, b"wheel")
    kept, dropped = record(store, "kept"), record(store, "dropped")
    stray = store.put_blob(b"unreferenced")
    blobs_before = sorted(store.blobs.iterdir())
    expected_bytes = sum(
        store.blob_path(d).stat().st_size for d in (*store.manifest_closure(dropped.manifest), stray)
    ) + len(b"wheel")

    removed, freed = store.gc({kept.env_id}, dry_run=True)

    assert (removed, freed) == (len(store.manifest_closure(dropped.manifest)) + 2, expected_bytes)
    assert sorted(store.blobs.iterdir()) == blobs_before
    assert store.has_artifact(artifact)
    assert store.find_env(dropped.env_id) == dropped


def test_concurrent_put_blob_of_the_same_content_gives_one_blob(store: Store) -> None:
    data = b"shared layer " * 10000
    barrier = threading.Barrier(8)
    results: list[str] = []
    errors: list[BaseException] = []

    def put() -> None:
        barrier.wait()
        try:
            results.append(store.put_blob(data))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert results == [sha(data)] * 8
    assert [p.name for p in store.blobs.iterdir()] == [sha(data).split(":")[1]]
    assert store.read_blob(sha(data)) == data
    assert leftovers(store) == []


# -- writing in the background ----------------------------------------------------------------


def test_a_background_writer_gets_every_byte_in_order(store: Store) -> None:
    pieces = [bytes([i % 256]) * n for i, n in enumerate([1, 511, 300_000, 7, 1 << 20, 3])]
    writer = store.writer()
    with writer.in_background() as stream:
        for piece in pieces:
            stream.write(piece)
    digest, size = store.publish(writer)

    assert store.read_blob(digest) == b"".join(pieces)
    assert size == sum(map(len, pieces))


def test_a_background_write_failure_reaches_the_producer(store: Store, monkeypatch) -> None:
    import errno
    import threading

    writer = store.writer()

    def full(data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "write", full)
    with pytest.raises(OSError, match="No space left"), writer.in_background() as stream:
        for _ in range(1000):
            stream.write(b"x" * (1 << 20))
    writer.abort()
    assert not [t for t in threading.enumerate() if t.name == "envlock-writer"]
    assert list(store.tmp.iterdir()) == []
