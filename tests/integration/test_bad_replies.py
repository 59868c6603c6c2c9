"""Registries and indexes that reply badly, served for real on 127.0.0.1 by a tiny
http.server per test: each reply becomes one EnvlockError naming the URL, never a traceback
(exit 1 for what fails verification, 3 for a service that does not work)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import run_envlock

from envlock import fetch
from envlock.errors import CheckFailed, EnvlockError, ServiceUnavailable
from envlock.image import registry
from envlock.lockfile import Package
from envlock.store import Store

Reply = tuple[int, dict[str, str], bytes]
Route = Callable[[BaseHTTPRequestHandler], Reply | None]  # None: the route wrote the reply itself


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Server:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.seen: list[str] = []
        routes, seen = self.routes, self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return None

            def handle_any(self) -> None:
                seen.append(f"{self.command} {self.path}")
                path = self.path.split("?", 1)[0]
                route = routes.get((self.command, path))
                reply = route(self) if route else (404, {}, b'{"errors":[{"code":"NOT_FOUND"}]}')
                if reply is None:
                    return
                status, headers, body = reply
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = handle_any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, method: str, path: str, status: int, body: bytes = b"", **headers: str) -> None:
        self.routes[(method, path)] = lambda _h: (status, dict(headers), body)


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    thread = threading.Thread(target=s.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield s
    finally:
        s.httpd.shutdown()
        s.httpd.server_close()


def truncated(body: bytes, claimed: int) -> Route:
    """A reply that announces ``claimed`` bytes and sends ``body`` (fewer), then hangs up."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(claimed))
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()
        h.close_connection = True

    return route


CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


def manifest_bytes(layers: object = None, config: object = None) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config or {"mediaType": "x", "digest": digest(CONFIG), "size": len(CONFIG)},
            "layers": [{"mediaType": "x", "digest": digest(b"layer"), "size": 5}]
            if layers is None
            else layers,
        }
    ).encode()


def pin(server: Server, body: bytes) -> str:
    """Serve ``body`` as the manifest of repo/app by its digest; return the pinned reference."""
    ref = digest(body)
    server.serve("GET", f"/v2/repo/app/manifests/{ref}", 200, body, **{"Content-Type": "application/json"})
    return f"{server.host}/repo/app@{ref}"


def pull_error(tmp_path: Path, reference: str) -> EnvlockError:
    with pytest.raises(EnvlockError) as caught:
        registry.pull(Store(tmp_path / "store"), reference)
    return caught.value


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<html>not json</html>", "manifest is not valid JSON"),
        (b"[1, 2, 3]", "manifest must be a JSON object"),
        (b"[" * 50000, "manifest is not valid JSON"),
        (manifest_bytes(layers=[]), "the manifest has no layers"),
        (manifest_bytes(layers="all of them"), "layers must be a list"),
        (
            manifest_bytes(layers=[{"digest": digest(b"x"), "size": "5"}]),
            "layers[0].size",
        ),
        (manifest_bytes(layers=[{"digest": "sha256:../../etc/passwd", "size": 5}]), "layers[0].digest"),
        (manifest_bytes(layers=["layer"]), "layers[0] must be a JSON object"),
        (manifest_bytes(config={"digest": 7}), "config.digest"),
        (json.dumps({"manifests": [{"digest": "md5:abc"}]}).encode(), "manifests[0].digest"),
        (json.dumps({"manifests": {"a": 1}}).encode(), "manifests must be a list"),
    ],
    ids=[
        "html",
        "list",
        "deep",
        "no-layers",
        "layers-str",
        "size-str",
        "digest-path",
        "layer-str",
        "config",
        "index-digest",
        "index-shape",
    ],
)
def test_a_manifest_that_is_not_one_fails_verification(
    server: Server, tmp_path: Path, body: bytes, words: str
) -> None:
    reference = pin(server, body)
    error = pull_error(tmp_path, reference)
    assert isinstance(error, CheckFailed) and error.exit_code == 1
    assert words in error.message and reference in error.message


def test_the_cli_says_it_in_one_line(server: Server, tmp_path: Path) -> None:
    reference = pin(server, b"<html>not json</html>")
    proc = run_envlock("pull", reference, "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {reference}: manifest is not valid JSON")
    assert "Traceback" not in proc.stderr


def test_a_blob_answering_404_names_the_blob_and_the_url(server: Server, tmp_path: Path) -> None:
    reference = pin(server, manifest_bytes())
    error = pull_error(tmp_path, reference)
    assert isinstance(error, CheckFailed) and error.exit_code == 1
    blob_url = f"http://{server.host}/v2/repo/app/blobs/{digest(CONFIG)}"
    assert error.message == f"{server.host} has no blob {digest(CONFIG)} in repo/app (404 for {blob_url})"


def test_a_blob_with_other_bytes_is_a_verification_failure(server: Server, tmp_path: Path) -> None:
    reference = pin(server, manifest_bytes())
    server.serve("GET", f"/v2/repo/app/blobs/{digest(CONFIG)}", 200, b"forged config")
    error = pull_error(tmp_path, reference)
    assert isinstance(error, CheckFailed)
    assert error.message.startswith(
        f"blob {digest(CONFIG)} from {server.host}/repo/app does not match its digest"
    )
    assert f"http://{server.host}/v2/repo/app/blobs/{digest(CONFIG)}: blob hash mismatch" in error.message


