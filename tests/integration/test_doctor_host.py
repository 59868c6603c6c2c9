"""envlock doctor end to end: the real CLI on this GPU-less host against a real dockerd (no NVIDIA
runtime), and planning for a fleet against a real torch CUDA lock from PyPI (live)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import Dockerd, run_envlock, write_spec

from envlock import fatbin
from envlock import lockfile as lockmod
from envlock.lockfile import Package, PlatformLock
from envlock.store import Store

CUTOFF = "2026-11-01"
TORCH_WHEEL = "https://files.pythonhosted.org/packages/56/be/76eaa36c9cd032d3b01b001e2c5a05943df75f26211f68fae79e62f87734/torch-2.9.1-cp311-cp311-manylinux_2_28_x86_64.whl"


def test_this_host_has_no_gpu() -> None:
    # the machine the suite runs on has no NVIDIA GPU, driver or nvidia-smi
    assert shutil.which("nvidia-smi") is None


def cuda_lock(root: Path) -> Path:
    """A torch 2.9.1 + CUDA 12.8 lock as `envlock lock` writes it (the packages resolved for it
    by the live test below, with their real PyPI sha256)."""
    packages = (
        Package(
            "pip",
            "torch",
            "2.9.1",
            TORCH_WHEEL,
            "d033ff0ac3f5400df862a51bdde9bad83561f3739ea0046e68f5401ebfa67c1b",
        ),
        Package(
            "pip",
            "nvidia-cuda-runtime-cu12",
            "12.8.90",
            "https://files.pythonhosted.org/packages/0d/9b/a997b638fcd068ad6e4d53b8551a7d30fe8b404d6f1804abf1df69838932/nvidia_cuda_runtime_cu12-12.8.90-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
            "adade8dcbd0edf427b7204d480d6066d33902cab2a4707dcfc48a2d0fd44ab90",
        ),
    )
    lock = lockmod.make("spec", [PlatformLock("linux-64", "3.11", cuda="12.8", packages=packages)], {})
    path = root / "vision.lock"
    lockmod.write_files({path: lockmod.render(lock)})
    return path


def test_no_gpu_host_with_engine_without_nvidia_runtime(tmp_path: Path, dockerd: Dockerd) -> None:
    lock = cuda_lock(tmp_path)
    env = {"DOCKER_HOST": dockerd.host, "ENVLOCK_HOME": str(tmp_path / "store")}
    proc = run_envlock("doctor", lock.name, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # no GPU is a line, not a failure
    out = proc.stdout
    assert "note: no GPU on this host" in out
    assert "warning: vision.lock uses CUDA 12.8, but this host has no GPU" in out
    assert "the Docker engine" in out and f"at {dockerd.host} has no NVIDIA runtime" in out
    assert "torch 2.9.1, CUDA 12.8 (runtime 12.8); driver >= 570.26 (>= 525.60.13" in out
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "store").exists()  # doctor writes nothing

    data = json.loads(run_envlock("doctor", lock.name, "--json", cwd=tmp_path, env=env).stdout)
    assert data["schema"] == "envlock.doctor/v1" and data["mode"] == "host" and data["runs"] is True
    engine = data["host"]["engine"]
    assert engine["available"] is True and engine["nvidia_runtime"] is False and "runc" in engine["runtimes"]
    version = subprocess.run(
        ["docker", "--host", dockerd.host, "version", "--format", "{{.Server.Version}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert engine["version"] == version
    assert data["host"]["gpus"] == [] and data["host"]["source"] == "none"
    codes = {v["code"]: v["level"] for v in data["verdicts"]}
    assert codes == {"no-gpu": "note", "cuda-without-gpu": "warning", "no-nvidia-runtime": "warning"}


def test_no_engine_and_no_target(tmp_path: Path) -> None:
    env = {"DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"}
    proc = run_envlock("doctor", cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stdout) == (0, "note: no GPU on this host\n")
    proc = run_envlock("doctor", cuda_lock(tmp_path).name, cwd=tmp_path, env=env)
    assert proc.returncode == 0
    assert "warning: no Docker engine answers at unix://" in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpu", "hopper"], "error: 'hopper' is not a GPU architecture"),
        (["--driver", "latest"], "error: 'latest' is not an NVIDIA driver version"),
        (["specs/nothing.toml"], "error: specs/nothing.toml: no such file"),
    ],
)
def test_bad_input_is_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_envlock("doctor", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr


# -- live: a real torch CUDA lock, planned for fleets ---------------------------------------

TORCH_SPEC = f"""name = "vision"
python = "3.11"
platforms = ["linux-64"]

