"""pip resolution behind one small interface; engines (uv, pip-tools) are adapters.

An engine takes a ``Request`` (requirements, indexes, target platform and Python,
cut-off date) and returns one hashed artifact per package for that target.  It
never sees the spec, the matrix or the lock format.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from envlock.errors import UsageError
from envlock.lockfile import Package

ENGINES = ("uv", "pip-tools")


@dataclass(frozen=True)
class Request:
    requirements: tuple[str, ...]
    platform: str  # conda subdir of the target
    python: str  # target CPython minor version
    index_url: str | None = None  # replaces PyPI; may hold ${VAR} placeholders
    indexes: tuple[str, ...] = ()  # searched before the default index
    find_links: tuple[str, ...] = ()  # absolute paths or URLs
    no_index: bool = False
    exclude_newer: str | None = None  # RFC 3339 UTC
    constraints: tuple[str, ...] = ()  # "name==version" lines: what is already provided (by conda)

    @property
    def sources(self) -> tuple[str, ...]:
        """Every index and find-links URL, and the URL of every direct reference
        (``name @ URL``), as the spec wrote them (``${VAR}`` kept)."""
        direct = tuple(
            r.split("@", 1)[1].strip().removeprefix("git+").split(";")[0].strip()
            for r in self.requirements
            if " @ " in r or "@ " in r
        )
        return (*((self.index_url,) if self.index_url else ()), *self.indexes, *self.find_links, *direct)


@dataclass(frozen=True)
class Resolved:
    """An engine's answer: one artifact per package, and what the engine warned about
    (a yanked pin, ...), one line each, without the ``warning:`` prefix."""

    packages: list[Package]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Engine:
    name: str
    version: Callable[[], str]
    resolve: Callable[[Request], Resolved]
    # start resolving in the background; the returned function waits for the result
    start: Callable[[Request], Callable[[], Resolved]]


def get(name: str) -> Engine:
    if name == "uv":
        from envlock.resolve import uv

        return Engine("uv", uv.version, uv.resolve, uv.start)
    if name == "pip-tools":
        from envlock.resolve import piptools

        return Engine("pip-tools", piptools.version, piptools.resolve, piptools.start)
    raise UsageError(f"unknown resolver {name!r}", f"choose one of: {', '.join(ENGINES)}")


_LEAKY = (
    "PIP_",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "UV_EXCLUDE_NEWER",
    "UV_CONSTRAINT",
    "UV_OVERRIDE",
    "UV_PYTHON",
    "UV_PRERELEASE",
    "UV_RESOLUTION",
    "UV_TORCH_BACKEND",
    "UV_CONFIG_FILE",
    "UV_INDEX_STRATEGY",
)
_KEEP = ("PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_CLIENT_CERT", "PIP_TRUSTED_HOST")


def warning_lines(text: str, prefix: str) -> tuple[str, ...]:
    """The lines of a tool's output that start with ``prefix`` (e.g. ``"warning: "``), without
    it, in order, each once."""
    found = (ln.strip()[len(prefix) :].strip() for ln in text.splitlines() if ln.strip().startswith(prefix))
    return tuple(dict.fromkeys(w for w in found if w))


# What a resolver may see of the host's environment, and nothing else: resolving can run a
# package's build backend to read its metadata (an sdist without static metadata), so the
# user's other variables (tokens, cloud credentials) are not handed to it.
_PASS = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "NETRC", "SSH_AUTH_SOCK", "PYENV_ROOT", "PYENV_VERSION",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO", "GIT_SSL_CAPATH",
    "UV_CACHE_DIR", "UV_PYTHON_INSTALL_DIR", "UV_NATIVE_TLS", "UV_HTTP_TIMEOUT", "UV_CONCURRENT_DOWNLOADS",
    "SOURCE_DATE_EPOCH",
)  # fmt: skip
_PASS_PREFIXES = ("LC_", "XDG_")
_PROXIES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


def _passes(name: str) -> bool:
    return name in _PASS or name.startswith(_PASS_PREFIXES) or name.lower() in _PROXIES


def placeholder_values(texts: Sequence[str]) -> dict[str, str]:
    """The environment variables the ``${VAR}`` placeholders in ``texts`` name (requirements
    such as ``pkg @ https://${USER}:${TOKEN}@host/...``, which the resolver expands itself), for
    :func:`isolated_env`'s ``extra``; unset ones are left out (the resolver then says so)."""
    from envlock.urls import PLACEHOLDER

    names = {m.group(1) for text in texts for m in PLACEHOLDER.finditer(text)}
    return {name: os.environ[name] for name in sorted(names) if name in os.environ}


def isolated_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a resolver: the variables it needs to reach an index (paths, locale,
    certificates, proxies, caches) and ``_KEEP``'s pip settings; no host pip/uv settings that
    would change the answer, and none of the user's other variables (secrets included)."""
    env = {k: v for k, v in os.environ.items() if k in _KEEP or _passes(k)}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["UV_NO_CONFIG"] = "1"
    env["PYTHONHASHSEED"] = "0"
    if extra:
        env.update(extra)
    return env
