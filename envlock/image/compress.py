"""Layer compression for registries: on every core, deterministic, cached by diff_id.

Two codecs, each through a well-kept library with threaded compression:

- ``gzip`` (OCI ``application/vnd.oci.image.layer.v1.tar+gzip``, every engine): ISA-L's
  ``igzip_threaded`` (PyPI ``isal``), pigz-style: the input is cut into fixed 1 MiB
  blocks, each compressed with the previous block's last 32 KiB as dictionary, so the
  output depends only on the input, the level and the block size, not on the number of
  threads or their timing (``isal`` documents the scheme in ``igzip_threaded``; the
  unit tests check it).  The gzip header has mtime 0 and no file name.
- ``zstd`` (OCI ``application/vnd.oci.image.layer.v1.tar+zstd``, OCI image spec
  v1.1 ``layer.md``): libzstd in multi-threaded mode through ``zstandard``; libzstd
  documents that multi-threaded output does not depend on the number of workers
  (``zstd.h``, ``ZSTD_c_nbWorkers``), so envlock always uses that mode (>= 1 worker).

Bytes may differ between library versions (and possibly CPU instruction sets for
ISA-L); the config, which lists uncompressed ``diff_ids``, never does, so the image ID
is unaffected.  ``Codec.ident`` names the library version and settings, and the
cache of ``diff_id -> compressed digest`` (``STORE/compressed/``) is only trusted
for the same ``ident``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from envlock.digest import is_digest, parse_digest
from envlock.errors import UsageError
from envlock.image.model import LAYER_GZIP, LAYER_TAR
from envlock.store import Store

LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
BLOCK = 1 << 20  # igzip block size; also the read size, so block edges never move
GZIP_LEVEL = 2  # ISA-L levels are 0-3; 2 is its documented speed/ratio trade-off
ZSTD_LEVEL = 3  # libzstd's default level
CODECS = ("gzip", "zstd", "none")


@dataclass(frozen=True)
class Codec:
    """A compressor and its settings: ``name`` is ``gzip`` or ``zstd``."""

    name: str
    media_type: str
    level: int
    library: str  # "isal-1.9.1", "libzstd-1.5.7"

    @property
    def ident(self) -> str:
        """Everything the output bytes depend on, e.g. ``gzip/isal-1.9.1/level-2/block-1048576``."""
        tail = {"gzip": f"block-{BLOCK}", "zstd": "mt"}.get(self.name, "raw")
        return f"{self.name}/{self.library}/level-{self.level}/{tail}"


def codec(name: str) -> Codec:
    """The codec called ``name`` (``gzip`` or ``zstd``); ``UsageError`` for anything else."""
    if name == "gzip":
        import isal

        return Codec("gzip", LAYER_GZIP, GZIP_LEVEL, f"isal-{isal.__version__}")
    if name == "zstd":
        import zstandard

        version = ".".join(str(p) for p in zstandard.ZSTD_VERSION)
        return Codec("zstd", LAYER_ZSTD, ZSTD_LEVEL, f"libzstd-{version}")
    if name == "none":  # the layer as it is (OCI ``tar``): no CPU spent, more bytes moved
        return Codec("none", LAYER_TAR, 0, "identity")
    raise UsageError(f"unknown compression {name!r}", f"use one of: {', '.join(CODECS)}")


def cores() -> int:
    """The CPUs this process may run on (``sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def compress_into(source: IO[bytes], sink: IO[bytes], chosen: Codec, threads: int) -> None:
    """Compress all of ``source`` into ``sink`` with ``threads`` compression threads (>= 1).

    ``source`` is read in ``BLOCK``-sized reads; the bytes written to ``sink`` depend
    only on the input and ``chosen`` (see the module docstring).
    """
    threads = max(1, threads)
    if chosen.name == "none":
        while chunk := _read_full(source, BLOCK):
            sink.write(chunk)
        return
    if chosen.name == "gzip":
        from isal import igzip_threaded

        gz = igzip_threaded.open(  # type: ignore[no-untyped-call]
            sink, "wb", compresslevel=chosen.level, threads=threads, block_size=BLOCK
        )
        try:
            while chunk := _read_full(source, BLOCK):
                gz.write(chunk)
        finally:
            gz.close()
        return
    import zstandard

    cctx = zstandard.ZstdCompressor(level=chosen.level, threads=threads, write_content_size=False)
    cobj = cctx.compressobj()
    while chunk := _read_full(source, BLOCK):
        if out := cobj.compress(chunk):
            sink.write(out)
    sink.write(cobj.flush())


def decompressing(source: IO[bytes], media_type: str) -> IO[bytes]:
    """A reader of ``source``'s uncompressed bytes, for a layer of ``media_type`` (OCI
    ``tar+gzip`` or ``tar+zstd``, every gzip member and zstd frame in turn; ``tar`` as it is).

    gzip is inflated by ISA-L on a second thread (``igzip_threaded``, one thread: inflate
    has no parallel form), so reading the source overlaps with inflating it.

    Raises:
        UsageError: another media type.
    """
    if media_type in (LAYER_GZIP, "application/vnd.docker.image.rootfs.diff.tar.gzip"):
        from isal import igzip_threaded

        return cast(IO[bytes], igzip_threaded.open(source, "rb", threads=1))  # type: ignore[no-untyped-call]
    if media_type == LAYER_TAR:
        return source
    if media_type == LAYER_ZSTD:
        import zstandard

        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(source, read_across_frames=True))
    raise UsageError(f"envlock cannot decompress a layer of type {media_type!r}")


