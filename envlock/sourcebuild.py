"""Build a pure-Python wheel from source (an sdist, a git checkout, a directory), sandboxed.

The build is ``uv build --wheel`` (uv as the PEP 517 frontend) run inside bubblewrap
(:mod:`envlock.sandbox`): no network, the host's ``/usr`` and the interpreter read-only, only the
build directory writable, a cleared environment with ``SOURCE_DATE_EPOCH`` fixed.  Build
requirements are the locked, hashed wheels, offered through ``--find-links`` with
``--build-constraints ... --require-hashes`` and ``--offline`` (uv's documented way to pin build
dependencies), so nothing else can be installed into the build environment.

The interpreter is a CPython of the *target* minor version found on the host by uv
(``uv python find --system``), not the base image's: the lock is made (and the build decided)
before any base exists, for every platform, and a pure-Python wheel depends on the backend
(pinned by hash) and the Python minor version, not on the libc around it.  Whatever differs
between two machines shows in the wheel's content digest, which the lock records and every
rebuild is checked against.

Built wheels are cached in the store under ``built/KEY/WHEEL``; KEY hashes the source's sha256,
the build requirements' sha256 and the target Python.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tomllib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote

from envlock import sandbox
from envlock.errors import CheckFailed, ResolutionError, ToolMissing
from envlock.lockfile import Package
from envlock.store import Store, canonical_json
from envlock.wheelcontent import content_digest, is_pure

BUILD_FORMAT = "envlock-built/1"
SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01T00:00:00Z, the earliest time a zip member can hold
# PEP 518 "build-system table": without one, tools are to assume setuptools and wheel
DEFAULT_REQUIRES = ("setuptools>=40.8.0", "wheel")
TIMEOUT = 900


@dataclass(frozen=True)
class Built:
    path: Path  # the wheel, in the store
    digest: str  # its content digest (envlock.wheelcontent)


def build_system_requires(source: Path) -> tuple[str, ...]:
    """The ``[build-system] requires`` of the project in ``source`` (an sdist ``.tar.gz``/
    ``.zip`` read in place, or a directory); PEP 518's default when there is no such table.

    Raises:
        ResolutionError: (exit 2) the archive or its pyproject.toml cannot be read.
    """
    text: str | None = None
    try:
        if source.is_dir():
            file = source / "pyproject.toml"
            text = file.read_text("utf-8") if file.is_file() else None
        elif zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                names = [n for n in archive.namelist() if re.fullmatch(r"[^/]+/pyproject\.toml", n)]
                text = archive.read(names[0]).decode("utf-8") if names else None
        else:
            with tarfile.open(source) as tar:
                for member in tar:
                    if member.isfile() and re.fullmatch(r"[^/]+/pyproject\.toml", member.name):
                        stream = tar.extractfile(member)
                        text = stream.read().decode("utf-8") if stream else None
                        break
        data = tomllib.loads(text) if text is not None else {}
    except (
        OSError,
        tarfile.TarError,
        zipfile.BadZipFile,
        UnicodeDecodeError,
        tomllib.TOMLDecodeError,
    ) as exc:
        raise ResolutionError(f"{source.name}: cannot read its pyproject.toml: {exc}") from None
    table = data.get("build-system")
    if not isinstance(table, dict) or "requires" not in table:
        return DEFAULT_REQUIRES
    requires = table["requires"]
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise ResolutionError(f"{source.name}: [build-system] requires is not a list of strings")
    return tuple(requires)


def cache_key(package: Package, build_requires: Sequence[Package], python: str) -> str:
    data = {
        "format": BUILD_FORMAT,
        "source": package.sha256,
        "requires": sorted((r.name, r.sha256) for r in build_requires),
        "python": python,
    }
    return hashlib.sha256(canonical_json(data)).hexdigest()


def cached(store: Store, key: str) -> Built | None:
    """The wheel built for ``key`` (``built/KEY/WHEEL-FILE-NAME``), if the store has it."""
    found = sorted((store.root / "built" / key).glob("*.whl"))
    if len(found) != 1:
        return None
    return Built(found[0], content_digest(found[0]))


@cache
def interpreter(python: str) -> tuple[str, str]:
    """(executable, installation prefix) of a CPython ``python`` (``"3.11"``) on this host.

    Raises:
        ToolMissing: (exit 3) uv finds none.
    """
    from envlock.resolve import isolated_env
    from envlock.resolve.uv import binary

    find = [binary(), "python", "find", "--system", "--no-project", "--no-config", "--no-python-downloads"]
    proc = subprocess.run([*find, python], capture_output=True, text=True, env=isolated_env(), check=False)
    found = proc.stdout.strip()
    if proc.returncode != 0 or not found:
        raise ToolMissing(
            f"building from source needs a CPython {python} on this machine, and uv finds none",
            f"install one, e.g. apt-get install python{python} or uv python install {python}",
        )
    probe = "import sys; print(sys.executable); print(sys.base_prefix)"
    out = subprocess.run([found, "-I", "-c", probe], capture_output=True, text=True, check=True).stdout
    executable, prefix = out.splitlines()[:2]
    return os.path.realpath(executable), os.path.realpath(prefix)


def _box(work: Path, python: str) -> sandbox.Sandbox:
    from envlock.resolve.uv import binary

    mounts: list[sandbox.Mount] = []
    links: list[tuple[str, str]] = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache"):
        path = Path(top)
        if path.is_symlink():
            links.append((str(path.readlink()), top))
        elif path.exists():
            mounts.append(sandbox.Mount(path, top))
    _, prefix = interpreter(python)
    if not prefix.startswith("/usr/"):
        mounts.append(sandbox.Mount(Path(prefix), prefix))
    mounts.append(sandbox.Mount(Path(binary()), "/opt/envlock/uv"))
    mounts.append(sandbox.Mount(work, "/build", writable=True))
    env = {
        "HOME": "/build/home",
        "UV_CACHE_DIR": "/build/cache",
        "TMPDIR": "/tmp",
        "PATH": "/usr/bin:/bin",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "PYTHONHASHSEED": "0",
        "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
    }
    return sandbox.Sandbox(mounts=mounts, env=env, cwd="/build", symlinks=links)


# Runs inside the sandbox with the target CPython: unpack the source (an untrusted archive, so
# only inside the box), find its PEP 517 backend (PEP 517 "build-backend", "backend-path"; the
# legacy setuptools backend without one) and write what get_requires_for_build_wheel returns.
_HOOK = r"""
import importlib, json, os, sys, tarfile, zipfile
src, out = sys.argv[1], sys.argv[2]
if os.path.isfile(src):
    dest = "/build/unpacked"
    if zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as archive:
            archive.extractall(dest)
    else:
        with tarfile.open(src) as archive:
            archive.extractall(dest, filter="data")
    (top,) = os.listdir(dest)
    src = os.path.join(dest, top)
