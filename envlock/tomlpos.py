"""Find the line where a TOML key is written, so errors can name ``file:line``.

``tomllib`` returns values without positions.  This scanner follows table headers
and ``key =`` lines closely enough for error messages; it never decides validity.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)


def _split_dotted(key: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", key)
    return tuple(p.strip("\"'") for p in parts)


def find_line(text: str, path: tuple[str, ...]) -> int | None:
    """Return the 1-based line where the dotted ``path`` is defined, or ``None``.

    A table path (``("pip",)``) matches its ``[pip]`` header; a key path
    (``("pip", "packages")``) matches ``packages =`` inside ``[pip]`` or a dotted
    ``pip.packages =`` at top level.
    """
    table: tuple[str, ...] = ()
    fallback: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header and not line.lstrip().startswith("#"):
            table = _split_dotted(header.group(1))
            if table == path:
                return number
            if fallback is None and table[: len(path)] == path:
                fallback = number
            continue
        key = _KEY.match(line)
        if key:
            full = table + _split_dotted(key.group(1))
            if full == path:
                return number
            if fallback is None and len(full) > len(path) and full[: len(path)] == path:
                fallback = number
    if fallback is None and len(path) > 1:
        return find_line(text, path[:-1])
    return fallback
