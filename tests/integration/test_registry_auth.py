"""Registry auth for real: docker-registry behind htpasswd (Basic) and behind a token server
(Bearer), credentials from a docker config.json, push then pull with every blob verified."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import build_wheel, locked_project, run_envlock, start_registry

USER, PASSWORD = "trainer", "s3cret-pass"
SERVICE, ISSUER = "envlock-test-registry", "envlock-test-issuer"


def docker_config(root: Path, registry: str, user: str, password: str) -> dict[str, str]:
    """A DOCKER_CONFIG directory with credentials for ``registry``; returns the env to use it."""
    root.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (root / "config.json").write_text(json.dumps({"auths": {registry: {"auth": auth}}}))
    return {"DOCKER_CONFIG": str(root)}


def locked_spec(root: Path, name: str, image: str, env: dict[str, str] | None = None) -> Path:
    """A locked spec of one tiny wheel; ``image`` is the body of its [image] table."""
    build_wheel(root / "wheels", "envlock-fx-auth", "1.0")
    return locked_project(root, root / "wheels", '"envlock-fx-auth"', image, name, env)


@pytest.fixture(scope="module")
def small_image(tmp_path_factory: pytest.TempPathFactory, base_layout: Path) -> tuple[Path, Path]:
    """A spec with one tiny wheel on the session's base, built into a store: (spec, store)."""
    root = tmp_path_factory.mktemp("auth-project")
    spec = locked_spec(root, "app", f'base = "oci:{base_layout}"\n')
    store = root / "store"
    assert run_envlock("build", str(spec), "--store", str(store), cwd=root).returncode == 0
    return spec, store


def push_then_pull(
    tmp_path: Path, small_image: tuple[Path, Path], registry: str, env: dict[str, str]
) -> tuple[str, str]:
    spec, store = small_image
    pushed = run_envlock(
        "build",
        str(spec),
        "--store",
        str(store),
        "--push",
        f"{registry}/envlock/app",
        cwd=spec.parent,
        env=env,
    )
    assert pushed.returncode == 0, pushed.stderr
    reference = pushed.stdout.strip().splitlines()[-1]
    assert reference.startswith(f"{registry}/envlock/app@sha256:")
    again = run_envlock("build", str(spec), "--store", str(store), "-q", cwd=spec.parent)
    built = again.stdout.strip().splitlines()[-1]
    pulled = run_envlock("pull", reference, "--store", str(tmp_path / "fresh"), cwd=tmp_path, env=env)
    assert pulled.returncode == 0, pulled.stderr
    return built, pulled.stdout.strip()


# -- Basic: htpasswd ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import bcrypt

    root = tmp_path_factory.mktemp("basic-registry")
    (root / "htpasswd").write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()}\n")
    auth = f"auth:\n  htpasswd:\n    realm: envlock-test\n    path: {root / 'htpasswd'}\n"
    proc, address = start_registry(root, auth)
    try:
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_basic_auth_push_and_pull_with_docker_config_credentials(
    tmp_path: Path, small_image: tuple[Path, Path], basic_registry: str
) -> None:
    env = docker_config(tmp_path / "docker", basic_registry, USER, PASSWORD)
    built, pulled = push_then_pull(tmp_path, small_image, basic_registry, env)
    assert pulled.startswith("sha256:")
    assert built == pulled


