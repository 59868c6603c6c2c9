"""The envlock Textual app: ``envlock tui`` and ``envlock tui --diff A B``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from envlock.tui.screens import DiffScreen, HomeScreen

EXIT_AFTER_PAINT = "ENVLOCK_TUI_EXIT_AFTER_PAINT"  # benchmarks: quit once the first view shows


class EnvlockApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "envlock"
    ENABLE_COMMAND_PALETTE = False  # its footer entry would push bindings off an 80-column line
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "quit", "Quit")]

    def __init__(
        self,
        root: Path = Path(),
        diff: tuple[str, str] | None = None,
        *,
        exit_after_paint: bool = False,
    ) -> None:
        super().__init__()
        self.root = root
        self.initial_diff = diff
        self.exit_after_paint = exit_after_paint
        self.painted_at: float | None = None  # wall clock (time.time) of the first view's paint

    def on_mount(self) -> None:
        # Under --diff only the diff screen is built at start (first paint); the home screen
        # replaces it when the user goes back.
        if self.initial_diff:
            self.push_screen(DiffScreen(self.root, *self.initial_diff))
        else:
            self.push_screen(HomeScreen(self.root))

    def action_go_back(self) -> None:
        if len(self.screen_stack) > 2:
            self.pop_screen()
        else:
            self.switch_screen(HomeScreen(self.root))

    def screen_ready(self, screen: Screen[None]) -> None:
        """Called by a screen once its data is on screen; ends the app in benchmark mode."""
        first = DiffScreen if self.initial_diff else HomeScreen
        if self.painted_at is None and isinstance(screen, first):
            self.painted_at = time.time()
            if self.exit_after_paint:
                self.exit()


def make_app(root: Path, diff: tuple[str, ...] | None = None) -> EnvlockApp:
    """The app as ``envlock tui`` runs it; ``$ENVLOCK_TUI_EXIT_AFTER_PAINT`` (benchmarks)
    makes it quit as soon as its first view is painted."""
    pair = (diff[0], diff[1]) if diff else None
    return EnvlockApp(root, pair, exit_after_paint=bool(os.environ.get(EXIT_AFTER_PAINT)))
