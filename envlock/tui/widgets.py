"""Small widgets shared by the screens."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import DataTable, Static

from envlock.errors import EnvlockError

MARK = "●"


def error_parts(exc: BaseException) -> tuple[str, str | None]:
    """(message, hint) for any exception: envlock's own carry both; others are bugs."""
    if isinstance(exc, EnvlockError):
        return exc.message, exc.hint
    return f"{type(exc).__name__}: {exc}", "this is a bug in envlock; please report it"


class ErrorBox(Static):
    """An ``error:`` line and a ``hint:`` line, as the CLI prints them; hidden when empty."""

    def show_error(self, exc: BaseException) -> None:
        message, hint = error_parts(exc)
        text = Text()
        text.append("error: ", "bold red")
        text.append(message)
        if hint:
            text.append("\nhint: ", "bold")
            text.append(hint)
        self.update(text)
        self.add_class("shown")

    def clear_error(self) -> None:
        self.update("")
        self.remove_class("shown")


def toggle_mark(marks: list[str], key: str, keep: int = 2) -> None:
    """Mark ``key``, or unmark it if marked; at most ``keep`` marks, the oldest dropped."""
    if key in marks:
        marks.remove(key)
        return
    marks.append(key)
    if len(marks) > keep:
        marks.pop(0)


def current_key(table: DataTable[object]) -> str | None:
    """The key of the row under the cursor, or ``None`` for an empty table."""
    if not table.row_count:
        return None
    key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    return key if isinstance(key, str) else None


def relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def shorten(value: str, width: int = 28) -> str:
    return value if len(value) <= width else value[: width - 1] + "…"
