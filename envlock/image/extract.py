"""Writing archive members under a directory without letting them out of it."""

from __future__ import annotations

import os
from pathlib import Path


def within(root: Path, name: str) -> Path | None:
    """``root/name``, or ``None`` when ``name`` is absolute, has ``..`` or empty parts, or a
    directory on the way is a symlink leading out of ``root`` (an archive could plant one
    and then write through it)."""
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    real_root = os.path.realpath(root)
    current = root
    for part in parts[:-1]:
        current = current / part
        if current.is_symlink() or current.exists():
            real = os.path.realpath(current)
            if real != real_root and not real.startswith(real_root + os.sep):
                return None
    return root / name
