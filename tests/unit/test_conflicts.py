"""Two packages, one path: decided over the whole image, by a documented rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.errors import CheckFailed, EnvlockError, Problems, ServiceUnavailable, UsageError, raise_all
from envlock.image import conflicts
from envlock.image import layer as layermod
from envlock.image.conflicts import enforce
from envlock.lockfile import Package

SITE = "opt/env/lib/python3.11/site-packages"


def pkg(name: str, version: str = "1.0") -> Package:
    return Package("pip", name, version, f"https://x.example/{name}-{version}-py3-none-any.whl", "0" * 64)


def decide(files: list[tuple[Package, list[layermod.Entry]]]) -> conflicts.Decision:
    return conflicts.decide([(p, Path("/nonexistent.whl"), conflicts.index(entries)) for p, entries in files])


def test_the_same_bytes_from_two_packages_is_no_conflict() -> None:
    same = layermod.file(f"{SITE}/backports/__init__.py", b"ns\n")
    decision = decide([(pkg("backports-tarfile"), [same]), (pkg("backports-functools-lru-cache"), [same])])
    assert decision.conflicts == () and decision.omit == {}


def test_the_name_that_sorts_last_wins_whatever_the_input_order() -> None:
    jwt = (pkg("jwt", "1.3.1"), [layermod.file(f"{SITE}/jwt/__init__.py", b"jwt\n")])
    pyjwt = (pkg("pyjwt", "2.9.0"), [layermod.file(f"{SITE}/jwt/__init__.py", b"pyjwt\n")])
    for files in ([jwt, pyjwt], [pyjwt, jwt]):
        decision = decide(files)
        (conflict,) = decision.conflicts
        assert conflict.winner.name == "pyjwt" and [p.name for p in conflict.losers] == ["jwt"]
        assert decision.omit == {"jwt": frozenset({f"{SITE}/jwt/__init__.py"})}


def test_an_exec_bit_alone_is_a_difference() -> None:
    a = layermod.file("opt/env/bin/tool", b"#!/bin/sh\n", executable=True)
    b = layermod.file("opt/env/bin/tool", b"#!/bin/sh\n", executable=False)
    assert len(decide([(pkg("a"), [a]), (pkg("b"), [b])]).conflicts) == 1


def test_a_third_package_with_the_winners_bytes_keeps_its_copy() -> None:
    new = layermod.file(f"{SITE}/thop/profile.py", b"NEW\n")
    old = layermod.file(f"{SITE}/thop/profile.py", b"OLD\n")
    decision = decide([(pkg("thop"), [old]), (pkg("ultralytics-thop"), [new]), (pkg("thop-fork"), [new])])
    assert decision.omit == {"thop": frozenset({f"{SITE}/thop/profile.py"})}


def test_one_warning_per_pair_names_both_packages_the_paths_and_the_winner() -> None:
    paths = [f"{SITE}/thop/{n}.py" for n in ("a", "b", "c", "d", "e")]
    old = [layermod.file(p, b"old") for p in paths]
    new = [layermod.file(p, b"new") for p in paths]
    (message,) = decide([(pkg("thop", "0.1.1"), old), (pkg("ultralytics-thop", "2.0.0"), new)]).messages()
    assert message.startswith(
        "thop 0.1.1 and ultralytics-thop 2.0.0 install 5 files with different content ("
    )
    assert f"/{paths[0]}, /{paths[1]}, /{paths[2]} and 2 more" in message
    assert (
        "the image has ultralytics-thop's (of packages writing one file, the name that sorts last wins)"
        in message
    )


def test_policy_error_raises_every_conflict_as_bad_input() -> None:
    clash = [
        (pkg("jwt"), [layermod.file("a", b"1"), layermod.file("x/b", b"1")]),
        (pkg("pyjwt"), [layermod.file("a", b"2")]),
        (pkg("thop"), [layermod.file("x/b", b"2")]),
    ]
    decision = decide(clash)
    assert len(enforce(decision, "warn")) == 2
    with pytest.raises(Problems) as caught:
        enforce(decision, "error")
    assert caught.value.exit_code == 2
    assert len(caught.value.errors) == 2
    assert enforce(decide([]), "error") == ()


def test_problems_exit_with_the_most_severe_code() -> None:
    bad, down, broken = UsageError("bad"), ServiceUnavailable("down"), CheckFailed("broken")
    assert Problems([bad, down]).exit_code == 3
    assert Problems([bad, down, broken]).exit_code == 1
    assert Problems([bad, UsageError("worse")]).exit_code == 2
    assert [e.message for e in Problems([Problems([bad, down]), broken]).errors] == ["bad", "down", "broken"]


def test_raise_all_raises_one_error_as_itself() -> None:
    raise_all([])
    with pytest.raises(UsageError):
        raise_all([UsageError("only")])
    with pytest.raises(Problems):
        raise_all([UsageError("one"), EnvlockError("two")])


# -- what a build checks before it downloads anything -------------------------------------------


def test_precheck_finds_every_problem_of_a_platform_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from envlock.image.build import precheck
    from envlock.lockfile import PlatformLock
    from envlock.store import Store

    packages = (
        Package(
            "pip", "torch", "2.5.1+cpu", "https://x/torch-2.5.1+cpu-cp312-cp312-linux_x86_64.whl", "1" * 64
        ),
        Package("pip", "src", "1.0", "https://x/src-1.0.tar.gz", "2" * 64),
        Package("pip", "gone", "1.0", "../wheels/gone-1.0-py3-none-any.whl", "3" * 64),
        Package("pip", "fine", "1.0", "https://x/fine-1.0-cp311-cp311-linux_x86_64.whl", "4" * 64),
    )
    plat = PlatformLock("linux-64", "3.12", base="debian:bookworm", packages=packages)
    problems = precheck(plat, tmp_path / "specs", Store(tmp_path / "store"))
    messages = [p.message for p in problems]
    assert len(messages) == 4  # torch's cp312 wheel is right for Python 3.12
    assert messages[0].startswith("the spec asks for Python 3.12, but debian:bookworm")
    # an sdist is fine when the lock has its built wheel's digest (envlock.sources); not this one
    assert messages[1] == (
        "src 1.0 (src-1.0.tar.gz) is a source distribution locked without the digest of its built wheel"
    )
    assert (
        messages[2]
        == f"gone 1.0 (gone-1.0-py3-none-any.whl): {tmp_path}/wheels/gone-1.0-py3-none-any.whl does not exist"
    )
    assert messages[3].startswith(
        "fine 1.0 (fine-1.0-cp311-cp311-linux_x86_64.whl) cannot install on linux-64 / Python 3.12: "
    )
    assert Problems(problems).exit_code == 1
