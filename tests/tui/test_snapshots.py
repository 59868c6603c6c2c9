"""Screenshots of the main screens at 80x24 (pytest-textual-snapshot).

Regenerate after an intended change with ``pytest tests/tui --snapshot-update`` and look at
the SVGs in ``__snapshots__/`` before committing them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from envlock.tui import data
from envlock.tui.app import EnvlockApp

SIZE = (80, 24)
Compare = Callable[..., bool]


def settled(*keys: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()

    return run_before


def test_home(snap_compare: Compare, repo: Path, models: Path) -> None:
    assert snap_compare(EnvlockApp(repo), terminal_size=SIZE, run_before=settled())


def test_home_filtered(snap_compare: Compare, repo: Path, models: Path) -> None:
    keys = ("slash", "n", "enter")
    assert snap_compare(EnvlockApp(repo), terminal_size=SIZE, run_before=settled(*keys))


def test_detail(snap_compare: Compare, repo: Path) -> None:
    keys = ("down", "down", "down", "enter", "down")
    assert snap_compare(EnvlockApp(repo), terminal_size=SIZE, run_before=settled(*keys))


def test_diff(snap_compare: Compare, repo: Path) -> None:
    app = EnvlockApp(repo, ("vision", "nlp"))
    assert snap_compare(app, terminal_size=SIZE, run_before=settled())


def test_diff_error(snap_compare: Compare, repo: Path) -> None:
    app = EnvlockApp(repo, ("vision", "visoin"))
    assert snap_compare(app, terminal_size=SIZE, run_before=settled())


def test_rebuild(snap_compare: Compare, repo: Path, models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(name: str, progress: data.Progress) -> str:
        for i, step in enumerate(("read lock at 1a2b3c", "fetch 42 wheels", "assemble layers")):
            progress(step, (i + 1) / 3)
        return "sha256:" + "c" * 64

    monkeypatch.setattr(data, "start_rebuild", fake)
    keys = ("tab", "r")
    assert snap_compare(EnvlockApp(repo), terminal_size=SIZE, run_before=settled(*keys))
