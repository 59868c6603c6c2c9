"""Sinks for a built image: an OCI image layout directory, or a docker-archive tar.

Both are written from blobs already in the store (digests computed once, when the
blobs were written) and both are deterministic: the same image gives the same
bytes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import IO

from envlock.errors import EnvlockError
from envlock.image import layer as layermod
from envlock.image.model import INDEX, Image
from envlock.lock import write_files
from envlock.store import Store, canonical_json


def write_layout(store: Store, image: Image, directory: Path, ref: str) -> str:
    """Add the image to an OCI layout at ``directory`` (created if needed) under ``ref``."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    manifest = image.manifest_bytes()
    store.put_blob(manifest)
    store.put_blob(image.config_bytes)
    for digest in [image.image_id, *(la.digest for la in image.layers)]:
        target = blobs / digest.split(":")[1]
        if not target.exists():
            tmp = target.with_name(f".{target.name}.tmp")
            try:
                os.link(store.blob_path(digest), tmp)
            except OSError:
                shutil.copyfile(store.blob_path(digest), tmp)
            tmp.replace(target)
    manifest_digest = image_manifest_digest(image)
    (blobs / manifest_digest.split(":")[1]).write_bytes(manifest)
    index_path = directory / "index.json"
    try:
        entries = json.loads(index_path.read_text()).get("manifests", [])
    except (OSError, ValueError):
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
    entries.sort(key=lambda e: (e["annotations"]["org.opencontainers.image.ref.name"], e["digest"]))
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
    """A ``docker load`` archive (manifest.json format), written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as fh:
            docker_archive_into(store, image, fh, tags)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def docker_archive_into(store: Store, image: Image, fh: IO[bytes], tags: list[str]) -> None:
    """Write the ``docker load`` archive of ``image`` to a writable stream (no seeking).

    Deterministic: the same image and tags give the same bytes.  Raises
    ``EnvlockError`` when a blob is missing from the store.
    """
    config_name = f"blobs/sha256/{image.image_id.split(':')[1]}"
    layer_names = [f"blobs/sha256/{la.digest.split(':')[1]}" for la in image.layers]
    manifest = [{"Config": config_name, "RepoTags": sorted(tags), "Layers": layer_names}]
    seen: set[str] = set()

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), layermod.MTIME, 0o644
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=fh, mode="w|", format=layermod.FORMAT) as tar:
        setattr(tar, "copybufsize", 1 << 20)  # noqa: B010 (not in the stubs)
        add_bytes(tar, config_name, image.config_bytes)
        for la, name in zip(image.layers, layer_names, strict=True):
            if name in seen:
                continue
            seen.add(name)
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = la.size, layermod.MTIME, 0o644
            try:
                src = store.blob_path(la.digest).open("rb")
            except FileNotFoundError:
                raise EnvlockError(
                    f"layer {la.digest} is not in the store {store.root}", "build the image again"
                ) from None
            with src:
                tar.addfile(info, src)
        add_bytes(tar, "manifest.json", canonical_json(manifest))
