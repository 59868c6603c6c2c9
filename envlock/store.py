"""The content-addressed local store at ``$ENVLOCK_HOME``; also a valid OCI image layout.

Layout::

    oci-layout, index.json        OCI image layout (skopeo, umoci read it)
    blobs/sha256/HEX              layers (uncompressed tar), configs, manifests
    artifacts/sha256/HEX          downloaded wheels and packages, by their sha256
    envs/HEX.json                 env ID -> image (manifest digest, image ID, tag)
    bases/KEY.json                base images built from inputs (debian:SUITE) -> manifest
    tmp/                          staging; anything here is never trusted

Every file is written to ``tmp/`` first, hashed while written, and renamed into
place only when complete, so a killed build leaves nothing a later build trusts.
Blobs are immutable and named by content, so two builds writing the same blob at
once both succeed with one result.  ``index.json`` and the env index are updated
under an exclusive file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from envlock.errors import CheckFailed, EnvlockError

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


def _hex(digest: str) -> str:
    algo, _, value = digest.partition(":")
    if algo != "sha256" or len(value) != 64:
        raise EnvlockError(f"unsupported digest {digest!r}", "envlock stores sha256 digests")
    return value


@dataclass(frozen=True)
class EnvEntry:
    env_id: str
    manifest: str  # digest of the OCI manifest in blobs/
    image_id: str  # digest of the config
    name: str  # spec name, for humans
    platform: str = "linux-64"


class Writer:
    """A file being written into the store: hashed as written, published by ``commit``."""

    def __init__(self, store: Store) -> None:
        store.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=store.tmp, prefix="w-")
        self.path = Path(name)
        self.file: IO[bytes] = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.size = 0
        self._store = store

    def write(self, data: bytes) -> int:
        self.file.write(data)
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
        self.file.flush()

    def commit(self, target: Path, expected: str | None = None) -> str:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if expected is not None and expected != self.digest:
            self.path.unlink(missing_ok=True)
            raise CheckFailed(f"content hash mismatch: expected {expected}, got {self.digest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path.chmod(0o444)
        self.path.replace(target)
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
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or default_home()).absolute()
        self.blobs = self.root / "blobs" / "sha256"
        self.artifacts = self.root / "artifacts" / "sha256"
        self.envs = self.root / "envs"
        self.bases = self.root / "bases"
        self.tmp = self.root / "tmp"
        self._init()

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
        with (self.root / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _write_small(self, path: Path, data: bytes) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="s-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        Path(name).chmod(0o644)
        Path(name).replace(path)

    def writer(self) -> Writer:
        return Writer(self)

    # -- blobs -------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        return self.blobs / _hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(digest):
            w = self.writer()
            try:
                w.write(data)
                w.commit(self.blob_path(digest))
            except BaseException:
                w.abort()
                raise
        return digest

    def publish(self, writer: Writer) -> tuple[str, int]:
        """Make a finished writer's content a blob (dropped if that blob exists already)."""
        digest, size = writer.digest, writer.size
        if self.has_blob(digest):
            writer.abort()
        else:
            writer.commit(self.blob_path(digest))
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
        try:
            return self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise EnvlockError(f"blob {digest} is not in the store {self.root}") from None

    def read_json(self, digest: str) -> Any:
        return json.loads(self.read_blob(digest))

    # -- artifacts ---------------------------------------------------------------------
    def artifact_path(self, sha256: str) -> Path:
        return self.artifacts / sha256

    def has_artifact(self, sha256: str) -> bool:
        return self.artifact_path(sha256).is_file()

    # -- index -------------------------------------------------------------------------
    def _read_index(self) -> list[dict[str, Any]]:
        data = json.loads((self.root / "index.json").read_text())
        manifests: list[dict[str, Any]] = data.get("manifests", [])
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
            if "org.opencontainers.image.ref.name" in m.get("annotations", {})
        }

    # -- env index ---------------------------------------------------------------------
    def record_env(self, entry: EnvEntry) -> None:
        data = canonical_json(entry.__dict__)
        with self.locked():
            self._write_small(self._env_path(entry.env_id, entry.platform), data)

    def _env_path(self, env_id: str, platform: str) -> Path:
        return self.envs / f"{_hex(env_id)}-{platform}.json"

    def find_env(self, env_id: str, platform: str = "linux-64") -> EnvEntry | None:
        path = self._env_path(env_id, platform)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        entry = EnvEntry(**data)
        if not self.has_blob(entry.manifest):
            return None
        return entry

    def list_envs(self) -> list[EnvEntry]:
        out = []
        for path in sorted(self.envs.glob("*.json")):
            with contextlib.suppress(ValueError, TypeError, OSError):
                out.append(EnvEntry(**json.loads(path.read_text())))
        return out

    def forget_env(self, env_id: str, platform: str = "linux-64") -> None:
        with self.locked():
            self._env_path(env_id, platform).unlink(missing_ok=True)

    # -- maintenance -------------------------------------------------------------------
    def manifest_closure(self, manifest_digest: str) -> set[str]:
        """The manifest and every blob it references."""
        found = {manifest_digest}
        if not self.has_blob(manifest_digest):
            return found
        manifest = self.read_json(manifest_digest)
        found.add(manifest["config"]["digest"])
        found.update(layer["digest"] for layer in manifest.get("layers", []))
        return found

    def fsck(self) -> list[str]:
        """Re-hash every blob and artifact; return one line per problem (nothing is changed)."""
        problems = []
        for directory, kind in ((self.blobs, "blob"), (self.artifacts, "artifact")):
            for path in sorted(directory.iterdir()):
                h = hashlib.sha256()
                with path.open("rb") as fh:
                    while chunk := fh.read(CHUNK):
                        h.update(chunk)
                if h.hexdigest() != path.name:
                    problems.append(
                        f"{kind} {path.name[:12]}: content hash is {h.hexdigest()[:12]} (corrupt)"
                    )
        for entry in self.list_envs():
            for digest in sorted(self.manifest_closure(entry.manifest)):
                if not self.has_blob(digest):
                    problems.append(f"env {entry.env_id[:19]}: missing blob {digest[:19]}")
        for ref, digest in sorted(self.refs().items()):
            if not self.has_blob(digest):
                problems.append(f"ref {ref}: missing manifest {digest[:19]}")
        return problems

    def gc(
        self,
        keep_env_ids: set[str] | None,
        keep_artifacts: Collection[str] = (),
        dry_run: bool = False,
    ) -> tuple[int, int]:
        """Remove images whose env ID is not kept, then unreferenced blobs, artifacts and tmp.

        ``keep_env_ids=None`` keeps every recorded env and only removes unreferenced files.
        Returns (files removed, bytes freed).
        """
        removed = freed = 0
        with self.locked():
            entries = self.list_envs()
            keep = [e for e in entries if keep_env_ids is None or e.env_id in keep_env_ids]
            drop = [e for e in entries if e not in keep]
            live: set[str] = set()
            for e in keep:
                live |= self.manifest_closure(e.manifest)
            for digest in self._base_manifests():
                live |= self.manifest_closure(digest)
            refs = {
                ref: digest
                for ref, digest in self.refs().items()
                if digest in live or ref.startswith("base-")
            }
            for digest in refs.values():
                live |= self.manifest_closure(digest)
            live_artifacts: set[str] = set(keep_artifacts)
            for e in keep:
                live_artifacts |= self._artifacts_of(e)
            for path in sorted(self.blobs.iterdir()):
                if "sha256:" + path.name not in live:
                    removed, freed = removed + 1, freed + path.stat().st_size
                    if not dry_run:
                        path.unlink()
            for path in sorted(self.artifacts.iterdir()):
                if path.name not in live_artifacts:
                    removed, freed = removed + 1, freed + path.stat().st_size
                    if not dry_run:
                        path.unlink()
            if not dry_run:
                for e in drop:
                    self._env_path(e.env_id, e.platform).unlink(missing_ok=True)
                self._write_index([m for m in self._read_index() if m["digest"] in live])
                shutil.rmtree(self.tmp, ignore_errors=True)
                self.tmp.mkdir(exist_ok=True)
        return removed, freed

    def _base_manifests(self) -> list[str]:
        out = []
        for path in sorted(self.bases.glob("*.json")):
            with contextlib.suppress(ValueError, KeyError, OSError):
                out.append(json.loads(path.read_text())["manifest"])
        return out

    def _artifacts_of(self, entry: EnvEntry) -> set[str]:
        """sha256s of the packages in the lock that the image carries (its last layer)."""
        if not self.has_blob(entry.manifest):
            return set()
        annotations = self.read_json(entry.manifest).get("annotations", {})
        raw = annotations.get("dev.envlock.artifacts", "")
        return set(raw.split(",")) if raw else set()

    def usage(self) -> int:
        return sum(p.stat().st_size for d in (self.blobs, self.artifacts) for p in d.iterdir())
