"""The Docker engine adapter's pure parts: which transport a load takes, and its errors."""

from __future__ import annotations

import pytest

from envlock import engine


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
