"""Build plans and build cache names: what a cache may hand over is checked against the lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.errors import UsageError
from envlock.image import buildcache
from envlock.image.conflicts import Conflict, Decision
from envlock.image.model import LAYER_TAR, Layer
from envlock.image.plan import Plan, key
from envlock.lockfile import Package
from envlock.store import Store


def pkg(name: str, version: str = "1.0", sha: str = "a") -> Package:
    return Package("pip", name, version, f"https://x/{name}.whl", sha * 64)


PIP = [
    pkg("torch", "2.9.1", "1"),
    pkg("numpy", "2.3.5", "2"),
    pkg("six", "1.17", "3"),
    pkg("tqdm", "4.0", "4"),
]


def test_groups_and_labels_are_the_image_s_history() -> None:
    plan = Plan(("torch",))
    assert plan.groups(PIP) == [
        ("envlock: pip torch==2.9.1", [PIP[0]]),
        ("envlock: pip 3 packages", [PIP[1], PIP[2], PIP[3]]),
    ]
    assert Plan(tuple(p.name for p in PIP)).groups(PIP)[-1][0] == "envlock: pip tqdm==4.0"


def test_a_plan_survives_its_json_and_carries_the_decision() -> None:
    decision = Decision((Conflict("lib/x.txt", PIP[3], (PIP[2],)),), {"six": frozenset({"lib/x.txt"})})
    plan = Plan(("torch",), (("lib/x.txt", "tqdm", ("six",)),))
    again = Plan.parse(plan.to_json(), PIP)
    assert again == plan
    assert again.decision(PIP) == decision
    assert again.decision(PIP).messages() == decision.messages()


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {"big": ["torch"]},
        {"big": ["torch"], "conflicts": [], "extra": 1},
        {"big": ["scipy"], "conflicts": []},  # not in the lock
        {"big": ["torch", "torch"], "conflicts": []},
        {"big": "torch", "conflicts": []},
        {"big": [], "conflicts": [["/etc/passwd", "tqdm", ["six"]]]},
        {"big": [], "conflicts": [["a/../../x", "tqdm", ["six"]]]},
        {"big": [], "conflicts": [["a/\x1b[31mx", "tqdm", ["six"]]]},
        {"big": [], "conflicts": [["a/x", "tqdm", ["tqdm"]]]},
        {"big": [], "conflicts": [["a/x", "tqdm", []]]},
        {"big": [], "conflicts": [["a/x", "evil", ["six"]]]},
        {"big": [], "conflicts": [["a/x", "tqdm"]]},
        {"big": [], "conflicts": [[1, "tqdm", ["six"]]]},
    ],
)
def test_a_plan_that_is_not_one_for_this_lock_is_refused(data: object) -> None:
    with pytest.raises(ValueError):
        Plan.parse(data, PIP)


def test_the_plan_key_covers_the_wheels_and_python() -> None:
    base = key(PIP, "3.11")
    assert key(list(reversed(PIP)), "3.11") == base
    assert key(PIP, "3.12") != base
    assert key([*PIP[:3], pkg("tqdm", "4.0", "5")], "3.11") != base
    built = [*PIP[:3], Package("pip", "tqdm", "4.0", "x", "4" * 64, built="sha256:" + "6" * 64)]
    assert key(built, "3.11") != base


def test_entry_tags_and_cache_references() -> None:
    assert buildcache.tag("layer", "0" * 64) == "layer-" + "0" * 64
    for kind, k in (
        ("image", "0" * 64),
        ("layer", "0" * 63),
        ("layer", "../" + "0" * 61),
        ("layer", "A" * 64),
    ):
        with pytest.raises(ValueError):
            buildcache.tag(kind, k)
    assert buildcache.target("127.0.0.1:5000/team/cache").repository == "team/cache"
    for bad in ("127.0.0.1:5000/team/cache:latest", f"127.0.0.1:5000/team/cache@sha256:{'0' * 64}"):
        with pytest.raises(UsageError):
            buildcache.target(bad)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("", "the build cache reference is empty"),
        ("  ", "the build cache reference is empty"),
        ("127.0.0.1:5000", "the build cache is a repository in a registry, not '127.0.0.1:5000'"),
        ("registry.example.com", "the build cache is a repository in a registry, not 'registry.example.com'"),
    ],
)
def test_an_empty_reference_or_a_bare_registry_is_no_cache_reference(reference: str, message: str) -> None:
    """Not "no cache" (an unset variable in ``--cache $CACHE``), nor Docker Hub's
    ``library/127.0.0.1`` with the port read as a tag."""
    with pytest.raises(UsageError) as caught:
        buildcache.target(reference)
    assert caught.value.message == message
    assert caught.value.hint == "give REGISTRY/REPO, e.g. --cache registry.example.com/team/cache"


def test_remembered_keys_come_back_and_damaged_ones_are_none(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    manifest = "sha256:" + "9" * 64
    layer = Layer("sha256:" + "1" * 64, "sha256:" + "1" * 64, 10, LAYER_TAR, "envlock: pip torch==2.9.1")
    entries = [
        buildcache.Entry("layer", "a" * 64, (layer,)),
        buildcache.Entry("plan", "b" * 64, data={"plan": {"big": [], "conflicts": []}}),
    ]
    buildcache.remember(store, manifest, entries)
    assert buildcache.recall(store, manifest) == entries
    buildcache.keys_path(store, manifest).write_text("{not json")
    assert buildcache.recall(store, manifest) is None
    assert buildcache.recall(store, "sha256:" + "8" * 64) is None


def test_an_entry_document_lists_its_layers() -> None:
    layer = Layer("sha256:" + "1" * 64, "sha256:" + "1" * 64, 10, LAYER_TAR, "envlock: pip 3 packages")
    doc = buildcache.Entry("layer", "a" * 64, (layer,)).document()
    assert doc == {
        "schema": "envlock.cache/v1",
        "kind": "layer",
        "key": "a" * 64,
        "diff_ids": [layer.diff_id],
        "sizes": [10],
        "created_by": ["envlock: pip 3 packages"],
    }


def test_the_companions_of_packages_are_those_sharing_a_conflict_with_them() -> None:
    plan = Plan(("torch",), (("a/x", "tqdm", ("six",)), ("a/y", "six", ("numpy",))))
    assert plan.companions({"torch"}) == {"torch"}
    assert plan.companions({"tqdm"}) == {"tqdm", "six"}
    assert plan.companions({"six"}) == {"six", "tqdm", "numpy"}
    assert plan.companions({"numpy"}) == {"numpy", "six"}  # not on to tqdm: six's conflict with it is whole
    assert plan.companions(set()) == set()
