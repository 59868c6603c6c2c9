"""Model records in git notes and `envlock rebuild`, with real git repositories."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import Dockerd, build_wheel, docker, run_envlock


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("record-wheels")
    build_wheel(dest, "envlock-fx-alpha", "2.0", ("envlock-fx-beta>=1.0",))
    build_wheel(dest, "envlock-fx-beta", "1.0")
    build_wheel(dest, "envlock-fx-gamma", "1.0")
    return dest


def sh(cwd: Path, *args: str) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout.strip()


def envlock_ok(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = run_envlock(*args, cwd=cwd, env=env)
    assert proc.returncode == 0, f"envlock {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


SPEC = """python = "3.11"
[pip]
packages = [{packages}]
find-links = ["{wheels}"]
no-index = true
[image]
base = "oci:{base}"
"""


def make_repo(root: Path, wheels: Path, base: Path, packages: str = '"envlock-fx-alpha"') -> Path:
    root.mkdir(parents=True)
    sh(root, "git", "init", "-q", "-b", "main")
    sh(root, "git", "config", "user.email", "t@example.com")
    sh(root, "git", "config", "user.name", "T")
    (root / "specs").mkdir()
    (root / "specs/vision.toml").write_text(SPEC.format(packages=packages, wheels=wheels, base=base))
    (root / "train.py").write_text("open('model.bin','w').write('weights')\n")
    (root / ".gitignore").write_text("model.bin\nruns/\n")
    envlock_ok(root, "lock", "specs/vision.toml")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", "first")
    return root


def train(root: Path, content: str = "weights") -> Path:
    (root / "runs").mkdir(exist_ok=True)
    model = root / "runs/resnet50.pt"
    model.write_text(content)
    return model


def record(root: Path, store: Path, *extra: str) -> str:
    return envlock_ok(
        root,
        "record",
        "runs/resnet50.pt",
        "--name",
        "resnet50",
        "--spec",
        "specs/vision.toml",
        "--command",
        "python train.py --epochs 90",
        "--store",
        str(store),
        *extra,
    )


def test_record_show_and_check(tmp_path: Path, wheels: Path, base_layout: Path) -> None:
    repo = make_repo(tmp_path / "repo", wheels, base_layout)
    train(repo)
    envlock_ok(repo, "build", "specs/vision.toml", "--store", str(tmp_path / "store"))  # record reuses it
    rec_id = record(repo, tmp_path / "store")
    note = json.loads(sh(repo, "git", "notes", "--ref", "envlock", "show", "HEAD"))
    assert note["schema"] == "envlock.manifest/v1"
    (rec,) = note["records"]
    assert rec["id"] == rec_id
    assert rec["name"] == "resnet50" and rec["commit"] == sh(repo, "git", "rev-parse", "HEAD")
    assert rec["branch"] == "main" and rec["dirty"] is False
    assert rec["spec"] == "specs/vision.toml" and rec["lock"] == "specs/vision.lock"
    assert rec["model"]["path"] == "runs/resnet50.pt" and rec["model"]["size"] == 7
    assert rec["image_id"].startswith("sha256:") and rec["env_id"].startswith("sha256:")
    assert rec["command"] == "python train.py --epochs 90"
    kinds = [la["created_by"] for la in rec["layers"]]
    assert kinds[0] == "base" and kinds[1] == "envlock: venv /opt/env" and kinds[-1] == "envlock: lock"
    assert rec["host"]["python"]

    models = envlock_ok(repo, "models")
    assert "resnet50" in models and rec_id in models
    assert run_envlock("verify", "--records", cwd=repo).returncode == 0
    shown = json.loads(envlock_ok(repo, "show", "resnet50", "--check"))
    assert shown["id"] == rec_id
    assert json.loads(envlock_ok(repo, "show", rec_id))["id"] == rec_id

    (repo / "runs/resnet50.pt").write_text("tampered")
    bad = run_envlock("show", "resnet50", "--check", cwd=repo)
    assert bad.returncode == 1
    assert "runs/resnet50.pt: sha256 is" in bad.stderr

    # a model directory is hashed as a tree
    (repo / "runs/ckpt").mkdir()
    (repo / "runs/ckpt/a.bin").write_text("a")
    (repo / "runs/ckpt/b.bin").write_text("b")
    envlock_ok(
        repo,
        "record",
        "runs/ckpt",
        "--name",
        "ckpt",
        "--spec",
        "specs/vision.toml",
        "--store",
        str(tmp_path / "store"),
    )
    ckpt = json.loads(envlock_ok(repo, "show", "ckpt"))
    assert ckpt["model"]["kind"] == "tree" and ckpt["model"]["files"] == 2
    assert len(json.loads(sh(repo, "git", "notes", "--ref", "envlock", "show", "HEAD"))["records"]) == 2


def test_rebuild_the_first_record_from_an_empty_store_at_a_later_commit(
    tmp_path: Path, wheels: Path, base_layout: Path
) -> None:
    repo = make_repo(tmp_path / "repo", wheels, base_layout)
    train(repo)
    record(repo, tmp_path / "store")
    first = json.loads(envlock_ok(repo, "show", "resnet50"))
    first_commit = first["commit"]

    spec = repo / "specs/vision.toml"
    spec.write_text(spec.read_text().replace('"envlock-fx-alpha"', '"envlock-fx-alpha", "envlock-fx-gamma"'))
    envlock_ok(repo, "lock", "specs/vision.toml")
    sh(repo, "git", "commit", "-qam", "add gamma")
    train(repo, "better weights")
    record(repo, tmp_path / "store")
    second = json.loads(envlock_ok(repo, "show", "resnet50"))
    assert second["image_id"] != first["image_id"]

    # working tree at the later commit, empty store: the first record comes back exactly
    out = run_envlock(
        "rebuild", f"resnet50@{first_commit[:10]}", "--store", str(tmp_path / "empty"), cwd=repo
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == first["image_id"]
    assert "rebuilt, matches the record" in out.stderr
    assert "retrain with: docker run" in out.stderr
    # and again: now from the store
    again = run_envlock("rebuild", first["id"], "--store", str(tmp_path / "empty"), cwd=repo)
    assert "found in the store" in again.stderr


def test_clone_sync_and_rebuild_in_the_clone(tmp_path: Path, wheels: Path, base_layout: Path) -> None:
    remote = tmp_path / "remote.git"
    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(remote))
    repo = make_repo(tmp_path / "a", wheels, base_layout)
    sh(repo, "git", "remote", "add", "origin", str(remote))
    sh(repo, "git", "push", "-q", "origin", "main")
    train(repo)
    record(repo, tmp_path / "store-a")
    envlock_ok(repo, "sync")

    clone = tmp_path / "b"
    sh(tmp_path, "git", "clone", "-q", str(remote), str(clone))
    assert run_envlock("models", cwd=clone).stdout.count("resnet50") == 0
    envlock_ok(clone, "sync")
    assert "resnet50" in envlock_ok(clone, "models")
    rebuilt = envlock_ok(clone, "rebuild", "resnet50", "--store", str(tmp_path / "store-b"))
    assert rebuilt == json.loads(envlock_ok(repo, "show", "resnet50"))["image_id"]


def test_records_made_concurrently_in_two_clones_both_survive_sync(
    tmp_path: Path, wheels: Path, base_layout: Path
) -> None:
    remote = tmp_path / "remote.git"
    sh(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(remote))
    a = make_repo(tmp_path / "a", wheels, base_layout)
    sh(a, "git", "remote", "add", "origin", str(remote))
    sh(a, "git", "push", "-q", "origin", "main")
    b = tmp_path / "b"
    sh(tmp_path, "git", "clone", "-q", str(remote), str(b))
    for repo in (a, b):
        sh(repo, "git", "config", "user.email", "t@example.com")
        sh(repo, "git", "config", "user.name", "T")
    train(a, "from a")
    train(b, "from b")
    store = tmp_path / "store"
    envlock_ok(
        a,
        "record",
        "runs/resnet50.pt",
        "--name",
        "model-a",
        "--spec",
        "specs/vision.toml",
        "--store",
        str(store),
    )
    envlock_ok(
        b,
        "record",
        "runs/resnet50.pt",
        "--name",
        "model-b",
        "--spec",
        "specs/vision.toml",
        "--store",
        str(store),
    )
    envlock_ok(a, "sync")
    envlock_ok(b, "sync")  # fetches a's note on the same commit, merges, pushes
    envlock_ok(a, "sync")
    for repo in (a, b):
        names = {r["name"] for r in json.loads(envlock_ok(repo, "models", "--json"))}
        assert names == {"model-a", "model-b"}, repo
        note = json.loads(sh(repo, "git", "notes", "--ref", "envlock", "show", "HEAD"))
        assert len(note["records"]) == 2


def test_dirty_tree_is_refused_unless_allowed(tmp_path: Path, wheels: Path, base_layout: Path) -> None:
    repo = make_repo(tmp_path / "repo", wheels, base_layout)
    train(repo)
    (repo / "train.py").write_text("# changed\n")
    proc = run_envlock(
        "record",
        "runs/resnet50.pt",
        "--name",
        "m",
        "--spec",
        "specs/vision.toml",
        "--store",
        str(tmp_path / "s"),
        cwd=repo,
    )
    assert proc.returncode == 1
    assert "error: the working tree is not committed (train.py)" in proc.stderr
    assert "hint: commit" in proc.stderr
    assert run_envlock("models", cwd=repo).stdout.count("\n") <= 2  # header only
    ok = run_envlock(
        "record",
        "runs/resnet50.pt",
        "--name",
        "m",
        "--spec",
        "specs/vision.toml",
        "--store",
        str(tmp_path / "s"),
        "--allow-dirty",
        cwd=repo,
    )
    assert ok.returncode == 0, ok.stderr
    assert "warning: recorded a dirty tree (train.py)" in ok.stderr
    assert json.loads(envlock_ok(repo, "show", "m"))["dirty"] is True


def test_unknown_model_missing_commit_and_no_repo(tmp_path: Path, wheels: Path, base_layout: Path) -> None:
    repo = make_repo(tmp_path / "repo", wheels, base_layout)
    train(repo)
    record(repo, tmp_path / "store")
    unknown = run_envlock("rebuild", "resnet5", cwd=repo)
    assert unknown.returncode == 2
    assert "error: no model named 'resnet5'" in unknown.stderr and "did you mean: resnet50" in unknown.stderr

    # history rewritten: the record's commit is gone from a fresh clone
    (repo / "README").write_text("x")
    sh(repo, "git", "add", "README")
    sh(repo, "git", "commit", "-q", "-m", "second")
    shallow = tmp_path / "shallow"
    sh(tmp_path, "git", "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow))
    sh(shallow, "git", "fetch", "-q", "origin", "refs/notes/envlock:refs/notes/envlock")
    missing = run_envlock("rebuild", "resnet50", "--store", str(tmp_path / "store2"), cwd=shallow)
    assert missing.returncode == 1, missing.stderr
    assert "is not in this repository" in missing.stderr
    assert (
        "hint: the clone may be shallow or history rewritten: git fetch --unshallow, then envlock sync"
        in missing.stderr
    )

    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    proc = run_envlock("models", cwd=outside)
    assert proc.returncode == 2 and "is not inside a git repository" in proc.stderr


def test_a_changed_base_is_named_as_the_layer_that_differs(
    tmp_path: Path, wheels: Path, base_layout: Path
) -> None:
    base = tmp_path / "base"
    shutil.copytree(base_layout, base)
    repo = make_repo(tmp_path / "repo", wheels, base)
    train(repo)
    record(repo, tmp_path / "store")
    # the base at that path is replaced by a different image (same Python)
    from envlock.image import layer as layermod
    from envlock.image.build import load_image
    from envlock.image.model import Image
    from envlock.image.oci import write_layout
    from envlock.image.venv import store_entries
    from envlock.store import Store

    store = Store(tmp_path / "edit")
    index = json.loads((base / "index.json").read_text())
    from envlock.image.base import _from_layout

    digest = _from_layout(store, str(base))
    old = load_image(store, digest)
    extra = store_entries(store, [layermod.file("etc/changed", b"mirror moved on\n")], "apt upgrade")
    cfg = dict(old.config)
    cfg["rootfs"] = {"type": "layers", "diff_ids": [*old.config["rootfs"]["diff_ids"], extra.diff_id]}
    shutil.rmtree(base)
    write_layout(
        store,
        Image(cfg, (*old.layers, extra)),
        base,
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
    )

    proc = run_envlock("rebuild", "resnet50", "--store", str(tmp_path / "empty"), cwd=repo)
    assert proc.returncode == 1
    assert "is not the recorded" in proc.stderr
    assert f"the base image oci:{base} differs: recorded sha256:" in proc.stderr
    assert "(1 layers), now sha256:" in proc.stderr and "(2 layers)" in proc.stderr


def test_worktree_run_and_k8s_job(
    tmp_path: Path, wheels: Path, base_layout: Path, dockerd: Dockerd, registry: str
) -> None:
    repo = make_repo(tmp_path / "repo", wheels, base_layout)
    (repo / "train.py").write_text(
        "import envlock_fx_alpha, sys\nopen('trained.txt','w').write(envlock_fx_alpha.__version__ + ' ' + ' '.join(sys.argv[1:]))\n"
    )
    sh(repo, "git", "commit", "-qam", "real trainer")
    train(repo)
    env = {"DOCKER_HOST": dockerd.host}
    record(repo, tmp_path / "store", "--push", f"{registry}/models/resnet50")
    rec = json.loads(envlock_ok(repo, "show", "resnet50"))
    assert rec["registry"].startswith(f"{registry}/models/resnet50@sha256:")

    # later commit on main; retrain the record's commit in a worktree, in its image
    (repo / "train.py").write_text("raise SystemExit('new code must not run')\n")
    sh(repo, "git", "commit", "-qam", "newer")
    wt = tmp_path / "retrain"
    proc = run_envlock(
        "rebuild",
        "resnet50",
        "--store",
        str(tmp_path / "fresh"),
        "--worktree",
        str(wt),
        "--run",
        "--",
        "python",
        "train.py",
        "--epochs",
        "90",
        cwd=repo,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "pulled from the registry" in proc.stderr
    assert (wt / "trained.txt").read_text() == "2.0 --epochs 90"
    assert sh(wt, "git", "rev-parse", "HEAD") == rec["commit"]

    job_text = envlock_ok(repo, "rebuild", "resnet50", "--store", str(tmp_path / "fresh"), "--k8s-job")
    job = yaml.safe_load(job_text)
    from kubernetes.client import ApiClient, V1Job

    parsed = ApiClient().deserialize(json.dumps(job), "V1Job", "application/json")
    assert isinstance(parsed, V1Job)
    assert parsed.api_version == "batch/v1" and parsed.kind == "Job"
    container = parsed.spec.template.spec.containers[0]
    assert container.image == rec["registry"]
    assert container.command == ["python", "train.py", "--epochs", "90"]
    assert parsed.metadata.labels["envlock.dev/record"] == rec["id"]
    assert parsed.spec.template.spec.restart_policy == "Never"
    assert container.resources is None  # CPU environment: no GPU limits
    # the image the Job names is the recorded one
    pulled = docker(dockerd.host, "pull", rec["registry"])
    assert pulled.returncode == 0
    assert (
        docker(dockerd.host, "image", "inspect", "--format", "{{.Id}}", rec["registry"]).stdout.strip()
        == rec["image_id"]
    )
