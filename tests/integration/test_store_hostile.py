"""The store under stress, through the real CLI: damaged blobs heal, gc waits for builds,
records from worktrees all survive, a killed build leaves nothing trusted, and a read-only,
full or misplaced store is one error line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import build_wheel, locked_project, run_envlock

from envlock.store import canonical_json

HEAVY = 24 << 20  # a layer of its own, built in a worker process: builds take a moment


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_tiny_base(layout: Path) -> Path:
    """An OCI layout with one small layer holding ``/usr/bin/python3.11``: enough of a base for
    envlock to build on (no byte code), in milliseconds."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("usr", "usr/bin"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        data = b"#!/bin/sh\nexit 0\n"
        info = tarfile.TarInfo("usr/bin/python3.11")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    layer = buf.getvalue()
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
            "history": [{"created_by": "tiny base"}],
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": _digest(layer),
                    "size": len(layer),
                }
            ],
        }
    )
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for data in (layer, config, manifest):
        (blobs / _digest(data)[7:]).write_bytes(data)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    index = {"schemaVersion": 2, "manifests": [{"digest": _digest(manifest), "size": len(manifest)}]}
    (layout / "index.json").write_text(json.dumps(index))
    return layout


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_base(tmp_path_factory.mktemp("tiny-base") / "layout")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("store-wheels")
    build_wheel(dest, "envlock-fx-alpha", "2.0", ("envlock-fx-beta>=1.0",))
    build_wheel(dest, "envlock-fx-beta", "1.0")
    build_wheel(dest, "envlock-fx-tool", "1.0", entry_points={"fx-hello": "envlock_fx_tool.cli:main"})
    for i in range(3):
        build_wheel(dest, f"envlock-fx-heavy{i}", "1.0", payload=HEAVY)
    return dest


def project(root: Path, wheels: Path, base: Path, packages: str, name: str = "app") -> Path:
    return locked_project(root, wheels, packages, f'base = "oci:{base}"\n', name)


def image_id(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line.startswith("sha256:")][-1]


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def one_error(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    no_traceback(proc)
    assert proc.returncode == code, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], proc.stderr


def layer_blobs(store: Path, image: str) -> list[Path]:
    """The store's files of envlock's own layers of ``image`` (a config digest)."""
    config = json.loads((store / "blobs" / "sha256" / image[7:]).read_text())
    return [store / "blobs" / "sha256" / d[7:] for d in config["rootfs"]["diff_ids"][1:]]


def check_archive(path: Path, image: str) -> None:
    """A docker-archive whose config is ``image`` and whose every member has the bytes its name says."""
    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert f"blobs/sha256/{image[7:]}" in names
        for member in tar.getmembers():
            if member.name.startswith("blobs/sha256/"):
                fh = tar.extractfile(member)
                assert fh is not None
                assert hashlib.sha256(fh.read()).hexdigest() == member.name.rsplit("/", 1)[1]


# -- a damaged blob heals ---------------------------------------------------------------------


def test_a_damaged_layer_is_found_rebuilt_and_exported_intact(
    tmp_path: Path, wheels: Path, tiny_base: Path
) -> None:
    spec = project(tmp_path / "p", wheels, tiny_base, '"envlock-fx-alpha", "envlock-fx-heavy0"')
    store = tmp_path / "store"
    first = image_id(run_envlock("build", str(spec), "--store", str(store), cwd=tmp_path))
    damaged = layer_blobs(store, first)[-1]
    damaged.chmod(0o644)
    with damaged.open("r+b") as fh:  # one flipped byte, same size
        byte = fh.read(1)
        fh.seek(0)
        fh.write(bytes([byte[0] ^ 0xFF]))

    fsck = run_envlock("store", "fsck", "--store", str(store), cwd=tmp_path)
    assert fsck.returncode == 1 and damaged.name[:12] in fsck.stdout, fsck.stdout + fsck.stderr

    archive = tmp_path / "image.tar"
    again = run_envlock(
        "build", str(spec), "--store", str(store), "--docker-archive", str(archive), cwd=tmp_path
    )
    assert image_id(again) == first
    assert "in the store already" not in again.stderr  # not reused: rebuilt
    check_archive(archive, first)
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == damaged.name
    assert run_envlock("store", "fsck", "--store", str(store), cwd=tmp_path).returncode == 0


