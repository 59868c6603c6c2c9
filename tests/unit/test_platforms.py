"""Target platforms: which wheels install on a target, and the markers that select it."""

from __future__ import annotations

import pytest
from packaging.markers import Marker

from envlock.platforms import MANYLINUX_GLIBC, PLATFORMS, markers, wheel_rank

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
