"""Push an image from the store to a registry, streaming: compress, hash and upload at once.

For each uncompressed layer (OCI distribution spec v1.1, "Pushing blobs"):

1. if the store remembers its compressed digest for this codec (``compress.cached``),
   ``HEAD`` the blob: present means done; else try a cross-repository mount
   (``POST /v2/NAME/blobs/uploads/?mount=DIGEST&from=OTHER``, spec "Mounting a blob
   from another repository") from a repository of the same registry that received it;
2. otherwise open an upload session (``POST``), stream the compressed bytes with one
   chunked ``PATCH`` (spec "Pushing a blob in chunks" / streamed upload) while hashing
   them, and close it with ``PUT ?digest=`` (the registry verifies the digest);
3. remember ``diff_id -> digest, size, codec`` in the store, so the next push of the
   layer starts with step 1.  The compressed bytes themselves are never kept.

Layers are pushed a few at a time, each compressed on every core (``compress``).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from envlock.errors import ServiceUnavailable, UsageError
from envlock.image import compress
from envlock.image.model import LAYER_TAR, MANIFEST, Image, Layer, digest_of
from envlock.image.registry import Client, Reference, parse
from envlock.store import Store, canonical_json

Say = Callable[[str], None]
PARALLEL_LAYERS = 3


@dataclass(frozen=True)
class Pushed:
    """What a push did: the manifest's reference and how each layer got there."""

    reference: str  # REGISTRY/REPO@sha256:...
    uploaded: int  # layers uploaded (compressed on the way when stored uncompressed)
    skipped: int  # layers the registry had
    mounted: int  # layers mounted from another repository


def _location(client: Client, resp: object) -> str:
    headers = getattr(resp, "headers", {})
    location = headers.get("Location") if headers else None
    if not location:
        raise ServiceUnavailable(
            f"{client.ref.registry} opened an upload without a Location header",
            "check that the registry speaks the OCI distribution API",
        )
    if location.startswith("/"):
        location = f"{client.ref.scheme}://{client.ref.registry}{location}"
    return str(location)


