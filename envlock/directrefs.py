"""Direct references in a spec's pip packages (PEP 440 ``name @ URL``, PEP 508): what the
resolver is given, and how the lock writes them back.

- ``name @ file:REL`` / ``name @ ./REL`` / ``name @ ../REL``: a path relative to the spec,
  allowed only inside the repository that holds the spec (the git work tree, or the spec's
  directory outside git); the resolver gets the absolute ``file://`` URL, the lock the path
  relative to the spec (a directory ends in ``/``).
- ``name @ https://...`` and ``name @ git+https://...@REV``: the lock keeps the spec's URL as
  written, ``${VAR}`` placeholders and all (never the expanded credentials); a git URL without
  its ``@REV``, since the lock holds the commit.

URL handling is minimal on purpose (a split at `` @ ``, the scheme, the ``@REV`` suffix):
parsing and redaction in general belong to one URL module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from envlock.errors import SpecError
from envlock.lockfile import Package

_DIRECT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*@\s*(\S+)(.*)$")
_GIT_REV = re.compile(r"^(git\+[a-z]+://[^/]*/[^@#]*)(@[^#]*)?(#.*)?$")


def split(requirement: str) -> tuple[str, str] | None:
    """``(canonical name, URL)`` of a direct reference, else ``None``."""
    from packaging.utils import canonicalize_name

    m = _DIRECT.match(requirement)
    if m is None:
        return None
    return canonicalize_name(m.group(1)), m.group(3)


def _is_relative_path(url: str) -> bool:
    return url.startswith(("./", "../")) or (url.startswith("file:") and not url.startswith("file://"))


def repository_root(spec_dir: Path) -> Path:
    from envlock.gitcli import toplevel

    return (toplevel(spec_dir) or spec_dir).resolve()


def for_resolver(requirements: Sequence[str], spec_path: Path) -> tuple[str, ...]:
    """The requirements with relative paths made absolute ``file://`` URLs.

    Raises:
        SpecError: (exit 2) a path leaves the repository, or does not exist.
    """
    spec_dir = (Path.cwd() / spec_path).parent.resolve()
    out = []
    for requirement in requirements:
        found = split(requirement)
        m = _DIRECT.match(requirement)
        if found is None or m is None or not _is_relative_path(found[1]):
            out.append(requirement)
            continue
        relative = unquote(found[1].removeprefix("file:"))
        target = (spec_dir / relative).resolve()
        root = repository_root(spec_dir)
        if target != root and root not in target.parents:
            raise SpecError(
                f"{spec_path}: {requirement!r} points outside the repository ({root})",
                "paths in a spec must stay inside the repository that holds it; use a URL or find-links",
            )
        if not target.exists():
            raise SpecError(f"{spec_path}: {requirement!r}: {target} does not exist")
        url = "file://" + quote(str(target))
        out.append(f"{m.group(1)}{m.group(2) or ''} @ {url}{m.group(4)}")
    return tuple(out)


def as_locked(packages: Sequence[Package], requirements: Sequence[str], spec_path: Path) -> list[Package]:
    """Lock entries with the spec's own URLs (placeholders kept) and paths relative to the spec."""
    spec_dir = (Path.cwd() / spec_path).parent.resolve()
    written = {}
    for requirement in requirements:
        found = split(requirement)
        if found is not None:
            written[found[0]] = found[1]
    out = []
    for p in packages:
        url = written.get(p.name)
        if p.source == "git" and url and url.startswith("git+"):
            m = _GIT_REV.match(url)
            p = replace(p, url=m.group(1) if m else url)
        elif p.source == "url" and url and "://" in url:
            p = replace(p, url=url)
        elif p.source == "path" and p.url.startswith("file://"):
            local = Path(unquote(urlparse(p.url).path))
            rel = os.path.relpath(local, spec_dir)
            p = replace(p, url=Path(rel).as_posix() + ("/" if p.url.endswith("/") else ""))
        out.append(p)
    return out
