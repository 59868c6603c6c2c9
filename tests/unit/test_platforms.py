"""Target platforms: which wheels install on a target, and the markers that select it."""

from __future__ import annotations

import pytest
from packaging.markers import Marker

from envlock.platforms import (
    MANYLINUX_GLIBC,
    PLATFORMS,
    _platform_tags,
    markers,
    tag_ranks,
    wheel_problem,
    wheel_rank,
)

NATIVE = "pkg-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"
ABI3 = "pkg-1.0-cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
PURE = "pkg-1.0-py3-none-any.whl"


def test_native_wheel_outranks_abi3_which_outranks_pure_python() -> None:
    native = wheel_rank(NATIVE, "linux-64", "3.11")
    abi3 = wheel_rank(ABI3, "linux-64", "3.11")
    pure = wheel_rank(PURE, "linux-64", "3.11")

    assert native is not None and abi3 is not None and pure is not None
    assert native < abi3 < pure


@pytest.mark.parametrize(
    "filename",
    [
        "pkg-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
        "pkg-1.0-cp311-cp311-macosx_11_0_arm64.whl",
        "pkg-1.0-cp311-cp311-manylinux_2_28_aarch64.whl",
        "pkg-1.0-cp311-cp311-win_amd64.whl",
        "pkg-1.0-cp311-cp311-manylinux_2_34_x86_64.whl",
        "pkg-1.0.tar.gz",
        "not-a-wheel.whl",
    ],
    ids=["other-python", "macos", "other-arch", "windows", "glibc-too-new", "sdist", "garbage"],
)
def test_wheels_that_cannot_install_on_linux_64_py311_have_no_rank(filename: str) -> None:
    assert wheel_rank(filename, "linux-64", "3.11") is None


def test_manylinux_2_34_is_newer_than_the_assumed_glibc() -> None:
    assert MANYLINUX_GLIBC == (2, 28)
    assert wheel_rank("pkg-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", "linux-64", "3.11") is not None
    assert wheel_rank("pkg-1.0-cp311-cp311-manylinux_2_34_x86_64.whl", "linux-64", "3.11") is None


def test_legacy_manylinux_tags_are_accepted() -> None:
    assert wheel_rank("pkg-1.0-cp311-cp311-manylinux2014_x86_64.whl", "linux-64", "3.11") is not None
    assert wheel_rank("pkg-1.0-cp311-cp311-manylinux1_x86_64.whl", "linux-64", "3.11") is not None


def test_osx_arm64_accepts_macos_11_arm64_wheels() -> None:
    assert wheel_rank("pkg-1.0-cp311-cp311-macosx_11_0_arm64.whl", "osx-arm64", "3.11") is not None
    assert wheel_rank("pkg-1.0-cp311-cp311-macosx_11_0_universal2.whl", "osx-arm64", "3.11") is not None
    assert wheel_rank("pkg-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", "osx-arm64", "3.11") is None


def test_linux_aarch64_accepts_aarch64_wheels() -> None:
    assert wheel_rank("pkg-1.0-cp311-cp311-manylinux_2_28_aarch64.whl", "linux-aarch64", "3.11") is not None
    assert wheel_rank(NATIVE, "linux-aarch64", "3.11") is None


def linux_env(**changes: str) -> dict[str, str]:
    env = {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "python_version": "3.11",
        "python_full_version": "3.11.9",
        "implementation_name": "cpython",
        "os_name": "posix",
    }
    return {**env, **changes}


def test_markers_select_linux_64_py311() -> None:
    marker = Marker(markers("linux-64", "3.11"))

    assert marker.evaluate(linux_env())
    assert not marker.evaluate(linux_env(sys_platform="darwin", platform_system="Darwin"))
    assert not marker.evaluate(linux_env(platform_machine="aarch64"))
    assert not marker.evaluate(linux_env(python_version="3.12", python_full_version="3.12.1"))


@pytest.mark.parametrize("subdir", sorted(PLATFORMS))
def test_every_platform_marker_parses(subdir: str) -> None:
    Marker(markers(subdir, "3.12"))


# Real file names: download.pytorch.org's +cpu/+cu121 builds, PyPI's manylinux/musllinux/macOS/Windows.
TORCH_CPU = "torch-2.5.1+cpu-cp311-cp311-linux_x86_64.whl"
TORCH_CU121 = "torch-2.4.1+cu121-cp311-cp311-linux_x86_64.whl"
TORCH_AARCH64 = "torch-2.5.1+cpu-cp311-cp311-linux_aarch64.whl"
NUMPY_MANYLINUX = "numpy-2.1.3-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
NUMPY_MUSL = "numpy-2.1.3-cp311-cp311-musllinux_1_2_x86_64.whl"
NUMPY_MACOS = "numpy-2.1.3-cp311-cp311-macosx_14_0_arm64.whl"
NUMPY_WIN = "numpy-2.1.3-cp311-cp311-win_amd64.whl"


