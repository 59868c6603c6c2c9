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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

MTIME = 0
FORMAT = tarfile.PAX_FORMAT


@dataclass(frozen=True)
class Entry:
    path: str  # relative POSIX path, no leading "/" or "./"
    kind: str  # "file" | "dir" | "symlink"
    executable: bool = False
    source: Path | None = None  # file content on disk
    data: bytes | None = None  # or in memory
    target: str = ""  # symlink target

    @property
    def size(self) -> int:
        if self.kind != "file":
            return 0
        if self.data is not None:
            return len(self.data)
        assert self.source is not None
        return self.source.stat().st_size


def file(path: str, data: bytes, executable: bool = False) -> Entry:
    return Entry(path.strip("/"), "file", executable, data=data)


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
        parts = e.path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            by_path.setdefault(parent, directory(parent))
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
    """Write the layer tar to ``out`` (a stream; hashing is the caller's sink's job)."""
    with tarfile.open(fileobj=out, mode="w|", format=FORMAT) as tar:
        setattr(tar, "copybufsize", 1 << 20)  # noqa: B010 (not in the stubs)
        for e in _with_parents(entries):
            info = _info(e)
            if e.kind != "file":
                tar.addfile(info)
            elif e.data is not None:
                import io

                tar.addfile(info, io.BytesIO(e.data))
            else:
                assert e.source is not None
                with e.source.open("rb") as fh:
                    tar.addfile(info, fh)
