"""Sinks for a built image: an OCI image layout directory, or a docker-archive tar.

Both are written from blobs already in the store (digests computed once, when the
blobs were written) and both are deterministic: the same image gives the same
bytes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from envlock.errors import CheckFailed, EnvlockError, UsageError
from envlock.image import layer as layermod
from envlock.image import manifest as manifest_mod
from envlock.image.model import INDEX, Image
from envlock.lockfile import write_files
from envlock.store import Store, canonical_json


def check_layout_target(directory: Path) -> None:
    """What ``--oci DIR`` may name: a directory that does not exist yet (its parent must),
    an empty directory, or an existing OCI image layout (the image is added to it).

    Raises:
        UsageError: (exit 2) for a file, a missing parent, a non-empty directory that is
            not a layout, or a layout whose ``oci-layout``/``index.json`` cannot be read.
    """
    if directory.is_symlink() and not directory.exists():
        raise UsageError(f"--oci {directory}: a dangling symbolic link", "name a directory")
    if not directory.exists():
        if not directory.absolute().parent.is_dir():
            raise UsageError(
                f"--oci {directory}: the parent directory {directory.absolute().parent} does not exist",
                "create it first; envlock creates only the layout directory itself",
            )
        return
    if not directory.is_dir():
        raise UsageError(
            f"--oci {directory} is not a directory", "name a new or empty directory, or an OCI layout"
        )
    try:
        names = {p.name for p in directory.iterdir()}
    except OSError as exc:
        raise _target_error(exc, directory, "--oci") from None
    if not names:
        return
    if "oci-layout" not in names:
        raise UsageError(
            f"--oci {directory} is a non-empty directory and not an OCI image layout",
            "name a new or empty directory, or an existing OCI layout to add the image to",
        )
    try:
        version = json.loads((directory / "oci-layout").read_bytes()).get("imageLayoutVersion")
        index = (directory / "index.json").read_bytes() if "index.json" in names else b'{"manifests": []}'
        parsed = manifest_mod.parse(index, f"{directory}/index.json")
    except (OSError, ValueError, AttributeError, CheckFailed) as exc:
        why = exc.message if isinstance(exc, CheckFailed) else str(exc)
        raise UsageError(
            f"--oci {directory} is not a readable OCI layout: {why}", "name another directory"
        ) from None
    if version != "1.0.0" or not isinstance(parsed, manifest_mod.Index):
        raise UsageError(
            f"--oci {directory} is not an OCI image layout version 1.0.0", "name another directory"
        )


def check_archive_target(path: Path) -> None:
    """What ``--docker-archive FILE`` may name: a new file in an existing directory, or an
    existing file (replaced atomically once the archive is complete).

    Raises:
        UsageError: (exit 2) for a directory or a missing parent directory.
    """
    if path.is_dir():
        raise UsageError(f"--docker-archive {path} is a directory", "name the archive file, e.g. image.tar")
    if not path.absolute().parent.is_dir():
        raise UsageError(
            f"--docker-archive {path}: the directory {path.absolute().parent} does not exist",
            "create it first",
        )
    if path.exists() and not path.is_file():
        raise UsageError(f"--docker-archive {path} is not a regular file", "name a file")


def _target_error(exc: OSError, path: Path, option: str) -> EnvlockError:
    reason = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
        return CheckFailed(f"{option} {path}: {reason}", "free space there and run the command again")
    return UsageError(f"{option} {path}: {reason}", "name a writable location")


def write_layout(store: Store, image: Image, directory: Path, ref: str) -> str:
    """Add the image to an OCI layout at ``directory`` under ``ref`` (see :func:`check_layout_target`).

    Blobs are hard-linked from the store (copied across file systems) after a check that each
    is intact; a blob already in the layout is replaced unless it is the store's own file.

    A new ``directory`` is written whole into a temporary sibling and renamed into place
    (``rename(2)`` is atomic), so no half-written layout is ever seen there, whatever kills
    the export.  An existing layout (or empty directory) is edited under an exclusive
    ``flock(2)`` on the directory, blobs first and ``index.json`` last, each file replaced
    by a rename.  Two exports racing to create the same new directory both succeed: the one
    whose rename loses adds its image to the winner's layout under that lock.

    Raises:
        UsageError: the target is not one ``--oci`` accepts (exit 2).
        CheckFailed: a blob in the store is missing or corrupt (exit 1; nothing is shipped).
    """
    check_layout_target(directory)
    with store.using():
        manifest = image.manifest_bytes()
        store.put_blob(manifest)
        store.put_blob(image.config_bytes)
        digests = [image.image_id, *(la.digest for la in image.layers)]
        store.check_blobs(digests)
        try:
            if not directory.exists() and not directory.is_symlink():
                created = _create_layout(store, image, directory, ref, digests, manifest)
                if created is not None:
                    return created
            with _locked(directory):
                check_layout_target(directory)  # another export may have created it meanwhile
                return _write_layout(store, image, directory, ref, digests, manifest)
        except OSError as exc:
            raise _target_error(exc, directory, "--oci") from None


def _create_layout(
    store: Store, image: Image, directory: Path, ref: str, digests: list[str], manifest: bytes
) -> str | None:
    """Write a new layout beside ``directory`` and rename it into place; ``None`` when
    another export created ``directory`` first (nothing of this one is left behind)."""
    import tempfile

    parent = directory.absolute().parent
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=parent))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700; a layout is a plain directory
        digest = _write_layout(store, image, staging, ref, digests, manifest)
        try:
            staging.rename(directory)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR) or directory.exists():
                return None  # lost the race: the caller adds to the winner's layout
            raise
        return digest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive ``flock(2)`` on ``directory`` itself (no lock file is added to the layout)."""
    import fcntl

    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_layout(
    store: Store, image: Image, directory: Path, ref: str, digests: list[str], manifest: bytes
) -> str:
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for digest in digests:
        source = store.blob_path(digest)
        target = blobs / source.name
        with contextlib.suppress(OSError):
            if source.samefile(target):
                continue
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
    manifest_digest = image_manifest_digest(image)
    write_files({blobs / manifest_digest[7:]: manifest.decode()})
    index_path = directory / "index.json"
    try:
        entries = json.loads(index_path.read_text()).get("manifests", [])
    except FileNotFoundError:
        entries = []
    entries = [e for e in entries if e.get("annotations", {}).get("org.opencontainers.image.ref.name") != ref]
    entries.append(
        {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": len(manifest),
            "annotations": {"org.opencontainers.image.ref.name": ref},
        }
    )
    entries.sort(
        key=lambda e: (e.get("annotations", {}).get("org.opencontainers.image.ref.name", ""), e["digest"])
    )
    write_files(
        {
            index_path: json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}, indent=2)
            + "\n",
            directory / "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}) + "\n",
        }
    )
    return manifest_digest


