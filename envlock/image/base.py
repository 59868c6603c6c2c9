"""Base images into the store: ``REF@sha256:..`` (registry), ``oci:PATH[@sha256:..]``, ``debian:SUITE``.

Whatever the source, the result is a manifest in the store whose blobs were
verified against their digests, plus what envlock needs to know about it: the
config, its layers, and the Python interpreter it carries.

``debian:SUITE`` is bootstrapped with mmdebstrap (``--variant=apt``, Python and
the spec's system packages, ``SOURCE_DATE_EPOCH`` fixed), re-packed into one
normalised layer (sorted, fixed mtimes, no device nodes, hard links resolved),
and cached in the store by its inputs; its digest and package list are recorded.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from envlock.digest import is_digest, parse_digest
from envlock.errors import CheckFailed, EnvlockError, ServiceUnavailable, SpecError, ToolMissing
from envlock.image import layer as layermod
from envlock.image.extract import boundary
from envlock.image.model import (
    CONFIG,
    CREATED,
    LAYER_TAR,
    Layer,
    digest_of,
)
from envlock.image.venv import Interpreter
from envlock.store import Store, canonical_json

DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_EPOCH = 1700000000  # fixed SOURCE_DATE_EPOCH for bootstraps: inputs, not the clock
BASE_FORMAT = "envlock-base/1"

Say = Callable[[str], None]


@dataclass(frozen=True)
class BaseImage:
    reference: str
    manifest: str  # digest of the manifest in the store
    config: dict[str, Any]
    layers: tuple[Layer, ...]
    interpreter: Interpreter

    @property
    def digest(self) -> str:
        return self.manifest


def default_base(python: str) -> str:
    """``debian:SUITE`` of the newest Debian release whose Python is ``python``
    (``envlock.suites``); a ``SpecError`` when there is none."""
    from envlock import suites

    suite = suites.debian_suite_for(python)
    if suite is None:
        raise SpecError(
            f"{suites.no_debian_ships(python)}, so envlock has no default base for it",
            'set [image] base = "oci:PATH" or a registry reference pinned by digest, '
            "or a Python a Debian release ships",
        )
    return f"debian:{suite}"


def python_problem(reference: str | None, python: str, *, home: Path, spec_dir: Path) -> EnvlockError | None:
    """Whether the base can provide the spec's Python, from what is known without any download.

    ``debian:SUITE``: the release table in ``envlock.suites`` (packages.debian.org).  No base:
    the default base for ``python`` must exist.  ``oci:PATH[@sha256:..]`` and
    ``REF@sha256:..``: the interpreter found when the base was last read into the store
    at ``home`` (``bases/inspect-*.json``); an unknown base is checked when it is built.
    Reads only; never creates the store.  Returns the error (exit 2) or ``None``.
    """
    from envlock import suites

    if not reference:
        try:
            default_base(python)
        except SpecError as exc:
            return exc
        return None
    if reference.startswith("debian:"):
        found = suites.python_problem(reference.split(":", 1)[1], python)
        return SpecError(*found) if found else None
    interp = cached_interpreter(reference, home=home, spec_dir=spec_dir)
    if interp is None or interp.version == python:
        return None
    return SpecError(
        f"the spec asks for Python {python}, but base {reference} has Python {interp.version} "
        f"({interp.path}, as read when it was last built)",
        f'set python = "{interp.version}" or choose a base with Python {python}',
    )


def cached_interpreter(reference: str, *, home: Path, spec_dir: Path) -> Interpreter | None:
    """The interpreter of a pinned registry base or an ``oci:`` layout, if the store at
    ``home`` has inspected that manifest before; ``None`` when it is not known yet."""
    from envlock.digest import is_digest

    digest = ""
    places = [home / "blobs" / "sha256"]  # where an image index's blob may be read
    if reference.startswith("oci:"):
        path, _, digest = reference[4:].partition("@")
        root = Path(path) if Path(path).is_absolute() else spec_dir / path
        places.insert(0, root / "blobs" / "sha256")
        if not digest:
            index = _json_or_none(root / "index.json")
            manifests = index.get("manifests", []) if isinstance(index, dict) else []
            digest = manifests[0].get("digest", "") if len(manifests) == 1 else ""
    elif "@" in reference:
        digest = reference.rsplit("@", 1)[1]
    for _ in range(2):  # an image index points at the manifest that was inspected
        if not is_digest(digest):
            return None
        data = _json_or_none(home / "bases" / f"inspect-{digest[7:]}.json")
        if isinstance(data, dict):
            ok = isinstance(data.get("path"), str) and isinstance(data.get("version"), str)
            return Interpreter(data["path"], data["version"]) if ok else None
        index = next((d for d in (_json_or_none(p / digest[7:]) for p in places) if d is not None), None)
        try:
            digest = pick_platform(index["manifests"])  # type: ignore[index]
        except (KeyError, TypeError, AttributeError, CheckFailed):
            return None
    return None


def _json_or_none(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def resolve(
    store: Store,
    reference: str,
    python: str,
    system: Sequence[str] = (),
    say: Say | None = None,
    cache: BaseCache | None = None,
) -> BaseImage:
    """The base ``reference`` in the store: a ``debian:SUITE`` bootstrapped (or taken from
    ``cache``), an ``oci:`` layout read, or a pinned registry image pulled."""
    say = say or (lambda _m: None)
    if reference.startswith("debian:"):
        manifest = _debian(store, reference.split(":", 1)[1], python, system, say, cache)
    elif reference.startswith("oci:"):
        manifest = _from_layout(store, reference[4:])
    else:
        if "@sha256:" not in reference:
            raise SpecError(
                f"base image {reference!r} is not pinned by digest",
                "write it as REF@sha256:..., oci:PATH, or debian:SUITE",
            )
        from envlock.image import registry

        manifest = registry.pull(store, reference, say)
    return load(store, reference, manifest, python)


def load(store: Store, reference: str, manifest_digest: str, python: str) -> BaseImage:
    from envlock.image.manifest import diff_ids as parse_diff_ids

    manifest = store.read_manifest(manifest_digest)
    config = store.read_json(manifest.config.digest)
    diff_ids = parse_diff_ids(config, f"base {reference}: config")
    if len(diff_ids) != len(manifest.layers):
        raise CheckFailed(
            f"base {reference}: config lists {len(diff_ids)} layers, manifest {len(manifest.layers)}"
        )
    layers = tuple(
        Layer(la.digest, diff_id, la.size, la.media_type, "base")
        for la, diff_id in zip(manifest.layers, diff_ids, strict=True)
    )
    interp = find_interpreter(store, manifest_digest, layers)
    if interp is None:
        raise CheckFailed(
            f"base {reference} has no Python interpreter at /usr/local/bin or /usr/bin",
            "use a base with CPython installed, e.g. debian:bookworm",
        )
    if interp.version != python:
        raise CheckFailed(
            f"base {reference} has Python {interp.version} ({interp.path}), the spec asks for {python}",
            f'set python = "{interp.version}" or choose a base with Python {python}',
        )
    return BaseImage(reference, manifest_digest, config, layers, interp)


# -- interpreter detection --------------------------------------------------------------

_PY = re.compile(r"^(usr/local/bin|usr/bin)/python(3\.\d+)$")


def open_layer(store: Store, layer: Layer) -> IO[bytes]:
    """A base layer's tar, uncompressed."""
    fh: IO[bytes] = store.blob_path(layer.digest).open("rb")
    if layer.media_type.endswith("gzip"):
        return gzip.GzipFile(fileobj=fh)  # type: ignore[return-value]
    return fh