os.chdir(src)
backend, paths = "setuptools.build_meta:__legacy__", []
if os.path.exists("pyproject.toml"):
    import tomllib
    with open("pyproject.toml", "rb") as fh:
        table = tomllib.load(fh).get("build-system", {})
    backend, paths = table.get("build-backend", backend), table.get("backend-path", [])
sys.path[:0] = [os.path.abspath(p) for p in paths] + ["/build/env"]
module, _, attr = backend.partition(":")
hooks = importlib.import_module(module)
for part in filter(None, attr.split(".")):
    hooks = getattr(hooks, part)
hook = getattr(hooks, "get_requires_for_build_wheel", None)
with open(out, "w") as fh:
    json.dump(list(hook({})) if hook else [], fh)
"""


def _stage(
    work: Path, package: Package, source: Path, build_requires: Mapping[Package, Path], listing: str
) -> str:
    """Lay out a sandbox's build directory: ``work/{reqs,out,cache,home}``, the source (a tree
    under ``src/`` or the sdist file), the build requirement wheels under ``reqs/`` and
    ``listing`` naming them with their hashes.  Returns the source's path inside the sandbox."""
    for sub in ("reqs", "out", "cache", "home"):
        (work / sub).mkdir(parents=True)
    if source.is_dir():
        shutil.copytree(source, work / "src", symlinks=True)
        target = "/build/src"
    else:
        name = unquote(package.filename)
        shutil.copyfile(source, work / name)
        target = f"/build/{name}"
    lines = []
    for req, path in sorted(build_requires.items()):
        shutil.copyfile(path, work / "reqs" / unquote(req.filename))
        lines.append(f"{req.name}=={req.version} --hash=sha256:{req.sha256}\n")
    (work / listing).write_text("".join(lines), "utf-8")
    return target