@pytest.mark.parametrize("filename", [TORCH_CPU, TORCH_CU121])
def test_pytorch_index_linux_wheels_install_on_linux_64(filename: str) -> None:
    assert wheel_rank(filename, "linux-64", "3.11") is not None
    assert wheel_problem(filename, "linux-64", "3.11") is None


def test_linux_aarch64_wheel_installs_on_linux_aarch64_only() -> None:
    assert wheel_rank(TORCH_AARCH64, "linux-aarch64", "3.11") is not None
    assert wheel_rank(TORCH_AARCH64, "linux-64", "3.11") is None
    assert wheel_rank(TORCH_CPU, "linux-aarch64", "3.11") is None


def test_plain_linux_ranks_after_every_manylinux_tag_of_its_abi() -> None:
    ranks = tag_ranks("linux-64", "3.11")
    linux = ranks["cp311-cp311-linux_x86_64"]
    many = [r for tag, r in ranks.items() if tag.startswith("cp311-cp311-manylinux")]
    assert many and max(many) < linux
    # but a native wheel still beats an abi3 or a pure one, as pip's order has it
    assert linux < ranks["cp311-abi3-manylinux_2_28_x86_64"] < ranks["py3-none-any"]


def test_the_tag_order_is_packaging_tags_for_the_platform_list() -> None:
    from packaging.tags import compatible_tags, cpython_tags

    plats = [t for t in _platform_tags(PLATFORMS["linux-64"])]
    expected = [str(t) for t in cpython_tags((3, 11), abis=["cp311"], platforms=plats)]
    expected += [str(t) for t in compatible_tags((3, 11), interpreter="cp311", platforms=plats)]
    assert list(tag_ranks("linux-64", "3.11")) == list(dict.fromkeys(expected))


def test_manylinux_beats_linux_for_the_same_release() -> None:
    many = wheel_rank("pkg-1.0-cp311-cp311-manylinux_2_28_x86_64.whl", "linux-64", "3.11")
    plain = wheel_rank("pkg-1.0-cp311-cp311-linux_x86_64.whl", "linux-64", "3.11")
    assert many is not None and plain is not None and many < plain


@pytest.mark.parametrize(
    ("filename", "subdir", "reason"),
    [
        (NUMPY_MUSL, "linux-64", "platform musllinux_1_2_x86_64 needs musl libc (the target is linux-64"),
        (NUMPY_MACOS, "linux-64", "platform macosx_14_0_arm64 (the target is linux-64"),
        (NUMPY_WIN, "linux-64", "platform win_amd64 (the target is linux-64"),
        (
            NUMPY_MACOS,
            "osx-arm64",
            "platform macosx_14_0_arm64 needs macOS 14.0 (the target is osx-arm64, macOS 12.0)",
        ),
        (NUMPY_MANYLINUX, "osx-arm64", "platform manylinux2014_x86_64 (the target is osx-arm64)"),
        (TORCH_CPU, "win-64", "platform linux_x86_64 (the target is win-64)"),
        (
            "pkg-1.0-cp311-cp311-manylinux_2_34_x86_64.whl",
            "linux-64",
            "platform manylinux_2_34_x86_64 needs glibc 2.34 (the target is linux-64, glibc 2.28)",
        ),
        (
            "torch-2.5.1+cpu-cp312-cp312-linux_x86_64.whl",
            "linux-64",
            "python tag cp312 (the target is CPython 3.11)",
        ),
        (
            "pkg-1.0-cp39-cp39-manylinux_2_17_x86_64.whl",
            "linux-64",
            "ABI cp39 with python tag cp39 (the target is CPython 3.11)",
        ),
        ("not-a-wheel.whl", "linux-64", "not a wheel file name"),
    ],
    ids=[
        "musllinux",
        "macos",
        "windows",
        "macos-too-new",
        "manylinux-on-macos",
        "linux-on-windows",
        "glibc",
        "python",
        "abi",
        "bad",
    ],
)
def test_every_rejected_wheel_says_why(filename: str, subdir: str, reason: str) -> None:
    problem = wheel_problem(filename, subdir, "3.11")
    assert problem is not None and reason in problem
    assert wheel_rank(filename, subdir, "3.11") is None


NUMPY_MACOS_11 = "numpy-2.1.3-cp311-cp311-macosx_11_0_arm64.whl"


@pytest.mark.parametrize("filename", [NUMPY_MANYLINUX, NUMPY_MACOS_11, NUMPY_WIN, PURE, ABI3])
def test_an_accepted_wheel_has_no_problem_on_its_platform(filename: str) -> None:
    subdir = {NUMPY_MACOS_11: "osx-arm64", NUMPY_WIN: "win-64"}.get(filename, "linux-64")
    assert wheel_problem(filename, subdir, "3.11") is None
