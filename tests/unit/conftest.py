"""Unit fixtures: specs, locks and exports built with envlock's own API, no resolver.

Packages get fake but well-formed sha256 values (the sha256 of a label), so a lock
built here passes every check that a resolved lock passes.
"""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from envlock import export
from envlock import lockfile as lockmod
from envlock.lockfile import Lock, Package, PlatformLock
from envlock.spec import load

SPEC_TEXT = textwrap.dedent(
    """\
    # what the vision environment should contain
    python = "3.11"
    platforms = ["linux-64"]

    [pip]
    packages = ["numpy<2", "pandas>=2"]
    exclude-newer = "2026-11-01"
    """
)

META = {"envlock": "0.1.0", "resolver": "uv 0.0.0", "resolved-at": "2026-11-01T00:00:00Z"}


def fake_sha256(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def make_package(
    name: str,
    version: str,
    *,
    url: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
) -> Package:
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    return Package(
        manager="pip",
        name=name,
        version=version,
        url=url if url is not None else f"https://files.example.org/{filename}",
        sha256=sha256 if sha256 is not None else fake_sha256(f"{name}-{version}"),
        size=size,
    )


def make_platform(
    name: str = "linux-64",
    packages: Iterable[Package] = (),
    *,
    python: str = "3.11",
    pip_options: tuple[str, ...] = (),
) -> PlatformLock:
    return PlatformLock(name=name, python=python, pip_options=pip_options, packages=tuple(packages))


DEFAULT_PACKAGES = (("numpy", "1.26.4"), ("pandas", "2.2.3"), ("python-dateutil", "2.9.0"))


@dataclass(frozen=True)
class Project:
    spec_path: Path
    lock_path: Path
    lock: Lock
    exports: dict[Path, str]

    @property
    def requirements_path(self) -> Path:
        return export.requirements_path(self.spec_path, self.lock.platforms[0].name)

    @property
    def pylock_path(self) -> Path:
        return export.pylock_path(self.spec_path)


def write_project(
    directory: Path,
    *,
    name: str = "vision",
    spec_text: str = SPEC_TEXT,
    packages: Iterable[tuple[str, str]] = DEFAULT_PACKAGES,
) -> Project:
    """Write ``NAME.toml`` and the lock and exports ``envlock lock`` would write for it."""
    directory.mkdir(parents=True, exist_ok=True)
    spec_path = directory / f"{name}.toml"
    spec_path.write_text(spec_text, encoding="utf-8")
    spec = load(spec_path)
    platforms = [
        make_platform(plat, [make_package(n, v) for n, v in packages], python=spec.python)
        for plat in spec.platforms
    ]
    lock = lockmod.make(spec.spec_hash, platforms, META)
    lock_path = spec_path.with_suffix(".lock")
    exports = export.render_all(lock, spec_path)
    lockmod.write_files({lock_path: lockmod.render(lock), **exports})
    return Project(spec_path, lock_path, lock, exports)


@pytest.fixture
def package() -> Callable[..., Package]:
    return make_package


@pytest.fixture
def platform_lock() -> Callable[..., PlatformLock]:
    return make_platform


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A consistent spec + lock + exports in ``tmp_path/specs``."""
    return write_project(tmp_path / "specs")


@pytest.fixture
def new_project() -> Callable[..., Project]:
    return write_project
