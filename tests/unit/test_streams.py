"""produce(): a writer on another thread read as an iterator, errors and early stops included."""

from __future__ import annotations

import threading
from typing import IO

import pytest

from envlock.streams import produce


def test_bytes_come_out_in_order_and_whole() -> None:
    def write(sink: IO[bytes]) -> None:
        for i in range(3000):
            sink.write(i.to_bytes(4, "big") * 100)

    out = b"".join(produce(write))
    assert out == b"".join(i.to_bytes(4, "big") * 100 for i in range(3000))


def test_the_writer_s_error_reaches_the_reader_after_its_bytes() -> None:
    def write(sink: IO[bytes]) -> None:
        sink.write(b"x" * (3 << 20))
        raise OSError("disk gone")

    got = bytearray()
    with pytest.raises(OSError, match="disk gone"):
        for chunk in produce(write):
            got += chunk
    assert len(got) >= 2 << 20


def test_a_reader_that_stops_early_stops_the_writer() -> None:
    stopped = threading.Event()

    def write(sink: IO[bytes]) -> None:
        try:
            while True:
                sink.write(b"y" * (1 << 20))
        finally:
            stopped.set()

    chunks = produce(write, depth=2)
    next(chunks)
    chunks.close()
    assert stopped.wait(5)
