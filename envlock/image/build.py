"""Assemble an image from a lock: base + venv skeleton + package layers + lock layer.

The image ID (config digest) is a pure function of the lock and the base image:
no clock, host path, umask, locale or user name reaches a layer or the config.
A lock whose image is already in the store is not built again.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from envlock import lockfile as lockmod
from envlock.errors import CheckFailed, EnvlockError, UsageError, raise_all
from envlock.image import base as basemod
from envlock.image import buildcache, venv
from envlock.image import conda as condamod
from envlock.image import layer as layermod
from envlock.image import plan as planmod
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
    name is lower case (distribution spec, "Pulling manifests": ``[a-z0-9]+...``).

    A spec name may end in ``-``/``_`` or join words with ``_-`` or ``___``, which no engine
    or registry takes as a repository (``invalid reference format``): such a run of separators
    becomes ``-`` and a trailing one is dropped; names that are valid already are unchanged."""
    repo = re.sub(
        r"[-_]+",
        lambda m: m.group() if re.fullmatch(r"_{1,2}|-+", m.group()) else "-",
        name.lower().rstrip("-_"),
    )
    return f"envlock/{repo}:{env_id.split(':')[1][:16]}-{platform}"


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
    plat: PlatformLock, lock_dir: Path, store: Store, file_conflicts: str = "warn", *, cached: bool = False
) -> list[EnvlockError]:
    """Every problem knowable before a base is bootstrapped or pulled and before anything is
    downloaded: the base's Python (``envlock.suites`` for ``debian:SUITE``, the store's
    inspection for other bases), locked files that cannot install on the platform (an sdist,
    a wheel's tags), local files that are gone, and, with ``file_conflicts = "error"``,
    conflicts among the wheels already at hand.  With a build cache (``cached``), a local file
    that is gone is not a problem yet: the cache may have its layer.  Returns them all;
    raises nothing."""
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
        if cached or store.has_artifact(p.sha256) or ("://" in p.url and not p.url.startswith("file://")):
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


_NOT_FETCHED = Path("/nonexistent/envlock-not-fetched")  # a wheel whose layer came from a cache: never read


@dataclass(frozen=True)
class _Layout:
    """The package (and byte-code, and conda) layers of a build and their build keys, known
    from the lock and the plan alone, before any wheel is at hand."""

    groups: list[tuple[str, list[Package]]]  # (created_by, packages) per package layer
    omit: venv.Omit
    interpreter: venv.Interpreter
    base: basemod.BaseImage
    bytecode: bool
    conda: list[Package]

    @property
    def package_keys(self) -> list[str]:
        return [venv.layer_key(ps, self.interpreter, self.omit) for _, ps in self.groups]

    @property
    def bytecode_keys(self) -> list[str]:
        if not self.bytecode:
            return []
        from envlock.image import bytecode

        interp = self.base.interpreter
        return [bytecode.layer_key(k, self.base.digest, interp) for k in self.package_keys]

    def _layers(self) -> list[tuple[str, str, list[Package]]]:
        """(key, created_by, inputs) of every layer."""
        out = [(k, label, ps) for k, (label, ps) in zip(self.package_keys, self.groups, strict=True)]
        if self.bytecode:
            out += [
                (k, label.replace("envlock: pip ", "envlock: byte code ", 1), ps)
                for k, (label, ps) in zip(self.bytecode_keys, self.groups, strict=True)
            ]
        if self.conda:
            label = f"envlock: conda {len(self.conda)} packages"
            out.append((condamod.layer_key(self.conda, self.interpreter.version), label, self.conda))
        return out

    def missing(self, store: Store) -> list[tuple[str, str]]:
        """(key, created_by) of the layers not in the store's layer cache."""
        return [(k, label) for k, label, _ in self._layers() if venv.cached_by_key(store, k, label) is None]

    def inputs_of_missing(self, store: Store) -> list[Package]:
        """The packages the missing layers are made from (to download)."""
        out: dict[str, Package] = {}
        for k, label, ps in self._layers():
            if venv.cached_by_key(store, k, label) is None:
                out.update((p.sha256, p) for p in ps)
        return list(out.values())


