"""Push, pull and load at scale, for real: threaded deterministic compression, streamed
uploads, the compressed-digest cache, cross-repository mounts, zstd, parallel verified
pulls through a tampering proxy, streamed loads, and an engine whose disk is full."""

from __future__ import annotations

import http.client
import http.server
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    Dockerd,
    OwnRegistry,
    build_wheel,
    docker,
    locked_project,
    run_envlock,
    start_dockerd,
)

from envlock.image.build import load_image
from envlock.image.model import LAYER_GZIP, Image
from envlock.image.push import push_image
from envlock.store import Store


class Registry(OwnRegistry):
    """A docker-registry of its own whose access log this test reads."""


@pytest.fixture
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    r = Registry(tmp_path_factory.mktemp("reg"))
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, base_layout: Path) -> tuple[Path, Path, str]:
    """A spec with a big package (its own layer) and small ones, built once: (spec, store, image ID)."""
    wheels = tmp_path_factory.mktemp("scale-wheels")
    build_wheel(wheels, "envlock-fx-alpha", "2.0", ("envlock-fx-beta>=1.0",))
    build_wheel(wheels, "envlock-fx-beta", "1.0")
    build_wheel(wheels, "envlock-fx-heavy", "1.0", payload=24 << 20)
    root = tmp_path_factory.mktemp("scale-project")
    image = f'base = "oci:{base_layout}"\nworkdir = "/work"\n'
    spec = locked_project(root, wheels, '"envlock-fx-alpha", "envlock-fx-heavy"', image)
    store = root / "store"
    proc = run_envlock("build", str(spec), "--store", str(store), cwd=root)
    assert proc.returncode == 0, proc.stderr
    return spec, store, proc.stdout.split()[-1]


def stored_image(store: Store) -> Image:
    (entry,) = store.list_envs()
    return load_image(store, entry.manifest)


