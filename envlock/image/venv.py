"""Python packages as layers: a virtual environment at ``/opt/env`` on the base's interpreter.

Wheels are installed with the ``installer`` library into a staging directory (no
pip, no container, no network), scripts get ``#!/opt/env/bin/python``, and no byte
code is written (a ``.pyc`` would carry the build host's marshal details; Python
writes its own on first import, or run ``compileall --invalidation-mode
unchecked-hash`` in a derived image).  The staging tree becomes a deterministic
layer.  Big packages get a layer each so environments that share them share
bytes; the rest share one layer.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from envlock.errors import CheckFailed
from envlock.image import layer as layermod
from envlock.image.model import LAYER_TAR, Layer
from envlock.lock import Package
from envlock.store import Store, canonical_json

PREFIX = "/opt/env"
LAYER_FORMAT = "envlock-layer/1"
BIG_BYTES = 4 << 20  # wheels this large get a layer of their own (shared between environments)
BIG_NAMES = re.compile(
    r"^(torch|tensorflow.*|jaxlib|jax-cuda\d+-.*|triton|nvidia-.*|cuda-.*|xformers|onnxruntime.*|scipy|pyarrow)$"
)


@dataclass(frozen=True)
class Interpreter:
    path: str  # absolute path in the base image, e.g. /usr/bin/python3.11
    version: str  # "3.11"


def is_big(package: Package, wheel: Path) -> bool:
    return bool(BIG_NAMES.match(package.name)) or wheel.stat().st_size >= BIG_BYTES


def skeleton_entries(interp: Interpreter) -> list[layermod.Entry]:
    """``/opt/env`` itself: pyvenv.cfg and the interpreter links, as ``python -m venv`` makes."""
    home = interp.path.rsplit("/", 1)[0]
    cfg = (
        f"home = {home}\ninclude-system-site-packages = false\n"
        f"version = {interp.version}\nexecutable = {interp.path}\n"
    )
    site = f"opt/env/lib/python{interp.version}/site-packages"
    return [
        layermod.file("opt/env/pyvenv.cfg", cfg.encode()),
        layermod.symlink("opt/env/bin/python", interp.path),
        layermod.symlink("opt/env/bin/python3", "python"),
        layermod.symlink(f"opt/env/bin/python{interp.version}", "python"),
        layermod.symlink("opt/env/lib64", "lib"),
        layermod.directory(site),
    ]


def _scheme(stage: Path, interp: Interpreter, name: str) -> dict[str, str]:
    env = stage / "opt/env"
    site = env / f"lib/python{interp.version}/site-packages"
    return {
        "purelib": str(site),
        "platlib": str(site),
        "headers": str(env / f"include/site/python{interp.version}" / name),
        "scripts": str(env / "bin"),
        "data": str(env),
    }


def install_into(stage: Path, wheels: Sequence[tuple[Package, Path]], interp: Interpreter) -> None:
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    for package, path in wheels:
        if not package.filename.endswith(".whl") or not _is_wheel(path):
            raise CheckFailed(
                f"{package.name} {package.version} is locked as a source distribution ({package.filename})",
                "envlock builds images from wheels only: pin a version that has a wheel for this platform",
            )
        destination = SchemeDictionaryDestination(
            scheme_dict=_scheme(stage, interp, package.name),
            interpreter=f"{PREFIX}/bin/python",
            script_kind="posix",
            bytecode_optimization_levels=(),
        )
        with WheelFile.open(_as_wheel_name(path, package, stage / ".wheels")) as source:
            install(source, destination, {"INSTALLER": b"envlock\n"})


def _is_wheel(path: Path) -> bool:
    import zipfile

    return zipfile.is_zipfile(path)


def _as_wheel_name(path: Path, package: Package, link_dir: Path) -> Path:
    """installer needs the wheel's real file name; store artifacts are named by hash."""
    if path.name.endswith(".whl"):
        return path
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / package.filename
    link.symlink_to(path)
    return link


def layer_key(packages: Sequence[Package], interp: Interpreter) -> str:
    data = {
        "format": LAYER_FORMAT,
        "interpreter": interp.path,
        "python": interp.version,
        "wheels": sorted((p.name, p.sha256) for p in packages),
    }
    return hashlib.sha256(canonical_json(data)).hexdigest()


def build_layer(
    store: Store,
    wheels: Sequence[tuple[Package, Path]],
    interp: Interpreter,
    created_by: str,
) -> Layer:
    """Install ``wheels`` and store the result as one layer; cached by its inputs."""
    key = layer_key([p for p, _ in wheels], interp)
    return cached_layer(store, key, created_by, lambda stage: install_into(stage, wheels, interp))


def cached(store: Store, wheels: Sequence[tuple[Package, Path]], interp: Interpreter) -> Layer | None:
    """The layer of these wheels if the layer cache has it (and its blob), else ``None``."""
    cache = store.root / "layers" / f"{layer_key([p for p, _ in wheels], interp)}.json"
    if not cache.is_file():
        return None
    data = json.loads(cache.read_text())
    if not store.has_blob(data["digest"]):
        return None
    return Layer(data["digest"], data["digest"], data["size"], LAYER_TAR)


def cached_layer(store: Store, key: str, created_by: str, fill: Callable[[Path], None]) -> Layer:
    """A layer made by ``fill(stage)`` writing files under ``stage/opt``, cached by ``key``.

    The stage lives in the store's ``tmp/`` (never trusted, removed after); byte code
    files are left out; the cache entry is written only once the blob is in the store.
    """
    cache = store.root / "layers" / f"{key}.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if store.has_blob(cached["digest"]):
            return Layer(cached["digest"], cached["digest"], cached["size"], LAYER_TAR, created_by)
    stage = Path(tempfile.mkdtemp(prefix="stage-", dir=store.tmp))
    try:
        fill(stage)
        entries = [e for e in layermod.scan(stage / "opt", "opt") if not e.path.endswith(".pyc")]
        layer = store_entries(store, entries, created_by)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    store._write_small(cache, canonical_json({"digest": layer.digest, "size": layer.size}))
    return layer


def store_entries(store: Store, entries: Sequence[layermod.Entry], created_by: str) -> Layer:
    writer = store.writer()
    try:
        layermod.write(entries, writer.stream())
        digest, size = store.publish(writer)
    except BaseException:
        writer.abort()
        raise
    return Layer(digest, digest, size, LAYER_TAR, created_by)
