"""Credentials for downloads at build time, from the environment only.

A lock keeps URLs in their written form (``envlock.urls.written``): no user info, and
``${VAR}`` placeholders where the spec had them.  Before a download, :func:`load` gathers
what the downloads need, once:

- each package URL is expanded (a missing variable is one ``UsageError`` naming it, exit 2);
- a package whose origin (scheme, host, port; RFC 6454) is the origin of an index or
  channel URL of the lock that has user info gets that URL's expanded user and password,
  sent as HTTP basic auth (RFC 7617);
- any other http(s) package gets the login of its host in the netrc file (``$NETRC``, else
  ``~/.netrc``; the format of ``netrc(5)``, read with the standard library's ``netrc``), as
  uv and pip do at lock time.

Nothing here is written anywhere or kept beyond the process.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from envlock import urls
from envlock.errors import UsageError

Origin = tuple[str, str, int]


@dataclass(frozen=True)
class Request:
    """What a download sends: the expanded URL (holds path tokens: never show it) and headers."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def authenticated(self) -> bool:
        return "Authorization" in self.headers


@dataclass(frozen=True)
class Access:
    """Credentials by origin, for one build."""

    environ: Mapping[str, str]
    by_origin: Mapping[Origin, tuple[str, str]]

    def request(self, url: str) -> Request:
        """The download of ``url`` (a written URL): expanded, with basic auth from its own user
        info (a direct URL written ``https://${USER}:${TOKEN}@host/...``), else from its
        origin's credentials.  Raises ``UsageError`` for an unset variable."""
        expanded = urls.expand(url, self.environ)
        own = urls.credentials(expanded)  # a direct URL's own ${VAR} user info comes first
        if own is not None:
            expanded = urls.strip_userinfo(expanded)
        found = urls.origin(expanded)
        login = own or (self.by_origin.get(found) if found else None)
        if login is None:
            return Request(expanded)
        token = base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode("ascii")
        return Request(expanded, {"Authorization": f"Basic {token}"})


def sources_from_options(options: Sequence[str]) -> tuple[str, ...]:
    """The index and find-links URLs in a lock's ``pip-options`` lines
    (``--index-url URL``, ``--extra-index-url URL``, ``--find-links URL``)."""
    found = []
    for line in options:
        flag, _, value = line.partition(" ")
        if flag in ("--index-url", "--extra-index-url", "--find-links") and "://" in value:
            found.append(value.strip())
    return tuple(found)


def netrc_path(environ: Mapping[str, str]) -> Path:
    """``$NETRC`` if set (as curl, uv and pip read it), else ``~/.netrc``."""
    given = environ.get("NETRC")
    if given:
        return Path(given)
    return Path(environ.get("HOME") or Path("~").expanduser(), ".netrc")


def _netrc_logins(path: Path, hosts: set[str]) -> dict[str, tuple[str, str]]:
    """host -> (login, password) from a netrc file, for ``hosts``; none if it does not exist.

    A file that does not parse is a ``UsageError`` naming the file and line only (the
    parser's own message may quote a token)."""
    import netrc

    if not hosts or not path.is_file():
        return {}
    try:
        parsed = netrc.netrc(str(path))
    except netrc.NetrcParseError as exc:
        raise UsageError(
            f"{path}:{exc.lineno}: cannot parse this netrc file", "see netrc(5) for its format"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read this netrc file ({type(exc).__name__})") from None
    found = {}
    for host in hosts:
        entry = parsed.authenticators(host)
        if entry is not None and entry[0] is not None and entry[2] is not None:
            found[host] = (entry[0], entry[2])
    return found


def load(sources: Sequence[str], package_urls: Sequence[str], environ: Mapping[str, str]) -> Access:
    """Credentials for downloading ``package_urls`` (written URLs), from the lock's index and
    channel URLs ``sources`` (``${VAR}`` form) and netrc.

    Checks every variable those downloads need now, before anything is fetched: an unset
    one is a ``UsageError`` (exit 2) naming it.  Variables of sources whose origin no
    download shares are not needed and not read.
    """
    wanted: set[Origin] = set()
    for url in package_urls:
        expanded = urls.expand(url, environ)
        found = urls.origin(expanded)
        if found is not None:
            wanted.add(found)
    by_origin: dict[Origin, tuple[str, str]] = {}
    for source in sources:
        if urls.credentials(source) is None:
            continue
        found = urls.origin(urls.strip_userinfo(source))
        if found is None or found not in wanted or found in by_origin:
            continue
        login = urls.credentials(urls.expand(source, environ))
        if login is not None:
            by_origin[found] = login
    rest = {o for o in wanted if o not in by_origin}
    logins = _netrc_logins(netrc_path(environ), {host for _, host, _ in rest})
    for o in rest:
        if o[1] in logins:
            by_origin[o] = logins[o[1]]
    return Access(environ, by_origin)
