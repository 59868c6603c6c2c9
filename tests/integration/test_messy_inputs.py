"""Messy real-world inputs (issue 11): PyTorch-index wheel tags, yanked pins, two wheels
writing one path, a spec's Python the base does not ship, and builds that fail early
with every problem at once.  Wheels are built by fixtures and served from local indexes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Index, build_wheel, locked_project, run_envlock, serve, write_simple_index, write_spec


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
