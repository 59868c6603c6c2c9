"""Choosing the one file per package from a resolver's PEP 751 answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock.errors import ResolutionError
from envlock.resolve.artifacts import from_pylock

SHA = "0" * 64


def pylock(*wheels: str, **extra: object) -> dict[str, object]:
    files = [{"url": f"https://download.pytorch.org/whl/cpu/{w}", "hashes": {"sha256": SHA}} for w in wheels]
    return {"packages": [{"name": "torch", "version": "2.5.1+cpu", "wheels": files, **extra}]}


def test_a_pytorch_index_linux_wheel_is_chosen_for_linux_64() -> None:
    data = pylock(
        "torch-2.5.1+cpu-cp311-cp311-linux_x86_64.whl", "torch-2.5.1+cpu-cp312-cp312-linux_x86_64.whl"
    )
    (chosen,) = from_pylock(data, "linux-64", "3.11", Path("/"))
    assert chosen.filename == "torch-2.5.1+cpu-cp311-cp311-linux_x86_64.whl"


def test_no_file_names_every_file_and_why_it_was_rejected() -> None:
    data = pylock(
        "torch-2.5.1+cpu-cp312-cp312-linux_x86_64.whl",
        "torch-2.5.1+cpu-cp311-cp311-linux_aarch64.whl",
        "torch-2.5.1-cp311-none-macosx_11_0_arm64.whl",
    )
    with pytest.raises(ResolutionError) as caught:
        from_pylock(data, "linux-64", "3.11", Path("/"))
    message = caught.value.message
    assert message.startswith("torch 2.5.1+cpu has no file for linux-64 / Python 3.11: ")
    assert (
        "torch-2.5.1+cpu-cp312-cp312-linux_x86_64.whl: python tag cp312 (the target is CPython 3.11)"
        in message
    )
    assert (
        "torch-2.5.1+cpu-cp311-cp311-linux_aarch64.whl: platform linux_aarch64 (the target is linux-64"
        in message
    )
    assert "torch-2.5.1-cp311-none-macosx_11_0_arm64.whl: platform macosx_11_0_arm64" in message


def test_a_package_without_files_says_what_it_was() -> None:
    data = {"packages": [{"name": "mine", "version": "1.0"}]}
    with pytest.raises(ResolutionError, match="the resolver listed no files"):
        from_pylock(data, "linux-64", "3.11", Path("/"))
    # a vcs source is locked as one (envlock.sources builds it), unless it is not git
    data = {"packages": [{"name": "mine", "version": "1.0", "vcs": {"type": "hg", "url": "https://x/x"}}]}
    with pytest.raises(ResolutionError, match="hg requirements are not supported"):
        from_pylock(data, "linux-64", "3.11", Path("/"))


def test_a_file_url_with_a_query_is_named_by_its_path() -> None:
    """Private indexes serve signed links (``...whl?X-Amz-Signature=...#sha256=``): the wheel's
    name is the URL path's last segment."""
    url = "https://files.example/p/six-1.17.0-py2.py3-none-any.whl?v=1&sig=${SIG}"
    data = {
        "packages": [
            {"name": "six", "version": "1.17.0", "wheels": [{"url": url, "hashes": {"sha256": "a" * 64}}]}
        ]
    }
    (package,) = from_pylock(data, "linux-64", "3.11", Path("/"))
    assert package.filename == "six-1.17.0-py2.py3-none-any.whl"
