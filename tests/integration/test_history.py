"""A lock across real git history: locked with the real uv from a wheelhouse, committed
twice, then listed by envlock.history and compared as LOCK@REV through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support import run_envlock, write_spec

from envlock import history
from envlock import lockfile as lockmod
from envlock.errors import UsageError

GIT_ENV = {
    "GIT_AUTHOR_NAME": "envlock tests",
    "GIT_AUTHOR_EMAIL": "tests@envlock.invalid",
    "GIT_COMMITTER_NAME": "envlock tests",
    "GIT_COMMITTER_EMAIL": "tests@envlock.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str, date: str = "2026-01-01T12:00:00Z") -> str:
    env = {**os.environ, **GIT_ENV, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def spec_text(requirement: str) -> str:
    return f"""python = "3.11"
platforms = ["linux-64"]

[pip]
packages = ["{requirement}"]
find-links = ["../wheels"]
no-index = true
"""


@pytest.fixture
def repo(tmp_path: Path, wheelhouse: Path) -> Path:
    """specs/app.lock committed twice: envlock-fx-alpha 1.0, then 2.0 (which adds beta)."""
    (tmp_path / "wheels").symlink_to(wheelhouse, target_is_directory=True)
    git(tmp_path, "init", "-q", "-b", "main")
    spec = write_spec(tmp_path, "app", spec_text("envlock-fx-alpha==1.0"))
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    git(tmp_path, "add", "specs")
    git(tmp_path, "commit", "-q", "-m", "lock alpha 1.0", date="2026-01-01T12:00:00Z")
    spec.write_text(spec_text("envlock-fx-alpha==2.0"))
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    git(tmp_path, "add", "specs")
    git(tmp_path, "commit", "-q", "-m", "upgrade alpha to 2.0", date="2026-02-01T12:00:00Z")
    return tmp_path


def test_history_lists_every_commit_that_changed_the_lock(repo: Path) -> None:
    (repo / "README").write_text("unrelated\n")
    git(repo, "add", "README")
    git(repo, "commit", "-q", "-m", "unrelated change")
    lock_path = repo / "specs" / "app.lock"
    revisions = history.history(lock_path)
    assert [r.subject for r in revisions] == ["upgrade alpha to 2.0", "lock alpha 1.0"]
    assert [r.date[:10] for r in revisions] == ["2026-02-01", "2026-01-01"]
    current = lockmod.read(lock_path)
    assert revisions[0].env_id == current.env_id
    assert revisions[1].env_id and revisions[1].env_id != current.env_id
    assert len(revisions[0].commit) == 40
    assert history.history(lock_path, limit=1) == revisions[:1]

    older = history.lock_at(lock_path, revisions[1].commit)
    assert older.env_id == revisions[1].env_id
    both = history.locks_at(lock_path, [r.commit for r in revisions])
    assert both[revisions[1].commit] == older
    assert both[revisions[0].commit] == current


def test_history_of_a_deleted_lock_and_bad_revisions(repo: Path) -> None:
    lock_path = repo / "specs" / "app.lock"
    git(repo, "rm", "-q", str(lock_path))
    git(repo, "commit", "-q", "-m", "drop the lock")
    revisions = history.history(lock_path)
    assert revisions[0].subject == "drop the lock"
    assert revisions[0].env_id is None
    with pytest.raises(UsageError) as info:
        history.lock_at(lock_path, "no-such-rev")
    assert "no-such-rev" in info.value.message
    assert info.value.hint and "git log --oneline" in info.value.hint
    with pytest.raises(UsageError, match="no such file at that revision"):
        history.locks_at(lock_path, ["HEAD"])


def test_cli_diffs_a_lock_at_a_revision(repo: Path) -> None:
    proc = run_envlock("diff", "specs/app.lock@HEAD~1", "specs/app.lock", "--json", cwd=repo)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema"] == "envlock.diff/v1"
    assert doc["a"]["label"] == "specs/app.lock@HEAD~1"
    changes = {c["name"]: c for c in doc["platforms"][0]["changes"]}
    assert changes["envlock-fx-alpha"]["kind"] == "major"
    assert changes["envlock-fx-alpha"]["old_version"] == "1.0"
    assert changes["envlock-fx-beta"]["kind"] == "added"
    assert doc["summary"] == "1 package changed, 1 added"

    # a spec name at a revision, and a spec path at a revision, name the same lock
    by_name = run_envlock("diff", "app@HEAD~1", "app", "--exit-code", cwd=repo)
    assert by_name.returncode == 1, by_name.stderr
    assert "envlock-fx-alpha" in by_name.stdout and "major" in by_name.stdout
    same = run_envlock("diff", "specs/app.toml@HEAD", "app", "--exit-code", cwd=repo)
    assert same.returncode == 0, same.stderr
    assert "no differences" in same.stdout

    # from a subdirectory, paths are relative to where the user stands
    sub = repo / "specs"
    proc = run_envlock("diff", "app.lock@HEAD~1", "app.lock", "--json", cwd=sub)
    assert proc.returncode == 0, proc.stderr


def test_cli_explains_a_bad_revision_and_a_missing_repo(
    repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    proc = run_envlock("diff", "specs/app.lock@nope", "app", cwd=repo)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: specs/app.lock@nope:")
    assert "hint: list the revisions that have it: git log --oneline -- specs/app.lock" in proc.stderr

    elsewhere = tmp_path_factory.mktemp("not-a-repo")
    (elsewhere / "x.lock").write_text((repo / "specs" / "app.lock").read_text())
    proc = run_envlock(
        "diff",
        "x.lock@HEAD",
        "x.lock",
        cwd=elsewhere,
        env={"GIT_CEILING_DIRECTORIES": str(elsewhere.parent)},
    )
    assert proc.returncode == 2
    assert "not inside a git repository" in proc.stderr
    assert "traceback" not in proc.stderr.lower()
