"""OCI manifests and indexes from outside, parsed once into typed values before anything uses them.

A manifest or index comes from a registry, a foreign OCI layout, or the store (whose files may
rot): every field envlock reads is checked here, and every digest goes through
:func:`envlock.digest.parse_digest`, so nothing downstream ever names a path with a forged one
(OCI image spec v1.1, "Descriptors" and "Image Manifest"/"Image Index").  Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envlock.digest import parse_digest
from envlock.errors import CheckFailed

INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a blob is, its ``sha256:`` digest and its size in bytes."""

    media_type: str
    digest: str
    size: int
    platform: tuple[str, str] = ("", "")  # (os, architecture), in an index
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """An image manifest: its config and layers, in order."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def blobs(self) -> tuple[str, ...]:
        """The digests this manifest references: config first, then the layers."""
        return (self.config.digest, *(la.digest for la in self.layers))


@dataclass(frozen=True)
class Index:
    """An image index (or Docker manifest list): manifests per platform."""

    manifests: tuple[Descriptor, ...]

    def for_platform(self, os: str = "linux", architecture: str = "amd64") -> str:
        """The digest of the platform's manifest.

        Raises:
            CheckFailed: when the index has none for it.
        """
        for m in self.manifests:
            if m.platform == (os, architecture):
                return m.digest
        raise CheckFailed(f"the base image index has no {os}/{architecture} image")


def load_json(raw: bytes | str, source: str) -> Any:
    """JSON from outside; anything else is ``CheckFailed`` naming ``source``."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckFailed(f"{source} is not valid JSON ({str(exc)[:80]})", _DAMAGED) from None


_DAMAGED = "the file may be damaged or forged; `envlock store fsck` checks the local store"


def _object(value: object, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CheckFailed(f"{source} must be a JSON object, not {type(value).__name__}", _DAMAGED)
    return value


def _strings(value: object, source: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise CheckFailed(f"{source} must map strings to strings", _DAMAGED)
    return dict(value)


def descriptor(value: object, source: str) -> Descriptor:
    """One descriptor: ``mediaType`` (optional string), ``digest``, ``size`` (a non-negative int).

    Raises:
        CheckFailed: (exit 1) for a missing or malformed field, naming ``source``.
    """
    data = _object(value, source)
    digest = parse_digest(data.get("digest"), source=f"{source}.digest")
    size = data.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise CheckFailed(f"{source}.size: {size!r} is not a size in bytes", _DAMAGED)
    media_type = data.get("mediaType", "")
    if not isinstance(media_type, str):
        raise CheckFailed(f"{source}.mediaType must be a string", _DAMAGED)
    plat = _object(data.get("platform", {}), f"{source}.platform")
    os_, arch = plat.get("os", ""), plat.get("architecture", "")
    if not isinstance(os_, str) or not isinstance(arch, str):
        raise CheckFailed(f"{source}.platform must hold strings", _DAMAGED)
    annotations = _strings(data.get("annotations"), f"{source}.annotations")
    return Descriptor(media_type, digest, size, (os_, arch), annotations)


def _list(value: object, source: str) -> list[Any]:
    if not isinstance(value, list):
        raise CheckFailed(f"{source} must be a list", _DAMAGED)
    return value


def parse(raw: bytes | str | Mapping[str, Any], source: str) -> Manifest | Index:
    """A manifest or an index, from its bytes (or already decoded JSON).

    Raises:
        CheckFailed: (exit 1) for anything that is not a well-formed manifest or index; the
            message names ``source`` and the field.
    """
    data = _object(raw if isinstance(raw, Mapping) else load_json(raw, source), source)
    if data.get("mediaType") in INDEX_TYPES or "manifests" in data:
        entries = _list(data.get("manifests"), f"{source}: manifests")
        return Index(tuple(descriptor(m, f"{source}: manifests[{i}]") for i, m in enumerate(entries)))
    if "config" not in data:
        raise CheckFailed(f"{source} is neither an image manifest nor an index (no config)", _DAMAGED)
    config = descriptor(data["config"], f"{source}: config")
    layers = _list(data.get("layers", []), f"{source}: layers")
    return Manifest(
        config,
        tuple(descriptor(la, f"{source}: layers[{i}]") for i, la in enumerate(layers)),
        _strings(data.get("annotations"), f"{source}: annotations"),
    )


def parse_manifest(raw: bytes | str | Mapping[str, Any], source: str) -> Manifest:
    """Like :func:`parse`, but an index is an error too."""
    found = parse(raw, source)
    if isinstance(found, Index):
        raise CheckFailed(f"{source} is an image index where an image manifest was expected", _DAMAGED)
    return found


def diff_ids(config: object, source: str) -> tuple[str, ...]:
    """An image config's ``rootfs.diff_ids``, each a parsed digest (OCI image spec, "rootfs").

    Raises:
        CheckFailed: (exit 1) when the config is not an object or a diff_id is malformed.
    """
    data = _object(config, source)
    rootfs = _object(data.get("rootfs") or {}, f"{source}: rootfs")
    ids = _list(rootfs.get("diff_ids", []), f"{source}: rootfs.diff_ids")
    return tuple(parse_digest(d, source=f"{source}: rootfs.diff_ids[{i}]") for i, d in enumerate(ids))
