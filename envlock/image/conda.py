"""conda packages as a layer: verified archives extracted into the ``/opt/env`` prefix.

No conda, no solver, no container: each locked package (already in the store, its sha256
checked by ``envlock.fetch``) is checked against its md5 too, then its files are unpacked
(``.tar.bz2``, or ``.conda``: a zip holding ``pkg-*.tar.zst`` and ``info-*.tar.zst``) into
a staging prefix.  Files listed in ``info/paths.json`` with a ``prefix_placeholder`` get
the build prefix replaced by ``/opt/env``: in text files the string is replaced, in binary
files each NUL-terminated string holding it is rewritten in place and padded with NUL
bytes to its old length, as conda does.  ``noarch: python`` packages go to the target
Python's ``site-packages`` (and ``python-scripts/`` to ``bin/``).

Each package gets a ``conda-meta/NAME-VERSION-BUILD.json`` with a fixed set of fields
(name, version, build, build_number, channel, subdir, fn, sha256, md5, depends, noarch,
files): no timestamps, no host paths and no download URL (a mirror holds the same
environment, as the env ID says), so the layer has the same bytes on every build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from envlock.errors import CheckFailed
from envlock.image.extract import (
    UnsafeMember,
    boundary,
    clear,
    existing,
    link_target,
    member_name,
    read_regular,
    real_parent,
    regular_file,
)
from envlock.image.model import Layer
from envlock.image.venv import PREFIX, cached_layer
from envlock.lockfile import Package
from envlock.store import Store, canonical_json

LAYER_FORMAT = "envlock-conda-layer/1"


def has_python(packages: Sequence[Package]) -> bool:
    """Whether the conda packages bring their own interpreter (``/opt/env/bin/python``)."""
    return any(p.manager == "conda" and p.name == "python" for p in packages)


def check_md5(package: Package, path: Path) -> None:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    if package.md5 and digest.hexdigest() != package.md5:
        raise CheckFailed(
            f"{package.name} {package.version}: md5 mismatch for {package.filename}: "
            f"expected {package.md5}, got {digest.hexdigest()}",
            "the file changed since it was locked; nothing was built",
        )


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr() or member.isblk():
        return "device node"
    if member.isfifo():
        return "fifo"
    return f"member of tar type {member.type!r}"


def _write_new(target: Path, source: IO[bytes], executable: bool) -> None:
    """A new regular file (never through a symlink, never over an existing one)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    target.chmod(0o755 if executable else 0o644)


def _extract_tar(tar: tarfile.TarFile, dest: Path) -> None:
    """Regular files, directories, symlinks and hard links to regular files, under ``dest``
    only: no member is written through a symlink, no link points outside, nothing outside
    ``dest`` is read (see :mod:`envlock.image.extract`).  Modes reduced to the exec bit.

    Raises:
        UnsafeMember: for the first member that breaks a rule (devices and fifos included).
    """
    for member in tar:
        name = member_name(member.name)
        if not name:
            continue
        if member.isdir():
            path = real_parent(dest, name)
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                raise UnsafeMember(f"directory member {name!r} would replace a file or symlink")
            path.mkdir(exist_ok=True)
            continue
        if not (member.isreg() or member.issym() or member.islnk()):
            raise UnsafeMember(
                f"member {name!r} is a {_kind(member)}; conda packages hold files, directories and links"
            )
        target = real_parent(dest, name)
        clear(target, name)
        if member.issym():
            link_target(name, member.linkname)  # checked; written as the package has it
            target.symlink_to(member.linkname)
        elif member.islnk():
            try:
                linked = member_name(member.linkname)
                source = regular_file(dest, linked) if linked else None
            except UnsafeMember as exc:
                raise UnsafeMember(f"hard link {name!r}: {exc.message}") from None
            if source is None:
                raise UnsafeMember(
                    f"hard link {name!r} points to {member.linkname!r}, "
                    "which is not a file before it in the package"
                )
            executable = bool(source.lstat().st_mode & 0o111)
            fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as linked_file:
                _write_new(target, linked_file, executable)
        else:
            fh = tar.extractfile(member)
            assert fh is not None
            with fh:
                _write_new(target, fh, bool(member.mode & 0o111))


@contextmanager
def _zst_tar(stream: IO[bytes]) -> Iterator[tarfile.TarFile]:
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(stream)
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        yield tar


