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
import shutil
import tarfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Any

from envlock.errors import CheckFailed
from envlock.image.extract import within
from envlock.image.model import Layer
from envlock.image.venv import PREFIX, cached_layer
from envlock.lock import Package
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


def _safe(name: str) -> str:
    path = PurePosixPath(name.lstrip("./") if name.startswith("./") else name)
    if path.is_absolute() or ".." in path.parts:
        raise CheckFailed(f"conda package member {name!r} escapes the prefix", "the archive is malformed")
    return path.as_posix()


def _member_target(dest: Path, name: str) -> Path:
    """Where an archive member goes under ``dest``; never outside it, symlinks included."""
    target = within(dest, _safe(name))
    if target is None:
        raise CheckFailed(f"conda package member {name!r} escapes the prefix", "the archive is malformed")
    return target


def _extract_tar(tar: tarfile.TarFile, dest: Path) -> None:
    """Regular files, directories and symlinks only; modes reduced to the exec bit."""
    for member in tar:
        if PurePosixPath(member.name).as_posix() in ("", "."):
            continue
        target = _member_target(dest, member.name)
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.issym():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            target.symlink_to(member.linkname)
        elif member.islnk():
            source = _member_target(dest, member.linkname)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            shutil.copyfile(source, target)
            target.chmod(source.stat().st_mode & 0o777)
        elif member.isfile():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            fh = tar.extractfile(member)
            assert fh is not None
            with fh, target.open("wb") as out:
                shutil.copyfileobj(fh, out, 1 << 20)
            target.chmod(0o755 if member.mode & 0o111 else 0o644)


@contextmanager
def _zst_tar(stream: IO[bytes]) -> Iterator[tarfile.TarFile]:
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(stream)
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        yield tar


def unpack(package: Package, archive: Path, pkg_dir: Path, info_dir: Path) -> None:
    """Unpack an archive: package files into ``pkg_dir``, ``info/`` into ``info_dir``."""
    name = package.filename
    try:
        if name.endswith(".conda"):
            with zipfile.ZipFile(archive) as zf:
                members = zf.namelist()
                for prefix, dest in (("info-", info_dir.parent), ("pkg-", pkg_dir)):
                    inner = [m for m in members if m.startswith(prefix) and m.endswith(".tar.zst")]
                    if len(inner) != 1:
                        raise CheckFailed(f"{name}: not a .conda package (no {prefix}*.tar.zst)")
                    with zf.open(inner[0]) as raw, _zst_tar(raw) as tar:
                        _extract_tar(tar, dest)
        elif name.endswith(".tar.bz2"):
            with tarfile.open(archive, "r:bz2") as tar:
                staged = pkg_dir.parent / "all"
                _extract_tar(tar, staged)
            if (staged / "info").is_dir():
                shutil.move(str(staged / "info"), str(info_dir))
            for child in sorted(staged.iterdir()):
                shutil.move(str(child), str(pkg_dir / child.name))
            staged.rmdir()
        else:
            raise CheckFailed(f"{name}: unknown conda package format", "expected .conda or .tar.bz2")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, CheckFailed):
            raise
        raise CheckFailed(f"{package.name} {package.version}: cannot unpack {name}: {exc}") from None


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
    """Unpack one package into ``prefix``; returns its ``conda-meta`` record."""
    check_md5(package, archive)
    pkg_dir, info_dir = work / "pkg", work / "info"
    shutil.rmtree(work, ignore_errors=True)
    pkg_dir.mkdir(parents=True)
    unpack(package, archive, pkg_dir, info_dir)
    try:
        index = json.loads((info_dir / "index.json").read_text("utf-8"))
    except (OSError, ValueError):
        raise CheckFailed(f"{package.filename}: no readable info/index.json") from None
    noarch_python = index.get("noarch") == "python"
    paths_file = info_dir / "paths.json"
    entries: list[dict[str, Any]] = []
    if paths_file.is_file():
        entries = json.loads(paths_file.read_text("utf-8")).get("paths", [])
    else:  # very old packages: info/files, no placeholders known
        listing = info_dir / "files"
        names = listing.read_text("utf-8").splitlines() if listing.is_file() else []
        entries = [{"_path": n} for n in names if n]
    listed = {e["_path"] for e in entries}
    for extra in sorted(p for p in pkg_dir.rglob("*") if not p.is_dir() or p.is_symlink()):
        rel = extra.relative_to(pkg_dir).as_posix()
        if rel not in listed:
            entries.append({"_path": rel})
    files: list[str] = []
    for entry in sorted(entries, key=lambda e: str(e["_path"])):
        rel = _safe(str(entry["_path"]))
        source = pkg_dir / rel
        if not source.exists() and not source.is_symlink():
            continue
        dest = _member_target(prefix, _target(rel, noarch_python, python))
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() or dest.is_symlink():
            dest.unlink()
        shutil.move(str(source), str(dest))
        placeholder = entry.get("prefix_placeholder")
        if placeholder and dest.is_file() and not dest.is_symlink():
            data = dest.read_bytes()
            if entry.get("file_mode", "text") == "binary":
                data = replace_binary(data, placeholder.encode(), PREFIX.encode())
            else:
                data = data.replace(placeholder.encode(), PREFIX.encode())
            mode = dest.stat().st_mode
            dest.write_bytes(data)
            dest.chmod(mode & 0o777)
        files.append(_target(rel, noarch_python, python))
    record: dict[str, Any] = {
        "name": package.name,
        "version": package.version,
        "build": package.build,
        "build_number": int(index.get("build_number", 0)),
        "channel": package.channel,
        "subdir": package.subdir,
        "sha256": package.sha256,
        "md5": package.md5,
        "fn": package.filename,
        "depends": list(package.depends),
        "files": sorted(files),
    }
    if index.get("noarch"):
        record["noarch"] = index["noarch"]
    shutil.rmtree(work, ignore_errors=True)
    return record


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
