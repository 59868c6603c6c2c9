"""Rebuild: start the rebuild of a recorded model; progress bar and log while it runs."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header, Log, ProgressBar, Static

from envlock.tui import data
from envlock.tui.widgets import ErrorBox, shorten


class RebuildScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.go_back", "Back"),
    ]

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model
        self.result: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Rebuilding {self.model}", id="title", classes="title")
        yield ProgressBar(total=1.0, show_eta=False, id="progress")
        yield Log(id="log")
        yield ErrorBox(id="error")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"rebuild {self.model}"
        self.run_rebuild()

    @work(thread=True, exit_on_error=False, exclusive=True)
    def run_rebuild(self) -> None:
        def progress(line: str, fraction: float) -> None:
            self.app.call_from_thread(self._progress, line, fraction)

        try:
            image = data.start_rebuild(self.model, progress)
        except Exception as exc:
            self.app.call_from_thread(self._failed, exc)
            return
        self.app.call_from_thread(self._done, image)

    def _progress(self, line: str, fraction: float) -> None:
        if line:
            self.query_one(Log).write_line(line)
        self.query_one(ProgressBar).update(progress=max(0.0, min(1.0, fraction)))

    def _done(self, image: str) -> None:
        self.result = image
        self.query_one(ProgressBar).update(progress=1.0)
        self.query_one(Log).write_line(f"done: {image}")
        title = f"Rebuilt {self.model}: image {shorten(image, 26)}"
        self.query_one("#title", Static).update(Text(title, "green"))

    def _failed(self, exc: BaseException) -> None:
        self.query_one("#title", Static).update(Text(f"Rebuild of {self.model} failed", "red"))
        self.query_one(ErrorBox).show_error(exc)
