"""Deterministic layer tars.

Every envlock layer has: entries sorted by path, explicit parent directories,
mtime fixed to ``MTIME``, uid/gid 0 with empty user/group names, modes normalised
to 0755/0644 by the exec bit (directories 0755, symlinks 0777), no xattrs, no
device nodes, POSIX pax format.  The same input files give the same bytes on
every machine, whatever its umask, clock or locale.

``MTIME`` is a constant and deliberately not read from ``SOURCE_DATE_EPOCH``:
an ambient variable must not change an environment's identity.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from envlock.errors import CheckFailed

MTIME = 0
FORMAT: Final = tarfile.PAX_FORMAT
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    path: str  # relative POSIX path, no leading "/" or "./"
    kind: str  # "file" | "dir" | "symlink"
    executable: bool = False
    source: Path | None = None  # file content on disk (a zip archive when ``member`` is set)
    data: bytes | None = None  # or in memory
    target: str = ""  # symlink target
    member: str = ""  # or this member of the zip archive ``source``, decompressed as written
    length: int = -1  # the member's uncompressed size
    crc: int = -1  # the member's CRC-32, from the zip's central directory (-1: unknown)

    @property
    def size(self) -> int:
        if self.kind != "file":
            return 0
        if self.data is not None:
            return len(self.data)
        if self.member:
            return self.length
        assert self.source is not None
        return self.source.stat().st_size


def file(path: str, data: bytes, executable: bool = False) -> Entry:
    return Entry(path.strip("/"), "file", executable, data=data)


def zip_member(
    path: str, archive: Path, member: str, length: int, executable: bool = False, crc: int = -1
) -> Entry:
    """A file whose content is ``member`` of the zip ``archive`` (read only when the layer is written)."""
    return Entry(path.strip("/"), "file", executable, source=archive, member=member, length=length, crc=crc)


def symlink(path: str, target: str) -> Entry:
    return Entry(path.strip("/"), "symlink", target=target)


def directory(path: str) -> Entry:
    return Entry(path.strip("/"), "dir")


def scan(root: Path, prefix: str) -> list[Entry]:
    """Entries for everything under ``root``, placed at ``prefix`` in the image."""
    out: list[Entry] = []
    base = prefix.strip("/")
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        here = base if rel == "." else f"{base}/{rel}"
        dirnames.sort()
        for name in dirnames:
            full = Path(dirpath, name)
            if full.is_symlink():
                out.append(symlink(f"{here}/{name}", str(full.readlink())))
            else:
                out.append(directory(f"{here}/{name}"))
        for name in sorted(filenames):
            full = Path(dirpath, name)
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                out.append(symlink(f"{here}/{name}", str(full.readlink())))
            elif stat.S_ISREG(st.st_mode):
                out.append(Entry(f"{here}/{name}", "file", bool(st.st_mode & 0o111), source=full))
    return out


def _with_parents(entries: Iterable[Entry]) -> list[Entry]:
    by_path: dict[str, Entry] = {}
    for e in entries:
        by_path[e.path] = e
        parent = e.path.rpartition("/")[0]
        while parent and parent not in by_path:
            by_path[parent] = directory(parent)
            parent = parent.rpartition("/")[0]
    return [by_path[p] for p in sorted(by_path)]


def _info(e: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(e.path)
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if e.kind == "dir":
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    elif e.kind == "symlink":
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, e.target
    else:
        info.type, info.mode, info.size = (
            tarfile.REGTYPE,
            (0o755 if e.executable else 0o644),
            e.size,
        )
    return info


def write(entries: Iterable[Entry], out: IO[bytes]) -> None:
    """Write the layer tar to ``out`` (a stream; hashing is the caller's sink's job).

    The bytes are what ``tarfile`` writes in ``w|`` mode with UTF-8 names (headers
    come from ``TarInfo.tobuf``), but file content goes to ``out`` in big pieces
    instead of through tarfile's 10 KiB stream buffer, which copies every piece
    many times over.  Zip members are decompressed straight into the tar (zipfile
    checks each one's CRC), so a wheel's files never touch the disk on their way.
    (Decompressing the next members on other threads meanwhile was tried: with a
    worker process per layer already on every core it made builds slower.)
    """
    archives: dict[Path, zipfile.ZipFile] = {}
    offset = 0
    try:
        for e in _with_parents(entries):
            info = _info(e)
            header = info.tobuf(FORMAT, "utf-8", "surrogateescape")
            out.write(header)
            offset += len(header)
            if e.kind != "file":
                continue
            if e.data is not None:
                out.write(e.data)
            elif e.member:
                assert e.source is not None
                if e.source not in archives:
                    archives[e.source] = zipfile.ZipFile(e.source)
                try:
                    with archives[e.source].open(e.member) as fh:
                        _copy(fh, out, info.size, e)
                except (zipfile.BadZipFile, zlib.error) as exc:
                    raise CheckFailed(f"{e.source.name}: member {e.member} is corrupt ({exc})") from None
            else:
                assert e.source is not None
                with e.source.open("rb") as fh:
                    _copy(fh, out, info.size, e)
            padding = -info.size % tarfile.BLOCKSIZE
            if padding:
                out.write(tarfile.NUL * padding)
            offset += info.size + padding
        end = tarfile.BLOCKSIZE * 2
        out.write(tarfile.NUL * (end + -(offset + end) % tarfile.RECORDSIZE))
    finally:
        for archive in archives.values():
            archive.close()


def _copy(src: IO[bytes], out: IO[bytes], size: int, e: Entry) -> None:
    left = size
    while left:
        chunk = src.read(min(left, CHUNK))
        if not chunk:
            raise CheckFailed(f"/{e.path} ended {left} bytes short of its {size} while writing a layer")
        out.write(chunk)
        left -= len(chunk)