def find_interpreter(store: Store, manifest: str, layers: Sequence[Layer]) -> Interpreter | None:
    cache = store.bases / f"inspect-{parse_digest(manifest, source='base manifest')[7:]}.json"
    try:
        data = json.loads(cache.read_bytes())
    except (OSError, ValueError):
        data = None  # not inspected yet, or the cache file is damaged: inspect again
    if data == {}:
        return None
    if isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ("path", "version")):
        return Interpreter(data["path"], data["version"])
    found: dict[str, str] = {}
    for la in layers:
        with (
            boundary(f"base layer {la.digest}"),
            open_layer(store, la) as fh,
            tarfile.open(fileobj=fh, mode="r|*") as tar,
        ):
            for member in tar:
                name = member.name.removeprefix("./")
                m = _PY.match(name)
                if m and (member.isfile() or member.issym() or member.islnk()):
                    found[m.group(1)] = m.group(2)
                base = name.rsplit("/", 1)[-1]
                if base.startswith(".wh.") and _PY.match(name.rsplit("/", 1)[0] + "/" + base[4:]):
                    found.pop(_PY.match(name.rsplit("/", 1)[0] + "/" + base[4:]).group(1), None)  # type: ignore[union-attr]
    interp = None
    for directory in ("usr/local/bin", "usr/bin"):
        if directory in found:
            interp = Interpreter(f"/{directory}/python{found[directory]}", found[directory])
            break
    store._write_small(cache, canonical_json(interp.__dict__ if interp else {}))
    return interp


# -- oci:PATH ---------------------------------------------------------------------------


