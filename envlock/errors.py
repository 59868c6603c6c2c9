"""One exception hierarchy; the CLI turns each into ``error:``/``hint:`` lines and an exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3


class EnvlockError(Exception):
    """An expected failure: a message for the user, an optional hint, an exit code.

    The message and hint pass through ``envlock.urls.redact_text``: the user info of any URL
    in them is shown as ``***``, whatever the caller (or a tool's stderr it quotes) held.
    """

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        from envlock.urls import redact_text

        message = redact_text(message)
        hint = redact_text(hint) if hint is not None else None
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(EnvlockError):
    """The command line asked for something that cannot be done."""


class SpecError(EnvlockError):
    """A spec file is malformed, has unknown keys or an impossible combination."""


class CompatError(SpecError):
    """The spec asks for a framework / CUDA / Python combination that does not exist."""


class LockError(EnvlockError):
    """A lock file cannot be read or is not in envlock's format."""


class ResolutionError(EnvlockError):
    """The resolver found no solution for the spec (bad input, exit 2)."""


class CheckFailed(EnvlockError):
    """A consistency check failed: stale lock, hash mismatch, tampered file."""

    exit_code = EXIT_CHECK_FAILED


class ToolMissing(EnvlockError):
    """An external tool (uv, pip-compile) that a command needs is not installed."""

    exit_code = EXIT_UNAVAILABLE


class ServiceUnavailable(EnvlockError):
    """A required service (index, Docker engine, registry) cannot be reached."""

    exit_code = EXIT_UNAVAILABLE


class StoreError(EnvlockError):
    """The store's file system failed: not a directory, read-only, full, or an I/O error.

    ``exit_code`` is 2 when the store itself is unusable as configured (a file, read-only,
    no permission: choose another ``--store``/``ENVLOCK_HOME``), 1 otherwise (full, I/O).
    """

    exit_code = EXIT_CHECK_FAILED


# Which code wins when several problems are reported at once: a failed check (something is
# not what the lock says) first, then an unavailable service, then bad input.
_SEVERITY = (EXIT_CHECK_FAILED, EXIT_UNAVAILABLE, EXIT_BAD_INPUT)


class Problems(EnvlockError):
    """Several independent failures found in one pass (e.g. before a build downloads
    anything); the CLI prints one ``error:`` line for each and exits with the most
    severe code (1 before 3 before 2)."""

    errors: tuple[EnvlockError, ...]

    def __init__(self, errors: list[EnvlockError]) -> None:
        assert errors
        flat = [e for err in errors for e in (err.errors if isinstance(err, Problems) else (err,))]
        super().__init__(flat[0].message, flat[0].hint)
        self.errors = tuple(flat)
        codes = {e.exit_code for e in flat}
        self.exit_code = next((c for c in _SEVERITY if c in codes), flat[0].exit_code)


def raise_all(errors: list[EnvlockError]) -> None:
    """Raise nothing for no errors, the error itself for one, :class:`Problems` for more."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise Problems(errors)
