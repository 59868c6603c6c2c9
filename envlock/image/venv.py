"""Python packages as layers: a virtual environment at ``/opt/env`` on the base's interpreter.

Wheels are installed with the ``installer`` library (no pip, no container, no
network): installer decides where every file goes, scripts get
``#!/opt/env/bin/python``, and no byte code is written here (when a spec asks for
it, ``envlock.image.bytecode`` adds it in layers of its own).  Nothing is unpacked
to disk: each file is kept as a reference to its zip member and decompressed
straight into a deterministic layer tar.  Big packages get a layer each so
environments that share them share bytes; the rest share one layer.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import posixpath
import re
import shutil
import stat
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.records import Hash, RecordEntry, parse_record_file
from installer.scripts import Script
from installer.sources import WheelContentElement, WheelFile
from installer.utils import Scheme

if TYPE_CHECKING:
    from installer.scripts import ScriptSection

from envlock.errors import CheckFailed
from envlock.image import layer as layermod
from envlock.image.extract import boundary, member_name
from envlock.image.model import LAYER_TAR, Layer
from envlock.lockfile import Package
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


def _scheme(interp: Interpreter, name: str) -> dict[str, str]:
    site = f"{PREFIX}/lib/python{interp.version}/site-packages"
    return {
        "purelib": site,
        "platlib": site,
        "headers": f"{PREFIX}/include/site/python{interp.version}/{name}",
        "scripts": f"{PREFIX}/bin",
        "data": PREFIX,
    }


def _check_wheel(package: Package, path: Path) -> None:
    if not package.filename.endswith(".whl"):
        raise CheckFailed(
            f"{package.name} {package.version} is locked as a source distribution ({package.filename})",
            "layers are made from wheels only; envlock builds a locked sdist into a wheel first",
        )


def _check_dist_info(source: WheelFile) -> None:
    """What installer takes for granted (PEP 427, "File contents"): member names with no
    ``..`` and no leading ``/`` (:func:`~envlock.image.extract.member_name`); ``WHEEL``,
    ``METADATA`` with a ``Name`` and a ``Version``, and ``RECORD``, all UTF-8; no RECORD
    row that names an absolute path or one with ``..``.

    Raises:
        CheckFailed: the first of these that fails (the boundary names the wheel).
    """
    for member in source._zipfile.namelist():
        member_name(member)  # no absolute path, no "..", before installer sees any
    for name in ("WHEEL", "METADATA", "RECORD"):
        if name not in source.dist_info_filenames:
            raise CheckFailed(f"{source.dist_info_dir}/{name} is missing")
    from email.parser import HeaderParser

    metadata = HeaderParser().parsestr(source.read_dist_info("METADATA"))
    if not metadata.get("Name") or not metadata.get("Version"):
        raise CheckFailed(f"{source.dist_info_dir}/METADATA has no Name or no Version")
    for row in parse_record_file(source.read_dist_info("RECORD").splitlines()):
        parts = row[0].split("/")
        if row[0].startswith("/") or ".." in parts:
            shown = repr(row[0][:120])
            raise CheckFailed(f"{source.dist_info_dir}/RECORD lists {shown}, a path outside the wheel")


Omit = Mapping[str, frozenset[str]]
"""Package name -> image paths (no leading ``/``) that package must not write: it lost a
file conflict to another package of the image (``envlock.image.conflicts``)."""


def package_entries(package: Package, path: Path, interp: Interpreter) -> list[layermod.Entry]:
    """What installing one wheel into ``/opt/env`` writes, as layer entries; nothing touches the disk.

    ``installer`` decides every placement (schemes, ``.data`` directories, entry-point
    scripts, ``#!`` rewriting, RECORD, INSTALLER).  :class:`_LayerDestination` keeps
    each file it is handed unread as a reference to its zip member, decompressed
    straight into the layer tar later; only what installer itself reads or makes
    (scripts, metadata) is held in memory.
    """
    _check_wheel(package, path)
    destination = _LayerDestination(
        scheme_dict=_scheme(interp, package.name),
        interpreter=f"{PREFIX}/bin/python",
        script_kind="posix",
        bytecode_optimization_levels=(),
        archive=path,
    )
    with wheel_boundary(package), zipfile.ZipFile(path) as archive:
        archive.filename = package.filename  # installer reads the wheel's name from it
        source = _LazyWheel(archive)
        _check_dist_info(source)
        with warnings.catch_warnings():
            # installer skips the .pyc files some wheels ship (numpy: distutils/__pycache__) and
            # says so with a RuntimeWarning per file; envlock installs what pip would
            warnings.filterwarnings("ignore", category=RuntimeWarning, message="Skip installing")
            install(source, destination, {"INSTALLER": b"envlock\n"})
    return destination.entries


def wheel_entries(
    wheels: Sequence[tuple[Package, Path]], interp: Interpreter, omit: Omit | None = None
) -> list[layermod.Entry]:
    """What installing ``wheels`` into ``/opt/env`` writes, as layer entries (see
    :func:`package_entries`), less what ``omit`` takes away from each package.

    Two wheels writing one path with the same content (bytes and exec bit) give one
    entry.  With different content the whole image decides which is kept (``omit``,
    from :func:`envlock.image.conflicts.decide`); a clash left undecided is an error.
    """
    from envlock.image.conflicts import content_key

    entries: dict[str, tuple[layermod.Entry, Package]] = {}
    for package, path in wheels:
        dropped = (omit or {}).get(package.name, frozenset())
        for entry in package_entries(package, path, interp):
            if entry.path in dropped:
                continue
            if entry.path in entries:
                kept, other = entries[entry.path]
                if content_key(kept) == content_key(entry):
                    continue
                both = f"{package.name} {package.version} and {other.name} {other.version}"
                raise CheckFailed(
                    f"{both} both install /{entry.path}, with different content",
                    "the lock holds two packages that overwrite each other; drop one of them from the spec",
                )
            entries[entry.path] = (entry, package)
    return [e for e, _ in entries.values()]


def wheel_boundary(package: Package) -> contextlib.AbstractContextManager[None]:
    """The one place where reading a wheel fails: a non-zip or truncated file, a missing or
    garbage ``WHEEL``/``METADATA``/``RECORD``, a member outside its scheme, all become one
    ``CheckFailed`` (exit 1) naming the package and its file."""
    import configparser

    from installer.exceptions import InstallerError

    label = f"{package.name} {package.version} ({package.filename})"
    return boundary(label, InstallerError, configparser.Error, KeyError)


class _Member(io.RawIOBase):
    """A wheel member that is decompressed only if somebody reads it."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, recorded: str) -> None:
        super().__init__()
        self.name = info.filename
        self.size = info.file_size
        self.crc = info.CRC
        self.recorded = recorded  # its RECORD hash, "sha256=..." (or "")
        self._archive, self._info = archive, info
        self._data: io.BytesIO | None = None

    @property
    def untouched(self) -> bool:
        return self._data is None

    def _content(self) -> io.BytesIO:
        if self._data is None:
            self._data = io.BytesIO(self._archive.read(self._info))
        return self._data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._content().seek(offset, whence)

    def tell(self) -> int:
        return self._content().tell()

    def read(self, size: int = -1) -> bytes:
        return self._content().read(size)

    def readinto(self, buffer: Any) -> int:
        return self._content().readinto(buffer)


class _LazyWheel(WheelFile):
    """installer's wheel source, handing out members that are not decompressed until read."""

    def get_contents(self) -> Iterator[WheelContentElement]:
        records = {r[0]: r for r in parse_record_file(self.read_dist_info("RECORD").splitlines())}
        for info in self._zipfile.infolist():
            if info.filename.endswith("/"):
                continue
            record = records.get(info.filename, (info.filename, "", ""))
            mode = info.external_attr >> 16
            executable = bool(mode and stat.S_ISREG(mode) and mode & 0o111)
            yield record, cast(BinaryIO, _Member(self._zipfile, info, record[1])), executable


@dataclass
class _LayerDestination(SchemeDictionaryDestination):
    """installer's scheme destination, writing layer entries instead of files."""

    archive: Path = Path()
    entries: list[layermod.Entry] = field(default_factory=list)

    def write_to_fs(self, scheme: Scheme, path: str, stream: BinaryIO, is_executable: bool) -> RecordEntry:
        target = self._target(scheme, path)
        if isinstance(stream, _Member) and stream.untouched and stream.recorded.startswith("sha256="):
            # the wheel's content as it is: its RECORD has the hash (the wheel's own
            # sha256 was checked against the lock; zipfile checks the member's CRC)
            self.entries.append(
                layermod.zip_member(target, self.archive, stream.name, stream.size, is_executable, stream.crc)
            )
            return RecordEntry(path, Hash("sha256", stream.recorded[7:]), stream.size)
        data = stream.read()
        self.entries.append(layermod.file(target, data, is_executable))
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        return RecordEntry(path, Hash("sha256", digest), len(data))

    def _target(self, scheme: Scheme, path: str) -> str:
        """installer's check that nothing lands outside its scheme, in string operations
        (``_path_with_destdir`` builds three ``Path`` objects a file, half the time here)."""
        root = self.scheme_dict[scheme]
        target = posixpath.normpath(posixpath.join(root, path))
        if not target.startswith(root + "/"):
            raise CheckFailed(f"a wheel tries to write {path} outside {root}", "the wheel is malformed")
        return target

    def write_script(self, name: str, module: str, attr: str, section: ScriptSection) -> RecordEntry:
        script_name, data = Script(name, module, attr, section).generate(self.interpreter, self.script_kind)
        return self.write_to_fs(Scheme("scripts"), script_name, io.BytesIO(data), is_executable=True)


def layer_key(packages: Sequence[Package], interp: Interpreter, omit: Omit | None = None) -> str:
    """The layer cache key of ``packages`` installed together, less what ``omit`` takes away
    from them (only when it takes something: keys of conflict-free layers stay as they were)."""
    data: dict[str, object] = {
        "format": LAYER_FORMAT,
        "interpreter": interp.path,
        "python": interp.version,
        # a wheel built from source by its content digest, which the lock pins (its file's
        # sha256 is only known once it is built): the key is known from the lock alone
        "wheels": sorted((p.name, p.built or p.sha256) for p in packages),
    }
    dropped = sorted((p.name, path) for p in packages for path in (omit or {}).get(p.name, ()))
    if dropped:
        data["omit"] = dropped
    return hashlib.sha256(canonical_json(data)).hexdigest()


def build_layer(
    store: Store,
    wheels: Sequence[tuple[Package, Path]],
    interp: Interpreter,
    created_by: str,
    omit: Omit | None = None,
) -> Layer:
    """Install ``wheels`` (less ``omit``) and store the result as one layer; cached by its inputs."""
    key = layer_key([p for p, _ in wheels], interp, omit)
    found = cached_by_key(store, key, created_by)
    if found is not None:
        return found
    for package, path in wheels:
        verify_artifact(package, path)
    layer = store_entries(store, wheel_entries(wheels, interp, omit), created_by)
    cache_by_key(store, key, layer)
    return layer


def verify_artifact(package: Package, path: Path) -> None:
    """The wheel is still what the lock says, before a layer is made and cached under its hash.

    Downloads are verified as they are written; this catches a store copy that went bad
    on disk since (0.1 s for torch's 190 MB).  The bad copy is removed, so the next build
    fetches it again.
    """
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != package.sha256:
        if path.name == package.sha256:  # the store's copy, named by its hash
            path.unlink(missing_ok=True)
        raise CheckFailed(
            f"{package.name} {package.version}: {path} is corrupt "
            f"(sha256 {digest.hexdigest()}, the lock says {package.sha256})",
            "run the build again: envlock fetches it anew",
        )


def cached(
    store: Store, wheels: Sequence[tuple[Package, Path]], interp: Interpreter, omit: Omit | None = None
) -> Layer | None:
    """The layer of these wheels if the layer cache has it (and its blob), else ``None``."""
    return cached_by_key(store, layer_key([p for p, _ in wheels], interp, omit), "")


def cached_by_key(store: Store, key: str, created_by: str) -> Layer | None:
    """A layer from the layer cache by its key, if its blob is still in the store and intact.

    A cache file that cannot be read, or names a malformed digest, is a miss: the layer is
    made again and the cache file rewritten.
    """
    from envlock.digest import is_digest

    cache = store.root / "layers" / f"{key}.json"
    try:
        data = json.loads(cache.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not is_digest(data.get("digest")):
        return None
    size = data.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not store.blob_intact(data["digest"]):
        return None
    return Layer(data["digest"], data["digest"], size, LAYER_TAR, created_by)


def cache_by_key(store: Store, key: str, layer: Layer) -> None:
    """Written only once the layer's blob is in the store."""
    cache = store.root / "layers" / f"{key}.json"
    store._write_small(cache, canonical_json({"digest": layer.digest, "size": layer.size}))


def cached_layer(store: Store, key: str, created_by: str, fill: Callable[[Path], None]) -> Layer:
    """A layer made by ``fill(stage)`` writing files under ``stage/opt``, cached by ``key``.

    The stage lives in the store's ``tmp/`` (never trusted, removed after); byte code
    files are left out.
    """
    found = cached_by_key(store, key, created_by)
    if found is not None:
        return found
    stage = Path(tempfile.mkdtemp(prefix="stage-", dir=store.tmp))
    try:
        fill(stage)
        entries = [e for e in layermod.scan(stage / "opt", "opt") if not e.path.endswith(".pyc")]
        layer = store_entries(store, entries, created_by)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    cache_by_key(store, key, layer)
    return layer


def store_entries(store: Store, entries: Sequence[layermod.Entry], created_by: str) -> Layer:
    writer = store.writer()
    try:
        with writer.in_background() as stream:
            layermod.write(entries, stream)
        digest, size = store.publish(writer)
    except BaseException:
        writer.abort()
        raise
    return Layer(digest, digest, size, LAYER_TAR, created_by)
