"""Files written by two packages, decided over the whole image, never by layer order.

pip and uv install both members of pairs such as ``backports.tarfile`` and
``backports.functools-lru-cache`` (the same ``backports/__init__.py``), ``thop`` and
``ultralytics-thop`` or ``PyJWT`` and ``jwt`` (different content for the same paths): the
package installed last overwrites.  envlock puts packages into several layers, where the
upper layer's file wins in the OCI overlay (image spec, "Applying Changesets"), so
leaving it to the layers would make the visible file depend on which package happens
to be big.  Instead:

- the same content (bytes and exec bit) from several packages is no conflict, in any
  layer arrangement;
- different content is a conflict with one documented winner: **the package whose
  normalised name sorts last** (PEP 503 names; ``ultralytics-thop`` over ``thop``,
  ``pyjwt`` over ``jwt``).  Every other package's copy is left out of its layer, so
  the image shows the winner's file whichever layers the packages land in.  Conflict-free
  environments build exactly as before.

``[image] file-conflicts = "warn"`` (default) reports each conflict as a warning;
``"error"`` refuses the environment (exit 2).
"""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from envlock.errors import CheckFailed, EnvlockError, raise_all
from envlock.image import layer as layermod
from envlock.lockfile import Package

if TYPE_CHECKING:
    from envlock.image.venv import Interpreter
    from envlock.store import Store

POLICIES = ("warn", "error")
INDEX_FORMAT = "files1"  # the cached file indexes' format, part of their names
SHOWN = 3  # paths named per pair of packages; the rest are counted


def content_key(entry: layermod.Entry) -> str:
    """What a reader of the image sees at the entry's path: kind, content sha256, exec bit.

    Reads a zip member's bytes (zipfile checks its CRC); called only for paths that
    more than one package writes with the same :func:`quick_key`.
    """
    if entry.kind == "symlink":
        return f"symlink:{entry.target}"
    if entry.kind != "file":
        return entry.kind
    hasher = hashlib.sha256()
    if entry.data is not None:
        hasher.update(entry.data)
    elif entry.member:
        assert entry.source is not None
        with zipfile.ZipFile(entry.source) as archive, archive.open(entry.member) as fh:
            while chunk := fh.read(1 << 20):
                hasher.update(chunk)
    else:
        assert entry.source is not None
        hasher.update(entry.source.read_bytes())
    return f"file:{hasher.hexdigest()}:{'x' if entry.executable else '-'}"


def quick_key(entry: layermod.Entry) -> str:
    """A key that differs whenever the content differs, without decompressing anything: a zip
    member's size and CRC-32 (from the central directory), else the full content key.
    Equal quick keys are confirmed with :func:`content_key` before two files count as one."""
    if entry.kind == "file" and entry.member and entry.crc >= 0:
        return f"zip:{entry.length}:{entry.crc:08x}:{'x' if entry.executable else '-'}"
    return content_key(entry)


@dataclass(frozen=True)
class FileRef:
    """One file a wheel installs, as the conflict check needs it (and caches it)."""

    path: str  # in the image, no leading "/"
    quick: str  # quick_key
    member: str = ""  # the zip member holding its content ("" when the quick key is the content key)
    executable: bool = False


def index(entries: Sequence[layermod.Entry]) -> list[FileRef]:
    return [
        FileRef(e.path, quick_key(e), e.member if e.kind == "file" else "", e.executable) for e in entries
    ]


@dataclass(frozen=True)
class Conflict:
    """Packages writing one path with different content, and the one whose copy is kept."""

    path: str  # in the image, no leading "/"
    winner: Package
    losers: tuple[Package, ...]


@dataclass(frozen=True)
class Decision:
    conflicts: tuple[Conflict, ...] = ()
    # package name -> paths it must not write (``envlock.image.venv.Omit``)
    omit: dict[str, frozenset[str]] = field(default_factory=dict)

    def messages(self) -> tuple[str, ...]:
        """One line per pair of packages (winner, losers), naming both, the paths and the winner."""
        groups: dict[tuple[Package, tuple[Package, ...]], list[str]] = {}
        for c in self.conflicts:
            groups.setdefault((c.winner, c.losers), []).append(c.path)
        out = []
        for (winner, losers), paths in sorted(groups.items(), key=lambda g: (g[0][0].name, g[1])):
            names = " and ".join(f"{p.name} {p.version}" for p in (*losers, winner))
            shown = ", ".join(f"/{p}" for p in sorted(paths)[:SHOWN])
            more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
            files = "a file" if len(paths) == 1 else f"{len(paths)} files"
            out.append(
                f"{names} install {files} with different content ({shown}{more}); "
                f"the image has {winner.name}'s (of packages writing one file, the name that sorts last wins)"
            )
        return tuple(out)


