"""Engines that are not envlock read what ``envlock build --push --compression zstd`` pushes
(issue 14), and a gzip push takes the same roads as a control.

- containerd (Debian's 1.6.20, a private daemon started here): ``ctr images pull`` fetches the
  image by digest and unpacks it.  Its unpacker decompresses each layer and refuses one whose
  uncompressed digest is not the config's ``diff_id`` ("wrong diff id calculated on extraction",
  containerd ``rootfs/apply.go``), then records the digest it computed as the layer's
  ``containerd.io/uncompressed`` label; the tests read those labels, the snapshot chain and the
  config digest back from containerd, check that a forged ``diff_id`` is refused, and start the
  image's Python with ``ctr run``.
- podman (Debian's 4.3.1, its own storage under /tmp) pulls it; the IDs it gives the stored layers
  chain the uncompressed digests it computed, which must be the config's ``diff_ids``; then
  ``podman run`` starts the image's Python.
- containers/image (skopeo 1.9.3, the library podman and CRI-O pull with) decompresses the layers
  into a ``dir:``, skopeo writes that as a docker-archive, and the Docker engine loads it under the
  build's image ID.  (skopeo < 1.14 cannot do both in one copy: containers/image#1260.)
- the Docker engine pulls the gzip image under the build's image ID; Docker 20.10 fails on the
  zstd one ("archive/tar: invalid tar header": it reads the zstd frame as a tar), as the README
  warns.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import Dockerd, build_wheel, docker, locked_project, run_envlock, wait_for

from envlock.image.compress import LAYER_ZSTD
from envlock.image.model import LAYER_GZIP, LAYER_TAR

MEDIA_TYPES = {"zstd": LAYER_ZSTD, "gzip": LAYER_GZIP}
# RFC 8878 section 3.1.1 (zstd frame magic 0xFD2FB528, little-endian); RFC 1952 section 2.3.1
# (gzip ID1 ID2, then CM 8 = deflate)
MAGIC = {"zstd": b"\x28\xb5\x2f\xfd", "gzip": b"\x1f\x8b\x08"}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
NAMESPACE = "envlock-tests"
# What the image's Python reports: its prefix, working directory and three packages' data.
PROBE = (
    "import os, sys, envlock_fx_alpha, envlock_fx_beta, envlock_fx_heavy;"
    "payload = os.path.join(envlock_fx_heavy.__path__[0], 'payload.bin');"
    "print(sys.prefix, os.getcwd(), envlock_fx_alpha.__version__, envlock_fx_beta.__version__,"
    " os.path.getsize(payload))"
)
PAYLOAD = 8 << 20  # the heavy wheel: its own layer (>= 4 MiB), incompressible


@dataclass(frozen=True)
class Pushed:
    """One build pushed twice to the session registry: ``refs`` maps ``zstd``/``gzip`` to
    ``HOST:PORT/REPO@sha256:...``; ``config`` is the image config as JSON."""

    registry: str
    image_id: str
    refs: dict[str, str]
    config: dict[str, Any]

    @property
    def diff_ids(self) -> list[str]:
        ids: list[str] = self.config["rootfs"]["diff_ids"]
        return ids


def registry_get(url: str, accept: str = "") -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=60) as resp:
        data: bytes = resp.read()
    return data


def manifest_of(ref: str) -> dict[str, Any]:
    """The manifest ``ref`` names, straight from the registry, its digest checked."""
    host_repo, digest = ref.split("@")
    host, repo = host_repo.split("/", 1)
    data = registry_get(f"http://{host}/v2/{repo}/manifests/{digest}", OCI_MANIFEST)
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    manifest: dict[str, Any] = json.loads(data)
    return manifest


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory, base_layout: Path, registry: str) -> Pushed:
    """debian:bookworm + Python 3.11, two small packages and a heavy one, built once by the CLI
    and pushed with each codec; the image ID is the plain build's."""
    wheels = tmp_path_factory.mktemp("zstd-wheels")
    build_wheel(wheels, "envlock-fx-alpha", "2.0", ("envlock-fx-beta>=1.0",))
    build_wheel(wheels, "envlock-fx-beta", "1.0")
    build_wheel(wheels, "envlock-fx-heavy", "1.0", payload=PAYLOAD)
    root = tmp_path_factory.mktemp("zstd-project")
    image = f'base = "oci:{base_layout}"\nworkdir = "/work"\n'
    spec = locked_project(root, wheels, '"envlock-fx-alpha", "envlock-fx-heavy"', image)
    store = root / "store"
    built = run_envlock("build", str(spec), "--store", str(store), cwd=root)
    assert built.returncode == 0, built.stderr
    image_id = built.stdout.split()[-1]
    refs = {}
    for compression in ("zstd", "gzip"):
        repo = f"{registry}/engines/{compression}"
        proc = run_envlock(
            "build", str(spec), "--store", str(store), "--push", repo, "--compression", compression, cwd=root
        )
        assert proc.returncode == 0, proc.stderr
        refs[compression] = proc.stdout.split()[-1]
        assert refs[compression].startswith(repo + "@sha256:")
    config_bytes = registry_get(f"http://{registry}/v2/engines/zstd/blobs/{image_id}")
    assert "sha256:" + hashlib.sha256(config_bytes).hexdigest() == image_id
    return Pushed(registry, image_id, refs, json.loads(config_bytes))