# -- records from worktrees ---------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def repo_with_spec(root: Path, wheels: Path, base: Path) -> Path:
    spec = project(root, wheels, base, '"envlock-fx-alpha"', name="vision")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "specs")
    git(root, "commit", "-qm", "spec and lock")
    return spec


def test_records_made_at_once_from_a_worktree_and_the_main_checkout_are_all_kept(
    tmp_path: Path, wheels: Path, tiny_base: Path
) -> None:
    main = tmp_path / "repo"
    repo_with_spec(main, wheels, tiny_base)
    other = tmp_path / "linked"
    git(main, "worktree", "add", "-q", "--detach", str(other), "HEAD")
    store = tmp_path / "store"
    env = {"ENVLOCK_HOME": str(store)}
    assert run_envlock("build", "specs/vision.toml", cwd=main, env=env).returncode == 0
    for checkout in (main, other):
        (checkout / "model.pt").write_bytes(b"weights")

    def record(i: int) -> subprocess.CompletedProcess[str]:
        checkout = main if i % 2 else other
        return run_envlock(
            "record", "model.pt", "--name", f"m{i}", "--spec", "specs/vision.toml", cwd=checkout, env=env
        )

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(record, range(24)))

    for proc in results:
        assert proc.returncode == 0, proc.stderr
    note = json.loads(git(main, "notes", "--ref", "envlock", "show", "HEAD"))
    assert sorted(r["name"] for r in note["records"]) == sorted(f"m{i}" for i in range(24))


# -- gc and builds ------------------------------------------------------------------------------