[framework]
name = "pytorch"
version = "2.9"
cuda = "12.8"

[pip]
packages = []
exclude-newer = "{CUTOFF}"
"""


@pytest.fixture(scope="module")
def torch_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("torch")
    spec = write_spec(root, "vision", TORCH_SPEC)
    proc = run_envlock("lock", str(spec), cwd=root)  # metadata only: nothing is downloaded
    assert proc.returncode == 0, proc.stderr
    return root


def plan(root: Path, *args: str) -> tuple[int, dict[str, object]]:
    proc = run_envlock("doctor", "vision", "--json", *args, cwd=root)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def levels(data: dict[str, object]) -> dict[str, str]:
    return {v["code"]: v["level"] for v in data["verdicts"]}  # type: ignore[attr-defined,index]


@pytest.mark.live
def test_plan_blackwell_and_hopper_fleets(torch_project: Path) -> None:
    code, data = plan(torch_project, "--gpu", "sm_120", "--gpu", "sm_90", "--driver", "570.86.10")
    assert code == 0 and data["mode"] == "plan" and data["runs"] is True
    environment = data["environment"]
    assert environment["framework_version"].startswith("2.9.")  # type: ignore[index]
    assert environment["cuda_runtime"] == "12.8" and environment["min_driver"] == "570.26"  # type: ignore[index]
    assert "sm_120" in environment["archs"] and "sm_90" in environment["archs"]  # type: ignore[index]
    assert levels(data) == {"driver": "ok", "arch": "ok"}


@pytest.mark.live
def test_plan_old_driver_and_pascal_fleet(torch_project: Path) -> None:
    code, data = plan(torch_project, "--gpu", "sm_61", "--driver", "535.104.05")
    assert code == 1 and data["runs"] is False
    assert levels(data) == {"minor-version-compat": "warning", "arch-missing": "error"}
    proc = run_envlock(
        "doctor", "specs/vision.toml", "--gpu", "sm_90", "--driver", "470.82.01", cwd=torch_project
    )
    assert proc.returncode == 1
    assert "error: driver 470.82.01 is too old for CUDA 12.8: it needs >= 525.60.13" in proc.stdout
    assert "hint: upgrade the driver to >= 525.60.13" in proc.stdout


@pytest.mark.live
def test_archs_read_from_a_real_cuda_wheel(tmp_path: Path) -> None:
    """A real NVIDIA wheel (10 MB) whose libraries carry fat binaries: the sm_XX list comes from
    its headers, verified against the wheel's sha256, then from the cache."""
    spec = write_spec(
        tmp_path,
        "cupti",
        f'python = "3.11"\n[pip]\npackages = ["nvidia-cuda-cupti-cu12==12.9.79"]\nexclude-newer = "{CUTOFF}"\n',
    )
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    (package,) = lockmod.read(spec.with_suffix(".lock")).platforms[0].packages
    download = tmp_path / "dl"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--isolated", "-q", "-d", str(download),
         "--index-url", "https://pypi.org/simple", f"nvidia-cuda-cupti-cu12=={package.version}"],
        check=True,
    )  # fmt: skip
    store = Store(tmp_path / "store")
    (wheel,) = download.iterdir()
    shutil.copyfile(wheel, store.artifact_path(package.sha256))
    archs = fatbin.archs_of(store, package, re.compile(r"^nvidia/cuda_cupti/lib/libcupti\.so"))
    assert archs is not None
    names = archs.names()
    assert {"sm_70", "sm_80", "sm_90", "sm_100", "sm_120"} <= set(names)
    assert (tmp_path / "store" / "archs" / f"{package.sha256}.json").is_file()
    store.artifact_path(package.sha256).unlink()
    assert fatbin.archs_of(store, package, re.compile(r"^nvidia/cuda_cupti/lib/libcupti\.so")) == archs


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, input=stdin, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_show_and_diff_report_training_host_differences(tmp_path: Path) -> None:
    """Two models trained on different hosts (records as `envlock record` writes them into
    refs/notes/envlock): `show` compares with this GPU-less host, `diff` compares the two."""
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    lock_path = cuda_lock(repo / "specs")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "lock")
    commit = git(repo, "rev-parse", "HEAD")
    env_id = lockmod.read(lock_path).env_id
    hosts = {
        "resnet-a100": {"gpus": ["NVIDIA A100-SXM4-80GB"], "gpu_archs": ["sm_80"], "driver": "535.104.05"},
        "resnet-h100": {"gpus": ["NVIDIA H100 80GB HBM3"], "gpu_archs": ["sm_90"], "driver": "570.86.10"},
    }
    records = [
        {"name": name, "id": f"{i}" * 12, "commit": commit, "lock": "specs/vision.lock", "env_id": env_id,
         "image_id": "sha256:" + "d" * 64, "spec": "specs/vision.toml", "platform": "linux-64",
         "model": {"path": "runs/m.pt", "sha256": "c" * 64, "size": 7, "kind": "file", "files": 1},
         "created": f"2026-11-0{i + 1}T00:00:00.000000Z", "host": {"python": "3.11.7", **host}}
        for i, (name, host) in enumerate(hosts.items())
    ]  # fmt: skip
    note = json.dumps({"schema": "envlock.manifest/v1", "records": records})
    git(repo, "notes", "--ref", "envlock", "add", "-F", "-", commit, stdin=note)

    shown = run_envlock("show", "resnet-h100", cwd=repo)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["host"]["gpu_archs"] == ["sm_90"]
    assert (
        "note: this host differs from the training host: GPUs differ: NVIDIA H100 80GB HBM3 -> no GPU"
        in shown.stderr
    )
    assert "driver differs: 570.86.10 -> none" in shown.stderr

    diffed = run_envlock("diff", "resnet-a100", "resnet-h100", cwd=repo)
    assert diffed.returncode == 0, diffed.stderr
    assert "note: the training hosts differ: GPU architectures differ: sm_80 -> sm_90" in diffed.stderr
    assert "note: the training hosts differ: driver differs: 535.104.05 -> 570.86.10" in diffed.stderr
    same = run_envlock("diff", "specs/vision.lock", "resnet-h100", cwd=repo)
    assert same.returncode == 0 and "training hosts" not in same.stderr

    # doctor takes a model too: the lock at its commit, planned for its training GPU
    planned = run_envlock("doctor", "resnet-a100", "--gpu", "sm_80", "--driver", "535.104.05", cwd=repo)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "ok: sm_80 runs torch 2.9.1: machine code for sm_80" in planned.stdout


