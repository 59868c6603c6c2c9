"""Assemble an image from a lock: base + venv skeleton + package layers + lock layer.

The image ID (config digest) is a pure function of the lock and the base image:
no clock, host path, umask, locale or user name reaches a layer or the config.
A lock whose image is already in the store is not built again.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from envlock import lockfile as lockmod
from envlock.errors import CheckFailed, EnvlockError, UsageError, raise_all
from envlock.image import base as basemod
from envlock.image import conda as condamod
from envlock.image import layer as layermod
from envlock.image import venv
from envlock.image.model import Image, Layer, config_for
from envlock.lockfile import Lock, Package, PlatformLock
from envlock.store import EnvEntry, Store, canonical_json, holding_store

Say = Callable[[str], None]
FetchProgress = Callable[[Package, int, int | None], None]
BUILDABLE = ("linux-64",)


@dataclass(frozen=True)
class BuildResult:
    image: Image
    manifest: str
    env_id: str
    platform: str
    reused: bool
    seconds: float
    base: str  # base reference
    base_digest: str  # manifest digest of the base in the store
    warnings: tuple[str, ...] = ()  # for ``warning:`` lines (file conflicts and their winners)

    @property
    def image_id(self) -> str:
        return self.image.image_id


def image_ref(name: str, env_id: str, platform: str) -> str:
    """The tag a built image gets (``envlock/NAME:ENVID16-PLATFORM``); a Docker repository
    name is lower case (distribution spec, "Pulling manifests": ``[a-z0-9]+...``)."""
    return f"envlock/{name.lower()}:{env_id.split(':')[1][:16]}-{platform}"


def choose_platform(lock: Lock, platform: str | None) -> PlatformLock:
    if platform:
        plat = lock.platform(platform)
    else:
        linux = [p for p in lock.platforms if p.name in BUILDABLE]
        if not linux:
            raise UsageError(
                f"the lock has no platform envlock can build images for ({', '.join(lock.platform_names)})",
                f"add one of {', '.join(BUILDABLE)} to the spec's platforms",
            )
        plat = linux[0]
    if plat.name not in BUILDABLE:
        raise UsageError(f"envlock builds images for {', '.join(BUILDABLE)}, not {plat.name}")
    return plat


def load_image(store: Store, manifest_digest: str) -> Image:
    """An image from the store; each layer's ``created_by`` comes from the config's history
    (``envlock: ...`` for envlock's layers, ``base`` for everything below them).

    Raises:
        CheckFailed: the manifest or config is missing, corrupt or malformed (every digest
            in them parsed by ``envlock.digest.parse_digest``).
    """
    from envlock.image.manifest import diff_ids as parse_diff_ids

    manifest = store.read_manifest(manifest_digest)
    config = store.read_json(manifest.config.digest)
    source = f"config {manifest.config.digest[:19]} in the store"
    diff_ids = parse_diff_ids(config, source)
    if len(diff_ids) != len(manifest.layers):
        raise CheckFailed(
            f"{source} lists {len(diff_ids)} layers, its manifest {len(manifest.layers)}",
            "run `envlock store fsck`; building the image again rewrites it",
        )
    raw_history = config.get("history")
    history = (
        [h for h in raw_history if isinstance(h, dict) and not h.get("empty_layer")]
        if isinstance(raw_history, list)
        else []
    )
    if len(history) != len(diff_ids):
        history = [{}] * len(diff_ids)
    layers = tuple(
        Layer(
            la.digest,
            diff_id,
            la.size,
            la.media_type,
            h.get("created_by", "") if str(h.get("created_by", "")).startswith("envlock:") else "base",
        )
        for la, diff_id, h in zip(manifest.layers, diff_ids, history, strict=True)
    )
    return Image(config, layers, dict(manifest.annotations))


def lock_layer_entries(lock: Lock) -> list[layermod.Entry]:
    """The environment inside the image: exactly what the env ID covers.

    No [meta] (when and with what it was resolved) and no URLs (where files came
    from): two locks with the same env ID give the same image, whichever mirror
    or machine resolved them.
    """
    from envlock import tomlwrite

    data = {
        "version": lock.version,
        "env-id": lock.env_id,
        "platforms": [p.identity() for p in lock.platforms],
    }
    header = "The environment in this image, as envlock's env ID covers it."
    return [layermod.file("opt/env/envlock.lock", tomlwrite.dumps(data, header=header).encode())]


def precheck(
    plat: PlatformLock, lock_dir: Path, store: Store, file_conflicts: str = "warn"
) -> list[EnvlockError]:
    """Every problem knowable before a base is bootstrapped or pulled and before anything is
    downloaded: the base's Python (``envlock.suites`` for ``debian:SUITE``, the store's
    inspection for other bases), locked files that cannot install on the platform (an sdist,
    a wheel's tags), local files that are gone, and, with ``file_conflicts = "error"``,
    conflicts among the wheels already at hand.  Returns them all; raises nothing."""
    from urllib.parse import unquote, urlparse

    from envlock.image import conflicts
    from envlock.platforms import wheel_problem

    problems: list[EnvlockError] = []
    python = basemod.python_problem(plat.base or None, plat.python, home=store.root, spec_dir=lock_dir)
    if python is not None:
        problems.append(python)
    for p in plat.packages:
        if p.manager != "pip":
            continue
        where = f"{p.name} {p.version} ({p.filename})"
        if p.source == "git" or (p.source == "path" and p.url.endswith("/")):
            continue  # a checkout or a directory, built into a wheel (envlock.sources)
        if not p.filename.endswith(".whl"):
            if not p.built:
                problems.append(
                    CheckFailed(
                        f"{where} is a source distribution locked without the digest of its built wheel",
                        "re-lock with: envlock lock --upgrade SPEC (envlock builds it at lock time)",
                    )
                )
        elif (why := wheel_problem(p.filename, plat.name, plat.python)) is not None:
            problems.append(
                CheckFailed(
                    f"{where} cannot install on {plat.name} / Python {plat.python}: {why}",
                    "the lock was edited or made for another target; re-lock the spec",
                )
            )
        if store.has_artifact(p.sha256) or ("://" in p.url and not p.url.startswith("file://")):
            continue
        local = Path(unquote(urlparse(p.url).path)) if "://" in p.url else lock_dir / p.url
        local = Path(os.path.normpath(local))
        if not local.is_file():
            problems.append(
                CheckFailed(f"{where}: {local} does not exist", "restore the wheelhouse or re-lock")
            )
    if file_conflicts == "error":
        try:
            decision = conflicts.scan(
                conflicts.at_hand(plat.packages, lock_dir, store.root), plat.python, store
            )
            conflicts.enforce(decision, file_conflicts)
        except EnvlockError as exc:
            problems.append(exc)
    return problems


def _groups(
    packages: Sequence[tuple[Package, Path]],
) -> list[tuple[str, list[tuple[Package, Path]]]]:
    big = sorted((p for p in packages if venv.is_big(*p)), key=lambda p: p[0].name)
    small = sorted((p for p in packages if not venv.is_big(*p)), key=lambda p: p[0].name)
    groups = [(f"envlock: pip {p.name}=={p.version}", [(p, path)]) for p, path in big]
    if small:
        groups.append((f"envlock: pip {len(small)} packages", small))
    return groups


@holding_store  # gc waits while an image is built
def build_lock(
    lock: Lock,
    lock_dir: Path,
    name: str,
    *,
    store: Store,
    platform: str | None = None,
    say: Say | None = None,
    fetch_progress: FetchProgress | None = None,
    workers: int = 0,
    file_conflicts: str = "warn",
) -> BuildResult:
    """Build (or find in the store) the image of one platform of ``lock``.

    Everything knowable up front is checked before any download (:func:`precheck`), and
    every problem is reported (:class:`envlock.errors.Problems`).  Two packages writing
    one path are decided over the whole image (``envlock.image.conflicts``):
    ``file_conflicts`` ``"warn"`` returns the warnings in the result, ``"error"`` raises.
    """
    start = time.perf_counter()
    say = say or (lambda _m: None)
    workers = workers or max(2, os.cpu_count() or 2)
    plat = choose_platform(lock, platform)
    problems = lockmod.problems(lock)
    if problems:
        raise CheckFailed(
            f"the lock is not intact: {problems[0]}",
            "re-create it with: envlock lock --upgrade SPEC",
        )

    if plat.bytecode and condamod.has_python([p for p in plat.packages if p.manager == "conda"]):
        raise UsageError(
            "bytecode = true needs the base's Python, but this environment runs conda's python",
            "drop bytecode from the spec's [image] table; conda's own packages carry their byte code",
        )
    existing = store.find_env(lock.env_id, plat.name)
    # the spec's name is in the config (org.opencontainers.image.title): an image stored for
    # another spec with the same env ID is another image, and reusing it would make this
    # spec's image ID depend on which of the two was built first
    if existing is not None and existing.name == name:
        image = load_image(store, existing.manifest)
        base_ref = (
            image.config.get("config", {}).get("Labels", {}).get("org.opencontainers.image.base.name", "")
        )
        base_digest = (
            image.config.get("config", {}).get("Labels", {}).get("org.opencontainers.image.base.digest", "")
        )
        return BuildResult(
            image,
            existing.manifest,
            lock.env_id,
            plat.name,
            True,
            time.perf_counter() - start,
            base_ref,
            base_digest,
        )

    raise_all(precheck(plat, lock_dir, store, file_conflicts))
    conda = [p for p in plat.packages if p.manager == "conda"]
    reference = plat.base or basemod.default_base(plat.python)
    located = reference
    if reference.startswith("oci:") and not Path(reference[4:].split("@")[0]).is_absolute():
        located = "oci:" + str(lock_dir.absolute() / reference[4:])
    base = basemod.resolve(store, located, plat.python, plat.system, say)
    if plat.base_digest and plat.base_digest != base.digest:
        raise CheckFailed(
            f"base {reference} resolved to {base.digest}, the lock pins {plat.base_digest}",
            "the base changed since it was locked; re-lock or restore the base",
        )

    from envlock.fetch import fetch_all

    pip = [p for p in plat.packages if p.manager == "pip"]
    every = [*conda, *pip]
    fetched = _to_fetch(store, [*conda, *pip], plat.python)
    missing = [p for p in fetched if not store.has_artifact(p.sha256)]
    if missing:
        total = sum(p.size or 0 for p in missing)
        say(f"Fetching {len(missing)} of {len(fetched)} packages ({total / 1e6:.0f} MB)")
    from envlock.credentials import sources_from_options

    sources = (*sources_from_options(plat.pip_options), *plat.conda_channels)
    paths = fetch_all(store, fetched, lock_dir, progress=fetch_progress, sources=sources)
    wheels = _wheels(store, pip, paths, lock_dir, plat.python, say)
    from envlock.image import conflicts

    # checked just now: downloads by their sha256, wheels built from source by their content digest
    checked = {p.sha256 for p in missing} | {p.sha256 for p in pip if p.built}
    decision = conflicts.scan(wheels, plat.python, store, verified=checked)
    warnings = conflicts.enforce(decision, file_conflicts)

    say(f"Assembling {name} for {plat.name} on {reference} ({len(every)} packages)")
    # With conda's own python, /opt/env is a conda prefix and its interpreter is conda's;
    # otherwise it is a virtual environment on the base's interpreter, conda files added.
    conda_python = condamod.has_python(conda)
    interpreter = (
        venv.Interpreter(f"{venv.PREFIX}/bin/python{plat.python}", plat.python)
        if conda_python
        else base.interpreter
    )
    first: list[Layer] = []
    if not conda_python:
        first.append(
            venv.store_entries(store, venv.skeleton_entries(base.interpreter), "envlock: venv /opt/env")
        )
    if conda:
        first.append(
            condamod.build_layer(
                store,
                [(p, paths[p.sha256]) for p in conda],
                plat.python,
                f"envlock: conda {len(conda)} packages",
            )
        )
    groups = _groups(wheels)
    # largest first, so the long ones start at once and the small ones fill the other cores
    if plat.bytecode:
        package_layers, code_layers = _with_bytecode(store, base, groups, workers, say, decision.omit)
    else:
        package_layers, code_layers = _build_layers(store, groups, interpreter, workers, decision.omit), []
    lock_layer = venv.store_entries(store, lock_layer_entries(lock), "envlock: lock")
    ours = (*first, *package_layers, *code_layers, lock_layer)

    env = {"PATH": "/opt/env/bin:" + _base_path(base.config)}
    env["CONDA_PREFIX" if conda_python else "VIRTUAL_ENV"] = "/opt/env"
    env.update(dict(plat.env))
    if plat.cuda != "cpu":
        env.setdefault("NVIDIA_VISIBLE_DEVICES", "all")
        env.setdefault("NVIDIA_DRIVER_CAPABILITIES", "compute,utility")
    labels = {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.base.name": reference,
        "org.opencontainers.image.base.digest": base.digest,
        "dev.envlock.env-id": lock.env_id,
        "dev.envlock.platform": plat.name,
        "dev.envlock.python": plat.python,
        "dev.envlock.cuda": plat.cuda,
    }
    config = config_for(
        base.config, ours, env=env, workdir=plat.workdir, labels=labels, cmd=["/opt/env/bin/python"]
    )
    image = Image(
        config,
        (*base.layers, *ours),
        {
            "org.opencontainers.image.ref.name": image_ref(name, lock.env_id, plat.name),
            "dev.envlock.env-id": lock.env_id,
            "dev.envlock.artifacts": ",".join(sorted(p.sha256 for p in every)),
        },
    )
    store.put_blob(image.config_bytes)
    manifest = canonical_json(image.manifest())
    manifest_digest = store.put_blob(manifest)
    store.tag(image_ref(name, lock.env_id, plat.name), manifest_digest, len(manifest))
    store.record_env(EnvEntry(lock.env_id, manifest_digest, image.image_id, name, plat.name))
    return BuildResult(
        image,
        manifest_digest,
        lock.env_id,
        plat.name,
        False,
        time.perf_counter() - start,
        reference,
        base.digest,
        warnings,
    )


def _to_fetch(store: Store, packages: Sequence[Package], python: str) -> list[Package]:
    """The archives to download: every package's, but git commits and local directories
    (checked out instead) and built wheels already cached (their build requirements too)."""
    from envlock import sourcebuild, sources

    out: list[Package] = []
    for p in packages:
        if p.needs_build:
            key = sourcebuild.cache_key(p, p.build_requires, python)
            if sourcebuild.cached(store, key) is not None:
                continue
            out += p.build_requires
        if not sources.is_tree(p):
            out.append(p)
    return list({p.sha256: p for p in out}.values())


def _wheels(
    store: Store, pip: Sequence[Package], paths: dict[str, Path], lock_dir: Path, python: str, say: Say
) -> list[tuple[Package, Path]]:
    """(package, wheel) for every pip package; one built from source is rebuilt or taken from
    the cache, and must have the content digest the lock recorded (``envlock.sources``)."""
    out: list[tuple[Package, Path]] = []
    for p in pip:
        if not p.needs_build:
            out.append((p, paths[p.sha256]))
            continue
        from envlock import sources

        if p.built is None:
            raise CheckFailed(
                f"{p.name} {p.version} is locked as a source distribution ({p.filename}) "
                "without the digest of a wheel built from it",
                "re-lock with: envlock lock --upgrade SPEC (envlock now builds sdists at lock time)",
            )
        say(f"Wheel of {p.name} {p.version} from source")
        out.append(sources.wheel_for(store, p, lock_dir, python))
    return out


def _build_layers(
    store: Store,
    groups: list[tuple[str, list[tuple[Package, Path]]]],
    interpreter: venv.Interpreter,
    workers: int,
    omit: venv.Omit | None = None,
) -> list[Layer]:
    """Build the package layers, largest first, in worker processes.

    Processes rather than threads: unpacking and tarring run per-chunk Python loops, so
    threads serialise on the GIL (the torch layer took 11 s beside others in threads, 6.5 s
    alone).  Layers already in the layer cache cost nothing and are read in this process.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    by_size = sorted(range(len(groups)), key=lambda i: -sum(p.stat().st_size for _, p in groups[i][1]))
    todo = [i for i in by_size if venv.cached(store, groups[i][1], interpreter, omit) is None]
    if len(todo) < 2 or workers < 2:
        return [venv.build_layer(store, wheels, interpreter, label, omit) for label, wheels in groups]
    with ProcessPoolExecutor(
        max_workers=min(workers, len(todo)), mp_context=get_context("spawn"), initializer=_worker_init
    ) as pool:
        futures = {
            i: pool.submit(venv.build_layer, store, groups[i][1], interpreter, groups[i][0], omit)
            for i in todo
        }
        for future in futures.values():
            future.result()  # raise the first failure
    return [venv.build_layer(store, wheels, interpreter, label, omit) for label, wheels in groups]


def _with_bytecode(
    store: Store,
    base: basemod.BaseImage,
    groups: list[tuple[str, list[tuple[Package, Path]]]],
    workers: int,
    say: Say,
    omit: venv.Omit | None = None,
) -> tuple[list[Layer], list[Layer]]:
    """Package layers and their byte code at once: the compiler is prepared (sources read,
    the base's Python copied out) and runs while the package layers are written, so no core
    waits for the other half."""
    from concurrent.futures import ThreadPoolExecutor

    stop = threading.Event()
    with ThreadPoolExecutor(1, thread_name_prefix="envlock-bytecode") as pool:
        code = pool.submit(_bytecode_layers, store, base, groups, workers, say, stop, omit)
        try:
            package_layers = _build_layers(store, groups, base.interpreter, workers, omit)
        except BaseException:
            stop.set()  # compilers stop at their next file; this error is the one to report
            raise
        return package_layers, code.result()


def _bytecode_layers(
    store: Store,
    base: basemod.BaseImage,
    groups: list[tuple[str, list[tuple[Package, Path]]]],
    workers: int,
    say: Say,
    stop: threading.Event | None = None,
    omit: venv.Omit | None = None,
) -> list[Layer]:
    """A byte-code layer per package layer, compiled by the base's interpreter; cached by
    the package layer's inputs and the base."""
    from envlock.image import bytecode

    interp = base.interpreter
    labels = [label.replace("envlock: pip ", "envlock: byte code ", 1) for label, _ in groups]
    keys = [
        bytecode.layer_key(venv.layer_key([p for p, _ in wheels], interp, omit), base.digest, interp)
        for _, wheels in groups
    ]
    layers = [venv.cached_by_key(store, key, label) for key, label in zip(keys, labels, strict=True)]
    todo = [i for i, found in enumerate(layers) if found is None]
    if todo:
        files = [bytecode.sources(venv.wheel_entries(groups[i][1], interp, omit), interp) for i in todo]
        count = sum(len(f) for f in files)
        files_word = "file" if count == 1 else "files"
        say(f"Compiling {count} Python {files_word} to byte code with the base's {interp.path}")
        streams = [basemod.open_layer(store, la) for la in base.layers]
        try:
            with bytecode.runtime(store, streams, interp, [la.digest for la in base.layers]) as rt:
                tag, pycs = bytecode.compile_all(rt, [f for group in files for f in group], workers, stop)
        finally:
            for stream in streams:
                stream.close()
        start = 0
        for i, group in zip(todo, files, strict=True):
            entries = bytecode.layer_entries(group, pycs[start : start + len(group)], tag)
            start += len(group)
            layer = venv.store_entries(store, entries, labels[i])
            venv.cache_by_key(store, keys[i], layer)
            layers[i] = layer
    return [la for la in layers if la is not None]


def _worker_init() -> None:
    """Worker initializer (Linux, glibc; elsewhere a no-op).

    A build killed with -9 must not leave workers behind (``PR_SET_PDEATHSIG``).  And
    malloc keeps the memory it frees: a layer passes a gigabyte through 1 MiB buffers,
    and glibc's defaults hand each one back to the kernel and fault it in again
    (130,000 page faults, a second of system time, for the torch layer).
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
    with contextlib.suppress(AttributeError):
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: buffers below 64 MiB come from the heap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: and the heap is not trimmed after each


def _base_path(config: dict[str, object]) -> str:
    inner = config.get("config") or {}
    assert isinstance(inner, dict)
    for item in inner.get("Env") or []:
        if isinstance(item, str) and item.startswith("PATH="):
            return item[5:]
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def build_spec(
    spec_path: Path,
    *,
    store: Store,
    platform: str | None = None,
    say: Say | None = None,
    fetch_progress: FetchProgress | None = None,
) -> BuildResult:
    """Build the image of a spec's current lock (refuses a stale or missing lock)."""
    from envlock.locking import current_lock
    from envlock.spec import load

    spec = load(spec_path)
    lock = current_lock(spec)
    return build_lock(
        lock,
        spec.path.parent,
        spec.name,
        store=store,
        platform=platform,
        say=say,
        fetch_progress=fetch_progress,
        file_conflicts=spec.image.file_conflicts,
    )
