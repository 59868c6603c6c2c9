"""envlock doctor's rules over real cases, each with its source; nvidia-smi parsing; fatbin headers."""

from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from envlock import doctor, fatbin, gpuarch
from envlock import lockfile as lockmod
from envlock.errors import CheckFailed, UsageError
from envlock.gpuarch import BuildArchs, parse_capability
from envlock.hostfacts import Engine, Gpu, Host, parse_smi_csv
from envlock.lockfile import Package, PlatformLock

# -- environments as locks hold them -----------------------------------------------------


def fake_sha256(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def torch_lock(version: str, cuda: str, runtime: str | None = None) -> lockmod.Lock:
    """A lock with torch VERSION for CUDA variant CUDA and its runtime wheel (version RUNTIME)."""
    packages = [Package("pip", "torch", version, f"https://x/torch-{version}.whl", fake_sha256(version))]
    if cuda != "cpu":
        major = cuda.split(".")[0]
        rt = runtime or f"{cuda}.90"
        packages.append(
            Package("pip", f"nvidia-cuda-runtime-cu{major}", rt, f"https://x/rt-{rt}.whl", fake_sha256(rt))
        )
    plat = PlatformLock("linux-64", "3.11", cuda=cuda, packages=tuple(packages))
    return lockmod.make("spec", [plat], {})


def env(version: str, cuda: str, runtime: str | None = None) -> doctor.EnvFacts:
    return doctor.env_facts(torch_lock(version, cuda, runtime), "vision")


def gpu(arch: str, name: str = "") -> Gpu:
    return Gpu(0, name, parse_capability(arch), None)


def host(arch: str | None, driver: str | None, name: str = "", runtime: bool = True) -> Host:
    gpus = (gpu(arch, name),) if arch else ()
    engine = Engine(
        "unix:///run/docker.sock", True, "27.5.1", ("nvidia", "runc") if runtime else ("runc",), runtime
    )
    return Host(gpus, driver, "nvml", engine)


def codes(verdicts: tuple[doctor.Verdict, ...], level: str) -> list[str]:
    return [v.code for v in verdicts if v.level == level]


# -- GPU architecture: (framework release, CUDA variant, GPU, expected how), with sources ------

ARCH_CASES = [
    # pytorch/pytorch#150733: RTX 5090 D (sm_120) with a CUDA 12.6 build that carries sm_50..sm_90
    ("2.7.1", "12.6", "sm_120", "none"),
    # the same GPU with the CUDA 12.8 build (build_cuda.sh release/2.7: 7.5;...;10.0;12.0+PTX)
    ("2.7.1", "12.8", "sm_120", "sass"),
    # B200 (sm_100) with torch 2.8 + CUDA 12.8 (build_cuda.sh @00c7a380: ...;10.0;12.0)
    ("2.8.0", "12.8", "sm_100", "sass"),
    # Hopper (sm_90) with CUDA 11.8 builds (build_cuda.sh: case 11.8 appends ;3.7;9.0)
    ("2.5.1", "11.8", "sm_90", "sass"),
    ("2.7.1", "11.8", "sm_90", "sass"),
    # Ada (sm_89) runs sm_86 machine code: same major, higher minor (CUDA C++ Programming Guide,
    # "Binary Compatibility")
    ("2.5.1", "12.4", "sm_89", "sass"),
    # Blackwell on a 12.4 build: only PTX compute_90 (9.0+PTX) fits, JIT-compiled ("PTX Compatibility")
    ("2.5.1", "12.4", "sm_120", "ptx"),
    # Pascal GTX 1080 (sm_61) on CUDA 12.8 builds that dropped sm_50-sm_60 (pytorch/pytorch#157517)
    ("2.8.0", "12.8", "sm_61", "none"),
    # Volta (sm_70) was dropped by CUDA 13 builds (build_cuda.sh case 13.0 starts at 7.5)
    ("2.9.1", "13.0", "sm_70", "none"),
    ("2.9.1", "12.8", "sm_70", "sass"),
]


@pytest.mark.parametrize(("version", "cuda", "arch", "how"), ARCH_CASES)
def test_architecture_fit(version: str, cuda: str, arch: str, how: str) -> None:
    facts = env(version, cuda)
    assert facts.archs is not None, "the matrix has this release and variant"
    assert gpuarch.fit(facts.archs, parse_capability(arch)).how == how
    verdicts = doctor.verdicts(facts, host(arch, "999.99"))
    expected = {"sass": ("ok", "arch"), "ptx": ("warning", "arch-ptx"), "none": ("error", "arch-missing")}[
        how
    ]
    assert expected[1] in codes(verdicts, expected[0])


def test_missing_architecture_names_the_build_that_adds_it() -> None:
    verdicts = doctor.verdicts(env("2.7.1", "12.6"), host("sm_120", "570.86.10", "NVIDIA GeForce RTX 5090"))
    (error,) = [v for v in verdicts if v.level == "error"]
    assert "NVIDIA GeForce RTX 5090 (sm_120)" in error.message
    assert "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90" in error.message
    assert error.hint is not None and 'cuda = "12.8"' in error.hint and "torch 2.7" in error.hint


def test_architecture_specific_sass_runs_only_on_its_own_capability() -> None:
    build = BuildArchs((parse_capability("sm_90a"),), (), "test")
    assert gpuarch.fit(build, parse_capability("9.0")).how == "sass"
    assert gpuarch.fit(build, parse_capability("10.0")).how == "none"


def test_unknown_release_is_a_note_not_a_verdict() -> None:
    facts = env("2.15.0", "13.2")
    assert facts.archs is None
    verdicts = doctor.verdicts(facts, host("sm_90", "999.1"))
    assert codes(verdicts, "note") == ["archs-unknown"]
    assert not codes(verdicts, "error")


# -- driver: NVIDIA release notes Table 2/3 and the CUDA Compatibility guide ----------------

DRIVER_CASES = [
    # full driver for the toolkit (12.8 GA needs >= 570.26)
    ("2.9.1", "12.8", "570.86.10", "ok", "driver"),
    # CUDA 12.x minor-version compatibility from 525.60.13 (release notes Table 2)
    ("2.9.1", "12.8", "535.104.05", "warning", "minor-version-compat"),
    ("2.5.1", "12.4", "525.60.13", "warning", "minor-version-compat"),
    # CUDA 11.x minor-version compatibility from 450.80.02
    ("2.5.1", "11.8", "450.80.02", "warning", "minor-version-compat"),
    # below the major's floor: will not run
    ("2.5.1", "12.4", "470.82.01", "error", "driver-too-old"),
    # CUDA 13.x needs the 580 branch; 575 (CUDA 12.9's driver) is too old
    ("2.9.1", "13.0", "575.51.03", "error", "driver-too-old"),
]


@pytest.mark.parametrize(("version", "cuda", "driver", "level", "code"), DRIVER_CASES)
def test_driver(version: str, cuda: str, driver: str, level: str, code: str) -> None:
    verdicts = doctor.verdicts(env(version, cuda), host("sm_90", driver))
    assert code in codes(verdicts, level)


def test_runtime_version_comes_from_the_locked_runtime_wheel() -> None:
    facts = env("2.9.1", "12.8", runtime="12.9.79")  # a resolver picked a newer 12.x runtime
    assert facts.cuda_runtime == "12.9"
    assert facts.min_driver == "575.51.03"


def test_ptx_jit_needs_the_full_driver() -> None:
    # sm_100 runs torch 2.5 + CUDA 12.4 only through PTX built by CUDA 12.4; with a 535 driver
    # (12.x minor-version compatibility, below 12.4's 550.54.14) that PTX cannot be JIT-compiled
    # ("Minor Version Compatibility" limitations, CUDA Compatibility guide).
    verdicts = doctor.verdicts(env("2.5.1", "12.4"), host("sm_100", "535.104.05"))
    assert "ptx-needs-full-driver" in codes(verdicts, "error")


def test_forward_compatibility_hint_depends_on_the_gpu_kind() -> None:
    old = "470.82.01"
    dc = doctor.verdicts(env("2.5.1", "12.4"), host("sm_80", old, "NVIDIA A100-SXM4-80GB"))
    consumer = doctor.verdicts(env("2.5.1", "12.4"), host("sm_86", old, "NVIDIA GeForce RTX 3090"))
    (a,) = [v for v in dc if v.code == "driver-too-old"]
    (b,) = [v for v in consumer if v.code == "driver-too-old"]
    assert a.hint is not None and "install cuda-compat-12-4" in a.hint
    assert b.hint is not None and "does not help" in b.hint and "GeForce RTX 3090" in b.hint
    assert "525.60.13" in a.message


# -- engine and CPU-only environments -------------------------------------------------------


def test_gpu_host_without_nvidia_runtime_will_not_run() -> None:
    verdicts = doctor.verdicts(env("2.9.1", "12.8"), host("sm_90", "570.86.10", runtime=False))
    assert "no-nvidia-runtime" in codes(verdicts, "error")


def test_no_gpu_host_is_a_line_not_an_error() -> None:
    no_gpu = Host((), None, "none", Engine("unix:///x", True, "27", ("runc",), False))
    verdicts = doctor.verdicts(env("2.9.1", "12.8"), no_gpu)
    assert codes(verdicts, "note") == ["no-gpu"]
    assert set(codes(verdicts, "warning")) == {"cuda-without-gpu", "no-nvidia-runtime"}
    assert doctor.Report(no_gpu, None, verdicts).exit_code == 0


def test_cpu_lock_on_gpu_host_warns() -> None:
    verdicts = doctor.verdicts(env("2.9.1+cpu", "cpu"), host("sm_90", "570.86.10"))
    assert codes(verdicts, "warning") == ["cpu-lock-on-gpu-host"]


def test_plan_mode_and_json() -> None:
    planned = doctor.plan_host(["sm_90,sm_120"], "535.104.05")
    report = doctor.Report(planned, env("2.7.1", "12.6"), doctor.verdicts(env("2.7.1", "12.6"), planned))
    data = report.to_json()
    assert data["schema"] == "envlock.doctor/v1" and data["mode"] == "plan"
    assert data["exit_code"] == 1 and data["runs"] is False
    assert [g["arch"] for g in data["host"]["gpus"]] == ["sm_90", "sm_120"]
    assert data["environment"]["archs"][:2] == ["sm_50", "sm_60"]
    with pytest.raises(CheckFailed, match="sm_120"):
        doctor.refuse(report)


@pytest.mark.parametrize("bad", ["sm_9", "hopper", "sm_1200", ""])
def test_bad_gpu_is_usage_error(bad: str) -> None:
    with pytest.raises(UsageError):
        doctor.plan_host([bad or "x"], None)


def test_bad_driver_is_usage_error() -> None:
    with pytest.raises(UsageError, match="driver"):
        doctor.plan_host([], "latest")


def test_record_hosts_compare_architectures_and_drivers() -> None:
    a = {"gpus": ["NVIDIA A100-SXM4-80GB"], "gpu_archs": ["sm_80"], "driver": "535.104.05"}
    b = {"gpus": ["NVIDIA H100 80GB HBM3"], "gpu_archs": ["sm_90"], "driver": "570.86.10"}
    assert doctor.differences(a, b) == [
        "GPU architectures differ: sm_80 -> sm_90",
        "driver differs: 535.104.05 -> 570.86.10",
    ]
    assert doctor.differences(a, dict(a)) == []
    old = {"gpus": ["Tesla V100-SXM2-16GB"], "driver": "470.82.01"}  # made before gpu_archs existed
    assert doctor.differences(old, b)[0] == "GPUs differ: Tesla V100-SXM2-16GB -> NVIDIA H100 80GB HBM3"


# -- nvidia-smi --query-gpu output ----------------------------------------------------------

SMI_DGX_H100 = "".join(f"{i}, NVIDIA H100 80GB HBM3, 9.0, 81559, 535.104.05\n" for i in range(8))
SMI_MIXED = """\
index, name, compute_cap, memory.total [MiB], driver_version
0, NVIDIA GeForce RTX 5090, 12.0, 32607 MiB, 570.86.10
1, NVIDIA GeForce RTX 3060, 8.6, 12288 MiB, 570.86.10
"""
SMI_NA = "0, Tesla T4, 7.5, [N/A], 450.80.02\n1, NVIDIA A100-SXM4-40GB, [Not Supported], 40960, 450.80.02\n"


def test_parse_smi_dgx() -> None:
    gpus, driver = parse_smi_csv(SMI_DGX_H100)
    assert driver == "535.104.05"
    assert len(gpus) == 8 and {g.capability.sm for g in gpus if g.capability} == {"sm_90"}
    assert gpus[7].index == 7 and gpus[0].memory_mib == 81559


def test_parse_smi_header_and_units() -> None:
    gpus, driver = parse_smi_csv(SMI_MIXED)
    assert [(g.name, str(g.capability), g.memory_mib) for g in gpus] == [
        ("NVIDIA GeForce RTX 5090", "12.0", 32607),
        ("NVIDIA GeForce RTX 3060", "8.6", 12288),
    ]
    assert driver == "570.86.10"


def test_parse_smi_missing_cells() -> None:
    gpus, _ = parse_smi_csv(SMI_NA)
    assert gpus[0].memory_mib is None and gpus[1].capability is None
    assert parse_smi_csv("No devices were found\n") == ((), None)


# -- fatbin headers -------------------------------------------------------------------------


def entry(kind: int, arch: int, payload: bytes) -> bytes:
    header = struct.pack("<HHIQII", kind, 0x101, 64, len(payload), 0, 0)
    header += struct.pack("<HHI", 7, 1, arch).ljust(64 - len(header), b"\0")
    assert len(header) == 64
    return header + payload


def container(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


def test_fatbin_scan_finds_sass_and_ptx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fatbin, "CHUNK", 37)  # headers straddle every read
    stray = struct.pack("<I", 0xBA55ED50) + b"\x07\x00" + b"noise" * 20  # a magic that is no header
    blob = (
        b"\x7fELF" + b"\0" * 100 + stray
        + container(entry(2, 80, b"a" * 300), entry(2, 90, b"b" * 10), entry(1, 90, b"ptx" * 50))
        + b"\0" * 77
        + container(entry(2, 120, b"c" * 1000))
    )  # fmt: skip
    found = fatbin.scan(io.BytesIO(blob))
    assert found.containers == 2
    assert sorted(found.sass) == [80, 90, 120] and sorted(found.ptx) == [90]


def test_fatbin_truncated_container_is_ignored() -> None:
    blob = container(entry(2, 80, b"a" * 300))[:-10]
    assert fatbin.scan(io.BytesIO(blob)).containers == 0


def test_wheel_archs_verified_and_cached(tmp_path: Path) -> None:
    import zipfile

    from envlock.store import Store

    store = Store(tmp_path / "store")
    so = b"\0" * 64 + container(entry(2, 75, b"x" * 64), entry(2, 90, b"y" * 64), entry(1, 90, b"p"))
    wheel = tmp_path / "torch-2.9.1-cp311-cp311-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("torch/lib/libtorch_cuda.so", so)
        zf.writestr("torch/lib/libc10.so", container(entry(2, 50, b"z")))  # not a carrier
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    store.artifact_path(sha).write_bytes(wheel.read_bytes())
    pkg = Package("pip", "torch", "2.9.1", f"https://x/{wheel.name}", sha)
    plat = PlatformLock("linux-64", "3.11", cuda="12.8", packages=(pkg,))
    archs = fatbin.locked_archs(store, plat)
    assert archs is not None and archs.names() == ["sm_75", "sm_90", "compute_90"]
    assert "libtorch_cuda.so" in archs.source
    store.artifact_path(sha).unlink()  # now only the cache can answer
    assert fatbin.locked_archs(store, plat) == archs
    # a store copy that rotted is refused, never believed
    (tmp_path / "store" / "archs" / f"{sha}.json").unlink()
    store.artifact_path(sha).write_bytes(wheel.read_bytes()[:-1] + b"!")
    with pytest.raises(CheckFailed, match="sha256"):
        fatbin.locked_archs(store, plat)
    facts = doctor.env_facts(lockmod.make("s", [plat], {}), "x", archs=archs)
    assert replace(facts, label="y").archs == archs


# -- Kubernetes placement -------------------------------------------------------------------


def test_k8s_job_gpu_products_and_node_selector() -> None:
    from test_manifest import COMMIT, valid

    from envlock.image.model import Image
    from envlock.manifest import parse
    from envlock.rebuilding import k8s_job

    image = Image(config={"config": {"Labels": {"dev.envlock.cuda": "12.8"}}}, layers=())
    rec = parse(valid(), COMMIT)
    text = k8s_job(
        rec,
        image,
        "reg.example/r@sha256:" + "1" * 64,
        [],
        gpu_products=["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"],
        node_selector=["cloud.google.com/gke-accelerator=nvidia-h100-80gb"],
    )
    spec = yaml.safe_load(text)["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expr = term["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert expr == {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": ["NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3"],
    }
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    with pytest.raises(UsageError, match="label value"):
        k8s_job(rec, image, "r@sha256:" + "1" * 64, [], gpu_products=["H100 80GB"])


def test_doctor_imports_nothing_heavy(tmp_path: Path) -> None:
    """doctor answers in < 150 ms: no docker SDK, no HTTP client, no rich/textual, no NVML here."""
    import json
    import subprocess
    import sys

    wrapper = (
        "import json, sys\nfrom envlock.cli import main\ncode = main(sys.argv[1:])\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    lock = tmp_path / "vision.lock"
    lockmod.write_files({lock: lockmod.render(torch_lock("2.9.1", "12.8"))})
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, "doctor", lock.name],
        capture_output=True, text=True, check=True, cwd=tmp_path,
        env={**__import__("os").environ, "DOCKER_HOST": f"unix://{tmp_path}/none.sock"},
    )  # fmt: skip
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["code"] == 0
    heavy = ("docker", "http", "rich", "textual", "packaging", "envlock.spec", "envlock.envref")
    if not Path("/proc/driver/nvidia/version").exists():
        heavy += ("pynvml",)
    assert [m for m in result["modules"] if m.split(".")[0] in heavy or m in heavy] == []


def test_nvidia_smi_fallback_and_host_mode_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where NVML cannot be loaded, nvidia-smi answers.  This machine has no GPU, so a script
    prints what nvidia-smi prints on an RTX 5090 host with an old driver (the query is checked)."""
    import os
    import subprocess
    import sys

    from envlock import hostfacts

    if Path("/proc/driver/nvidia/version").exists():
        pytest.skip("a real NVIDIA driver answers through NVML on this host")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = "--query-gpu={hostfacts.SMI_QUERY}" ] && [ "$2" = "--format=csv,noheader,nounits" ] || exit 2\n'
        "echo '0, NVIDIA GeForce RTX 5090, 12.0, 32607, 550.54.14'\n"
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    gpus, driver, source = hostfacts.gpus()
    assert (source, driver, [g.capability.sm for g in gpus if g.capability]) == (
        "nvidia-smi",
        "550.54.14",
        ["sm_120"],
    )

    lock = tmp_path / "vision.lock"
    lockmod.write_files({lock: lockmod.render(torch_lock("2.7.1", "12.6"))})
    proc = subprocess.run(
        [sys.executable, "-m", "envlock", "doctor", lock.name],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/none.sock"},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "GPU 0: NVIDIA GeForce RTX 5090, sm_120 (12.0), 32 GiB" in proc.stdout
    assert "error: NVIDIA GeForce RTX 5090 (sm_120) is not in the build of torch 2.7.1" in proc.stdout
    assert (
        'hint: torch 2.7 with CUDA 12.8 has sm_120: set framework.version = "2.7" and cuda = "12.8"'
        in proc.stdout
    )
