"""Docker engine adapter (docker SDK): load an image, run a command in it, build a Dockerfile.

The engine is found the way the docker CLI finds it (``DOCKER_HOST``, else the
default socket).  No engine is ``ServiceUnavailable`` (exit 3) with a hint.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from envlock.errors import CheckFailed, ServiceUnavailable, UsageError
from envlock.image.model import Image
from envlock.store import Store

Say = Callable[[str], None]
LOAD_TIMEOUT = 600  # seconds the engine may stay silent while it loads (docker-py's default for envlock)
ENGINE_SCHEMES = ("unix", "tcp", "ssh", "http", "https", "npipe", "http+unix")  # docker-py's parse_host


def client() -> Any:
    """A docker-py client of the engine ``DOCKER_HOST`` names (default socket otherwise).

    Raises:
        UsageError: ``DOCKER_HOST`` is not an engine address (exit 2).
        ServiceUnavailable: docker-py is missing, or no engine answers there (exit 3).
    """
    host = os.environ.get("DOCKER_HOST", "")
    if "://" in host and host.split("://", 1)[0] not in ENGINE_SCHEMES:  # HOST:PORT alone is tcp
        raise UsageError(
            f"DOCKER_HOST={host} is not a Docker engine address",
            "use unix:///PATH/docker.sock, tcp://HOST:PORT or ssh://USER@HOST, or unset it",
        )
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise ServiceUnavailable("the docker Python SDK is not installed", "pip install docker") from None
    try:
        c = docker.from_env(timeout=600)
        c.ping()
        return c
    except DockerException as exc:
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise ServiceUnavailable(
            f"no Docker engine answers at {where}: {str(exc).splitlines()[0][:160]}",
            "start dockerd (e.g. `sudo systemctl start docker`) or set DOCKER_HOST",
        ) from None


def has_image(c: Any, image_id: str) -> bool:
    """Whether the engine has ``image_id``; ``ServiceUnavailable`` when it stops answering."""
    from docker.errors import DockerException, ImageNotFound
    from requests.exceptions import RequestException

    try:
        c.images.get(image_id)
        return True
    except ImageNotFound:
        return False
    except (DockerException, RequestException) as exc:  # gone since the ping
        raise load_failure(image_id, _reason(exc)) from None


def load(store: Store, image: Image, tags: Sequence[str], say: Say | None = None) -> str:
    """Load into the engine (skipped if it already has the ID); returns the engine's image ID.

    The docker-archive is generated while the engine reads it (no archive on disk).
    Raises ``ServiceUnavailable`` (exit 3) when the engine fails or refuses the
    archive (disk full included), ``CheckFailed`` when it reports another image ID.
    """
    c = client()
    if not has_image(c, image.image_id):
        if say:
            say(f"Loading {image.image_id[:19]} into the Docker engine")
        with store.using():
            store.check_blobs([la.digest for la in image.layers])
            _stream_load(c, store, image, list(tags))
    engine_image = _get_loaded(c, image.image_id)
    _tag(engine_image, image.image_id, tags)
    engine_id: str = engine_image.id
    if engine_id != image.image_id:
        raise CheckFailed(f"the engine reports image ID {engine_id}, envlock built {image.image_id}")
    return engine_id


def _stream_load(c: Any, store: Store, image: Image, tags: list[str]) -> None:
    """Hand the image's docker-archive to the engine as it is generated (no archive on disk).

    On a plain socket (``unix://``, the default, or ``tcp://`` without TLS) the request is
    sent here: ``Content-Length`` is known from the pieces, headers go out as they are and
    each layer blob with ``sendfile(2)``, so 7 GB of layers never pass through Python (that
    copying took a core beside dockerd's own).  Elsewhere (TLS, ``ssh://``) docker-py sends
    the same bytes.
    """
    from envlock.image.oci import docker_archive_parts

    target = _plain_socket()
    if target is None:
        _docker_py_load(c, store, image, tags)
        return
    parts = docker_archive_parts(store, image, tags)
    reply = _post_archive(target, str(c.api.api_version), parts, image.image_id)
    for line in reply.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("error"):
            raise load_failure(image.image_id, str(message["error"]))


def _plain_socket() -> tuple[str, str, int] | None:
    """``("unix", PATH, 0)`` or ``("tcp", HOST, PORT)`` for the engine ``DOCKER_HOST`` names,
    when it is reached without TLS; ``None`` otherwise (docker-py then talks to it)."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    if host.startswith("unix://"):
        return ("unix", host[len("unix://") :], 0)
    tls = os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH")  # docker-py's rule
    if host.startswith("tcp://") and not tls:
        parsed = urllib.parse.urlsplit(host)
        if parsed.hostname and parsed.port:
            return ("tcp", parsed.hostname, parsed.port)
    return None


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the Docker engine API's usual transport)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _post_archive(target: tuple[str, str, int], version: str, parts: list[Any], image_id: str) -> bytes:
    """``POST /images/load`` (Docker Engine API) with the archive ``parts``; the reply body.

    Raises:
        ServiceUnavailable: the engine cannot be reached, hangs up, or answers an error status.
    """
    from envlock.image.oci import archive_size

    kind, host, port = target
    conn: http.client.HTTPConnection = (
        _UnixConnection(host, LOAD_TIMEOUT)
        if kind == "unix"
        else http.client.HTTPConnection(host, port, timeout=LOAD_TIMEOUT)
    )
    try:
        conn.putrequest("POST", f"/v{version}/images/load?quiet=1", skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/x-tar")
        conn.putheader("Content-Length", str(archive_size(parts)))
        conn.endheaders()
        sock = conn.sock
        try:
            for part in parts:
                if isinstance(part, bytes):
                    sock.sendall(part)
                    continue
                path, size = part
                blob = _open_blob(path)
                with blob:
                    sent = sock.sendfile(blob, 0, size)
                if sent != size:  # the blob shrank since it was checked: the engine would wait forever
                    raise CheckFailed(
                        f"blob {path.name[:12]} in the store shrank to {sent} of {size} bytes as it was sent",
                        "run `envlock store fsck`; building the image again restores it",
                    )
        except OSError as exc:  # the engine hung up: its reply, if any, says why
            try:
                resp = conn.getresponse()
                raise load_failure(image_id, resp.read(4096).decode("utf-8", "replace") or str(exc)) from None
            except (OSError, http.client.HTTPException):
                raise load_failure(image_id, f"the engine hung up ({type(exc).__name__}: {exc})") from None
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise load_failure(image_id, f"{resp.status} {body.decode('utf-8', 'replace')}")
        return body
    except (OSError, http.client.HTTPException) as exc:
        raise load_failure(image_id, f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


def _open_blob(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise CheckFailed(
            f"cannot read blob {path.name[:12]} in the store: {exc.strerror}",
            "run `envlock store fsck`; building the image again restores it",
        ) from None


def _docker_py_load(c: Any, store: Store, image: Image, tags: list[str]) -> None:
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    from envlock.image.oci import docker_archive_into
    from envlock.streams import produce

    chunks = produce(lambda sink: docker_archive_into(store, image, sink, tags))
    try:
        c.images.load(chunks)
    except (DockerException, RequestException) as exc:
        raise load_failure(image.image_id, _reason(exc)) from None
    finally:
        chunks.close()


def _reason(exc: Exception) -> str:
    """What docker-py says went wrong: the engine's own message when it sent one."""
    return str(getattr(exc, "explanation", None) or exc)


def load_failure(image_id: str, reason: str) -> ServiceUnavailable | CheckFailed:
    """The error for an engine that failed to load ``image_id``, with what to do about it:
    ``CheckFailed`` (exit 1) when the engine found a layer that is not its ``diff_id`` (the
    store's copy changed after it was checked), else ``ServiceUnavailable`` (exit 3)."""
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    reason = " ".join(reason.split())[-300:]
    if "invalid diffid" in reason.lower():
        return CheckFailed(
            f"the Docker engine at {where} refused a layer of {image_id[:19]}: {reason}",
            "a layer in the store is not what the image says: run `envlock store fsck`; building "
            "the image again restores it",
        )
    if "no space left on device" in reason.lower():
        return ServiceUnavailable(
            f"the Docker engine at {where} ran out of disk space loading {image_id[:19]}: {reason}",
            "free space in the engine's data root (`docker system df`, `docker image prune`) and run again",
        )
    return ServiceUnavailable(
        f"the Docker engine at {where} failed to load {image_id[:19]}: {reason}",
        "check the engine's log (e.g. `journalctl -u docker`) and run again",
    )


def _get_loaded(c: Any, image_id: str) -> Any:
    from docker.errors import DockerException, ImageNotFound
    from requests.exceptions import RequestException

    try:
        return c.images.get(image_id)
    except ImageNotFound:
        raise load_failure(image_id, "the engine answered the load but does not have the image") from None
    except (DockerException, RequestException) as exc:  # an engine gone away is a RequestException
        raise load_failure(image_id, _reason(exc)) from None


def _tag(engine_image: Any, image_id: str, tags: Sequence[str]) -> None:
    """Tag the loaded image; an engine that refuses a tag or goes away is ``ServiceUnavailable``
    (exit 3), not an internal error."""
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    for tag in tags:
        repo, _, name = tag.rpartition(":")
        try:
            engine_image.tag(repo, name)
        except (DockerException, RequestException) as exc:
            raise load_failure(image_id, f"tagging it {tag} failed: {_reason(exc)}") from None


def gpu_runtime(c: Any) -> bool:
    info = c.info()
    return "nvidia" in (info.get("Runtimes") or {}) or shutil.which("nvidia-container-runtime") is not None


def run(
    image_id: str,
    command: Sequence[str],
    *,
    mount: Path,
    workdir: str,
    cuda: bool,
    say: Say | None = None,
    env: dict[str, str] | None = None,
    output: Callable[[bytes], None] | None = None,
) -> int:
    """Run ``command`` in the image with ``mount`` at ``workdir``; stream output; return the exit code."""
    import docker
    from docker.errors import APIError

    c = client()
    kwargs: dict[str, Any] = {}
    if cuda:
        if gpu_runtime(c):
            kwargs["device_requests"] = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])]
        elif say:
            say("warning: the environment uses CUDA but the engine has no NVIDIA runtime; no GPUs")
    try:
        container = c.containers.create(
            image_id,
            list(command),
            working_dir=workdir,
            volumes={str(mount.absolute()): {"bind": workdir, "mode": "rw"}},
            environment=env or {},
            **kwargs,
        )
    except APIError as exc:
        raise CheckFailed(f"docker could not create the container: {exc.explanation or exc}") from None
    try:
        container.start()
    except APIError as exc:
        container.remove(force=True)
        explanation = str(exc.explanation or exc)
        raise CheckFailed(
            f"docker could not start {' '.join(command)!r}: {explanation[-300:]}",
            "check the command exists in the image",
        ) from None
    try:
        for chunk in container.logs(stream=True, follow=True):
            if output is not None:
                output(chunk)
        result = container.wait()
        return int(result.get("StatusCode", 1))
    finally:
        container.remove(force=True)


def build_dockerfile(context: Path, tag: str, say: Say | None = None) -> str:
    """``docker build`` of a rendered context; returns the image ID the engine made."""
    from docker.errors import BuildError

    c = client()
    try:
        image, logs = c.images.build(path=str(context), tag=tag, rm=True, forcerm=True, pull=False)
    except BuildError as exc:
        lines = [str(x.get("stream", x.get("error", ""))).strip() for x in exc.build_log]
        raise CheckFailed(f"docker build failed: {' '.join(line for line in lines if line)[-400:]}") from None
    if say:
        for entry in logs:
            text = str(entry.get("stream", "")).strip()
            if text.startswith("Step "):
                say(text)
    image_id: str = image.id
    return image_id
