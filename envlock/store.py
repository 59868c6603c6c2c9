"""The content-addressed local store at ``$ENVLOCK_HOME``; also a valid OCI image layout.

Layout::

    oci-layout, index.json        OCI image layout (skopeo, umoci read it)
    blobs/sha256/HEX              layers (uncompressed tar), configs, manifests
    artifacts/sha256/HEX          downloaded wheels and packages, by their sha256
    envs/HEX-PLATFORM.json        env ID -> image (manifest digest, image ID, tag)
    bases/KEY.json                base images built from inputs (debian:SUITE) -> manifest
    verified/sha256/HEX           "size inode mtime_ns" of a blob when it was last hashed
    tmp/                          staging; anything here is never trusted

Every file is written to ``tmp/`` first, hashed while written, and renamed into
place only when complete, so a killed build leaves nothing a later build trusts.
Blobs are immutable and named by content, so two builds writing the same blob at
once both succeed with one result.  ``index.json`` and the env index are updated
under an exclusive file lock.

A blob is trusted only as far as it was checked: publishing one records the size, inode
and modification time it had when its bytes were hashed; reuse and export re-check those
with one ``stat`` and re-hash the blob in full when they differ (``fsck`` re-hashes
everything, which also catches rot that leaves them alone).  A newly written blob always
replaces the stored one, so a build heals a damaged copy.  Builds hold the store shared
(``using``) and ``gc`` holds it exclusively, so gc never removes what a build is writing.
Every digest names a path only after :func:`envlock.digest.parse_digest` accepted it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar, cast

from envlock.digest import is_digest, parse_digest, parse_hex
from envlock.errors import EXIT_BAD_INPUT, CheckFailed, StoreError

CHUNK = 1 << 20
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def default_home() -> Path:
    if os.environ.get("ENVLOCK_HOME"):
        return Path(os.environ["ENVLOCK_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "envlock"


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hex(digest: object, source: str = "a digest for the store") -> str:
    return parse_digest(digest, source=source)[7:]


_UNUSABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST, errno.EISDIR)


def store_error(exc: OSError, what: str) -> StoreError:
    """One ``error:`` line for a file system failure in the store, naming the path.

    Read-only, no permission or not a directory is exit 2 (choose another store); a full
    disk or an I/O error exit 1.  Sources: errno(3), open(2), rename(2).
    """
    where = exc.filename or ""
    reason = exc.strerror or type(exc).__name__
    message = f"{what}: {reason}" + (f": {where}" if where else "")
    if exc.errno in _UNUSABLE:
        error = StoreError(
            message,
            "the store must be a writable directory: set --store or ENVLOCK_HOME to one",
        )
        error.exit_code = EXIT_BAD_INPUT
        return error
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StoreError(
            message,
            "free space on the store's disk (envlock store gc removes unused images); "
            "nothing half-written was kept",
        )
    return StoreError(message, "check the disk; `envlock store fsck` re-checks what the store holds")


@contextlib.contextmanager
def _io(what: str) -> Iterator[None]:
    """File system failures inside become :class:`StoreError` (one error line with the path)."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, (BrokenPipeError, ConnectionError)):
            raise
        raise store_error(exc, what) from None


def _stamp(st: os.stat_result) -> str:
    return f"{st.st_size} {st.st_ino} {st.st_mtime_ns}\n"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's content (1 MiB reads)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class EnvEntry:
    env_id: str
    manifest: str  # digest of the OCI manifest in blobs/
    image_id: str  # digest of the config
    name: str  # spec name, for humans
    platform: str = "linux-64"

    @classmethod
    def parse(cls, data: object, source: str) -> EnvEntry:
        """An env index file's JSON: three digests and two strings.

        Raises:
            CheckFailed: (exit 1) for anything else, naming ``source``.
        """
        if not isinstance(data, dict):
            raise CheckFailed(f"{source} is not a JSON object")
        name, platform = data.get("name"), data.get("platform", "linux-64")
        if not isinstance(name, str) or not isinstance(platform, str) or "/" in platform:
            raise CheckFailed(f"{source}: 'name' and 'platform' must be strings")
        return cls(
            parse_digest(data.get("env_id"), source=f"{source}: env_id"),
            parse_digest(data.get("manifest"), source=f"{source}: manifest"),
            parse_digest(data.get("image_id"), source=f"{source}: image_id"),
            name,
            platform,
        )


