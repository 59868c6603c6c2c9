"""The canonical TOML writer: what it writes, tomllib reads back unchanged."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from envlock.tomlwrite import dumps


def round_trip(data: dict[str, Any]) -> dict[str, Any]:
    return tomllib.loads(dumps(data))


@pytest.mark.parametrize(
    "data",
    [
        {"a": 1, "b": True, "c": False, "d": "x", "e": [1, 2], "f": []},
        {"outer": {"inner": {"deep": {"x": 1}}, "y": "z"}},
        {"outer": {}},
        {"packages": [{"name": "a", "v": 1}, {"name": "b", "v": 2}]},
        {"platforms": [{"name": "l", "packages": [{"n": "x"}, {"n": "y"}]}, {"name": "m"}]},
        {"a": [{"b": {"c": [{"d": 1}, {"d": 2}]}}]},
        {"a": [{}]},
        {"arr": [{"x": 1}, "s", 2]},
        {"arr": [[{"x": 1}], [{"y": {"z": 2}}]]},
        {"arr": [[1, 2], ["a"], []]},
        {"inline": [{"k": {"n": 1}}], "t": {"list": [{"a": [{"b": 1}]}]}},
    ],
    ids=[
        "scalars",
        "nested-tables",
        "empty-table",
        "array-of-tables",
        "nested-array-of-tables",
        "table-in-array-of-tables",
        "empty-table-in-array",
        "inline-table-in-mixed-array",
        "arrays-of-inline-tables",
        "nested-arrays",
        "mixed",
    ],
)
def test_structures_round_trip(data: dict[str, Any]) -> None:
    assert round_trip(data) == data


@pytest.mark.parametrize(
    "value",
    [
        'say "hi"',
        "back\\slash \\n not a newline",
        "line one\nline two\r\n",
        "tab\tbell\x07nul\x00esc\x1bdel\x7f",
        "\b\f",
        "unicode: ü 中文 😀 \u2028 \u00a0",
        '\'single\' and """ triple',
        "",
        "${TOKEN}@host",
    ],
)
def test_strings_round_trip(value: str) -> None:
    data = {"s": value, "list": [value], "t": {"s": value}, "arr": [{"s": value}]}
    assert round_trip(data) == data


@pytest.mark.parametrize("key", ["plain", "with space", "dotted.key", "ünïcode", "", 'q"uote', "a=b", "1.0"])
def test_keys_round_trip(key: str) -> None:
    data = {key: 1, "t": {key: {key: "v"}}, "arr": [{key: 2}], "inline": [{key: 3}, 4]}
    assert round_trip(data) == data


def test_keys_are_sorted_and_scalars_come_first() -> None:
    text = dumps({"z": 1, "a": {"y": 2, "b": 3}, "m": "x", "b": [{"k": 1}]})
    assert text == 'm = "x"\nz = 1\n\n[a]\nb = 3\ny = 2\n\n[[b]]\nk = 1\n'


def test_same_bytes_for_any_key_order() -> None:
    one = {"b": {"y": 1, "x": [{"q": 1, "p": 2}]}, "a": "s", "c": {"z": {}, "w": 1}}
    two = {"c": {"w": 1, "z": {}}, "a": "s", "b": {"x": [{"p": 2, "q": 1}], "y": 1}}
    assert dumps(one) == dumps(two)


def test_header_lines_become_comments() -> None:
    text = dumps({"a": 1}, header="first line\nsecond line")
    assert text == "# first line\n# second line\na = 1\n"
    assert tomllib.loads(text) == {"a": 1}


def test_output_ends_with_one_newline_and_no_leading_blank() -> None:
    text = dumps({"t": {"a": 1}})
    assert text == "[t]\na = 1\n"


def test_unsupported_types_are_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        dumps({"x": 1.5})