@pytest.mark.live
def test_run_refuses_a_known_failure_before_building(torch_project: Path, tmp_path: Path) -> None:
    """`envlock run` asks the doctor first.  This machine has no GPU; a script prints what
    nvidia-smi prints on a GTX 1080 host (sm_61, which CUDA 12.8 torch builds dropped)."""
    from envlock.hostfacts import SMI_QUERY

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        f'#!/bin/sh\n[ "$1" = "--query-gpu={SMI_QUERY}" ] || exit 2\n'
        "echo '0, NVIDIA GeForce GTX 1080, 6.1, 8192, 570.86.10'\n"
    )
    smi.chmod(0o755)
    store = tmp_path / "store"
    env = {
        "PATH": f"{bin_dir}:{__import__('os').environ['PATH']}",
        "DOCKER_HOST": f"unix://{tmp_path}/none.sock",
        "ENVLOCK_HOME": str(store),
    }
    proc = run_envlock("run", "specs/vision.toml", "--", "python", "-c", "pass", cwd=torch_project, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "\nerror: NVIDIA GeForce GTX 1080 (sm_61) is not in the build of torch 2.9.1" in proc.stderr
    assert "or pass --no-check to start it anyway" in proc.stderr
    assert [p for p in store.rglob("*") if p.is_file() and p.parent.name == "sha256"] == []  # nothing fetched