def unpack(package: Package, archive: Path, work: Path) -> tuple[Path, Path]:
    """Unpack an archive under ``work``; returns ``(pkg_dir, meta_dir)``: the package's
    files under ``pkg_dir``, its ``info/`` as ``meta_dir/info``.

    Raises:
        UnsafeMember, CheckFailed, and what the decompressors raise (the caller's
        :func:`~envlock.image.extract.boundary` names the archive).
    """
    name = package.filename
    pkg_dir, meta = work / "pkg", work / "meta"
    pkg_dir.mkdir(parents=True)
    meta.mkdir()
    if name.endswith(".conda"):
        with zipfile.ZipFile(archive) as zf:
            members = zf.namelist()
            for prefix, dest in (("info-", meta), ("pkg-", pkg_dir)):
                inner = [m for m in members if m.startswith(prefix) and m.endswith(".tar.zst")]
                if len(inner) != 1:
                    raise CheckFailed(f"not a .conda package: {len(inner)} {prefix}*.tar.zst members")
                with zf.open(inner[0]) as raw, _zst_tar(raw) as tar:
                    _extract_tar(tar, dest)
    elif name.endswith(".tar.bz2"):
        staged = work / "all"
        staged.mkdir()
        with tarfile.open(archive, "r:bz2") as tar:
            _extract_tar(tar, staged)
        for child in sorted(staged.iterdir()):
            child.rename((meta if child.name == "info" else pkg_dir) / child.name)
        staged.rmdir()
    else:
        raise CheckFailed("unknown conda package format", "expected .conda or .tar.bz2")
    return pkg_dir, meta


@dataclass(frozen=True)
class PathEntry:
    """One file of a package, from ``info/paths.json`` (conda's ``paths_version`` 1)."""

    path: str  # a member_name, relative to the prefix
    placeholder: str | None = None  # the build prefix to replace, if any
    binary: bool = False  # file_mode "binary": replace inside NUL-terminated strings


def _json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise CheckFailed(f"{what} is not UTF-8 JSON ({exc})") from None


def parse_index(data: bytes | None) -> tuple[int, str | None]:
    """``(build_number, noarch)`` from ``info/index.json``.

    Raises:
        CheckFailed: missing, not JSON, not an object, or fields of the wrong types.
    """
    if data is None:
        raise CheckFailed("the package has no info/index.json")
    index = _json(data, "info/index.json")
    if not isinstance(index, dict):
        raise CheckFailed("info/index.json is not a JSON object")
    build_number = index.get("build_number", 0)
    noarch = index.get("noarch")
    if not isinstance(build_number, int) or isinstance(build_number, bool) or build_number < 0:
        raise CheckFailed(f"info/index.json: build_number {build_number!r} is not a number")
    if noarch is not None and not isinstance(noarch, str):
        raise CheckFailed(f"info/index.json: noarch {noarch!r} is not a string")
    return build_number, noarch or None


def parse_paths(data: bytes) -> list[PathEntry]:
    """The entries of ``info/paths.json``, each path confined by
    :func:`~envlock.image.extract.member_name`.

    Raises:
        CheckFailed: not JSON, ``paths`` not a list of objects, ``_path`` not a safe
            relative path, ``prefix_placeholder`` not a string, ``file_mode`` not
            ``text`` or ``binary``.
    """
    doc = _json(data, "info/paths.json")
    paths = doc.get("paths") if isinstance(doc, dict) else None
    if not isinstance(paths, list):
        raise CheckFailed("info/paths.json has no list of paths")
    out: list[PathEntry] = []
    for i, entry in enumerate(paths):
        if not isinstance(entry, dict):
            raise CheckFailed(f"info/paths.json: entry {i} is not an object")
        try:
            path = member_name(entry.get("_path"))
        except UnsafeMember as exc:
            raise UnsafeMember(f"info/paths.json: entry {i}: {exc.message}") from None
        placeholder = entry.get("prefix_placeholder")
        mode = entry.get("file_mode", "text")
        if placeholder is not None and (not isinstance(placeholder, str) or not placeholder):
            raise CheckFailed(f"info/paths.json: {path}: prefix_placeholder {placeholder!r} is not a string")
        if mode not in ("text", "binary"):
            raise CheckFailed(f"info/paths.json: {path}: file_mode {mode!r} is not 'text' or 'binary'")
        if path:
            out.append(PathEntry(path, placeholder, mode == "binary"))
    return out


def _listing(meta: Path) -> list[PathEntry]:
    """What a package installs: ``info/paths.json``, or ``info/files`` for very old
    packages (no placeholders known)."""
    paths = read_regular(meta, "info/paths.json")
    if paths is not None:
        return parse_paths(paths)
    listing = read_regular(meta, "info/files")
    names = listing.decode("utf-8").splitlines() if listing is not None else []
    return [PathEntry(member_name(n)) for n in names if n and member_name(n)]


def _unlisted(pkg_dir: Path) -> Iterator[str]:
    """Files and symlinks under ``pkg_dir`` (symlinked directories are not entered)."""
    for dirpath, dirnames, filenames in os.walk(pkg_dir):
        rel = os.path.relpath(dirpath, pkg_dir)
        for name in dirnames + filenames:
            if name in filenames or Path(dirpath, name).is_symlink():
                yield name if rel == "." else f"{rel}/{name}"


