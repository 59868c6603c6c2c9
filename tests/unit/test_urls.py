"""envlock.urls: one parser for the spec check, the redaction, the expansion and the written form."""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envlock import urls
from envlock.errors import EnvlockError, UsageError

# --- the check -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://pypi.org/simple",
        "http://127.0.0.1:8080/simple/",
        "https://${USER}:${TOKEN}@host/simple",
        "https://__token__:${PYPI_TOKEN}@host/simple",
        "https://${TOKEN}@host/simple",
        "https://host/${TOKEN}/simple",
        "https://[::1]:8443/simple",
        "file:///srv/wheels",
        "file://localhost/srv/wheels",
    ],
)
def test_good_urls_pass(url: str) -> None:
    assert urls.problem(url) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http:///user:s3cret@host/simple", "has no host"),
        ("https://user:s3cret@host/simple", "holds credentials"),
        ("https://s3cret@host/simple", "holds credentials"),
        ("https://${USER}:s3cret@host/simple", "holds credentials"),
        ("https://${USER}@s3cret@host/simple", "holds credentials"),
        ("https://${HOST}/simple", "not the host"),
        ("https://host:${PORT}/simple", "not a valid URL"),
        ("https://host/${1TOKEN}/simple", "malformed placeholder"),
        ("https://host/${TOKEN/simple", "malformed placeholder"),
        ("http:/host/simple", "not an http(s)://"),
        ("http:host/simple", "not an http(s)://"),
        ("ftp://host/simple", "not an http(s)://"),
        ("https://host\\@evil/simple", "backslash"),
        ("https://ho st/simple", "white space"),
        ("https://host/\nsimple", "control character"),
        ("http://host:99999/", "not a valid URL"),
        ("http://[::1/", "not a valid URL"),
        ("file://host/srv", "names no host or user"),
        ("file://u:s3cret@/srv", "names no host or user"),
    ],
)
def test_bad_urls_are_named_without_their_secret(url: str, why: str) -> None:
    problem = urls.problem(url)
    assert problem is not None and why in problem
    assert "s3cret" not in problem


# --- redaction -------------------------------------------------------------------------


def test_redact_hides_user_info() -> None:
    assert urls.redact("https://user:pass@host/simple") == "https://***@host/simple"
    assert urls.redact("https://token@host/a@b") == "https://***@host/a@b"
    assert urls.redact("https://host/simple") == "https://host/simple"
    assert urls.redact("https://host/${TOKEN}/simple") == "https://host/${TOKEN}/simple"


def test_redact_hides_user_info_of_malformed_urls() -> None:
    assert "s3cret" not in urls.redact("http:///user:s3cret@host/simple")
    assert "s3cret" not in urls.redact("https://user:s3cret\\@host/simple")
    assert "s3cret" not in urls.redact("http:\\\\user:s3cret@host/simple")


def test_redact_text_hides_every_url_and_known_values() -> None:
    text = "error: `https://ci:s3cret@host/simple` and (http://tok@h2/x) refused https://h/tok-1234/simple"
    out = urls.redact_text(text, ["https://h/${TOKEN}/simple"], {"TOKEN": "tok-1234"})
    assert out == "error: `https://***@host/simple` and (http://***@h2/x) refused https://h/${TOKEN}/simple"


def test_redact_text_leaves_short_values_to_the_structure() -> None:
    # a two-letter user name is not searched for in prose; in user info it is hidden anyway
    out = urls.redact_text("cipher at https://ci:pw@h/", ["https://${U}@h/"], {"U": "ci"})
    assert out == "cipher at https://***@h/"


def test_error_messages_are_redacted_wherever_they_come_from() -> None:
    exc = UsageError("git fetch failed: unable to access 'https://me:s3cret@git.example/r.git/'", "x@y")
    assert "s3cret" not in exc.message
    assert "https://***@git.example/r.git/" in exc.message


# --- expansion and the written form ----------------------------------------------------


def test_expand_percent_encodes_each_part() -> None:
    env = {"U": "al@ice", "T": "t/k:n"}
    out = urls.expand("https://${U}:${T}@host/${T}/simple", env)
    assert out == "https://al%40ice:t%2Fk%3An@host/t/k:n/simple"
    assert (
        urls.expand("https://host/${T}/simple", {"T": "a?b#c d%"}) == "https://host/a%3Fb%23c%20d%25/simple"
    )
    assert urls.credentials(out) == ("al@ice", "t/k:n")


