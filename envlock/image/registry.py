"""The OCI distribution API, by digest: push an image from the store, pull one into it.

Auth: ``~/.docker/config.json`` ``auths`` (basic credentials), used directly for
Basic challenges and to obtain a token for Bearer challenges.  Plain HTTP is used
for localhost/127.0.0.1 registries, HTTPS for everything else.  Every pulled
blob and manifest is verified against its digest before it enters the store.
"""

from __future__ import annotations

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

ACCEPT = ", ".join([MANIFEST, INDEX, DOCKER_MANIFEST, DOCKER_LIST])
Say = Callable[[str], None]


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
    if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
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
        auths = json.loads(config.read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    for key in (registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"):
        if key in auths and auths[key].get("auth"):
            return str(auths[key]["auth"])
    return None


class Client:
    def __init__(self, ref: Reference) -> None:
        self.ref = ref
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
        query = {"service": params.get("service", ""), "scope": scope}
        url = params["realm"] + "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v})
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
                where = f"token server {params['realm']}"
                raise ServiceUnavailable(f"{self.ref.registry} {what} ({where})", login) from None
            raise ServiceUnavailable(
                f"the token server of {self.ref.registry} answered {exc.code} ({params['realm']})"
            ) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
            raise ServiceUnavailable(
                f"cannot get a token for {self.ref.registry} from {params.get('realm', '?')}: "
                f"{getattr(exc, 'reason', exc)}"
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
            if self._auth:
                req.add_header("Authorization", self._auth)
            try:
                resp = urllib.request.urlopen(req, timeout=300)
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
                    f"{self.ref.registry} answered {exc.code} {exc.reason} to {method} {url}",
                    "check the registry's logs; retry when it is healthy",
                ) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                raise ServiceUnavailable(
                    f"cannot reach registry {self.ref.registry}: {getattr(exc, 'reason', exc)}",
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
        with resp:
            return resp.read(), resp.headers.get("Content-Type", "")

    def blob_into(self, store: Store, digest: str) -> None:
        if store.has_blob(digest):
            return
        resp = self.request("GET", self.ref.url(f"blobs/{digest}"))
        with resp:
            store.put_blob_stream(resp, expected=digest)

    # -- push --------------------------------------------------------------------------
    def has_blob(self, digest: str) -> bool:
        try:
            self.request("HEAD", self.ref.url(f"blobs/{digest}"), push=True).close()
            return True
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise

    def upload(self, digest: str, path: Path) -> None:
        if self.has_blob(digest):
            return
        resp = self.request("POST", self.ref.url("blobs/uploads/"), data=b"", push=True)
        location = resp.headers["Location"]
        resp.close()
        if location.startswith("/"):
            location = f"{self.ref.scheme}://{self.ref.registry}{location}"
        sep = "&" if "?" in location else "?"
        size = path.stat().st_size
        with path.open("rb") as fh:
            self.request(
                "PUT",
                f"{location}{sep}digest={urllib.parse.quote(digest)}",
                data=fh,
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
    if store.has_blob(ref.digest):
        manifest = store.read_json(ref.digest)
        if "manifests" not in manifest and all(store.has_blob(la["digest"]) for la in manifest["layers"]):
            return ref.digest
    client = Client(ref)
    data, _ = client.manifest(ref.digest)
    if digest_of(data) != ref.digest:
        raise CheckFailed(f"{ref}: the registry sent a manifest with digest {digest_of(data)}")
    manifest = json.loads(data)
    digest = ref.digest
    if "manifests" in manifest:
        from envlock.image.base import pick_platform

        store.put_blob(data)
        digest = pick_platform(manifest["manifests"])
        data, _ = client.manifest(digest)
        if digest_of(data) != digest:
            raise CheckFailed(f"{ref}: platform manifest does not match {digest}")
        manifest = json.loads(data)
    if say:
        total = sum(la["size"] for la in manifest["layers"])
        say(f"Pulling {ref} ({len(manifest['layers'])} layers, {total / 1e6:.1f} MB)")
    from envlock.image.pull import fetch_blobs

    fetch_blobs(client, store, [manifest["config"]["digest"], *(la["digest"] for la in manifest["layers"])])
    store.put_blob(data)
    return digest


def push(store: Store, image: Image, target: str, say: Say | None = None, compression: str = "gzip") -> str:
    """Push by digest; returns ``REGISTRY/REPO@sha256:...`` of the pushed manifest.

    Streaming, parallel and cached: see ``envlock.image.push``.
    """
    from envlock.image.push import push_image

    return push_image(store, image, target, say, compression=compression).reference
