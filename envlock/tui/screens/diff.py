"""Diff: two environments side by side, the summary on top, each change coloured by kind."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from envlock import diffview
from envlock.tui import data
from envlock.tui.widgets import ErrorBox, current_key, shorten


class DiffScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.go_back", "Back"),
    ]

    def __init__(self, root: Path, a: str, b: str) -> None:
        super().__init__()
        self.root = root
        self.a, self.b = a, b
        self.rows: dict[str, diffview.Row] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Comparing…", id="summary", classes="title")
        yield Static(f"A: {self.a}\nB: {self.b}", id="sides", classes="muted")
        table: DataTable[object] = DataTable(id="changes", cursor_type="row")
        table.add_column("package", key="package")
        table.add_column(f"A {shorten(self.a, 22)}", key="a")
        table.add_column(f"B {shorten(self.b, 22)}", key="b")
        table.add_column("change", key="change")
        yield table
        yield Static("", id="info", classes="info")
        yield ErrorBox(id="error")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = f"{self.a} -> {self.b}"
        self.query_one("#changes", DataTable).focus()
        self.load()

    @work(thread=True, exit_on_error=False, exclusive=True)
    def load(self) -> None:
        try:
            diff = data.compare(self.a, self.b, self.root)
        except Exception as exc:
            self.app.call_from_thread(self._failed, exc)
            return
        self.app.call_from_thread(self._loaded, diff)

    def _failed(self, exc: BaseException) -> None:
        self.query_one("#summary", Static).update("Cannot compare")
        self.query_one("#changes", DataTable).display = False
        self.query_one("#info", Static).display = False
        self.query_one(ErrorBox).show_error(exc)
        self.call_after_refresh(self._ready)

    def _ready(self) -> None:
        ready = getattr(self.app, "screen_ready", None)
        if callable(ready):
            ready(self)

    def _loaded(self, diff: data.EnvDiff) -> None:
        self.query_one("#summary", Static).update(diff.summary)
        sides = []
        for tag, side in (("A", diff.a), ("B", diff.b)):
            note = f"  ({side.note})" if side.note else ""
            sides.append(f"{tag}: {side.label}  {side.env_id[:19]}{note}")
        self.query_one("#sides", Static).update("\n".join(sides))
        table = self.query_one("#changes", DataTable)
        table.clear()
        several = len(diff.platforms) > 1
        self.rows = {}
        for plat in diff.platforms:
            if not plat.changed:
                continue
            if several or plat.status != "both":
                where = {"added": " (only in B)", "removed": " (only in A)"}.get(plat.status, "")
                table.add_row(Text(f"── {plat.name}{where}", "bold"), "", "", "", key=f"p:{plat.name}")
            if plat.status != "both":
                continue
            for i, row in enumerate(diffview.platform_rows(plat)):
                key = f"{plat.name}:{i}"
                self.rows[key] = row
                style = diffview.style(row.kind)
                name = Text(
                    row.label,
                    "bold" if row.framework or row.kind in ("python", "cuda", "base") else "",
                )
                table.add_row(
                    name,
                    shorten(row.old, 24),
                    shorten(row.new, 24),
                    Text(row.kind, style),
                    key=key,
                )
        self._show_info()
        self.call_after_refresh(self._ready)

    def _show_info(self) -> None:
        key = current_key(self.query_one("#changes", DataTable))
        row = self.rows.get(key or "")
        info = self.query_one("#info", Static)
        info.update(f"A  {row.old or '-'}\nB  {row.new or '-'}" if row else "")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_info()
