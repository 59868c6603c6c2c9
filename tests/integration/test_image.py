"""Images built without a daemon, checked with the real Docker engine, registry, skopeo, umoci."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import (
    Dockerd,
    build_wheel,
    docker,
    hostile_build,
    hostile_env,
    locked_project,
    run_envlock,
    sha256_file,
    write_spec,
)

from envlock import lockfile as lockmod


@pytest.fixture(scope="module")
def image_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("image-wheels")
    build_wheel(dest, "envlock-fx-alpha", "2.0", ("envlock-fx-beta>=1.0",))
    build_wheel(dest, "envlock-fx-beta", "1.0")
    build_wheel(dest, "envlock-fx-beta", "1.1")
    build_wheel(dest, "envlock-fx-tool", "1.0", entry_points={"fx-hello": "envlock_fx_tool.cli:main"})
    build_wheel(dest, "envlock-fx-heavy", "1.0", payload=96 << 20)
    return dest


def project(root: Path, wheels: Path, base: Path, packages: str, name: str = "app") -> Path:
    """A spec locked against local wheels on the session's Debian base; returns the spec path."""
    image = f'base = "oci:{base}"\nenv = {{ APP_MODE = "test" }}\nworkdir = "/work"\n'
    return locked_project(root, wheels, packages, image, name)


def build(
    spec: Path, store: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_envlock("build", str(spec), "--store", str(store), *args, cwd=spec.parent.parent, env=env)


def image_id(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    ids = [line for line in proc.stdout.splitlines() if line.startswith("sha256:")]
    assert ids, proc.stdout
    return ids[-1]


def test_same_image_id_under_a_hostile_second_build(tmp_path: Path, image_wheels: Path) -> None:
    """Second store, other directory, umask 077, time zone, locale, temp dir and a clock
    years ahead; the Debian base is bootstrapped again with mmdebstrap in each store."""
    spec = write_spec(
        tmp_path / "p",
        "deb",
        f"""python = "3.11"
[pip]
packages = ["envlock-fx-alpha", "envlock-fx-tool"]
find-links = ["{image_wheels}"]
no-index = true
[image]
base = "debian:bookworm"
""",
    )
    assert run_envlock("lock", str(spec), cwd=tmp_path / "p").returncode == 0
    first = image_id(build(spec, tmp_path / "store-a"))

    proc = hostile_build(spec, tmp_path)
    assert image_id(proc) == first
    # the clock really was faked for that build
    assert (
        "2031"
        in subprocess.run(
            ["date"], env={**os.environ, **hostile_env(tmp_path)}, capture_output=True, text=True
        ).stdout
    )


def test_rebuild_of_a_built_lock_reuses_the_image(
    tmp_path: Path, image_wheels: Path, base_layout: Path
) -> None:
    spec = project(tmp_path, image_wheels, base_layout, '"envlock-fx-alpha"')
    first = build(spec, tmp_path / "store")
    again = build(spec, tmp_path / "store")
    assert image_id(first) == image_id(again)
    assert "is in the store already" in again.stderr


def test_a_spec_s_image_id_does_not_depend_on_another_spec_with_the_same_env(
    tmp_path: Path, image_wheels: Path, base_layout: Path
) -> None:
    """Two specs with the same content (one env ID) and other names have other configs (the
    name is the image title): each spec's image ID is the same whichever was built first."""
    alpha = project(tmp_path, image_wheels, base_layout, '"envlock-fx-beta"', name="alpha")
    beta = project(tmp_path, image_wheels, base_layout, '"envlock-fx-beta"', name="beta")
    alone = image_id(build(beta, tmp_path / "fresh"))
    image_id(build(alpha, tmp_path / "shared"))
    after_alpha = image_id(build(beta, tmp_path / "shared"))
    assert after_alpha == alone


def test_skopeo_and_umoci_read_the_layout(tmp_path: Path, image_wheels: Path, base_layout: Path) -> None:
    spec = project(tmp_path, image_wheels, base_layout, '"envlock-fx-alpha", "envlock-fx-tool"')
    layout = tmp_path / "layout"
    built = image_id(build(spec, tmp_path / "store", "--oci", str(layout)))
    refs = subprocess.run(
        ["umoci", "ls", "--layout", str(layout)], capture_output=True, text=True, check=True
    )
    ref = refs.stdout.split()[0]
    config = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{layout}:{ref}"], capture_output=True, text=True, check=True
    )
    data = json.loads(config.stdout)
    assert data["config"]["Labels"]["dev.envlock.env-id"] == lockmod.read(spec.with_suffix(".lock")).env_id
    assert "VIRTUAL_ENV=/opt/env" in data["config"]["Env"]
    assert data["config"]["WorkingDir"] == "/work"
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", "--config", f"oci:{layout}:{ref}"], capture_output=True, check=True
    )
    assert "sha256:" + __import__("hashlib").sha256(raw.stdout).hexdigest() == built

    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "raw", "unpack", "--rootless", "--image", f"{layout}:{ref}", str(bundle)],
        capture_output=True,
        check=True,
    )
    site = bundle / "opt/env/lib/python3.11/site-packages"
    assert (site / "envlock_fx_alpha/__init__.py").read_text() == "__version__ = '2.0'\n"
    assert (site / "envlock_fx_tool-1.0.dist-info/INSTALLER").read_text() == "envlock\n"
    assert (bundle / "opt/env/bin/fx-hello").read_text().startswith("#!/opt/env/bin/python")
    assert (bundle / "opt/env/pyvenv.cfg").read_text().startswith("home = /usr/bin\n")
    assert not list(bundle.glob("opt/env/**/*.pyc"))
    inside = (bundle / "opt/env/envlock.lock").read_text()
    assert "[meta]" not in inside and "url =" not in inside
    assert lockmod.read(spec.with_suffix(".lock")).env_id in inside


