"""envlock: reproducible machine-learning environments.

A spec (``specs/NAME.toml``) is resolved into a hashed, canonical lock
(``specs/NAME.lock``) whose env ID is a pure function of its content.

The Python API (``envlock.lock``, ``envlock.record``, ``envlock.rebuild`` and
``envlock.EnvlockError``) is loaded on first use, so ``import envlock`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # typed for callers; loaded lazily at run time by __getattr__
    from envlock.api import lock, rebuild, record
    from envlock.errors import EnvlockError

__version__ = "0.1.0"

__all__ = ["EnvlockError", "__version__", "lock", "rebuild", "record"]

_API = ("lock", "record", "rebuild")


def __getattr__(name: str) -> Any:
    if name in _API:
        from envlock import api

        return getattr(api, name)
    if name == "EnvlockError":
        from envlock.errors import EnvlockError

        return EnvlockError
    raise AttributeError(f"module 'envlock' has no attribute {name!r}")
