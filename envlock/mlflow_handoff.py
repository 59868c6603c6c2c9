"""MLflow hand-off: tag an MLflow run with the model record that envlock wrote, log the lock
as a run artifact, and find the record again from the run (``envlock rebuild mlflow:RUN_ID``).

Uses the ``mlflow-skinny`` client (``pip install 'envlock[mlflow]'``) and the tracking server
of ``MLFLOW_TRACKING_URI`` (MLflow's own variable, "Where Runs Are Recorded" in MLflow's
tracking documentation).  Tag names: ``envlock.record_id``, ``envlock.env_id``,
``envlock.image_id``, ``envlock.commit``, ``envlock.model``; the lock is logged under the run's
``envlock/`` artifact directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock.errors import ServiceUnavailable, ToolMissing, UsageError

if TYPE_CHECKING:
    from envlock.manifest import Record

TAG_PREFIX = "envlock."
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _client() -> Any:
    # MLflow retries a refused connection 7 times with exponential backoff (minutes); a
    # record should say at once that the server is down.  The user's own settings win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ToolMissing(
            "the MLflow hand-off needs the MLflow client, which is not installed",
            "pip install 'envlock[mlflow]'",
        ) from None
    return MlflowClient()


def _where() -> str:
    from envlock.urls import redact

    return redact(os.environ.get("MLFLOW_TRACKING_URI") or "./mlruns")


def run_id_from(value: str | None) -> str | None:
    """The run to tag: ``value`` (``--mlflow-run``), else ``MLFLOW_RUN_ID`` (MLflow's variable
    for the active run), else None.

    Raises:
        UsageError: (exit 2) not a 32-hex-digit run ID.
    """
    run = value or os.environ.get("MLFLOW_RUN_ID") or None
    if run is not None and not _RUN_ID.match(run):
        raise UsageError(f"{run!r} is not an MLflow run ID", "a run ID is 32 lower-case hex digits")
    return run


def _call(what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call the MLflow client, turning its failures into envlock errors."""
    from mlflow.exceptions import MlflowException

    try:
        return fn(*args, **kwargs)
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        if code == "RESOURCE_DOES_NOT_EXIST":
            raise UsageError(f"MLflow at {_where()}: {what}: no such run", "check the run ID") from None
        raise ServiceUnavailable(
            f"MLflow at {_where()}: {what} failed: {str(exc).splitlines()[0][:200]}",
            "check MLFLOW_TRACKING_URI and that the tracking server is running",
        ) from None
    except OSError as exc:
        raise ServiceUnavailable(
            f"MLflow at {_where()}: {what} failed: {exc.strerror or exc}",
            "check MLFLOW_TRACKING_URI and that the tracking server is running",
        ) from None


def check_run(run_id: str) -> None:
    """Make sure the run exists before anything is recorded.

    Raises:
        ToolMissing: the client is not installed (exit 3).
        UsageError: no such run (exit 2).  ServiceUnavailable: server down (exit 3).
    """
    client = _client()
    _call(f"reading run {run_id}", client.get_run, run_id)


def tag_run(run_id: str, record: Record, lock_path: Path) -> None:
    """Tag ``run_id`` with ``record``'s ID, env ID, image ID, commit and model name, and log
    ``lock_path`` as the artifact ``envlock/<lock file name>``.

    Raises:
        ServiceUnavailable: the server failed (exit 3); the record itself stays written.
    """
    client = _client()
    tags = {
        "record_id": record.id,
        "env_id": record.env_id,
        "image_id": record.image_id,
        "commit": record.commit,
        "model": record.name,
    }
    for key, value in tags.items():
        _call(f"tagging run {run_id}", client.set_tag, run_id, TAG_PREFIX + key, str(value))
    _call(f"logging {lock_path.name} to run {run_id}", client.log_artifact, run_id, str(lock_path), "envlock")


def record_of_run(run_id: str) -> str:
    """The envlock record ID a run was tagged with (``envlock rebuild mlflow:RUN_ID``).

    Raises:
        UsageError: not a run ID, no such run, or a run without the tag (exit 2).
        ServiceUnavailable: the server failed (exit 3).
    """
    run = run_id_from(run_id)
    assert run is not None
    client = _client()
    found = _call(f"reading run {run}", client.get_run, run)
    record_id = found.data.tags.get(TAG_PREFIX + "record_id")
    if not isinstance(record_id, str) or not re.fullmatch(r"[0-9a-f]{12}", record_id):
        raise UsageError(
            f"MLflow run {run} has no envlock record",
            "record the model with: envlock record MODEL --name NAME --spec SPEC --mlflow-run RUN_ID",
        )
    return record_id
