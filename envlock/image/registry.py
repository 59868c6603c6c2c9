"""The OCI distribution API, by digest: push an image from the store, pull one into it.

Auth: ``~/.docker/config.json`` ``auths`` (basic credentials), used directly for
Basic challenges and to obtain a token for Bearer challenges.  Plain HTTP is used
for localhost/127.0.0.1 registries, HTTPS for everything else.  Every pulled
blob and manifest is verified against its digest before it enters the store.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.digest import is_digest
from envlock.errors import CheckFailed, ServiceUnavailable, UsageError
from envlock.image.model import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    INDEX,
    MANIFEST,
    Image,
    digest_of,
)
from envlock.store import Store
from envlock.urls import redact_text

ACCEPT = ", ".join([MANIFEST, INDEX, DOCKER_MANIFEST, DOCKER_LIST])
Say = Callable[[str], None]
UPLOAD_PIECE = 1 << 20  # bytes per send of an upload body


@dataclass(frozen=True)
class Reference:
    registry: str
    repository: str
    digest: str | None = None
    tag: str | None = None

    @property
    def scheme(self) -> str:
        host = self.registry.rsplit(":", 1)[0] if not self.registry.endswith("]") else self.registry
        host = host.strip("[]")
        return "http" if host in ("localhost", "127.0.0.1", "::1") else "https"

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.registry}/v2/{self.repository}/{path}"

    def __str__(self) -> str:
        tail = f"@{self.digest}" if self.digest else (f":{self.tag}" if self.tag else "")
        return f"{self.registry}/{self.repository}{tail}"


def parse(ref: str) -> Reference:
    name, _, digest = ref.partition("@")
    tag = None
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    first = name.split("/", 1)[0]
    if "/" in name and ("." in first or ":" in first or first == "localhost"):
        registry, repository = name.split("/", 1)
        if registry in ("docker.io", "index.docker.io"):
            registry = "registry-1.docker.io"
    else:
        registry, repository = "registry-1.docker.io", name if "/" in name else f"library/{name}"
    if digest and not is_digest(digest):
        raise UsageError(f"invalid digest in {ref!r}", "write REF@sha256:<64 hex>")
    if not re.fullmatch(r"[a-z0-9]+(?:[._/-][a-z0-9]+)*", repository):
        raise UsageError(
            f"invalid repository name in {ref!r}",
            "use lowercase letters, digits, '.', '_', '-', '/'",
        )
    return Reference(registry, repository, digest or None, tag)


def _credentials(registry: str) -> str | None:
    config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        data = json.loads(config.read_text("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    for key in (registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"):
        entry = auths.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str) and entry["auth"]:
            return str(entry["auth"])
    return None


class Client:
    """The distribution API of one repository.  ``timeout`` (seconds) bounds every socket
    operation (connecting, each read), not a whole transfer."""

    def __init__(self, ref: Reference, timeout: float = 300) -> None:
        self.ref = ref
        self.timeout = timeout
        self._auth: str | None = None

    def _challenge(self, header: str, scope: str) -> None:
        creds = _credentials(self.ref.registry)
        if header.lower().startswith("basic"):
            if not creds:
                raise ServiceUnavailable(
                    f"{self.ref.registry} needs credentials", f"docker login {self.ref.registry}"
                )
            self._auth = f"Basic {creds}"
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', header))
        realm = params.get("realm", "")
        if not header.lower().startswith("bearer") or not realm.startswith(("https://", "http://")):
            raise ServiceUnavailable(
                f"{self.ref.registry} sent an authentication challenge envlock cannot answer: "
                f"{redact_text(header)[:120]!r}",
                "a registry asks for Basic auth or a Bearer token with an http(s) realm "
                "(distribution spec, token authentication)",
            )
        query = {"service": params.get("service", ""), "scope": scope}
        url = realm + "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v})
        req = urllib.request.Request(url)
        if creds:
            req.add_header("Authorization", f"Basic {creds}")
        login = f"docker login {self.ref.registry}"
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                token = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                what = "refused the credentials" if creds else "needs credentials"
                where = f"token server {redact_text(realm)}"
                raise ServiceUnavailable(f"{self.ref.registry} {what} ({where})", login) from None
            raise ServiceUnavailable(
                f"the token server of {self.ref.registry} answered {exc.code} ({redact_text(realm)})"
            ) from None
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            OSError,
            ValueError,
            RecursionError,
        ) as exc:
            raise ServiceUnavailable(
                f"cannot get a token for {self.ref.registry} from {redact_text(realm)}: "
                f"{redact_text(str(getattr(exc, 'reason', exc)))[:200]}"
            ) from None
        value = token.get("token") or token.get("access_token") if isinstance(token, dict) else None
        if not isinstance(value, str):
            raise ServiceUnavailable(f"the token server of {self.ref.registry} sent no token")
        self._auth = f"Bearer {value}"

    def request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | Any | None = None,
        headers: dict[str, str] | None = None,
        push: bool = False,
        ok: tuple[int, ...] = (200, 201, 202, 204),
    ) -> Any:
        scope = f"repository:{self.ref.repository}:{'pull,push' if push else 'pull'}"
        for attempt in range(2):
            req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
            if self._auth:  # never sent on to where a redirect points (e.g. blob storage)
                req.add_unredirected_header("Authorization", self._auth)
            try:
                resp = urllib.request.urlopen(req, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 0 and "WWW-Authenticate" in exc.headers:
                    self._challenge(exc.headers["WWW-Authenticate"], scope)
                    continue
                if exc.code in ok:
                    return exc
                if exc.code in (401, 403):
                    what = "refused the credentials" if exc.code == 401 else "denied access"
                    raise ServiceUnavailable(
                        f"{self.ref.registry} {what} for {self.ref.repository} ({method} {exc.code})",
                        f"docker login {self.ref.registry}",
                    ) from None
                if exc.code == 404:
                    raise  # the callers say what was missing
                raise ServiceUnavailable(
                    f"{self.ref.registry} answered {exc.code} {str(exc.reason)[:120]} to {method} "
                    f"{redact_text(url)}",
                    "check the registry's logs; retry when it is healthy",
                ) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                raise ServiceUnavailable(
                    f"cannot reach registry {self.ref.registry} ({method} {redact_text(url)}): "
                    f"{redact_text(str(getattr(exc, 'reason', exc)))[:200]}",
                    "start the registry or check the reference",
                ) from None
            return resp
        raise ServiceUnavailable(
            f"{self.ref.registry} refused the credentials", f"docker login {self.ref.registry}"
        )

    # -- pull --------------------------------------------------------------------------
    def manifest(self, reference: str) -> tuple[bytes, str]:
        try:
            resp = self.request("GET", self.ref.url(f"manifests/{reference}"), headers={"Accept": ACCEPT})
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise CheckFailed(f"{self.ref} is not in the registry (404)") from None
            raise
        url = self.ref.url(f"manifests/{reference}")
        with resp:
            return _read(resp, url, MAX_MANIFEST), resp.headers.get("Content-Type", "")

    def blob_into(self, store: Store, digest: str) -> None:
        """Stream the blob ``digest`` into the store, verified, unless an intact copy is there
        (a damaged one is replaced).

        Raises:
            CheckFailed: the registry has no such blob (404) or sent other bytes.
            ServiceUnavailable: the connection broke or the body was cut short.
        """
        if store.blob_intact(digest):
            return
        url = self.ref.url(f"blobs/{digest}")
        try:
            resp = self.request("GET", url)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise CheckFailed(
                    f"{self.ref.registry} has no blob {digest} in {self.ref.repository} "
                    f"(404 for {redact_text(url)})",
                    "the image was pushed incompletely or garbage-collected; push it again",
                ) from None
            raise
        with resp:
            try:
                store.put_blob_stream(resp, expected=digest)
            except CheckFailed as exc:
                _check_complete(resp, url)  # a body cut short is the connection, not forgery
                raise CheckFailed(f"{redact_text(url)}: {exc.message}", exc.hint) from None
            except (http.client.HTTPException, OSError) as exc:
                raise ServiceUnavailable(
                    f"{redact_text(url)}: the reply broke off ({type(exc).__name__}: {str(exc)[:120]})",
                    "retry; if it persists, check the registry",
                ) from None

    # -- push --------------------------------------------------------------------------
    def has_blob(self, digest: str) -> bool:
        try:
            self.request("HEAD", self.ref.url(f"blobs/{digest}"), push=True).close()
            return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise

    def upload_data(self, digest: str, data: bytes) -> None:
        """Upload a small blob held in memory (an artifact's config), unless it is there."""
        import io

        if not self.has_blob(digest):
            self._upload(digest, io.BytesIO(data), len(data))

    def upload(self, digest: str, path: Path) -> None:
        """Upload the file at ``path`` as blob ``digest`` (monolithic ``PUT``), unless it is there.

        The body goes out in 1 MiB pieces: given a file, ``http.client`` sends 8 KiB at a
        time, which cost docker-registry 2.8.2 about 1.4 extra CPU-seconds per GiB received
        (bench/README.md, "Push").
        """
        if self.has_blob(digest):
            return
        with path.open("rb") as fh:
            self._upload(digest, iter(lambda: fh.read(UPLOAD_PIECE), b""), path.stat().st_size)

    def _upload(self, digest: str, body: Any, size: int) -> None:
        url = self.ref.url("blobs/uploads/")
        resp = self.request("POST", url, data=b"", push=True)
        location = resp.headers.get("Location")
        resp.close()
        if not location or any(c in location for c in "\r\n "):
            raise ServiceUnavailable(
                f"{self.ref.registry} answered POST {redact_text(url)} without a usable Location header",
                "the distribution API gives the upload URL in Location; check the registry",
            )
        if location.startswith("/"):
            location = f"{self.ref.scheme}://{self.ref.registry}{location}"
        sep = "&" if "?" in location else "?"
        self.request(
            "PUT",
            f"{location}{sep}digest={urllib.parse.quote(digest)}",
            data=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            push=True,
        ).close()

    def put_manifest(self, data: bytes, media_type: str, reference: str) -> None:
        self.request(
            "PUT",
            self.ref.url(f"manifests/{reference}"),
            data=data,
            headers={"Content-Type": media_type},
            push=True,
        ).close()


def pull(store: Store, reference: str, say: Say | None = None) -> str:
    """Pull an image by digest into the store, verifying everything; returns the manifest digest."""
    ref = parse(reference)
    if not ref.digest:
        raise UsageError(
            f"{reference} is not pinned by digest",
            "pull REF@sha256:... so the result is known in advance",
        )
    with store.using():
        return _pull(store, ref, say)


def _pull(store: Store, ref: Reference, say: Say | None) -> str:
    from envlock.image import manifest as manifests

    assert ref.digest is not None
    if store.image_intact(ref.digest):
        return ref.digest
    client = Client(ref)
    data, _ = client.manifest(ref.digest)
    if digest_of(data) != ref.digest:
        raise CheckFailed(f"{ref}: the registry sent a manifest with digest {digest_of(data)}")
    found = manifests.parse(data, f"{ref}: manifest")
    digest = ref.digest
    if isinstance(found, manifests.Index):
        store.put_blob(data)
        digest = found.for_platform()
        if store.image_intact(digest):
            return digest
        data, _ = client.manifest(digest)
        if digest_of(data) != digest:
            raise CheckFailed(f"{ref}: platform manifest does not match {digest}")
        found = manifests.parse_manifest(data, f"{ref}: manifest {digest[:19]}")
    if not found.layers:
        raise CheckFailed(f"{ref}: the manifest has no layers", "an image needs at least its base layer")
    if say:
        total = sum(la.size for la in found.layers)
        say(f"Pulling {ref} ({len(found.layers)} layers, {total / 1e6:.1f} MB)")
    from envlock.image.pull import fetch_blobs

    fetch_blobs(client, store, list(found.blobs))
    store.put_blob(data)
    return digest


MAX_MANIFEST = 4 << 20  # bytes; the distribution spec lets registries refuse manifests over 4 MiB


def _read(resp: Any, url: str, limit: int) -> bytes:
    """The whole (small) body of ``resp``; a cut-short or oversized reply is an error naming ``url``."""
    try:
        data: bytes = resp.read(limit + 1)
    except (http.client.HTTPException, OSError) as exc:
        raise ServiceUnavailable(
            f"{redact_text(url)}: the reply broke off ({type(exc).__name__}: {str(exc)[:120]})",
            "retry; if it persists, check the registry",
        ) from None
    if len(data) > limit:
        raise CheckFailed(f"{redact_text(url)}: the reply is larger than {limit} bytes")
    _check_complete(resp, url)
    return data


def _check_complete(resp: Any, url: str) -> None:
    """Raise when ``resp`` announced more bytes (``Content-Length``) than it delivered."""
    missing = getattr(resp, "length", None)
    if isinstance(missing, int) and missing > 0:
        raise ServiceUnavailable(
            f"{redact_text(url)}: the reply broke off ({missing} announced bytes never came)",
            "retry; if it persists, check the registry",
        )


def push(store: Store, image: Image, target: str, say: Say | None = None, compression: str = "gzip") -> str:
    """Push by digest; returns ``REGISTRY/REPO@sha256:...`` of the pushed manifest.

    Streaming, parallel and cached: see ``envlock.image.push``.  The store is held for the
    push and a damaged or missing layer blob is refused before the registry is contacted.
    """
    from envlock.image.push import push_image

    with store.using():
        store.check_blobs([la.digest for la in image.layers])  # a damaged blob is never shipped
        return push_image(store, image, target, say, compression=compression).reference
