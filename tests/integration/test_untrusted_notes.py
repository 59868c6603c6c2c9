"""Notes and revisions from outside, against real git: hostile or foreign notes on commits,
records fetched by `sync`, and revisions that git could read as options."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support import run_envlock

from envlock import export
from envlock import lockfile as lockmod
from envlock.lockfile import Package, PlatformLock
from envlock.manifest import SCHEMA
from envlock.spec import load

META = {"envlock": "0.1.0", "resolver": "uv 0.0.0", "resolved-at": "2026-11-01T00:00:00Z"}


def git(repo: Path, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True, input=stdin)
    return proc.stdout.strip()


def make_repo(root: Path) -> tuple[Path, lockmod.Lock]:
    """A repository with specs/x.toml and its lock committed (fake hashes, no resolver)."""
    (root / "specs").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "test@envlock.invalid")
    git(root, "config", "user.name", "envlock tests")
    spec = root / "specs/x.toml"
    spec.write_text('python = "3.11"\n[pip]\npackages = ["numpy"]\n')
    pkg = Package("pip", "numpy", "1.0", "https://files.example.org/numpy-1.0-py3-none-any.whl", "a" * 64)
    lock = lockmod.make(load(spec).spec_hash, [PlatformLock("linux-64", "3.11", packages=(pkg,))], META)
    lockmod.write_files({spec.with_suffix(".lock"): lockmod.render(lock), **export.render_all(lock, spec)})
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "locked")
    return root, lock


def record(commit: str, name: str, env_id: str, n: int = 1, **extra: object) -> dict[str, object]:
    return {
        "schema": SCHEMA,
        "id": f"{n:012x}",
        "name": name,
        "model": {"path": "runs/m.pt", "sha256": "c" * 64, "size": 1, "kind": "file", "files": 1},
        "commit": commit,
        "lock": "specs/x.lock",
        "spec": "specs/x.toml",
        "env_id": env_id,
        "image_id": "sha256:" + "d" * 64,
        "platform": "linux-64",
        "layers": [],
        "registry": None,
        "command": "python train.py",
        "created": f"2026-11-30T10:00:0{n}.000000Z",
        "host": {},
        **extra,
    }


def put_note(repo: Path, commit: str, body: str) -> None:
    git(repo, "notes", "--ref", "envlock", "add", "-f", "-F", "-", commit, stdin=body)


def manifest(*records: dict[str, object]) -> str:
    return json.dumps({"schema": SCHEMA, "records": list(records)})


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, lockmod.Lock]:
    return make_repo(tmp_path / "repo")


def test_foreign_and_hostile_notes_are_warnings_for_models_show_diff_and_verify(
    repo: tuple[Path, lockmod.Lock],
) -> None:
    root, lock = repo
    first = git(root, "rev-parse", "HEAD")
    hostile = record(first, "evil\n---\nkind: Secret", lock.env_id, 2)
    put_note(root, first, manifest(record(first, "resnet50", lock.env_id), hostile))
    git(root, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(root, "rev-parse", "HEAD")
    put_note(root, second, "reviewed-by: someone else\n")
    git(root, "commit", "-q", "--allow-empty", "-m", "third")
    third = git(root, "rev-parse", "HEAD")
    put_note(root, third, '[{"name": "json of another shape"}]')

    models = run_envlock("models", cwd=root)
    assert models.returncode == 0, models.stderr
    assert "resnet50" in models.stdout and "evil" not in models.stdout
    warnings = [line for line in models.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3, models.stderr
    assert any(first[:12] in w and "model name" in w and "record skipped" in w for w in warnings)
    assert any(second[:12] in w and "is not JSON" in w for w in warnings)
    assert any(third[:12] in w and "is not an envlock.manifest/v1 manifest" in w for w in warnings)
    assert "Traceback" not in models.stderr

    listed = json.loads(run_envlock("models", "--json", cwd=root).stdout)
    assert [r["name"] for r in listed] == ["resnet50"]
    shown = run_envlock("show", "resnet50", cwd=root)
    assert shown.returncode == 0 and json.loads(shown.stdout)["name"] == "resnet50"
    assert run_envlock("show", "evil", cwd=root).returncode == 2
    diff = run_envlock("diff", "resnet50", "specs/x.lock", cwd=root)
    assert diff.returncode == 0, diff.stderr
    verify = run_envlock("verify", "--records", cwd=root)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr
    assert "model name" in verify.stdout


def test_record_refuses_to_overwrite_someone_elses_note(
    repo: tuple[Path, lockmod.Lock], tmp_path: Path
) -> None:
    root, _ = repo
    head = git(root, "rev-parse", "HEAD")
    put_note(root, head, "reviewed-by: someone else\n")
    (root / "runs").mkdir()
    (root / "runs/m.pt").write_text("weights")
    args = ("record", "runs/m.pt", "--spec", "specs/x.toml", "--allow-dirty", "--store", str(tmp_path / "s"))
    proc = run_envlock(*args, "--name", "m", cwd=root)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"error: commit {head[:12]} has a note under refs/notes/envlock")
    assert "hint: look at it with: git notes --ref envlock show" in proc.stderr
    assert git(root, "notes", "--ref", "envlock", "show", head) == "reviewed-by: someone else"
    # refused before building: the fake lock could not have been built

    bad = run_envlock(*args, "--name", "x\n---\nkind: Secret", cwd=root)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: invalid model name 'x\\n---\\nkind: Secret'")


def test_sync_merges_only_valid_records_and_keeps_foreign_notes(
    repo: tuple[Path, lockmod.Lock], tmp_path: Path
) -> None:
    root, lock = repo
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(root, "remote", "add", "origin", str(remote))
    git(root, "push", "-q", "origin", "main")
    head = git(root, "rev-parse", "HEAD")
    # the remote's notes, as anyone with push access could write them
    put_note(root, head, manifest(record(head, "good", lock.env_id, 1), record(head, "a\nb", lock.env_id, 2)))
    git(root, "push", "-q", "origin", "refs/notes/envlock:refs/notes/envlock")

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(remote), str(clone))
    git(clone, "config", "user.email", "test@envlock.invalid")
    git(clone, "config", "user.name", "envlock tests")
    put_note(clone, head, manifest(record(head, "mine", lock.env_id, 3)))
    synced = run_envlock("sync", cwd=clone)
    assert synced.returncode == 0, synced.stderr
    assert "warning: envlock-remote: note on" in synced.stderr and "record skipped" in synced.stderr
    note = json.loads(git(clone, "notes", "--ref", "envlock", "show", head))
    assert sorted(r["name"] for r in note["records"]) == ["good", "mine"]  # the hostile one stayed out

    # a foreign note on our side is kept as it is, whatever the remote has for that commit
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(remote), str(other))
    git(other, "config", "user.email", "test@envlock.invalid")
    git(other, "config", "user.name", "envlock tests")
    put_note(other, head, "reviewed-by: someone else\n")
    proc = run_envlock("sync", cwd=other)
    assert proc.returncode == 0, proc.stderr
    assert "kept the non-envlock note" in proc.stderr
    assert git(other, "notes", "--ref", "envlock", "show", head) == "reviewed-by: someone else"


def test_a_remote_that_looks_like_an_option_is_refused(
    repo: tuple[Path, lockmod.Lock], tmp_path: Path
) -> None:
    root, _ = repo
    marker = tmp_path / "pwned"
    proc = run_envlock("sync", f"--upload-pack=touch {marker}", cwd=root)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: '--upload-pack=touch")
    assert not marker.exists()


def test_diff_at_a_revision_that_looks_like_an_option_writes_nothing(
    repo: tuple[Path, lockmod.Lock], tmp_path: Path
) -> None:
    root, _ = repo
    out = tmp_path / "out"
    out.mkdir()
    for rev in (f"--output={out}/x", f"--output={out}", "--help"):
        proc = run_envlock("diff", f"specs/x.lock@{rev}", "specs/x.lock", cwd=root)
        assert proc.returncode == 2, proc.stderr
        assert "is not a commit of this repository" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert list(out.iterdir()) == [] and not (tmp_path / "out" / "x").exists()
    ok = run_envlock("diff", "specs/x.lock@HEAD", "specs/x.lock", cwd=root)
    assert ok.returncode == 0, ok.stderr
