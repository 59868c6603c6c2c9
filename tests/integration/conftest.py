"""Integration fixtures: everything is built in the session; only tests marked ``live``
reach outside (PyPI, with ``exclude-newer`` pinned)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import PACKAGES, Index, build_wheel, serve, write_simple_index


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("wheelhouse")
    for name, version, requires, tag in PACKAGES:
        build_wheel(dest, name, version, requires, tag)
    return dest


@pytest.fixture(scope="session")
def simple_index(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("index")
    write_simple_index(root, wheelhouse)
    yield from serve(root, None)


@pytest.fixture(scope="session")
def private_index(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("private-index")
    write_simple_index(root, wheelhouse)
    yield from serve(root, ("ci-user", "s3cret-t0ken"))
