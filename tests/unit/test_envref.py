"""envlock.envref: every way of naming an environment, and the repository's lock states."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from envlock import envref
from envlock.errors import LockError, UsageError
from envlock.lockfile import Lock


@pytest.fixture
def repo(tmp_path: Path, new_project: Callable[..., object]) -> Path:
    write_project = new_project
    write_project(tmp_path / "specs", name="vision")
    write_project(tmp_path / "specs", name="nlp", packages=[("numpy", "2.0.1")])
    return tmp_path


def test_spec_name_spec_path_and_lock_path(repo: Path) -> None:
    by_name = envref.resolve("vision", repo)
    assert (by_name.kind, by_name.label, by_name.note) == ("spec", "vision", "")
    assert by_name.path == repo / "specs" / "vision.lock"
    by_spec = envref.resolve("specs/vision.toml", repo)
    assert by_spec.lock == by_name.lock
    assert by_spec.label == "specs/vision.toml"
    by_lock = envref.resolve("specs/vision.lock", repo)
    assert (by_lock.kind, by_lock.lock) == ("lock", by_name.lock)


def test_relative_to_the_current_directory_by_default(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    assert envref.resolve("specs/nlp.lock").lock.platforms[0].packages[0].version == "2.0.1"


def test_stale_spec_is_used_and_marked(repo: Path) -> None:
    spec = repo / "specs" / "vision.toml"
    spec.write_text(spec.read_text().replace('"pandas>=2"', '"pandas>=2.1"'))
    ref = envref.resolve("vision", repo)
    assert ref.note.startswith("stale:")
    assert ref.lock.platforms[0].packages  # still diffable


def test_spec_without_lock(repo: Path) -> None:
    (repo / "specs" / "vision.lock").unlink()
    with pytest.raises(LockError) as info:
        envref.resolve("vision", repo)
    assert "no lock file" in info.value.message
    assert info.value.hint and "envlock lock" in info.value.hint


def test_env_id_full_and_prefix(repo: Path) -> None:
    lock = envref.resolve("nlp", repo).lock
    assert envref.resolve(lock.env_id, repo).lock == lock
    found = envref.resolve(lock.env_id[:15], repo)
    assert found.kind == "env-id"
    assert found.label.endswith("(nlp)")


def test_unknown_env_id(repo: Path) -> None:
    with pytest.raises(UsageError) as info:
        envref.resolve("sha256:" + "f" * 64, repo)
    assert "has env ID" in info.value.message
    assert info.value.hint and "specs/NAME.lock@REV" in info.value.hint


def test_ambiguous_env_id(repo: Path) -> None:
    with pytest.raises(UsageError, match="ambiguous"):
        envref.resolve("sha256:", repo)


def test_unknown_name_suggests_close_specs(repo: Path) -> None:
    with pytest.raises(UsageError) as info:
        envref.resolve("visoin", repo)
    assert info.value.message == "no environment named visoin"
    assert info.value.hint == "did you mean: vision?"
    with pytest.raises(UsageError) as info:
        envref.resolve("zzz", repo)
    assert info.value.hint == f"environments in {repo / 'specs'}: nlp, vision"


def test_missing_lock_file_path(repo: Path) -> None:
    with pytest.raises(UsageError, match="no such file") as info:
        envref.resolve("specs/other.lock", repo)
    assert info.value.hint == "a lock is made with: envlock lock specs/other.toml"


def test_model_names_go_through_the_seam(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert envref.resolve_model("resnet50") is None  # until records exist
    lock = envref.resolve("nlp", repo).lock
    seen: list[str] = []

    def fake(ref: str, root: Path = Path()) -> Lock | None:
        seen.append(ref)
        return lock if ref.startswith("resnet50") else None

    monkeypatch.setattr(envref, "resolve_model", fake)
    model = envref.resolve("resnet50", repo)
    assert (model.kind, model.lock) == ("model", lock)
    at = envref.resolve("resnet50@abc123", repo)
    assert (at.kind, at.rev) == ("model", "abc123")
    assert envref.resolve("vision", repo).kind == "spec"  # specs are looked up first
    assert seen == ["resnet50", "resnet50@abc123"]


def test_compare_carries_labels_and_notes(repo: Path) -> None:
    d = envref.compare("vision", "specs/nlp.lock", repo)
    assert (d.a.label, d.b.label) == ("vision", "specs/nlp.lock")
    assert d.summary == "1 package changed, 2 removed"


def test_environments_and_their_lock_states(tmp_path: Path, new_project: Callable[..., object]) -> None:
    write_project = new_project
    specs = tmp_path / "specs"
    write_project(specs, name="vision")
    write_project(specs, name="stale")
    stale = specs / "stale.toml"
    stale.write_text(stale.read_text().replace('"pandas>=2"', '"pandas>=2.1"'))
    write_project(specs, name="nolock")
    (specs / "nolock.lock").unlink()
    (specs / "broken.toml").write_text("python = 3.11\n")
    rows = {e.name: e for e in envref.environments(tmp_path)}
    assert {n: e.state for n, e in rows.items()} == {
        "broken": "invalid",
        "nolock": "missing",
        "stale": "stale",
        "vision": "fresh",
    }
    assert rows["vision"].packages == 3
    assert rows["vision"].short_id == rows["vision"].env_id[:19]
    assert rows["stale"].env_id and "the spec changed" in rows["stale"].problem
    assert "envlock lock" in rows["nolock"].problem
    assert envref.environments(tmp_path / "nowhere") == []
