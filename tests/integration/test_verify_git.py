"""verify --staged and --records against real git repositories (git CLI, notes, index)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support import run_envlock

from envlock import export, notes
from envlock import lockfile as lockmod
from envlock.lockfile import Package, PlatformLock
from envlock.spec import load
from envlock.verify import Problem, check

SPEC = 'python = "3.11"\n[pip]\npackages = [{packages}]\n'
META = {"envlock": "0.1.0", "resolver": "uv 0.0.0", "resolved-at": "2026-11-01T00:00:00Z"}


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True)
    return proc.stdout


def write_locked(spec: Path, packages: tuple[str, ...]) -> lockmod.Lock:
    """A spec and the lock + exports `envlock lock` would write (fake hashes, no resolver)."""
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(SPEC.format(packages=", ".join(f'"{p}"' for p in packages)))
    loaded = load(spec)
    pkgs = [
        Package("pip", p, "1.0", f"https://files.example.org/{p}-1.0-py3-none-any.whl", "a" * 64)
        for p in packages
    ]
    lock = lockmod.make(loaded.spec_hash, [PlatformLock("linux-64", "3.11", packages=pkgs)], META)
    lockmod.write_files({spec.with_suffix(".lock"): lockmod.render(lock)})
    lockmod.write_files(export.render_all(lock, spec))
    return lock


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "test@envlock.invalid")
    git(root, "config", "user.name", "envlock tests")
    write_locked(root / "specs/x.toml", ("numpy",))
    write_locked(root / "specs/y.toml", ("pandas",))
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "locked")
    monkeypatch.chdir(root)
    return root


X, Y = Path("specs/x.toml"), Path("specs/y.toml")


def test_staged_spec_with_relocked_but_unstaged_lock(repo: Path) -> None:
    write_locked(repo / X, ("numpy", "scipy"))
    git(repo, "add", str(X))

    report = check([X], staged=True)
    assert report.problems == tuple(
        Problem(p, f"changed but not staged, but {X} is staged", f"git add {p}")
        for p in (
            Path("specs/pylock.x.toml"),
            Path("specs/x.linux-64.requirements.txt"),
            Path("specs/x.lock"),
        )
    )
    assert check([X]).problems == ()  # without --staged the work tree is consistent
    git(repo, "add", "specs")
    assert check([X], staged=True).problems == ()


def test_staged_new_spec_with_untracked_lock(repo: Path) -> None:
    write_locked(repo / "specs/z.toml", ("torch",))
    git(repo, "add", "specs/z.toml")
    problems = check([Path("specs/z.toml")], staged=True).problems
    assert [str(p) for p in problems][:1] == [
        "specs/pylock.z.toml: not added to git, but specs/z.toml is staged (fix: git add specs/pylock.z.toml)"
    ]
    assert {p.path.name for p in problems} == {
        "pylock.z.toml",
        "z.linux-64.requirements.txt",
        "z.lock",
    }


def test_unstaged_spec_is_not_a_staged_problem(repo: Path) -> None:
    write_locked(repo / X, ("numpy", "scipy"))  # nothing staged
    assert check([X], staged=True).problems == ()


def test_staged_deletion_of_a_spec_whose_lock_remains(repo: Path) -> None:
    git(repo, "rm", "-q", "--", str(X))
    # the hook gets the other spec's names only; the deletion is found through the index
    problems = check([Y], staged=True).problems
    assert [p.path for p in problems] == [
        Path("specs/pylock.x.toml"),
        Path("specs/x.linux-64.requirements.txt"),
        Path("specs/x.lock"),
    ]
    assert all(
        p.message == f"orphaned {k}: its spec {X} was deleted"
        for p, k in zip(problems, ("export", "export", "lock"), strict=True)
    )


def test_staged_check_from_a_subdirectory_names_paths_from_there(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo / "src").mkdir()
    monkeypatch.chdir(repo / "src")
    write_locked(repo / X, ("numpy", "scipy"))
    git(repo, "add", str(X))
    problems = check([Path("../specs/x.lock")], staged=True).problems
    assert Path("../specs/x.lock") in {p.path for p in problems}


def full_record(rec: dict[str, str], n: int) -> dict[str, object]:
    """``rec`` plus the fields every envlock.manifest/v1 record has."""
    return {
        "id": f"{n:012x}",
        "image_id": "sha256:" + "e" * 64,
        "model": {"path": "m.pt", "sha256": "f" * 64, "size": 1},
        **rec,
    }


def add_note(repo: Path, commit: str, records: list[dict[str, str]]) -> None:
    full = [full_record(r, n) for n, r in enumerate(records)]
    body = json.dumps({"schema": notes.SCHEMA, "records": full})
    git(repo, "notes", "--ref", "envlock", "add", "-f", "-m", body, commit)


def test_records_match_their_locks(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    x = lockmod.read(repo / "specs/x.lock")
    y = lockmod.read(repo / "specs/y.lock")
    add_note(
        repo,
        head,
        [
            {"name": "resnet", "commit": head, "lock": "specs/x.lock", "env_id": x.env_id},
            {"name": "bert", "commit": head, "lock": "specs/y.lock", "env_id": y.env_id},
        ],
    )
    read = notes.read(repo)
    assert [(r.name, r.lock, r.note_commit) for r in read.records] == [
        ("resnet", "specs/x.lock", head),
        ("bert", "specs/y.lock", head),
    ]
    assert read.errors == ()
    assert check([X], records=True).problems == ()
    # a later change of the lock does not break a record of an earlier commit
    write_locked(repo / X, ("numpy", "scipy"))
    git(repo, "commit", "-q", "-am", "relock")
    assert check([X], records=True).problems == ()


def test_record_problems_name_the_record_and_the_lock(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD").strip()
    x = lockmod.read(repo / "specs/x.lock")
    # a commit whose lock was edited by hand: the env-id line kept, the content changed
    lock = repo / "specs/x.lock"
    lock.write_text(lock.read_text().replace('version = "1.0"', 'version = "1.1"'))
    git(repo, "commit", "-q", "-am", "hand edit")
    edited = git(repo, "rev-parse", "HEAD").strip()
    add_note(
        repo,
        first,
        [
            {"name": "wrong-id", "commit": first, "lock": "specs/x.lock", "env_id": "sha256:" + "0" * 64},
            {"name": "no-lock", "commit": first, "lock": "specs/nope.lock", "env_id": x.env_id},
        ],
    )
    add_note(
        repo,
        edited,
        [{"name": "edited", "commit": edited, "lock": "specs/x.lock", "env_id": x.env_id}],
    )
    git(repo, "commit", "-q", "--allow-empty", "-m", "empty")
    git(repo, "notes", "--ref", "envlock", "add", "-m", "not json", "HEAD")

    messages = [f"{p.path}: {p.message}" for p in check([X], records=True).problems]
    assert any(m.startswith("refs/notes/envlock: note on ") and "is not JSON" in m for m in messages)
    assert (
        f"specs/x.lock: record 'wrong-id' at {first[:12]}: recorded env ID sha256:000000000000… but the lock at that commit has {x.env_id[:19]}…"
        in messages
    )
    assert f"specs/nope.lock: record 'no-lock' at {first[:12]}: the lock is not in that commit" in messages
    assert any(
        m.startswith(
            f"specs/x.lock: record 'edited' at {edited[:12]}: the lock at that commit was edited: env-id does not match"
        )
        for m in messages
    )


def test_records_cli_outside_git_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_locked(tmp_path / "specs/x.toml", ("numpy",))
    env = {"GIT_CEILING_DIRECTORIES": str(tmp_path.parent)}
    proc = run_envlock("verify", "--records", cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --records needs a git repository")
    assert run_envlock("verify", "--staged", cwd=tmp_path, env=env).returncode == 0
