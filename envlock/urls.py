"""URLs that may carry credentials: one parser for the spec check, the redaction, the
expansion at fetch time and the form that is written.

Credentials live only in the environment.  A spec writes them as ``${VAR}`` placeholders
(in the user, password or path part of an index or channel URL); envlock expands them just
before a resolver or a download needs them, and everything it writes or prints carries the
placeholder again (:func:`written`) or ``***`` (:func:`redact`).

Parsing is ``urllib.parse.urlsplit`` (RFC 3986 section 3: ``scheme://authority/path``,
the user info being what comes before the authority's last ``@``).  It accepts more than
RFC 3986 allows (``http:///a@b`` has an empty authority and a path ``/a@b``), so
:func:`problem` checks explicitly what it lets through, and rejects what the WHATWG URL
parser used by uv (Rust's ``url`` crate) would read differently: backslashes, white space
and control characters (WHATWG URL Standard, "special" schemes treat ``\\`` as ``/`` and
strip tabs and newlines).  ``yarl`` and ``rfc3986`` were considered; neither removes the
need for these checks, and the standard library keeps the CLI's start-up lean.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote, unquote, urlsplit

from envlock.errors import UsageError

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SCHEMES = ("http", "https", "file")
REDACTED = "***"
DEFAULT_PORTS = {"http": 80, "https": 443}
# ``scheme:`` and slashes, then an authority ending in ``@`` (the last one before a path,
# query or fragment), i.e. user info to hide; in free text also white space, " and ` end it
_USERINFO_IN_URL = re.compile(r"(?i)([a-z][a-z0-9+.\-]*:[/\\]*)[^/?#]*@")
_USERINFO_IN_TEXT = re.compile(r"(?i)([a-z][a-z0-9+.\-]*:[/\\]*)[^\s/?#`\"<>]*@")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")
# characters kept as they are when a value is put into a URL: in user info only the
# unreserved ones (RFC 3986 section 2.3); in a path also the other pchar characters and "/"
# (section 3.3), so a value may span segments ("org/team") but never start a query or fragment
_USERINFO_SAFE = "-._~"
_PATH_SAFE = "-._~!$&'()*+,;=:@/"
# values shorter than this are too likely to be ordinary words to be replaced in free text
MIN_TEXT_SECRET = 4


def _only_placeholders(text: str) -> bool:
    return bool(text) and PLACEHOLDER.sub("", text) == ""


def problem(url: str) -> str | None:
    """Why ``url`` (an index, find-links or channel URL from a spec) is not acceptable, or
    ``None``.  The message never repeats a credential: the URL is shown redacted.

    Accepted: ``http(s)://[USER[:PASSWORD]@]HOST[:PORT][/PATH]`` where a password, or a user
    without a password (a token), is made of ``${VAR}`` placeholders only; ``file:///PATH``.
    Placeholders may stand for the user, the password and path parts, never the host or port
    (credentials are sent to a host only when it is the spec's).
    """
    shown = redact(url)
    if _FORBIDDEN.search(url):
        return f"{shown!r} contains white space, a control character or a backslash"
    if "${" in PLACEHOLDER.sub("", url):
        return f"{shown!r} has a malformed placeholder; write ${{NAME}} (letters, digits, _)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{shown!r} is not a valid URL ({exc})"
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not url[len(scheme) + 1 :].startswith("//"):
        return f"{shown!r} is not an http(s):// or file:// URL"
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if scheme == "file":
        if at or netloc not in ("", "localhost"):
            return f"{shown!r}: a file:// URL names no host or user (file:///PATH)"
        if not parts.path:
            return f"{shown!r}: a file:// URL needs a path"
        return None
    if not parts.hostname:
        return f"{shown!r} has no host (write {scheme}://HOST/PATH)"
    if "$" in hostport:
        return f"{shown!r}: placeholders may stand for the user, the password or the path, not the host"
    if port == 0:
        return f"{shown!r} has port 0"
    if at:
        user, colon, password = userinfo.partition(":")
        secret = password if colon else user
        if not _only_placeholders(secret) or "@" in user:
            return f"{shown!r} holds credentials; write them as ${{ENV_VAR}} placeholders"
    for name, value in _query_pairs(parts.query):
        if _SECRET_NAME.search(name) and not _only_placeholders(value):
            hidden = redact_text(shown)
            return f"{hidden!r}: the query's {name!r} holds a credential; write it as ${{ENV_VAR}}"
    return None


_SECRET_NAME = re.compile(r"(?i)token|password|secret|sig|signature|credential|key")


def _query_pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name:
            pairs.append((unquote(name), value))
    return pairs


def redact(url: str) -> str:
    """``url`` for display: any user info replaced by ``***`` (``https://***@host/simple``).

    Never raises; anything that looks like ``scheme:[//]userinfo@`` is hidden, malformed
    URLs such as ``http:///user:secret@host`` included.  Placeholders in the path are kept
    (they name a variable, not its value).
    """
    return _USERINFO_IN_URL.sub(_hide, url) if "@" in url else url


def _hide(m: re.Match[str]) -> str:
    return m.group(1) + REDACTED + "@"


def variables(url: str) -> tuple[str, ...]:
    """The names of the ``${VAR}`` placeholders in ``url``, in order, without repeats."""
    return tuple(dict.fromkeys(PLACEHOLDER.findall(url)))


def _encoded(value: str, in_userinfo: bool) -> str:
    return quote(value, safe=_USERINFO_SAFE if in_userinfo else _PATH_SAFE)


def _userinfo_span(url: str) -> tuple[int, int]:
    """Start and end of the user info in ``url`` (an empty span when there is none)."""
    m = re.match(r"(?i)[a-z][a-z0-9+.\-]*://([^/?#]*)@", url)
    return (m.start(1), m.end(1)) if m else (0, 0)


def userinfo(url: str) -> str | None:
    """The user info of ``url`` as written (``user:password``, a token, placeholders), or
    ``None`` when it has none; the part before the authority's last ``@`` (RFC 3986 3.2.1)."""
    start, end = _userinfo_span(url)
    return url[start:end] if end else None


def expand(url: str, environ: Mapping[str, str]) -> str:
    """``url`` with each ``${VAR}`` replaced by the variable's value, percent-encoded for the
    part it stands in (RFC 3986 section 2.1): a password holding ``@`` or ``/`` stays one, a
    path value may hold ``/`` but not ``?`` or ``#``.

    Raises ``UsageError`` (exit 2) naming the first unset variable, never any value.
    """
    start, end = _userinfo_span(url)

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        value = environ.get(name)
        if value is None:
            raise UsageError(
                f"environment variable {name} is not set (used in {redact(url)})",
                f"export {name}=... before running envlock (credentials come only from the environment)",
            )
        return _encoded(value, start <= m.start() < end)

    return PLACEHOLDER.sub(sub, url)


def secret_in_path(url: str) -> bool:
    """Whether ``url`` has a placeholder outside its user info (a token in the path, which
    tools keep in their caches' URLs, unlike user info)."""
    return bool(variables(strip_userinfo(url)))


def literal_userinfo(url: str) -> bool:
    """True when ``url`` carries user info that is not made of ``${VAR}`` placeholders only
    (``https://${USER}:${TOKEN}@host`` is the written form of a direct URL; anything else
    is a credential that must never be written)."""
    start, end = _userinfo_span(url)
    if not end:
        return False
    return not _only_placeholders(url[start:end].replace(":", ""))


def strip_userinfo(url: str) -> str:
    """``url`` without user info (a written package URL never carries credentials)."""
    start, end = _userinfo_span(url)
    return url[:start] + url[end + 1 :] if end else url


def secrets(
    templates: Iterable[str], environ: Mapping[str, str], *, raw: bool = False
) -> list[tuple[str, str]]:
    """(value, placeholder) for every set variable the ``templates`` use, longest value
    first: the value as :func:`expand` puts it into a URL (percent-encoded) and, with
    ``raw``, also as it is (for free text, where a tool may print it decoded).  Variables
    used only in user info count from ``MIN_TEXT_SECRET`` characters on: a short user name
    such as ``ci`` would otherwise be found inside ordinary words (``linux``)."""
    found: dict[str, str] = {}
    for template in templates:
        in_path = set(variables(strip_userinfo(template)))
        for name in variables(template):
            value = environ.get(name)
            if not value or (name not in in_path and len(value) < MIN_TEXT_SECRET):
                continue  # a short user name is left to the user info's removal
            forms = [_encoded(value, True), _encoded(value, False), *([value] if raw else [])]
            for form in forms:
                found.setdefault(form, "${" + name + "}")
    return sorted(found.items(), key=lambda item: (-len(item[0]), item[0]))


def _replace_values(text: str, pairs: Sequence[tuple[str, str]]) -> str:
    """Each value in ``text`` replaced by its placeholder, in one pass (a placeholder that
    was put in is never searched again); the longest value wins where several start."""
    if not pairs:
        return text
    table = dict(pairs)
    pattern = re.compile("|".join(re.escape(value) for value, _ in pairs))
    return pattern.sub(lambda m: table[m.group(0)], text)


def written(url: str, templates: Sequence[str], environ: Mapping[str, str]) -> str:
    """The form of a URL a resolver returned that may be written to a lock or an export:
    no user info, and in its path, query and fragment every value of a variable the spec's
    ``templates`` use (e.g. a token in an index's path, ``https://host/${TOKEN}/simple``)
    replaced by its placeholder, so that :func:`expand` gives the URL back."""
    out = strip_userinfo(url)
    m = re.match(r"(?i)[a-z][a-z0-9+.\-]*://[^/?#]*", out)
    cut = m.end() if m else 0
    return out[:cut] + _replace_values(out[cut:], secrets(templates, environ))


_SECRET_QUERY = re.compile(
    r"(?i)([?&][a-z0-9_.-]*(?:token|password|secret|sig|signature|credential|key)=)[^&#\s:;,)'\"]+"
)


def redact_text(text: str, templates: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> str:
    """``text`` (a message, a tool's stderr) safe to print: values of the variables the
    ``templates`` use (``MIN_TEXT_SECRET`` characters or more, raw or percent-encoded)
    become their placeholders, the user info of every URL becomes ``***``, and so do the
    values of token and signature query parameters."""
    if templates and environ is not None:
        pairs = [(v, p) for v, p in secrets(templates, environ, raw=True) if len(v) >= MIN_TEXT_SECRET]
        text = _replace_values(text, pairs)
    if "=" in text:  # signed URLs and token queries (?token=, &X-Amz-Signature=...)
        text = _SECRET_QUERY.sub(lambda m: f"{m.group(1)}***", text)
    return _USERINFO_IN_TEXT.sub(_hide, text) if "@" in text else text


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, default ports filled in (RFC 6454 section
    4); ``None`` for anything else, or a URL that does not parse."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def credentials(url: str) -> tuple[str, str] | None:
    """The (user, password) an already expanded URL carries, percent-decoded; ``None``
    without user info."""
    start, end = _userinfo_span(url)
    if not end:
        return None
    user, _, password = url[start:end].partition(":")
    return unquote(user), unquote(password)
