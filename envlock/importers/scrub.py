"""Literal credentials in imported URLs become ``${VAR}`` placeholders.

A spec holds credentials only as placeholders (``envlock.urls``: the user, the password, a
path token, a token query parameter); a requirements file, an environment.yml or a lock of
another tool may hold them literally: ``--index-url https://alice:s3cret@host/simple``,
``--find-links https://TOKEN@host/wheels/``, ``name @ https://u:p@host/name-1.0.whl`` or
``name @ git+https://TOKEN@host/repo@v1``.  Every URL an importer hands to the spec passes
through :func:`url` (with the place it came from, for the warning) or, as a last pass over
everything an :class:`~envlock.importers.Imported` holds, :func:`scrub`.

Variables are named after the host: ``HOST_USER`` and ``HOST_PASSWORD`` for a user and
password, ``HOST_TOKEN`` for user info without a password (a token, as GitHub and GitLab
take it), ``HOST_<PARAMETER>`` for a token query parameter; ``HOST`` is the host name in
upper case with every other character ``_`` (``pkgs.example.com`` -> ``PKGS_EXAMPLE_COM``),
prefixed ``HOST_`` when it starts with a digit (a variable name cannot).  Two different
credentials for one host in one import get ``_2``, ``_3``... suffixes (``HOST_USER_2``).  The secret itself is
never kept in the spec, a comment or a message: the warning names the variables to export.

``ssh`` user names (``git+ssh://git@host/repo``) are not credentials and stay.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

from envlock import urls
from envlock.errors import SpecError
from envlock.importers import Imported

_SECRET_QUERY = re.compile(
    r"(?i)([?&])([a-z0-9_.-]*(?:token|password|secret|sig|signature|credential|key))=([^&#]*)"
)


def _host_name(url: str) -> str:
    try:
        host = urlsplit(urls.strip_userinfo(url)).hostname or "host"
    except ValueError:
        host = "host"
    name = re.sub(r"[^A-Za-z0-9]+", "_", host).strip("_").upper() or "HOST"
    return f"HOST_{name}" if name[0].isdigit() else name


def _variable(found: Imported, base: str, literal: str) -> str:
    """``base``, or ``base_2``, ``base_3``... when ``base`` already stands for another secret
    in this import (``found.placeholders`` keeps a digest of each, never the secret)."""
    digest = hashlib.sha256(literal.encode()).hexdigest()
    for n in range(1, 1000):
        candidate = base if n == 1 else f"{base}_{n}"
        if found.placeholders.setdefault(candidate, digest) == digest:
            return candidate
    raise SpecError(f"{found.source}: more than 999 different credentials for one host")


def url(found: Imported, value: str, where: str, what: str = "URL") -> str:
    """``value`` with each literal credential replaced by a ``${VAR}`` placeholder, and a
    warning on ``found`` (``WHERE: the WHAT held credentials; export A and B before
    locking``) when anything was replaced.  Placeholders already there stay as they are.

    ``what`` names the URL in the warning ("index URL", "find-links URL", "URL of six").
    """
    placed: list[str] = []
    host = _host_name(value)
    info = urls.userinfo(value)
    scheme = value.split(":", 1)[0].lower()
    if info is not None and not (scheme.endswith("ssh") and ":" not in info):
        user, colon, password = info.partition(":")
        parts = []
        for part, suffix in ((user, "TOKEN" if not colon else "USER"), (password, "PASSWORD")):
            if urls.PLACEHOLDER.sub("", part):  # anything but placeholders is literal
                variable = _variable(found, f"{host}_{suffix}", part)
                placed.append(variable)
                part = "${" + variable + "}"
            parts.append(part)
        if placed:
            start = value.index("://") + 3
            value = (
                value[:start] + (parts[0] + (":" + parts[1] if colon else "")) + value[start + len(info) :]
            )

    def query(m: re.Match[str]) -> str:
        literal = m.group(3)
        if not literal or not urls.PLACEHOLDER.sub("", literal):
            return m.group(0)
        param = re.sub(r"[^A-Za-z0-9]+", "_", m.group(2)).strip("_").upper()
        variable = _variable(found, f"{host}_{param}", literal)
        placed.append(variable)
        return f"{m.group(1)}{m.group(2)}=${{{variable}}}"

    if "=" in value:
        value = _SECRET_QUERY.sub(query, value)
    if placed:
        listed = " and ".join(", ".join(placed).rsplit(", ", 1)) if len(placed) > 1 else placed[0]
        found.warn(f"{where}: the {what} held credentials; export {listed} before locking")
    return value


def requirement(found: Imported, value: str, where: str) -> str:
    """A PEP 508 requirement with the credentials of its direct-reference URL (``name @
    URL``) replaced as :func:`url` does; anything else (or a requirement that does not
    parse, which the spec check reports) unchanged."""
    from packaging.requirements import InvalidRequirement, Requirement

    if "@" not in value:
        return value
    try:
        parsed = Requirement(value)
    except InvalidRequirement:
        return value
    if not parsed.url:
        return value
    cleaned = url(found, parsed.url, where, f"URL of {parsed.name}")
    if cleaned == parsed.url:
        return value
    parsed.url = cleaned
    return str(parsed)


def scrub(found: Imported) -> None:
    """Replace literal credentials in every URL ``found`` holds (index URLs, find-links,
    conda channels, direct references), warning for each; the last step of every import,
    whatever the format."""
    where = found.source.name
    if found.index_url:
        found.index_url = url(found, found.index_url, where, "index URL")
    found.indexes = [url(found, u, where, "index URL") for u in found.indexes]
    found.find_links = [url(found, u, where, "find-links URL") if "://" in u else u for u in found.find_links]
    found.conda_channels = [
        url(found, c, where, "channel URL") if "://" in c else c for c in found.conda_channels
    ]
    found.packages = [requirement(found, p, where) for p in found.packages]
