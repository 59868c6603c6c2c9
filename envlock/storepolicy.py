"""Which images ``store gc`` keeps beyond those the locks and records reference.

By default gc keeps only referenced images.  Two explicit policies keep more:

- ``newer_than_days``: unreferenced images recorded (built or pulled) within that many days;
- ``max_bytes``: unreferenced images, newest first, while the blobs of everything kept
  (referenced images included, each blob counted once) stay within that many bytes.

Both together: the newest images that pass the age test, within the size cap.  An image's
time is the modification time of its env index file (``envs/*.json``), written when it
was built or pulled.  Pure selection: nothing is removed here.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from envlock.store import EnvEntry, Store


def _when(store: Store, entry: EnvEntry) -> float:
    path = store.envs / f"{entry.env_id.split(':')[1]}-{entry.platform}.json"
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _blobs(store: Store, entry: EnvEntry) -> dict[str, int]:
    out = {}
    for digest in store.manifest_closure(entry.manifest):
        try:
            out[digest] = store.blob_path(digest).stat().st_size
        except OSError:
            continue
    return out


def images_to_keep(
    store: Store,
    referenced: Collection[str],
    *,
    newer_than_days: float | None = None,
    max_bytes: int | None = None,
    now: float | None = None,
) -> set[str]:
    """Env IDs to keep: ``referenced`` plus those the policies allow (see the module doc).

    ``newer_than_days`` in days (>= 0), ``max_bytes`` in bytes (>= 0); ``None`` = no such
    policy.  With neither, returns ``set(referenced)``.
    """
    keep = set(referenced)
    if newer_than_days is None and max_bytes is None:
        return keep
    now = time.time() if now is None else now
    entries = store.list_envs()
    candidates = sorted(
        (e for e in entries if e.env_id not in keep), key=lambda e: (-_when(store, e), e.env_id)
    )
    if newer_than_days is not None:
        cutoff = now - newer_than_days * 86400
        candidates = [e for e in candidates if _when(store, e) >= cutoff]
    if max_bytes is None:
        return keep | {e.env_id for e in candidates}
    held: dict[str, int] = {}
    for entry in entries:
        if entry.env_id in keep:
            held.update(_blobs(store, entry))
    for entry in candidates:
        more = {d: n for d, n in _blobs(store, entry).items() if d not in held}
        if sum(held.values()) + sum(more.values()) > max_bytes:
            continue
        held.update(more)
        keep.add(entry.env_id)
    return keep
