"""conda -> PyPI names: the published map, envlock's overrides, the prefix rule, dist-info."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from envlock.compat import pypi_names
from envlock.resolve import conda

COMPAT = Path(pypi_names.__file__).parent


@pytest.mark.parametrize(
    ("conda_name", "expected"),
    [
        # published mapping (conda-pypi 0.13.1, conda_pypi/grayskull_pypi_mapping.json):
        ("python-tzdata", ("tzdata",)),  # conda-forge tzdata is the IANA data, not the PyPI package
        ("pytorch", ("torch",)),
        ("msgpack-python", ("msgpack",)),
        ("matplotlib-base", ("matplotlib",)),
        ("python-flatbuffers", ("flatbuffers",)),
        ("python-graphviz", ("graphviz",)),
        ("python-duckdb", ("duckdb",)),
        ("opencv", ("opencv-python", "opencv-python-headless")),  # one conda package, two PyPI spellings
        ("python-dateutil", ("python-dateutil",)),  # a python-* name PyPI spells the same
        ("typing_extensions", ("typing-extensions",)),  # normalised
        # envlock's overrides (conda-pypi-overrides.toml, each with its feedstock as source):
        ("py-opencv", ("opencv-python", "opencv-python-headless")),
        ("pytorch-cpu", ("torch",)),
        ("tensorflow-base", ("tensorflow",)),
        # the prefix rule for names no table knows (conda-forge names py-xgboost, py-lief so):
        ("py-xgboost", ("xgboost", "py-xgboost")),
        ("python-envlock-fx", ("envlock-fx", "python-envlock-fx")),
        # everything else keeps its name
        ("numpy", ("numpy",)),
        ("scikit-learn", ("scikit-learn",)),
    ],
)
def test_pypi_names(conda_name: str, expected: tuple[str, ...]) -> None:
    assert pypi_names.pypi_names(conda_name) == expected


def test_known_names_count_as_python_distributions() -> None:
    assert pypi_names.known("pytorch-gpu") and pypi_names.known("python-tzdata")
    assert not pypi_names.known("libjpeg-turbo")


def test_dist_info_names_the_distribution() -> None:
    paths = [
        "lib/python3.11/site-packages/tzdata-2024.1.dist-info/METADATA",
        "site-packages/Foo_Bar-1.0.dist-info/RECORD",  # noarch: python layout
        "Lib/site-packages/win_only-2.0.dist-info/METADATA",
        "lib/python3.13t/site-packages/free_threaded-1.0.dist-info/WHEEL",
        "lib/python3.12/site-packages/PyYAML-6.0-py3.12.egg-info/PKG-INFO",
        "site-packages/foo/__init__.py",
        "share/doc/not_a-1.0.dist-info/README",  # not under site-packages
    ]
    assert pypi_names.dist_names(paths) == ("foo-bar", "free-threaded", "pyyaml", "tzdata", "win-only")
    assert pypi_names.dist_names(["bin/tool"]) == ()


def test_the_data_files_name_source_and_license_and_stay_small() -> None:
    published = tomllib.loads((COMPAT / "conda-pypi-names.toml").read_text())
    assert "conda-pypi" in published["source"] and "MIT" in published["license"]
    assert len(published["wheel-sha256"]) == 64
    assert (COMPAT / "conda-pypi-names.toml").stat().st_size < 64 * 1024
    for conda_name, pypi in published["names"].items():
        names = [pypi] if isinstance(pypi, str) else pypi
        same = names == [pypi_names.canonical(conda_name)]
        assert not same or conda_name.startswith(pypi_names.PREFIXES), conda_name
    for row in tomllib.loads((COMPAT / "conda-pypi-overrides.toml").read_text())["override"]:
        assert row["source"].strip() and row["pypi"], row


def test_python_dists_reads_the_archive_of_a_local_channel(tmp_path: Path) -> None:
    import hashlib
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        for name, data in {
            "info/index.json": b"{}",
            "info/paths.json": json.dumps(
                {"paths": [{"_path": "site-packages/real_name-1.0.dist-info/METADATA"}]}
            ).encode(),
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "odd-name-1.0-0.tar.bz2"
    archive.write_bytes(buf.getvalue())
    sha = hashlib.sha256(buf.getvalue()).hexdigest()

    assert conda.python_dists("odd-name", archive.as_uri(), sha) == ("real-name",)
    # a remote URL whose archive is not at hand: the map decides
    assert conda.python_dists("python-tzdata", "https://example.invalid/x.tar.bz2", sha) == ("tzdata",)


@pytest.mark.parametrize(
    "paths_json",
    [b"[1, 2]", b'{"paths": 3}', b'{"paths": [7, {"_path": 9}, {"x": 1}]}', b"not json", b"\xff\xfe"],
)
def test_a_malformed_paths_json_lists_nothing_and_never_raises(tmp_path: Path, paths_json: bytes) -> None:
    import hashlib
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:bz2") as tar:
        info = tarfile.TarInfo("info/paths.json")
        info.size = len(paths_json)
        tar.addfile(info, io.BytesIO(paths_json))
    archive = tmp_path / "python-tzdata-1-0.tar.bz2"
    archive.write_bytes(buf.getvalue())
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    # falls back to the name map
    assert conda.python_dists("python-tzdata", archive.as_uri(), sha) == ("tzdata",)


def test_an_archive_that_is_not_one_lists_nothing(tmp_path: Path) -> None:
    import hashlib

    archive = tmp_path / "python-tzdata-1-0.conda"
    archive.write_bytes(b"PK\x03\x04 not a zip")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert conda.python_dists("python-tzdata", archive.as_uri(), sha) == ("tzdata",)
