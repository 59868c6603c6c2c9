"""The Python API for training scripts: the same library functions the CLI calls, with the
same errors (:class:`envlock.errors.EnvlockError` and its subclasses, each with an
``exit_code``) and typed results.  Nothing here prints; pass ``say`` to see progress.

    import envlock

    envlock.lock("specs/vision.toml")
    ...train, save runs/resnet50.pt...
    done = envlock.record("runs/resnet50.pt", name="resnet50", spec="specs/vision.toml",
                          command="python train.py")
    back = envlock.rebuild("resnet50")          # years later: same image ID, verified
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envlock.locking import LockResult
    from envlock.rebuilding import Rebuilt
    from envlock.recording import Recorded
    from envlock.store import Store

Say = Callable[[str], None]
PathLike = str | os.PathLike[str]


def _store(store: PathLike | None) -> Store:
    from envlock.store import Store

    return Store(Path(store) if store is not None else None)


def lock(
    spec: PathLike, *, upgrade: bool = False, resolver: str = "uv", say: Say | None = None
) -> LockResult:
    """Resolve ``spec`` into its lock and exports (``envlock lock``); returns at once when the
    lock is fresh.  ``resolver``: ``uv`` | ``pip-tools`` | ``conda-lock``.

    Raises:
        SpecError, ResolutionError (exit 2), ServiceUnavailable (3): as the CLI.
    """
    from envlock.locking import lock_spec

    return lock_spec(Path(spec), upgrade=upgrade, resolver=resolver, progress=say or (lambda _m: None))


def record(
    model: PathLike,
    *,
    name: str,
    spec: PathLike,
    command: str = "",
    allow_dirty: bool = False,
    push: str | None = None,
    store: PathLike | None = None,
    cwd: PathLike | None = None,
    mlflow_run: str | None = None,
    say: Say | None = None,
) -> Recorded:
    """Record a trained model (a file or directory) on the repository's HEAD (``envlock
    record``): builds the spec's image if needed, adds the record to the git note.

    ``mlflow_run`` (default: ``MLFLOW_RUN_ID`` when set) is an MLflow run to tag with the
    record and to log the lock to; it is checked before anything is recorded.

    Raises:
        CheckFailed (exit 1): an uncommitted tree without ``allow_dirty``; UsageError (2);
        ServiceUnavailable / ToolMissing (3): MLflow unreachable or its client not installed.
    """
    from envlock import mlflow_handoff
    from envlock.recording import record as record_model

    run = mlflow_handoff.run_id_from(mlflow_run)
    if run is not None:
        mlflow_handoff.check_run(run)
    done = record_model(
        Path(model),
        name=name,
        spec_path=Path(spec),
        command=command,
        allow_dirty=allow_dirty,
        store=_store(store),
        push=push,
        say=say,
        cwd=Path(cwd) if cwd is not None else None,
    )
    if run is not None:
        from envlock.recording import repo_root

        root = repo_root(Path(cwd) if cwd is not None else Path.cwd())
        mlflow_handoff.tag_run(run, done.record, root / done.record.lock)
    return done


def rebuild(
    ref: str,
    *,
    worktree: PathLike | None = None,
    store: PathLike | None = None,
    cwd: PathLike | None = None,
    say: Say | None = None,
    cache: str | None = None,
) -> Rebuilt:
    """Bring back the exact image of a recorded model (``envlock rebuild``): ``ref`` is
    ``NAME``, ``NAME@REV``, a record ID, or ``mlflow:RUN_ID`` (the record the run was tagged
    with).  The result's ``image_id`` equals the recorded one.  ``cache``: a build cache
    ``REGISTRY/REPO`` to take layers from (``envlock build --cache``).

    Raises:
        CheckFailed (exit 1): the rebuilt image differs (the message names the layer).
    """
    from envlock.rebuilding import rebuild as rebuild_model

    return rebuild_model(
        ref,
        cwd=Path(cwd) if cwd is not None else Path.cwd(),
        store=_store(store),
        worktree=Path(worktree) if worktree is not None else None,
        say=say,
        cache=cache,
    )