def test_expand_names_an_unset_variable_not_a_value() -> None:
    with pytest.raises(UsageError) as info:
        urls.expand("https://${IDX_USER}:${IDX_TOKEN}@host/simple", {"IDX_USER": "s3cret"})
    assert "environment variable IDX_TOKEN is not set" in info.value.message
    assert "s3cret" not in info.value.message and "IDX_TOKEN" in (info.value.hint or "")
    assert info.value.exit_code == 2


def test_written_puts_placeholders_back_into_package_urls() -> None:
    sources = ["https://${U}:${T}@host/${PATH_TOKEN}/simple"]
    env = {"U": "ci", "T": "s3cret", "PATH_TOKEN": "p4th-t0ken"}
    got = urls.written("https://ci:s3cret@host/p4th-t0ken/packages/a-1.0-py3-none-any.whl", sources, env)
    assert got == "https://host/${PATH_TOKEN}/packages/a-1.0-py3-none-any.whl"
    assert urls.expand(got, env) == "https://host/p4th-t0ken/packages/a-1.0-py3-none-any.whl"


def test_origin_fills_in_default_ports() -> None:
    assert urls.origin("https://Host/simple") == ("https", "host", 443)
    assert urls.origin("http://u:p@host:8080/x") == ("http", "host", 8080)
    assert urls.origin("file:///x") is None
    assert urls.origin("http://[::1/") is None


# --- properties ------------------------------------------------------------------------

_USERINFO_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=%"
_secret = st.text(alphabet=_USERINFO_CHARS, min_size=6, max_size=30)
_host = st.from_regex(r"[a-z][a-z0-9-]{0,15}(\.[a-z]{2,6})?", fullmatch=True)
_path = st.from_regex(r"(/[A-Za-z0-9._-]{1,10}){0,4}/?", fullmatch=True)
_var = st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_string_gives_an_answer_or_an_envlock_error(text: str) -> None:
    for call in (
        lambda: urls.problem(text),
        lambda: urls.redact(text),
        lambda: urls.redact_text(text, [text], {}),
        lambda: urls.origin(text),
        lambda: urls.credentials(text),
        lambda: urls.strip_userinfo(text),
        lambda: urls.written(text, [text], {}),
        lambda: urls.expand(text, {}),
    ):
        with contextlib.suppress(EnvlockError):
            call()


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["http", "https", "HTTP"]),
    st.one_of(st.none(), _secret),
    _secret,
    _host,
    _path,
    st.sampled_from(["", "/", "//", "\\", "\\\\", "/\\"]),
)
def test_redaction_never_shows_the_password(
    scheme: str, user: str | None, password: str, host: str, path: str, slashes: str
) -> None:
    userinfo = f"{user}:{password}" if user is not None else password
    url = f"{scheme}:{slashes}{userinfo}@{host}{path}"
    if password in f"{scheme}:{slashes}{host}{path}":
        return  # the secret is also an ordinary part of the URL
    assert password not in urls.redact(url)
    assert password not in urls.redact_text(f"error: cannot fetch `{url}`: 401")
    problem = urls.problem(url)
    assert problem is not None and password not in problem


@settings(max_examples=300, deadline=None)
@given(_var, _var, _var, st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20), _host, _path)
def test_expand_then_written_gives_the_placeholders_back(
    user_var: str, pass_var: str, path_var: str, user: str, token: str, host: str, path: str
) -> None:
    env = {user_var: user, pass_var: token, path_var: token + "p"}
    template = f"https://${{{user_var}}}:${{{pass_var}}}@{host}/${{{path_var}}}{path}"
    assert urls.problem(template) is None
    expanded = urls.expand(template, env)
    assert urls.credentials(expanded) == (env[user_var], env[pass_var])
    package = expanded.rsplit("/", 1)[0] + "/pkg-1.0-py3-none-any.whl"
    back = urls.written(package, [template], env)
    assert urls.expand(back, env) == urls.strip_userinfo(package)
    assert urls.credentials(back) is None
    if len(env[path_var]) >= 3 and env[path_var] not in f"{host}/pkg-1.0-py3-none-any.whl":
        assert env[path_var] not in back.replace("${" + path_var + "}", "")


@pytest.mark.parametrize(
    ("url", "bad"),
    [
        ("https://pypi.org/simple?token=QueryTok4321xyz", True),
        ("https://h.example/simple?X-Amz-Signature=abc&page=2", True),
        ("https://h.example/simple?api_key=abc", True),
        ("https://h.example/simple?token=${TOKEN}", False),
        ("https://h.example/simple?page=2", False),
    ],
)
def test_a_literal_token_in_the_query_is_refused_and_never_shown(url: str, bad: bool) -> None:
    found = urls.problem(url)
    assert (found is not None) == bad
    if found:
        assert "QueryTok4321xyz" not in found and "=abc" not in found
