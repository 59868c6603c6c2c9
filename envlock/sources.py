"""Packages that are not a wheel from an index: sdists, direct URLs, git commits, local paths.

At lock time (:func:`prepare`) each one is built into a wheel, so that a spec whose image can
never be built fails at ``envlock lock``, not after a download at ``envlock build``: the build
requirements are resolved and hashed, the source is fetched and verified, the wheel is built in
a sandbox (:mod:`envlock.sourcebuild`), refused unless it is pure Python, and its content digest
goes into the lock.  At build time (:func:`wheel_for`) the same inputs give the cached wheel, or
the wheel is built again and must have that content digest.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from envlock.errors import CheckFailed, ResolutionError
from envlock.lockfile import Package
from envlock.store import Store

if TYPE_CHECKING:
    from envlock.resolve import Request

BUILD_PLATFORM = "linux-64"  # where the backend runs; a pure-Python wheel is the same for all

Relative = Callable[[list[Package]], list[Package]]


def is_tree(package: Package) -> bool:
    """A git commit or a local directory: a tree of files, not one hashed archive."""
    return package.source == "git" or (package.source == "path" and package.url.endswith("/"))


def _source(store: Store, package: Package, lock_dir: Path, scratch: Path) -> tuple[Path, str]:
    """The package's source on disk and its sha256 (archive bytes, or tree digest).

    Raises:
        CheckFailed: (exit 1) the archive or tree is not what the lock says.
        ServiceUnavailable: (exit 3) its URL or git host cannot be reached.
    """
    from envlock import gitsource
    from envlock.fetch import fetch_one, source_url

    if package.source == "git":
        assert package.commit is not None
        url = package.url.removeprefix("git+")
        checkout = scratch / "git"
        gitsource.checkout(url, package.commit, checkout)
        return checkout, gitsource.tree_digest(checkout)
    if is_tree(package):
        from urllib.parse import unquote, urlparse

        directory = Path(unquote(urlparse(source_url(package, lock_dir)).path))
        if not directory.is_dir():
            raise CheckFailed(f"{package.name}: {directory} is not a directory", "restore it or re-lock")
        return directory, gitsource.tree_digest(directory)
    return fetch_one(store, package, lock_dir).path, package.sha256


def prepare(
    store: Store,
    packages: Sequence[Package],
    request: object,
    lock_dir: Path,
    relative: Relative,
    say: Callable[[str], None],
    memo: dict[tuple[str, str, str, str], Package] | None = None,
) -> list[Package]:
    """``packages`` with every one that needs a build built, and its lock fields filled in
    (``sha256`` of a tree, ``built``, ``build-requires``); wheels pass through unchanged.

    ``request`` is the platform's :class:`envlock.resolve.Request` (its indexes, find-links and
    exclude-newer serve the build requirements too); ``relative`` rewrites local file URLs as
    the lock writes them; ``memo`` keeps what was built for one platform for the next.

    Raises:
        ResolutionError: (exit 2) a build requirement has no wheel, the build fails, or the
            wheel is not pure Python.
        ServiceUnavailable: (exit 3) a URL or git host cannot be reached.
    """
    from envlock.resolve import Request
    from envlock.store import WAITING

    assert isinstance(request, Request)
    memo = {} if memo is None else memo
    with store.using(lambda: say(WAITING)):  # its builds run in tmp/: gc must wait for them
        return _prepare(store, packages, request, lock_dir, relative, say, memo)


def _prepare(
    store: Store,
    packages: Sequence[Package],
    request: Request,
    lock_dir: Path,
    relative: Relative,
    say: Callable[[str], None],
    memo: dict[tuple[str, str, str, str], Package],
) -> list[Package]:
    from envlock import sourcebuild
    from envlock.fetch import fetch_all

    out = []
    for package in packages:
        if not package.needs_build:
            out.append(package)
            continue
        seen = (package.name, package.url, package.sha256, package.commit or "")
        if seen in memo:
            out.append(memo[seen])
            continue
        say(f"Building {package.name} {package.version} from source ({package.source or 'sdist'})")
        with tempfile.TemporaryDirectory(prefix="envlock-src-", dir=store.tmp) as tmp:
            source, sha256 = _source(store, package, lock_dir, Path(tmp))
            package = replace(package, sha256=sha256)
            requires = sourcebuild.build_system_requires(source)
            build_requires: list[Package] = []
            if requires:
                build_requires = _resolve_build(package, requires, request, relative)
            paths = fetch_all(store, build_requires, lock_dir)
            # PEP 517 dynamic build requirements (setuptools' setup_requires): lock them too,
            # since the build runs offline with only the locked wheels
            dynamic = _missing(
                sourcebuild.dynamic_requires(
                    store, package, source, {r: paths[r.sha256] for r in build_requires}, request.python
                ),
                build_requires,
            )
            if dynamic:
                say(f"{package.name} {package.version} also needs {', '.join(dynamic)} to build")
                build_requires = _resolve_build(package, (*requires, *dynamic), request, relative)
                paths = fetch_all(store, build_requires, lock_dir)
            built = sourcebuild.build(
                store, package, source, {r: paths[r.sha256] for r in build_requires}, request.python
            )
        version = package.version or _wheel_version(built.path)
        done = replace(
            package, version=version, built=built.digest, build_requires=tuple(sorted(build_requires))
        )
        memo[seen] = done
        out.append(done)
    return out


def _missing(wanted: Sequence[str], have: Sequence[Package]) -> tuple[str, ...]:
    """The requirements in ``wanted`` whose project is not among ``have`` (bad ones skipped)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    names = {canonicalize_name(p.name) for p in have}
    out = []
    for text in wanted:
        try:
            name = canonicalize_name(Requirement(text).name)
        except InvalidRequirement:
            continue
        if name not in names and text not in out:
            out.append(text)
    return tuple(out)


