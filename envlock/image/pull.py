"""Parallel, verified blob downloads from a registry into the store.

Each blob is hashed while it streams into ``STORE/tmp/`` and published (renamed
into ``blobs/``) only when its sha256 equals the digest asked for; a blob that does
not match is a ``CheckFailed`` (exit 1) naming it, and its partial file is removed.
The caller writes the manifest only after every blob arrived, so a failed pull
leaves no image in the store (blobs that did verify stay: they are content-addressed).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from envlock.errors import CheckFailed, EnvlockError
from envlock.image.registry import Client
from envlock.store import Store

PARALLEL = 4


def fetch_blob(client: Client, store: Store, digest: str) -> None:
    """Download one blob unless the store has it; ``CheckFailed`` naming it if it does not verify."""
    try:
        client.blob_into(store, digest)
    except CheckFailed as exc:
        if " has no blob " in exc.message:  # a 404, already named (envlock.image.registry)
            raise
        raise CheckFailed(
            f"blob {digest} from {client.ref.registry}/{client.ref.repository} does not match its digest "
            f"({exc.message})",
            "the registry or something between it and you altered the blob; nothing was published",
        ) from None


def fetch_blobs(client: Client, store: Store, digests: Sequence[str], parallel: int = PARALLEL) -> None:
    """Fetch ``digests`` with up to ``parallel`` downloads at once.  Every download is
    attempted (what verified stays in the store); then the failure of the first digest in
    ``digests`` order that failed is raised, so the report does not depend on which download
    happened to finish first."""
    unique = list(dict.fromkeys(digests))
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(unique)))) as pool:
        futures = [pool.submit(fetch_blob, client, store, d) for d in unique]
        wait(futures)
    errors: list[EnvlockError] = []
    for future in futures:
        error = future.exception()
        if isinstance(error, EnvlockError):
            errors.append(error)
        elif error is not None:
            raise error
    if errors:
        raise errors[0]