def image_manifest_digest(image: Image) -> str:
    from envlock.image.model import digest_of

    return digest_of(image.manifest_bytes())


def write_docker_archive(store: Store, image: Image, path: Path, tags: list[str]) -> None:
    """A ``docker load`` archive (manifest.json format), written atomically: an existing file
    is replaced only once the new archive is complete (see :func:`check_archive_target`).

    Raises:
        UsageError: the target is not one ``--docker-archive`` accepts (exit 2).
        CheckFailed: a layer in the store is missing or corrupt (exit 1; nothing is written).
    """
    check_archive_target(path)
    with store.using():
        store.check_blobs([la.digest for la in image.layers])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as fh:
                docker_archive_into(store, image, fh, tags)
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _target_error(exc, path, "--docker-archive") from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


ArchivePart = bytes | tuple[Path, int]  # bytes as they are, or (a store blob, its size)


def docker_archive_parts(store: Store, image: Image, tags: list[str]) -> list[ArchivePart]:
    """The ``docker load`` archive of ``image`` as pieces, in order: tar headers, small files
    and padding as ``bytes``; each layer as ``(blob path, size)``, for the caller to copy or
    ``sendfile`` without reading it through Python.

    The pieces concatenate to what ``tarfile`` writes for these members in ``layer.FORMAT``
    (POSIX.1-2001 pax; each member padded to 512 bytes, two zero blocks at the end, the whole
    padded to tarfile's 10240-byte record), so the archive is deterministic: the same image
    and tags give the same bytes.  Raises ``EnvlockError`` when a layer blob is missing or
    does not have its manifest size.
    """
    config_name = f"blobs/sha256/{image.image_id[7:]}"
    layer_names = [f"blobs/sha256/{store.blob_path(la.digest).name}" for la in image.layers]
    manifest = [{"Config": config_name, "RepoTags": sorted(tags), "Layers": layer_names}]
    parts: list[ArchivePart] = []
    offset = 0

    def member(name: str, size: int, data: ArchivePart) -> None:
        nonlocal offset
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, layermod.MTIME, 0o644
        header = info.tobuf(layermod.FORMAT, "utf-8", "surrogateescape")
        padding = bytes(-size % tarfile.BLOCKSIZE)
        parts.extend(p for p in (header, data, padding) if p)
        offset += len(header) + size + len(padding)

    member(config_name, len(image.config_bytes), image.config_bytes)
    seen: set[str] = set()
    for la, name in zip(image.layers, layer_names, strict=True):
        if name in seen:
            continue
        seen.add(name)
        path = store.blob_path(la.digest)
        try:
            held = path.stat().st_size
        except FileNotFoundError:
            raise EnvlockError(
                f"layer {la.digest} is not in the store {store.root}", "build the image again"
            ) from None
        if held != la.size:
            raise EnvlockError(
                f"layer {la.digest} in the store {store.root} is {held} bytes, its manifest says {la.size}",
                "run `envlock store fsck`; building the image again restores it",
            )
        member(name, la.size, (path, la.size))
    data = canonical_json(manifest)
    member("manifest.json", len(data), data)
    end = bytes(2 * tarfile.BLOCKSIZE)
    offset += len(end)
    parts.append(end + bytes(-offset % tarfile.RECORDSIZE))
    return parts


def archive_size(parts: list[ArchivePart]) -> int:
    """The byte count of the archive ``parts`` make."""
    return sum(len(p) if isinstance(p, bytes) else p[1] for p in parts)


def docker_archive_into(store: Store, image: Image, fh: IO[bytes], tags: list[str]) -> None:
    """Write the ``docker load`` archive of ``image`` to a writable stream (no seeking).

    Deterministic (see :func:`docker_archive_parts`).  The caller holds the store
    (``store.using()``) and has checked the blobs (``store.check_blobs``).  Raises
    ``EnvlockError`` when a blob is missing from the store.
    """
    for part in docker_archive_parts(store, image, tags):
        if isinstance(part, bytes):
            fh.write(part)
            continue
        path, size = part
        with path.open("rb") as src:
            left = size
            while left and (chunk := src.read(min(left, 1 << 20))):
                fh.write(chunk)
                left -= len(chunk)
        if left:
            raise EnvlockError(f"{path} in the store {store.root} shrank while it was read")
