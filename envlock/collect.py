"""``envlock store gc``: what the store must keep, decided while nothing else uses the store.

The images kept are those of the locks beside the given specs (or ``specs/*.toml``) and of
every model record of the repository.  Both sets are read after the store is held
exclusively, so an image that a running ``build`` or ``record`` is about to reference is
either finished and referenced by then, or waited for: gc never removes blobs in use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from envlock.errors import EnvlockError
from envlock.store import Store


@dataclass(frozen=True)
class Collected:
    removed: int  # files
    freed: int  # bytes
    kept: int  # env IDs referenced by locks and records


def referenced(specs: Sequence[Path]) -> tuple[set[str], set[str]]:
    """Env IDs and artifact sha256s of the locks beside ``specs`` (unreadable locks are skipped)."""
    from envlock import lock

    envs: set[str] = set()
    artifacts: set[str] = set()
    for spec in specs:
        try:
            current = lock.read(spec.with_suffix(".lock"))
        except (EnvlockError, OSError, UnicodeDecodeError):
            continue
        envs.add(current.env_id)
        artifacts |= {p.sha256 for plat in current.platforms for p in plat.packages}
    return envs, artifacts


def collect(
    store: Store,
    specs: Sequence[Path],
    cwd: Path,
    *,
    dry_run: bool = False,
    waiting: Callable[[], None] | None = None,
) -> Collected:
    """Hold the store exclusively (``waiting`` is called once if builds hold it), read what is
    referenced, and remove the rest (see :meth:`Store.gc`)."""
    from envlock.record import env_ids

    with store.exclusive(waiting):
        keep, artifacts = referenced(specs)
        keep |= env_ids(cwd)
        removed, freed = store.gc(keep, artifacts, dry_run=dry_run)
    return Collected(removed, freed, len(keep))
