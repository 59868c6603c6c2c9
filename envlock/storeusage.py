"""Where the store's bytes are: ``envlock store du``.

Each file is counted once, in the first of these that claims it:

- ``bases``: blobs of base images (``bases/*.json`` and ``base-*`` refs);
- ``layers``: uncompressed layer tars of envlock's images;
- ``compressed``: compressed layer blobs (pulled images; envlock itself keeps none
  after a push, only ``compressed/``, the diff_id -> compressed digest cache);
- ``metadata``: configs and manifests;
- ``unreferenced``: blobs no image or base refers to (``store gc`` removes them);
- ``artifacts``: downloaded wheels and packages; ``cache``: ``compressed/``;
  ``tmp``: staging left by killed processes.

Per image: ``bytes`` (every blob it needs) and ``own`` (blobs no other image or base
needs: what removing it would free).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.digest import is_digest
from envlock.store import Store

CATEGORIES = ("bases", "layers", "compressed", "metadata", "unreferenced", "artifacts", "cache", "tmp")


@dataclass(frozen=True)
class ImageUsage:
    """One image of the env index: its bytes in the store, and those only it needs."""

    name: str
    platform: str
    env_id: str
    image_id: str
    bytes: int
    own: int


@dataclass(frozen=True)
class Usage:
    """Bytes per category (``CATEGORIES``) and per image; ``total`` is their sum."""

    root: Path
    categories: dict[str, int]
    images: tuple[ImageUsage, ...]

    @property
    def total(self) -> int:
        return sum(self.categories.values())

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` form (schema ``envlock.store-du/v1``); sizes in bytes."""
        return {
            "schema": "envlock.store-du/v1",
            "root": str(self.root),
            "total": self.total,
            "categories": dict(self.categories),
            "images": [im.__dict__ for im in self.images],
        }


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tree_size(path: Path) -> int:
    return sum(_size(p) for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _closure(store: Store, manifest: str) -> tuple[set[str], set[str], set[str]]:
    """(metadata, uncompressed layers, compressed layers) digests of a manifest in the store."""
    meta: set[str] = {manifest}
    tars: set[str] = set()
    packed: set[str] = set()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
        data = json.loads(store.blob_path(manifest).read_bytes())
        for child in data.get("manifests", []):  # an index: its platform manifests
            if is_digest(child.get("digest")):
                m, t, p = _closure(store, child["digest"])
                meta, tars, packed = meta | m, tars | t, packed | p
        if is_digest(data.get("config", {}).get("digest")):
            meta.add(data["config"]["digest"])
        for layer in data.get("layers", []):
            if is_digest(layer.get("digest")):
                media = str(layer.get("mediaType", ""))
                (tars if media.endswith(".tar") else packed).add(layer["digest"])
    return meta, tars, packed


def usage(store: Store) -> Usage:
    """Measure the store (reads manifests and file sizes; changes nothing)."""
    sizes = {"sha256:" + p.name: _size(p) for p in store.blobs.iterdir() if p.is_file()}
    base_roots: list[str] = []
    for path in sorted(store.bases.glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            base_roots.append(json.loads(path.read_text())["manifest"])
    with contextlib.suppress(OSError, ValueError, KeyError):
        base_roots += [d for ref, d in store.refs().items() if ref.startswith("base-")]
    bases: set[str] = set()
    for root in base_roots:
        if is_digest(root):
            for part in _closure(store, root):
                bases |= part
    claimed: dict[str, str] = {d: "bases" for d in bases if d in sizes}
    per_image: list[tuple[Any, set[str]]] = []
    roots = [(e, e.manifest) for e in store.list_envs() if is_digest(e.manifest)]
    other = [(None, d) for d in store.refs().values() if is_digest(d)]
    for entry, root in [*roots, *other]:
        meta, tars, packed = _closure(store, root)
        for digests, kind in ((tars, "layers"), (packed, "compressed"), (meta, "metadata")):
            for d in digests:
                if d in sizes:
                    claimed.setdefault(d, kind)
        if entry is not None:
            per_image.append((entry, {d for d in meta | tars | packed if d in sizes}))
    categories = dict.fromkeys(CATEGORIES, 0)
    for digest, size in sizes.items():
        categories[claimed.get(digest, "unreferenced")] += size
    categories["artifacts"] = sum(_size(p) for p in store.artifacts.iterdir())
    categories["cache"] = _tree_size(store.root / "compressed")
    categories["tmp"] = _tree_size(store.tmp)
    images = []
    for entry, blobs in per_image:
        others: set[str] = set(bases)
        for other_entry, other_blobs in per_image:
            if other_entry is not entry:
                others |= other_blobs
        images.append(
            ImageUsage(
                name=entry.name,
                platform=entry.platform,
                env_id=entry.env_id,
                image_id=entry.image_id,
                bytes=sum(sizes[d] for d in blobs),
                own=sum(sizes[d] for d in blobs - others),
            )
        )
    images.sort(key=lambda im: (-im.bytes, im.name, im.env_id))
    return Usage(store.root, categories, tuple(images))