def test_a_truncated_body_is_unavailable_naming_the_url(server: Server, tmp_path: Path) -> None:
    reference = pin(server, manifest_bytes())
    server.routes[("GET", f"/v2/repo/app/blobs/{digest(CONFIG)}")] = truncated(CONFIG[:10], len(CONFIG))
    error = pull_error(tmp_path, reference)
    assert isinstance(error, ServiceUnavailable) and error.exit_code == 3
    assert f"/v2/repo/app/blobs/{digest(CONFIG)}: the reply broke off (" in error.message
    # a truncated manifest too
    body = manifest_bytes()
    server.routes[("GET", f"/v2/repo/app/manifests/{digest(body)}")] = truncated(body[:20], len(body))
    error = pull_error(tmp_path / "2", f"{server.host}/repo/app@{digest(body)}")
    assert isinstance(error, ServiceUnavailable) and "the reply broke off" in error.message


@pytest.mark.parametrize(
    "challenge",
    ['Bearer service="registry"', "Bearer", 'Bearer realm="file:///etc/passwd"', 'Digest realm="x"'],
)
def test_a_challenge_without_a_usable_realm(server: Server, tmp_path: Path, challenge: str) -> None:
    ref = digest(b"m")
    server.serve("GET", f"/v2/repo/app/manifests/{ref}", 401, b"", **{"WWW-Authenticate": challenge})
    error = pull_error(tmp_path, f"{server.host}/repo/app@{ref}")
    assert isinstance(error, ServiceUnavailable) and error.exit_code == 3
    assert "sent an authentication challenge envlock cannot answer" in error.message


def test_a_redirect_loop_is_unavailable(server: Server, tmp_path: Path) -> None:
    ref = digest(b"m")
    path = f"/v2/repo/app/manifests/{ref}"
    server.serve("GET", path, 302, b"", Location=path)
    proc = run_envlock("pull", f"{server.host}/repo/app@{ref}", "--store", str(tmp_path / "s"), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith(f"error: {server.host} answered 302")
    assert f"http://{server.host}{path}" in proc.stderr and "Traceback" not in proc.stderr


def test_an_upload_reply_without_location(server: Server, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"layer")
    server.serve("POST", "/v2/repo/app/blobs/uploads/", 202, b"")
    client = registry.Client(registry.parse(f"{server.host}/repo/app"))
    with pytest.raises(ServiceUnavailable) as caught:
        client.upload(digest(b"layer"), blob)
    assert caught.value.message == (
        f"{server.host} answered POST http://{server.host}/v2/repo/app/blobs/uploads/ "
        "without a usable Location header"
    )


# -- fetch: wheels from an index ------------------------------------------------------------


def wheel(url: str, data: bytes) -> Package:
    return Package("pip", "demo", "1.0", url, hashlib.sha256(data).hexdigest())


def test_fetch_of_a_truncated_download_is_unavailable_naming_the_url(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "RETRIES", 1)
    monkeypatch.setattr(fetch.time, "sleep", lambda _s: None)
    data = b"wheel bytes " * 100
    server.routes[("GET", "/files/demo-1.0-py3-none-any.whl")] = truncated(data[:50], len(data))
    url = f"http://{server.host}/files/demo-1.0-py3-none-any.whl?token=s3cret"
    store = Store(tmp_path / "store")
    with pytest.raises(ServiceUnavailable) as caught:
        fetch.fetch_one(store, wheel(url, data), tmp_path)
    message = caught.value.message
    assert message == (
        f"cannot download demo from http://{server.host}/files/demo-1.0-py3-none-any.whl?token=***: "
        f"IncompleteRead: IncompleteRead(0 bytes read, {len(data) - 50} more expected)"
    )
    assert server.seen.count("GET /files/demo-1.0-py3-none-any.whl?token=s3cret") == 2  # retried once
    assert list(store.tmp.iterdir()) == []


def test_fetch_of_a_404_names_the_url_redacted(server: Server, tmp_path: Path) -> None:
    url = f"http://{server.host}/files/gone.whl?token=s3cret"
    with pytest.raises(ServiceUnavailable) as caught:
        fetch.fetch_one(Store(tmp_path / "store"), wheel(url, b"x"), tmp_path)
    assert caught.value.message == f"demo: http://{server.host}/files/gone.whl?token=*** answered HTTP 404"


@pytest.mark.parametrize("config", ['{"auths": []}', '{"auths": {"HOST": "x"}}', "[1]", "{"])
def test_a_docker_config_of_another_shape_means_no_credentials(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str
) -> None:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker/config.json").write_text(config.replace("HOST", server.host))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    ref = digest(b"m")
    server.serve("GET", f"/v2/repo/app/manifests/{ref}", 401, b"", **{"WWW-Authenticate": 'Basic realm="r"'})
    error = pull_error(tmp_path, f"{server.host}/repo/app@{ref}")
    assert isinstance(error, ServiceUnavailable)
    assert error.message == f"{server.host} needs credentials"
