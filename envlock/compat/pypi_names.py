"""conda package name -> the PyPI distribution name(s) it installs.

Three sources, strongest first:

1. the package's own ``*.dist-info`` / ``*.egg-info`` directory names, from its
   ``info/paths.json`` (or ``info/files``) when the archive is at hand (``dist_names``);
2. envlock's overrides (``conda-pypi-overrides.toml``, each with its source) and the
   published conda-forge mapping (``conda-pypi-names.toml``: regro's grayskull mapping as
   the ``conda-pypi`` wheel ships it, refreshed by ``scripts/refresh-conda-pypi-names.py``);
3. conda-forge's naming rule for names that collide with a non-Python package:
   ``python-NAME`` and ``py-NAME`` are PyPI's ``NAME`` (``python-tzdata`` -> ``tzdata``,
   ``py-xgboost`` -> ``xgboost``); the table lists the prefixed names PyPI spells the same
   (``python-dateutil``), and a prefixed name it does not know claims both spellings.
   Any other name is taken to be the same on PyPI.

Names come back PEP 503-normalised (``typing_extensions`` -> ``typing-extensions``).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources

PREFIXES = ("python-", "py-")

# site-packages/<top-level>.dist-info|egg-info, in noarch (site-packages/...) and
# arch-specific (lib/pythonX.Y/site-packages/..., Windows Lib/site-packages/...) packages
_DIST_DIR = re.compile(
    r"^(?:site-packages|lib/python\d+\.\d+t?/site-packages|Lib/site-packages)/"
    r"([^/]+)\.(?:dist-info|egg-info)(?:/|$)"
)


def canonical(name: str) -> str:
    """PEP 503 normalised name: lower case, each run of ``-``, ``_`` and ``.`` one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def table() -> Mapping[str, tuple[str, ...]]:
    """conda name -> PyPI names, the overrides laid over the published mapping."""
    folder = resources.files("envlock.compat")
    published = tomllib.loads(folder.joinpath("conda-pypi-names.toml").read_text("utf-8"))
    overrides = tomllib.loads(folder.joinpath("conda-pypi-overrides.toml").read_text("utf-8"))
    out: dict[str, tuple[str, ...]] = {}
    for conda, pypi in published["names"].items():
        names = [pypi] if isinstance(pypi, str) else pypi
        out[conda] = tuple(canonical(n) for n in names)
    for row in overrides["override"]:
        out[row["conda"]] = tuple(canonical(n) for n in row["pypi"])
    return out


def known(conda_name: str) -> bool:
    """Whether the tables name this conda package (so it is a Python distribution)."""
    return conda_name.lower() in table()


def pypi_names(conda_name: str) -> tuple[str, ...]:
    """The PyPI names of a conda package, by the tables and then the prefix rule.

    >>> pypi_names("python-tzdata"), pypi_names("pytorch"), pypi_names("py-lief")
    (('tzdata',), ('torch',), ('lief', 'py-lief'))
    """
    name = conda_name.lower()
    hit = table().get(name)
    if hit:
        return hit
    for prefix in PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            # the rule's guess first; the name itself stays claimed in case PyPI spells it so
            return (canonical(name[len(prefix) :]), canonical(name))
    return (canonical(name),)


def dist_names(paths: Iterable[str]) -> tuple[str, ...]:
    """The distributions a conda package installs, from the paths it lists.

    ``paths``: the ``_path`` entries of ``info/paths.json`` or the lines of ``info/files``.
    A ``NAME-VERSION.dist-info`` directory names the distribution (PEP 427 escapes ``-`` in
    NAME as ``_``; the name ends at the first ``-``).  Empty when there is none.
    """
    found = set()
    for path in paths:
        m = _DIST_DIR.match(path.strip())
        if m:
            found.add(canonical(m.group(1).split("-", 1)[0]))
    return tuple(sorted(found))
