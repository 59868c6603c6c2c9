"""A build cache in the registry a team already runs: layers found by their build key.

Every layer envlock builds has a key computed from its inputs alone (``venv.layer_key``,
``bytecode.layer_key``, ``conda.layer_key``, ``base.debian_key``), and the build plan
(``envlock.image.plan``) makes the package layers' keys known from the lock without a
wheel.  A cache repository ``REGISTRY/REPO`` holds one entry per key, as an OCI artifact
(OCI image spec v1.1, "Guidelines for Artifact Usage"), so that any registry that stores
images stores it, and its access control is the repository's:

- an image manifest tagged ``KIND-KEY`` (``layer-``, ``base-`` or ``plan-`` and the key's
  64 hex characters; a tag is ``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``, distribution spec
  "Pulling manifests"), with ``artifactType`` :data:`ARTIFACT_TYPE`;
- its config is the entry, JSON of media type :data:`ENTRY_TYPE`: schema, kind, key, the
  layers' ``diff_ids`` and uncompressed sizes, and per kind the plan or the base's
  manifest and config;
- its layers are the entry's layers, compressed (gzip or zstd) exactly as ``envlock
  build --push`` pushes them, so the blobs are shared with pushed images (and mounted).

What is checked when an entry is used: the manifest and config parse and name the key and
kind asked for; every blob's sha256 and size are the descriptor's; every layer
decompresses to exactly its ``diff_id`` and no more bytes than its size; a base's
manifest lists those layers and its config by digest.  An entry that fails any of these
is refused with a ``warning:`` and the layer is built here instead, so the image ID never
depends on the cache.  Not checked, because it cannot be without the inputs: that the
layer is what a build of the key would make.  Whoever may push to the cache repository
chooses those bytes, as whoever may push a base image does (docs/SECURITY.md); ``envlock
rebuild`` still compares the result with the record's layers.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import re
import shutil
import threading
import urllib.error
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from envlock.digest import is_digest
from envlock.errors import CheckFailed, EnvlockError, ServiceUnavailable, UsageError
from envlock.image import compress
from envlock.image.model import LAYER_TAR, MANIFEST, Layer, digest_of
from envlock.lockfile import Package
from envlock.store import CHUNK, Store, canonical_json
from envlock.urls import redact_text

if TYPE_CHECKING:
    from envlock.image.registry import Reference

ARTIFACT_TYPE = "application/vnd.dev.envlock.cache.v1"
ENTRY_TYPE = "application/vnd.dev.envlock.cache.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"  # OCI image spec v1.1, "Guidance for an Empty Descriptor"
EMPTY = b"{}"
SCHEMA = "envlock.cache/v1"
KINDS = ("layer", "base", "plan")
MAX_ENTRY = 4 << 20  # bytes: an entry is small (a base's manifest and config, a plan)
PARALLEL = 4  # entries fetched or published at once
TIMEOUT = 20  # seconds a cache may stay silent (connecting, or in a reply) before a build goes on without it
_KEY = re.compile(r"[0-9a-f]{64}")

Say = Callable[[str], None]


class Refused(Exception):
    """A cache entry that is not what it must be; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One cache entry: ``kind``, its 64-hex ``key``, its layers (as in the store:
    uncompressed, ``digest == diff_id``) and, for a plan or a base, its ``data``."""

    kind: str
    key: str
    layers: tuple[Layer, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return tag(self.kind, self.key)

    def document(self) -> dict[str, Any]:
        """The entry's config (JSON): what a reader checks the blobs against."""
        return {
            "schema": SCHEMA,
            "kind": self.kind,
            "key": self.key,
            "diff_ids": [la.diff_id for la in self.layers],
            "sizes": [la.size for la in self.layers],
            "created_by": [la.created_by for la in self.layers],
            **self.data,
        }


def tag(kind: str, key: str) -> str:
    """The tag of the entry ``kind`` / ``key``: ``layer-<64 hex>``."""
    if kind not in KINDS or not _KEY.fullmatch(key):
        raise ValueError(f"bad cache entry name {kind}-{key[:80]}")
    return f"{kind}-{key}"