class Writer:
    """A file being written into the store: hashed as written, published by ``commit``."""

    def __init__(self, store: Store) -> None:
        with _io(f"cannot write to the store {store.root}"):
            store.tmp.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=store.tmp, prefix="w-")
        self.path = Path(name)
        self.file: IO[bytes] = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.size = 0
        self._store = store

    def write(self, data: bytes) -> int:
        try:
            self.file.write(data)
        except OSError as exc:
            raise store_error(exc, f"cannot write to the store {self._store.root}") from None
        self.hash.update(data)
        self.size += len(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()

    def stream(self) -> IO[bytes]:
        """This writer as a binary file object, for tarfile and gzip."""
        return cast(IO[bytes], self)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        with _io(f"cannot write to the store {self._store.root}"):
            self.file.flush()

    def commit(self, target: Path, expected: str | None = None) -> str:
        """Flush, check ``expected`` (a ``sha256:`` digest) and rename into ``target``.

        Raises:
            CheckFailed: the content's digest is not ``expected`` (nothing is published).
            StoreError: the file system failed (nothing is published).
        """
        try:
            with _io(f"cannot write to the store {self._store.root}"):
                self.file.flush()
                os.fsync(self.file.fileno())
                self.file.close()
                if expected is not None and expected != self.digest:
                    raise CheckFailed(f"content hash mismatch: expected {expected}, got {self.digest}")
                target.parent.mkdir(parents=True, exist_ok=True)
                self.path.chmod(0o444)
                self.path.replace(target)
        except BaseException:
            self.abort()
            raise
        return self.digest

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
        self.path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def in_background(self) -> Iterator[IO[bytes]]:
        """A stream whose bytes this writer writes and hashes on a second thread.

        For a producer that is busy itself (decompressing wheels into a layer): file
        writes and sha256 release the GIL, so hashing runs beside it on another core.
        Small writes are gathered into batches.  On leaving, everything written has
        reached this writer (or the first error of the second thread is raised).
        """
        pipe = _Pipe(self)
        try:
            yield cast(IO[bytes], pipe)
        except BaseException:
            pipe.close(quiet=True)  # the producer's error is the one to report
            raise
        pipe.close()


class _Pipe:
    BATCH = 256 << 10

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._pending = bytearray()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="envlock-writer", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> int:
        if len(data) >= self.BATCH:
            self._flush()
            self._put(bytes(data))
        else:
            self._pending += data
            if len(self._pending) >= self.BATCH:
                self._flush()
        return len(data)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._put(bytes(self._pending))
            self._pending.clear()

    def _put(self, item: bytes | None) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write(item)
                except BaseException as exc:  # handed to the producer at its next write
                    self._error = exc

    def close(self, quiet: bool = False) -> None:
        try:
            if not quiet:
                self._flush()
        finally:
            self._queue.put(None)
            self._thread.join()
        if self._error is not None and not quiet:
            raise self._error


class Store:
    """The store at ``root`` (default: :func:`default_home`).

    Raises:
        StoreError: when ``root`` cannot be made a store (a file, read-only and new, ...).
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_home()).absolute()
        self.blobs = self.root / "blobs" / "sha256"
        self.artifacts = self.root / "artifacts" / "sha256"
        self.envs = self.root / "envs"
        self.bases = self.root / "bases"
        self.verified = self.root / "verified" / "sha256"
        self.tmp = self.root / "tmp"
        self._guard = threading.Lock()
        self._session: tuple[IO[bytes] | None, int, int] | None = None  # (file, mode, depth)
        with _io(f"cannot use {self.root} as the store"):
            if self.root.exists() and not self.root.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(self.root))
            self._init()

    def __getstate__(self) -> dict[str, Any]:
        """For worker processes: the paths; a worker works under its parent's session."""
        state = dict(self.__dict__)
        state["_guard"], state["_session"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._guard = threading.Lock()

    def _init(self) -> None:
        for d in (self.blobs, self.artifacts, self.envs, self.bases, self.tmp):
            d.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._write_small(layout, canonical_json({"imageLayoutVersion": "1.0.0"}))
        if not (self.root / "index.json").exists():
            with self.locked():
                if not (self.root / "index.json").exists():
                    self._write_index([])

    # -- low level -------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """A short exclusive lock for updating ``index.json`` and the env index.

        Taken inside :meth:`using` (the session lock first, then this one, in every process,
        ``gc`` included), so the two locks are never waited for in opposite orders."""
        with self.using(), _io(f"cannot lock the store {self.root}"), (self.root / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def using(self, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the store shared while building, pulling or exporting: ``gc`` waits for it.

        Re-entrant within this object; ``waiting`` is called once if ``gc`` holds the store
        now (the call then blocks until it is done).  A store on a read-only file system
        cannot be collected by anybody, so there it is used without the lock.
        """
        with self._held(fcntl.LOCK_SH, waiting):
            yield

    @contextlib.contextmanager
    def exclusive(self, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the store alone (``gc``): waits for every build, pull and export to finish."""
        with self._held(fcntl.LOCK_EX, waiting):
            yield

    @contextlib.contextmanager
    def _held(self, mode: int, waiting: Callable[[], None] | None) -> Iterator[None]:
        with self._guard:
            if self._session is not None:
                fh, held, depth = self._session
                if mode == fcntl.LOCK_EX and held != fcntl.LOCK_EX:
                    raise RuntimeError("the store is held shared; it cannot be made exclusive")
                self._session = (fh, held, depth + 1)
            else:
                fh = self._open_session_lock()
                if fh is not None:
                    try:
                        fcntl.flock(fh, mode | fcntl.LOCK_NB)
                    except BlockingIOError:
                        if waiting is not None:
                            waiting()
                        fcntl.flock(fh, mode)
                self._session = (fh, mode, 1)
        try:
            yield
        finally:
            with self._guard:
                assert self._session is not None
                fh, held, depth = self._session
                if depth > 1:
                    self._session = (fh, held, depth - 1)
                else:
                    self._session = None
                    if fh is not None:
                        fh.close()  # releases the flock

    def _open_session_lock(self) -> IO[bytes] | None:
        path = self.root / ".session.lock"
        try:
            return path.open("ab")
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise store_error(exc, f"cannot lock the store {self.root}") from None
        try:
            return path.open("rb")
        except OSError:
            return None  # read-only and never locked: nobody can gc it

    def _write_small(self, path: Path, data: bytes) -> None:
        # held shared, like every user of tmp/: gc, holding the store alone, removes what
        # it finds there as leftovers of killed processes
        with self.using(), _io(f"cannot write to the store {self.root}"):
            self.tmp.mkdir(parents=True, exist_ok=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=self.tmp, prefix="s-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                Path(name).chmod(0o644)
                Path(name).replace(path)
            except BaseException:
                Path(name).unlink(missing_ok=True)
                raise

    def writer(self) -> Writer:
        return Writer(self)

    # -- blobs -------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        """Where blob ``digest`` lives.

        Raises:
            CheckFailed: ``digest`` is not ``sha256:`` + 64 lower-case hex characters.
        """
        return self.blobs / _hex(digest, "blob digest")

    def has_blob(self, digest: str) -> bool:
        """The blob's file exists (not that its content is right: see :meth:`blob_intact`)."""
        return self.blob_path(digest).is_file()

    def blob_intact(self, digest: str) -> bool:
        """The blob exists and holds the bytes its name promises.

        Cheap when the blob's size, inode and modification time are those recorded when it
        was last hashed; otherwise it is hashed again (and the stamp renewed if it is good).
        """
        path = self.blob_path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise store_error(exc, f"cannot read the store {self.root}") from None
        stamp = self.verified / path.name
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if stamp.read_text() == _stamp(st):
                return True
        with _io(f"cannot read the store {self.root}"):
            good = file_sha256(path) == path.name
        if good:
            self._stamp(path, st)
        return good

    def check_blobs(self, digests: Collection[str]) -> None:
        """Every blob present and intact, before it is shipped somewhere.

        Raises:
            CheckFailed: (exit 1) naming the first missing or corrupt blob.
        """
        for digest in digests:
            if not self.has_blob(digest):
                raise CheckFailed(
                    f"blob {digest} is not in the store {self.root}",
                    "run `envlock store fsck`; building the image again restores it",
                )
            if not self.blob_intact(digest):
                raise CheckFailed(
                    f"blob {digest} in the store {self.root} is corrupt (its content has another sha256)",
                    "run `envlock store fsck`; building the image again rewrites the blob",
                )

    def _stamp(self, path: Path, st: os.stat_result | None = None) -> None:
        """Record that ``path`` was hashed with this size, inode and mtime (best effort:
        a stamp that is lost or torn only costs a re-hash)."""
        with contextlib.suppress(OSError):
            st = st or path.stat()
            self.verified.mkdir(parents=True, exist_ok=True)
            (self.verified / path.name).write_text(_stamp(st))

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.blob_intact(digest):
            w = self.writer()
            try:
                w.write(data)
                w.commit(self.blob_path(digest))
            except BaseException:
                w.abort()
                raise
            self._stamp(self.blob_path(digest))
        return digest

    def publish(self, writer: Writer) -> tuple[str, int]:
        """Make a finished writer's content a blob.

        It always replaces a stored blob of that name: its bytes were hashed as they were
        written, so a damaged stored copy is healed by any build that makes it again.
        """
        digest, size = writer.digest, writer.size
        path = self.blob_path(digest)
        writer.commit(path)
        self._stamp(path)
        return digest, size

    def put_blob_stream(self, stream: IO[bytes], expected: str | None = None) -> tuple[str, int]:
        w = self.writer()
        try:
            while chunk := stream.read(CHUNK):
                w.write(chunk)
            if expected is not None and w.digest != expected:
                raise CheckFailed(f"blob hash mismatch: expected {expected}, got {w.digest}")
            return self.publish(w)
        except BaseException:
            w.abort()
            raise

    def read_blob(self, digest: str) -> bytes:
        """A blob's bytes, checked against its digest (blobs read whole are small: JSON).

        Raises:
            CheckFailed: the blob is missing or corrupt.
        """
        path = self.blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise CheckFailed(
                f"blob {digest} is not in the store {self.root}",
                "run `envlock store fsck`; building the image again restores it",
            ) from None
        except OSError as exc:
            raise store_error(exc, f"cannot read the store {self.root}") from None
        if hashlib.sha256(data).hexdigest() != path.name:
            raise CheckFailed(
                f"blob {digest} in the store {self.root} is corrupt (its content has another sha256)",
                "run `envlock store fsck`; building the image again rewrites the blob",
            )
        return data

    def read_json(self, digest: str) -> Any:
        from envlock.image.manifest import load_json

        return load_json(self.read_blob(digest), f"blob {digest} in the store")

    def read_manifest(self, digest: str) -> Any:
        """A stored image manifest, parsed (``envlock.image.manifest.Manifest``).

        Raises:
            CheckFailed: missing, corrupt, or not a well-formed image manifest.
        """
        from envlock.image.manifest import parse_manifest

        return parse_manifest(self.read_blob(digest), f"manifest {digest[:19]} in the store")

    # -- artifacts ---------------------------------------------------------------------
    def artifact_path(self, sha256: str) -> Path:
        """Where the artifact with this hex sha256 lives.

        Raises:
            CheckFailed: ``sha256`` is not 64 lower-case hex characters.
        """
        return self.artifacts / parse_hex(sha256, source="artifact sha256")

    def has_artifact(self, sha256: str) -> bool:
        return self.artifact_path(sha256).is_file()

    # -- index -------------------------------------------------------------------------
    def _read_index(self) -> list[dict[str, Any]]:
        """``index.json``'s manifests, each with a valid digest.

        Raises:
            CheckFailed: the file is not an OCI index (naming it, with a way out).
        """
        from envlock.image.manifest import descriptor, load_json

        path = self.root / "index.json"
        hint = f"move {path} away: envlock writes a new one, and each build tags its image again"
        try:
            with _io(f"cannot read the store {self.root}"):
                data = load_json(path.read_bytes(), str(path))
            if not isinstance(data, dict) or not isinstance(data.get("manifests", []), list):
                raise CheckFailed(f"{path} is not an OCI image index")
            manifests: list[dict[str, Any]] = data.get("manifests", [])
            for i, m in enumerate(manifests):
                descriptor(m, f"{path}: manifests[{i}]")
        except CheckFailed as exc:
            raise CheckFailed(exc.message, hint) from None
        return manifests

    def _write_index(self, manifests: list[dict[str, Any]]) -> None:
        ordered = sorted(
            manifests,
            key=lambda m: (
                m.get("annotations", {}).get("org.opencontainers.image.ref.name", ""),
                m["digest"],
            ),
        )
        data = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": ordered}
        self._write_small(
            self.root / "index.json", json.dumps(data, indent=2, sort_keys=True).encode() + b"\n"
        )

    def tag(
        self, ref: str, manifest_digest: str, size: int, annotations: dict[str, str] | None = None
    ) -> None:
        """Point the OCI ref name ``ref`` at a manifest (replacing an older one of that name)."""
        manifest_digest = parse_digest(manifest_digest, source=f"the manifest tagged {ref}")
        with self.locked():
            manifests = [
                m
                for m in self._read_index()
                if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != ref
            ]
            manifests.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": manifest_digest,
                    "size": size,
                    "annotations": {
                        "org.opencontainers.image.ref.name": ref,
                        **(annotations or {}),
                    },
                }
            )
            self._write_index(manifests)

    def refs(self) -> dict[str, str]:
        return {
            m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
            for m in self._read_index()
            if "org.opencontainers.image.ref.name" in (m.get("annotations") or {})
        }

    # -- env index ---------------------------------------------------------------------
    def record_env(self, entry: EnvEntry) -> None:
        data = canonical_json(entry.__dict__)
        path = self._env_path(entry.env_id, entry.platform)
        with self.locked():
            self._write_small(path, data)

    def _env_path(self, env_id: str, platform: str) -> Path:
        if "/" in platform or platform in ("", ".", ".."):
            raise CheckFailed(f"{platform!r} is not a platform name")
        return self.envs / f"{_hex(env_id, 'env ID')}-{platform}.json"

    def _load_env(self, path: Path) -> EnvEntry:
        from envlock.image.manifest import load_json

        with _io(f"cannot read the store {self.root}"):
            raw = path.read_bytes()
        return EnvEntry.parse(load_json(raw, f"env index file {path}"), f"env index file {path}")

    def find_env(self, env_id: str, platform: str = "linux-64") -> EnvEntry | None:
        """The stored image of an env ID, if every blob of it is present and intact.

        An unreadable env index file, a damaged manifest or a missing or corrupt blob all
        mean "not in the store": the image is built (or pulled) again, which heals it.
        """
        path = self._env_path(env_id, platform)
        if not path.is_file():
            return None
        try:
            entry = self._load_env(path)
        except CheckFailed:
            return None
        return entry if self.image_intact(entry.manifest) else None

    def image_intact(self, manifest_digest: str) -> bool:
        """The manifest and every blob it references are present and intact (cheap: stamps)."""
        try:
            manifest = self.read_manifest(manifest_digest)
        except CheckFailed:
            return False
        return all(self.blob_intact(d) for d in manifest.blobs)

    def list_envs(self) -> list[EnvEntry]:
        """Every readable env index entry (unreadable ones are ``fsck``'s to report)."""
        out = []
        for path in sorted(self.envs.glob("*.json")):
            with contextlib.suppress(CheckFailed, StoreError):
                out.append(self._load_env(path))
        return out

    def forget_env(self, env_id: str, platform: str = "linux-64") -> None:
        with self.locked():
            self._env_path(env_id, platform).unlink(missing_ok=True)

    # -- maintenance -------------------------------------------------------------------
    def manifest_closure(self, manifest_digest: str) -> set[str]:
        """The manifest and every blob it references (only the manifest when it is unreadable)."""
        found = {manifest_digest}
        with contextlib.suppress(CheckFailed):
            found.update(self.read_manifest(manifest_digest).blobs)
        return found

    def fsck(self) -> list[str]:
        """Re-hash every blob and artifact and read every index file; one line per problem.

        Nothing is changed.  A file that cannot be parsed (``index.json``, an env index file)
        is a problem reported here, never an exception.
        """
        problems = []
        for directory, kind in ((self.blobs, "blob"), (self.artifacts, "artifact")):
            with _io(f"cannot read the store {self.root}"):
                for path in sorted(directory.iterdir()):
                    if not is_digest("sha256:" + path.name) or not path.is_file():
                        problems.append(f"{kind} {path.name[:40]!r}: not a content-addressed file")
                        continue
                    actual = file_sha256(path)
                    if actual != path.name:
                        problems.append(f"{kind} {path.name[:12]}: content hash is {actual[:12]} (corrupt)")
        for path in sorted(self.envs.glob("*.json")):
            try:
                entry = self._load_env(path)
            except CheckFailed as exc:
                problems.append(f"env index file {path.name}: {exc.message.split(': ', 1)[-1]}")
                continue
            try:
                manifest = self.read_manifest(entry.manifest)
            except CheckFailed as exc:
                if self.has_blob(entry.manifest):
                    problems.append(f"env {entry.env_id[:19]}: manifest {entry.manifest[:19]}: {exc.message}")
                    continue
                manifest = None
            described = (manifest.config, *manifest.layers) if manifest is not None else ()
            for digest in sorted({entry.manifest, *(d.digest for d in described)}):
                if not self.has_blob(digest):
                    problems.append(f"env {entry.env_id[:19]}: missing blob {digest[:19]}")
            problems.extend(self._size_problems(entry.env_id, described))
        try:
            refs = self.refs()
        except CheckFailed as exc:
            problems.append(f"index.json: {exc.message}")
            refs = {}
        for ref, digest in sorted(refs.items()):
            if not self.has_blob(digest):
                problems.append(f"ref {ref}: missing manifest {digest[:19]}")
        return problems

    def _size_problems(self, env_id: str, described: Sequence[Any]) -> list[str]:
        """One line per descriptor whose ``size`` is not its stored blob's: a manifest that
        lies about a size is refused by registries and engines when the image is pushed or
        loaded (OCI image spec, "Descriptors": ``size`` MUST be the blob's byte count)."""
        problems = []
        for desc in described:
            try:
                held = self.blob_path(desc.digest).stat().st_size
            except OSError:
                continue  # missing: reported above
            if held != desc.size:
                said = f"its manifest says {desc.size}"
                problems.append(f"env {env_id[:19]}: blob {desc.digest[:19]} is {held} bytes, {said}")
        return problems

    def gc(
        self,
        keep_env_ids: set[str] | None,
        keep_artifacts: Collection[str] = (),
        dry_run: bool = False,
        keep_image_artifacts: bool = True,
    ) -> tuple[int, int]:
        """Remove images whose env ID is not kept, then unreferenced blobs, artifacts and tmp.

        Artifacts kept: ``keep_artifacts`` and, with ``keep_image_artifacts``, those of the
        images kept.

        ``keep_env_ids=None`` keeps every recorded env and only removes unreferenced files.
        Holds the store exclusively: it waits for running builds, and none starts meanwhile.
        Everything that writes into ``tmp/`` (builds, pulls, exports, records, the source
        builds of ``lock``, small cache files) holds the store shared while it does, so what
        ``tmp/`` holds now is left by killed processes: it is removed and counted.
        Returns (files removed, bytes freed), ``tmp/`` leftovers included (see
        :meth:`leftovers` for their share).
        """
        removed = freed = 0
        with self.exclusive(), self.locked(), _io(f"cannot collect the store {self.root}"):
            entries = self.list_envs()
            keep = [e for e in entries if keep_env_ids is None or e.env_id in keep_env_ids]
            drop = [e for e in entries if e not in keep]
            live: set[str] = set()
            for e in keep:
                live |= self.manifest_closure(e.manifest)
            for digest in self._base_manifests():
                live |= self.manifest_closure(digest)
            index = self._read_index()
            refs = {
                ref: digest
                for ref, digest in self.refs().items()
                if digest in live or ref.startswith("base-")
            }
            for digest in refs.values():
                live |= self.manifest_closure(digest)
            live_artifacts: set[str] = set(keep_artifacts)
            for e in keep if keep_image_artifacts else ():
                live_artifacts |= self._artifacts_of(e)
            for path in sorted(self.blobs.iterdir()):
                if "sha256:" + path.name not in live:
                    removed, freed = removed + 1, freed + path.stat().st_size
                    if not dry_run:
                        path.unlink()
                        (self.verified / path.name).unlink(missing_ok=True)
            for path in sorted(self.artifacts.iterdir()):
                if path.name not in live_artifacts:
                    removed, freed = removed + 1, freed + path.stat().st_size
                    if not dry_run:
                        path.unlink()
            if not dry_run:
                for e in drop:
                    self._env_path(e.env_id, e.platform).unlink(missing_ok=True)
                if self.verified.is_dir():
                    for path in self.verified.iterdir():
                        if not (self.blobs / path.name).exists():
                            path.unlink(missing_ok=True)
                keys = self.root / "buildkeys"  # envlock.image.buildcache: an image's build keys
                if keys.is_dir():
                    for path in keys.iterdir():
                        if "sha256:" + path.stem not in live:
                            path.unlink(missing_ok=True)
                self._write_index([m for m in index if m["digest"] in live])
            files, size = self.leftovers()
            removed, freed = removed + files, freed + size
            if not dry_run and self.tmp.is_dir():
                for path in sorted(self.tmp.iterdir()):
                    if path.is_dir() and not path.is_symlink():
                        _make_removable(path)
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        path.unlink(missing_ok=True)
        return removed, freed

    def leftovers(self) -> tuple[int, int]:
        """(files, bytes) under ``tmp/``: each file, link or other entry counts once, its own
        size (``lstat``: a link's target is not counted).  Only leftovers of killed processes
        while the store is held exclusively (see :meth:`gc`)."""
        files = size = 0
        if not self.tmp.is_dir():
            return 0, 0
        for dirpath, dirnames, filenames in os.walk(self.tmp):
            here = Path(dirpath)
            for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
                with contextlib.suppress(FileNotFoundError):
                    files, size = files + 1, size + (here / name).lstat().st_size
        return files, size

    def _base_manifests(self) -> list[str]:
        out = []
        for path in sorted(self.bases.glob("*.json")):
            with contextlib.suppress(ValueError, KeyError, OSError, TypeError, AttributeError):
                digest = json.loads(path.read_text())["manifest"]
                if is_digest(digest):
                    out.append(digest)
        return out

    def _artifacts_of(self, entry: EnvEntry) -> set[str]:
        """sha256s of the packages in the lock that the image carries (its last layer)."""
        try:
            annotations = self.read_manifest(entry.manifest).annotations
        except CheckFailed:
            return set()
        raw = annotations.get("dev.envlock.artifacts", "")
        return {h for h in raw.split(",") if len(h) == 64 and is_digest("sha256:" + h)}

    def usage(self) -> int:
        return sum(p.stat().st_size for d in (self.blobs, self.artifacts) for p in d.iterdir())


def _make_removable(tree: Path) -> None:
    """Give the owner write and search permission on every directory under ``tree`` (a
    killed sandboxed build may leave read-only ones, which ``rmtree`` cannot empty)."""
    with contextlib.suppress(OSError):  # not ours to change: rmtree then leaves what it must
        tree.chmod(tree.lstat().st_mode | 0o700)
    for dirpath, dirnames, _ in os.walk(tree):
        for name in dirnames:
            path = Path(dirpath, name)
            with contextlib.suppress(OSError):
                if not path.is_symlink():
                    path.chmod(path.lstat().st_mode | 0o700)


P = ParamSpec("P")
R = TypeVar("R")
WAITING = "Waiting for `envlock store gc` to finish with the store"


def holding_store(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` holding its ``store=`` keyword argument shared (:meth:`Store.using`), so
    ``gc`` waits for it; its ``say=`` callback, if any, is told when gc makes it wait."""

    @functools.wraps(fn)
    def held(*args: P.args, **kwargs: P.kwargs) -> R:
        store, say = kwargs.get("store"), kwargs.get("say")
        if not isinstance(store, Store):
            return fn(*args, **kwargs)
        waiting = (lambda: say(WAITING)) if callable(say) else None
        with store.using(waiting):
            return fn(*args, **kwargs)

    return held
