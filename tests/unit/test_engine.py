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
