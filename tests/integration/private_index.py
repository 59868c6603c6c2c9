"""A real private index for the credential tests: pypiserver behind HTTP basic auth
(an htpasswd file), on 127.0.0.1 and a free port, optionally under a secret path prefix
(``/TOKEN/simple``, as some hosted indexes give out).

pypiserver runs in its own process through its WSGI app (``pypiserver.app``), served by
the standard library's threading WSGI server.  The app is mounted under the prefix by
moving it from PATH_INFO to SCRIPT_NAME (PEP 3333), so pypiserver's own links carry it.

passlib 1.7.4 (which pypiserver uses for htpasswd) probes bcrypt with a 73-byte secret at
import and bcrypt 5 refuses that (passlib is unmaintained); the server process hides the
bcrypt module from passlib, and the htpasswd file uses sha256_crypt, which passlib handles
itself.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support import free_port, wait_for

_SERVER = """
import sys
sys.modules["bcrypt"] = None  # see private_index.py
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
import pypiserver

prefix, port, htpasswd, root = sys.argv[1:5]
inner = pypiserver.app(roots=[root], password_file=htpasswd, authenticate=["download", "list", "update"])

def app(environ, start):
    path = environ.get("PATH_INFO", "")
    if not path.startswith(prefix + "/"):
        start("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\\n"]
    environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
    environ["PATH_INFO"] = path[len(prefix):]
    return inner(environ, start)

class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

make_server("127.0.0.1", int(port), app, server_class=Server, handler_class=Quiet).serve_forever()
"""


@dataclass(frozen=True)
class PrivateIndex:
    base: str  # http://127.0.0.1:PORT[/PREFIX], no credentials
    user: str
    password: str

    @property
    def simple(self) -> str:
        return self.base + "/simple"

    def url_with(self, userinfo: str, path: str = "") -> str:
        """The /simple URL with ``userinfo`` and ``path`` (replacing the prefix) put in."""
        scheme, rest = self.base.split("://", 1)
        host = rest.split("/", 1)[0]
        return f"{scheme}://{userinfo}@{host}{path}/simple"


def write_htpasswd(path: Path, user: str, password: str) -> None:
    from passlib.hash import sha256_crypt

    path.write_text(f"{user}:{sha256_crypt.hash(password)}\n")


@contextmanager
def serve_private(
    root: Path, wheels: Path, user: str, password: str, prefix: str = ""
) -> Iterator[PrivateIndex]:
    """pypiserver serving the wheels in ``wheels`` to ``user``:``password`` only."""
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = root / "htpasswd.txt"
    write_htpasswd(htpasswd, user, password)
    port = free_port()
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER, prefix, str(port), str(htpasswd), str(wheels)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}{prefix}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"pypiserver exited: {(root / 'server.log').read_text()}")
        try:
            urllib.request.urlopen(base + "/simple/", timeout=2).close()
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # up, and asking for credentials
        except OSError:
            return False
        return True

    try:
        wait_for(up, 30, "pypiserver")
        yield PrivateIndex(base, user, password)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