def test_every_layer_of_each_push_has_its_codec_s_media_type(pushed: Pushed) -> None:
    """The roads below are only worth taking if every layer, the base's too, went out in the
    codec its media type names."""
    assert len(pushed.diff_ids) >= 3
    for compression, ref in pushed.refs.items():
        manifest = manifest_of(ref)
        assert manifest["config"]["digest"] == pushed.image_id
        assert [la["mediaType"] for la in manifest["layers"]] == [MEDIA_TYPES[compression]] * len(
            pushed.diff_ids
        )
        # engines detect the codec from the bytes, not the media type: the frames must be real
        repo = ref.split("@")[0].split("/", 1)[1]
        for layer in manifest["layers"]:
            url = f"http://{pushed.registry}/v2/{repo}/blobs/{layer['digest']}"
            request = urllib.request.Request(url, headers={"Range": "bytes=0-3"})
            with urllib.request.urlopen(request, timeout=60) as resp:
                assert resp.read(4).startswith(MAGIC[compression]), layer
    zstd, gzip = (manifest_of(pushed.refs[c]) for c in ("zstd", "gzip"))
    assert {la["digest"] for la in zstd["layers"]}.isdisjoint(la["digest"] for la in gzip["layers"])


# -- containerd --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Containerd:
    """A private containerd: ``address`` is its gRPC socket; ``snapshotter`` the one tests use."""

    address: str
    root: Path
    snapshotter: str

    def ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``ctr`` against this daemon, in the tests' namespace."""
        return subprocess.run(
            ["ctr", "--address", self.address, "--namespace", NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def start_containerd(root: Path) -> tuple[subprocess.Popen[bytes], Containerd]:
    """containerd with its own config, socket, root, state and plugin directories under ``root``;
    no CRI plugin, no debug or metrics listener.  The snapshotter is overlayfs when containerd
    says it works on ``root``'s file system, else native (plain copies, works everywhere)."""
    sock = root / "containerd.sock"
    config = root / "config.toml"
    config.write_text(
        "version = 2\n"
        f'root = "{root / "root"}"\n'
        f'state = "{root / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n'
        f'[ttrpc]\n  address = "{sock}.ttrpc"\n'
        '[debug]\n  address = ""\n'
        '[metrics]\n  address = ""\n'
        f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{root / "opt"}"\n'
    )
    log = (root / "containerd.log").open("wb")
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)
    probe = Containerd(str(sock), root, "native")

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"containerd exited: {(root / 'containerd.log').read_text()[-2000:]}")
        return sock.exists() and probe.ctr("version", timeout=10).returncode == 0

    wait_for(up, 60, "containerd")
    plugins = probe.ctr("plugins", "ls").stdout.split("\n")
    overlay = any(line.split()[1:2] == ["overlayfs"] and line.split()[-1] == "ok" for line in plugins if line)
    return proc, Containerd(str(sock), root, "overlayfs" if overlay else "native")


