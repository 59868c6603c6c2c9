"""pip-tools engine: ``pip-compile --generate-hashes``, then pip's report for the artifact URLs.

pip-compile resolves for the interpreter that runs it, so this engine refuses
any target other than the host's platform and Python.  ``exclude-newer`` maps to
pip's ``--uploaded-prior-to`` (pip 25.3 and later).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

from envlock.errors import ResolutionError, ServiceUnavailable, ToolMissing, UsageError
from envlock.lockfile import Package
from envlock.platforms import host_subdir
from envlock.resolve import Request, Resolved, isolated_env, placeholder_values, warning_lines
from envlock.resolve.uv import credentials_hint
from envlock.urls import expand, redact_text, secret_in_path, written


@cache
def version() -> str:
    try:
        from importlib.metadata import version as dist_version

        return f"pip-tools {dist_version('pip-tools')}, pip {dist_version('pip')}"
    except Exception:
        raise ToolMissing(
            "pip-tools is not installed", "pip install 'envlock[pip-tools]', or use --resolver uv"
        ) from None


def _pip_version() -> tuple[int, ...]:
    from importlib.metadata import version as dist_version

    return tuple(int(x) for x in dist_version("pip").split(".")[:2] if x.isdigit())


def _index_args(req: Request) -> list[str]:
    args: list[str] = []
    if req.no_index:
        args.append("--no-index")
    if req.index_url:
        args += ["--index-url", expand(req.index_url, os.environ)]
    for index in req.indexes:
        args += ["--extra-index-url", expand(index, os.environ)]
    for link in req.find_links:
        args += ["--find-links", expand(link, os.environ)]
    return args


def check(req: Request) -> None:
    """Refuse what pip-compile cannot do, before running anything."""
    version()
    host = host_subdir()
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if req.platform != host or req.python != here:
        raise UsageError(
            f"pip-tools resolves for the interpreter running it ({host} / Python {here}), "
            f"not for {req.platform} / Python {req.python}",
            "use the default resolver (--resolver uv), which resolves for any target",
        )
    if req.exclude_newer and _pip_version() < (25, 3):
        raise UsageError(
            "pip-tools cannot honour exclude-newer with this pip (needs pip >= 25.3)",
            "pip install -U 'pip>=25.3', or use --resolver uv",
        )


def start(req: Request) -> Callable[[], Resolved]:
    """pip-compile runs when the result is asked for (it is not worth a background start)."""
    check(req)

    def result() -> Resolved:
        return resolve(req)

    result.cancel = lambda: None  # type: ignore[attr-defined]
    return result


def resolve(req: Request) -> Resolved:
    check(req)
    index = _index_args(req)
    date = [f"--uploaded-prior-to={req.exclude_newer}"] if req.exclude_newer else []
    if any(secret_in_path(url) for url in req.sources):
        date.append("--no-cache-dir")  # pip's HTTP cache would keep a path token
    env = isolated_env(placeholder_values(req.requirements))
    with tempfile.TemporaryDirectory(prefix="envlock-piptools-") as tmp:
        infile = Path(tmp, "requirements.in")
        lines = list(req.requirements)
        if req.constraints:
            constraints = Path(tmp, "constraints.txt")
            constraints.write_text("".join(c + "\n" for c in req.constraints), "utf-8")
            lines.append(f"-c {constraints}")
        infile.write_text("".join(r + "\n" for r in lines), "utf-8")
        pinned = Path(tmp, "requirements.txt")
        compile_cmd = [
            sys.executable,
            "-m",
            "piptools",
            "compile",
            "--generate-hashes",
            "--no-header",
            "--no-annotate",
            "--strip-extras",
            "--quiet",
            "--no-emit-index-url",
            "--output-file",
            str(pinned),
            *index,
            *(["--pip-args", shlex.join(date)] if date else []),
            str(infile),
        ]
        said = _run(compile_cmd, env, req)
        report = Path(tmp, "report.json")
        report_cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-deps",
            "--require-hashes",
            "--quiet",
            "--report",
            str(report),
            *index,
            *date,
            "-r",
            str(pinned),
        ]
        said += _run(report_cmd, env, req)
        data = json.loads(report.read_text("utf-8"))
    packages = [_package(item, req.sources) for item in data.get("install", [])]
    return Resolved(packages, warning_lines(said, "WARNING:"))


def _package(item: dict[str, object], sources: tuple[str, ...]) -> Package:
    from packaging.utils import canonicalize_name

    meta = item["metadata"]
    info = item["download_info"]
    assert isinstance(meta, dict) and isinstance(info, dict)
    archive = info.get("archive_info", {})
    hashes = archive.get("hashes") or {}
    sha256 = hashes.get("sha256") or str(archive.get("hash", "")).removeprefix("sha256=")
    return Package(
        manager="pip",
        name=canonicalize_name(str(meta["name"])),
        version=str(meta["version"]),
        url=written(str(info["url"]), sources, os.environ),
        sha256=sha256,
    )


def _run(cmd: list[str], env: dict[str, str], req: Request) -> str:
    """Run a pip(-tools) command; its (redacted) stderr on success, for its warnings."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode == 0:
        return redact_text(proc.stderr, req.sources, os.environ)
    text = redact_text(proc.stderr + proc.stdout, req.sources, os.environ)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    # pip prints these when a file download is refused; an index page it refuses is only
    # logged at debug level, and then pip finds "no matching distribution"
    if any(s in text for s in ("401 Client Error", "403 Client Error", "HTTP error 401", "HTTP error 403")):
        raise ServiceUnavailable("the package index refused the credentials", credentials_hint(req.sources))
    if any(s in text for s in ("NewConnectionError", "Max retries exceeded", "ConnectionError")):
        raise ServiceUnavailable("cannot reach the package index", "check the index URL and your network")
    reason = " ".join(lines[-3:]) if lines else "unknown error"
    raise ResolutionError(
        f"pip-tools found no solution for {req.platform} / Python {req.python}: {reason}",
        "loosen a pin, or check exclude-newer and the package names",
    )
