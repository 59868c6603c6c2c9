"""The hooks through the real pre-commit framework, installed from this checkout.

pre-commit clones this repository at its HEAD commit and pip-installs envlock into its
own virtualenv (once per session: PRE_COMMIT_HOME is shared), exactly as a user's
``.pre-commit-config.yaml`` would.  So the hooks file and the code under test must be
committed; in CI the checkout is a fresh clone, whose HEAD has everything.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import run_envlock, write_spec

CHECKOUT = Path(__file__).resolve().parents[2]
SPEC = """python = "3.11"
platforms = ["linux-64"]

[pip]
packages = [{packages}]
find-links = ["../wheels"]
no-index = true
"""


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return proc.stdout


@pytest.fixture(scope="session")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture(scope="session")
def head() -> str:
    return git(CHECKOUT, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path: Path, wheelhouse: Path, head: str) -> Path:
    """A committed project: two locked specs and a config with the envlock-verify hook,
    added by ``envlock init --pre-commit`` next to the user's own hook and comments."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "test@envlock.invalid")
    git(root, "config", "user.name", "envlock tests")
    (root / "wheels").symlink_to(wheelhouse, target_is_directory=True)
    (root / ".gitignore").write_text("/wheels\n")
    (root / ".pre-commit-config.yaml").write_text(
        "# the team's hooks\nrepos:\n  - repo: local\n    hooks:\n"
        "      - id: no-op\n        name: no-op\n        entry: 'true'\n        language: system\n"
    )
    for name, packages in (("x", '"envlock-fx-alpha"'), ("y", '"envlock-fx-beta==1.0"')):
        write_spec(root, name, SPEC.format(packages=packages))
        assert run_envlock("lock", f"specs/{name}.toml", cwd=root).returncode == 0
    init = run_envlock("init", "--pre-commit", "--hook-repo", str(CHECKOUT), "--hook-rev", head, cwd=root)
    assert init.returncode == 0, init.stderr
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "locked")
    return root


def pre_commit(repo: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "PRE_COMMIT_COLOR": "never"}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", "--color", "never", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_fresh_locks_pass(repo: Path, pre_commit_home: Path) -> None:
    config = (repo / ".pre-commit-config.yaml").read_text()
    assert config.startswith("# the team's hooks\nrepos:\n  - repo: local\n")
    proc = pre_commit(repo, pre_commit_home, "--all-files")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "envlock verify" in proc.stdout and "Passed" in proc.stdout


def test_spec_changed_without_relock_fails_naming_the_spec(repo: Path, pre_commit_home: Path) -> None:
    spec = repo / "specs/x.toml"
    spec.write_text(spec.read_text().replace('"envlock-fx-alpha"', '"envlock-fx-alpha<2"'))
    proc = pre_commit(repo, pre_commit_home, "--all-files")
    assert proc.returncode == 1
    assert (
        "specs/x.lock: stale: the spec changed since it was locked "
        "(fix: envlock lock specs/x.toml)" in proc.stdout
    )
    assert "specs/y" not in proc.stdout


def test_lock_edited_by_hand_fails(repo: Path, pre_commit_home: Path) -> None:
    lock = repo / "specs/y.lock"
    lock.write_text(lock.read_text().replace('version = "1.0"', 'version = "1.1"'))
    proc = pre_commit(repo, pre_commit_home, "--all-files")
    assert proc.returncode == 1
    assert "specs/y.lock: tampered: env-id does not match" in proc.stdout
    assert "envlock lock --upgrade specs/y.toml" in proc.stdout


def test_export_edited_by_hand_fails(repo: Path, pre_commit_home: Path) -> None:
    export = repo / "specs/x.linux-64.requirements.txt"
    export.write_text(export.read_text().replace("envlock-fx-beta==1.1", "envlock-fx-beta==1.0"))
    proc = pre_commit(repo, pre_commit_home, "--all-files")
    assert proc.returncode == 1
    assert (
        "specs/x.linux-64.requirements.txt: export does not match the lock (edited by hand?) "
        "(fix: envlock lock specs/x.toml)" in proc.stdout
    )


