"""Live resolutions against PyPI, pinned with exclude-newer so the answers do not drift."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support import plain_uv_pins, run_envlock, write_spec

from envlock import lockfile as lockmod

pytestmark = pytest.mark.live

CUTOFF = "2026-11-01"

TORCH_SPEC = f"""name = "vision"
python = "3.11"
platforms = ["linux-64"]

[framework]
name = "pytorch"
version = "2.9"
cuda = "12.8"

[pip]
packages = ["numpy<2.4", "pandas>=2", "scikit-learn"]
exclude-newer = "{CUTOFF}"
"""


@pytest.fixture(scope="module")
def torch_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("torch")
    spec = write_spec(root, "vision", TORCH_SPEC)
    proc = run_envlock("lock", str(spec), cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root


def test_pytorch_cuda_default_variant_brings_matching_nvidia_wheels(torch_project: Path) -> None:
    lock = lockmod.read(torch_project / "specs/vision.lock")
    packages = lock.platforms[0].by_name()
    assert packages["torch"].version.startswith("2.9.")
    assert lock.platforms[0].cuda == "12.8"
    assert packages["nvidia-cuda-runtime-cu12"].version.startswith("12.8.")
    assert "nvidia-cudnn-cu12" in packages
    for p in packages.values():
        assert p.url.startswith("https://files.pythonhosted.org/"), p
        assert len(p.sha256) == 64
    torch_file = packages["torch"].filename
    assert "cp311" in torch_file and "x86_64" in torch_file


def test_pinned_set_equals_plain_uv_pip_compile(torch_project: Path, tmp_path: Path) -> None:
    plain = plain_uv_pins(
        tmp_path,
        ["torch==2.9.*", "numpy<2.4", "pandas>=2", "scikit-learn"],
        "--exclude-newer",
        f"{CUTOFF}T00:00:00Z",
    )
    lock = lockmod.read(torch_project / "specs/vision.lock")
    assert {p.name: p.version for p in lock.platforms[0].packages} == plain


def test_torch_exports_validate(torch_project: Path) -> None:
    from packaging.pylock import Pylock

    pylock = Pylock.from_dict(tomllib.loads((torch_project / "specs/pylock.vision.toml").read_text()))
    assert any(p.name == "torch" for p in pylock.packages)
    req = (torch_project / "specs/vision.linux-64.requirements.txt").read_text()
    assert "torch==2.9." in req and "--hash=sha256:" in req
    assert run_envlock("verify", cwd=torch_project).returncode == 0


def test_impossible_cuda_combination_fails_before_resolving(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "old", TORCH_SPEC.replace('"2.9"', '"2.5.1"'))
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: pytorch 2.5 has no CUDA 12.8 build",
        "hint: valid CUDA variants for pytorch 2.5: 11.8, 12.1, 12.4, cpu",
    ]


def test_multi_platform_lock_and_pylock(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        "web",
        f"""python = "3.12"
platforms = ["linux-64", "osx-arm64", "win-64"]
[pip]
packages = ["requests", "charset-normalizer"]
exclude-newer = "{CUTOFF}"
""",
    )
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lock = lockmod.read(spec.with_suffix(".lock"))
    assert lock.platform_names == ("linux-64", "osx-arm64", "win-64")
    wheels = {plat.name: plat.by_name()["charset-normalizer"].filename for plat in lock.platforms}
    assert "manylinux" in wheels["linux-64"] and "cp312" in wheels["linux-64"]
    assert "macosx" in wheels["osx-arm64"]
    assert "arm64" in wheels["osx-arm64"] or "universal2" in wheels["osx-arm64"]
    assert "win_amd64" in wheels["win-64"]
    from packaging.pylock import Pylock

    Pylock.from_dict(tomllib.loads((tmp_path / "specs/pylock.web.toml").read_text()))
    for plat in lock.platform_names:
        assert (tmp_path / f"specs/web.{plat}.requirements.txt").is_file()


def test_pip_tools_and_uv_agree_on_pypi(tmp_path: Path) -> None:
    body = f"""python = "{sys.version_info.major}.{sys.version_info.minor}"
[pip]
packages = ["requests>=2.31", "packaging"]
exclude-newer = "{CUTOFF}"
"""
    a, b = tmp_path / "a", tmp_path / "b"
    sa, sb = write_spec(a, "w", body), write_spec(b, "w", body)
    assert run_envlock("lock", str(sa), cwd=a).returncode == 0
    proc = run_envlock("lock", "--resolver", "pip-tools", str(sb), cwd=b)
    assert proc.returncode == 0, proc.stderr
    la, lb = lockmod.read(sa.with_suffix(".lock")), lockmod.read(sb.with_suffix(".lock"))
    assert {p.name: p.version for p in la.platforms[0].packages} == {
        p.name: p.version for p in lb.platforms[0].packages
    }
    assert la.env_id == lb.env_id


def test_requirements_export_installs_with_pip_download_on_several_platform_tags(tmp_path: Path) -> None:
    """Platform teams fill a wheelhouse with `pip download --platform ... --require-hashes -r`.
    pip may pick another file of the pinned version than the one the image uses (here
    charset-normalizer: a cp311 manylinux wheel and a py3-none-any wheel); the export lists the
    hash of every file of the version that installs on the target, so pip's pick verifies."""
    spec = write_spec(
        tmp_path,
        "wh",
        'python = "3.11"\n[pip]\npackages = ["charset-normalizer==3.4.0"]\nexclude-newer = "2026-11-01"\n',
    )
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    exported = spec.with_name("wh.linux-64.requirements.txt")
    assert exported.read_text().count("--hash=sha256:") >= 2
    for tag in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"):
        dest = tmp_path / f"wheels-{tag}"
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--platform", tag, "--python-version", "3.11", "--implementation", "cp",
             "--require-hashes", "-r", str(exported), "-d", str(dest)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert pip.returncode == 0, f"{tag}: {pip.stderr}"
        assert len(list(dest.glob("charset_normalizer-3.4.0-*.whl"))) == 1