def _read_full(source: IO[bytes], size: int) -> bytes:
    """``size`` bytes, fewer only at the end (pipes and sockets may return short reads)."""
    data = source.read(size)
    if not data or len(data) == size:
        return data
    parts = [data]
    got = len(data)
    while got < size and (more := source.read(size - got)):
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class Compressed:
    """An iterator over a file's compressed bytes that hashes them as they pass.

    After it is exhausted, ``digest`` (``sha256:...``) and ``size`` describe the blob.
    """

    def __init__(self, path: Path, chosen: Codec, threads: int) -> None:
        from envlock.streams import produce

        self._path = path
        self._hash = hashlib.sha256()
        self.size = 0

        def write(sink: IO[bytes]) -> None:
            with path.open("rb") as src:
                compress_into(src, sink, chosen, threads)

        self._chunks = produce(write)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._hash.update(chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def close(self) -> None:
        """Stop compressing (a no-op once everything was read)."""
        self._chunks.close()


@dataclass(frozen=True)
class CacheEntry:
    """What a past compression of one layer gave: kept in ``STORE/compressed/``."""

    diff_id: str
    codec: str  # Codec.ident
    digest: str
    size: int
    repositories: tuple[str, ...] = ()  # REGISTRY/REPO that received the blob, for mounts

    @classmethod
    def parse(cls, data: object) -> CacheEntry:
        """Validate a cache file's JSON; ``ValueError`` if it is not one."""
        if not isinstance(data, dict):
            raise ValueError("not an object")
        repos = data.get("repositories", [])
        size = data.get("size")
        if not isinstance(size, int) or size < 0 or not isinstance(repos, list):
            raise ValueError("bad size or repositories")
        if not is_digest(data.get("diff_id")) or not is_digest(data.get("digest")):
            raise ValueError("bad digest")
        return cls(
            diff_id=str(data["diff_id"]),
            codec=str(data.get("codec")),
            digest=str(data["digest"]),
            size=size,
            repositories=tuple(str(r) for r in repos),
        )


def _cache_path(store: Store, diff_id: str, chosen: Codec) -> Path:
    return (
        store.root / "compressed" / f"{parse_digest(diff_id, source='layer diff_id')[7:]}-{chosen.name}.json"
    )


def cached(store: Store, diff_id: str, chosen: Codec) -> CacheEntry | None:
    """The remembered compressed digest of a layer, if made by this very codec version."""
    try:
        entry = CacheEntry.parse(json.loads(_cache_path(store, diff_id, chosen).read_bytes()))
    except (OSError, ValueError, TypeError):
        return None
    if entry.diff_id != diff_id or entry.codec != chosen.ident:
        return None
    return entry


def remember(store: Store, entry: CacheEntry, chosen: Codec) -> None:
    """Write (atomically) the cache entry of one layer."""
    path = _cache_path(store, entry.diff_id, chosen)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "codec": entry.codec,
        "diff_id": entry.diff_id,
        "digest": entry.digest,
        "repositories": sorted(set(entry.repositories)),
        "size": entry.size,
    }
    store._write_small(path, json.dumps(data, sort_keys=True).encode() + b"\n")