def test_spec_deleted_but_lock_left_fails(repo: Path, pre_commit_home: Path) -> None:
    git(repo, "rm", "-q", "specs/y.toml")
    proc = pre_commit(repo, pre_commit_home, "--all-files")
    assert proc.returncode == 1
    assert (
        "specs/y.lock: orphaned lock: its spec specs/y.toml was deleted "
        "(fix: delete it, or restore specs/y.toml)" in proc.stdout
    )
    assert "specs/pylock.y.toml: orphaned export" in proc.stdout


def test_staged_spec_without_its_relocked_lock_fails(repo: Path, pre_commit_home: Path) -> None:
    spec = repo / "specs/x.toml"
    spec.write_text(spec.read_text().replace('"envlock-fx-alpha"', '"envlock-fx-alpha<2"'))
    assert run_envlock("lock", "specs/x.toml", cwd=repo).returncode == 0
    git(repo, "add", "specs/x.toml")  # forgot the lock and exports
    proc = pre_commit(repo, pre_commit_home)
    # pre-commit hides unstaged changes while hooks run: the commit would carry the old lock
    assert proc.returncode == 1
    assert "specs/x.lock: stale" in proc.stdout
    git(repo, "add", "specs")
    proc = pre_commit(repo, pre_commit_home)
    assert proc.returncode == 0, proc.stdout


def test_staged_new_spec_without_its_new_lock_fails(repo: Path, pre_commit_home: Path) -> None:
    write_spec(repo, "z", SPEC.format(packages='"envlock-fx-gamma"'))
    assert run_envlock("lock", "specs/z.toml", cwd=repo).returncode == 0
    git(repo, "add", "specs/z.toml")
    proc = pre_commit(repo, pre_commit_home)
    assert proc.returncode == 1
    assert (
        "specs/z.lock: not added to git, but specs/z.toml is staged (fix: git add specs/z.lock)"
        in proc.stdout
    )
    assert "specs/pylock.z.toml: not added to git" in proc.stdout


def test_lock_hook_relocks_a_stale_spec_and_fails_for_review(
    repo: Path, pre_commit_home: Path, head: str
) -> None:
    (repo / "lock-hook.yaml").write_text(
        f"repos:\n  - repo: {CHECKOUT}\n    rev: {head}\n    hooks:\n      - id: envlock-lock\n"
    )
    git(repo, "add", "lock-hook.yaml")
    spec = repo / "specs/x.toml"
    spec.write_text(spec.read_text().replace('"envlock-fx-alpha"', '"envlock-fx-alpha<2"'))
    before = (repo / "specs/x.lock").read_text()

    proc = pre_commit(repo, pre_commit_home, "--all-files", "-c", "lock-hook.yaml")
    assert proc.returncode == 1, proc.stdout
    assert "re-locked specs/x.toml; review and stage specs/x.lock and its exports" in proc.stdout
    assert (repo / "specs/x.lock").read_text() != before
    assert run_envlock("verify", cwd=repo).returncode == 0

    again = pre_commit(repo, pre_commit_home, "--all-files", "-c", "lock-hook.yaml")
    assert again.returncode == 0, again.stdout


def test_old_list_format_is_refused_until_pre_commit_migrates_it(tmp_path: Path) -> None:
    """The pre-1.0 top-level list: envlock refuses it (today's pre-commit refuses it too) and
    names pre-commit's own migrate-config; after that, the hook is added and pre-commit
    reads the result."""
    root = tmp_path / "old"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    config = root / ".pre-commit-config.yaml"
    old = "-   repo: local\n    hooks:\n    -   id: no-op\n        name: no-op\n        entry: 'true'\n        language: system\n"
    config.write_text(old)

    def validate() -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "pre_commit", "validate-config", str(config)]
        return subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)

    assert validate().returncode != 0  # the premise: pre-commit no longer reads this format
    refused = run_envlock("init", "--pre-commit", cwd=root)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: {config}: the old pre-commit format")
    assert "pre-commit migrate-config" in refused.stderr and "Traceback" not in refused.stderr
    assert config.read_text() == old

    migrate = [sys.executable, "-m", "pre_commit", "migrate-config"]
    subprocess.run(migrate, cwd=root, capture_output=True, check=True)
    added = run_envlock("init", "--pre-commit", cwd=root)
    assert added.returncode == 0, added.stderr
    checked = validate()
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "id: envlock-verify" in config.read_text() and "id: no-op" in config.read_text()
