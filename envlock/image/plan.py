"""How a platform's pip packages become layers: the build plan.

A plan says which packages get a layer of their own (``venv.is_big``: a big wheel, shared
between environments) and which files a package leaves out because another package
writes them too (``envlock.image.conflicts``).  Both are decided by reading the wheels;
with the plan at hand, every layer's build key (``venv.layer_key``) is known from the lock
alone, so a build cache (``envlock.image.buildcache``) can hand over layers without a
single wheel being downloaded.  The plan's own key covers everything it was decided from.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.image import conflicts as conflictmod
from envlock.image import venv
from envlock.lockfile import Package
from envlock.store import Store, canonical_json

FORMAT = "envlock-plan/1"
_PATH = re.compile(r"[^\x00-\x1f\x7f]{1,4096}")


def key(pip: Sequence[Package], python: str) -> str:
    """The plan's key (64 hex): the wheels (by sha256, or the content digest of one built
    from source), the Python whose scheme places their files, and the rules' versions."""
    data = {
        "format": FORMAT,
        "layers": venv.LAYER_FORMAT,
        "files": conflictmod.INDEX_FORMAT,
        "big": venv.BIG_BYTES,
        "python": python,
        "wheels": sorted((p.name, p.sha256, p.built or "") for p in pip),
    }
    return hashlib.sha256(canonical_json(data)).hexdigest()


@dataclass(frozen=True)
class Plan:
    """``big``: names of packages with a layer of their own; ``conflicts``: (path, winner,
    losers) for every path two packages write with different content."""

    big: tuple[str, ...]
    conflicts: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    @classmethod
    def decided(cls, wheels: Sequence[tuple[Package, Path]], decision: conflictmod.Decision) -> Plan:
        """The plan of a build that read the wheels."""
        return cls(
            tuple(sorted(p.name for p, path in wheels if venv.is_big(p, path))),
            tuple((c.path, c.winner.name, tuple(p.name for p in c.losers)) for c in decision.conflicts),
        )

    def to_json(self) -> dict[str, Any]:
        return {"big": list(self.big), "conflicts": [[p, w, list(losers)] for p, w, losers in self.conflicts]}

    @classmethod
    def parse(cls, data: object, pip: Sequence[Package]) -> Plan:
        """A plan read from elsewhere, checked against the lock's ``pip`` packages.

        Raises:
            ValueError: not a plan, or one naming packages the lock does not have.
        """
        names = {p.name for p in pip}
        if not isinstance(data, dict) or set(data) != {"big", "conflicts"}:
            raise ValueError("not a build plan")
        big, found = data["big"], data["conflicts"]
        if not isinstance(big, list) or not all(isinstance(n, str) and n in names for n in big):
            raise ValueError("its big packages are not packages of the lock")
        if len(set(big)) != len(big) or not isinstance(found, list):
            raise ValueError("malformed")
        out = []
        for row in found:
            if not (isinstance(row, list) and len(row) == 3):
                raise ValueError("a malformed conflict")
            path, winner, losers = row
            if (
                not (isinstance(path, str) and _PATH.fullmatch(path))
                or path.startswith("/")
                or ".." in path.split("/")
            ):
                raise ValueError("a conflict with a bad path")
            if winner not in names or not isinstance(losers, list) or not losers:
                raise ValueError("a conflict naming a package the lock does not have")
            if not all(isinstance(n, str) and n in names and n != winner for n in losers):
                raise ValueError("a conflict naming a package the lock does not have")
            out.append((path, str(winner), tuple(losers)))
        return cls(tuple(sorted(big)), tuple(out))

    def companions(self, names: Collection[str]) -> set[str]:
        """The packages that share a conflict with any of ``names`` (``names`` included):
        with all of them at hand, :meth:`contradiction` checks those conflicts whole."""
        given = set(names)
        out = set(given)
        for _, winner, losers in self.conflicts:
            if not given.isdisjoint(named := {winner, *losers}):
                out |= named
        return out

    def contradiction(
        self,
        wheels: Sequence[tuple[Package, Path]],
        python: str,
        store: Store,
        verified: Collection[str] = (),
    ) -> str | None:
        """What the ``wheels`` at hand say against this plan (one that came from a build
        cache), or ``None``: a wheel that is big but not in ``big`` or the other way round, a
        conflict among them that the plan leaves out, or a conflict of the plan, all of whose
        packages are at hand, that they decide otherwise.  A conflict naming a package that
        is not at hand is not checked (see :meth:`companions`).  ``verified`` as for
        ``envlock.image.conflicts.scan``."""
        for p, path in wheels:
            if venv.is_big(p, path) != (p.name in self.big):
                own = "a layer of its own" if p.name in self.big else "no layer of its own"
                return f"it says {p.name} has {own}, its wheel says otherwise"
        here = {p.name for p, _ in wheels}
        found: dict[str, tuple[str, tuple[str, ...]]] = {
            c.path: (c.winner.name, tuple(sorted(p.name for p in c.losers)))
            for c in conflictmod.scan(wheels, python, store, verified).conflicts
        }
        planned = {at: (winner, tuple(sorted(losers))) for at, winner, losers in self.conflicts}
        for where, decided in sorted(found.items()):
            if planned.get(where) != decided:
                return f"its conflicts leave out or misstate /{where[:200]}"
        for where, (winner, losers) in sorted(planned.items()):
            if {winner, *losers} <= here and found.get(where) != (winner, losers):
                return f"it has a conflict at /{where[:200]} that the wheels do not have"
        return None

    def decision(self, pip: Sequence[Package]) -> conflictmod.Decision:
        """The conflict decision this plan carries, with the lock's packages."""
        by_name: Mapping[str, Package] = {p.name: p for p in pip}
        omit: dict[str, set[str]] = {}
        found = []
        for path, winner, losers in self.conflicts:
            for loser in losers:
                omit.setdefault(loser, set()).add(path)
            found.append(
                conflictmod.Conflict(path, by_name[winner], tuple(sorted(by_name[n] for n in losers)))
            )
        return conflictmod.Decision(tuple(found), {n: frozenset(paths) for n, paths in omit.items()})

    def groups(self, pip: Sequence[Package]) -> list[tuple[str, list[Package]]]:
        """(``created_by``, packages) per package layer: one per big package, by name, then
        one for the rest.  The labels are part of the image config (its history)."""
        big = sorted((p for p in pip if p.name in self.big), key=lambda p: p.name)
        small = sorted((p for p in pip if p.name not in self.big), key=lambda p: p.name)
        out = [(f"envlock: pip {p.name}=={p.version}", [p]) for p in big]
        if small:
            out.append((f"envlock: pip {len(small)} packages", small))
        return out
