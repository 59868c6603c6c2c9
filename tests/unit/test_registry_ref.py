"""registry: references parse into registry/repository/digest/tag; gzip layers are deterministic."""

from __future__ import annotations

import pytest

from envlock.errors import UsageError
from envlock.image.registry import Reference, parse

HEX = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("ref", "expected", "scheme"),
    [
        (
            f"127.0.0.1:5000/a/b@{DIGEST}",
            Reference("127.0.0.1:5000", "a/b", DIGEST, None),
            "http",
        ),
        ("localhost:5000/x:tag", Reference("localhost:5000", "x", None, "tag"), "http"),
        ("localhost/x", Reference("localhost", "x", None, None), "http"),
        (
            f"python:3.11-slim@{DIGEST}",
            Reference("registry-1.docker.io", "library/python", DIGEST, "3.11-slim"),
            "https",
        ),
        (f"ghcr.io/org/img@{DIGEST}", Reference("ghcr.io", "org/img", DIGEST, None), "https"),
        ("user/repo:1.0", Reference("registry-1.docker.io", "user/repo", None, "1.0"), "https"),
        (
            f"registry.example.org:443/team/img:v2@{DIGEST}",
            Reference("registry.example.org:443", "team/img", DIGEST, "v2"),
            "https",
        ),
    ],
)
def test_parse(ref: str, expected: Reference, scheme: str) -> None:
    parsed = parse(ref)

    assert parsed == expected
    assert parsed.scheme == scheme


def test_url_uses_the_scheme_registry_and_repository() -> None:
    ref = parse(f"127.0.0.1:5000/a/b@{DIGEST}")

    assert ref.url(f"manifests/{DIGEST}") == f"http://127.0.0.1:5000/v2/a/b/manifests/{DIGEST}"
    assert parse("ghcr.io/org/img:1").url("blobs/uploads/") == "https://ghcr.io/v2/org/img/blobs/uploads/"


def test_str_prefers_the_digest_over_the_tag() -> None:
    assert str(parse(f"ghcr.io/org/img:1@{DIGEST}")) == f"ghcr.io/org/img@{DIGEST}"
    assert str(parse("ghcr.io/org/img:1")) == "ghcr.io/org/img:1"
    assert str(parse("ghcr.io/org/img")) == "ghcr.io/org/img"


@pytest.mark.parametrize(
    "ref",
    [
        "ghcr.io/org/img@sha256:abc",
        f"ghcr.io/org/img@sha256:{HEX.upper()}",
        f"ghcr.io/org/img@md5:{HEX}",
    ],
)
def test_an_invalid_digest_is_a_usage_error(ref: str) -> None:
    with pytest.raises(UsageError, match="invalid digest"):
        parse(ref)


@pytest.mark.parametrize("ref", ["ghcr.io/Org/img", "localhost:5000/MyImage:tag", "Python:3.11"])
def test_an_uppercase_repository_is_a_usage_error(ref: str) -> None:
    with pytest.raises(UsageError, match="invalid repository") as exc:
        parse(ref)
    assert exc.value.hint is not None
    assert "lowercase" in exc.value.hint


def test_an_ipv6_loopback_registry_uses_http() -> None:
    assert parse("[::1]:5000/x:tag").scheme == "http"