def stop_containerd(proc: subprocess.Popen[bytes], ctrd: Containerd) -> None:
    """Kill what is still running in the namespace, stop the daemon, unmount and delete its tree."""
    for task in ctrd.ctr("tasks", "ls", "--quiet").stdout.split():
        ctrd.ctr("tasks", "kill", "--signal", "SIGKILL", task)
        ctrd.ctr("tasks", "delete", "--force", task)
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
    remove_tree(ctrd.root)


def remove_tree(root: Path) -> None:
    """Unmount whatever an engine left mounted under ``root`` (deepest first), then delete it."""
    prefix = str(root) + "/"
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in reversed(points):
        subprocess.run(["umount", "-l", point], check=False)
    subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture
def containerd() -> Iterator[Containerd]:
    """A fresh containerd for each test (it starts in well under a second), so that no
    snapshot unpacked by one test can stand in for another's."""
    root = Path(tempfile.mkdtemp(prefix="envlock-ctrd-", dir="/tmp"))  # short: socket paths
    proc, ctrd = start_containerd(root)
    try:
        yield ctrd
    finally:
        stop_containerd(proc, ctrd)


def content_labels(ctrd: Containerd) -> dict[str, dict[str, str]]:
    """``ctr content ls``: blob digest -> its labels (the table is tab-separated)."""
    out = ctrd.ctr("content", "ls").stdout.splitlines()
    table: dict[str, dict[str, str]] = {}
    for line in out[1:]:
        digest, _size, _age, labels = line.split("\t")
        pairs = (item.split("=", 1) for item in labels.split(",") if "=" in item)
        table[digest] = dict(pairs)
    return table