def _with_query(url: str, **params: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + urllib.parse.urlencode(params)


def _mount(client: Client, digest: str, source: str) -> str | None:
    """Try a cross-repository mount; ``None`` when mounted, else the upload URL it opened."""
    url = _with_query(client.ref.url("blobs/uploads/"), mount=digest, **{"from": source})
    resp = client.request("POST", url, data=b"", push=True)
    try:
        if resp.status == 201:
            return None
        return _location(client, resp)
    finally:
        resp.close()


def _stream_upload(client: Client, location: str | None, body: compress.Compressed) -> None:
    """Upload ``body`` with one chunked PATCH and close the session with its digest."""
    if location is None:
        resp = client.request("POST", client.ref.url("blobs/uploads/"), data=b"", push=True)
        location = _location(client, resp)
        resp.close()
    resp = client.request(
        "PATCH", location, data=iter(body), headers={"Content-Type": "application/octet-stream"}, push=True
    )
    location = _location(client, resp)
    resp.close()
    client.request(
        "PUT",
        _with_query(location, digest=body.digest),
        data=b"",
        headers={"Content-Type": "application/octet-stream", "Content-Length": "0"},
        push=True,
    ).close()


def push_layer(
    store: Store, client: Client, layer: Layer, chosen: compress.Codec, threads: int
) -> tuple[Layer, str]:
    """Get one layer into the registry; returns its manifest entry and ``uploaded|skipped|mounted``."""
    if layer.media_type != LAYER_TAR:  # a base layer kept compressed, as pulled
        if client.has_blob(layer.digest):
            return layer, "skipped"
        client.upload(layer.digest, store.blob_path(layer.digest))
        return layer, "uploaded"
    if chosen.name == "none":  # the store's blob itself: its digest is the diff_id
        there = client.has_blob(layer.diff_id)
        if not there:
            client.upload(layer.diff_id, store.blob_path(layer.diff_id))
        return Layer(layer.diff_id, layer.diff_id, layer.size, LAYER_TAR, layer.created_by), (
            "skipped" if there else "uploaded"
        )
    here = f"{client.ref.registry}/{client.ref.repository}"
    entry = compress.cached(store, layer.diff_id, chosen)
    location: str | None = None
    if entry is not None:
        done = Layer(entry.digest, layer.diff_id, entry.size, chosen.media_type, layer.created_by)
        if client.has_blob(entry.digest):
            if here not in entry.repositories:
                compress.remember(store, replace(entry, repositories=(*entry.repositories, here)), chosen)
            return done, "skipped"
        prefix = f"{client.ref.registry}/"
        sources = [r[len(prefix) :] for r in entry.repositories if r.startswith(prefix) and r != here]
        for source in sources:
            location = _mount(client, entry.digest, source)
            if location is None:
                compress.remember(store, replace(entry, repositories=(*entry.repositories, here)), chosen)
                return done, "mounted"
            break  # the registry opened a plain upload instead; use it
    body = compress.Compressed(store.blob_path(layer.diff_id), chosen, threads)
    try:
        _stream_upload(client, location, body)
    finally:
        body.close()  # stops the compressor if the upload failed half way
    # The registry verified body.digest.  A cache entry with another digest (a store shared by
    # machines whose ISA-L picks other instructions) only knew repositories holding that one.
    same = entry is not None and entry.digest == body.digest
    repos = (*entry.repositories, here) if entry is not None and same else (here,)
    compress.remember(
        store, compress.CacheEntry(layer.diff_id, chosen.ident, body.digest, body.size, repos), chosen
    )
    return Layer(body.digest, layer.diff_id, body.size, chosen.media_type, layer.created_by), "uploaded"


def push_image(
    store: Store,
    image: Image,
    target: str,
    say: Say | None = None,
    *,
    compression: str = "gzip",
    threads: int | None = None,
) -> Pushed:
    """Push ``image`` to ``target`` (``REGISTRY/REPO[:TAG]``) by digest.

    ``compression`` is ``gzip``, ``zstd`` or ``none``; ``threads`` compression threads per layer
    (default: every core).  Raises ``UsageError`` for a digest target or an unknown
    codec, ``ServiceUnavailable`` when the registry fails or refuses a blob.
    """
    ref: Reference = parse(target)
    if ref.digest:
        raise UsageError(
            "push to a repository, not a digest",
            f"envlock build --push {ref.registry}/{ref.repository}",
        )
    chosen = compress.codec(compression)
    threads = threads or compress.cores()
    client = Client(ref)
    client.has_blob(image.image_id)  # one request first: authenticates before the parallel part
    counts = {"uploaded": 0, "skipped": 0, "mounted": 0}

    def one(layer: Layer) -> Layer:
        if say:
            say(f"Pushing layer {layer.diff_id[:19]} ({layer.size / 1e6:.1f} MB uncompressed)")
        done, how = push_layer(store, client, layer, chosen, threads)
        counts[how] += 1
        return done

    unique = list(dict.fromkeys(image.layers))
    with ThreadPoolExecutor(max_workers=PARALLEL_LAYERS) as pool:
        pushed = dict(zip(unique, pool.map(one, unique), strict=True))
    layers = tuple(pushed[la] for la in image.layers)
    store.put_blob(image.config_bytes)
    client.upload(image.image_id, store.blob_path(image.image_id))
    manifest = canonical_json(image.manifest(layers))
    digest = digest_of(manifest)
    client.put_manifest(manifest, MANIFEST, digest)
    if ref.tag:
        client.put_manifest(manifest, MANIFEST, ref.tag)
    if say:
        say(
            f"Pushed {len(unique)} layer(s) with {chosen.ident}: {counts['uploaded']} uploaded, "
            f"{counts['skipped']} already there, {counts['mounted']} mounted"
        )
    return Pushed(f"{ref.registry}/{ref.repository}@{digest}", **counts)
