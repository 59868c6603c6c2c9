"""What the TUI shows and starts, in one place: the library calls behind every screen.

The screens import nothing else from envlock, so the TUI and the CLI share one
implementation.  :func:`list_models` reads the model records (git notes under
``refs/notes/envlock``) and :func:`start_rebuild` runs ``envlock rebuild NAME``.

Both are plain module attributes looked up at call time, so tests can replace them
without touching a screen.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from envlock.diff import EnvDiff
from envlock.envref import EnvRef, EnvStatus, compare, environments, resolve
from envlock.history import Revision, history

__all__ = [
    "EnvDiff",
    "EnvRef",
    "EnvStatus",
    "ModelRow",
    "Progress",
    "Revision",
    "compare",
    "environments",
    "history",
    "list_models",
    "resolve",
    "start_rebuild",
]

MODELS_ENV = "ENVLOCK_TUI_MODELS"  # bench/test only: a JSON list of ModelRow fields

Progress = Callable[[str, float], None]  # (log line, fraction done 0..1)


@dataclass(frozen=True)
class ModelRow:
    """One recorded model, as the home screen lists it.

    name          the model's name (``envlock record --name``); ``NAME`` addresses the latest
    commit        the git commit the model was trained at (full sha)
    date          when it was recorded, ISO 8601
    env_id        the env ID (``sha256:...``) of the lock it was trained in
    image_status  "in store" | "in registry" | "missing"
    """

    name: str
    commit: str
    date: str
    env_id: str
    image_status: str


def list_models(root: Path) -> list[ModelRow]:
    """The recorded models of the repository at ``root``, newest first.

    Wired by the records feature; until then there are none.  For benchmarks and tests
    only, ``$ENVLOCK_TUI_MODELS`` may name a JSON file with a list of ModelRow objects.
    """
    fake = os.environ.get(MODELS_ENV)
    if fake:
        rows = json.loads(Path(fake).read_text("utf-8"))
        return [ModelRow(**row) for row in rows]
    from envlock.gitcli import toplevel
    from envlock.recording import all_records
    from envlock.store import Store, default_home

    top = toplevel(root.absolute())
    if top is None:
        return []
    store = Store() if (default_home() / "envs").is_dir() else None
    out = []
    for rec in all_records(top):
        entry = store.find_env(rec.env_id, rec.platform) if store else None
        if entry is not None and entry.image_id == rec.image_id:
            status = "in store"
        elif rec.registry:
            status = "in registry"
        else:
            status = "missing"
        out.append(
            ModelRow(
                name=rec.name,
                commit=rec.commit,
                date=rec.created,
                env_id=rec.env_id,
                image_status=status,
            )
        )
    return out


def start_rebuild(name: str, progress: Progress) -> str:
    """Rebuild the image of model ``name``, reporting progress; returns the image ID.

    Runs in a worker thread (it blocks): the same ``envlock.rebuilding.rebuild`` as the CLI.
    """
    from envlock.rebuilding import rebuild
    from envlock.store import Store

    steps = iter((0.2, 0.4, 0.6, 0.8, 0.9, 0.95))
    progress(f"Rebuilding {name}", 0.05)

    def say(message: str) -> None:
        progress(message, next(steps, 0.95))

    done = rebuild(name, cwd=Path.cwd(), store=Store(), say=say)
    how = {"store": "found in the store", "registry": "pulled from the registry", "built": "rebuilt"}[
        done.how
    ]
    progress(f"{done.image_id[:19]} {how}; matches the record", 1.0)
    return done.image_id
