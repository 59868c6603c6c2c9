"""Which Python each Debian and Ubuntu release ships: facts, with their sources.

A ``debian:SUITE`` base is bootstrapped with the suite's own ``pythonX.Y`` package, so
the spec's Python must be one the suite ships; this table lets ``envlock lock`` say so
before anything is resolved or bootstrapped.  Rolling suites (``testing``, ``sid``,
``forky``) and aliases (``stable``) change their Python over time and are not listed:
for them the check happens when the base is built.

Sources: the ``python3-defaults`` and ``pythonX.Y`` pages of packages.debian.org and
packages.ubuntu.org for each release, and the release notes (Debian 11 "Python 3.9",
Debian 12 "Python 3.11", Debian 13 "Python 3.13"; Ubuntu 20.04/22.04/24.04 release notes).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suite:
    distribution: str  # "Debian" | "Ubuntu"
    codename: str  # "bookworm"
    release: str  # "12"
    pythons: tuple[str, ...]  # the pythonX.Y packages in the release's main archive, default first


SUITES: dict[str, Suite] = {
    s.codename: s
    for s in (
        Suite("Debian", "buster", "10", ("3.7",)),
        Suite("Debian", "bullseye", "11", ("3.9",)),
        Suite("Debian", "bookworm", "12", ("3.11",)),
        Suite("Debian", "trixie", "13", ("3.13",)),
        Suite("Ubuntu", "focal", "20.04", ("3.8",)),
        Suite("Ubuntu", "jammy", "22.04", ("3.10",)),
        Suite("Ubuntu", "noble", "24.04", ("3.12",)),
    )
}


def _key(python: str) -> tuple[int, ...]:
    return tuple(int(x) for x in python.split(".") if x.isdigit())


def debian() -> list[Suite]:
    """Debian's releases in the table, oldest first."""
    return [s for s in SUITES.values() if s.distribution == "Debian"]


def python_problem(suite: str, python: str) -> tuple[str, str] | None:
    """``(message, hint)`` when ``debian:SUITE`` is a Debian release in the table that does
    not ship ``python``; else ``None``.

    The message names the Debian suites that do ship it, or, when none does, what each
    Debian release ships and which other distribution has it; the hint names the way out.
    """
    known = SUITES.get(suite)
    if known is None or known.distribution != "Debian" or python in known.pythons:
        return None
    ships = f"debian:{suite} (Debian {known.release}) ships Python {', '.join(known.pythons)}"
    message = f"the spec asks for Python {python}, but {ships}"
    shipping = [s for s in debian() if python in s.pythons]
    if shipping:
        names = ", ".join(f"debian:{s.codename}" for s in shipping)
        message += f"; {names} ships {python}"
        return message, f'use base = "debian:{shipping[-1].codename}", or set python = "{known.pythons[0]}"'
    return message + "; " + no_debian_ships(python), newer_or_own_base(python, known.pythons[0])


def no_debian_ships(python: str) -> str:
    """``"no Debian release ships Python 3.12 (bullseye: 3.9, ...); Ubuntu 24.04 (noble) does"``."""
    each = ", ".join(f"{s.codename}: {s.pythons[0]}" for s in debian())
    text = f"no Debian release ships Python {python} ({each})"
    others = [s for s in SUITES.values() if s.distribution != "Debian" and python in s.pythons]
    for s in others:
        text += f"; {s.distribution} {s.release} ({s.codename}) does"
    return text


def newer_or_own_base(python: str, current: str | None = None) -> str:
    """A hint for a Python no Debian release ships: the nearest newer Debian release, the
    suite's own Python, or a registry base that has it."""
    newer = [s for s in debian() if _key(s.pythons[0]) > _key(python)]
    ways = []
    if newer:
        ways.append(f'python = "{newer[0].pythons[0]}" with base = "debian:{newer[0].codename}"')
    if current:
        ways.append(f'python = "{current}"')
    ways.append(f"a registry base with Python {python}, pinned by digest (REF@sha256:...)")
    return "use " + ", or ".join(ways)


def debian_suite_for(python: str) -> str | None:
    """The newest Debian release in the table whose default Python is ``python``, if any."""
    found = [s.codename for s in debian() if s.pythons[0] == python]
    return found[-1] if found else None
