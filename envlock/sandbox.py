"""Run code taken from outside (a base image's interpreter, an sdist's build backend) in a
bubblewrap sandbox: no network, no host paths but those bound, read-only unless said otherwise.

bubblewrap is Debian's ``bubblewrap`` package (``bwrap``); see bwrap(1) for each option.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from envlock.errors import ToolMissing


@dataclass(frozen=True)
class Mount:
    """One bind mount: host ``source`` appears at ``target`` inside; ``writable`` or read-only."""

    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class Sandbox:
    """What the sandboxed process sees.

    ``mounts`` are applied in order (later ones shadow earlier ones); ``/proc``, ``/dev`` and a
    private ``/tmp`` are always provided.  ``network`` is off unless asked for.  The environment
    is cleared and only ``env`` is set.
    """

    mounts: Sequence[Mount] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "/"
    network: bool = False
    symlinks: Sequence[tuple[str, str]] = ()  # (link target, path inside), e.g. ("usr/lib", "/lib")


def bwrap() -> str:
    """The path of ``bwrap``.

    Raises:
        ToolMissing: (exit 3) when bubblewrap is not installed.
    """
    found = shutil.which("bwrap")
    if found is None:
        raise ToolMissing(
            "bubblewrap (bwrap) is needed to run code from outside in a sandbox, and it is not installed",
            "apt-get install bubblewrap",
        )
    return found


def command(box: Sandbox, argv: Sequence[str]) -> list[str]:
    """The full ``bwrap`` command line that runs ``argv`` inside ``box`` (pure; for tests and logs)."""
    cmd = [bwrap(), "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    if box.network:
        cmd.append("--share-net")
    for mount in box.mounts:
        cmd += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
    for target, link in box.symlinks:
        cmd += ["--symlink", target, link]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for key, value in sorted(box.env.items()):
        cmd += ["--setenv", key, value]
    cmd += ["--chdir", box.cwd, "--", *argv]
    return cmd


def run(
    box: Sandbox, argv: Sequence[str], *, timeout: float | None = None, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` in ``box``; stdout and stderr are captured as bytes, the exit code is not checked.

    Raises:
        ToolMissing: bubblewrap is not installed.
        subprocess.TimeoutExpired: past ``timeout`` seconds (the sandbox dies with it).
    """
    return subprocess.run(command(box, argv), capture_output=True, timeout=timeout, input=input, check=False)