def _from_layout(store: Store, spec: str) -> str:
    """Copy an image from a local OCI layout into the store; every blob is verified, and
    every digest (the pin, index.json, manifests) parsed before it names a file."""
    from envlock.image import manifest as manifests_

    path, _, pinned = spec.partition("@")
    root = Path(path)
    try:
        raw_index = (root / "index.json").read_bytes()
    except OSError:
        raise SpecError(f"oci:{path} is not an OCI image layout (no readable index.json)") from None
    index = manifests_.parse(raw_index, f"oci:{path}/index.json")
    if not isinstance(index, manifests_.Index):
        raise CheckFailed(f"oci:{path}/index.json is not an image index")
    entries = index.manifests
    if pinned:
        digest = parse_digest(pinned, source=f"the base oci:{spec}")
    elif len(entries) == 1:
        digest = entries[0].digest
    else:
        names = [m.annotations.get("org.opencontainers.image.ref.name", m.digest) for m in entries]
        raise SpecError(
            f"oci:{path} holds {len(entries)} images; pin one",
            f"use oci:{path}@sha256:... ({', '.join(names)})",
        )

    def blob_file(d: str) -> Path:
        return root / "blobs" / "sha256" / d[7:]  # d was parsed: 64 hex characters

    def blob(d: str) -> bytes:
        try:
            data = blob_file(d).read_bytes()
        except OSError:
            raise CheckFailed(f"oci:{path} is missing blob {d}") from None
        if digest_of(data) != d:
            raise CheckFailed(f"oci:{path}: blob {d} does not match its digest")
        return data

    found = manifests_.parse(blob(digest), f"oci:{path}: manifest {digest[:19]}")
    if isinstance(found, manifests_.Index):
        digest = found.for_platform()
        found = manifests_.parse_manifest(blob(digest), f"oci:{path}: manifest {digest[:19]}")
    store.put_blob(blob(found.config.digest))
    for la in found.layers:
        if not store.blob_intact(la.digest):
            try:
                fh = blob_file(la.digest).open("rb")
            except OSError:
                raise CheckFailed(f"oci:{path} is missing blob {la.digest}") from None
            with fh:
                store.put_blob_stream(fh, expected=la.digest)
    store.put_blob(blob(digest))
    return digest


def pick_platform(manifests: list[dict[str, Any]]) -> str:
    """The linux/amd64 manifest of an index's ``manifests`` (each parsed as a descriptor)."""
    from envlock.image.manifest import Index, descriptor

    if not isinstance(manifests, list):
        raise CheckFailed("the base image index has no list of manifests")
    return Index(tuple(descriptor(m, f"manifests[{i}]") for i, m in enumerate(manifests))).for_platform()


# -- debian:SUITE -------------------------------------------------------------------------


def _mmdebstrap_version() -> str:
    if not shutil.which("mmdebstrap"):
        raise ToolMissing(
            "mmdebstrap is not installed (needed for debian:SUITE bases)",
            "apt-get install mmdebstrap, or use an oci:PATH or registry base",
        )
    out = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _includes(python: str, system: Sequence[str]) -> list[str]:
    """Debian packages of a base: the interpreter (with venv/ensurepip, which the Dockerfile
    path needs), CA certificates, and the spec's system packages."""
    return sorted({f"python{python}", f"python{python}-venv", "python3", "ca-certificates", *system})


def debian_key(suite: str, python: str, system: Sequence[str]) -> str:
    data = {
        "format": BASE_FORMAT,
        "suite": suite,
        "mirror": DEBIAN_MIRROR,
        "variant": "apt",
        "include": _includes(python, system),
        "epoch": DEBIAN_EPOCH,
        "tool": _mmdebstrap_version(),
    }
    return hashlib.sha256(canonical_json(data)).hexdigest()


class BaseCache(Protocol):
    """Where a Debian base may come from instead of mmdebstrap (``envlock.image.buildcache``)."""

    def base(self, key: str, suite: str, python: str) -> str | None: ...


def debian_record(store: Store, key: str) -> dict[str, Any] | None:
    """The store's record of the Debian base ``key`` if its image is intact, else ``None``."""
    try:
        data = json.loads((store.bases / f"{key}.json").read_bytes())
    except (OSError, ValueError):
        return None  # not bootstrapped yet, or the record is damaged: bootstrap again
    if isinstance(data, dict) and is_digest(data.get("manifest")) and store.image_intact(data["manifest"]):
        return data
    return None