def decide(files: Sequence[tuple[Package, Path, Sequence[FileRef]]]) -> Decision:
    """The conflicts among every package's files (``wheel`` is where each package's zip
    members are read), and what each loser leaves out."""
    writers: dict[str, list[tuple[Package, Path, FileRef]]] = {}
    for package, wheel, refs in files:
        for ref in refs:
            writers.setdefault(ref.path, []).append((package, wheel, ref))
    conflicts = []
    omit: dict[str, set[str]] = {}
    for path, found in sorted(writers.items()):
        if len(found) < 2:
            continue
        keys = {package.name: ref.quick for package, _, ref in found}
        alike = [w for w in found if list(keys.values()).count(keys[w[0].name]) > 1]
        for package, wheel, ref in alike:  # same size and CRC: compare the bytes themselves
            if ref.member:
                member = layermod.zip_member(path, wheel, ref.member, -1, ref.executable)
                keys[package.name] = content_key(member)
        if len(set(keys.values())) == 1:
            continue
        winner = max((p for p, _, _ in found), key=lambda p: (p.name, p.version))
        losers = tuple(sorted(p for p, _, _ in found if keys[p.name] != keys[winner.name]))
        for loser in losers:
            omit.setdefault(loser.name, set()).add(path)
        conflicts.append(Conflict(path, winner, losers))
    return Decision(tuple(conflicts), {name: frozenset(paths) for name, paths in omit.items()})


def scan(
    wheels: Sequence[tuple[Package, Path]],
    python: str,
    store: Store | None = None,
    verified: Collection[str] = (),
) -> Decision:
    """:func:`decide` over the files ``wheels`` install into ``/opt/env`` for ``python``.

    A wheel's file index comes from the ``store``'s ``files/``, where it is kept under the
    wheel's sha256 (0.4 s for 58 wheels of 3.5 GB), or else from its RECORD and entry
    points through ``installer`` (4.7 s for the same wheels on a busy two-core machine),
    after checking the file against the lock's sha256 (``CheckFailed`` otherwise; another
    7 s for them) unless it is in ``verified`` (sha256 values just downloaded and checked).
    """
    return decide([(p, path, _index(p, path, python, store, p.sha256 in verified)) for p, path in wheels])


def _index(package: Package, path: Path, python: str, store: Store | None, verified: bool) -> list[FileRef]:
    import json

    from envlock.image import venv

    file = store.root / "files" / f"{INDEX_FORMAT}-{package.sha256}-{python}.json" if store else None
    if file is not None and file.is_file():
        try:
            return [FileRef(*row) for row in json.loads(file.read_text())]
        except (OSError, ValueError, TypeError):
            pass  # rebuilt below
    if not verified:
        venv.verify_artifact(
            package, path
        )  # what is indexed (and cached under its sha256) is the locked file
    interp = venv.Interpreter(f"/usr/bin/python{python}", python)  # placements do not depend on its path
    refs = index(_entries(package, path, interp))
    if store is not None and file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        store._write_small(
            file, json.dumps([[r.path, r.quick, r.member, r.executable] for r in refs]).encode()
        )
    return refs


def _entries(package: Package, path: Path, interp: Interpreter) -> list[layermod.Entry]:
    from installer.exceptions import InstallerError

    from envlock.image import venv

    try:
        return venv.package_entries(package, path, interp)
    except (InstallerError, zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise CheckFailed(
            f"{package.name} {package.version}: {package.filename} is not a valid wheel ({exc})",
            "the file is the locked one (its sha256 matches), but it cannot be installed; drop or re-pin it",
        ) from None


def enforce(decision: Decision, policy: str) -> tuple[str, ...]:
    """The warnings for ``policy = "warn"``; for ``"error"``, every conflict raised as an error (exit 2)."""
    messages = decision.messages()
    if policy == "error":
        hint = 'drop one of the packages, or set [image] file-conflicts = "warn" to keep the winner'
        raise_all([EnvlockError(m, hint) for m in messages])
    return messages


def at_hand(packages: Sequence[Package], lock_dir: Path, home: Path) -> list[tuple[Package, Path]]:
    """The pip wheels among ``packages`` that can be read without a download: in the store
    at ``home`` (named by their sha256) or local files (``file://`` or relative to
    ``lock_dir``, as find-links gives them).  :func:`scan` checks each one's sha256
    against the lock before reading it."""
    from urllib.parse import unquote, urlparse

    found = []
    for package in packages:
        if package.manager != "pip" or not package.filename.endswith(".whl"):
            continue
        stored = home / "artifacts" / "sha256" / package.sha256
        if stored.is_file():
            found.append((package, stored))
            continue
        if package.url.startswith("file://"):
            local = Path(unquote(urlparse(package.url).path))
        elif "://" not in package.url:
            local = lock_dir / package.url
        else:
            continue
        if local.is_file():
            found.append((package, local))
    return found
