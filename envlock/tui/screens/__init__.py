"""One screen per view: home, detail, history, diff, rebuild."""

from envlock.tui.screens.detail import DetailScreen
from envlock.tui.screens.diff import DiffScreen
from envlock.tui.screens.history import HistoryScreen
from envlock.tui.screens.home import HomeScreen
from envlock.tui.screens.rebuild import RebuildScreen

__all__ = ["DetailScreen", "DiffScreen", "HistoryScreen", "HomeScreen", "RebuildScreen"]
