"""History: one lock across git history; mark two revisions (space) and diff them (d)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from envlock.tui import data
from envlock.tui.widgets import MARK, ErrorBox, current_key, toggle_mark

WORKING_TREE = "working tree"


class HistoryScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "mark", "Mark"),
        Binding("d", "diff", "Diff"),
        Binding("enter", "diff_previous", "Diff previous", priority=True),
        Binding("escape", "app.go_back", "Back"),
    ]

    def __init__(self, root: Path, lock: str) -> None:
        super().__init__()
        self.root = root
        self.lock_file = lock  # the lock path, relative to root
        self.order: list[str] = []  # row keys (references), newest first
        self.marks: list[str] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"History of {self.lock_file}", id="title", classes="title")
        table: DataTable[object] = DataTable(id="revisions", cursor_type="row")
        table.add_column("", key="mark", width=1)
        for label in ("commit", "date", "env ID", "subject"):
            table.add_column(label, key=label)
        yield table
        yield ErrorBox(id="error")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"history of {self.lock_file}"
        self.query_one("#revisions", DataTable).focus()
        self.load()

    @work(thread=True, exit_on_error=False, exclusive=True)
    def load(self) -> None:
        try:
            revisions = data.history(self.root / self.lock_file)
        except Exception as exc:
            self.app.call_from_thread(self.query_one(ErrorBox).show_error, exc)
            return
        self.app.call_from_thread(self._loaded, revisions)

    def _loaded(self, revisions: list[data.Revision]) -> None:
        table = self.query_one("#revisions", DataTable)
        table.clear()
        self.order = []
        if (self.root / self.lock_file).is_file():
            table.add_row("", WORKING_TREE, "", "", "(uncommitted state)", key=self.lock_file)
            self.order.append(self.lock_file)
        for rev in revisions:
            key = f"{self.lock_file}@{rev.commit[:12]}"  # short: it labels the diff
            env = rev.env_id[:19] if rev.env_id else "(deleted)"
            table.add_row("", rev.short, rev.date[:10], env, rev.subject, key=key)
            self.order.append(key)
        count = len(revisions)
        title = f"History of {self.lock_file}: {count} commit{'' if count == 1 else 's'}"
        self.query_one("#title", Static).update(title)

    def action_mark(self) -> None:
        table = self.query_one("#revisions", DataTable)
        key = current_key(table)
        if key is None:
            return
        toggle_mark(self.marks, key)
        for row_key in table.rows:
            table.update_cell(row_key, "mark", MARK if row_key.value in self.marks else "")

    def _push_diff(self, a: str, b: str) -> None:
        from envlock.tui.screens.diff import DiffScreen

        self.app.push_screen(DiffScreen(self.root, a, b))

    def action_diff(self) -> None:
        if len(self.marks) != 2:
            self.notify(f"mark two revisions with space ({len(self.marks)} marked)", severity="warning")
            return
        older, newer = sorted(self.marks, key=self.order.index, reverse=True)
        self._push_diff(older, newer)

    def action_diff_previous(self) -> None:
        key = current_key(self.query_one("#revisions", DataTable))
        if key is None:
            return
        index = self.order.index(key)
        if index + 1 >= len(self.order):
            self.notify("this is the oldest revision", severity="warning")
            return
        self._push_diff(self.order[index + 1], key)