def test_docker_load_and_run_import_the_packages(
    tmp_path: Path, image_wheels: Path, base_layout: Path, dockerd: Dockerd
) -> None:
    spec = project(tmp_path, image_wheels, base_layout, '"envlock-fx-alpha", "envlock-fx-tool"')
    env = {"DOCKER_HOST": dockerd.host}
    built = image_id(build(spec, tmp_path / "store", "--load", env=env))
    inspect = docker(dockerd.host, "image", "inspect", "--format", "{{.Id}}", built)
    assert inspect.stdout.strip() == built
    out = docker(
        dockerd.host,
        "run",
        "--rm",
        "--network=none",
        built,
        "python",
        "-c",
        "import envlock_fx_alpha, envlock_fx_beta, os, sys; "
        "print(envlock_fx_alpha.__version__, envlock_fx_beta.__version__, sys.prefix, os.getcwd(), os.environ['APP_MODE'])",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2.0", "1.1", "/opt/env", "/work", "test"]
    hello = docker(dockerd.host, "run", "--rm", "--network=none", built, "fx-hello")
    assert hello.stdout.strip() == "hello from envlock-fx-tool"

    # envlock run mounts the directory at the workdir
    (tmp_path / "train.py").write_text(
        "import envlock_fx_alpha\nopen('out.txt','w').write('trained with ' + envlock_fx_alpha.__version__)\n"
    )
    proc = run_envlock(
        "run",
        str(spec),
        "--store",
        str(tmp_path / "store"),
        "--mount",
        str(tmp_path),
        "--",
        "python",
        "train.py",
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.txt").read_text() == "trained with 2.0"


def test_push_then_docker_pull_by_digest_gives_the_same_id(
    tmp_path: Path, image_wheels: Path, base_layout: Path, dockerd: Dockerd, registry: str
) -> None:
    spec = project(tmp_path, image_wheels, base_layout, '"envlock-fx-alpha"')
    proc = build(spec, tmp_path / "store", "--push", f"{registry}/envlock/app")
    built = image_id(proc)
    pushed = proc.stdout.strip().splitlines()[-1]
    assert pushed.startswith(f"{registry}/envlock/app@sha256:")
    pulled = docker(dockerd.host, "pull", pushed)
    assert pulled.returncode == 0, pulled.stderr
    assert docker(dockerd.host, "image", "inspect", "--format", "{{.Id}}", pushed).stdout.strip() == built
    # and envlock pulls it into an empty store with every blob verified
    fresh = run_envlock("pull", pushed, "--store", str(tmp_path / "fresh"), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip() == built
    assert run_envlock("store", "fsck", "--store", str(tmp_path / "fresh"), cwd=tmp_path).returncode == 0


def test_tampered_wheel_is_refused_and_nothing_is_built(
    tmp_path: Path, image_wheels: Path, base_layout: Path
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for w in image_wheels.glob("envlock_fx_beta-1.0-*.whl"):
        (wheels / w.name).write_bytes(w.read_bytes())
    spec = project(tmp_path / "p", wheels, base_layout, '"envlock-fx-beta==1.0"')
    wheel = next(wheels.glob("*.whl"))
    expected = sha256_file(wheel)
    wheel.write_bytes(wheel.read_bytes() + b"tampered")
    proc = build(spec, tmp_path / "store")
    assert proc.returncode == 1
    assert "error: envlock-fx-beta 1.0: sha256 mismatch" in proc.stderr
    assert expected in proc.stderr and sha256_file(wheel) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "store/envs").iterdir())
    assert not list((tmp_path / "store/artifacts/sha256").iterdir())


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def test_a_build_killed_half_way_leaves_nothing_trusted(
    tmp_path: Path, image_wheels: Path, base_layout: Path
) -> None:
    spec = project(tmp_path, image_wheels, base_layout, '"envlock-fx-heavy", "envlock-fx-alpha"')
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-m", "envlock", "build", str(spec), "--store", str(store)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # kill -9 once it is writing the heavy layer (a part-written blob in tmp/), before it finishes
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(_size(w) > (4 << 20) for w in (store / "tmp").glob("w-*")):
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the build finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list((store / "envs").iterdir())
    # no worker process outlives the killed build
    time.sleep(1)
    orphans = subprocess.run(
        ["pgrep", "-f", f"--store {store}"], capture_output=True, text=True
    ).stdout.split()
    workers = subprocess.run(
        ["pgrep", "-P", "1", "-f", "multiprocessing.spawn"], capture_output=True, text=True
    )
    assert not orphans and not workers.stdout.split(), workers.stdout

    again = build(spec, store)
    reference = build(spec, tmp_path / "clean-store")
    assert image_id(again) == image_id(reference)
    assert run_envlock("store", "fsck", "--store", str(store), cwd=tmp_path).returncode == 0


def test_two_concurrent_builds_of_one_lock_both_succeed_with_one_result(
    tmp_path: Path, image_wheels: Path, base_layout: Path
) -> None:
    spec = project(tmp_path, image_wheels, base_layout, '"envlock-fx-alpha", "envlock-fx-heavy"')
    store = tmp_path / "store"
    cmd = [sys.executable, "-m", "envlock", "build", str(spec), "--store", str(store), "-q"]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    ids = {o[0].strip() for o in outs}
    assert len(ids) == 1
    assert len(list((store / "envs").iterdir())) == 1
    assert run_envlock("store", "fsck", "--store", str(store), cwd=tmp_path).returncode == 0


def test_fsck_finds_corruption_and_gc_drops_unreferenced_images(
    tmp_path: Path, image_wheels: Path, base_layout: Path
) -> None:
    spec = project(tmp_path, image_wheels, base_layout, '"envlock-fx-beta==1.0"')
    store = tmp_path / "store"
    first = image_id(build(spec, store))
    spec.write_text(spec.read_text().replace("envlock-fx-beta==1.0", "envlock-fx-beta==1.1"))
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    second = image_id(build(spec, store))
    assert first != second
    ls = run_envlock("store", "ls", "--store", str(store), cwd=tmp_path)
    assert ls.stdout.count("app") == 2

    gc = run_envlock("store", "gc", "--force", "--store", str(store), cwd=tmp_path)  # no git here
    assert gc.returncode == 0, gc.stderr
    ls = run_envlock("store", "ls", "--store", str(store), cwd=tmp_path)
    assert ls.stdout.count("app") == 1
    assert image_id(build(spec, store)) == second
    assert "is in the store already" in build(spec, store).stderr

    blob = next(p for p in (store / "blobs/sha256").iterdir() if p.stat().st_size < 100_000)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"x")
    fsck = run_envlock("store", "fsck", "--store", str(store), cwd=tmp_path)
    assert fsck.returncode == 1
    assert f"blob {blob.name[:12]}: content hash is" in fsck.stdout


def test_base_with_another_python_is_refused(tmp_path: Path, image_wheels: Path, base_layout: Path) -> None:
    spec = project(tmp_path, image_wheels, base_layout, '"envlock-fx-beta"')
    spec.write_text(spec.read_text().replace('python = "3.11"', 'python = "3.12"'))
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    proc = build(spec, tmp_path / "store")
    assert proc.returncode == 1
    assert "has Python 3.11 (/usr/bin/python3.11), the spec asks for 3.12" in proc.stderr


def test_no_engine_is_exit_3_with_a_hint(tmp_path: Path, image_wheels: Path, base_layout: Path) -> None:
    spec = project(tmp_path, image_wheels, base_layout, '"envlock-fx-beta"')
    proc = build(spec, tmp_path / "store", "--load", env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert proc.returncode == 3
    assert "error: no Docker engine answers" in proc.stderr
    assert "hint: start dockerd" in proc.stderr


def test_stale_lock_is_not_built(tmp_path: Path, image_wheels: Path, base_layout: Path) -> None:
    spec = project(tmp_path, image_wheels, base_layout, '"envlock-fx-beta"')
    spec.write_text(spec.read_text().replace('"envlock-fx-beta"', '"envlock-fx-alpha"'))
    proc = build(spec, tmp_path / "store")
    assert proc.returncode == 1
    assert "is stale" in proc.stderr and f"run: envlock lock {spec}" in proc.stderr


def test_dockerfile_path_builds_with_the_engine_and_says_it_is_not_reproducible(
    tmp_path: Path, image_wheels: Path, base_layout: Path, dockerd: Dockerd
) -> None:
    spec = project(tmp_path, image_wheels, base_layout, '"envlock-fx-alpha"')
    proc = build(spec, tmp_path / "store", "--engine", "docker", env={"DOCKER_HOST": dockerd.host})
    assert proc.returncode == 0, proc.stderr
    assert "NOT bit-reproducible" in proc.stderr
    engine_id = proc.stdout.strip().splitlines()[-1]
    out = docker(
        dockerd.host,
        "run",
        "--rm",
        "--network=none",
        engine_id,
        "python",
        "-c",
        "import envlock_fx_alpha as a; print(a.__version__)",
    )
    assert out.stdout.strip() == "2.0", out.stderr
    records = list((tmp_path / "store/dockerfile-builds").glob("*.json"))
    assert json.loads(records[0].read_text())[0]["image_id"] == engine_id
