"""What the TUI shows and starts, in one place: the library calls behind every screen.

The screens import nothing else from envlock, so the TUI and the CLI share one
implementation.  Two functions are seams for features being built elsewhere:

* :func:`list_models` -- the recorded models (issue "model records": git notes under
  ``refs/notes/envlock``).  Returns ``[]`` until that feature wires it.
* :func:`start_rebuild` -- ``envlock rebuild NAME`` from the screen.  Raises a
  ``UsageError`` until the rebuild feature wires it.

Both are plain module attributes looked up at call time, so the wiring (and tests)
can replace them without touching a screen.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from envlock.diff import EnvDiff
from envlock.envref import EnvRef, EnvStatus, compare, environments, resolve
from envlock.errors import UsageError
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
    return []


def start_rebuild(name: str, progress: Progress) -> str:
    """Rebuild the image of model ``name``, reporting progress; returns the image ID.

    Runs in a worker thread (it blocks).  Wired by the rebuild feature.
    """
    raise UsageError(
        "rebuild is not available yet",
        f"rebuilding {name} needs model records (envlock record), which this version lacks",
    )