def target(reference: str) -> Reference:
    """The cache repository ``REGISTRY/REPO`` (no tag, no digest).

    Raises:
        UsageError: empty, a registry without a repository, a tag or digest, or a
            malformed reference.
    """
    from envlock.image.registry import parse

    example = "give REGISTRY/REPO, e.g. --cache registry.example.com/team/cache"
    if not reference.strip():
        raise UsageError("the build cache reference is empty", example)
    if "/" not in reference:  # parse() would read HOST:PORT as Docker Hub's library/HOST, tag PORT
        raise UsageError(f"the build cache is a repository in a registry, not {reference!r}", example)
    ref = parse(reference)
    if ref.digest or ref.tag:
        raise UsageError(
            f"the build cache is a repository, not an image: {reference}",
            f"give REGISTRY/REPO, e.g. --cache {ref.registry}/{ref.repository}",
        )
    return ref


# -- reading ---------------------------------------------------------------------------------


class RemoteCache:
    """The build cache at ``reference`` as a build reads it.

    Misses, refused entries and an unreachable registry never fail a build: they add a line
    to ``warnings`` (the last two) and the build makes what it did not get.  What it does
    get is in the store afterwards like anything built here: layers in the layer cache
    (``STORE/layers/KEY.json``), a base in ``STORE/bases/``.
    """

    def __init__(self, reference: str, store: Store, say: Say | None = None) -> None:
        from envlock.image.registry import Client

        self.ref = target(reference)
        self.where = f"{self.ref.registry}/{self.ref.repository}"
        self.client = Client(self.ref, timeout=TIMEOUT)  # a cache only saves time: never wait long for it
        self.store = store
        self.say = say or (lambda _m: None)
        self.warnings: list[str] = []
        self.hits = 0
        self.misses = 0
        self._down = False
        self._lock = threading.Lock()

    # entries ------------------------------------------------------------------------------
    def _unavailable(self, exc: EnvlockError) -> None:
        with self._lock:
            if self._down:
                return
            self._down = True
            hint = f" (hint: {exc.hint})" if exc.hint else ""  # e.g. docker login REGISTRY
            self.warnings.append(
                f"build cache {self.where} is unavailable ({exc.message}); building without it{hint}"
            )

    def refuse(self, kind: str, key: str, why: str) -> None:
        """Refuse the entry ``kind-key`` that a later check found wrong (a warning)."""
        self._refuse(tag(kind, key), why)

    def _refuse(self, name: str, why: str) -> None:
        self.warnings.append(
            f"build cache entry {name[:19]}… in {self.where} refused: {why}; built here instead"
        )

    def _get(self, path: str, limit: int) -> bytes | None:
        """A small reply's body, ``None`` on 404."""
        url = self.ref.url(path)
        headers = {"Accept": MANIFEST} if path.startswith("manifests/") else {}
        try:
            resp = self.client.request("GET", url, headers=headers)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise ServiceUnavailable(
                f"{self.ref.registry} answered {exc.code} to GET {redact_text(url)}"
            ) from None
        with resp:
            try:
                data: bytes = resp.read(limit + 1)
            except (http.client.HTTPException, OSError) as exc:
                raise ServiceUnavailable(
                    f"{redact_text(url)}: the reply broke off ({type(exc).__name__})"
                ) from None
        if len(data) > limit:
            raise Refused(f"{path.split('/')[0][:-1]} larger than {limit} bytes")
        return data

    def _entry(self, kind: str, key: str) -> tuple[dict[str, Any], Any] | None:
        """(entry document, parsed manifest) of ``kind-key``, or ``None`` when absent.

        Raises:
            Refused: the entry is malformed or names another key or kind.
            ServiceUnavailable: the registry failed.
        """
        from envlock.image import manifest as manifests

        raw = self._get(f"manifests/{tag(kind, key)}", MAX_ENTRY)
        if raw is None:
            return None
        try:
            found = manifests.parse_manifest(raw, "its manifest")
        except CheckFailed as exc:
            raise Refused(exc.message) from None
        if found.config.media_type != ENTRY_TYPE:
            raise Refused(f"its config is {found.config.media_type[:60]!r}, not an envlock cache entry")
        body = self._get(f"blobs/{found.config.digest}", MAX_ENTRY)
        if body is None or digest_of(body) != found.config.digest:
            raise Refused("its config does not match its digest")
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            raise Refused("its config is not JSON") from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise Refused(f"its config is not {SCHEMA}")
        if doc.get("kind") != kind or doc.get("key") != key:
            raise Refused(
                f"it describes {str(doc.get('kind'))[:10]}-{str(doc.get('key'))[:16]}…, not this key"
            )
        diff_ids, sizes = doc.get("diff_ids"), doc.get("sizes")
        layers = [la for la in found.layers if la.media_type != EMPTY_TYPE]
        if not (
            isinstance(diff_ids, list)
            and isinstance(sizes, list)
            and len(diff_ids) == len(sizes) == len(layers)
        ):
            raise Refused("its config and manifest list different layers")
        if not all(is_digest(d) for d in diff_ids) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in sizes
        ):
            raise Refused("its config has a malformed diff_id or size")
        return doc, layers

    def _layer(self, descriptor: Any, diff_id: str, size: int) -> None:
        """Download one layer blob, decompress it into the store and publish it as ``diff_id``.

        Raises:
            Refused: its bytes are not the descriptor's, or do not decompress to ``diff_id``.
            ServiceUnavailable: the registry failed on the way.
        """
        if self.store.blob_intact(diff_id):  # nothing to download, but its size is a claim too
            if (held := self.store.blob_path(diff_id).stat().st_size) != size:
                raise Refused(f"it gives its layer {diff_id[:19]}… {size} bytes, the layer has {held}")
            return
        if descriptor.media_type not in (LAYER_TAR, compress.LAYER_ZSTD, *_GZIP):
            raise Refused(f"its layer is {descriptor.media_type[:60]!r}, not tar, gzip or zstd")
        # decompression stops at the claimed size; a claim the disk cannot hold is refused
        # before a byte is written, so that no entry fills the disk for the store's neighbours
        if size > (free := shutil.disk_usage(self.store.root).free):
            raise Refused(f"its layer claims {size} bytes, more than the {free} free in the store")
        url = self.ref.url(f"blobs/{descriptor.digest}")
        try:
            resp = self.client.request("GET", url)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise Refused(f"its layer {descriptor.digest[:19]}… is missing (404)") from None
            raise ServiceUnavailable(
                f"{self.ref.registry} answered {exc.code} to GET {redact_text(url)}"
            ) from None
        # an uncompressed layer is its own blob: the store's hash of what it writes is the check
        # of both digests, so its bytes are hashed once, not twice (5 CPU-seconds for 7 GB)
        raw = descriptor.media_type == LAYER_TAR
        if raw and descriptor.digest != diff_id:
            raise Refused(f"its uncompressed layer {descriptor.digest[:19]}… is not {diff_id[:19]}…")
        writer = self.store.writer()
        try:
            with resp:
                source = _Hashing(resp, hashing=not raw)
                try:
                    with writer.in_background() as sink:
                        reader = compress.decompressing(cast(IO[bytes], source), descriptor.media_type)
                        written = 0
                        try:
                            while chunk := reader.read(CHUNK):
                                written += len(chunk)
                                if written > size:  # a bomb stops here, not when the disk is full
                                    raise Refused(f"its layer decompresses to more than {size} bytes")
                                sink.write(chunk)
                        finally:
                            reader.close()
                    while source.read(CHUNK):  # bytes after the compressed stream count too
                        pass
                except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
                    raise ServiceUnavailable(
                        f"{redact_text(url)}: the reply broke off ({type(exc).__name__})"
                    ) from None
                except (EnvlockError, Refused):
                    raise
                except Exception as exc:  # the decompressors' own errors (EOFError, BadGzipFile, ZstdError)
                    raise Refused(
                        f"its layer does not decompress ({type(exc).__name__}: {str(exc)[:80]})"
                    ) from None
            if source.size != descriptor.size or (not raw and source.digest != descriptor.digest):
                raise Refused(f"its layer {descriptor.digest[:19]}… does not match its digest (tampered?)")
            if writer.digest != diff_id or writer.size != size:
                raise Refused(f"its layer does not decompress to {diff_id[:19]}… (tampered?)")
            self.store.publish(writer)
        except BaseException:
            writer.abort()
            raise
        if descriptor.media_type == LAYER_TAR:
            return  # the blob is the layer: nothing to remember for pushes
        codec = compress.codec("zstd" if descriptor.media_type == compress.LAYER_ZSTD else "gzip")
        known = compress.cached(self.store, diff_id, codec)
        if known is None or known.digest != descriptor.digest:  # a later push mounts it from here
            entry = compress.CacheEntry(
                diff_id, codec.ident, descriptor.digest, descriptor.size, (self.where,)
            )
            compress.remember(self.store, entry, codec)

    def _fetch(self, kind: str, key: str, get: Callable[[dict[str, Any], list[Any]], Any]) -> Any:
        """``get(document, layers)`` for entry ``kind-key``; ``None`` on a miss, a refusal or
        an unavailable registry (warned once)."""
        if self._down:
            return None
        try:
            found = self._entry(kind, key)
            if found is None:
                self.misses += 1
                return None
            out = get(*found)
            self.hits += 1
            return out
        except Refused as exc:
            self._refuse(tag(kind, key), str(exc))
        except ServiceUnavailable as exc:
            self._unavailable(exc)
        return None

    # kinds --------------------------------------------------------------------------------
    def plan(self, key: str, pip: Sequence[Package]) -> Any:
        """The build plan ``key`` (``envlock.image.plan.Plan``), checked against ``pip``."""
        from envlock.image.plan import Plan

        def get(doc: dict[str, Any], layers: list[Any]) -> Plan:
            if layers:
                raise Refused("a plan has no layers")
            try:
                return Plan.parse(doc.get("plan"), pip)
            except ValueError as exc:
                raise Refused(f"its plan is not one for this lock ({exc})") from None

        return self._fetch("plan", key, get)

    def layers(self, wanted: Sequence[tuple[str, str]]) -> dict[str, Layer]:
        """Layers by key for ``wanted`` ``(key, created_by)`` pairs, fetched in parallel;
        each one got is in the store and its layer cache.  Keys not got are absent."""
        from envlock.image import venv

        def one(item: tuple[str, str]) -> tuple[str, Layer | None]:
            key, created_by = item

            def get(doc: dict[str, Any], layers: list[Any]) -> Layer:
                if len(layers) != 1:
                    raise Refused("a layer entry has one layer")
                diff_id, size = doc["diff_ids"][0], doc["sizes"][0]
                if not self.store.blob_intact(diff_id):
                    what = created_by.removeprefix("envlock: ")
                    self.say(f"Taking {what} from the build cache ({size / 1e6:.0f} MB)")
                self._layer(layers[0], diff_id, size)
                layer = Layer(diff_id, diff_id, size, LAYER_TAR, created_by)
                venv.cache_by_key(self.store, key, layer)
                return layer

            return key, self._fetch("layer", key, get)

        if not wanted or self._down:  # an unavailable cache was warned about once already
            return {}
        total = len(wanted)
        self.say(f"Looking up {total} layer{'s' if total != 1 else ''} in the build cache {self.where}")
        with ThreadPoolExecutor(max_workers=min(PARALLEL, total)) as pool:
            got = {k: la for k, la in pool.map(one, wanted) if la is not None}
        if not self._down:  # a miss says so too: silence read as "still looking"
            size = sum(la.size for la in got.values())
            self.say(f"Took {len(got)} of {total} layers from the build cache ({size / 1e6:.0f} MB)")
        return got

    def base(self, key: str, suite: str, python: str) -> str | None:
        """The Debian base ``key`` (``base.debian_key``) into the store; its manifest digest."""
        from envlock.image import base as basemod
        from envlock.image import manifest as manifests

        def get(doc: dict[str, Any], layers: list[Any]) -> str:
            manifest_text, config_text, packages = doc.get("manifest"), doc.get("config"), doc.get("packages")
            if not (
                isinstance(manifest_text, str) and isinstance(config_text, str) and isinstance(packages, list)
            ):
                raise Refused("a base entry carries its manifest, config and packages")
            if doc.get("suite") != suite or doc.get("python") != python:
                raise Refused("it is the base of another suite or Python")
            try:
                found = manifests.parse_manifest(manifest_text, "its base manifest")
            except CheckFailed as exc:
                raise Refused(exc.message) from None
            config = config_text.encode()
            if found.config.digest != digest_of(config):
                raise Refused("its base config is not the one its manifest names")
            pairs = list(zip(doc["diff_ids"], doc["sizes"], strict=True))
            if [(la.digest, la.size, la.media_type) for la in found.layers] != [
                (d, s, LAYER_TAR) for d, s in pairs
            ]:
                raise Refused("its base manifest does not list its layers")
            if not all(isinstance(p, str) and len(p) < 256 for p in packages):
                raise Refused("its package list is malformed")
            self.say(f"Taking debian:{suite} from the build cache {self.where}")
            for descriptor, (diff_id, size) in zip(layers, pairs, strict=True):
                self._layer(descriptor, diff_id, size)
            # recorded, the base is this store's debian:SUITE for every later build, with or
            # without the cache: one that cannot be a base for this spec is refused first
            # (``basemod.load`` asks the same when the build goes on)
            inside = tuple(Layer(d, d, s, LAYER_TAR, "base") for d, s in pairs)
            try:
                interp = basemod.find_interpreter(self.store, digest_of(manifest_text.encode()), inside)
            except CheckFailed as exc:
                raise Refused(f"its base layer cannot be read ({exc.message[:120]})") from None
            if interp is None or interp.version != python:
                has = f"Python {interp.version}" if interp else "no Python"
                raise Refused(f"its base has {has} at /usr/local/bin or /usr/bin, not Python {python}")
            return basemod.record_debian(
                self.store, key, suite, python, config, manifest_text.encode(), packages
            )

        found: str | None = self._fetch("base", key, get)
        return found


