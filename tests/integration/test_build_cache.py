"""The registry build cache, for real: one store builds and publishes to a docker-registry,
an empty second store builds from it with the same image ID (no wheel, no bootstrap), and
tampered, forged or unreachable entries are refused while the image stays the same."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import OwnRegistry, build_wheel, free_port, locked_project, run_envlock

from envlock.image import buildcache
from envlock.image.registry import Client, parse
from envlock.store import Store, canonical_json

Registry = OwnRegistry


@pytest.fixture
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    r = Registry(tmp_path_factory.mktemp("cache-reg"))
    try:
        yield r
    finally:
        r.stop()


def project(root: Path, base: str, heavy: int = 6 << 20) -> Path:
    """A spec with a big package (a layer of its own), small ones, and two packages that
    write one file differently (a conflict the plan must carry); locked."""
    wheels = root / "wheels"
    wheels.mkdir(parents=True)
    build_wheel(
        wheels, "envlock-cx-alpha", "2.0", ("envlock-cx-beta>=1.0",), files={"shared/x.txt": "alpha\n"}
    )
    build_wheel(wheels, "envlock-cx-beta", "1.0", files={"shared/x.txt": "beta\n"})
    build_wheel(wheels, "envlock-cx-heavy", "1.0", payload=heavy)
    return locked_project(root, wheels, '"envlock-cx-alpha", "envlock-cx-heavy"', f'base = "{base}"\n')


def build(
    spec: Path, store: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_envlock("build", str(spec), "--store", str(store), *args, cwd=spec.parent, env=env)


def entries(address: str, repo: str) -> list[str]:
    client = Client(parse(f"{address}/{repo}"))
    with client.request("GET", client.ref.url("tags/list")) as resp:
        return sorted(json.loads(resp.read())["tags"] or [])


@pytest.fixture(scope="module")
def published(
    tmp_path_factory: pytest.TempPathFactory, base_layout: Path
) -> Iterator[tuple[Path, str, Registry, str]]:
    """(spec, image ID, registry, cache repository): built in one store, pushed with --cache."""
    root = tmp_path_factory.mktemp("cache-project")
    spec = project(root / "p", f"oci:{base_layout}")
    r = Registry(root / "reg")
    try:
        cache = f"{r.address}/team/cache"
        proc = build(spec, root / "store1", "--push", f"{r.address}/team/app", "--cache", cache)
        assert proc.returncode == 0, proc.stderr
        assert "Build cache: " in proc.stderr and " entries added" in proc.stderr
        image_id = proc.stdout.split()[-2]
        yield spec, image_id, r, cache
    finally:
        r.stop()


def test_an_empty_store_builds_from_the_cache_with_the_same_image_id_and_no_wheel(
    published: tuple[Path, str, Registry, str], tmp_path: Path
) -> None:
    spec, image_id, reg_, cache = published
    tags = entries(reg_.address, "team/cache")
    assert [t.split("-")[0] for t in tags].count("plan") == 1
    assert [t.split("-")[0] for t in tags].count("layer") == 2  # heavy's, and the small ones'
    # the second machine has no wheelhouse at all: every wheel's layer comes from the cache
    moved = spec.parent.parent / "wheels-away"
    (spec.parent.parent / "wheels").rename(moved)
    try:
        proc = build(spec, tmp_path / "store2", "--cache", cache)
    finally:
        moved.rename(spec.parent.parent / "wheels")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == image_id
    assert "Took 2 of 2 layers from the build cache" in proc.stderr
    assert "Fetching" not in proc.stderr
    # the conflict the first build found is reported the same way from the cached plan
    assert "warning: envlock-cx-alpha 2.0 and envlock-cx-beta 1.0 install a file" in proc.stderr
    artifacts = tmp_path / "store2" / "artifacts" / "sha256"
    assert not artifacts.exists() or list(artifacts.iterdir()) == []
    assert run_envlock("store", "fsck", "--store", str(tmp_path / "store2"), cwd=tmp_path).returncode == 0
    # and the layers are kept uncompressed, once, like built ones
    du = json.loads(
        run_envlock("store", "du", "--json", "--store", str(tmp_path / "store2"), cwd=tmp_path).stdout
    )
    assert du["categories"]["compressed"] == 0


def test_a_push_of_an_image_built_from_the_cache_mounts_its_layers(
    published: tuple[Path, str, Registry, str], tmp_path: Path
) -> None:
    spec, image_id, reg_, cache = published
    store = tmp_path / "store"
    first = build(spec, store, "--cache", cache)
    assert first.returncode == 0 and first.stdout.split()[-1] == image_id
    proc = build(spec, store, "--push", f"{reg_.address}/team/other")
    assert proc.returncode == 0, proc.stderr
    assert "2 mounted" in proc.stderr


def test_cache_push_of_a_built_image_finds_everything_there(
    published: tuple[Path, str, Registry, str], tmp_path: Path
) -> None:
    spec, image_id, _, cache = published
    store = tmp_path / "store"
    assert build(spec, store).returncode == 0  # built here, without the cache
    proc = run_envlock("cache", "push", str(spec), "--cache", cache, "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [image_id]
    assert "0 entries added, 3 already there, 0 replaced" in proc.stderr


def test_a_tampered_layer_blob_is_refused_and_the_layer_built_here(
    tmp_path: Path, base_layout: Path, reg: Registry
) -> None:
    cache = f"{reg.address}/t/cache"
    spec, image_id, known = published_here(tmp_path, base_layout, cache)
    heavy = next(e for e in known if e.kind == "layer" and "heavy" in e.layers[0].created_by)
    manifest = _entry_manifest(reg.address, "t/cache", heavy.tag)
    blob = reg.blob_file(manifest["layers"][0]["digest"])
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit flipped in the registry's storage
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    proc = build(spec, tmp_path / "s2", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == image_id
    assert f"warning: build cache entry {heavy.tag[:19]}… in {cache} refused:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Took 1 of 2 layers" in proc.stderr
    assert run_envlock("store", "fsck", "--store", str(tmp_path / "s2"), cwd=tmp_path).returncode == 0
    assert list((tmp_path / "s2" / "tmp").iterdir()) == []


def test_forged_entries_are_refused(tmp_path: Path, base_layout: Path, reg: Registry) -> None:
    """An entry that names another key, one whose layer decompresses to other bytes than its
    diff_id, and a plan naming packages the lock does not have: each refused, by name."""
    cache = f"{reg.address}/f/cache"
    spec, image_id, known = published_here(tmp_path, base_layout, cache)
    layers = [e for e in known if e.kind == "layer"]
    plan = next(e for e in known if e.kind == "plan")
    client = Client(parse(cache))
    # 1: the small packages' tag now holds the heavy layer's entry (another key)
    small = next(e for e in layers if "packages" in e.layers[0].created_by)
    heavy = next(e for e in layers if e is not small)
    raw = _raw_manifest(reg.address, "f/cache", heavy.tag)
    client.put_manifest(raw, "application/vnd.oci.image.manifest.v1+json", small.tag)
    # 2: heavy's entry claims its own diff_id, but its layer is other (valid gzip) bytes
    other = gzip.compress(b"not the layer", mtime=0)
    other_digest = "sha256:" + hashlib.sha256(other).hexdigest()
    client.upload_data(other_digest, other)
    doc = json.loads(_blob(reg.address, "f/cache", json.loads(raw)["config"]["digest"]))
    forged = json.loads(raw)
    forged["layers"][0] = {
        "mediaType": forged["layers"][0]["mediaType"],
        "digest": other_digest,
        "size": len(other),
    }
    config = canonical_json(doc)
    client.upload_data("sha256:" + hashlib.sha256(config).hexdigest(), config)
    client.put_manifest(canonical_json(forged), "application/vnd.oci.image.manifest.v1+json", heavy.tag)
    proc = build(spec, tmp_path / "s2", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == image_id
    assert "Took 0 of 2 layers from the build cache (0 MB)" in proc.stderr
    assert f"entry {small.tag[:19]}… in {cache} refused: it describes layer-" in proc.stderr
    assert f"entry {heavy.tag[:19]}… in {cache} refused: its layer does not decompress to" in proc.stderr
    # 3: a plan naming a package the lock does not have
    plan_doc = {**plan.document(), "plan": {"big": ["numpy"], "conflicts": []}}
    _put_entry(client, plan.tag, plan_doc)
    proc = build(spec, tmp_path / "s3", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == image_id
    assert f"entry {plan.tag[:19]}… in {cache} refused: its plan is not one for this lock" in proc.stderr


def test_an_unreachable_cache_is_one_warning_and_the_build_goes_on(tmp_path: Path, base_layout: Path) -> None:
    spec = project(tmp_path / "p", f"oci:{base_layout}", heavy=0)
    cache = f"127.0.0.1:{free_port()}/nobody/cache"
    proc = build(spec, tmp_path / "s", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(f"warning: build cache {cache.split('/')[0]}/nobody/cache is unavailable") == 1
    assert "building without it (hint: start the registry or check the reference)" in proc.stderr
    assert "Took" not in proc.stderr and "Looking up" not in proc.stderr
    reference = build(spec, tmp_path / "s-ref")
    assert proc.stdout.split()[-1] == reference.stdout.split()[-1]


def test_a_cache_that_cannot_be_published_to_is_named_in_the_error(tmp_path: Path, base_layout: Path) -> None:
    spec = project(tmp_path / "p", f"oci:{base_layout}", heavy=0)
    cache = f"127.0.0.1:{free_port()}/nobody/cache"
    proc = run_envlock(
        "cache", "push", str(spec), "--cache", cache, "--store", str(tmp_path / "s"), cwd=tmp_path
    )
    assert proc.returncode == 3, proc.stderr
    assert f"error: cannot publish to the build cache {cache}: cannot reach registry" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_cache_references_are_usage_errors(tmp_path: Path, base_layout: Path) -> None:
    spec = project(tmp_path / "p", f"oci:{base_layout}", heavy=0)
    for bad in (
        "127.0.0.1:5000/c/cache:tag",
        "127.0.0.1:5000/C/Cache",
        f"127.0.0.1:5000/c@sha256:{'0' * 64}",
        "",  # "--cache $CACHE" with CACHE unset: a mistake, not a build without the cache
        "127.0.0.1:5000",  # a registry without a repository
    ):
        proc = build(spec, tmp_path / "s", "--cache", bad)
        assert proc.returncode == 2, (bad, proc.stderr)
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
        assert "registry-1.docker.io" not in proc.stderr, proc.stderr
    assert Store(tmp_path / "s").list_envs() == []  # nothing was built
    proc = run_envlock(
        "cache", "push", str(spec), "--store", str(tmp_path / "s"), cwd=tmp_path, env={"ENVLOCK_CACHE": ""}
    )
    assert proc.returncode == 2 and "error: no build cache given" in proc.stderr


def test_a_debian_base_comes_from_the_cache_without_a_bootstrap(
    tmp_path: Path, base_store: Path, reg: Registry
) -> None:
    store1 = tmp_path / "s1"
    subprocess.run(["cp", "-al", str(base_store), str(store1)], check=True)
    spec = project(tmp_path / "p", "debian:bookworm", heavy=0)
    cache = f"{reg.address}/d/cache"
    first = run_envlock("cache", "push", str(spec), "--cache", cache, "--store", str(store1), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Bootstrapping" not in first.stderr  # the copied store had it
    assert any(t.startswith("base-") for t in entries(reg.address, "d/cache"))
    # a machine without mmdebstrap's output: the bootstrap would print "Bootstrapping"
    proc = build(spec, tmp_path / "s2", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert "Taking debian:bookworm from the build cache" in proc.stderr
    assert "Bootstrapping" not in proc.stderr
    assert proc.stdout.split()[-1] == first.stdout.strip()
    assert run_envlock("store", "fsck", "--store", str(tmp_path / "s2"), cwd=tmp_path).returncode == 0
    shutil.rmtree(store1)


# -- helpers ---------------------------------------------------------------------------------


def published_here(tmp_path: Path, base_layout: Path, cache: str) -> tuple[Path, str, list[buildcache.Entry]]:
    """A project built in store ``s1`` and published to ``cache``: (spec, image ID, entries)."""
    spec = project(tmp_path / "p", f"oci:{base_layout}")
    first = run_envlock(
        "cache", "push", str(spec), "--cache", cache, "--store", str(tmp_path / "s1"), cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    known = buildcache.recall(Store(tmp_path / "s1"), _manifest(tmp_path / "s1")) or []
    return spec, first.stdout.strip(), known


def _manifest(store: Path) -> str:
    (entry,) = Store(store).list_envs()
    return entry.manifest


def _raw_manifest(address: str, repo: str, tag: str) -> bytes:
    client = Client(parse(f"{address}/{repo}"))
    data, _ = client.manifest(tag)
    return data


def _entry_manifest(address: str, repo: str, tag: str) -> dict[str, object]:
    return dict(json.loads(_raw_manifest(address, repo, tag)))


def _blob(address: str, repo: str, digest: str) -> bytes:
    client = Client(parse(f"{address}/{repo}"))
    with client.request("GET", client.ref.url(f"blobs/{digest}")) as resp:
        return bytes(resp.read())


def _put_entry(client: Client, tag: str, doc: dict[str, object]) -> None:
    config = canonical_json(doc)
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    client.upload_data(digest, config)
    empty = "sha256:" + hashlib.sha256(buildcache.EMPTY).hexdigest()
    client.upload_data(empty, buildcache.EMPTY)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": buildcache.ARTIFACT_TYPE,
        "config": {"mediaType": buildcache.ENTRY_TYPE, "digest": digest, "size": len(config)},
        "layers": [{"mediaType": buildcache.EMPTY_TYPE, "digest": empty, "size": len(buildcache.EMPTY)}],
    }
    client.put_manifest(canonical_json(manifest), "application/vnd.oci.image.manifest.v1+json", tag)


def test_rebuild_of_a_record_takes_its_layers_from_the_cache(
    tmp_path: Path, base_layout: Path, reg: Registry
) -> None:
    """A record made on one machine comes back on another with an empty store and no
    wheelhouse, from the cache, and is checked against the record's layers."""
    repo = tmp_path / "repo"
    spec = project(repo, f"oci:{base_layout}")
    for args in (
        ("init", "-q", "-b", "main"),
        ("config", "user.email", "t@example.com"),
        ("config", "user.name", "T"),
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / ".gitignore").write_text("runs/\nwheels/\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "first"], cwd=repo, check=True)
    (repo / "runs").mkdir()
    (repo / "runs" / "model.pt").write_text("weights")
    cache = f"{reg.address}/r/cache"
    proc = run_envlock(
        "record",
        "runs/model.pt",
        "--name",
        "net",
        "--spec",
        str(spec.relative_to(repo)),
        "--store",
        str(tmp_path / "s1"),
        cwd=repo,
    )
    assert proc.returncode == 0, proc.stderr
    image_id = Store(tmp_path / "s1").list_envs()[0].image_id
    pushed = run_envlock(
        "cache", "push", str(spec), "--cache", cache, "--store", str(tmp_path / "s1"), cwd=repo
    )
    assert pushed.returncode == 0, pushed.stderr
    shutil.rmtree(repo / "wheels")
    proc = run_envlock(
        "rebuild", "net", "--store", str(tmp_path / "s2"), cwd=repo, env={"ENVLOCK_CACHE": cache}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == image_id
    assert "Took 2 of 2 layers from the build cache" in proc.stderr
    assert "rebuilt, matches the record" in proc.stderr


def test_an_uncompressed_cache_gives_the_same_image_and_moves_the_layers_as_they_are(
    tmp_path: Path, base_layout: Path, reg: Registry
) -> None:
    """``--compression none``: entries hold the store's tar layers themselves (their digest is
    the diff_id); an empty store builds the same image from them, and a flipped bit is refused."""
    spec = project(tmp_path / "p", f"oci:{base_layout}")
    cache = f"{reg.address}/n/cache"
    first = run_envlock(
        "cache",
        "push",
        str(spec),
        "--cache",
        cache,
        "--compression",
        "none",
        "--store",
        str(tmp_path / "s1"),
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr
    image_id = first.stdout.strip()
    known = buildcache.recall(Store(tmp_path / "s1"), _manifest(tmp_path / "s1")) or []
    heavy = next(e for e in known if e.kind == "layer" and "heavy" in e.layers[0].created_by)
    manifest = _entry_manifest(reg.address, "n/cache", heavy.tag)
    (layer,) = manifest["layers"]  # type: ignore[misc]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert layer["digest"] == heavy.layers[0].diff_id
    proc = build(spec, tmp_path / "s2", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == image_id
    assert "Took 2 of 2 layers from the build cache" in proc.stderr
    blob = reg.blob_file(layer["digest"])
    data = bytearray(blob.read_bytes())
    data[-4000] ^= 0x01
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    proc = build(spec, tmp_path / "s3", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == image_id
    assert f"entry {heavy.tag[:19]}… in {cache} refused" in proc.stderr
    # an uncompressed layer is hashed once, as it is written: one whose digest is not the
    # diff_id it claims is refused before a byte is fetched
    other = bytes(1024)
    other_digest = "sha256:" + hashlib.sha256(other).hexdigest()
    client = Client(parse(cache))
    client.upload_data(other_digest, other)
    forged = json.loads(_raw_manifest(reg.address, "n/cache", heavy.tag))
    forged["layers"][0] = {**forged["layers"][0], "digest": other_digest, "size": len(other)}
    client.put_manifest(canonical_json(forged), "application/vnd.oci.image.manifest.v1+json", heavy.tag)
    proc = build(spec, tmp_path / "s4", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == image_id
    assert (
        f"entry {heavy.tag[:19]}… in {cache} refused: its uncompressed layer {other_digest[:19]}… is not"
        in (proc.stderr)
    )


def test_publishing_replaces_a_plan_that_says_otherwise(
    tmp_path: Path, base_layout: Path, reg: Registry
) -> None:
    """A plan entry has no layers, so it cannot be told by its diff_ids: a well-formed plan
    that lies (here: which packages get a layer of their own) is replaced by the next
    publisher, with a warning, instead of being counted as already there."""
    spec = project(tmp_path / "p", f"oci:{base_layout}", heavy=0)
    cache = f"{reg.address}/pl/cache"
    args = ("cache", "push", str(spec), "--cache", cache, "--store", str(tmp_path / "s1"))
    first = run_envlock(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    plan = next(
        e
        for e in buildcache.recall(Store(tmp_path / "s1"), _manifest(tmp_path / "s1")) or []
        if e.kind == "plan"
    )
    client = Client(parse(cache))
    lie = {**plan.document(), "plan": {"big": ["envlock-cx-heavy"], "conflicts": []}}
    _put_entry(client, plan.tag, lie)
    again = run_envlock(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (
        f"warning: build cache entry {plan.tag[:19]}… in {cache} held another plan than this build's; replaced"
        in again.stderr
    )
    assert "0 entries added, 1 already there, 1 replaced" in again.stderr
    doc = json.loads(
        _blob(reg.address, "pl/cache", _entry_manifest(reg.address, "pl/cache", plan.tag)["config"]["digest"])
    )  # type: ignore[index]
    assert doc["plan"] == plan.data["plan"]


@pytest.mark.parametrize(
    ("files", "why"),
    [
        (
            {"etc/hostname": b"forged\n"},
            "its base has no Python at /usr/local/bin or /usr/bin, not Python 3.11",
        ),
        (
            {"usr/bin/python3.13": b"\x7fELF"},
            "its base has Python 3.13 at /usr/local/bin or /usr/bin, not Python 3.11",
        ),
    ],
)
def test_a_base_entry_that_cannot_be_the_base_is_refused_and_not_recorded(
    tmp_path: Path, reg: Registry, files: dict[str, bytes], why: str
) -> None:
    """A base entry whose manifest, config, diff_ids and blobs all agree, but whose layers
    hold no Python of the spec's version: recorded, it became the store's debian:bookworm,
    and every later build of that store failed ("has no Python interpreter"), cache or not."""
    from envlock.image import base as basemod
    from envlock.image import layer as layermod
    from envlock.image import venv

    store1 = Store(tmp_path / "s1")
    layer = venv.store_entries(store1, [layermod.file(p, d) for p, d in files.items()], "base")
    config = canonical_json(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}}
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
            "size": len(config),
        },
        "layers": [{"mediaType": layer.media_type, "digest": layer.diff_id, "size": layer.size}],
    }
    key = basemod.debian_key("bookworm", "3.11", [])
    data = {
        "manifest": canonical_json(manifest).decode(),
        "config": config.decode(),
        "suite": "bookworm",
        "python": "3.11",
        "packages": [],
    }
    cache = f"{reg.address}/b/cache"
    buildcache.publish(store1, [buildcache.Entry("base", key, (layer,), data)], cache)
    store2 = Store(tmp_path / "s2")
    reader = buildcache.RemoteCache(cache, store2)
    assert reader.base(key, "bookworm", "3.11") is None
    assert reader.warnings == [
        f"build cache entry base-{key[:14]}… in {cache} refused: {why}; built here instead"
    ]
    assert basemod.debian_record(store2, key) is None


def test_a_cache_that_hangs_is_given_up_on_soon(tmp_path: Path) -> None:
    """A registry that takes the connection and never answers: the build goes on without
    the cache after seconds (buildcache.TIMEOUT), not after the push timeout of five minutes."""
    import socket
    import time

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        cache = f"127.0.0.1:{silent.getsockname()[1]}/hang/cache"
        reader = buildcache.RemoteCache(cache, Store(tmp_path / "s"))
        start = time.monotonic()
        assert reader.plan("0" * 64, []) is None
        assert reader.layers([("1" * 64, "envlock: pip 1 packages")]) == {}
        took = time.monotonic() - start
    assert took < buildcache.TIMEOUT + 15, took
    (warning,) = reader.warnings
    assert warning.startswith(f"build cache {cache} is unavailable (cannot reach registry")
    assert "timed out" in warning


def test_a_plan_that_the_wheels_at_hand_contradict_is_refused(
    tmp_path: Path, base_layout: Path, reg: Registry
) -> None:
    """A well-formed plan that lies (the big package has no layer of its own; a package
    leaves out a file no other package writes) made an image with another ID, without a
    word.  The wheels a build reads anyway now check it: refused, decided here, same ID."""
    spec = project(tmp_path / "p", f"oci:{base_layout}")
    cache = f"{reg.address}/lie/cache"
    first = run_envlock(
        "cache", "push", str(spec), "--cache", cache, "--store", str(tmp_path / "s1"), cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    image_id = first.stdout.strip()
    plan = next(
        e
        for e in buildcache.recall(Store(tmp_path / "s1"), _manifest(tmp_path / "s1")) or []
        if e.kind == "plan"
    )
    honest = plan.data["plan"]
    own = "opt/env/lib/python3.11/site-packages/envlock_cx_heavy/__init__.py"
    lies = {
        "it says envlock-cx-heavy has no layer of its own, its wheel says otherwise": {
            "big": [],
            "conflicts": honest["conflicts"],
        },
        f"it has a conflict at /{own} that the wheels do not have": {
            "big": honest["big"],
            "conflicts": [*honest["conflicts"], [own, "envlock-cx-beta", ["envlock-cx-heavy"]]],
        },
    }
    client = Client(parse(cache))
    for i, (why, lie) in enumerate(lies.items()):
        _put_entry(client, plan.tag, {**plan.document(), "plan": lie})
        proc = build(spec, tmp_path / f"s{i + 2}", "--cache", cache)
        assert proc.returncode == 0, proc.stderr
        assert f"warning: build cache entry {plan.tag[:19]}… in {cache} refused: {why}" in proc.stderr
        assert proc.stdout.split()[-1] == image_id


def test_an_entry_naming_a_layer_the_store_has_with_another_size_is_refused(
    tmp_path: Path, base_layout: Path, reg: Registry
) -> None:
    """The layer is not downloaded when the store holds its diff_id already, but the size the
    entry claims went into the image's manifest unchecked: a descriptor whose size is not
    its blob's (OCI image spec, "Descriptor": size MUST be exact), which store fsck missed."""
    from envlock.image.build import load_image

    spec = project(tmp_path / "p", f"oci:{base_layout}", heavy=0)
    cache = f"{reg.address}/size/cache"
    first = run_envlock(
        "cache", "push", str(spec), "--cache", cache, "--store", str(tmp_path / "s1"), cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    image_id = first.stdout.strip()
    store1 = Store(tmp_path / "s1")
    base_layer = load_image(store1, _manifest(tmp_path / "s1")).layers[0]  # every store building this has it
    small = next(e for e in buildcache.recall(store1, _manifest(tmp_path / "s1")) or [] if e.kind == "layer")
    raw = _raw_manifest(reg.address, "size/cache", small.tag)
    doc = json.loads(_blob(reg.address, "size/cache", json.loads(raw)["config"]["digest"]))
    config = canonical_json({**doc, "diff_ids": [base_layer.diff_id], "sizes": [1234]})
    forged = {**json.loads(raw)}
    forged["config"] = {
        **forged["config"],
        "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
        "size": len(config),
    }
    client = Client(parse(cache))
    client.upload_data(forged["config"]["digest"], config)
    client.put_manifest(canonical_json(forged), "application/vnd.oci.image.manifest.v1+json", small.tag)
    proc = build(spec, tmp_path / "s2", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert (
        f"entry {small.tag[:19]}… in {cache} refused: it gives its layer {base_layer.diff_id[:19]}… "
        f"1234 bytes, the layer has {base_layer.size}" in proc.stderr
    )
    assert proc.stdout.split()[-1] == image_id


def test_a_layer_claiming_more_than_the_disk_holds_is_refused_before_a_byte_is_written(
    tmp_path: Path, base_layout: Path, reg: Registry
) -> None:
    """A gzip bomb stops at the size its entry claims; a claim of an exabyte made the
    build decompress until the bomb ran out (or the disk was full)."""
    spec = project(tmp_path / "p", f"oci:{base_layout}", heavy=0)
    cache = f"{reg.address}/bomb/cache"
    first = run_envlock(
        "cache", "push", str(spec), "--cache", cache, "--store", str(tmp_path / "s1"), cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    image_id = first.stdout.strip()
    small = next(
        e
        for e in buildcache.recall(Store(tmp_path / "s1"), _manifest(tmp_path / "s1")) or []
        if e.kind == "layer"
    )
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9, mtime=0)
    bomb_digest = "sha256:" + hashlib.sha256(bomb).hexdigest()
    client = Client(parse(cache))
    client.upload_data(bomb_digest, bomb)
    raw = json.loads(_raw_manifest(reg.address, "bomb/cache", small.tag))
    doc = json.loads(_blob(reg.address, "bomb/cache", raw["config"]["digest"]))
    config = canonical_json({**doc, "sizes": [1 << 60]})
    client.upload_data("sha256:" + hashlib.sha256(config).hexdigest(), config)
    raw["config"] = {
        **raw["config"],
        "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
        "size": len(config),
    }
    raw["layers"][0] = {**raw["layers"][0], "digest": bomb_digest, "size": len(bomb)}
    client.put_manifest(canonical_json(raw), "application/vnd.oci.image.manifest.v1+json", small.tag)
    proc = build(spec, tmp_path / "s2", "--cache", cache)
    assert proc.returncode == 0, proc.stderr
    assert (
        f"entry {small.tag[:19]}… in {cache} refused: its layer claims {1 << 60} bytes, more than the"
        in proc.stderr
    )
    assert proc.stdout.split()[-1] == image_id


def test_envlock_cache_alone_is_read_not_published_to_on_push(
    tmp_path: Path, base_layout: Path, reg: Registry
) -> None:
    """A developer's ENVLOCK_CACHE names the team's cache, where they may pull but not push
    (docs/SECURITY.md); pushing their own image must not fail on publishing to it."""
    spec = project(tmp_path / "p", f"oci:{base_layout}", heavy=0)
    cache = f"127.0.0.1:{free_port()}/team/cache"  # nothing publishes here without failing
    proc = build(spec, tmp_path / "s", "--push", f"{reg.address}/dev/app", env={"ENVLOCK_CACHE": cache})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1].startswith(f"{reg.address}/dev/app@sha256:")
    assert "Publishing" not in proc.stderr
    assert proc.stderr.count(f"warning: build cache {cache} is unavailable") == 1  # it was read


@pytest.mark.parametrize("where", ["empty", "unreachable"])
def test_no_wheelhouse_and_no_plan_in_the_cache_fails_before_the_base(
    tmp_path: Path, base_layout: Path, reg: Registry, where: str
) -> None:
    """A machine without the wheelhouse trusts the cache to have the layers; when it has no
    plan for the lock (a wrong repository, a cache not filled yet, one that is down), every
    wheel is needed: that failed only after the base was bootstrapped or imported (90 s for
    debian:bookworm), and the cache's own warning was lost with the failed build."""
    spec = project(tmp_path / "p", f"oci:{base_layout}", heavy=0)
    shutil.rmtree(spec.parent.parent / "wheels")
    cache = f"{reg.address}/empty/cache" if where == "empty" else f"127.0.0.1:{free_port()}/down/cache"
    proc = build(spec, tmp_path / "s", "--cache", cache)
    assert proc.returncode == 1, proc.stderr
    assert "envlock_cx_alpha-2.0-py3-none-any.whl does not exist" in proc.stderr
    if where == "empty":
        assert (
            f"The build cache {cache} has no build plan for this lock: every wheel is needed" in proc.stderr
        )
    else:
        assert f"warning: build cache {cache} is unavailable" in proc.stderr
    assert list((tmp_path / "s" / "blobs" / "sha256").glob("*")) == []  # no base was taken in
