"""Integration fixtures: everything is built in the session; only tests marked ``live``
reach outside (PyPI, with ``exclude-newer`` pinned)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    PACKAGES,
    Dockerd,
    Index,
    build_wheel,
    serve,
    start_dockerd,
    start_registry,
    write_simple_index,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def private_default_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every envlock the tests run has the session's own default store ($ENVLOCK_HOME), as on
    a clean CI machine: what a developer's ~/.cache/envlock holds never changes a result."""
    home = tmp_path_factory.mktemp("default-store")
    old = os.environ.get("ENVLOCK_HOME")
    os.environ["ENVLOCK_HOME"] = str(home)
    try:
        yield home
    finally:
        if old is None:
            os.environ.pop("ENVLOCK_HOME", None)
        else:
            os.environ["ENVLOCK_HOME"] = old


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


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A real Docker engine on a private socket, for this test session only."""
    root = Path("/tmp") / f"envlock-dockerd-{tmp_path_factory.getbasetemp().name}"
    root.mkdir(parents=True, exist_ok=True)
    proc, info = start_dockerd(root)
    try:
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Debian docker-registry on 127.0.0.1 and a free port; yields HOST:PORT."""
    proc, address = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding debian:bookworm with Python 3.11, bootstrapped once by envlock
    (mmdebstrap), for tests that build a ``base = "debian:bookworm"`` spec as it is."""
    from envlock.image import base as basemod
    from envlock.store import Store

    root = tmp_path_factory.mktemp("base-store")
    basemod.resolve(Store(root), "debian:bookworm", "3.11")
    return root


@pytest.fixture(scope="session")
def base_layout(tmp_path_factory: pytest.TempPathFactory, base_store: Path) -> Path:
    """debian:bookworm with Python 3.11 (from ``base_store``) written as an OCI layout, so
    tests can use ``base = "oci:PATH"`` cheaply."""
    from envlock.image import base as basemod
    from envlock.image.build import load_image
    from envlock.image.oci import write_layout
    from envlock.store import Store

    store = Store(base_store)
    base = basemod.resolve(store, "debian:bookworm", "3.11")  # cached in the store
    layout = tmp_path_factory.mktemp("base-layout")
    write_layout(store, load_image(store, base.manifest), layout, "bookworm")
    return layout
