"""What a wheel installs, as one digest; and whether a wheel is pure Python.

The content digest of a wheel is ``sha256:`` of the lines ``PATH\\0SHA256\\0MODE\\n`` for every
file member, sorted by path, where MODE is ``755`` when the member's Unix mode has an exec bit
and ``644`` otherwise (as envlock's layers normalise it).  ``*.dist-info/RECORD`` (and its
signatures, PEP 491 "The .dist-info directory") is left out: it lists the other files'
hashes, and a backend may order it differently.  Zip timestamps, compression and member order
do not count, so two builds that install the same files have the same digest.
"""

from __future__ import annotations

import hashlib
import re
import stat
import zipfile
from pathlib import Path

from envlock.errors import CheckFailed

_RECORD = re.compile(r"^[^/]+\.dist-info/RECORD(\.jws|\.p7s)?$")
# PEP 427 file name: {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl
_PURE_TAG = re.compile(r"^py\d*(\.py\d*)*-none-any$")


def content_digest(path: Path) -> str:
    """The content digest of the wheel at ``path`` (see the module docstring).

    Raises:
        CheckFailed: (exit 1) the file is not a zip archive.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            lines = []
            for info in archive.infolist():
                if info.is_dir() or _RECORD.match(info.filename):
                    continue
                digest = hashlib.sha256()
                with archive.open(info) as member:
                    while chunk := member.read(1 << 20):
                        digest.update(chunk)
                mode = info.external_attr >> 16
                executable = bool(mode and stat.S_ISREG(mode) and mode & 0o111)
                lines.append(f"{info.filename}\0{digest.hexdigest()}\0{'755' if executable else '644'}\n")
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckFailed(f"{path}: not a readable wheel: {exc}") from None
    return "sha256:" + hashlib.sha256("".join(sorted(lines)).encode()).hexdigest()


def is_pure(path: Path) -> bool:
    """True when the wheel is pure Python: a ``py*-none-any`` tag (PEP 425) in its file name
    and ``Root-Is-Purelib: true`` in its ``WHEEL`` file (PEP 427 "The .dist-info directory")."""
    stem = path.name[: -len(".whl")]
    parts = stem.split("-")
    if len(parts) < 5 or not _PURE_TAG.match("-".join(parts[-3:])):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if re.match(r"^[^/]+\.dist-info/WHEEL$", n)]
            if len(names) != 1:
                return False
            text = archive.read(names[0]).decode("utf-8", "replace")
    except (zipfile.BadZipFile, OSError):
        return False
    return re.search(r"^Root-Is-Purelib:\s*true\s*$", text, re.M | re.I) is not None
