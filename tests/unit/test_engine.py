"""The Docker engine adapter's pure parts: which transport a load takes, and its errors."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from envlock import engine
from envlock.errors import CheckFailed, ServiceUnavailable

ID = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("host", "tls", "expected"),
    [
        (None, None, ("unix", "/var/run/docker.sock", 0)),
        ("", None, ("unix", "/var/run/docker.sock", 0)),
        ("unix:///tmp/d/docker.sock", None, ("unix", "/tmp/d/docker.sock", 0)),
        ("tcp://127.0.0.1:2375", None, ("tcp", "127.0.0.1", 2375)),
        ("tcp://127.0.0.1:2376", "1", None),  # TLS: docker-py sends it
        ("tcp://127.0.0.1", None, None),  # no port: docker-py knows the defaults
        ("ssh://user@build-host", None, None),
    ],
)
def test_a_load_sends_the_archive_itself_only_on_a_plain_socket(
    monkeypatch: pytest.MonkeyPatch, host: str | None, tls: str | None, expected: object
) -> None:
    for name, value in (("DOCKER_HOST", host), ("DOCKER_TLS_VERIFY", tls), ("DOCKER_CERT_PATH", None)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert engine._plain_socket() == expected


def test_a_certificate_path_means_tls_as_docker_py_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.setenv("DOCKER_CERT_PATH", "/home/u/.docker")
    assert engine._plain_socket() is None


def test_a_full_disk_is_named_with_what_to_do() -> None:
    exc = engine.load_failure("sha256:" + "a" * 64, "write /var/lib/docker/x: no space left on device")
    assert "ran out of disk space" in exc.message
    assert exc.hint is not None and "docker image prune" in exc.hint


def _server(path: Path, reply: bytes) -> threading.Thread:
    """A unix-socket server that reads one request until the client stops, then says ``reply``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data and (more := conn.recv(65536)):
                    data += more
                if reply:
                    conn.sendall(reply)
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_blob_that_shrank_while_it_was_sent_is_an_error_not_a_hang(tmp_path: Path) -> None:
    """Content-Length promised the blob's size: a short blob would leave the engine waiting."""
    _server(tmp_path / "d.sock", b"")
    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 500)
    with pytest.raises(CheckFailed, match="shrank to 500 of 1000 bytes"):
        engine._post_archive(("unix", str(tmp_path / "d.sock"), 0), "1.41", [b"head", (blob, 1000)], ID)


def test_an_endpoint_that_is_not_an_engine_is_a_load_failure(tmp_path: Path) -> None:
    _server(tmp_path / "d.sock", b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
    with pytest.raises(ServiceUnavailable, match="failed to load") as caught:
        engine._post_archive(("unix", str(tmp_path / "d.sock"), 0), "1.41", [b"x" * 10_000_000], ID)
    assert "404" in caught.value.message or "hung up" in caught.value.message


def test_no_engine_at_the_socket_is_a_load_failure(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnavailable, match="failed to load"):
        engine._post_archive(("unix", str(tmp_path / "none.sock"), 0), "1.41", [b"x"], ID)


class _Images:
    def __init__(self, image: object, error: Exception | None = None) -> None:
        self.image, self.error = image, error

    def get(self, image_id: str) -> object:
        if self.error is not None:
            raise self.error
        return self.image


class _Client:
    def __init__(self, images: _Images) -> None:
        self.images = images


def _load_with(monkeypatch: pytest.MonkeyPatch, client: _Client) -> None:
    from envlock.image.model import Image

    monkeypatch.setattr(engine, "client", lambda: client)
    image = Image({"rootfs": {"type": "layers", "diff_ids": []}}, ())
    engine.load(None, image, ["envlock/x:1-linux-64"])  # type: ignore[arg-type]


def test_an_engine_that_refuses_the_tag_is_an_error_line_not_an_internal_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from docker.errors import APIError

    from envlock.errors import ServiceUnavailable

    class Refusing:
        id = "sha256:" + "0" * 64

        def tag(self, repo: str, tag: str) -> None:
            raise APIError("500 Server Error", explanation="invalid reference format")

    with pytest.raises(ServiceUnavailable, match="tagging it envlock/x:1-linux-64 failed: invalid reference"):
        _load_with(monkeypatch, _Client(_Images(Refusing())))


def test_an_engine_gone_after_the_ping_is_an_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from requests.exceptions import ConnectionError

    from envlock.errors import ServiceUnavailable

    gone = ConnectionError("('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))")
    monkeypatch.setattr(engine, "has_image", lambda c, image_id: True)
    with pytest.raises(ServiceUnavailable, match="Connection aborted"):
        _load_with(monkeypatch, _Client(_Images(None, gone)))


def test_an_engine_gone_before_the_image_lookup_is_an_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from requests.exceptions import ConnectionError

    gone = ConnectionError("('Connection aborted.', RemoteDisconnected('closed'))")
    with pytest.raises(ServiceUnavailable, match="Connection aborted"):
        _load_with(monkeypatch, _Client(_Images(None, gone)))


@pytest.mark.parametrize("host", ["bogus://x", "htp://127.0.0.1:2375", "docker://local"])
def test_a_docker_host_that_is_no_engine_address_is_bad_input(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    from envlock.errors import UsageError

    monkeypatch.setenv("DOCKER_HOST", host)
    with pytest.raises(UsageError, match="is not a Docker engine address"):
        engine.client()


def test_a_layer_the_engine_finds_changed_is_a_failed_check_pointing_at_fsck() -> None:
    exc = engine.load_failure(ID, "invalid diffID for layer 1: expected sha256:aa, got sha256:bb")
    assert isinstance(exc, CheckFailed) and exc.exit_code == 1
    assert exc.hint is not None and "envlock store fsck" in exc.hint
