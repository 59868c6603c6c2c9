"""``envlock store gc``: what the store must keep, decided while nothing else uses the store.

The images kept are those of the locks beside the given specs (or ``specs/*.toml``) and of
every model record of the repository.  Both sets are read after the store is held
exclusively, so an image that a running ``build`` or ``record`` is about to reference is
either finished and referenced by then, or waited for: gc never removes blobs in use.

Outside a git repository no record can be read, so gc would keep no model's image: it
refuses (exit 2) unless ``force``; a dry run only warns.  Refusing rather than warning,
because the store is shared (``~/.cache/envlock``) and a gc started from the wrong
directory would remove, at once and for every repository, the images that rebuilding a
recorded model reuses; a warning printed after the removal would come too late.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from envlock.errors import EnvlockError, UsageError
from envlock.store import Store


@dataclass(frozen=True)
class Collected:
    removed: int  # files, tmp/ leftovers included
    freed: int  # bytes, tmp/ leftovers included
    kept: int  # env IDs referenced by locks and records
    leftovers: tuple[int, int] = (0, 0)  # (files, bytes) of them left in tmp/ by killed processes
    warnings: tuple[str, ...] = ()  # records that could not be read, and why


NO_RECORDS = "not inside a git repository: no model record can be read, so no recorded model's image is kept"


def records_env_ids(cwd: Path) -> tuple[set[str], list[str]] | None:
    """Env IDs of every valid model record of the repository at ``cwd`` and one warning per
    note or record skipped; ``None`` outside a git repository.

    Raises:
        EnvlockError: git fails on the repository (nothing is removed then).
    """
    from envlock.gitcli import toplevel
    from envlock.recording import read_records

    if toplevel(cwd) is None:
        return None
    found = read_records(cwd)
    return {r.env_id for r in found.records}, list(found.errors)


def referenced(specs: Sequence[Path]) -> tuple[set[str], set[str]]:
    """Env IDs and artifact sha256s of the locks beside ``specs`` (unreadable locks are skipped)."""
    from envlock import lockfile

    envs: set[str] = set()
    artifacts: set[str] = set()
    for spec in specs:
        try:
            current = lockfile.read(spec.with_suffix(".lock"))
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
    keep_artifacts: bool = False,
    drop_built_artifacts: bool = False,
    keep_newer_than: float | None = None,
    max_size: int | None = None,
    force: bool = False,
) -> Collected:
    """Hold the store exclusively (``waiting`` is called once if builds hold it), read what is
    referenced, and remove the rest (see :meth:`Store.gc`).

    Policies: ``keep_artifacts`` keeps every downloaded wheel and conda package (a rebuild
    then needs no network); ``drop_built_artifacts`` removes, besides, the ones whose image the
    store keeps: the store then holds one copy of each layer's bytes, and a rebuild of a layer
    fetches its wheels again by the lock (``UsageError`` with ``keep_artifacts``);
    ``keep_newer_than`` (days) and ``max_size`` (bytes) also keep
    unreferenced images built that recently, or the newest ones that fit in that many bytes
    (see :func:`envlock.storepolicy.images_to_keep`).

    Raises:
        UsageError: (exit 2) outside a git repository without ``force`` or ``dry_run``;
            nothing is removed.
    """
    from envlock.gitcli import toplevel

    if toplevel(cwd) is None and not (force or dry_run):
        raise UsageError(
            f"store gc: {NO_RECORDS}",
            "run it in the repository whose models you keep, or pass --force to keep only the specs' images",
        )
    gone = [s for s in specs if not s.is_file()]
    if gone:  # a typo must not cost the images of the spec that was meant
        raise UsageError(
            f"store gc: {gone[0]} is not a spec file", "gc keeps the images of the specs it is given"
        )
    if keep_artifacts and drop_built_artifacts:
        raise UsageError(
            "--keep-artifacts and --drop-built-artifacts contradict each other", "choose one of them"
        )
    warnings: list[str] = []
    with store.exclusive(waiting):
        keep, artifacts = referenced(specs)
        records = records_env_ids(cwd)
        if records is None:
            warnings.append(NO_RECORDS)
        else:
            keep |= records[0]
            warnings += records[1]
        if keep_newer_than is not None or max_size is not None:
            from envlock.storepolicy import images_to_keep

            keep = images_to_keep(store, keep, newer_than_days=keep_newer_than, max_bytes=max_size)
        if keep_artifacts:
            artifacts |= {p.name for p in store.artifacts.iterdir()}
        if drop_built_artifacts:
            for entry in store.list_envs():
                if entry.env_id in keep and store.image_intact(entry.manifest):
                    artifacts -= store._artifacts_of(entry)
        leftovers = store.leftovers()
        removed, freed = store.gc(
            keep, artifacts, dry_run=dry_run, keep_image_artifacts=not drop_built_artifacts
        )
    return Collected(removed, freed, len(keep), leftovers, tuple(warnings))