def blob_uploads(requests: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    return [r for r in requests if "/blobs/uploads/" in r[1]]


def test_threads_do_not_change_bytes_and_a_second_push_only_asks(
    built: tuple[Path, Path, str], tmp_path: Path, reg: Registry
) -> None:
    _, store_dir, image_id = built
    store = Store(store_dir)
    image = stored_image(store)
    tar_layers = sum(1 for la in image.layers if la.digest == la.diff_id)
    assert len(image.layers) >= 3 and tar_layers >= 2
    other = Registry(tmp_path / "other")
    try:
        shutil_rm(store_dir / "compressed")
        one = push_image(store, image, f"{other.address}/t/app", threads=1)
        shutil_rm(store_dir / "compressed")
        many = push_image(store, image, f"{reg.address}/t/app", threads=4)
    finally:
        other.stop()
    # same compressed bytes on 1 and 4 threads: same manifest digest
    assert one.reference.split("@")[1] == many.reference.split("@")[1]
    assert many.uploaded == len(set(image.layers)) and many.skipped == 0
    before = len(reg.requests())
    again = push_image(store, image, f"{reg.address}/t/app", threads=4)
    assert again.reference == many.reference
    assert (again.uploaded, again.skipped) == (0, len(set(image.layers)))
    second = reg.requests()[before:]
    assert blob_uploads(second) == [], second  # no POST/PATCH/PUT of any blob: HEADs only
    assert {m for m, _, _ in second} <= {"HEAD", "PUT", "GET"}
    assert [u for m, u, _ in second if m == "PUT"] == [f"/v2/t/app/manifests/{many.reference.split('@')[1]}"]
    # the manifest lists gzip layers and the unchanged config: the image ID is the build's
    manifest = store_manifest(reg, "t/app", many.reference.split("@")[1])
    assert manifest["config"]["digest"] == image_id
    assert {la["mediaType"] for la in manifest["layers"]} == {LAYER_GZIP}


def test_a_push_to_another_repository_mounts_instead_of_uploading(
    built: tuple[Path, Path, str], reg: Registry
) -> None:
    store = Store(built[1])
    image = stored_image(store)
    first = push_image(store, image, f"{reg.address}/team/one")
    before = len(reg.requests())
    second = push_image(store, image, f"{reg.address}/team/two")
    tar_layers = len({la for la in image.layers if la.digest == la.diff_id})
    assert second.mounted == tar_layers, second
    assert second.reference.split("@")[1] == first.reference.split("@")[1]
    uploads = blob_uploads(reg.requests()[before:])
    mounts = [r for r in uploads if "mount=" in r[1] and "from=team%2Fone" in r[1]]
    assert len(mounts) == tar_layers and all(status == 201 for _, _, status in mounts), uploads
    assert not [r for r in uploads if r[0] == "PATCH"]


def test_zstd_push_pulls_back_to_the_same_image_id(
    built: tuple[Path, Path, str], tmp_path: Path, reg: Registry
) -> None:
    spec, store, image_id = built
    proc = run_envlock(
        "build",
        str(spec),
        "--store",
        str(store),
        "--push",
        f"{reg.address}/z/app",
        "--compression",
        "zstd",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    pushed = proc.stdout.split()[-1]
    manifest = store_manifest(reg, "z/app", pushed.split("@")[1])
    assert {la["mediaType"] for la in manifest["layers"]} >= {"application/vnd.oci.image.layer.v1.tar+zstd"}
    pulled = run_envlock("pull", pushed, "--store", str(tmp_path / "fresh"), cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == image_id
    assert run_envlock("store", "fsck", "--store", str(tmp_path / "fresh"), cwd=tmp_path).returncode == 0


class _Tamper(http.server.BaseHTTPRequestHandler):
    """Forwards GET/HEAD to the registry; flips one byte of the blob ``bad``."""

    upstream = ""
    bad = ""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _forward(self) -> None:
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        conn.request(self.command, self.path, headers={k: v for k, v in self.headers.items()})
        resp = conn.getresponse()
        body = resp.read()
        if self.command == "GET" and self.bad and self.path.endswith(self.bad) and body:
            body = bytes([body[0] ^ 1]) + body[1:]
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _forward


def test_a_tampered_blob_fails_the_pull_and_nothing_is_published(
    built: tuple[Path, Path, str], tmp_path: Path, reg: Registry
) -> None:
    store = Store(built[1])
    image = stored_image(store)
    pushed = push_image(store, image, f"{reg.address}/p/app")
    digest = pushed.reference.split("@")[1]
    manifest = store_manifest(reg, "p/app", digest)
    victim = max(manifest["layers"], key=lambda la: la["size"])["digest"]
    handler = type("Tamper", (_Tamper,), {"upstream": reg.address, "bad": victim})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proxy = f"127.0.0.1:{server.server_address[1]}"
        fresh = tmp_path / "fresh"
        proc = run_envlock("pull", f"{proxy}/p/app@{digest}", "--store", str(fresh), cwd=tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"error: blob {victim}" in proc.stderr
    assert not (fresh / "blobs" / "sha256" / victim.split(":")[1]).exists()
    assert not (fresh / "blobs" / "sha256" / digest.split(":")[1]).exists()  # no manifest
    assert list((fresh / "tmp").iterdir()) == []  # no partial file left
    assert run_envlock("store", "fsck", "--store", str(fresh), cwd=tmp_path).returncode == 0


def test_streamed_load_gives_the_build_s_image_id(
    built: tuple[Path, Path, str], tmp_path: Path, dockerd: Dockerd
) -> None:
    spec, store, image_id = built
    env = {"DOCKER_HOST": dockerd.host}
    proc = run_envlock("build", str(spec), "--store", str(store), "--load", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Loading" in proc.stderr
    inspect = docker(dockerd.host, "image", "inspect", "--format", "{{.Id}}", image_id)
    assert inspect.stdout.strip() == image_id
    assert list((store / "tmp").iterdir()) == []


def test_a_load_over_plain_tcp_and_one_through_docker_py_give_the_build_s_image_id(
    built: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """The archive envlock sends itself (here over ``tcp://``) and the one docker-py carries
    (TLS and ssh engines) are the same bytes: both engines report the build's image ID."""
    from envlock import engine

    spec, store, image_id = built
    root = Path("/tmp") / f"envlock-tcp-{tmp_path.name}"
    root.mkdir(parents=True, exist_ok=True)
    proc, info = start_dockerd(root, tcp=True)
    try:
        assert info.host.startswith("tcp://127.0.0.1:")
        out = run_envlock(
            "build", str(spec), "--store", str(store), "--load", cwd=tmp_path, env={"DOCKER_HOST": info.host}
        )
        assert out.returncode == 0, out.stderr
        inspect = docker(info.host, "image", "inspect", "--format", "{{.Id}}", image_id)
        assert inspect.stdout.strip() == image_id
        assert docker(info.host, "rmi", "-f", image_id).returncode == 0
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DOCKER_HOST", info.host)
            c = engine.client()
            engine._docker_py_load(c, Store(store), stored_image(Store(store)), ["viapy:1"])
        inspect = docker(info.host, "image", "inspect", "--format", "{{.Id}}", "viapy:1")
        assert inspect.stdout.strip() == image_id
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_an_engine_with_a_full_disk_is_an_error_line(built: tuple[Path, Path, str], tmp_path: Path) -> None:
    """dockerd whose data root is a 48 MiB tmpfs: the image (base + 24 MiB of noise) cannot fit."""
    spec, store, _ = built
    root = Path("/tmp") / f"envlock-fulldisk-{tmp_path.name}"
    (root / "data").mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(root / "data")], check=True)
    try:
        proc, info = start_dockerd(root)
        try:
            out = run_envlock(
                "build",
                str(spec),
                "--store",
                str(store),
                "--load",
                cwd=tmp_path,
                env={"DOCKER_HOST": info.host},
            )
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    finally:
        subprocess.run(["umount", "-l", str(root / "data")], check=False)
        subprocess.run(["rm", "-rf", str(root)], check=False)
    assert out.returncode == 3, out.stderr
    assert "Traceback" not in out.stderr
    assert "error: the Docker engine at" in out.stderr and "ran out of disk space" in out.stderr, out.stderr
    assert "hint: free space" in out.stderr


def store_manifest(reg: Registry, repo: str, digest: str) -> dict[str, list[dict[str, str]]]:
    import json
    import urllib.request

    req = urllib.request.Request(
        f"http://{reg.address}/v2/{repo}/manifests/{digest}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(req) as resp:
        data: dict[str, list[dict[str, str]]] = json.loads(resp.read())
    return data


def shutil_rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def test_store_du_says_where_the_bytes_are_and_push_keeps_no_compressed_copies(
    built: tuple[Path, Path, str], tmp_path: Path, reg: Registry
) -> None:
    spec, store, image_id = built
    proc = run_envlock(
        "build", str(spec), "--store", str(store), "--push", f"{reg.address}/du/app", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    pushed = proc.stdout.split()[-1]
    du = run_envlock("store", "du", "--json", "--store", str(store), cwd=tmp_path)
    assert du.returncode == 0, du.stderr
    data = json.loads(du.stdout)
    cats = data["categories"]
    assert data["schema"] == "envlock.store-du/v1"
    assert cats["layers"] > 24 << 20 and cats["artifacts"] > 24 << 20  # the heavy wheel and its layer
    assert cats["compressed"] == 0  # pushes left no gzip copies
    assert cats["unreferenced"] < 4096  # the oci: base's own manifest and config
    assert cats["cache"] > 0  # only the diff_id -> compressed digest cache
    assert data["total"] == sum(cats.values())
    (image,) = data["images"]
    assert image["image_id"] == image_id and 0 < image["own"] <= image["bytes"]
    # a pulled image is kept as it came: compressed layers
    fresh = tmp_path / "fresh"
    assert run_envlock("pull", pushed, "--store", str(fresh), cwd=tmp_path).returncode == 0
    pulled = json.loads(run_envlock("store", "du", "--json", "--store", str(fresh), cwd=tmp_path).stdout)
    assert pulled["categories"]["compressed"] > 0 and pulled["categories"]["layers"] == 0
    table = run_envlock("store", "du", "--store", str(store), cwd=tmp_path)
    assert table.returncode == 0 and "compressed" in table.stdout and image_id[:19] in table.stdout


def test_gc_keep_artifacts_keeps_the_wheels(built: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, store, _ = built
    copy = tmp_path / "store"
    subprocess.run(["cp", "-a", str(store), str(copy)], check=True)
    wheels = sorted(p.name for p in (copy / "artifacts" / "sha256").iterdir())
    assert wheels
    proc = run_envlock("store", "gc", "--force", "--keep-artifacts", "--store", str(copy), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (copy / "artifacts" / "sha256").iterdir()) == wheels
    proc = run_envlock(
        "store", "gc", "--force", "--store", str(copy), cwd=tmp_path
    )  # no spec, no git: none kept
    assert proc.returncode == 0, proc.stderr
    assert list((copy / "artifacts" / "sha256").iterdir()) == []


def test_gc_drop_built_artifacts_leaves_one_copy_of_each_layer_s_bytes(
    built: tuple[Path, Path, str], tmp_path: Path
) -> None:
    spec, store, image_id = built
    copy = tmp_path / "store"
    subprocess.run(["cp", "-a", str(store), str(copy)], check=True)
    before = json.loads(run_envlock("store", "du", "--json", "--store", str(copy), cwd=tmp_path).stdout)
    assert before["categories"]["artifacts"] > 24 << 20  # the heavy wheel
    both = run_envlock(
        "store",
        "gc",
        "--force",
        str(spec),
        "--keep-artifacts",
        "--drop-built-artifacts",
        "--store",
        str(copy),
        cwd=tmp_path,
    )
    assert both.returncode == 2 and "error: --keep-artifacts and --drop-built-artifacts" in both.stderr
    proc = run_envlock(
        "store", "gc", str(spec), "--force", "--drop-built-artifacts", "--store", str(copy), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    after = json.loads(run_envlock("store", "du", "--json", "--store", str(copy), cwd=tmp_path).stdout)
    assert after["categories"]["artifacts"] == 0
    assert after["categories"]["layers"] == before["categories"]["layers"]  # the image is kept
    again = run_envlock("build", str(spec), "--store", str(copy), cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.split()[-1] == image_id
    assert "in the store already" in again.stderr and "Fetching" not in again.stderr


def test_a_cache_entry_with_another_digest_is_corrected_by_the_next_push(
    built: tuple[Path, Path, str], reg: Registry
) -> None:
    """A store shared by machines whose compressor gave other bytes: the push still succeeds."""
    from envlock.image import compress

    store = Store(built[1])
    image = stored_image(store)
    first = push_image(store, image, f"{reg.address}/c/one")
    gz = compress.codec("gzip")
    layer = next(la for la in image.layers if la.digest == la.diff_id)
    right = compress.cached(store, layer.diff_id, gz)
    assert right is not None
    wrong = compress.CacheEntry(layer.diff_id, gz.ident, "sha256:" + "e" * 64, 1, right.repositories)
    compress.remember(store, wrong, gz)
    second = push_image(store, image, f"{reg.address}/c/two")
    assert second.reference.split("@")[1] == first.reference.split("@")[1]
    fixed = compress.cached(store, layer.diff_id, gz)
    assert fixed is not None and (fixed.digest, fixed.size) == (right.digest, right.size)