_GZIP = ("application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip")


class _Hashing:
    """A reader that hashes (sha256, unless ``hashing`` is false) and counts what passes
    through it."""

    def __init__(self, source: IO[bytes], *, hashing: bool = True) -> None:
        self._source = source
        self._hash = hashlib.sha256()
        self._hashing = hashing
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        if self._hashing:
            self._hash.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """The response is closed by its owner."""

    @property
    def closed(self) -> bool:
        return False

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


# -- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Published:
    """What publishing did: entries new in the cache, already there, and replaced (they held
    other layers than this build's, listed in ``warnings``)."""

    added: int
    present: int
    replaced: int
    warnings: tuple[str, ...] = ()


def publish(
    store: Store,
    entries: Sequence[Entry],
    reference: str,
    say: Say | None = None,
    *,
    compression: str = "gzip",
    threads: int | None = None,
) -> Published:
    """Publish ``entries`` to the cache repository ``reference``.

    An entry already there with the same layers and data is left alone; one with other
    layers, or another plan or base, is replaced by this build's, with a warning naming it
    (a build is a function of its key, so two different answers mean one of them is wrong;
    this one was made or checked here).
    Layers go up as ``envlock build --push`` sends them (``envlock.image.push``), blobs the
    registry has are not sent again.

    Raises:
        UsageError: a tagged or digest reference.
        CheckFailed: a layer blob is missing or damaged in the store.
        ServiceUnavailable: the registry failed or refused (the message says it was the
            build cache: after ``build --push`` the image itself is pushed already).
    """
    from envlock.image.push import push_layer
    from envlock.image.registry import Client

    ref = target(reference)
    chosen = compress.codec(compression)
    threads = threads or compress.cores()
    client = Client(ref)
    with store.using(), _publishing(f"{ref.registry}/{ref.repository}"):
        store.check_blobs([la.digest for e in entries for la in e.layers])
        client.has_blob(digest_of(EMPTY))  # authenticates once, before the parallel part
        reader = RemoteCache(reference, store)
        counts = {"added": 0, "present": 0, "replaced": 0}
        warnings: list[str] = []
        lock = threading.Lock()

        def count(what: str, warning: str = "") -> None:
            with lock:
                counts[what] += 1
                if warning:
                    warnings.append(warning)

        def one(entry: Entry) -> None:
            warning = ""
            try:
                there = reader._entry(entry.kind, entry.key)
            except Refused as exc:
                there = None
                warning = (
                    f"build cache entry {entry.tag[:19]}… in {reader.where} was malformed ({exc}); replaced"
                )
            ours = entry.document()
            # the same entry when every field this build writes is the same (a plan or a base is
            # more than its layers); fields that a later envlock adds are left alone
            if there is not None and all(there[0].get(k) == v for k, v in ours.items()):
                count("present")
                return
            if there is not None:
                warning = (
                    f"build cache entry {entry.tag[:19]}… in {reader.where} held "
                    f"{_difference(there[0], ours)} than this build's; replaced"
                )
            descriptors = [push_layer(store, client, la, chosen, threads)[0] for la in entry.layers]
            document = canonical_json(ours)
            config_digest = digest_of(document)
            client.upload_data(config_digest, document)
            layers = [{"mediaType": d.media_type, "digest": d.digest, "size": d.size} for d in descriptors]
            if not layers:  # OCI v1.1: an artifact without blobs has the empty descriptor as its layer
                client.upload_data(digest_of(EMPTY), EMPTY)
                layers = [{"mediaType": EMPTY_TYPE, "digest": digest_of(EMPTY), "size": len(EMPTY)}]
            manifest = {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "artifactType": ARTIFACT_TYPE,
                "config": {"mediaType": ENTRY_TYPE, "digest": config_digest, "size": len(document)},
                "layers": layers,
                "annotations": {"dev.envlock.cache.kind": entry.kind, "dev.envlock.cache.key": entry.key},
            }
            client.put_manifest(canonical_json(manifest), MANIFEST, entry.tag)
            count("replaced" if there is not None or warning else "added", warning)

        unique = list({e.tag: e for e in entries}.values())
        if say:
            say(f"Publishing {len(unique)} build cache entries to {reader.where}")
        with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(unique)))) as pool:
            for future in [pool.submit(one, e) for e in unique]:
                future.result()
    return Published(**counts, warnings=tuple(warnings))