def wait_for_writer(store: Path, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    """Until the build writes its first layer into the store's tmp/."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the build ended early: {proc.communicate()}")
        if any(p.name.startswith("w-") for p in (store / "tmp").glob("*")):
            return
        time.sleep(0.01)
    raise AssertionError("the build wrote nothing")


def test_gc_during_a_build_waits_for_it(tmp_path: Path, wheels: Path, tiny_base: Path) -> None:
    # the spec is outside any specs/ gc looks at: its image is garbage once built
    spec = project(tmp_path / "p", wheels, tiny_base, '"envlock-fx-heavy0", "envlock-fx-heavy1"')
    store = tmp_path / "store"
    archive = tmp_path / "image.tar"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cmd = [sys.executable, "-m", "envlock", "build", str(spec), "--store", str(store)]
    build = subprocess.Popen(
        [*cmd, "--docker-archive", str(archive)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_writer(store, build)

    gc = run_envlock("store", "gc", "--force", "--store", str(store), cwd=elsewhere)
    out, err = build.communicate(timeout=120)

    assert build.returncode == 0, err
    no_traceback(gc)
    assert gc.returncode == 0, gc.stderr
    assert "Waiting for running builds" in gc.stderr
    built = [line for line in out.splitlines() if line.startswith("sha256:")][-1]
    check_archive(archive, built)
    assert run_envlock("store", "fsck", "--store", str(store), cwd=tmp_path).returncode == 0


# -- kill -9 ------------------------------------------------------------------------------------


def test_builds_killed_at_random_moments_leave_nothing_trusted(
    tmp_path: Path, wheels: Path, tiny_base: Path
) -> None:
    """Ten builds killed with SIGKILL (workers too) at random moments, each followed by a gc
    that forgets what was finished; then fsck is clean and a build gives the reference ID."""
    specs = [
        project(
            tmp_path / f"p{i}", wheels, tiny_base, f'"envlock-fx-alpha", "envlock-fx-heavy{i}"', name=f"k{i}"
        )
        for i in range(3)
    ]
    reference = [
        image_id(run_envlock("build", str(s), "--store", str(tmp_path / "ref"), cwd=tmp_path)) for s in specs
    ]
    store = tmp_path / "store"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rng = random.Random(1207)
    for i in range(10):
        spec = specs[i % 3]
        proc = subprocess.Popen(
            [sys.executable, "-m", "envlock", "build", str(spec), "--store", str(store)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.1, 2.0))  # a build here takes about 1-3 s
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if i % 2:
            assert run_envlock("store", "gc", "--force", "--store", str(store), cwd=elsewhere).returncode == 0
        fsck = run_envlock("store", "fsck", "--store", str(store), cwd=tmp_path)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    for spec, expected in zip(specs, reference, strict=True):
        assert image_id(run_envlock("build", str(spec), "--store", str(store), cwd=tmp_path)) == expected
    assert run_envlock("store", "fsck", "--store", str(store), cwd=tmp_path).returncode == 0


# -- records, gc and builds at once ------------------------------------------------------------


def test_records_gc_and_builds_at_once_lose_nothing(tmp_path: Path, wheels: Path, tiny_base: Path) -> None:
    main = tmp_path / "repo"
    repo_with_spec(main, wheels, tiny_base)
    (main / "model.pt").write_bytes(b"weights")
    loose = project(
        tmp_path / "loose", wheels, tiny_base, '"envlock-fx-tool", "envlock-fx-heavy2"', name="loose"
    )
    store = tmp_path / "store"
    env = {"ENVLOCK_HOME": str(store)}
    deadline = time.monotonic() + 20
    failures: list[str] = []
    recorded: list[str] = []
    archives: list[tuple[Path, str]] = []

    def recorder(n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            name = f"r{n}-{i}"
            proc = run_envlock(
                "record", "model.pt", "--name", name, "--spec", "specs/vision.toml", cwd=main, env=env
            )
            (recorded.append(name) if proc.returncode == 0 else failures.append(proc.stderr))
            i += 1

    def collector() -> None:
        while time.monotonic() < deadline:
            proc = run_envlock("store", "gc", cwd=main, env=env)  # keeps specs/ and records
            if proc.returncode != 0:
                failures.append(proc.stderr)
            time.sleep(0.2)

    def builder() -> None:
        i = 0
        while time.monotonic() < deadline:
            archive = tmp_path / f"loose-{i}.tar"
            proc = run_envlock("build", str(loose), "--docker-archive", str(archive), cwd=tmp_path, env=env)
            if proc.returncode == 0:
                archives.append((archive, image_id(proc)))
            else:
                failures.append(proc.stderr)
            i += 1

    with ThreadPoolExecutor(4) as pool:
        jobs = [
            pool.submit(recorder, 0),
            pool.submit(recorder, 1),
            pool.submit(collector),
            pool.submit(builder),
        ]
        for job in jobs:
            job.result()

    assert failures == []
    assert recorded and archives
    note = json.loads(git(main, "notes", "--ref", "envlock", "show", "HEAD"))
    assert sorted(r["name"] for r in note["records"]) == sorted(recorded)
    for archive, built in archives:
        check_archive(archive, built)
    fsck = run_envlock("store", "fsck", cwd=main, env=env)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


# -- the store's file system and export targets -------------------------------------------------


def bwrap(*args: str) -> list[str]:
    return ["bwrap", "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *args, "--"]


def test_a_read_only_store_is_one_error_line_and_still_readable(
    tmp_path: Path, wheels: Path, tiny_base: Path
) -> None:
    spec = project(tmp_path / "p", wheels, tiny_base, '"envlock-fx-alpha"')
    store = tmp_path / "store"
    image_id(run_envlock("build", str(spec), "--store", str(store), cwd=tmp_path))
    other = project(tmp_path / "q", wheels, tiny_base, '"envlock-fx-tool"', name="other")

    def in_ro(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [*bwrap("--ro-bind", str(store), str(store)), sys.executable, "-m", "envlock", *args]
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env={**os.environ})

    one_error(in_ro("build", str(other), "--store", str(store)), 2, "Read-only file system", str(store))
    assert in_ro("store", "fsck", "--store", str(store)).returncode == 0
    assert in_ro("build", str(spec), "--store", str(store)).returncode == 0  # found, nothing to write


def test_a_full_store_is_one_error_line_and_keeps_nothing_half_written(
    tmp_path: Path, wheels: Path, tiny_base: Path
) -> None:
    spec = project(tmp_path / "p", wheels, tiny_base, '"envlock-fx-heavy0"')
    store = tmp_path / "store"  # an 8 MiB file system, for this build only; the wheel is 24 MiB
    script = '"$0" -m envlock build "$1" --store "$2"; echo "exit=$?"; ls -A "$2/tmp"'
    cmd = [*bwrap("--size", str(8 << 20), "--tmpfs", str(store)), "sh", "-c", script]
    proc = subprocess.run(
        [*cmd, sys.executable, str(spec), str(store)], cwd=tmp_path, capture_output=True, text=True
    )

    lines = proc.stdout.splitlines()
    assert lines[-1:] == ["exit=1"], proc.stdout + proc.stderr  # and nothing left in tmp/
    one_error(subprocess.CompletedProcess(proc.args, 1, "", proc.stderr), 1, "No space left on device")
    assert "hint: free space" in proc.stderr


def test_envlock_home_that_is_a_file_is_one_error_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("a file")
    for args in (["store", "ls"], ["store", "fsck"], ["store", "gc"]):
        one_error(run_envlock(*args, cwd=tmp_path, env={"ENVLOCK_HOME": str(home)}), 2, str(home))


def test_fsck_of_damaged_index_files_reports_them(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_envlock("store", "ls", "--store", str(store), cwd=tmp_path).returncode == 0
    (store / "index.json").write_text('{"manifests": [{"digest": "sha256:../../../etc/passwd"}]}')
    (store / "envs" / f"{'0' * 64}-linux-64.json").write_text("{garbage")

    proc = run_envlock("store", "fsck", "--store", str(store), cwd=tmp_path)

    no_traceback(proc)
    assert proc.returncode == 1
    assert proc.stdout.startswith("env index file"), proc.stdout
    assert "index.json:" in proc.stdout


@pytest.mark.parametrize(
    ("option", "make", "words"),
    [
        ("--oci", lambda p: p.write_text("a file"), "is not a directory"),
        ("--oci", lambda p: None, "does not exist"),
        ("--oci", lambda p: (p.mkdir(), (p / "mine.txt").write_text("x")), "non-empty directory"),
        ("--docker-archive", lambda p: p.mkdir(), "is a directory"),
        ("--docker-archive", lambda p: None, "does not exist"),
    ],
    ids=["oci-file", "oci-no-parent", "oci-non-empty", "archive-directory", "archive-no-parent"],
)
def test_a_bad_export_target_is_refused_before_building(
    tmp_path: Path, wheels: Path, tiny_base: Path, option: str, make: object, words: str
) -> None:
    spec = project(tmp_path / "p", wheels, tiny_base, '"envlock-fx-alpha"')
    target = tmp_path / "target"
    if words == "does not exist":
        target = tmp_path / "missing" / "target"
    else:
        make(target)  # type: ignore[operator]
    store = tmp_path / "store"

    proc = run_envlock("build", str(spec), "--store", str(store), option, str(target), cwd=tmp_path)

    one_error(proc, 2, str(target), words)
    assert not store.exists()  # nothing was built


def test_two_builds_exporting_to_one_new_oci_directory_both_succeed(
    tmp_path: Path, wheels: Path, tiny_base: Path
) -> None:
    """``envlock build --oci DIR`` twice at once, DIR new: both exit 0, DIR is one complete
    layout that skopeo reads, and no staging directory is left beside it."""
    spec = project(tmp_path / "p", wheels, tiny_base, '"envlock-fx-alpha"')
    store = tmp_path / "store"
    first = run_envlock("build", str(spec), "--store", str(store), cwd=tmp_path)
    assert first.returncode == 0, first.stderr  # the image is in the store: the exports race
    image_id = first.stdout.split()[-1]
    out = tmp_path / "exports" / "layout"
    out.parent.mkdir()
    cmd = [sys.executable, "-m", "envlock", "build", str(spec), "--store", str(store), "--oci", str(out)]
    for _ in range(3):
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        procs = [subprocess.Popen(cmd, cwd=tmp_path, **pipes) for _ in range(2)]  # type: ignore[call-overload]
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr
            assert stdout.split()[-1] == image_id
        assert [p.name for p in out.parent.iterdir()] == ["layout"]
        (entry,) = json.loads((out / "index.json").read_text())["manifests"]
        ref = entry["annotations"]["org.opencontainers.image.ref.name"]
        skopeo = ["skopeo", "inspect", "--config", f"oci:{out}:{ref}"]
        inspect = subprocess.run(skopeo, capture_output=True, text=True, check=False)
        assert inspect.returncode == 0, inspect.stderr
        assert (
            "sha256:"
            + hashlib.sha256(
                subprocess.run([*skopeo, "--raw"], capture_output=True, check=True).stdout
            ).hexdigest()
            == image_id
        )
        shutil.rmtree(out)


# -- forged digests from outside ------------------------------------------------------------------

TRAVERSAL = "../../../planted/layer.tar"
FORGED = "sha256:" + "./" * ((64 - len(TRAVERSAL)) // 2) + TRAVERSAL


def forged_layout(layout: Path, base: Path) -> str:
    """A copy of ``base`` whose (correctly digested) manifest adds a layer named by a path."""
    import shutil

    shutil.copytree(base, layout)
    index = json.loads((layout / "index.json").read_text())
    old = index["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs" / "sha256" / old[7:]).read_text())
    manifest["layers"].append({"mediaType": manifest["layers"][0]["mediaType"], "digest": FORGED, "size": 22})
    data = canonical_json(manifest)
    (layout / "blobs" / "sha256" / _digest(data)[7:]).write_bytes(data)
    index["manifests"][0] = {"digest": _digest(data), "size": len(data)}
    (layout / "index.json").write_text(json.dumps(index))
    return _digest(data)


def test_a_base_whose_manifest_names_a_path_is_refused_and_nothing_outside_is_touched(
    tmp_path: Path, wheels: Path, tiny_base: Path
) -> None:
    assert len(FORGED) == 71
    layout = tmp_path / "hostile-base"
    forged_layout(layout, tiny_base)
    store = tmp_path / "store"
    # where the forged name leads from blobs/sha256/ of the store, the base and the export alike
    planted = Path(os.path.normpath(store / "blobs" / "sha256" / FORGED[7:]))
    assert planted == tmp_path / "planted" / "layer.tar"
    planted.parent.mkdir()
    planted.write_bytes(b"planted outside the store")
    spec = project(tmp_path / "p", wheels, layout, '"envlock-fx-alpha"')
    out = tmp_path / "oci"

    proc = run_envlock("build", str(spec), "--store", str(store), "--oci", str(out), cwd=tmp_path)

    one_error(proc, 1, "layers[1].digest", "is not a sha256 digest")
    assert not out.exists()
    assert planted.read_bytes() == b"planted outside the store"
    assert planted.stat().st_nlink == 1  # never hard-linked anywhere
    fsck = run_envlock("store", "fsck", "--store", str(store), cwd=tmp_path)
    assert fsck.returncode == 0, fsck.stdout  # the store took nothing in


def test_a_pulled_manifest_naming_a_path_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    """A registry whose manifest matches the pinned digest but names a layer by a path."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    config = canonical_json({"rootfs": {"type": "layers", "diff_ids": [FORGED]}})
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": FORGED, "size": 25}],
        }
    )
    asked: list[str] = []

    class Registry(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return None

        def do_GET(self) -> None:
            asked.append(self.path)
            body = (
                manifest if "/manifests/" in self.path else config if _digest(config) in self.path else None
            )
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store = tmp_path / "store"
    planted = Path(os.path.normpath(store / "blobs" / "sha256" / FORGED[7:]))
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"planted outside the store")
    try:
        ref = f"127.0.0.1:{server.server_address[1]}/hostile/image@{_digest(manifest)}"
        proc = run_envlock("pull", ref, "--store", str(store), cwd=tmp_path)
    finally:
        server.shutdown()
        server.server_close()

    one_error(proc, 1, "layers[0].digest", "is not a sha256 digest")
    assert [p for p in asked if "/blobs/" in p] == []  # refused before any blob was asked for
    assert planted.read_bytes() == b"planted outside the store"
    assert run_envlock("store", "fsck", "--store", str(store), cwd=tmp_path).returncode == 0
