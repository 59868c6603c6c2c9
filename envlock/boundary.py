"""Where outside input comes in: reading user files, and reporting what nobody expected.

Every read of a file the user names (a spec, a lock) goes through :func:`read_text`, so a
directory, a missing file, a binary file or bytes that are not UTF-8 become one
``EnvlockError`` naming the path instead of a traceback.  :func:`internal_error` turns an
exception the code did not expect into the one line the CLI prints for it, with any
credentials in URLs hidden.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from envlock.errors import EnvlockError, UsageError
from envlock.urls import redact_text

MAX_TEXT = 64 << 20  # bytes: far above any spec or lock; a bigger "spec" is not one
_LONG_NUMBER = re.compile(r"\d[\d_]{4000,}")


def internal_error(exc: BaseException) -> EnvlockError:
    """The error the CLI shows for an exception no code path expected (a bug): exit 1,
    ``internal error: <type>: <message>`` (URLs redacted), and a hint to rerun with ``--debug``."""
    message = redact_text(str(exc)).strip().splitlines()
    first = message[0][:300] if message else ""
    error = EnvlockError(
        f"internal error: {type(exc).__name__}" + (f": {first}" if first else ""),
        "rerun with --debug (or ENVLOCK_DEBUG=1) for the traceback and report it",
    )
    error.exit_code = 1
    return error


def os_error(exc: OSError, path: Path | str, what: str = "") -> EnvlockError:
    """An ``OSError`` on ``path`` as one line naming it (exit 2: the path is bad input)."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.EISDIR or isinstance(exc, IsADirectoryError):
        reason = "is a directory"
    elif exc.errno == errno.ENOTDIR:
        reason = "a parent is not a directory"
    label = f" ({what})" if what else ""
    return UsageError(f"{path}{label}: {reason[:1].lower()}{reason[1:]}")


def toml_failure(exc: RecursionError | ValueError, text: str) -> tuple[int | None, str]:
    """(line or ``None``, reason) for what ``tomllib.loads`` raises besides ``TOMLDecodeError``:
    ``RecursionError`` for arrays or tables nested too deeply, ``ValueError`` for an integer
    past CPython's 4300-digit conversion limit (CPython docs, "Integer string conversion
    length limitation")."""
    if isinstance(exc, RecursionError):
        return None, "arrays or tables nested too deeply"
    match = _LONG_NUMBER.search(text)
    line = text.count("\n", 0, match.start()) + 1 if match else None
    return line, "a number too large (more than 4300 digits)"


def read_text(path: Path, what: str, hint: str | None = None, error: type[EnvlockError] = UsageError) -> str:
    """The UTF-8 text of the file ``path``; ``what`` names it in messages ("spec", "lock").

    Raises:
        UsageError: (or ``error``; exit 2) the path is missing, a directory or unreadable,
            the file holds NUL bytes (binary) or is not UTF-8; one line naming the path.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a fifo must not block the open
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
            if not stat.S_ISREG(info.st_mode):  # a fifo would block, /dev/zero never ends
                raise error(f"{path}: not a regular file (a device, fifo or socket), not a {what}", hint)
            data = fh.read(MAX_TEXT + 1)
    except OSError as exc:
        raise error(os_error(exc, path).message, hint) from None
    if len(data) > MAX_TEXT:
        raise error(f"{path}: larger than {MAX_TEXT >> 20} MiB, not a {what}", hint)
    if b"\0" in data:
        raise error(f"{path}: a binary file, not a {what} (it holds NUL bytes)", hint)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})", hint) from None


def check_output(path: Path, what: str, *, make_parents: bool) -> None:
    """Check, before anything is written, that ``path`` can be written as a file.

    ``make_parents``: missing parent directories will be created (``init --dir``); without
    it a missing parent is an error (``export -o``: a typo should not create a tree).

    Raises:
        UsageError: (exit 2) ``path`` is a directory, a parent is a file, or (without
            ``make_parents``) the parent directory does not exist.
    """
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, not a file", f"choose another {what}")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        # writing is by rename: a link, device or fifo would be replaced, not written through
        raise UsageError(
            f"{path}: a symbolic link, device or fifo, not a regular file", f"choose another {what}"
        )
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UsageError(f"{path}: {parent} is a file, not a directory", f"choose another {what}")
            break
        if not make_parents:
            raise UsageError(f"{path}: no such directory {parent}", f"create it first: mkdir -p {parent}")