def _base_entry(store: Store, key: str, base: basemod.BaseImage) -> buildcache.Entry:
    """The build cache entry of a Debian base: its layers, manifest, config and packages."""
    manifest = store.read_blob(base.manifest)
    record = basemod.debian_record(store, key) or {}
    data = {
        "manifest": manifest.decode(),
        "config": store.read_blob(store.read_manifest(base.manifest).config.digest).decode(),
        "suite": str(record.get("suite", "")),
        "python": base.interpreter.version,
        "packages": list(record.get("packages", [])),
    }
    return buildcache.Entry("base", key, base.layers, data)


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
    cache: buildcache.RemoteCache | None = None,
    reuse: bool = True,
) -> BuildResult:
    """Build (or find in the store) the image of one platform of ``lock``.

    Everything knowable up front is checked before any download (:func:`precheck`), and
    every problem is reported (:class:`envlock.errors.Problems`).  Two packages writing
    one path are decided over the whole image (``envlock.image.conflicts``):
    ``file_conflicts`` ``"warn"`` returns the warnings in the result, ``"error"`` raises.

    With a build ``cache`` (``envlock.image.buildcache``), the base, the plan and every
    layer are looked up there by build key first; only the wheels of layers it does not
    have are downloaded.  The image is the same either way.  ``reuse = False`` builds (from
    the layer cache) even when the store has the image, so its build keys are known.
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
    if reuse and existing is not None and existing.name == name:
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

    raise_all(precheck(plat, lock_dir, store, file_conflicts, cached=cache is not None))
    pip = [p for p in plat.packages if p.manager == "pip"]
    plan_key = planmod.key(pip, plat.python)
    plan = cache.plan(plan_key, pip) if cache is not None and pip else None
    if cache is not None and plan is None:
        # without a plan every wheel is read: one that is gone fails the build here, not
        # after a base was bootstrapped or pulled (conflicts were checked just now)
        gone = precheck(plat, lock_dir, store, "warn")
        if gone and not cache.warnings:  # (an unavailable cache or a refused plan says why itself)
            say(f"The build cache {cache.where} has no build plan for this lock: every wheel is needed")
        raise_all(gone)
    conda = [p for p in plat.packages if p.manager == "conda"]
    reference = plat.base or basemod.default_base(plat.python)
    located = reference
    if reference.startswith("oci:") and not Path(reference[4:].split("@")[0]).is_absolute():
        located = "oci:" + str(lock_dir.absolute() / reference[4:])
    base = basemod.resolve(store, located, plat.python, plat.system, say, cache)
    if plat.base_digest and plat.base_digest != base.digest:
        raise CheckFailed(
            f"base {reference} resolved to {base.digest}, the lock pins {plat.base_digest}",
            "the base changed since it was locked; re-lock or restore the base",
        )
    entries: list[buildcache.Entry] = []  # what this image is made of, by build key
    if reference.startswith("debian:"):
        key = basemod.debian_key(reference.split(":", 1)[1], plat.python, plat.system)
        entries.append(_base_entry(store, key, base))

    every = [*conda, *pip]
    # With conda's own python, /opt/env is a conda prefix and its interpreter is conda's;
    # otherwise it is a virtual environment on the base's interpreter, conda files added.
    conda_python = condamod.has_python(conda)
    interpreter = (
        venv.Interpreter(f"{venv.PREFIX}/bin/python{plat.python}", plat.python)
        if conda_python
        else base.interpreter
    )
    needed = every
    if cache is not None and plan is not None:  # every layer's key is known: fetch only the
        # wheels of the layers neither here nor in the cache
        layout = _Layout(plan.groups(pip), plan.decision(pip).omit, interpreter, base, plat.bytecode, conda)
        cache.layers(layout.missing(store))
        needed = layout.inputs_of_missing(store)
        # the wheels read anyway check the plan, with those sharing a conflict with them
        named = plan.companions({p.name for p in needed if p.manager == "pip"})
        needed = [*needed, *(p for p in pip if p.name in named and p not in needed)]

    from envlock.credentials import sources_from_options
    from envlock.fetch import fetch_all

    sources = (*sources_from_options(plat.pip_options), *plat.conda_channels)

    def fetch(needed: list[Package]) -> tuple[set[str], dict[str, Path], list[tuple[Package, Path]]]:
        """(sha256 of the downloads, artifact paths, pip wheels) for the ``needed`` packages."""
        fetched = _to_fetch(store, needed, plat.python)
        missing = [p for p in fetched if not store.has_artifact(p.sha256)]
        if missing:
            total = sum(p.size or 0 for p in missing)
            say(f"Fetching {len(missing)} of {len(fetched)} packages ({total / 1e6:.0f} MB)")
        paths = fetch_all(store, fetched, lock_dir, progress=fetch_progress, sources=sources)
        wheels = _wheels(store, [p for p in pip if p in needed], paths, lock_dir, plat.python, say)
        # checked just now: downloads by their sha256, wheels built from source by their content digest
        return {p.sha256 for p in missing} | {p.sha256 for p in pip if p.built}, paths, wheels

    checked, paths, wheels = fetch(needed)
    from envlock.image import conflicts

    if cache is not None and plan is not None:
        why = plan.contradiction(wheels, plat.python, store, checked)
        if why is not None:  # decided here, from every wheel, as without a plan
            cache.refuse("plan", plan_key, why)
            plan = None
            checked, paths, wheels = fetch(every)
    if plan is None:
        decision = conflicts.scan(wheels, plat.python, store, verified=checked)
        plan = planmod.Plan.decided(wheels, decision)
        layout = _Layout(plan.groups(pip), decision.omit, interpreter, base, plat.bytecode, conda)
        if cache is not None:
            cache.layers(layout.missing(store))
    else:
        decision = plan.decision(pip)
    warnings = conflicts.enforce(decision, file_conflicts)
    if pip:
        entries.append(buildcache.Entry("plan", plan_key, data={"plan": plan.to_json()}))

    say(f"Assembling {name} for {plat.name} on {reference} ({len(every)} packages)")
    at = {p.name: (p, path) for p, path in wheels}  # a wheel built from source: its own file
    groups = [(label, [at.get(p.name, (p, _NOT_FETCHED)) for p in ps]) for label, ps in layout.groups]
    first: list[Layer] = []
    if not conda_python:
        first.append(
            venv.store_entries(store, venv.skeleton_entries(base.interpreter), "envlock: venv /opt/env")
        )
    if conda:
        conda_layer = condamod.build_layer(
            store,
            [(p, paths.get(p.sha256, _NOT_FETCHED)) for p in conda],
            plat.python,
            f"envlock: conda {len(conda)} packages",
        )
        first.append(conda_layer)
        entries.append(buildcache.Entry("layer", condamod.layer_key(conda, plat.python), (conda_layer,)))
    omit = decision.omit
    if plat.bytecode:
        package_layers, code_layers = _with_bytecode(store, base, groups, workers, say, omit)
    else:
        package_layers, code_layers = _build_layers(store, groups, interpreter, workers, omit), []
    for key, layer in zip(layout.package_keys, package_layers, strict=True):
        entries.append(buildcache.Entry("layer", key, (layer,)))
    for key, layer in zip(layout.bytecode_keys, code_layers, strict=True):
        entries.append(buildcache.Entry("layer", key, (layer,)))
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
    buildcache.remember(store, manifest_digest, entries)
    if cache is not None:
        warnings = (*warnings, *cache.warnings)
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

    todo = [i for i in range(len(groups)) if venv.cached(store, groups[i][1], interpreter, omit) is None]
    todo.sort(key=lambda i: -sum(p.stat().st_size for _, p in groups[i][1]))
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
    cache: buildcache.RemoteCache | None = None,
    reuse: bool = True,
) -> BuildResult:
    """Build the image of a spec's current lock (refuses a stale or missing lock); ``cache``
    and ``reuse`` as for :func:`build_lock`."""
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
        cache=cache,
        reuse=reuse,
    )
