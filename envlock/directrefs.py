"""Direct references in a spec's pip packages (PEP 440 ``name @ URL``, PEP 508): what the
resolver is given, and how the lock writes them back.

- ``name @ file:REL`` / ``name @ ./REL`` / ``name @ ../REL``: a path relative to the spec,
  allowed only inside the repository that holds the spec (the git work tree, or the spec's
  directory outside git); the resolver gets the absolute ``file://`` URL, the lock the path
  relative to the spec (a directory ends in ``/``).
- ``name @ file:///ABS``: an absolute path, under the same rule (inside the repository, or
  refused); inside it the lock keeps a path relative to the spec too, when it is a directory.
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


def _absolute_path(url: str) -> Path | None:
    """The path of a ``file:///ABS`` (or ``file://localhost/ABS``) URL, else ``None``."""
    if not url.startswith("file://"):
        return None
    parsed = urlparse(url)
    if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
        return None
    return Path(unquote(parsed.path))


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
        absolute = _absolute_path(found[1]) if found is not None else None
        if absolute is not None:
            _check_inside(requirement, absolute.resolve(), spec_dir, spec_path)
        if found is None or m is None or not _is_relative_path(found[1]):
            out.append(requirement)
            continue
        relative = unquote(found[1].removeprefix("file:"))
        target = (spec_dir / relative).resolve()
        _check_inside(requirement, target, spec_dir, spec_path)
        url = "file://" + quote(str(target))
        out.append(f"{m.group(1)}{m.group(2) or ''} @ {url}{m.group(4)}")
    return tuple(out)


def _check_inside(requirement: str, target: Path, spec_dir: Path, spec_path: Path) -> None:
    """A local path of a spec (``target``, resolved) must exist inside the repository.

    Raises:
        SpecError: (exit 2) it points outside, or does not exist.
    """
    root = repository_root(spec_dir)
    if target != root and root not in target.parents:
        raise SpecError(
            f"{spec_path}: {requirement!r} points outside the repository ({root})",
            "paths in a spec must stay inside the repository that holds it (a lock naming "
            "another path works only on this machine); use a URL or find-links",
        )
    if not target.exists():
        raise SpecError(f"{spec_path}: {requirement!r}: {target} does not exist")


def absolute_locations(packages: Sequence[Package]) -> list[str]:
    """One ``warning:`` line per directory from which ``packages`` are locked by an absolute
    ``file://`` URL (an absolute find-links path, a ``file:///`` wheel): such a lock works
    only where that directory exists, unlike one naming paths relative to the spec."""
    by_dir: dict[str, set[str]] = {}
    for p in packages:
        path = _absolute_path(p.url)
        if path is not None:
            by_dir.setdefault(str(path.parent), set()).add(path.name)
    lines = []
    for directory, names in sorted(by_dir.items()):
        shown = ", ".join(sorted(names)[:2]) + (", ..." if len(names) > 2 else "")
        lines.append(
            f"the lock names {len(names)} file(s) in {directory} by absolute path ({shown}): it works "
            "only where that path exists; put them inside the repository and name them relative "
            'to the spec (find-links = ["../wheels"]) to make the lock portable'
        )
    return lines


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
