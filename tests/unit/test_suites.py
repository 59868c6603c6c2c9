"""The spec's Python against its base, known before anything is resolved or downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envlock import suites
from envlock.errors import SpecError
from envlock.image.base import cached_interpreter, default_base, python_problem
from envlock.image.venv import Interpreter

HOME = Path("/nonexistent-envlock-home")


def test_python_3_12_on_bookworm_names_what_each_debian_ships_and_the_way_out() -> None:
    problem = suites.python_problem("bookworm", "3.12")
    assert problem is not None
    message, hint = problem
    assert message.startswith(
        "the spec asks for Python 3.12, but debian:bookworm (Debian 12) ships Python 3.11"
    )
    assert "no Debian release ships Python 3.12" in message and "trixie: 3.13" in message
    assert "Ubuntu 24.04 (noble) does" in message
    assert 'python = "3.13" with base = "debian:trixie"' in hint
    assert 'python = "3.11"' in hint


def test_a_python_another_debian_suite_ships_names_that_suite() -> None:
    problem = suites.python_problem("bookworm", "3.13")
    assert problem == (
        "the spec asks for Python 3.13, but debian:bookworm (Debian 12) ships Python 3.11; "
        "debian:trixie ships 3.13",
        'use base = "debian:trixie", or set python = "3.11"',
    )


@pytest.mark.parametrize(
    ("suite", "python"),
    [("bookworm", "3.11"), ("trixie", "3.13"), ("bullseye", "3.9"), ("sid", "3.12"), ("stable", "3.99")],
    ids=["bookworm", "trixie", "bullseye", "rolling-unknown", "alias-unknown"],
)
def test_a_shipped_or_unknown_combination_is_no_problem(suite: str, python: str) -> None:
    assert suites.python_problem(suite, python) is None


def test_every_default_base_is_a_suite_that_ships_its_python() -> None:
    for python in ("3.9", "3.11", "3.13"):
        suite = default_base(python).split(":")[1]
        assert python in suites.SUITES[suite].pythons


def test_no_base_and_a_python_no_debian_ships_is_a_problem() -> None:
    problem = python_problem(None, "3.12", home=HOME, spec_dir=Path())
    assert isinstance(problem, SpecError)
    assert "no default base" in problem.message


def test_a_debian_base_is_checked_by_the_table() -> None:
    problem = python_problem("debian:bookworm", "3.12", home=HOME, spec_dir=Path())
    assert isinstance(problem, SpecError) and "trixie" in problem.message + (problem.hint or "")
    assert python_problem("debian:bookworm", "3.11", home=HOME, spec_dir=Path()) is None


DIGEST = "sha256:" + "ab" * 32
INDEX_DIGEST = "sha256:" + "cd" * 32


def home_with(tmp_path: Path, inspected: dict[str, str] | None, index: bool = False) -> Path:
    home = tmp_path / "home"
    (home / "bases").mkdir(parents=True)
    (home / "bases" / f"inspect-{DIGEST[7:]}.json").write_text(json.dumps(inspected or {}))
    if index:
        blobs = home / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        entry = {"digest": DIGEST, "platform": {"os": "linux", "architecture": "amd64"}}
        (blobs / INDEX_DIGEST[7:]).write_text(json.dumps({"manifests": [entry]}))
    return home


def test_a_registry_base_the_store_has_read_is_known(tmp_path: Path) -> None:
    home = home_with(tmp_path, {"path": "/usr/local/bin/python3.11", "version": "3.11"})
    ref = f"registry.example/python@{DIGEST}"
    assert cached_interpreter(ref, home=home, spec_dir=tmp_path) == Interpreter(
        "/usr/local/bin/python3.11", "3.11"
    )
    problem = python_problem(ref, "3.12", home=home, spec_dir=tmp_path)
    assert isinstance(problem, SpecError)
    assert f"base {ref} has Python 3.11 (/usr/local/bin/python3.11" in problem.message
    assert python_problem(ref, "3.11", home=home, spec_dir=tmp_path) is None


def test_a_registry_base_pinned_by_its_index_is_known_through_the_index(tmp_path: Path) -> None:
    home = home_with(tmp_path, {"path": "/usr/bin/python3.13", "version": "3.13"}, index=True)
    ref = f"registry.example/python@{INDEX_DIGEST}"
    assert cached_interpreter(ref, home=home, spec_dir=tmp_path) == Interpreter("/usr/bin/python3.13", "3.13")


def test_an_oci_layout_with_one_image_is_known_by_its_index_json(tmp_path: Path) -> None:
    home = home_with(tmp_path, {"path": "/usr/bin/python3.11", "version": "3.11"})
    layout = tmp_path / "specs" / "base"
    layout.mkdir(parents=True)
    (layout / "index.json").write_text(json.dumps({"manifests": [{"digest": DIGEST}]}))
    problem = python_problem("oci:base", "3.13", home=home, spec_dir=tmp_path / "specs")
    assert isinstance(problem, SpecError) and "has Python 3.11" in problem.message


@pytest.mark.parametrize(
    "ref",
    [f"registry.example/python@sha256:{'ef' * 32}", "oci:/nowhere", "registry.example/python@sha256:../../x"],
    ids=["never-read", "no-layout", "bad-digest"],
)
def test_an_unknown_base_is_left_to_the_build(tmp_path: Path, ref: str) -> None:
    home = home_with(tmp_path, {"path": "/usr/bin/python3.11", "version": "3.11"})
    assert cached_interpreter(ref, home=home, spec_dir=tmp_path) is None
    assert python_problem(ref, "3.12", home=home, spec_dir=tmp_path) is None