def _debian(
    store: Store, suite: str, python: str, system: Sequence[str], say: Say, cache: BaseCache | None = None
) -> str:
    key = debian_key(suite, python, system)
    data = debian_record(store, key)
    if data is not None:
        return str(data["manifest"])
    if cache is not None and (found := cache.base(key, suite, python)) is not None:
        return found
    include = _includes(python, system)
    say(f"Bootstrapping debian:{suite} with mmdebstrap ({', '.join(include)}); cached afterwards")
    with tempfile.TemporaryDirectory(prefix="mmdebstrap-", dir=store.tmp) as tmp:
        raw = Path(tmp) / "rootfs.tar"
        cmd = [
            "mmdebstrap",
            "--variant=apt",
            "--format=tar",
            "--quiet",
            f"--include={','.join(include)}",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            suite,
            str(raw),
            DEBIAN_MIRROR,
        ]
        env = {
            "SOURCE_DATE_EPOCH": str(DEBIAN_EPOCH),
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LC_ALL": "C.UTF-8",
        }
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-3:])
            if "Failed to fetch" in proc.stderr or "Could not resolve" in proc.stderr:
                raise ServiceUnavailable(f"mmdebstrap cannot reach {DEBIAN_MIRROR}: {tail}")
            raise EnvlockError(
                f"mmdebstrap failed for debian:{suite}: {tail}",
                "check the suite name and system packages",
            )
        packages = _dpkg_packages(raw)
        writer = store.writer()
        try:
            _normalise(raw, writer.stream())
            diff_id, size = store.publish(writer)
        except BaseException:
            writer.abort()
            raise
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ],
            "Cmd": ["bash"],
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {
                "created": CREATED,
                "created_by": f"mmdebstrap --variant=apt --include={','.join(include)} {suite}",
            }
        ],
    }
    config_bytes = canonical_json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": CONFIG,
            "digest": "sha256:" + hashlib.sha256(config_bytes).hexdigest(),
            "size": len(config_bytes),
        },
        "layers": [{"mediaType": LAYER_TAR, "digest": diff_id, "size": size}],
        "annotations": {"org.opencontainers.image.base.name": f"debian:{suite}"},
    }
    return record_debian(store, key, suite, python, config_bytes, canonical_json(manifest), packages)


def record_debian(
    store: Store, key: str, suite: str, python: str, config: bytes, manifest: bytes, packages: Sequence[str]
) -> str:
    """Make a Debian base whose layers are in the store an image of the store: its config
    and manifest blobs, a tag, and the record that finds it by ``key``.  Returns the
    manifest digest."""
    store.put_blob(config)
    manifest_digest = store.put_blob(manifest)
    store.tag(f"base-debian-{suite}-{key[:12]}", manifest_digest, len(manifest))
    store._write_small(
        store.bases / f"{key}.json",
        canonical_json(
            {"manifest": manifest_digest, "suite": suite, "packages": list(packages), "python": python}
        ),
    )
    return manifest_digest


def _dpkg_packages(raw: Path) -> list[str]:
    with tarfile.open(raw) as tar:
        try:
            member = tar.getmember("./var/lib/dpkg/status")
        except KeyError:
            return []
        fh = tar.extractfile(member)
        text = fh.read().decode() if fh else ""
    out, name = [], ""
    for line in text.splitlines():
        if line.startswith("Package: "):
            name = line[9:]
        elif line.startswith("Version: ") and name:
            out.append(f"{name}={line[9:]}")
    return sorted(out)


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for m in sorted(tar.getmembers(), key=lambda m: m.name.removeprefix("./").rstrip("/")):
        name = m.name.removeprefix("./").rstrip("/")
        if name in ("", ".") or m.ischr() or m.isblk() or m.isfifo():
            continue
        yield m


def _normalise(raw: Path, out: IO[bytes]) -> None:
    """Re-pack a root filesystem tar: sorted, fixed mtime, no devices, hard links as files.

    Ownership and modes (setuid, sticky bits) are kept: they are part of the OS.
    """
    with (
        tarfile.open(raw) as src,
        tarfile.open(fileobj=out, mode="w|", format=layermod.FORMAT, bufsize=1 << 20) as dst,
    ):
        setattr(dst, "copybufsize", 1 << 20)  # noqa: B010 (not in the stubs)
        by_name = {m.name: m for m in src.getmembers()}
        for m in _members(src):
            info = tarfile.TarInfo(m.name.removeprefix("./").rstrip("/"))
            info.mode, info.uid, info.gid = m.mode, m.uid, m.gid
            info.uname = info.gname = ""
            info.mtime = layermod.MTIME
            data_from = m
            if m.islnk():
                data_from = by_name.get(m.linkname) or by_name.get("./" + m.linkname.removeprefix("./")) or m
                info.type = tarfile.REGTYPE
            else:
                info.type = m.type
            if m.issym():
                info.linkname = m.linkname
            if info.type == tarfile.REGTYPE:
                info.size = data_from.size
                fh = src.extractfile(data_from)
                dst.addfile(info, fh)
            else:
                dst.addfile(info)
