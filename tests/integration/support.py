"""Helpers for integration tests: tiny wheels, a PEP 503 index on 127.0.0.1, the real CLI."""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    requires: tuple[str, ...] = (),
    tag: str = "py3-none-any",
    entry_points: dict[str, str] | None = None,
    payload: int = 0,
    modules: dict[str, str] | None = None,
    files: dict[str, str] | None = None,
) -> Path:
    """Write a minimal, valid, byte-reproducible wheel and return its path.

    ``entry_points`` maps console script names to ``module:function``; ``payload``
    adds that many incompressible (but fixed) bytes, for tests that need a slow build;
    ``modules`` adds source files by their path in the package (``"sub/mod.py"``);
    ``files`` adds files by their path in the wheel (``"backports/__init__.py"``).
    """
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    purelib = "true" if tag.endswith("-none-any") else "false"
    members = {
        f"{dist}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": metadata,
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: envlock-tests\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n",
    }
    if entry_points:
        members[f"{dist}/cli.py"] = "def main():\n    print('hello from " + name + "')\n"
        lines = "".join(f"{k} = {v}\n" for k, v in sorted(entry_points.items()))
        members[f"{info}/entry_points.txt"] = "[console_scripts]\n" + lines
    for relative, text in (modules or {}).items():
        members[f"{dist}/{relative}"] = text
    members.update(files or {})
    blobs: dict[str, bytes] = {}
    if payload:
        blobs[f"{dist}/payload.bin"] = _noise(payload, name)
    record = "".join(
        f"{path},{_record_hash(text.encode())},{len(text.encode())}\n" for path, text in members.items()
    )
    record += "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in blobs.items())
    members[f"{info}/RECORD"] = record + f"{info}/RECORD,,\n"
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, text in members.items():
            zi = zipfile.ZipInfo(arcname, _EPOCH)
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, text)
        for arcname, data in blobs.items():
            zi = zipfile.ZipInfo(arcname, _EPOCH)
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data, compress_type=zipfile.ZIP_STORED)
    return path


def _noise(size: int, seed: str) -> bytes:
    """Deterministic incompressible bytes."""
    import random

    return random.Random(seed).randbytes(size)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# The fixture world: alpha 2.0 needs beta; gamma has a native wheel per platform.
PACKAGES = [
    ("envlock-fx-alpha", "1.0", (), "py3-none-any"),
    ("envlock-fx-alpha", "2.0", ("envlock-fx-beta>=1.0",), "py3-none-any"),
    ("envlock-fx-beta", "1.0", (), "py3-none-any"),
    ("envlock-fx-beta", "1.1", (), "py3-none-any"),
    ("envlock-fx-gamma", "1.0", (), "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"),
    ("envlock-fx-gamma", "1.0", (), "cp311-cp311-macosx_11_0_arm64"),
    ("envlock-fx-gamma", "1.0", (), "py3-none-any"),
]


