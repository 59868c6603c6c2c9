"""store gc policies: which unreferenced images --keep-newer-than / --max-size keep."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from envlock.cli import main
from envlock.collect import NO_RECORDS
from envlock.store import EnvEntry, Store, canonical_json
from envlock.storepolicy import images_to_keep

NOW = 2_000_000_000.0
DAY = 86400


def add_image(
    store: Store, n: int, layer_bytes: int, age_days: float, shared: bytes = b"", now: float = NOW
) -> str:
    layer = store.put_blob(bytes([n]) * layer_bytes)
    layers = [layer] + ([store.put_blob(shared)] if shared else [])
    config = store.put_blob(canonical_json({"n": n}))
    manifest = store.put_blob(
        canonical_json({"config": {"digest": config}, "layers": [{"digest": d} for d in layers]})
    )
    env_id = "sha256:" + f"{n:064x}"
    store.record_env(EnvEntry(env_id, manifest, config, f"img{n}"))
    when = now - age_days * DAY
    os.utime(store.envs / f"{env_id.split(':')[1]}-linux-64.json", (when, when))
    return env_id


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def test_no_policy_keeps_only_the_referenced(store: Store) -> None:
    a = add_image(store, 1, 100, 1)
    add_image(store, 2, 100, 1)
    assert images_to_keep(store, {a}, now=NOW) == {a}


def test_newer_than_keeps_recent_unreferenced_images(store: Store) -> None:
    old = add_image(store, 1, 100, 30)
    new = add_image(store, 2, 100, 2)
    ref = add_image(store, 3, 100, 90)
    assert images_to_keep(store, {ref}, newer_than_days=7, now=NOW) == {ref, new}
    assert old not in images_to_keep(store, set(), newer_than_days=7, now=NOW)


def test_max_size_keeps_the_newest_that_fit_counting_shared_blobs_once(store: Store) -> None:
    shared = b"s" * 1000
    ref = add_image(store, 1, 1000, 50, shared)
    newest = add_image(store, 2, 1000, 1, shared)  # +1000 (+ small config/manifest)
    middle = add_image(store, 3, 5000, 2)  # would not fit
    oldest = add_image(store, 4, 500, 3)  # fits after middle is skipped
    keep = images_to_keep(store, {ref}, max_bytes=4500, now=NOW)
    assert keep == {ref, newest, oldest}
    assert middle not in keep
    assert images_to_keep(store, {ref}, max_bytes=0, now=NOW) == {ref}


def test_gc_on_the_command_line_applies_the_policy(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no specs/, no git: nothing referenced
    recent = add_image(store, 1, 100, 1, now=time.time())
    add_image(store, 2, 100, 400, now=time.time())
    assert main(["store", "gc", "--force", "--keep-newer-than", "30", "--store", str(store.root)]) == 0
    assert [e.env_id for e in store.list_envs()] == [recent]
    assert main(["store", "gc", "--force", "--max-size", "0", "--store", str(store.root)]) == 0
    assert store.list_envs() == []


def test_gc_outside_git_refuses_without_force_and_changes_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No repository, so no record: a gc would keep no model's image.  Refused (exit 2);
    a dry run warns; --force runs."""
    monkeypatch.chdir(tmp_path)
    kept = add_image(store, 1, 100, 1, now=time.time())
    (store.tmp / "w-killed").write_bytes(b"k" * 2_000_000)

    assert main(["store", "gc", "--store", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"error: store gc: {NO_RECORDS}"
    assert "--force" in err.splitlines()[1] and err.splitlines()[1].startswith("hint: ")
    assert [e.env_id for e in store.list_envs()] == [kept]
    assert (store.tmp / "w-killed").exists()

    assert main(["store", "gc", "--dry-run", "--store", str(store.root)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {NO_RECORDS}" in err
    assert "(1 left in tmp/ by killed builds, 2.0 MB)" in err
    assert [e.env_id for e in store.list_envs()] == [kept]

    assert main(["store", "gc", "--force", "--store", str(store.root)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {NO_RECORDS}" in err and "removed " in err
    assert store.list_envs() == [] and not (store.tmp / "w-killed").exists()


def test_gc_in_a_repository_reads_its_records_without_warning(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.chdir(tmp_path)
    add_image(store, 1, 100, 1, now=time.time())
    assert main(["store", "gc", "--store", str(store.root)]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err and "kept 0 env(s)" in err
    assert store.list_envs() == []


def test_lock_time_source_builds_hold_the_store_so_gc_waits(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``envlock lock`` builds sdists in tmp/: while it does, gc cannot take the store."""
    import fcntl

    from envlock import sources
    from envlock.resolve import Request

    seen: list[bool] = []

    def probe(*args: object) -> list[object]:
        with (store.root / ".session.lock").open("rb") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append(False)
            except BlockingIOError:
                seen.append(True)  # held shared by prepare: gc would wait
        return []

    monkeypatch.setattr(sources, "_prepare", probe)
    request = Request.__new__(Request)
    sources.prepare(store, [], request, store.root, lambda ps: ps, lambda line: None)
    assert seen == [True]
