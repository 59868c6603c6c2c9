"""Layer compression: right bytes back, fixed headers, the same output on any number of
threads (the property the compressed-digest cache relies on), and the cache itself."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
from pathlib import Path

import pytest
import zstandard

from envlock.errors import UsageError
from envlock.image import compress
from envlock.image import layer as layermod
from envlock.image.model import LAYER_GZIP
from envlock.store import Store


def layer_bytes(size: int = 5 << 20) -> bytes:
    """A tar of some text (compresses well) and some noise (does not), over several blocks."""
    rng = random.Random(7)
    noise = rng.randbytes(size // 2)
    text = b"".join(f"line {i} of a python module\n".encode() for i in range(size // 60))
    out = io.BytesIO()
    layermod.write([layermod.file("opt/env/a.py", text), layermod.file("opt/env/b.bin", noise)], out)
    return out.getvalue()


def squeeze(data: bytes, name: str, threads: int) -> bytes:
    sink = io.BytesIO()
    compress.compress_into(io.BytesIO(data), sink, compress.codec(name), threads)
    return sink.getvalue()


@pytest.mark.parametrize("name", ["gzip", "zstd"])
def test_the_bytes_do_not_depend_on_the_number_of_threads(name: str) -> None:
    data = layer_bytes()
    outputs = {hashlib.sha256(squeeze(data, name, n)).hexdigest() for n in (1, 2, 3, 8)}
    assert len(outputs) == 1


def test_gzip_decompresses_to_the_layer_with_a_fixed_header() -> None:
    data = layer_bytes()
    blob = squeeze(data, "gzip", 4)
    assert gzip.decompress(blob) == data
    assert blob[:3] == b"\x1f\x8b\x08"
    assert blob[3] & 0x08 == 0  # no file name
    assert blob[4:8] == b"\0\0\0\0"  # mtime 0


def test_zstd_decompresses_to_the_layer() -> None:
    data = layer_bytes(1 << 20)
    blob = squeeze(data, "zstd", 2)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(blob) == data


def test_short_reads_do_not_move_block_edges() -> None:
    """A source that returns a few bytes at a time (a pipe) gives the same bytes as a file."""

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = memoryview(data)

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            chunk, self._data = self._data[: min(size, 70_001)], self._data[min(size, 70_001) :]
            return bytes(chunk)

    data = layer_bytes(3 << 20)
    sink = io.BytesIO()
    compress.compress_into(Trickle(data), sink, compress.codec("gzip"), 2)  # type: ignore[arg-type]
    assert sink.getvalue() == squeeze(data, "gzip", 1)


def test_compressed_hashes_what_it_yields(tmp_path: Path) -> None:
    data = layer_bytes(2 << 20)
    path = tmp_path / "layer.tar"
    path.write_bytes(data)
    body = compress.Compressed(path, compress.codec("gzip"), 2)
    blob = b"".join(body)
    assert body.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert body.size == len(blob)
    assert gzip.decompress(blob) == data


def test_the_codec_names_its_library_and_settings() -> None:
    gz = compress.codec("gzip")
    assert gz.media_type == LAYER_GZIP
    assert gz.ident.startswith("gzip/isal-") and gz.ident.endswith("/level-2/block-1048576")
    assert compress.codec("zstd").media_type == "application/vnd.oci.image.layer.v1.tar+zstd"
    with pytest.raises(UsageError):
        compress.codec("brotli")


def test_the_cache_is_trusted_only_for_the_same_codec(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    gz = compress.codec("gzip")
    diff_id, digest = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert compress.cached(store, diff_id, gz) is None
    entry = compress.CacheEntry(diff_id, gz.ident, digest, 123, ("127.0.0.1:5000/x",))
    compress.remember(store, entry, gz)
    assert compress.cached(store, diff_id, gz) == entry
    assert compress.cached(store, diff_id, compress.codec("zstd")) is None
    older = compress.Codec("gzip", LAYER_GZIP, 2, "isal-0.1")
    assert compress.cached(store, diff_id, older) is None
    # a damaged cache file is a miss, never an error
    next((store.root / "compressed").iterdir()).write_text('{"diff_id": "../../etc"}')
    assert compress.cached(store, diff_id, gz) is None


@pytest.mark.parametrize(("name", "threads"), [("gzip", 1), ("gzip", 4), ("zstd", 4)])
def test_closing_half_way_stops_every_compression_thread(tmp_path: Path, name: str, threads: int) -> None:
    """An upload that fails after the first chunk must not leave threads compressing."""
    import threading

    path = tmp_path / "noise"
    path.write_bytes(random.Random(3).randbytes(24 << 20))
    before = threading.active_count()
    body = compress.Compressed(path, compress.codec(name), threads)
    next(iter(body))
    body.close()
    assert threading.active_count() == before


def test_none_is_the_layer_itself_and_every_codec_reads_back() -> None:
    data = layer_bytes(1 << 20)
    assert squeeze(data, "none", 4) == data
    assert compress.codec("none").media_type == "application/vnd.oci.image.layer.v1.tar"
    for name in compress.CODECS:
        chosen = compress.codec(name)
        reader = compress.decompressing(io.BytesIO(squeeze(data, name, 2)), chosen.media_type)
        assert reader.read() == data, name
