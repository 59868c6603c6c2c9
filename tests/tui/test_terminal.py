"""``envlock tui`` in a real terminal: tmux runs it at 80x24, we read the screen, press q."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[list[str]]:
    """tmux on a private socket, so the test neither sees nor touches a user's sessions."""
    assert TMUX is not None, "tmux is not installed: run scripts/ensure-deps.sh (CI does)"
    base = [TMUX, "-S", str(tmp_path / "tmux.sock")]
    yield base
    subprocess.run([*base, "kill-server"], capture_output=True, check=False)


def capture(tmux: list[str]) -> str:
    proc = subprocess.run(
        [*tmux, "capture-pane", "-p", "-t", "tui"], capture_output=True, text=True, check=False
    )
    return proc.stdout


def wait_for(tmux: list[str], predicate: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = capture(tmux)
        if predicate in screen:
            return screen
        time.sleep(0.2)
    raise AssertionError(f"{predicate!r} never appeared; last screen:\n{screen}")


def alive(tmux: list[str]) -> bool:
    return (
        subprocess.run([*tmux, "has-session", "-t", "tui"], capture_output=True, check=False).returncode == 0
    )


def test_tui_in_tmux(tmux: list[str], repo: Path) -> None:
    env = {"TERM": "xterm-256color", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = f"{sys.executable} -m envlock tui"
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", "-c", str(repo),
         *[arg for key, value in env.items() for arg in ("-e", f"{key}={value}")], command],
        check=True,
    )  # fmt: skip
    screen = wait_for(tmux, "vision")
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert "Environments (4)" in screen
    for name, state in (("vision", "fresh"), ("legacy", "stale"), ("draft", "missing")):
        assert any(name in line and state in line for line in lines), screen
    footer = lines[-1]
    for binding in ("Filter", "Mark", "Diff", "History", "Quit"):
        assert binding in footer, footer

    subprocess.run([*tmux, "send-keys", "-t", "tui", "q"], check=True)
    deadline = time.monotonic() + 10
    while alive(tmux) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(tmux), capture(tmux)
