"""Messy real-world inputs (issue 11): PyTorch-index wheel tags, yanked pins, two wheels
writing one path, a spec's Python the base does not ship, and builds that fail early
with every problem at once.  Wheels are built by fixtures and served from local indexes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Index, build_wheel, run_envlock, serve, write_simple_index, write_spec


@pytest.fixture(scope="module")
def yanked_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    wheels = tmp_path_factory.mktemp("yanked-wheels")
    build_wheel(wheels, "envlock-fx-yank", "1.0")
    bad = build_wheel(wheels, "envlock-fx-yank", "1.1")
    root = tmp_path_factory.mktemp("yanked-index")
    write_simple_index(root, wheels, yanked={bad.name: "broken build"})
    yield from serve(root, None)


def test_a_yanked_pin_locks_with_a_warning_line(tmp_path: Path, yanked_index: Index) -> None:
    body = f'python = "3.11"\n[pip]\npackages = ["envlock-fx-yank==1.1"]\nindex-url = "{yanked_index.url}"\n'
    spec = write_spec(tmp_path, "yank", body)
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'warning: `envlock-fx-yank==1.1` is yanked (reason: "broken build")' in proc.stderr.splitlines()
    assert 'version = "1.1"' in spec.with_suffix(".lock").read_text()


def test_an_unyanked_resolution_has_no_warning(tmp_path: Path, yanked_index: Index) -> None:
    body = f'python = "3.11"\n[pip]\npackages = ["envlock-fx-yank"]\nindex-url = "{yanked_index.url}"\n'
    spec = write_spec(tmp_path, "fine", body)
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" not in proc.stderr
    assert 'version = "1.0"' in spec.with_suffix(".lock").read_text()


def test_python_3_12_on_bookworm_is_exit_2_at_lock_time_naming_trixie(tmp_path: Path) -> None:
    body = 'python = "3.12"\n[pip]\npackages = ["envlock-fx-beta"]\nindex-url = "http://127.0.0.1:9/simple"\n'
    spec = write_spec(tmp_path, "py312", body + '[image]\nbase = "debian:bookworm"\n')
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(
        f"error: {spec}: the spec asks for Python 3.12, but debian:bookworm (Debian 12)"
    )
    assert "trixie: 3.13" in lines[0]
    assert lines[1].startswith('hint: use python = "3.13" with base = "debian:trixie"')
    assert len(lines) == 2  # nothing resolved (the index is not even up), no traceback
    assert sorted(p.name for p in spec.parent.iterdir()) == ["py312.toml"]


def test_python_3_13_on_bookworm_names_the_suite_that_ships_it(tmp_path: Path) -> None:
    body = 'python = "3.13"\n[pip]\npackages = ["x"]\n[image]\nbase = "debian:bookworm"\n'
    spec = write_spec(tmp_path, "py313", body)
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 2
    assert "debian:trixie ships 3.13" in proc.stderr
    assert 'hint: use base = "debian:trixie", or set python = "3.11"' in proc.stderr
