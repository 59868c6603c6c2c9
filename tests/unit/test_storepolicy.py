"""store gc policies: which unreferenced images --keep-newer-than / --max-size keep."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from envlock.cli import main
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
    assert main(["store", "gc", "--keep-newer-than", "30", "--store", str(store.root)]) == 0
    assert [e.env_id for e in store.list_envs()] == [recent]
    assert main(["store", "gc", "--max-size", "0", "--store", str(store.root)]) == 0
    assert store.list_envs() == []
