"""Credentials at fetch time: the spec's ${VAR} logins for the same origin, else netrc; never
sent on after a redirect."""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from envlock import credentials
from envlock.errors import ServiceUnavailable, UsageError
from envlock.fetch import fetch_all
from envlock.lockfile import Package
from envlock.store import Store

SOURCE = "https://${IDX_USER}:${IDX_TOKEN}@pkgs.example.org/simple"
ENV = {"IDX_USER": "ci", "IDX_TOKEN": "s3cret"}
BASIC = "Basic " + base64.b64encode(b"ci:s3cret").decode()


def test_the_spec_login_goes_to_the_same_origin_only() -> None:
    urls = ["https://pkgs.example.org/packages/a.whl", "https://cdn.example.org/b.whl"]
    access = credentials.load([SOURCE], urls, ENV)
    assert access.request(urls[0]).headers == {"Authorization": BASIC}
    assert access.request(urls[1]).headers == {}
    # another port or scheme is another origin (RFC 6454)
    assert access.request("http://pkgs.example.org/packages/a.whl").headers == {}
    assert access.request("https://pkgs.example.org:8443/packages/a.whl").headers == {}


def test_a_variable_is_needed_only_for_downloads_from_its_origin() -> None:
    access = credentials.load([SOURCE], ["https://cdn.example.org/b.whl"], {})
    assert access.request("https://cdn.example.org/b.whl").headers == {}
    with pytest.raises(UsageError) as info:
        credentials.load([SOURCE], ["https://pkgs.example.org/packages/a.whl"], {"IDX_USER": "ci"})
    assert "environment variable IDX_TOKEN is not set" in info.value.message
    assert info.value.exit_code == 2


def test_placeholders_in_package_urls_are_expanded() -> None:
    url = "https://pkgs.example.org/${PATH_TOKEN}/packages/a.whl"
    access = credentials.load([], [url], {"PATH_TOKEN": "t0k"})
    assert access.request(url).url == "https://pkgs.example.org/t0k/packages/a.whl"
    with pytest.raises(UsageError, match="PATH_TOKEN is not set"):
        credentials.load([], [url], {})


def test_netrc_logins_come_from_netrc_or_home(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine pkgs.example.org login ci password s3cret\n")
    url = "https://pkgs.example.org/packages/a.whl"
    assert credentials.load([], [url], {"NETRC": str(netrc)}).request(url).headers == {"Authorization": BASIC}
    home = tmp_path / "home"
    home.mkdir()
    (home / ".netrc").write_text(netrc.read_text())
    assert credentials.load([], [url], {"HOME": str(home)}).request(url).headers == {"Authorization": BASIC}
    assert credentials.load([], [url], {"HOME": str(tmp_path / "none")}).request(url).headers == {}


def test_the_spec_login_wins_over_netrc(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine pkgs.example.org login other password other-pw\n")
    url = "https://pkgs.example.org/packages/a.whl"
    access = credentials.load([SOURCE], [url], {**ENV, "NETRC": str(netrc)})
    assert access.request(url).headers == {"Authorization": BASIC}


def test_a_broken_netrc_is_named_without_its_content(tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine pkgs.example.org login ci password s3cret\nbogus s3cret-too\n")
    with pytest.raises(UsageError) as info:
        credentials.load([], ["https://pkgs.example.org/a.whl"], {"NETRC": str(netrc)})
    assert f"{netrc}:2: cannot parse" in info.value.message
    assert "s3cret" not in info.value.message


def test_sources_from_lock_options() -> None:
    options = (
        "--no-index",
        "--index-url https://${U}:${T}@h/simple",
        "--extra-index-url https://download.pytorch.org/whl/cu121",
        "--find-links ../wheels",
        "--find-links https://h/links/",
    )
    assert credentials.sources_from_options(options) == (
        "https://${U}:${T}@h/simple",
        "https://download.pytorch.org/whl/cu121",
        "https://h/links/",
    )


# -- over HTTP: a real local server pair ----------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]]
    target: str = ""
    body: bytes = b""

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.target:
            self.send_response(302)
            self.send_header("Location", self.target + self.path)
            self.end_headers()
            return
        if self.headers.get("Authorization") is None and self.path.startswith("/private/"):
            self.send_response(401)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


@pytest.fixture
def servers() -> Iterator[tuple[str, str, list[tuple[str, str | None]], list[tuple[str, str | None]]]]:
    """An index that redirects every request to a second host (127.0.0.2: another origin)."""
    cdn_seen: list[tuple[str, str | None]] = []
    index_seen: list[tuple[str, str | None]] = []
    cdn_handler = type("Cdn", (_Recorder,), {"seen": cdn_seen, "body": b"wheel bytes"})
    cdn = ThreadingHTTPServer(("127.0.0.2", 0), cdn_handler)
    cdn_url = f"http://127.0.0.2:{cdn.server_address[1]}"
    index_handler = type("Index", (_Recorder,), {"seen": index_seen, "target": cdn_url})
    index = ThreadingHTTPServer(("127.0.0.1", 0), index_handler)
    for server in (cdn, index):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{index.server_address[1]}", cdn_url, index_seen, cdn_seen
    finally:
        for server in (cdn, index):
            server.shutdown()
            server.server_close()


def test_credentials_are_not_sent_on_after_a_redirect(tmp_path: Path, servers) -> None:  # type: ignore[no-untyped-def]
    index, _, index_seen, cdn_seen = servers
    sha = hashlib.sha256(b"wheel bytes").hexdigest()
    pkg = Package("pip", "a", "1.0", f"{index}/packages/a-1.0-py3-none-any.whl", sha)
    source = index.replace("http://", "http://${IDX_USER}:${IDX_TOKEN}@") + "/simple"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ENV.items():
            mp.setenv(key, value)
        fetch_all(Store(tmp_path / "store"), [pkg], tmp_path, sources=[source])
    assert index_seen == [("/packages/a-1.0-py3-none-any.whl", BASIC)]
    assert cdn_seen == [("/packages/a-1.0-py3-none-any.whl", None)]


def test_refused_download_is_exit_3_naming_the_written_url(tmp_path: Path, servers) -> None:  # type: ignore[no-untyped-def]
    _, cdn, _, _ = servers
    pkg = Package("pip", "a", "1.0", f"{cdn}/private/${{PATH_TOKEN}}/a-1.0-py3-none-any.whl", "0" * 64)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH_TOKEN", "t0k3n-value")
        with pytest.raises(ServiceUnavailable) as info:
            fetch_all(Store(tmp_path / "store"), [pkg], tmp_path)
    assert info.value.exit_code == 3
    assert f"{cdn}/private/${{PATH_TOKEN}}/a-1.0" in info.value.message
    assert "HTTP 401 (credentials needed)" in info.value.message
    assert "t0k3n-value" not in info.value.message
    assert info.value.hint is not None and "netrc" in info.value.hint
