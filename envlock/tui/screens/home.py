"""Home: the repository's environments (specs with lock state) and its recorded models."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from envlock.tui import data
from envlock.tui.widgets import MARK, ErrorBox, current_key, relative, toggle_mark

STATE_STYLE = {"fresh": "green", "stale": "yellow", "missing": "red", "invalid": "bold red"}


class HomeScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("enter", "open", "Open", priority=True),
        Binding("space", "mark", "Mark"),
        Binding("d", "diff", "Diff"),
        Binding("h", "history", "History"),
        Binding("r", "rebuild", "Rebuild"),
    ]

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.envs: list[data.EnvStatus] = []
        self.models: list[data.ModelRow] = []
        self.marks: list[str] = []  # row keys, in the order marked ("env:REF" / "model:REF")
        self.refs: dict[str, str] = {}  # row key -> environment reference
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="filter…  (Enter: keep, Esc: clear)", id="filter", classes="compact-input")
        yield Static("Environments", id="envs-title", classes="section")
        envs: DataTable[object] = DataTable(id="envs", cursor_type="row")
        envs.add_column("", key="mark", width=1)
        for label in ("name", "lock", "env ID", "pkgs", "platforms"):
            envs.add_column(label, key=label)
        yield envs
        yield Static("Models", id="models-title", classes="section")
        models: DataTable[object] = DataTable(id="models", cursor_type="row")
        models.add_column("", key="mark", width=1)
        for label in ("name", "commit", "date", "env ID", "image"):
            models.add_column(label, key=label)
        yield models
        yield ErrorBox(id="error")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = self.root.resolve().name
        self.query_one("#envs", DataTable).focus()
        self._start()

    def on_screen_resume(self) -> None:
        self._start()

    def _start(self) -> None:
        # Load once, when first shown: a home screen mounted beneath another one must not
        # compete with it for the first paint.
        if not self.loaded and self.app.screen is self:
            self.loaded = True
            self.load()

    @work(thread=True, exit_on_error=False, exclusive=True)
    def load(self) -> None:
        try:
            envs, models = data.environments(self.root), data.list_models(self.root)
        except Exception as exc:
            self.app.call_from_thread(self.query_one(ErrorBox).show_error, exc)
            self.app.call_from_thread(self._ready)
            return
        self.app.call_from_thread(self._loaded, envs, models)

    def _loaded(self, envs: list[data.EnvStatus], models: list[data.ModelRow]) -> None:
        self.envs, self.models = envs, models
        self.refs = {
            f"env:{relative(e.spec_path, self.root)}": relative(e.spec_path, self.root) for e in envs
        }
        self.refs.update({f"model:{m.name}@{m.commit}": f"{m.name}@{m.commit[:12]}" for m in models})
        self._fill()
        self.call_after_refresh(self._ready)

    def _ready(self) -> None:
        ready = getattr(self.app, "screen_ready", None)
        if callable(ready):
            ready(self)

    def _fill(self) -> None:
        needle = self.query_one("#filter", Input).value.strip().lower()
        envs = self.query_one("#envs", DataTable)
        models = self.query_one("#models", DataTable)
        envs.clear()
        models.clear()
        for e in self.envs:
            key = f"env:{relative(e.spec_path, self.root)}"
            if needle and needle not in f"{e.name} {e.state} {e.env_id}".lower():
                continue
            envs.add_row(
                MARK if key in self.marks else "",
                e.name,
                Text(e.state, STATE_STYLE.get(e.state, "")),
                e.short_id or "-",
                str(e.packages) if e.env_id else "-",
                ", ".join(e.platforms),
                key=key,
            )
        for m in self.models:
            key = f"model:{m.name}@{m.commit}"
            haystack = f"{m.name} {m.commit} {m.env_id} {m.image_status}".lower()
            if needle and needle not in haystack:
                continue
            image = Text(m.image_status, "red" if m.image_status == "missing" else "green")
            models.add_row(
                MARK if key in self.marks else "",
                m.name,
                m.commit[:10],
                m.date[:10],
                m.env_id[:19],
                image,
                key=key,
            )
        shown = f" ({envs.row_count} of {len(self.envs)})" if needle else f" ({len(self.envs)})"
        self.query_one("#envs-title", Static).update("Environments" + shown)
        shown = f" ({models.row_count} of {len(self.models)})" if needle else f" ({len(self.models)})"
        label = "Models" + shown + ("" if self.models else "  none recorded yet")
        self.query_one("#models-title", Static).update(label)

    def _table(self) -> DataTable[object]:
        focused = self.focused
        if isinstance(focused, DataTable):
            return focused
        return self.query_one("#envs", DataTable)

    # filter
    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("shown")
        self.query_one("#envs", DataTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self._fill()

    # actions on the row under the cursor
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        from envlock.tui.screens.detail import DetailScreen

        if isinstance(self.focused, Input):  # Enter in the filter keeps it and goes back
            self.query_one("#envs", DataTable).focus()
            return
        key = current_key(self._table())
        if key is not None:
            self.app.push_screen(DetailScreen(self.root, self.refs[key]))

    def action_mark(self) -> None:
        table = self._table()
        key = current_key(table)
        if key is None:
            return
        toggle_mark(self.marks, key)
        self._fill_marks()

    def _fill_marks(self) -> None:
        for table in self.query(DataTable):
            for row_key in table.rows:
                mark = MARK if row_key.value in self.marks else ""
                table.update_cell(row_key, "mark", mark)

    def action_diff(self) -> None:
        from envlock.tui.screens.diff import DiffScreen

        if len(self.marks) != 2:
            self.notify(f"mark two environments with space ({len(self.marks)} marked)", severity="warning")
            return
        a, b = (self.refs[k] for k in self.marks)
        self.app.push_screen(DiffScreen(self.root, a, b))

    def action_history(self) -> None:
        from envlock.tui.screens.history import HistoryScreen

        key = current_key(self._table())
        if key is None or not key.startswith("env:"):
            self.notify("history is per spec: select an environment", severity="warning")
            return
        env = next(e for e in self.envs if f"env:{relative(e.spec_path, self.root)}" == key)
        self.app.push_screen(HistoryScreen(self.root, relative(env.lock_path, self.root)))

    def action_rebuild(self) -> None:
        from envlock.tui.screens.rebuild import RebuildScreen

        key = current_key(self._table())
        if key is None or not key.startswith("model:"):
            self.notify("rebuild starts from a recorded model: select one", severity="warning")
            return
        name = key.removeprefix("model:").rsplit("@", 1)[0]
        self.app.push_screen(RebuildScreen(name))
