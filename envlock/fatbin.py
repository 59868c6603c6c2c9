"""GPU architectures read from the CUDA fat binaries inside a locked wheel, without cuobjdump.

nvcc embeds device code in host libraries as fat binaries: a container header (magic
``0xBA55ED50``, version 1, header size 16, size of the entries that follow: ``fatBinaryHeader``
and ``FATBIN_MAGIC`` in the CUDA toolkit's ``fatbinary.h``) and entries, each with its own
header: kind (1 = PTX, 2 = ELF/cubin) at byte 0, header size at 4, padded payload size at 8,
and the target architecture (``10 * major + minor``) at byte 28.  NVIDIA does not publish the
entry header; these offsets are the ones every entry of NVIDIA's own wheels has
(nvidia-cuda-cupti-cu12 12.9.79: sm_50..sm_121; torch 2.9.1+cu128: exactly PyTorch's
TORCH_CUDA_ARCH_LIST for CUDA 12.8), and every header is checked (version, sizes, kinds, the
container ending where it says) so that a stray magic number in other data is skipped, not
believed.  Payloads may be compressed; only the headers are read.

Wheels are read member by member as a forward-only stream (a deflated member cannot seek
back), the first ``SAMPLE`` containers of each library, and the whole wheel is re-hashed in a
second thread against the lock's sha256: the store is not trusted.  Results are cached in the
store by that sha256 (``archs/HEX.json``).
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from envlock.errors import CheckFailed
from envlock.gpuarch import BuildArchs, from_number

if TYPE_CHECKING:
    from envlock.lockfile import Package, PlatformLock

MAGIC = struct.pack("<I", 0xBA55ED50)
CHUNK = 8 << 20
CACHE_SCHEMA = "envlock.archs/v1"
KIND_PTX, KIND_ELF = 1, 2
# containers read per library: the first ones already hold the build's arch list (libtorch_cuda.so
# of torch 2.9.1+cu128: 393 of its 397 containers carry exactly sm_70..sm_120), and reading all of
# them means inflating ~1 GB where the first 16 lie in its first ~100 MB
SAMPLE = 16

# locked wheel name -> the members that hold the framework's own kernels.  Not JAX: XLA compiles
# its kernels for the GPU at run time, so the sm_XX in jaxlib's plugins say little about it.
CARRIERS: dict[str, re.Pattern[str]] = {
    "torch": re.compile(r"^torch/lib/libtorch_cuda(_cu|_cpp)?\.so$"),  # not _linalg: vendored MAGMA
}


@dataclass(frozen=True)
class Scan:
    """What one binary holds: per architecture (``10 * major + minor``), how many containers carry
    SASS or PTX for it, out of ``containers``."""

    sass: dict[int, int]
    ptx: dict[int, int]
    containers: int

    def common(self) -> tuple[list[int], list[int]]:
        """The architectures that at least half of the containers carry: the build's own target
        list (``TORCH_CUDA_ARCH_LIST``), not the odd kernel a vendored library adds."""
        floor = max(1, (self.containers + 1) // 2)
        return (
            sorted(a for a, n in self.sass.items() if n >= floor),
            sorted(a for a, n in self.ptx.items() if n >= floor),
        )


class _Forward:
    """A forward-only window over a stream: find bytes, read at offsets never behind the window."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.buf = b""
        self.pos = 0  # index in buf of the window's first byte
        self.start = 0  # absolute offset of buf[pos]
        self.eof = False

    @property
    def end(self) -> int:
        return self.start + len(self.buf) - self.pos

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self.fh.read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def skip_to(self, offset: int) -> None:
        if offset <= self.end:
            self.pos += offset - self.start
        else:
            missing = offset - self.end
            self.buf, self.pos = b"", 0
            while missing > 0 and not self.eof:
                got = self.fh.read(min(missing, CHUNK))
                if not got:
                    self.eof = True
                    break
                missing -= len(got)
        self.start = offset

    def get(self, offset: int, size: int) -> bytes | None:
        self.skip_to(offset)
        while len(self.buf) - self.pos < size:
            if not self._more():
                return None
        return self.buf[self.pos : self.pos + size]

    def find(self, needle: bytes) -> int | None:
        while True:
            i = self.buf.find(needle, self.pos)
            if i >= 0:
                return self.start + (i - self.pos)
            self.skip_to(max(self.start, self.end - (len(needle) - 1)))
            if not self._more():
                return None


def _container(window: _Forward, at: int) -> tuple[list[tuple[int, int]], int] | None:
    """Entries (kind, arch) of the container at ``at`` and its end, or None if it is not one."""
    head = window.get(at, 16)
    if head is None:
        return None
    _magic, version, header_size, size = struct.unpack("<IHHQ", head)
    if version != 1 or header_size != 16 or not 0 < size < (1 << 40):
        return None
    end = at + 16 + size
    entries: list[tuple[int, int]] = []
    offset = at + 16
    while offset < end:
        entry = window.get(offset, 32)
        if entry is None:
            return None
        kind, _ev, entry_header, payload = struct.unpack_from("<HHIQ", entry)
        arch = struct.unpack_from("<I", entry, 28)[0]
        if (
            kind not in (1, 2, 4, 8, 16)
            or not 32 <= entry_header <= 4096
            or offset + entry_header + payload > end
        ):
            return None
        entries.append((kind, arch))
        offset += entry_header + payload
    if window.get(end - 1, 1) is None:  # cut short: not a container after all
        return None
    return entries, end


