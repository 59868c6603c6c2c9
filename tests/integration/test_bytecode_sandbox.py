"""Byte code from a hostile base: what the base runs (its loader, its interpreter, its
standard library) runs in a bubblewrap sandbox, so it cannot write a host file, read one,
reach the network or change its own files; the build fails with one error line."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import build_wheel, locked_project, run_envlock

from envlock.image import base as basemod
from envlock.image import layer as layermod
from envlock.image import venv
from envlock.image.model import CREATED, Image
from envlock.image.oci import write_layout
from envlock.store import Store


class Listener:
    """A TCP server on the host's 127.0.0.1 that counts who reaches it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.reached = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.reached += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    try:
        yield server
    finally:
        server.close()


def hostile_base(tmp: Path, base_layout: Path, files: dict[str, bytes]) -> Path:
    """The test's debian:bookworm base with one more layer holding ``files`` (executable),
    written as an OCI layout."""
    store = Store(tmp / "hostile-base-store")
    base = basemod.resolve(store, f"oci:{base_layout}", "3.11")
    layer = venv.store_entries(
        store, [layermod.file(path, data, executable=True) for path, data in files.items()], "hostile"
    )
    config = dict(base.config)
    config["rootfs"] = {"type": "layers", "diff_ids": [*config["rootfs"]["diff_ids"], layer.diff_id]}
    config["history"] = [*config.get("history", []), {"created": CREATED, "created_by": "hostile"}]
    layout = tmp / "hostile-layout"
    write_layout(store, Image(config, (*base.layers, layer), {}), layout, "hostile")
    return layout


def build(tmp: Path, layout: Path) -> tuple[int, list[str], str]:
    wheels = tmp / "wheels"
    build_wheel(wheels, "envlock-fx-code", "1.0", modules={"mod.py": "VALUE = 1\n"})
    spec = locked_project(tmp / "p", wheels, '"envlock-fx-code"', f'base = "oci:{layout}"\nbytecode = true\n')
    store = tmp / "store"
    proc = run_envlock("build", str(spec), "--store", str(store), cwd=tmp / "p")
    assert "Traceback" not in proc.stderr
    assert list((store / "tmp").iterdir()) == []
    return proc.returncode, [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")], proc.stderr


def test_a_base_whose_loader_is_a_script_runs_nothing_on_the_host(
    tmp_path: Path, base_layout: Path, listener: Listener
) -> None:
    sentinel = tmp_path / "sentinel"
    script = (
        "#!/bin/sh\n"
        f"echo owned > {sentinel}\n"
        f"/usr/bin/curl -s -m 2 http://127.0.0.1:{listener.port}/ >/dev/null\n"
        "exit 7\n"
    )
    layout = hostile_base(tmp_path, base_layout, {"usr/lib64/ld-linux-x86-64.so.2": script.encode()})

    code, errors, stderr = build(tmp_path, layout)

    assert code == 1, stderr
    (line,) = errors
    assert line.startswith("error: the base's Python (/usr/bin/python3.11) failed while compiling byte code")
    assert not sentinel.exists()
    assert listener.reached == 0


def test_a_base_whose_standard_library_is_hostile_cannot_touch_the_host(
    tmp_path: Path, base_layout: Path, listener: Listener
) -> None:
    """The compiler imports ``warnings`` from the base: its code runs, in the sandbox."""
    sentinel = tmp_path / "sentinel"
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    hostile = f"""
import socket
def attempt(action):
    try:
        action()
        return True
    except OSError:
        return False
def write():
    with open({str(sentinel)!r}, "w") as fh:
        fh.write("owned")
def read():
    with open({str(secret)!r}) as fh:
        fh.read()
def reach():
    socket.create_connection(("127.0.0.1", {listener.port}), 2).close()
def change_base():
    with open("/usr/lib/python3.11/owned", "w") as fh:
        fh.write("owned")
raise SystemExit(
    f"hostile base ran: wrote={{attempt(write)}} read={{attempt(read)}} "
    f"net={{attempt(reach)}} base_writable={{attempt(change_base)}}"
)
"""
    layout = hostile_base(tmp_path, base_layout, {"usr/lib/python3.11/warnings.py": hostile.encode()})

    code, errors, stderr = build(tmp_path, layout)

    assert code == 1, stderr
    (line,) = errors
    assert line == (
        "error: the base's Python (/usr/bin/python3.11) failed while compiling byte code: "
        "hostile base ran: wrote=False read=False net=False base_writable=False"
    )
    assert not sentinel.exists()
    assert listener.reached == 0
