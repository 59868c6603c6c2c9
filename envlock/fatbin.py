"""GPU architectures read from the CUDA fat binaries inside a locked wheel, without cuobjdump.

nvcc embeds device code in host libraries as fat binaries: a container header (magic
``0xBA55ED50``, version 1, header size 16, size of the entries that follow) and entries, each
with its own header: kind (1 = PTX, 2 = ELF/cubin), header size, padded payload size, and
the target architecture (``10 * major + minor``) at byte 28.  Payloads may be compressed;
only the headers are read.  The layout is the one CUDA's ``fatbinary_section.h`` declares for
the container and that ``cuobjdump --list-elf/--list-ptx`` prints per entry; it is checked here
against every header (version, sizes, kinds) so that a stray magic number in other data is
skipped, not believed.

Wheels are read member by member as a forward-only stream (a deflated member cannot seek
back), and the whole wheel is re-hashed in a second thread against the lock's sha256: the
store is not trusted.  Results are cached in the store by that sha256 (``archs/HEX.json``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
import tempfile
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from envlock.errors import CheckFailed
from envlock.gpuarch import BuildArchs, Capability, from_number
from envlock.lock import Package, PlatformLock

MAGIC = struct.pack("<I", 0xBA55ED50)
CHUNK = 8 << 20
CACHE_SCHEMA = "envlock.archs/v1"
KIND_PTX, KIND_ELF = 1, 2

# locked wheel name -> the members that hold the framework's own kernels
CARRIERS: dict[str, re.Pattern[str]] = {
    "torch": re.compile(r"^torch/lib/libtorch_cuda[^/]*\.so$"),
    "jax-cuda12-plugin": re.compile(r"^jax_cuda12_plugin/[^/]*\.so$"),
    "jax-cuda13-plugin": re.compile(r"^jax_cuda13_plugin/[^/]*\.so$"),
}


@dataclass(frozen=True)
class Scan:
    """What one binary holds: SASS and PTX capabilities (as ``10 * major + minor``) and containers."""

    sass: frozenset[int]
    ptx: frozenset[int]
    containers: int


class _Forward:
    """A forward-only window over a stream: find bytes, read at offsets never behind the window."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.buf = bytearray()
        self.start = 0  # absolute offset of buf[0]
        self.eof = False

    @property
    def end(self) -> int:
        return self.start + len(self.buf)

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self.fh.read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def skip_to(self, offset: int) -> None:
        if offset <= self.end:
            del self.buf[: offset - self.start]
        else:
            missing = offset - self.end
            self.buf.clear()
            while missing > 0 and not self.eof:
                got = self.fh.read(min(missing, CHUNK))
                if not got:
                    self.eof = True
                    break
                missing -= len(got)
        self.start = offset

    def get(self, offset: int, size: int) -> bytes | None:
        self.skip_to(offset)
        while len(self.buf) < size:
            if not self._more():
                return None
        return bytes(self.buf[:size])

    def find(self, needle: bytes) -> int | None:
        while True:
            i = self.buf.find(needle)
            if i >= 0:
                return self.start + i
            keep = len(needle) - 1
            self.skip_to(max(self.start, self.end - keep))
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


def scan(fh: IO[bytes]) -> Scan:
    """Every fat-binary container in a binary stream, read forward once."""
    window = _Forward(fh)
    sass: set[int] = set()
    ptx: set[int] = set()
    containers = 0
    position = 0
    while True:
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
        for kind, arch in entries:
            if not 10 <= arch <= 1000:
                continue
            (ptx if kind == KIND_PTX else sass if kind == KIND_ELF else set()).add(arch)
    return Scan(frozenset(sass), frozenset(ptx), containers)


def scan_wheel(path: Path, members: re.Pattern[str]) -> tuple[Scan, list[str]]:
    """Scan the members of a wheel (a zip) whose names match ``members``; their union."""
    sass: set[int] = set()
    ptx: set[int] = set()
    containers = 0
    names = []
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not members.match(info.filename):
                    continue
                names.append(info.filename)
                with zf.open(info) as fh:
                    found = scan(fh)
                sass |= found.sass
                ptx |= found.ptx
                containers += found.containers
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise CheckFailed(f"{path}: cannot read the wheel: {exc}", "run: envlock store fsck") from None
    return Scan(frozenset(sass), frozenset(ptx), containers), names


def _sha256(path: Path, out: dict[str, str]) -> None:
    h = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
        out["sha256"] = h.hexdigest()
    except OSError as exc:
        out["error"] = str(exc)


def read_verified(path: Path, sha256: str, members: re.Pattern[str]) -> tuple[Scan, list[str]]:
    """``scan_wheel`` while the file is re-hashed in another thread; a mismatch is ``CheckFailed``."""
    result: dict[str, str] = {}
    hasher = threading.Thread(target=_sha256, args=(path, result), daemon=True)
    hasher.start()
    try:
        found = scan_wheel(path, members)
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
    path = _cache_path(store, sha256)
    path.parent.mkdir(parents=True, exist_ok=True)
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
        found, names = read_verified(path, sha, members)
        cached = {
            "schema": CACHE_SCHEMA,
            "sha256": sha,
            "file": package.filename,
            "members": names,
            "containers": found.containers,
            "sass": sorted(found.sass),
            "ptx": sorted(found.ptx),
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


__all__ = ["Capability", "Scan", "archs_of", "locked_archs", "scan", "scan_wheel"]