def replace_binary(data: bytes, placeholder: bytes, prefix: bytes) -> bytes:
    """conda's binary prefix replacement: each NUL-terminated string that holds the
    placeholder gets the new prefix and keeps its length, padded with NUL bytes."""
    if len(prefix) > len(placeholder):
        raise CheckFailed(f"prefix {prefix.decode()} is longer than the package's placeholder")
    out = bytearray()
    pos = 0
    while (start := data.find(placeholder, pos)) >= 0:
        end = data.find(b"\0", start)
        end = len(data) if end < 0 else end
        segment = data[start:end]
        new = segment.replace(placeholder, prefix)
        out += data[pos:start] + new + b"\0" * (len(segment) - len(new))
        pos = end
    out += data[pos:]
    return bytes(out)


def _target(relpath: str, noarch_python: bool, python: str) -> str:
    if noarch_python:
        if relpath.startswith("site-packages/"):
            return f"lib/python{python}/" + relpath
        if relpath.startswith("python-scripts/"):
            return "bin/" + relpath.removeprefix("python-scripts/")
    return relpath


def install_package(package: Package, archive: Path, prefix: Path, python: str, work: Path) -> dict[str, Any]:
    """Unpack one package into ``prefix``; returns its ``conda-meta`` record.

    This is the package archive's one boundary: whatever is wrong with it (a member that
    would leave the stage, a truncated stream, metadata of the wrong types) is one
    ``CheckFailed`` (exit 1) naming the package, its file and the member.

    Raises:
        CheckFailed: md5 mismatch, or anything wrong with the archive.
    """
    check_md5(package, archive)
    decoder_errors: tuple[type[BaseException], ...] = ()
    if package.filename.endswith(".conda"):
        import zstandard  # the "conda" extra

        decoder_errors = (zstandard.ZstdError,)
    label = f"{package.name} {package.version} ({package.filename})"
    shutil.rmtree(work, ignore_errors=True)
    try:
        with boundary(label, *decoder_errors):
            return _install(package, archive, prefix, python, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install(package: Package, archive: Path, prefix: Path, python: str, work: Path) -> dict[str, Any]:
    pkg_dir, meta = unpack(package, archive, work)
    build_number, noarch = parse_index(read_regular(meta, "info/index.json"))
    noarch_python = noarch == "python"
    entries = _listing(meta)
    listed = {e.path for e in entries}
    entries += [PathEntry(rel) for rel in sorted(_unlisted(pkg_dir)) if rel not in listed]
    # every source is found before anything moves: never through a symlinked directory
    unique = {e.path: e for e in reversed(entries)}  # a path listed twice: its first entry
    found = [(unique[path], existing(pkg_dir, path)) for path in sorted(unique)]
    files: list[str] = []
    for entry, source in found:
        if source is None or (source.is_dir() and not source.is_symlink()):
            continue
        placed = _target(entry.path, noarch_python, python)
        dest = real_parent(prefix, placed)
        clear(dest, placed)
        source.rename(dest)
        if entry.placeholder and stat.S_ISREG(dest.lstat().st_mode):
            _replace_prefix(dest, entry)
        files.append(placed)
    record: dict[str, Any] = {
        "name": package.name,
        "version": package.version,
        "build": package.build,
        "build_number": build_number,
        "channel": package.channel,
        "subdir": package.subdir,
        "sha256": package.sha256,
        "md5": package.md5,
        "fn": package.filename,
        "depends": list(package.depends),
        "files": sorted(files),
    }
    if noarch:
        record["noarch"] = noarch
    return record


def _replace_prefix(dest: Path, entry: PathEntry) -> None:
    assert entry.placeholder is not None
    fd = os.open(dest, os.O_RDWR | os.O_NOFOLLOW)
    with os.fdopen(fd, "r+b") as fh:
        data = fh.read()
        if entry.binary:
            data = replace_binary(data, entry.placeholder.encode(), PREFIX.encode())
        else:
            data = data.replace(entry.placeholder.encode(), PREFIX.encode())
        fh.seek(0)
        fh.write(data)
        fh.truncate()


def install_into(stage: Path, packages: Sequence[tuple[Package, Path]], python: str) -> None:
    """Install every package into ``stage/opt/env``, in name order, and write conda-meta."""
    prefix = stage / PREFIX.strip("/")
    meta = prefix / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "history").write_bytes(b"")
    work = stage.parent / f"{stage.name}-work"
    try:
        for package, archive in sorted(packages, key=lambda p: p[0].name):
            record = install_package(package, archive, prefix, python, work)
            name = f"{package.name}-{package.version}-{package.build}.json"
            (meta / name).write_bytes(json.dumps(record, indent=2, sort_keys=True).encode() + b"\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def layer_key(packages: Sequence[Package], python: str) -> str:
    data = {
        "format": LAYER_FORMAT,
        "prefix": PREFIX,
        "python": python,
        "packages": sorted((p.name, p.sha256, p.channel or "", p.filename) for p in packages),
    }
    return hashlib.sha256(canonical_json(data)).hexdigest()


def build_layer(
    store: Store, packages: Sequence[tuple[Package, Path]], python: str, created_by: str
) -> Layer:
    """The conda packages as one deterministic layer; cached by its inputs."""
    key = layer_key([p for p, _ in packages], python)
    return cached_layer(store, key, created_by, lambda stage: install_into(stage, packages, python))
