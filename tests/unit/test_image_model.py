"""image model: the image ID is the config digest; configs are fixed, merged and ordered."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from envlock.image.model import (
    CONFIG,
    CREATED,
    LAYER_GZIP,
    MANIFEST,
    Image,
    Layer,
    config_for,
    digest_of,
    merge_env,
)
from envlock.store import canonical_json


def digest(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


OURS = (
    Layer(digest("big"), digest("big"), 100, created_by="envlock: torch"),
    Layer(digest("rest"), digest("rest"), 20, created_by="envlock: rest"),
)

BASE_CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "created": "2024-05-01T12:34:56.789Z",
    "config": {
        "Env": ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "GPG_KEY=abc"],
        "Entrypoint": ["/docker-entrypoint.sh"],
        "Cmd": ["python3"],
        "Labels": {"z.base": "1", "maintainer": "someone"},
    },
    "rootfs": {"type": "layers", "diff_ids": [digest("base1"), digest("base2")]},
    "history": [
        {"created": "2024-05-01T12:00:00Z", "created_by": "ADD rootfs.tar /", "author": "x"},
        {"created": "2024-05-01T12:30:00Z", "created_by": "ENV LANG=C.UTF-8", "empty_layer": True},
    ],
}


def build_config(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "env": {"PATH": "/opt/env/bin:/usr/local/bin:/usr/bin", "PYTHONUNBUFFERED": "1"},
        "workdir": "/workspace",
        "labels": {"dev.envlock.env-id": digest("env"), "a.first": "yes"},
        "cmd": ["python"],
    }
    args.update(overrides)
    return config_for(BASE_CONFIG, OURS, **args)


def test_image_id_is_the_sha256_of_the_canonical_config() -> None:
    config = {"b": 1, "a": {"y": [1, 2], "x": "é"}}
    image = Image(config, OURS)

    assert image.config_bytes == canonical_json(config)
    assert image.config_bytes == '{"a":{"x":"é","y":[1,2]},"b":1}'.encode()
    assert image.image_id == "sha256:" + hashlib.sha256(image.config_bytes).hexdigest()


def test_image_id_ignores_config_key_order() -> None:
    assert Image({"a": 1, "b": 2}, ()).image_id == Image({"b": 2, "a": 1}, ()).image_id


def test_digest_of_is_prefixed_sha256() -> None:
    assert digest_of(b"abc") == "sha256:" + hashlib.sha256(b"abc").hexdigest()


def test_manifest_lists_the_config_and_the_layers() -> None:
    image = Image({"os": "linux"}, OURS)

    manifest = image.manifest()

    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == MANIFEST
    assert manifest["config"] == {
        "mediaType": CONFIG,
        "digest": image.image_id,
        "size": len(image.config_bytes),
    }
    assert manifest["layers"] == [
        {"mediaType": la.media_type, "digest": la.digest, "size": la.size} for la in OURS
    ]
    assert "annotations" not in manifest


def test_manifest_for_other_layers_keeps_the_image_id() -> None:
    image = Image({"os": "linux"}, OURS)
    gz = tuple(Layer(digest(f"gz{i}"), la.diff_id, 5, LAYER_GZIP) for i, la in enumerate(OURS))

    manifest = image.manifest(gz)

    assert manifest["config"]["digest"] == image.image_id
    assert [la["digest"] for la in manifest["layers"]] == [la.digest for la in gz]
    assert {la["mediaType"] for la in manifest["layers"]} == {LAYER_GZIP}


def test_manifest_annotations_are_sorted_and_bytes_are_canonical() -> None:
    image = Image({}, (), annotations={"z": "1", "a": "2"})

    assert list(image.manifest()["annotations"]) == ["a", "z"]
    assert image.manifest_bytes() == canonical_json(image.manifest())


def test_config_lists_base_diff_ids_first_then_ours() -> None:
    config = build_config()

    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": [digest("base1"), digest("base2"), digest("big"), digest("rest")],
    }


def test_config_has_fixed_created_times_everywhere() -> None:
    config = build_config()

    assert config["created"] == CREATED
    assert [h["created"] for h in config["history"]] == [CREATED] * 4


def test_config_history_keeps_base_steps_then_ours() -> None:
    history = build_config()["history"]

    assert history == [
        {"created": CREATED, "created_by": "ADD rootfs.tar /"},
        {"created": CREATED, "created_by": "ENV LANG=C.UTF-8", "empty_layer": True},
        {"created": CREATED, "created_by": "envlock: torch"},
        {"created": CREATED, "created_by": "envlock: rest"},
    ]


def test_config_env_overrides_path_and_keeps_base_vars() -> None:
    env = build_config()["config"]["Env"]

    assert env == [
        "PATH=/opt/env/bin:/usr/local/bin:/usr/bin",
        "LANG=C.UTF-8",
        "GPG_KEY=abc",
        "PYTHONUNBUFFERED=1",
    ]


def test_config_labels_are_merged_and_sorted() -> None:
    labels = build_config(labels={"maintainer": "us", "dev.envlock.env-id": "x"})["config"]["Labels"]

    assert labels == {"dev.envlock.env-id": "x", "maintainer": "us", "z.base": "1"}
    assert list(labels) == sorted(labels)


def test_config_drops_entrypoint_and_sets_cmd_and_workdir() -> None:
    inner = build_config()["config"]

    assert "Entrypoint" not in inner
    assert inner["Cmd"] == ["python"]
    assert inner["WorkingDir"] == "/workspace"


def test_config_does_not_modify_the_base_config() -> None:
    before = canonical_json(BASE_CONFIG)
    build_config()

    assert canonical_json(BASE_CONFIG) == before


def test_config_keeps_base_platform_and_defaults_to_linux_amd64() -> None:
    assert build_config()["architecture"] == "amd64"
    assert (
        config_for({"architecture": "arm64"}, (), env={}, workdir="/", labels={}, cmd=[])["architecture"]
        == "arm64"
    )
    bare = config_for({}, OURS, env={}, workdir="/", labels={}, cmd=["sh"])
    assert (bare["architecture"], bare["os"]) == ("amd64", "linux")
    assert bare["rootfs"]["diff_ids"] == [digest("big"), digest("rest")]
    assert bare["config"]["Env"] == []


def test_config_of_the_same_inputs_is_the_same_image_id() -> None:
    assert Image(build_config(), OURS).image_id == Image(build_config(), OURS).image_id


def test_config_of_a_different_layer_is_a_different_image_id() -> None:
    other = (OURS[0], Layer(digest("rest2"), digest("rest2"), 20))
    changed = config_for(BASE_CONFIG, other, env={}, workdir="/", labels={}, cmd=[])
    same = config_for(BASE_CONFIG, OURS, env={}, workdir="/", labels={}, cmd=[])

    assert Image(changed, other).image_id != Image(same, OURS).image_id


def test_merge_env_keeps_base_order_then_adds_ours_sorted() -> None:
    assert merge_env(["B=1", "A=2"], {"Z": "z", "C": "c", "B": "new"}) == ["B=new", "A=2", "C=c", "Z=z"]


def test_merge_env_keeps_equals_signs_in_values() -> None:
    assert merge_env(["OPTS=a=b=c"], {}) == ["OPTS=a=b=c"]
    assert merge_env([], {"X": "k=v"}) == ["X=k=v"]


# distribution/reference: a path component and a tag (docker, containerd and registries share it)
_REPO_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOCKER_REF = re.compile(rf"^{_REPO_COMPONENT}(?:/{_REPO_COMPONENT})*:[\w][\w.-]{{0,127}}$")


@pytest.mark.parametrize(
    ("name", "repo"),
    [
        ("vision", "vision"),
        ("Train-GPU", "train-gpu"),
        ("a__b", "a__b"),
        ("a---b", "a---b"),
        ("x-", "x"),  # the spec name allows these; an engine answers "invalid reference format"
        ("x__", "x"),
        ("a_-b", "a-b"),
        ("a-_b", "a-b"),
        ("a___b", "a-b"),
    ],
)
def test_every_spec_name_gives_a_reference_an_engine_accepts(name: str, repo: str) -> None:
    from envlock.image.build import image_ref
    from envlock.spec import _NAME

    assert _NAME.match(name)
    ref = image_ref(name, "sha256:" + "0123456789abcdef" * 4, "linux-64")
    assert ref == f"envlock/{repo}:0123456789abcdef-linux-64"
    assert _DOCKER_REF.match(ref), ref
