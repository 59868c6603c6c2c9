"""Pure image types and their JSON: no I/O.  Identity is the config's digest."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from envlock.store import canonical_json

LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
CREATED = "1970-01-01T00:00:00Z"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Layer:
    digest: str  # of the blob as stored (equals diff_id when uncompressed)
    diff_id: str  # of the uncompressed tar
    size: int
    media_type: str = LAYER_TAR
    created_by: str = ""


@dataclass(frozen=True)
class Image:
    """An image before it is written anywhere: config JSON plus its layers."""

    config: dict[str, Any]
    layers: tuple[Layer, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def config_bytes(self) -> bytes:
        return canonical_json(self.config)

    @property
    def image_id(self) -> str:
        return digest_of(self.config_bytes)

    def manifest(self, layers: tuple[Layer, ...] | None = None) -> dict[str, Any]:
        chosen = layers if layers is not None else self.layers
        data: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": CONFIG,
                "digest": self.image_id,
                "size": len(self.config_bytes),
            },
            "layers": [{"mediaType": la.media_type, "digest": la.digest, "size": la.size} for la in chosen],
        }
        if self.annotations:
            data["annotations"] = dict(sorted(self.annotations.items()))
        return data

    def manifest_bytes(self, layers: tuple[Layer, ...] | None = None) -> bytes:
        return canonical_json(self.manifest(layers))


def merge_env(base: list[str], ours: dict[str, str]) -> list[str]:
    """Base ``KEY=VALUE`` list updated by ours; order: base keys first, then ours sorted."""
    out: dict[str, str] = {}
    for item in base:
        key, _, value = item.partition("=")
        out[key] = value
    for key in sorted(ours):
        out[key] = ours[key]
    return [f"{k}={v}" for k, v in out.items()]


def config_for(
    base_config: dict[str, Any],
    layers: tuple[Layer, ...],
    *,
    env: dict[str, str],
    workdir: str,
    labels: dict[str, str],
    cmd: list[str],
) -> dict[str, Any]:
    """The image config: base's diff_ids and history first, then ours; fixed times."""
    base_rootfs = base_config.get("rootfs", {}).get("diff_ids", [])
    base_history = [
        {k: v for k, v in h.items() if k in ("created_by", "empty_layer", "comment")} | {"created": CREATED}
        for h in base_config.get("history", [])
    ]
    inner = dict(base_config.get("config") or {})
    inner["Env"] = merge_env(list(inner.get("Env") or []), env)
    inner["WorkingDir"] = workdir
    inner["Labels"] = dict(sorted({**(inner.get("Labels") or {}), **labels}.items()))
    inner["Cmd"] = cmd
    inner.pop("Entrypoint", None)
    return {
        "architecture": base_config.get("architecture", "amd64"),
        "os": base_config.get("os", "linux"),
        "created": CREATED,
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": [*base_rootfs, *(la.diff_id for la in layers)]},
        "history": [
            *base_history,
            *({"created": CREATED, "created_by": la.created_by} for la in layers),
        ],
    }