def pull_missing(tmp_path: Path, registry: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Pull an image that is not there: auth comes first."""
    ref = f"{registry}/envlock/app@sha256:{'0' * 64}"
    return run_envlock("pull", ref, "--store", str(tmp_path / "s"), cwd=tmp_path, env=env)


def test_basic_auth_without_credentials_says_to_log_in(tmp_path: Path, basic_registry: str) -> None:
    proc = pull_missing(tmp_path, basic_registry, {"DOCKER_CONFIG": str(tmp_path / "empty")})
    assert proc.returncode == 3
    assert f"error: {basic_registry} needs credentials" in proc.stderr
    assert f"hint: docker login {basic_registry}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_basic_auth_with_a_wrong_password_is_refused(tmp_path: Path, basic_registry: str) -> None:
    proc = pull_missing(
        tmp_path, basic_registry, docker_config(tmp_path / "docker", basic_registry, USER, "wrong")
    )
    assert proc.returncode == 3
    assert f"error: {basic_registry} refused the credentials" in proc.stderr
    assert "wrong" not in proc.stderr and PASSWORD not in proc.stderr


# -- Bearer: a token server ---------------------------------------------------------------------


@dataclass
class TokenServer:
    url: str
    requests: list[dict[str, str]] = field(default_factory=list)


def _signing_material(root: Path) -> tuple[object, bytes]:
    """An RSA key and a self-signed certificate, the registry's root bundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (root / "root.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert.public_bytes(serialization.Encoding.DER)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TokenServer]]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    root = tmp_path_factory.mktemp("token-registry")
    key, cert_der = _signing_material(root)
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
            server.requests.append({**query, "authorization": self.headers.get("Authorization", "")})
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            access = []
            if query.get("scope"):
                kind, name, actions = query["scope"].split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            now = int(time.time())
            header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(cert_der).decode()]}
            claims = {
                "iss": ISSUER,
                "sub": USER,
                "aud": query.get("service", ""),
                "exp": now + 300,
                "nbf": now - 60,
                "iat": now,
                "jti": uuid.uuid4().hex,
                "access": access,
            }
            signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
            signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[attr-defined]
            body = json.dumps({"token": f"{signing_input}.{_b64url(signature)}", "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server = TokenServer(f"http://127.0.0.1:{httpd.server_address[1]}/token")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    auth = (
        f"auth:\n  token:\n    realm: {server.url}\n    service: {SERVICE}\n"
        f"    issuer: {ISSUER}\n    rootcertbundle: {root / 'root.pem'}\n"
    )
    proc, address = start_registry(root, auth)
    try:
        yield address, server
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        httpd.shutdown()


def test_token_auth_push_and_pull_with_docker_config_credentials(
    tmp_path: Path, small_image: tuple[Path, Path], token_registry: tuple[str, TokenServer]
) -> None:
    address, server = token_registry
    env = docker_config(tmp_path / "docker", address, USER, PASSWORD)
    built, pulled = push_then_pull(tmp_path, small_image, address, env)
    assert pulled.startswith("sha256:") and built == pulled
    scopes = {r.get("scope") for r in server.requests}
    assert "repository:envlock/app:pull,push" in scopes
    assert "repository:envlock/app:pull" in scopes
    assert all(r["service"] == SERVICE for r in server.requests)


def test_token_auth_with_a_wrong_password_is_refused_cleanly(
    tmp_path: Path, token_registry: tuple[str, TokenServer]
) -> None:
    address, _ = token_registry
    proc = pull_missing(tmp_path, address, docker_config(tmp_path / "docker", address, USER, "wrong"))
    assert proc.returncode == 3, proc.stderr
    assert "error:" in proc.stderr and address in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_base_behind_token_auth_builds_with_byte_code(
    tmp_path: Path,
    base_layout: Path,
    token_registry: tuple[str, TokenServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The base itself comes from the token-protected registry (gzip layers, as pushed), and
    the byte-code compiler runs from those layers."""
    from envlock.image import base as basemod
    from envlock.image import registry
    from envlock.image.build import load_image
    from envlock.store import Store

    address, _ = token_registry
    env = docker_config(tmp_path / "docker", address, USER, PASSWORD)
    monkeypatch.setenv("DOCKER_CONFIG", env["DOCKER_CONFIG"])
    seed = Store(tmp_path / "seed")
    base = basemod.resolve(seed, f"oci:{base_layout}", "3.11")
    pushed_base = registry.push(seed, load_image(seed, base.manifest), f"{address}/envlock/base")

    spec = locked_spec(tmp_path, "remote", f'base = "{pushed_base}"\nbytecode = true\n', env)
    built = run_envlock("build", str(spec), "--store", str(tmp_path / "store"), cwd=tmp_path, env=env)

    assert built.returncode == 0, built.stderr
    assert "Compiling 1 Python file to byte code" in built.stderr
    store = Store(tmp_path / "store")
    entry = next(e for e in store.list_envs() if e.image_id == built.stdout.strip().splitlines()[-1])
    image = load_image(store, entry.manifest)
    labels = image.config["config"]["Labels"]
    assert labels["org.opencontainers.image.base.name"] == pushed_base
    assert labels["org.opencontainers.image.base.digest"] == pushed_base.split("@")[1]
    assert image.layers[0].media_type.endswith("gzip")  # the base's layers, as the registry has them
