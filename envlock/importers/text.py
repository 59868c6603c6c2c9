"""Small helpers the importers share: reading files, YAML, names and index URLs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from envlock.errors import SpecError
from envlock.importers import Imported

PYPI_SIMPLE = ("https://pypi.org/simple", "https://pypi.python.org/simple")


def read_text(path: Path) -> str:
    """The UTF-8 text of ``path`` (``envlock.boundary.read_text``: a directory, device, fifo,
    binary or non-UTF-8 file is one error naming it).

    Raises:
        SpecError: (exit 2) naming the file.
    """
    from envlock.boundary import read_text as read_boundary

    return read_boundary(path, "file envlock can import", None, SpecError)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with PyYAML's base loader (C-accelerated when available): every
    scalar stays a string, so ``python_version: 3.10`` is ``"3.10"`` (not the float 3.1) and
    versions such as ``1.10`` keep their digits; no tags are constructed.

    Raises:
        SpecError: unreadable file or invalid YAML, naming the file and line.
    """
    import yaml  # type: ignore[import-untyped]

    text = read_text(path)
    loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{path}: invalid YAML: nested too deeply") from None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file.

    Raises:
        SpecError: unreadable file or invalid TOML, naming the file.
    """
    import tomllib

    text = read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise SpecError(f"{path}: invalid TOML: nested too deeply") from None


def truthy(value: Any) -> bool:
    """A YAML 1.1 boolean read as a string by :func:`read_yaml` (``true``, ``yes``, ``on``)."""
    return isinstance(value, str) and value.lower() in ("true", "yes", "on", "y")


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def add_index(found: Imported, url: str, where: str) -> str:
    """An index URL as a spec may hold it: literal credentials become ``${VAR}`` placeholders
    (``envlock.importers.scrub.url``: a warning names the variables to export; the secret
    itself is never written)."""
    from envlock.importers import scrub

    return scrub.url(found, url, where, "index URL").rstrip("/")


def is_pypi(url: str) -> bool:
    return url.rstrip("/") in PYPI_SIMPLE


def python_from_specifier(specifier: str) -> str | None:
    """A CPython minor version for a ``requires-python`` specifier: 3.11 when it is allowed
    (bookworm's Python), else the newest allowed of 3.9-3.13, else None."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        allowed = SpecifierSet(specifier)
    except InvalidSpecifier:
        return None
    if allowed.contains("3.11.0"):
        return "3.11"
    for minor in ("3.13", "3.12", "3.10", "3.9"):
        if allowed.contains(minor + ".0"):
            return minor
    return None
