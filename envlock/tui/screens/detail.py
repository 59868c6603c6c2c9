"""Detail: the packages of one environment, searchable, with each one's source and sha256."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from envlock.lockfile import Package
from envlock.tui import data
from envlock.tui.widgets import ErrorBox, current_key


class DetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, root: Path, ref: str) -> None:
        super().__init__()
        self.root = root
        self.ref = ref
        self.packages: dict[str, tuple[str, Package]] = {}  # row key -> (platform, package)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self.ref, id="title", classes="title")
        yield Input(placeholder="/ search packages…", id="search", classes="compact-input")
        table: DataTable[object] = DataTable(id="packages", cursor_type="row")
        for label in ("package", "version", "manager", "platform"):
            table.add_column(label, key=label)
        yield table
        yield Static("", id="info", classes="info")
        yield ErrorBox(id="error")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = self.ref
        self.query_one("#packages", DataTable).focus()
        self.load()

    @work(thread=True, exit_on_error=False, exclusive=True)
    def load(self) -> None:
        try:
            env = data.resolve(self.ref, self.root)
        except Exception as exc:
            self.app.call_from_thread(self.query_one(ErrorBox).show_error, exc)
            return
        self.app.call_from_thread(self._loaded, env)

    def _loaded(self, env: data.EnvRef) -> None:
        count = sum(len(p.packages) for p in env.lock.platforms)
        title = f"{env.label}  {env.lock.env_id[:19]}  {count} packages"
        if env.note:
            title += f"\n{env.note}"
        self.query_one("#title", Static).update(title)
        self.packages = {
            f"{plat.name}/{p.manager}/{p.name}": (plat.name, p)
            for plat in env.lock.platforms
            for p in plat.packages
        }
        self._fill()

    def _fill(self) -> None:
        needle = self.query_one("#search", Input).value.strip().lower()
        table = self.query_one("#packages", DataTable)
        table.clear()
        for key, (platform, p) in self.packages.items():
            if needle and needle not in p.name.lower():
                continue
            table.add_row(p.name, p.version, p.manager, platform, key=key)
        self._show_info()

    def _show_info(self) -> None:
        key = current_key(self.query_one("#packages", DataTable))
        info = self.query_one("#info", Static)
        if key is None:
            info.update("")
            return
        _, p = self.packages[key]
        build = f"  build {p.build}" if p.build else ""
        info.update(f"source  {p.url}\nsha256  {p.sha256}{build}")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_info()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._fill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#packages", DataTable).focus()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_focus:
            self.query_one("#packages", DataTable).focus()
        else:
            self.app.pop_screen()
