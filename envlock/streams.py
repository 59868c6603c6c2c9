"""Turn a writer (a function that writes into a file object) into an iterator of chunks.

Compressors (igzip, zstd) and tarfile *push* bytes into a file; HTTP bodies
(urllib's chunked uploads, docker-py's ``images.load``) *pull* them from an
iterator.  ``produce`` runs the writer on a second thread and hands its bytes
over through a small bounded queue, so nothing is staged on disk and at most
``depth`` chunks are held in memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator
from typing import IO, cast

CHUNK = 1 << 20


class _Closed(Exception):
    """The consumer stopped reading; the producer thread ends quietly."""


class _QueueSink:
    """A write-only file object whose writes become chunks of about ``CHUNK`` bytes."""

    def __init__(self, out: queue.Queue[bytes | BaseException | None], stop: threading.Event) -> None:
        self._out = out
        self._stop = stop
        self._pending = bytearray()

    def write(self, data: bytes) -> int:
        self._pending += data
        if len(self._pending) >= CHUNK:
            self._emit()
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        """Nothing to do: chunks are handed over when they are full (and at the end)."""

    def _emit(self) -> None:
        if self._pending:
            self._put(bytes(self._pending))
            self._pending.clear()

    def _put(self, item: bytes | BaseException | None) -> None:
        while True:
            if self._stop.is_set():
                raise _Closed
            try:
                self._out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue


def produce(write: Callable[[IO[bytes]], None], depth: int = 8) -> Generator[bytes, None, None]:
    """Yield what ``write(fileobj)`` writes, in chunks of about 1 MiB, in order.

    ``write`` runs on its own thread; an exception it raises is raised here, in the
    consumer, after the bytes written before it.  If the consumer stops early (closes
    the generator), the producer is told to stop at its next write and is joined.
    """
    out: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    sink = _QueueSink(out, stop)

    def run() -> None:
        try:
            write(cast(IO[bytes], sink))
            sink._emit()
            sink._put(None)
        except _Closed:
            return
        except BaseException as exc:  # handed to the consumer
            try:
                sink._put(exc)
            except _Closed:
                return

    thread = threading.Thread(target=run, name="envlock-produce", daemon=True)
    thread.start()
    try:
        while True:
            item = out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