def _resolve_build(
    package: Package, requires: Sequence[str], request: object, relative: Relative
) -> list[Package]:
    """``requires`` (build requirements) pinned as wheels for the build platform.

    Raises:
        ResolutionError: (exit 2) they cannot be resolved, or one has no wheel.
    """
    from envlock.resolve import Request
    from envlock.resolve.uv import resolve

    assert isinstance(request, Request)
    try:
        pinned = resolve(
            replace(request, requirements=tuple(requires), platform=BUILD_PLATFORM, constraints=())
        ).packages
    except ResolutionError as exc:
        raise ResolutionError(
            f"{package.name} {package.version}: its build requirements "
            f"({', '.join(requires)}) cannot be resolved: {exc.message}",
            "serve them from an index or find-links, or use a wheel of the package",
        ) from None
    sdists = [p for p in pinned if not p.filename.endswith(".whl")]
    if sdists:
        raise ResolutionError(
            f"{package.name} {package.version}: its build requirement {sdists[0].name} "
            f"{sdists[0].version} has no wheel",
            "envlock builds from source only with build requirements that are wheels",
        )
    return relative(pinned)


def _wheel_version(wheel: Path) -> str:
    """The version in a wheel's file name (a local directory's version is known only once built)."""
    from packaging.utils import parse_wheel_filename

    return str(parse_wheel_filename(wheel.name)[1])


def wheel_for(store: Store, package: Package, lock_dir: Path, python: str) -> tuple[Package, Path]:
    """The wheel built from a locked source package, as a plain wheel entry (its ``url`` the
    cached file, ``sha256`` that file's) and its path: cached, or built again and checked
    against the lock.

    Raises:
        CheckFailed: (exit 1) the source or the wheel differs from what the lock recorded.
        ServiceUnavailable: (exit 3) a URL or git host cannot be reached.
    """
    import hashlib

    from envlock import sourcebuild
    from envlock.fetch import fetch_all

    key = sourcebuild.cache_key(package, package.build_requires, python)
    built = sourcebuild.cached(store, key)
    if built is None or built.digest != package.built:
        if built is not None:  # a bad copy: build it again
            shutil.rmtree(built.path.parent, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix="envlock-src-", dir=store.tmp) as tmp:
            source, sha256 = _source(store, package, lock_dir, Path(tmp))
            if sha256 != package.sha256:
                raise CheckFailed(
                    f"{package.name} {package.version}: the source at {package.url} has content "
                    f"{sha256}, the lock says {package.sha256}",
                    "the source changed since it was locked; re-lock only if you trust it",
                )
            paths = fetch_all(store, package.build_requires, lock_dir)
            try:
                built = sourcebuild.build(
                    store, package, source, {r: paths[r.sha256] for r in package.build_requires}, python
                )
            except ResolutionError as exc:
                raise CheckFailed(exc.message, exc.hint) from None
    sourcebuild.check_built(package, built)
    digest = hashlib.sha256(built.path.read_bytes()).hexdigest()
    wheel = replace(
        package,
        url=built.path.as_uri(),
        sha256=digest,
        size=built.path.stat().st_size,
        source=None,
        commit=None,
        built=package.built,  # the layer's key names the wheel by its content (venv.layer_key)
        build_requires=(),
    )
    return wheel, built.path
