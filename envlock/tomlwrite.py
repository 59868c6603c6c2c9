"""Canonical TOML writer: same data, same bytes, on every machine.

Keys are sorted, scalars come before tables, arrays of tables are written as
``[[a.b]]`` blocks, strings use basic quoting with fixed escapes.  Only the types
that envlock's files hold are supported: str, int, bool, lists and tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f"\\\x7f]')
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def quote(value: str) -> str:
    if not _NEEDS_ESCAPE.search(value):
        return '"' + value + '"'
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(name: str) -> str:
    if _BARE_KEY.fullmatch(name):
        return name
    return quote(name)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {_scalar(v)}" for k, v in sorted(value.items()))
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, dict) for v in value)


def _write_table(lines: list[str], table: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
    # Only plain dicts, lists and tuples reach here (envlock builds the data itself):
    # concrete isinstance checks are several times faster than the collections.abc ones.
    items = sorted(table.items())
    nested = []
    for k, v in items:
        if isinstance(v, dict) or _is_table_array(v):
            nested.append((k, v))
        else:
            lines.append(f"{_key(k)} = {_scalar(v)}")
    for k, v in nested:
        path = (*prefix, k)
        dotted = ".".join(_key(p) for p in path)
        if isinstance(v, dict):
            lines.append("")
            lines.append(f"[{dotted}]")
            _write_table(lines, v, path)
        else:
            for item in v:
                lines.append("")
                lines.append(f"[[{dotted}]]")
                _write_table(lines, item, path)


def dumps(data: Mapping[str, Any], header: str = "") -> str:
    """Serialise ``data`` canonically; ``header`` lines are written as comments first."""
    lines = [f"# {h}".rstrip() for h in header.splitlines()] if header else []
    _write_table(lines, data, ())
    while lines and lines[0] == "":
        lines.pop(0)
    return "\n".join(lines) + "\n"
