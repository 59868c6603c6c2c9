"""Content digests from outside: one parser, so nothing else ever touches a path with one.

A digest is ``sha256:`` followed by exactly 64 lower-case hex characters (OCI image spec,
"Digests": the registered ``sha256`` algorithm's encoded portion is ``[a-f0-9]{64}``).  Every
digest read from a manifest, an index, a lock, a record or a store index file goes through
:func:`parse_digest` before it names a blob, a file or a directory.
"""

from __future__ import annotations

import re

from envlock.errors import CheckFailed

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]{64}")


def is_digest(value: object) -> bool:
    """True when ``value`` is a string ``sha256:<64 lower-case hex>`` (nothing more, nothing less)."""
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def parse_digest(value: object, *, source: str) -> str:
    """Return ``value`` when it is ``sha256:<64 hex>``.

    ``source`` names where it came from (a file, a URL, a field) for the message.

    Raises:
        CheckFailed: (exit 1) for anything else: another algorithm, upper case, path
            characters, a non-string.
    """
    if is_digest(value):
        return value  # type: ignore[return-value]
    shown = repr(value)[:80]
    raise CheckFailed(
        f"{source}: {shown} is not a sha256 digest",
        "a digest is 'sha256:' followed by 64 lower-case hex characters; the file may be damaged or forged",
    )


def parse_hex(value: object, *, source: str) -> str:
    """Return ``value`` when it is 64 lower-case hex characters (a bare sha256, as locks hold them).

    Raises:
        CheckFailed: (exit 1) otherwise.
    """
    if isinstance(value, str) and _HEX.fullmatch(value):
        return value
    raise CheckFailed(
        f"{source}: {repr(value)[:80]} is not a sha256 hex digest",
        "a sha256 is 64 lower-case hex characters; the file may be damaged or forged",
    )
