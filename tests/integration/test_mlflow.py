"""MLflow hand-off against a real MLflow tracking server (SQLite backend) on 127.0.0.1:
`envlock record --mlflow-run` tags the run and logs the lock; `envlock rebuild
mlflow:RUN_ID` finds the record from the run and brings back the same image."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import build_wheel, run_envlock
from test_records import envlock_ok, make_repo, sh, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    assert mlflow, "the test extra installs mlflow"
    proc = subprocess.Popen(
        [mlflow, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=(root / "server.log").open("wb"), cwd=root,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((root / "server.log").read_text()[-2000:])
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("mlflow-wheels")
    build_wheel(dest, "envlock-fx-alpha", "2.0", ("envlock-fx-beta>=1.0",))
    build_wheel(dest, "envlock-fx-beta", "1.0")
    return dest


def _new_run(url: str) -> str:
    from mlflow.tracking import MlflowClient

    return str(MlflowClient(url).create_run("0").info.run_id)


def test_record_tags_the_run_and_rebuild_finds_it(
    tmp_path: Path, wheels: Path, base_layout: Path, mlflow_server: str
) -> None:
    from mlflow.tracking import MlflowClient

    repo = make_repo(tmp_path / "repo", wheels, base_layout)
    train(repo)
    run_id = _new_run(mlflow_server)
    env = {"MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_RUN_ID": run_id}
    store = str(tmp_path / "store")
    rec_id = envlock_ok(
        repo, "record", "runs/resnet50.pt", "--name", "resnet50", "--spec", "specs/vision.toml",
        "--store", store, env=env,
    )  # fmt: skip
    rec = json.loads(envlock_ok(repo, "show", rec_id))
    client = MlflowClient(mlflow_server)
    tags = client.get_run(run_id).data.tags
    assert tags["envlock.record_id"] == rec_id
    assert tags["envlock.env_id"] == rec["env_id"] and tags["envlock.image_id"] == rec["image_id"]
    assert tags["envlock.commit"] == sh(repo, "git", "rev-parse", "HEAD")
    assert [a.path for a in client.list_artifacts(run_id, "envlock")] == ["envlock/vision.lock"]
    logged = Path(client.download_artifacts(run_id, "envlock/vision.lock", str(tmp_path / "dl")))
    assert logged.read_bytes() == (repo / "specs/vision.lock").read_bytes()

    # from an empty store, by the run alone
    image_id = envlock_ok(repo, "rebuild", f"mlflow:{run_id}", "--store", str(tmp_path / "empty"), env=env)
    assert image_id == rec["image_id"]


def test_mlflow_failures_record_nothing(
    tmp_path: Path, wheels: Path, base_layout: Path, mlflow_server: str
) -> None:
    repo = make_repo(tmp_path / "repo", wheels, base_layout)
    train(repo)
    args = [
        "record",
        "runs/resnet50.pt",
        "--name",
        "m",
        "--spec",
        "specs/vision.toml",
        "--store",
        str(tmp_path / "s"),
    ]
    down = run_envlock(
        *args, "--mlflow-run", "0" * 32, cwd=repo, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    )
    assert down.returncode == 3, down.stderr
    assert down.stderr.startswith("error: MLflow at http://127.0.0.1:9") and "Traceback" not in down.stderr
    missing = run_envlock(
        *args, "--mlflow-run", "f" * 32, cwd=repo, env={"MLFLOW_TRACKING_URI": mlflow_server}
    )
    assert missing.returncode == 2 and "no such run" in missing.stderr
    bad = run_envlock(*args, "--mlflow-run", "nope", cwd=repo)
    assert bad.returncode == 2 and "not an MLflow run ID" in bad.stderr
    notes = subprocess.run(
        ["git", "notes", "--ref", "envlock", "list"], cwd=repo, capture_output=True, text=True
    )
    assert notes.stdout == ""
    untagged = _new_run(mlflow_server)
    nothing = run_envlock(
        "rebuild", f"mlflow:{untagged}", cwd=repo, env={"MLFLOW_TRACKING_URI": mlflow_server}
    )
    assert nothing.returncode == 2 and "has no envlock record" in nothing.stderr