def dynamic_requires(
    store: Store,
    package: Package,
    source: Path,
    build_requires: Mapping[Package, Path],
    python: str,
) -> tuple[str, ...]:
    """What the source's PEP 517 backend asks for beyond ``[build-system] requires``: its
    ``get_requires_for_build_wheel`` hook (PEP 517, "get_requires_for_build_wheel"; setuptools
    answers with ``setup_requires``, e.g. ``setuptools_scm``), run in the build sandbox with
    the locked static ``build_requires`` (wheel paths, verified) installed.

    Returns () when the hook cannot run (no backend, a failing ``setup.py``): the build itself
    then reports the problem.

    Raises:
        ToolMissing: (exit 3) bubblewrap or a CPython ``python`` is missing.
    """
    import json

    work = store.tmp / f"requires-{package.sha256[:16]}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        target = _stage(work, package, source, build_requires, "requirements.txt")
        executable, _ = interpreter(python)
        box = _box(work, python)
        install = [
            "/opt/envlock/uv", "pip", "install", "--target", "/build/env", "--python", executable,
            "--no-config", "--offline", "--no-index", "--find-links", "/build/reqs",
            "--require-hashes", "-r", "/build/requirements.txt", "--quiet",
        ]  # fmt: skip
        hook = [executable, "-I", "-c", _HOOK, target, "/build/out/requires.json"]
        try:
            if build_requires and sandbox.run(box, install, timeout=TIMEOUT).returncode != 0:
                return ()
            if sandbox.run(box, hook, timeout=TIMEOUT).returncode != 0:
                return ()
        except subprocess.TimeoutExpired:
            return ()
        try:
            found = json.loads((work / "out" / "requires.json").read_text("utf-8"))
        except (OSError, ValueError):
            return ()
        if not isinstance(found, list) or not all(isinstance(r, str) for r in found):
            return ()
        return tuple(found)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build(
    store: Store,
    package: Package,
    source: Path,
    build_requires: Mapping[Package, Path],
    python: str,
) -> Built:
    """Build ``package`` from ``source`` (sdist archive or directory) with the locked
    ``build_requires`` (wheel paths, already verified against their sha256); cached.

    Raises:
        ResolutionError: (exit 2) the build fails, or gives a wheel of another project or one
            that is not pure Python (compiled extensions are not built by envlock).
        ToolMissing: (exit 3) bubblewrap or a CPython ``python`` is missing.
    """
    key = cache_key(package, list(build_requires), python)
    found = cached(store, key)
    if found is not None:
        return found
    work = store.tmp / f"build-{key[:16]}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        target = _stage(work, package, source, build_requires, "constraints.txt")
        executable, _ = interpreter(python)
        argv = [
            "/bin/sh", "-c", 'umask 022 && exec "$@"', "sh",
            "/opt/envlock/uv", "build", "--wheel", target, "--out-dir", "/build/out",
            "--python", executable, "--no-config", "--offline", "--no-index", "--find-links", "/build/reqs",
            "--build-constraints", "/build/constraints.txt", "--require-hashes", "--quiet",
        ]  # fmt: skip
        try:
            proc = sandbox.run(_box(work, python), argv, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ResolutionError(
                f"{package.name} {package.version}: the build ran past {TIMEOUT}s"
            ) from None
        wheels = sorted((work / "out").glob("*.whl"))
        if proc.returncode != 0 or len(wheels) != 1:
            log = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            tail = " | ".join(ln.strip() for ln in log[-6:]) or f"exit {proc.returncode}"
            raise ResolutionError(
                f"{package.name} {package.version} cannot be built from source: {tail}",
                "its build may need requirements it does not declare, or the network; "
                "use a wheel (another index, find-links with a prebuilt wheel, or a direct-URL wheel)",
            )
        return _publish(store, key, package, wheels[0])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _publish(store: Store, key: str, package: Package, wheel: Path) -> Built:
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

    try:
        name, _, _, _ = parse_wheel_filename(wheel.name)
    except InvalidWheelFilename:
        raise ResolutionError(
            f"{package.name}: its build made {wheel.name}, not a valid wheel name"
        ) from None
    if canonicalize_name(name) != canonicalize_name(package.name):
        raise ResolutionError(f"{package.name}: its build made a wheel of another project ({wheel.name})")
    if not is_pure(wheel):
        raise ResolutionError(
            f"{package.name} {package.version} builds a platform wheel ({wheel.name}): it has compiled "
            "extensions, and envlock builds only pure-Python wheels from source",
            "use a prebuilt wheel: another index, find-links with a wheel you built, "
            "or a direct-URL wheel (name @ https://.../NAME-VERSION-TAG.whl)",
        )
    writer = store.writer()
    try:
        with wheel.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                writer.write(chunk)
        target = store.root / "built" / key / wheel.name
        writer.commit(target)
    except BaseException:
        writer.abort()
        raise
    return Built(target, content_digest(target))


def check_built(package: Package, built: Built) -> None:
    """The rebuilt wheel has the content the lock recorded.

    Raises:
        CheckFailed: (exit 1) it differs (names the package and both digests).
    """
    if built.digest != package.built:
        raise CheckFailed(
            f"{package.name} {package.version}: the wheel built from source differs from the locked one "
            f"(content {built.digest}, the lock says {package.built})",
            "its build is not reproducible; pin a wheel instead, or re-lock if you trust the new build",
        )
