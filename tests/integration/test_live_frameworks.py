"""Framework companions and CUDA runtime ranges against the real PyPI (issue 11 items 10, 11).

Locking only: uv reads wheel metadata, nothing multi-GB is downloaded or built.  Each
example from the issue is one test; exclude-newer pins the answers.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import run_envlock, write_spec

from envlock import lockfile as lockmod

CUTOFF = "2026-11-01"
LOCK_SECONDS = 180  # generous: two uv resolutions of metadata take a few seconds here


def framework_spec(root: Path, framework: str, version: str, cuda: str, packages: str) -> Path:
    return write_spec(
        root,
        "env",
        f"""python = "3.11"
platforms = ["linux-64"]

[framework]
name = "{framework}"
version = "{version}"
cuda = "{cuda}"

[pip]
packages = [{packages}]
exclude-newer = "{CUTOFF}"
""",
    )


def timed_lock(spec: Path) -> tuple[dict[str, str], float]:
    t0 = time.perf_counter()
    proc = run_envlock("lock", str(spec), cwd=spec.parent.parent)
    took = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    (plat,) = lockmod.read(spec.with_suffix(".lock")).platforms
    return {p.name: p.version for p in plat.packages}, took


@pytest.mark.live
def test_torch_29_with_torchaudio_locks_torchaudio_29(tmp_path: Path) -> None:
    # before: torchaudio 2.11.0 (no torch requirement; needs libcudart.so.13, torch 2.9 has 12.8)
    spec = framework_spec(tmp_path, "pytorch", "2.9", "12.8", '"torchaudio", "torchvision"')
    versions, took = timed_lock(spec)
    assert versions["torch"] == "2.9.1"
    assert versions["torchaudio"] == "2.9.1"
    assert versions["torchvision"] == "0.24.1"
    assert versions["nvidia-cuda-runtime-cu12"].startswith("12.8.")
    assert took < LOCK_SECONDS


@pytest.mark.live
def test_tensorflow_220_with_cuda_125_locks(tmp_path: Path) -> None:
    # before: "resolved nvidia-cuda-runtime-cu12 12.9.79, not the CUDA 12.5" (exit 1)
    spec = framework_spec(tmp_path, "tensorflow", "2.20", "12.5", '"tf-keras"')
    versions, took = timed_lock(spec)
    assert versions["tensorflow"] == "2.20.0"
    assert versions["tf-keras"].startswith("2.20.")
    runtime = versions["nvidia-cuda-runtime-cu12"]
    from packaging.specifiers import SpecifierSet

    assert runtime in SpecifierSet(">=12.5.82,<13")  # tensorflow 2.20.0's own and-cuda range
    assert took < LOCK_SECONDS


def test_companion_pinned_to_another_release_is_exit_2_before_resolving(tmp_path: Path) -> None:
    spec = framework_spec(tmp_path, "pytorch", "2.9", "12.8", '"torchaudio==2.11.0"')
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: torchaudio==2.11.0 in [pip].packages does not fit pytorch 2.9",
        "hint: pytorch 2.9 pairs with torchaudio 2.9.* (newest 2.9.1): change or drop the pin "
        "(see: envlock matrix pytorch)",
    ]
    assert not spec.with_suffix(".lock").exists()


@pytest.mark.live
def test_a_companion_pulled_in_by_another_package_is_held_to_the_release(tmp_path: Path) -> None:
    # nothing in the spec names torchaudio: a package requires it without a pin
    from support import build_wheel

    wheels = tmp_path / "wheels"
    build_wheel(wheels, "envlock-fx-speech", "1.0", ("torchaudio",))
    spec = framework_spec(tmp_path, "pytorch", "2.9", "12.8", '"envlock-fx-speech"')
    spec.write_text(spec.read_text() + f'find-links = ["{wheels}"]\n')
    versions, _ = timed_lock(spec)
    assert versions["torchaudio"] == "2.9.1"