def write_simple_index(root: Path, wheels: Path, yanked: dict[str, str] | None = None) -> None:
    """A PEP 503 index: /simple/NAME/ pages linking /files/FILE#sha256=...; ``yanked`` maps
    file names to the reason they are yanked (PEP 592 ``data-yanked``)."""
    files = root / "files"
    files.mkdir(parents=True)
    by_project: dict[str, list[Path]] = {}
    for wheel in sorted(wheels.glob("*.whl")):
        (files / wheel.name).write_bytes(wheel.read_bytes())
        project = wheel.name.split("-")[0].replace("_", "-").lower()
        by_project.setdefault(project, []).append(wheel)
    simple = root / "simple"
    simple.mkdir()
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(by_project))
    (simple / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    for project, wheels_ in by_project.items():
        (simple / project).mkdir()
        anchors = "".join(
            f'<a href="../../files/{html.escape(w.name)}#sha256={sha256_file(w)}"'
            + (f' data-yanked="{html.escape((yanked or {})[w.name])}"' if w.name in (yanked or {}) else "")
            + f">{html.escape(w.name)}</a>\n"
            for w in wheels_
        )
        (simple / project / "index.html").write_text(f"<html><body>\n{anchors}</body></html>\n")


@dataclass
class Index:
    url: str  # .../simple
    root: Path
    user: str | None
    password: str | None

    def url_with(self, userinfo: str) -> str:
        return self.url.replace("http://", f"http://{userinfo}@")


class _Handler(SimpleHTTPRequestHandler):
    auth: str | None = None

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        if self.auth and self.headers.get("Authorization") != self.auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="envlock-tests"')
            self.end_headers()
            return
        super().do_GET()


def serve(root: Path, auth: tuple[str, str] | None) -> Iterator[Index]:
    handler = type("Handler", (_Handler,), {})
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        handler.auth = f"Basic {token}"
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield Index(f"http://127.0.0.1:{port}/simple", root, *(auth or (None, None)))
    finally:
        server.shutdown()
        server.server_close()


def run_envlock(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "envlock", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
    )


def locked_project(
    root: Path, wheels: Path, packages: str, image: str, name: str = "app", env: dict[str, str] | None = None
) -> Path:
    """A spec of ``packages`` (TOML list items) from the local wheelhouse ``wheels``, with
    ``image`` as the body of its [image] table, locked; returns the spec path."""
    root.mkdir(parents=True, exist_ok=True)
    body = f'python = "3.11"\n[pip]\npackages = [{packages}]\nfind-links = ["{wheels}"]\nno-index = true\n'
    spec = write_spec(root, name, body + "[image]\n" + image)
    proc = run_envlock("lock", str(spec), cwd=root, env=env)
    assert proc.returncode == 0, proc.stderr
    return spec


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def hostile_env(tmp: Path) -> dict[str, str]:
    """Another machine, as far as one process can tell: time zone, locale, temp dir, hash
    seed and a clock years ahead (libfaketime)."""
    (tmp / "tmp2").mkdir(parents=True, exist_ok=True)
    return {
        "TZ": "Pacific/Chatham",
        "LC_ALL": "C",
        "LANG": "C",
        "TMPDIR": str(tmp / "tmp2"),
        "PYTHONHASHSEED": "12345",
        "LD_PRELOAD": FAKETIME_LIB,
        "FAKETIME": "@2031-07-04 12:00:00",
    }


def hostile_build(spec: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    """``envlock build`` under :func:`hostile_env` and umask 077, from another directory, into
    another store (with a space in its path)."""
    other = tmp / "elsewhere" / "deep dir"
    other.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [
            "sh",
            "-c",
            'umask 077 && exec "$0" -m envlock build "$1" --store "$2"',
            sys.executable,
            str(spec),
            str(other / "store b"),
        ],
        cwd=other,
        env={**os.environ, **hostile_env(tmp)},
        capture_output=True,
        text=True,
    )


def write_spec(directory: Path, name: str, body: str) -> Path:
    specs = directory / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    path = specs / f"{name}.toml"
    path.write_text(body)
    return path


# -- real services: dockerd on a private socket, docker-registry on 127.0.0.1 ----------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {seconds:.0f}s")


@dataclass
class Dockerd:
    host: str  # DOCKER_HOST value
    root: Path


def start_dockerd(root: Path, tcp: bool = False) -> tuple[subprocess.Popen[bytes], Dockerd]:
    """dockerd with its own socket, data root and exec root; no bridge, no iptables.

    With ``tcp``, it listens on a plain ``tcp://127.0.0.1:PORT`` instead, and that is its host."""
    sock = root / "docker.sock"
    log = (root / "dockerd.log").open("wb")
    host = f"tcp://127.0.0.1:{free_port()}" if tcp else f"unix://{sock}"
    proc = subprocess.Popen(
        [
            "dockerd",
            f"--host={host}",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'docker.pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-forward=false",
            "--ip-masq=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"dockerd exited: {(root / 'dockerd.log').read_text()[-2000:]}")
        return (
            subprocess.run(["docker", "--host", host, "version"], capture_output=True, check=False).returncode
            == 0
        )

    wait_for(up, 60, "dockerd")
    return proc, Dockerd(host, root)


def start_registry(root: Path, auth: str = "", level: str = "warn") -> tuple[subprocess.Popen[bytes], str]:
    """docker-registry on 127.0.0.1; ``auth`` is the YAML of its ``auth:`` section, if any.

    With ``level="info"`` its log (``root/registry.log``) has one access line per request."""
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nlog:\n  level: {level}\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n" + auth
    )
    log = (root / "registry.log").open("wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"

    def up() -> bool:
        import urllib.error
        import urllib.request

        if proc.poll() is not None:
            raise RuntimeError(f"registry exited: {(root / 'registry.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=2):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for credentials
        except OSError:
            return False

    wait_for(up, 30, "docker-registry")
    return proc, address


class OwnRegistry:
    """A docker-registry of a test's own, on 127.0.0.1: its access log (``level="info"``) and
    its storage are the test's to read and to tamper with."""

    ACCESS = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3})')

    def __init__(self, root: Path, level: str = "info") -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.proc, self.address = start_registry(root, level=level)

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, uri, status) of every request so far, in order."""
        text = (self.root / "registry.log").read_text(errors="replace")
        return [(m, u, int(s)) for m, u, s in self.ACCESS.findall(text)]

    def blob_file(self, digest: str) -> Path:
        """Where the registry's filesystem storage keeps blob ``digest``."""
        hexd = digest.split(":")[1]
        return self.root / "data" / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def docker(host: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "--host", host, *args], capture_output=True, text=True, check=False)


def plain_uv_pins(tmp: Path, requirements: list[str], *options: str) -> dict[str, str]:
    """What `uv pip compile` gives on its own for linux-64 / 3.11: name -> version."""
    from envlock.resolve.uv import binary

    req = tmp / "plain-req.in"
    req.write_text("".join(r + "\n" for r in requirements))
    cmd = [binary(), "pip", "compile", str(req), "--python-version", "3.11", "--python-platform"]
    cmd += ["x86_64-manylinux_2_28", *options, "--no-header", "--no-annotate", "--quiet", "--no-config"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return dict(line.split("==") for line in out.split() if "==" in line)