def scan(fh: IO[bytes], limit: int | None = None) -> Scan:
    """The fat-binary containers in a binary stream, read forward once; stops after ``limit``."""
    window = _Forward(fh)
    sass: dict[int, int] = {}
    ptx: dict[int, int] = {}
    containers = 0
    position = 0
    while limit is None or containers < limit:
        window.skip_to(position)
        at = window.find(MAGIC)
        if at is None:
            break
        parsed = _container(window, at)
        if parsed is None:
            position = at + 1
            continue
        entries, position = parsed
        containers += 1
        for kind in (KIND_ELF, KIND_PTX):
            counts = sass if kind == KIND_ELF else ptx
            for arch in {a for k, a in entries if k == kind and 10 <= a <= 1000}:
                counts[arch] = counts.get(arch, 0) + 1
    return Scan(sass, ptx, containers)


def scan_wheel(path: Path, members: re.Pattern[str], limit: int | None = None) -> tuple[Scan, list[str]]:
    """Scan the members of a wheel (a zip) whose names match ``members``, ``limit`` containers each."""
    import zipfile
    import zlib

    sass: dict[int, int] = {}
    ptx: dict[int, int] = {}
    containers = 0
    names = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not members.match(info.filename):
                    continue
                names.append(info.filename)
                with zf.open(info) as fh:
                    found = scan(fh, limit)
                for into, counts in ((sass, found.sass), (ptx, found.ptx)):
                    for arch, n in counts.items():
                        into[arch] = into.get(arch, 0) + n
                containers += found.containers
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise CheckFailed(f"{path}: cannot read the wheel: {exc}", "run: envlock store fsck") from None
    return Scan(sass, ptx, containers), names


def _sha256(path: Path, out: dict[str, str]) -> None:
    import hashlib

    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        out["sha256"] = h.hexdigest()
    except OSError as exc:
        out["error"] = str(exc)


def read_verified(
    path: Path, sha256: str, members: re.Pattern[str], limit: int | None = None
) -> tuple[Scan, list[str]]:
    """``scan_wheel`` while the file is re-hashed in another thread; a mismatch is ``CheckFailed``."""
    import threading

    result: dict[str, str] = {}
    hasher = threading.Thread(target=_sha256, args=(path, result), daemon=True)
    hasher.start()
    try:
        found = scan_wheel(path, members, limit)
    finally:
        hasher.join()
    if result.get("sha256") != sha256:
        raise CheckFailed(
            f"{path}: sha256 is {result.get('sha256') or result.get('error')}, the lock says {sha256}",
            "the store copy rotted or was changed: run envlock store fsck, then envlock build again",
        )
    return found


def _to_archs(data: dict[str, Any], label: str) -> BuildArchs | None:
    sass = tuple(sorted(from_number(int(a)) for a in data["sass"]))
    ptx = tuple(sorted(from_number(int(a)) for a in data["ptx"]))
    if not sass and not ptx:
        return None
    return BuildArchs(sass, ptx, label)


def _cache_path(store: Any, sha256: str) -> Path:
    return Path(store.root) / "archs" / f"{sha256}.json"


def _read_cache(store: Any, sha256: str) -> dict[str, Any] | None:
    try:
        data = json.loads(_cache_path(store, sha256).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(data, dict)
        and data.get("schema") == CACHE_SCHEMA
        and data.get("sha256") == sha256
        and all(
            isinstance(data.get(k), list) and all(isinstance(a, int) for a in data[k])
            for k in ("sass", "ptx")
        )
    )
    return data if ok else None


def _write_cache(store: Any, sha256: str, data: dict[str, Any]) -> None:
    import os
    import tempfile

    path = _cache_path(store, sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
    with store.using():  # a file in tmp/: gc must not take it for a leftover
        fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="archs-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, sort_keys=True)
            Path(tmp).chmod(0o644)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def archs_of(store: Any, package: Package, members: re.Pattern[str]) -> BuildArchs | None:
    """The architectures in a locked wheel that the store holds (None: not in the store, or none found).

    Read once, verified against the package's sha256, then answered from ``archs/HEX.json``.
    """
    from envlock.digest import parse_hex

    sha = parse_hex(package.sha256, source=f"the lock entry of {package.name}")
    label = f"the locked wheel {package.filename} (sha256 {sha[:12]}…, fatbin headers of {{}})"
    cached = _read_cache(store, sha)
    if cached is None:
        path = store.artifact_path(sha)
        if not path.is_file():
            return None
        found, names = read_verified(path, sha, members, SAMPLE)
        sass, ptx = found.common()
        cached = {
            "schema": CACHE_SCHEMA,
            "sha256": sha,
            "file": package.filename,
            "members": names,
            "containers": found.containers,
            "sass": sass,
            "ptx": ptx,
        }
        with contextlib.suppress(OSError):  # a read-only store still answers, uncached
            _write_cache(store, sha, cached)
    return _to_archs(cached, label.format(", ".join(cached.get("members") or ["no member"])))


def locked_archs(store: Any, plat: PlatformLock) -> BuildArchs | None:
    """Architectures of the framework's kernels in a locked platform, read from its wheel if stored."""
    for package in plat.packages:
        pattern = CARRIERS.get(package.name)
        if pattern is None or package.manager != "pip" or not package.filename.endswith(".whl"):
            continue
        return archs_of(store, package, pattern)
    return None


__all__ = ["Scan", "archs_of", "locked_archs", "read_verified", "scan", "scan_wheel"]
