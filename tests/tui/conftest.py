"""TUI fixtures: a repository in every lock state under a directory named ``demo`` (the
home screen shows the directory's name, so snapshots do not depend on tmp paths)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tui_support import make_repo, write_models


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/tui" in item.path.as_posix():
            item.add_marker(pytest.mark.tui)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "demo")


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three recorded models, fed through the list_models seam's test-only variable."""
    path = write_models(tmp_path / "models.json", 3)
    monkeypatch.setenv("ENVLOCK_TUI_MODELS", str(path))
    return path


def _git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "envlock tests",
        "GIT_AUTHOR_EMAIL": "tests@envlock.invalid",
        "GIT_COMMITTER_NAME": "envlock tests",
        "GIT_COMMITTER_EMAIL": "tests@envlock.invalid",
        "GIT_AUTHOR_DATE": "2026-03-01T12:00:00Z",
        "GIT_COMMITTER_DATE": "2026-03-01T12:00:00Z",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.fixture
def git_commit() -> Callable[[Path, str], None]:
    """Commit everything in a repository (created on first use) with a fixed date."""

    def commit(root: Path, message: str) -> None:
        if not (root / ".git").exists():
            _git(root, "init", "-q", "-b", "main")
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", message)

    return commit