def snapshot_parents(ctrd: Containerd) -> dict[str, str]:
    """``ctr snapshots ls``: committed snapshot key -> its parent ("" for none)."""
    rows = [
        line.split()
        for line in ctrd.ctr("snapshots", "--snapshotter", ctrd.snapshotter, "ls").stdout.splitlines()
    ]
    return {row[0]: (row[1] if len(row) == 3 else "") for row in rows[1:] if row[-1] == "Committed"}


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI image spec ``config.md`` "Layer ChainID": ChainID(L0) = DiffID(L0),
    ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))."""
    chain = [diff_ids[0]]
    for diff_id in diff_ids[1:]:
        chain.append("sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_containerd_unpacks_the_push_to_the_build_s_diff_ids_and_runs_it(
    pushed: Pushed, containerd: Containerd, compression: str
) -> None:
    ref = pushed.refs[compression]
    pull = containerd.ctr("images", "pull", "--plain-http", "--snapshotter", containerd.snapshotter, ref)
    assert pull.returncode == 0, pull.stdout + pull.stderr
    assert "unpacking linux/amd64" in pull.stdout
    check = containerd.ctr("images", "check").stdout.splitlines()
    assert len(check) == 2 and check[1].split()[0] == ref
    assert check[1].split()[-1] == "true", check  # UNPACKED
    # the config containerd keeps for the image is envlock's: same digest, the image ID
    labels = content_labels(containerd)
    manifest = manifest_of(ref)
    mlabels = labels[ref.split("@")[1]]
    assert mlabels["containerd.io/gc.ref.content.config"] == pushed.image_id
    blobs = [mlabels[f"containerd.io/gc.ref.content.l.{i}"] for i in range(len(manifest["layers"]))]
    assert blobs == [la["digest"] for la in manifest["layers"]]
    # what containerd's unpacker computed from each decompressed layer, checked by it against
    # the config's diff_ids before committing the snapshot
    assert [labels[blob]["containerd.io/uncompressed"] for blob in blobs] == pushed.diff_ids
    chain = chain_ids(pushed.diff_ids)
    assert labels[pushed.image_id][f"containerd.io/gc.ref.snapshot.{containerd.snapshotter}"] == chain[-1]
    parents = snapshot_parents(containerd)
    assert {key: parents.get(key) for key in chain} == dict(zip(chain, ["", *chain[:-1]], strict=True))
    # and the unpacked image runs: the venv's Python, the config's workdir, every package
    run = containerd.ctr(
        "run",
        "--rm",
        "--snapshotter",
        containerd.snapshotter,
        ref,
        f"envlock-{compression}",
        "/opt/env/bin/python",
        "-c",
        PROBE,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.split() == ["/opt/env", "/work", "2.0", "1.0", str(PAYLOAD)]


def upload_blob(registry: str, repo: str, data: bytes) -> str:
    """Distribution API: ``POST`` an upload session, then ``PUT ?digest=`` with the bytes."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = urllib.request.Request(f"http://{registry}/v2/{repo}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(start, timeout=60) as resp:
        location = resp.headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    sep = "&" if "?" in location else "?"
    put = urllib.request.Request(
        f"{location}{sep}digest={digest}",
        data=data,
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(put, timeout=60) as resp:
        assert resp.status == 201
    return digest


def test_containerd_refuses_a_zstd_layer_whose_diff_id_is_forged(
    pushed: Pushed, containerd: Containerd
) -> None:
    """The control for the test above: the same zstd layers under a config whose last
    ``diff_id`` is another layer's make containerd's unpack fail, so the check is real."""
    manifest = manifest_of(pushed.refs["zstd"])
    config = json.loads(json.dumps(pushed.config))
    config["rootfs"]["diff_ids"][-1] = config["rootfs"]["diff_ids"][0]
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    repo = "engines/forged"
    for layer in manifest["layers"]:  # the layers into the new repository, unchanged
        mount = urllib.request.Request(
            f"http://{pushed.registry}/v2/{repo}/blobs/uploads/?mount={layer['digest']}&from=engines/zstd",
            method="POST",
        )
        with urllib.request.urlopen(mount, timeout=60) as resp:
            assert resp.status == 201
    config_digest = upload_blob(pushed.registry, repo, config_bytes)
    manifest["config"] = {**manifest["config"], "digest": config_digest, "size": len(config_bytes)}
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
    put = urllib.request.Request(
        f"http://{pushed.registry}/v2/{repo}/manifests/{digest}",
        data=manifest_bytes,
        method="PUT",
        headers={"Content-Type": OCI_MANIFEST},
    )
    with urllib.request.urlopen(put, timeout=60) as resp:
        assert resp.status == 201
    pull = containerd.ctr(
        "images",
        "pull",
        "--plain-http",
        "--snapshotter",
        containerd.snapshotter,
        f"{pushed.registry}/{repo}@{digest}",
    )
    assert pull.returncode != 0, pull.stdout
    assert "wrong diff id calculated on extraction" in pull.stderr, pull.stderr
    assert chain_ids(config["rootfs"]["diff_ids"])[-1] not in snapshot_parents(containerd)


# -- podman ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Podman:
    """podman with its own storage (``root``/``run``) and temp dir, no systemd, no network."""

    root: Path
    driver: str

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        options = [f"--root={self.root / 'root'}", f"--runroot={self.root / 'run'}"]
        options += [f"--tmpdir={self.root / 'tmp'}", f"--storage-driver={self.driver}"]
        options += ["--cgroup-manager=cgroupfs", "--events-backend=file"]
        return subprocess.run(
            ["podman", *options, *args], capture_output=True, text=True, timeout=timeout, check=False
        )


@pytest.fixture
def podman() -> Iterator[Podman]:
    """A fresh podman storage for each test; overlay when it works on /tmp, else vfs (copies)."""
    root = Path(tempfile.mkdtemp(prefix="envlock-podman-", dir="/tmp"))
    engine = Podman(root, "overlay")
    if engine("info").returncode != 0:
        engine = Podman(root, "vfs")
    try:
        yield engine
    finally:
        engine("rm", "--all", "--force")
        engine("rmi", "--all", "--force")
        remove_tree(root)


def storage_layer_ids(diff_ids: list[str]) -> list[str]:
    """The IDs containers/image gives the layers it stores: the first layer's uncompressed
    digest, then sha256(parent ID + "+" + uncompressed digest), each digest the one it computed
    while decompressing the blob (containers/image ``storage/storage_dest.go``, ``commitLayer``)."""
    ids = [diff_ids[0].split(":")[1]]
    for diff_id in diff_ids[1:]:
        ids.append(hashlib.sha256(f"{ids[-1]}+{diff_id.split(':')[1]}".encode()).hexdigest())
    return ids


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_podman_pulls_the_push_to_the_build_s_diff_ids_and_runs_it(
    pushed: Pushed, podman: Podman, compression: str
) -> None:
    ref = pushed.refs[compression]
    pull = podman("pull", "--tls-verify=false", ref)
    assert pull.returncode == 0, pull.stderr
    inspect = podman("image", "inspect", ref)
    assert inspect.returncode == 0, inspect.stderr
    (image,) = json.loads(inspect.stdout)
    assert "sha256:" + image["Id"] == pushed.image_id  # podman keeps envlock's config
    assert image["Digest"] == ref.split("@")[1]
    # the layers' storage IDs chain the digests podman computed from the decompressed blobs
    tree = podman("image", "tree", ref).stdout
    shown = re.findall(r"ID: ([0-9a-f]{12}) ", tree.split("Image Layers", 1)[1])
    assert shown == [layer[:12] for layer in storage_layer_ids(pushed.diff_ids)], tree
    # This machine's container has no CAP_SYS_RESOURCE and lower hard limits than podman's
    # defaults (1048576 files), which runc may not raise: run with lower ones.
    limits = ["--ulimit=nofile=1024:1024", "--ulimit=nproc=1024:1024"]
    run = podman(
        "run", "--rm", "--network=none", *limits, ref, "/opt/env/bin/python", "-c", PROBE, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["/opt/env", "/work", "2.0", "1.0", str(PAYLOAD)]


# -- containers/image (skopeo) and the Docker engine -------------------------------------------


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_containers_image_decompresses_the_push_and_docker_loads_the_build_s_image_id(
    pushed: Pushed, dockerd: Dockerd, tmp_path: Path, compression: str
) -> None:
    plain = tmp_path / "plain"
    copy = skopeo(
        "copy",
        "--src-tls-verify=false",
        "--dest-decompress",
        f"docker://{pushed.refs[compression]}",
        f"dir:{plain}",
    )
    assert copy.returncode == 0, copy.stderr
    # containers/image names each blob it wrote by the digest of the bytes it decompressed
    manifest = json.loads((plain / "manifest.json").read_text())
    assert manifest["config"]["digest"] == pushed.image_id
    assert [la["digest"] for la in manifest["layers"]] == pushed.diff_ids
    assert {la["mediaType"] for la in manifest["layers"]} == {LAYER_TAR}
    archive = tmp_path / "image.tar"
    assert (out := skopeo("copy", f"dir:{plain}", f"docker-archive:{archive}")).returncode == 0, out.stderr
    docker(dockerd.host, "image", "rm", "--force", pushed.image_id)  # a load that really loads
    load = docker(dockerd.host, "load", "--input", str(archive))
    try:
        assert load.returncode == 0, load.stderr  # the engine checks every layer against diff_ids
        assert f"Loaded image ID: {pushed.image_id}" in load.stdout, load.stdout
        inspect = docker(dockerd.host, "image", "inspect", "--format", "{{.Id}}", pushed.image_id)
        assert inspect.stdout.strip() == pushed.image_id
    finally:
        docker(dockerd.host, "image", "rm", "--force", pushed.image_id)


def test_docker_pulls_the_gzip_push_and_docker_20_10_refuses_the_zstd_one(
    pushed: Pushed, dockerd: Dockerd
) -> None:
    """What the README tells users: gzip for every engine; zstd only from Docker 23 on."""
    server = docker(dockerd.host, "version", "--format", "{{.Server.Version}}").stdout.strip()
    major = int(server.split(".")[0])
    docker(dockerd.host, "image", "rm", "--force", pushed.image_id)
    try:
        gzip = docker(dockerd.host, "pull", pushed.refs["gzip"])
        assert gzip.returncode == 0, gzip.stderr
        inspect = docker(dockerd.host, "image", "inspect", "--format", "{{.Id}}", pushed.refs["gzip"])
        assert inspect.stdout.strip() == pushed.image_id
        docker(dockerd.host, "image", "rm", "--force", pushed.image_id)
        zstd = docker(dockerd.host, "pull", pushed.refs["zstd"])
        if major >= 23:
            assert zstd.returncode == 0, zstd.stderr
        else:
            # 20.10 does not know the media type and reads the zstd frame as a tar
            assert zstd.returncode != 0, zstd.stdout
            assert "invalid tar header" in zstd.stderr, zstd.stderr
            absent = docker(dockerd.host, "image", "inspect", pushed.image_id)
            assert absent.returncode != 0
    finally:
        docker(dockerd.host, "image", "rm", "--force", pushed.image_id)