@contextlib.contextmanager
def _publishing(where: str) -> Iterator[None]:
    """A registry failure while publishing, named as one of the build cache ``where``."""
    try:
        yield
    except ServiceUnavailable as exc:
        raise ServiceUnavailable(
            f"cannot publish to the build cache {where}: {exc.message}", exc.hint
        ) from None


def _difference(there: dict[str, Any], ours: dict[str, Any]) -> str:
    """What an entry in the cache holds that this build's entry does not, for a warning:
    other layers (their diff_ids, shortened), or other data (the fields that differ)."""
    if there.get("diff_ids") != ours["diff_ids"]:
        was = ", ".join(str(d)[:19] for d in there.get("diff_ids", []))
        return f"other layers ({was})"
    fields = sorted(k for k in ours if there.get(k) != ours[k])
    return f"another {', '.join(f[:20] for f in fields[:4])}"


# -- the keys a build used ---------------------------------------------------------------------


def keys_path(store: Store, manifest_digest: str) -> Path:
    """Where the build keys of the image ``manifest_digest`` are kept (``STORE/buildkeys/``)."""
    from envlock.digest import parse_digest

    return store.root / "buildkeys" / f"{parse_digest(manifest_digest, source='manifest digest')[7:]}.json"


def remember(store: Store, manifest_digest: str, entries: Sequence[Entry]) -> None:
    """Keep the entries an image was built from, so ``envlock cache push`` can publish them later."""
    data = [
        {
            "kind": e.kind,
            "key": e.key,
            "layers": [[la.diff_id, la.size, la.created_by] for la in e.layers],
            "data": e.data,
        }
        for e in entries
    ]
    path = keys_path(store, manifest_digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    store._write_small(path, canonical_json(data))


def recall(store: Store, manifest_digest: str) -> list[Entry] | None:
    """The entries :func:`remember` kept for an image; ``None`` if none (or unreadable)."""
    try:
        data = json.loads(keys_path(store, manifest_digest).read_bytes())
        return [
            Entry(
                str(row["kind"]),
                str(row["key"]),
                tuple(Layer(d, d, int(s), LAYER_TAR, str(c)) for d, s, c in row["layers"]),
                dict(row["data"]),
            )
            for row in data
            if row["kind"] in KINDS
            and _KEY.fullmatch(str(row["key"]))
            and all(is_digest(la[0]) for la in row["layers"])
        ]
    except (OSError, ValueError, TypeError, KeyError):
        return None


def entries_of(result: Any, spec_path: Path, store: Store, say: Say | None = None) -> list[Entry]:
    """The entries of a build's image (an ``envlock.image.build.BuildResult``): as remembered
    when it was built, or, for an image built before envlock kept them, by building it again
    from the store's layer cache (``reuse=False``; only what is not cached is made)."""
    found = recall(store, result.manifest)
    if found is not None:
        return found
    from envlock.image.build import build_spec

    again = build_spec(spec_path, store=store, platform=result.platform, say=say, reuse=False)
    return recall(store, again.manifest) or []


def push_spec(
    spec_path: Path,
    reference: str,
    *,
    store: Store,
    platform: str | None = None,
    say: Say | None = None,
    compression: str = "gzip",
    cache: RemoteCache | None = None,
) -> tuple[Any, Published]:
    """Build the spec's image (or find it in the store, or take it from ``cache``) and publish
    its entries to the cache repository ``reference``.  Returns (``BuildResult``, ``Published``).

    Raises what ``build_spec`` and :func:`publish` raise.
    """
    from envlock.image.build import build_spec

    target(reference)  # a bad reference is refused before anything is built
    result = build_spec(spec_path, store=store, platform=platform, say=say, cache=cache)
    entries = entries_of(result, spec_path, store, say)
    return result, publish(store, entries, reference, say, compression=compression)
