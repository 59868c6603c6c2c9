"""uv engine: ``uv pip compile`` for an explicit target, read back as PEP 751 data."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Callable
from functools import cache
from pathlib import Path

from envlock.errors import ResolutionError, ServiceUnavailable, ToolMissing
from envlock.platforms import PLATFORMS
from envlock.resolve import Request, Resolved, isolated_env, placeholder_values, warning_lines
from envlock.resolve.artifacts import from_pylock
from envlock.urls import expand, redact_text, secret_in_path


@cache
def _located() -> tuple[str, bool]:
    """The uv binary, and whether it is the one from the ``uv`` Python package."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin()), True
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found, False
    raise ToolMissing("uv is not installed", "pip install uv (envlock depends on it)")


def binary() -> str:
    return _located()[0]


@cache
def version() -> str:
    path, packaged = _located()
    if packaged:
        from importlib.metadata import version as dist_version

        return f"uv {dist_version('uv')}"
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return " ".join(out.stdout.split()[:2]) or "uv"


def command(req: Request, infile: Path, outfile: Path) -> list[str]:
    """The uv command line for a request (credentials already expanded)."""
    args = [
        binary(),
        "pip",
        "compile",
        str(infile),
        "--format",
        "pylock.toml",
        "--output-file",
        str(outfile),
        "--python-version",
        req.python,
        "--python-platform",
        PLATFORMS[req.platform].uv_target,
        "--no-header",
        "--color",
        "never",
        "--no-config",
    ]
    if req.exclude_newer:
        args += ["--exclude-newer", req.exclude_newer]
    if req.no_index:
        args.append("--no-index")
    if req.index_url:
        args += ["--default-index", expand(req.index_url, os.environ)]
    for index in req.indexes:
        args += ["--index", expand(index, os.environ)]
    for link in req.find_links:
        args += ["--find-links", expand(link, os.environ)]
    return args


def start(req: Request) -> Callable[[], Resolved]:
    """Start uv now; the returned function waits for it and reads the result.

    Callers do other work (validation, imports) while uv resolves; a caller that gives
    up calls the function's ``cancel`` attribute, which kills uv and cleans up.
    """
    tmp = tempfile.mkdtemp(prefix="envlock-uv-")
    infile = Path(tmp, "requirements.in")
    infile.write_text("".join(r + "\n" for r in req.requirements), "utf-8")
    outfile = Path(tmp, "pylock.toml")
    args = command(req, infile, outfile)
    if any(secret_in_path(url) for url in req.sources):
        # uv's cache keeps the index's file URLs, path token included: use a cache that
        # goes with this run (user info never reaches uv's cache; uv strips it)
        args += ["--cache-dir", str(Path(tmp, "cache"))]
    if req.constraints:  # e.g. what conda provides, pinned for pip on top
        constraints = Path(tmp, "constraints.txt")
        constraints.write_text("".join(c + "\n" for c in req.constraints), "utf-8")
        args += ["--constraint", str(constraints)]
    try:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=isolated_env(placeholder_values(req.requirements)),
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    def cancel() -> None:
        proc.kill()
        proc.communicate()
        shutil.rmtree(tmp, ignore_errors=True)

    def result() -> Resolved:
        try:
            _, stderr = proc.communicate()
            if proc.returncode != 0:
                raise _failure(stderr, req)
            data = tomllib.loads(outfile.read_text("utf-8"))
            packages = from_pylock(data, req.platform, req.python, Path(tmp), req.sources)
            # not --quiet: uv reports yanked pins and the like on stderr, as "warning: ..."
            return Resolved(packages, warning_lines(redact_text(stderr, req.sources, os.environ), "warning:"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    result.cancel = cancel  # type: ignore[attr-defined]
    return result


def resolve(req: Request) -> Resolved:
    return start(req)()


def _failure(stderr: str, req: Request) -> Exception:
    text = redact_text(stderr, req.sources, os.environ)
    lines = [
        re.sub(r"^(error|cause|hint|help):\s*", "", ln.strip(" ╰─▶│×"))
        for ln in text.splitlines()
        if ln.strip(" ╰─▶│×")
    ]
    target = f"{req.platform} / Python {req.python}"
    joined = " ".join(lines)
    refused = re.search(r"\(([^()\s]+)\) returned a (401 Unauthorized|403 Forbidden)", text)
    if refused:
        return ServiceUnavailable(
            f"the package index {refused.group(1)} answered {refused.group(2)}",
            credentials_hint(req.sources),
        )
    if re.search(r"lack of valid authentication credentials \(401 Unauthorized\)|401 Unauthorized", text):
        where = re.search(r"(https?://[^\s`'\"()]+)", text)
        return ServiceUnavailable(
            f"the package index{' ' + where.group(1) if where else ''} answered 401 Unauthorized",
            credentials_hint(req.sources),
        )
    if "Git operation failed" in text and re.search(
        r"(unable to access|Could not read from remote|does not appear to be a git repository|"
        r"Could not resolve host|Failed to connect)",
        text,
    ):
        where = re.search(r"`[^`@]+@ (git\+[^`]+)`", text)
        return ServiceUnavailable(
            f"cannot reach the git repository{' ' + where.group(1) if where else ''}",
            "check the URL and your network (and the ${VAR} credentials in it)",
        )
    if re.search(r"(error sending request|Failed to fetch|dns error|Connection refused|timed out)", text):
        direct = re.search(r"Failed to download(?: and build)? `[^`@]+@ ([^`]+)`", text)
        if direct:
            return ServiceUnavailable(
                f"cannot download {direct.group(1)}",
                "check the URL in the spec and your network",
            )
        where = re.search(r"(https?://[^\s`'\"()]+)", text)
        return ServiceUnavailable(
            f"cannot reach the package index{' at ' + where.group(1) if where else ''}",
            "check the index URL and your network; envlock resolves against live indexes",
        )
    if "No solution found" in text or "not found in the" in text or "was not found" in text:
        reason = re.split(r"No solution found when resolving dependencies:?", joined, maxsplit=1)[-1]
        reason = reason.strip() or joined
        return ResolutionError(
            f"no solution for {target}: {reason}",
            "loosen a pin, or check exclude-newer and the package names",
        )
    return ResolutionError(f"uv could not resolve for {target}: {joined or 'unknown error'}")


def credentials_hint(sources: tuple[str, ...]) -> str:
    """What to check when an index refuses: the variables its URL uses, or netrc."""
    from envlock.urls import variables

    names = [name for url in sources for name in variables(url)]
    if names:
        return f"check the values of {', '.join(dict.fromkeys(names))}, or give the host's login in ~/.netrc"
    return "write the credentials as ${VAR} placeholders in the index URL, or give them in ~/.netrc"
