"""Download progress for the CLI: a rich bar on a terminal, nothing per chunk when piped."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from envlock.lockfile import Package


class FetchProgress:
    """Context manager giving a ``(package, done, total)`` callback for ``fetch_all``."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Callable[[Package, int, int | None], None] | None:
        if not self.enabled:
            return None
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
        )
        self._bar.start()
        return self.update

    def update(self, package: Package, done: int, total: int | None) -> None:
        with self._lock:
            task = self._tasks.get(package.sha256)
            if task is None:
                task = self._bar.add_task(f"{package.name} {package.version}", total=total or package.size)
                self._tasks[package.sha256] = task
            self._bar.update(task, completed=done)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
