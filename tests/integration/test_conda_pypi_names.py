"""conda + pip: a Python distribution that conda installs under another name is never
installed a second time by pip (issue 11 item 7).

A local channel holds conda packages named as conda-forge names them (``python-tzdata``
for PyPI's ``tzdata``, ``py-*``) and one whose name no table knows but whose archive lists
its ``site-packages/NAME-VERSION.dist-info/``; a local wheelhouse holds the PyPI side.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conda_channel import CondaPkg, write_channel
from support import build_wheel, run_envlock, write_spec

from envlock import lockfile as lockmod

DIST_INFO = "site-packages/envlock_fx_realname-3.1.dist-info"


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> str:
    def noarch(name: str, version: str, files: dict[str, bytes], fmt: str = "tar.bz2") -> CondaPkg:
        return CondaPkg(name, version, "noarch", noarch="python", files=files, fmt=fmt)

    packages = [
        # conda-forge's name for PyPI tzdata (the published mapping: python-tzdata -> tzdata)
        noarch("python-tzdata", "2024.1", {"site-packages/tzdata/__init__.py": b"IANA_VERSION = '2024a'\n"}),
        # a py-* name no table knows: the prefix rule (py-NAME is PyPI's NAME)
        noarch("py-envlock-fx-gamma", "1.0", {"site-packages/envlock_fx_gamma/__init__.py": b""}),
        # a name nothing maps, with the truth in its dist-info (a .conda archive)
        noarch(
            "envlock-fx-conda-only-name",
            "3.1",
            {
                "site-packages/envlock_fx_realname/__init__.py": b"",
                f"{DIST_INFO}/METADATA": b"Metadata-Version: 2.1\nName: envlock-fx-realname\nVersion: 3.1\n",
                f"{DIST_INFO}/RECORD": b"",
            },
            fmt="conda",
        ),
    ]
    return write_channel(tmp_path_factory.mktemp("names-channel"), packages)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("names-wheels")
    for name, version in [
        ("tzdata", "2024.1"),
        ("tzdata", "2026.6"),
        ("envlock-fx-gamma", "1.0"),
        ("envlock-fx-gamma", "2.0"),
        ("envlock-fx-realname", "3.1"),
        ("envlock-fx-realname", "4.0"),
    ]:
        build_wheel(dest, name, version)
    build_wheel(dest, "envlock-fx-app", "1.0", ("tzdata", "envlock-fx-gamma", "envlock-fx-realname"))
    build_wheel(dest, "envlock-fx-needs-new-tz", "1.0", ("tzdata>=2025",))
    return dest


def spec_for(root: Path, channel: str, wheels: Path, conda: str, pip: str) -> Path:
    return write_spec(
        root,
        "env",
        f"""python = "3.11"
platforms = ["linux-64"]
[conda]
channels = ["{channel}"]
packages = [{conda}]
[pip]
packages = [{pip}]
find-links = ["{wheels}"]
no-index = true
""",
    )


def lock(spec: Path) -> subprocess.CompletedProcess[str]:
    return run_envlock("lock", str(spec), cwd=spec.parent.parent)


def test_pip_tzdata_is_not_installed_over_conda_python_tzdata(
    tmp_path: Path, channel: str, wheels: Path
) -> None:
    spec = spec_for(tmp_path, channel, wheels, '"python-tzdata"', '"tzdata"')
    proc = lock(spec)
    assert proc.returncode == 0, proc.stderr
    (plat,) = lockmod.read(spec.with_suffix(".lock")).platforms
    assert plat.by_name("conda")["python-tzdata"].version == "2024.1"
    assert "tzdata" not in plat.by_name("pip")  # pip would have taken tzdata 2026.6
    assert "tzdata" not in spec.with_name("env.linux-64.requirements.txt").read_text()


def test_renamed_conda_packages_satisfy_a_pip_package_that_needs_them(
    tmp_path: Path, channel: str, wheels: Path
) -> None:
    conda = '"python-tzdata", "py-envlock-fx-gamma", "envlock-fx-conda-only-name"'
    spec = spec_for(tmp_path, channel, wheels, conda, '"envlock-fx-app"')
    proc = lock(spec)
    assert proc.returncode == 0, proc.stderr
    (plat,) = lockmod.read(spec.with_suffix(".lock")).platforms
    # only the app comes from pip: tzdata (map), gamma (py-* rule), realname (dist-info) are conda's
    assert sorted(plat.by_name("pip")) == ["envlock-fx-app"]


def test_pip_needing_another_version_than_conda_python_tzdata_is_exit_2(
    tmp_path: Path, channel: str, wheels: Path
) -> None:
    spec = spec_for(tmp_path, channel, wheels, '"python-tzdata"', '"envlock-fx-needs-new-tz"')
    proc = lock(spec)
    assert proc.returncode == 2, proc.stderr
    assert "tzdata 2024.1" in proc.stderr and "Traceback" not in proc.stderr
    assert not spec.with_suffix(".lock").exists()


def test_a_local_channel_file_that_lost_its_hash_is_refused(tmp_path: Path, wheels: Path) -> None:
    pkg = CondaPkg(
        "python-tzdata", "2024.1", "noarch", noarch="python", files={"site-packages/tzdata/x": b"1"}
    )
    url = write_channel(tmp_path / "channel", [pkg])
    archive = tmp_path / "channel" / "noarch" / pkg.filename
    archive.write_bytes(archive.read_bytes() + b"tampered")
    spec = spec_for(tmp_path / "proj", url, wheels, '"python-tzdata"', '"tzdata"')
    proc = lock(spec)
    assert proc.returncode == 1, proc.stderr
    assert "\nerror: conda package file://" in proc.stderr
    assert "does not have the sha256 its channel lists" in proc.stderr
    assert not spec.with_suffix(".lock").exists()
