"""``envlock lock``: spec -> resolution per platform -> lock + exports, written atomically.

An unchanged spec whose lock and exports are intact returns at once without
resolving.  Every check that can fail on bad input (spec, matrix) runs before
any resolver starts, and nothing is written unless every platform resolved.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from envlock import __version__, export
from envlock import lockfile as lockmod
from envlock.errors import CheckFailed, ResolutionError, SpecError, UsageError
from envlock.lockfile import Lock, Package, PlatformLock
from envlock.spec import Spec, load

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class LockResult:
    spec: Spec
    lock: Lock
    path: Path
    written: tuple[Path, ...]
    up_to_date: bool
    seconds: float
    warnings: tuple[str, ...] = ()  # for ``warning:`` lines: the resolver's, file conflicts


def lock_path(spec_path: Path) -> Path:
    return spec_path.with_suffix(".lock")


def check_lock_path(path: Path) -> None:
    """The lock's path must be a file or nothing yet.

    Raises:
        UsageError: (exit 2) it is a directory, or a fifo, device or socket, naming it.
    """
    import stat

    try:
        mode = path.stat().st_mode
    except OSError:
        return  # missing (or a dangling link): the lock is not there yet
    if stat.S_ISDIR(mode):
        raise UsageError(
            f"{path}: is a directory, not a lock",
            f"move it away; envlock lock {path.with_suffix('.toml')} writes the lock there",
        )
    if not stat.S_ISREG(mode):
        raise UsageError(f"{path}: not a regular file (a device, fifo or socket), not a lock")


def current_lock(spec: Spec) -> Lock:
    """The spec's lock, which must be fresh (:func:`fresh_lock`).

    Raises:
        UsageError: (exit 2) the lock's path is a directory or a special file.
        CheckFailed: (exit 1) the lock does not exist, or is stale or edited by hand.
    """
    path = lock_path(spec.path)
    check_lock_path(path)
    lock = fresh_lock(spec)
    if lock is None:
        if not path.exists():
            raise CheckFailed(f"{path} does not exist", f"run: envlock lock {spec.path}")
        raise CheckFailed(f"{path} is stale or was edited", f"run: envlock lock {spec.path}")
    return lock


def fresh_lock(spec: Spec) -> Lock | None:
    """The current lock if it matches the spec and its exports are intact, else ``None``."""
    path = lock_path(spec.path)
    try:
        text = path.read_text("utf-8")
        current = lockmod.parse(text, path)
    except (OSError, UnicodeDecodeError, lockmod.LockError):
        return None
    if current.spec_hash != spec.spec_hash or lockmod.problems(current):
        return None
    if set(current.platform_names) != set(spec.platforms):
        return None
    if lockmod.render(current) != text:
        return None
    for file, content in export.render_all(current, spec.path).items():
        try:
            if file.read_text("utf-8") != content:
                return None
        except (OSError, UnicodeDecodeError):
            return None
    return current


@dataclass(frozen=True)
class _Job:
    platform: str
    request: object  # envlock.resolve.Request (imported lazily)
    plan: object | None  # envlock.compat.Plan
    pip_options: tuple[str, ...]


def _compat() -> ModuleType:
    """The compat matrix module, imported only for specs with a framework."""
    from envlock import compat

    return compat


def has_conda(spec: Spec) -> bool:
    return spec.conda is not None and bool(spec.conda.packages)


def _jobs(spec: Spec) -> list[_Job]:
    from envlock.resolve import Request

    links = tuple(_local_links(spec).get(link, link) for link in spec.pip.find_links)
    # With conda packages the framework comes from conda (see _conda_requests), not pip.
    pip_framework = spec.framework is not None and not has_conda(spec)
    jobs = []
    for platform in spec.platforms:
        plan = (
            _compat().plan(spec.framework, platform, spec.python, spec.pip.packages)
            if spec.framework and pip_framework
            else None
        )
        priority = plan.priority_indexes if plan else ()
        options: list[str] = []
        if spec.pip.no_index:
            options.append("--no-index")
        if spec.pip.index_url:
            options.append(f"--index-url {spec.pip.index_url}")
        options += [f"--extra-index-url {url}" for url in (*priority, *spec.pip.indexes)]
        options += [f"--find-links {link}" for link in spec.pip.find_links]
        request = Request(
            requirements=(*(plan.requirements if plan else ()), *_direct_refs(spec)),
            platform=platform,
            python=spec.python,
            index_url=spec.pip.index_url,
            indexes=(*priority, *spec.pip.indexes),
            find_links=links,
            no_index=spec.pip.no_index,
            exclude_newer=spec.pip.exclude_newer,
            constraints=plan.constraints if plan else (),  # companions pulled in by other packages
        )
        jobs.append(_Job(platform, request, plan, tuple(options)))
    return jobs


@dataclass(frozen=True)
class _CondaJob:
    request: object  # envlock.resolve.conda.CondaRequest
    plan: object | None  # envlock.compat.CondaPlan


def _conda_jobs(spec: Spec) -> list[_CondaJob]:
    """One conda solve per platform: the spec's packages plus the framework's conda specs."""
    from envlock.resolve import conda

    assert spec.conda is not None
    if not spec.conda.channels:
        raise UsageError(
            f"{spec.path}: [conda] lists packages but no channels",
            'add e.g. channels = ["conda-forge"] or a file:// channel URL',
        )
    channels = tuple(conda.channel_url(c) for c in spec.conda.channels)
    _check_channel_dirs(spec, channels)
    cuda = spec.framework.cuda if spec.framework else "cpu"
    jobs = []
    for platform in spec.platforms:
        plan = _compat().conda_plan(spec.framework, platform, spec.python) if spec.framework else None
        request = conda.CondaRequest(
            channels=channels,
            specs=(*spec.conda.packages, *(plan.specs if plan else ())),
            platform=platform,
            virtual=conda.virtual_packages(platform, cuda, spec.image.base),
            constraints=(f"python {spec.python}.*",),
            spec_dir=spec.path.parent,
        )
        jobs.append(_CondaJob(request, plan))
    return jobs


def _check_channel_dirs(spec: Spec, channels: tuple[str, ...]) -> None:
    """A channel given as a directory relative to the spec must be one (exit 2 naming it),
    rather than a solver's unreadable-channel error (exit 3, for services)."""
    from envlock.spec import is_channel_path

    for channel in channels:
        if is_channel_path(channel) and not (spec.path.parent / channel).is_dir():
            raise UsageError(
                f"{spec.path}: conda channel {channel} is not a directory "
                f"({os.path.normpath(Path.cwd() / spec.path.parent / channel)})",
                "a ./PATH or ../PATH channel is a directory relative to the spec, "
                "holding a repodata.json per subdir (noarch/ at least)",
            )


def _solve_conda(spec: Spec, jobs: list[_CondaJob], resolver: str, progress: Progress) -> dict[str, object]:
    """platform -> envlock.resolve.conda.Solution; checks the framework came from conda."""
    from envlock.resolve import conda

    requests = [j.request for j in jobs]
    assert all(isinstance(r, conda.CondaRequest) for r in requests)
    t0 = time.perf_counter()
    names = ", ".join(spec.platforms)
    if resolver == "conda-lock":
        binary = conda.conda_binary()
        assert binary is not None
        progress(f"Solving conda packages of {spec.name} for {names} with conda-lock ({binary})")
        solutions = conda.solve_with_conda_lock(requests, binary)  # type: ignore[arg-type]
    else:
        progress(f"Solving conda packages of {spec.name} for {names} with {conda.version()}")
        solutions = conda.solve_all(requests)  # type: ignore[arg-type]
    for job, solution in zip(jobs, solutions, strict=True):
        if spec.framework and isinstance(job.plan, _compat().CondaPlan):
            _compat().check_conda_resolved(
                spec.framework,
                job.plan,
                solution.platform,
                {p.name: p.version for p in solution.packages},
            )
    count = sum(len(s.packages) for s in solutions)
    progress(f"Solved {count} conda packages in {time.perf_counter() - t0:.1f}s")
    return {s.platform: s for s in solutions}


def _check_base_python(spec: Spec) -> tuple[str, ...]:
    """The base must be able to provide the spec's Python (``debian:SUITE`` by envlock's
    release table, other bases when the store has read them before): exit 2 before
    anything is resolved, rather than a failed bootstrap at build time.  Without a base
    the lock is still useful (exports, other platforms), so a Python no default base has
    is a warning (returned) about ``envlock build``."""
    from envlock.image.base import python_problem
    from envlock.store import default_home

    problem = python_problem(spec.image.base, spec.python, home=default_home(), spec_dir=spec.path.parent)
    if problem is None:
        return ()
    if spec.image.base is None:
        return (f"envlock build needs an [image] base for this spec: {problem.message}",)
    raise SpecError(f"{spec.path}: {problem.message}", problem.hint)


def _known_conflicts(spec: Spec, platform: str, packages: list[Package]) -> tuple[str, ...]:
    """Files two packages write with different content, among the wheels at hand (local
    find-links files, or wheels already in the store): warnings, or with ``[image]
    file-conflicts = "error"`` exit 2 before the lock is written.  Remote wheels are
    checked when the image is built (see README: file conflicts)."""
    from envlock.image import conflicts
    from envlock.store import Store, default_home

    home = default_home()
    wheels = conflicts.at_hand(packages, spec.path.parent, home)
    if len(wheels) < 2:
        return ()
    store = Store(home) if home.is_dir() else None  # its file indexes, when there is one
    messages = conflicts.enforce(conflicts.scan(wheels, spec.python, store), spec.image.file_conflicts)
    return tuple(f"{platform}: {m}" if len(spec.platforms) > 1 else m for m in messages)


def _check_resolver(resolver: str, spec: Spec) -> None:
    if resolver != "conda-lock":
        return
    from envlock.resolve import conda

    if not has_conda(spec):
        raise UsageError(
            f"--resolver conda-lock solves conda packages, and {spec.path} has none",
            "drop --resolver, or add a [conda] table",
        )
    if conda.conda_binary() is None:
        raise UsageError(
            "--resolver conda-lock needs a conda, mamba or micromamba executable on PATH; none was found",
            "install micromamba, or drop --resolver to solve in-process with py-rattler",
        )


def _resolve_on_top(engine: object, request: object, solution: object) -> Any:
    """pip on top of conda: what conda provides is offered to pip as already there, at
    conda's version, and left out of the pip set (see ``resolve.conda.provided_constraints``)."""
    import tempfile

    from envlock.resolve import Engine, Request, Resolved, conda

    assert (
        isinstance(engine, Engine) and isinstance(request, Request) and isinstance(solution, conda.Solution)
    )
    with tempfile.TemporaryDirectory(prefix="envlock-conda-provided-") as tmp:
        constraints = conda.provided_constraints(solution.python_names, Path(tmp))
        on_top = replace(
            request,
            find_links=(*request.find_links, tmp),
            constraints=(*request.constraints, *constraints),
        )
        try:
            resolved = engine.resolve(on_top)
        except ResolutionError as exc:
            provided = ", ".join(f"{n} {v}" for n, v in sorted(solution.python_names.items()))
            raise ResolutionError(
                f"{exc.message} (conda provides: {provided})",
                "pip must use the conda packages' versions: change the [conda] pin or the pip requirement",
            ) from None
    kept = conda.drop_provided(resolved.packages, solution.python_names, request.platform)
    return Resolved(kept, resolved.warnings)


def _local_links(spec: Spec) -> dict[str, str]:
    """Relative find-links as written in the spec -> absolute paths (symlinks kept)."""
    base = Path.cwd() / spec.path.parent
    return {link: os.path.normpath(base / link) for link in spec.pip.find_links if "://" not in link}


def _direct_refs(spec: Spec) -> tuple[str, ...]:
    """The spec's pip packages for the resolver (relative paths made absolute)."""
    if not any("@" in r.split(";")[0] for r in spec.pip.packages):
        return spec.pip.packages
    from envlock import directrefs

    return directrefs.for_resolver(spec.pip.packages, spec.path)


def _from_source(
    packages: list[Package], spec: Spec, request: object, say: Progress, memo: dict[Any, Package]
) -> list[Package]:
    """Lock entries as written (see ``envlock.directrefs``); sdists, URLs, git and paths built
    into wheels now, so a spec whose image cannot be built fails here (``envlock.sources``)."""
    if not any(p.needs_build or p.source for p in packages):
        return _relative(packages, spec)
    from envlock import directrefs, sources
    from envlock.store import Store

    located = directrefs.as_locked(_relative(packages, spec), spec.pip.packages, spec.path)
    return sources.prepare(
        Store(), located, request, spec.path.parent, lambda ps: _relative(ps, spec), say, memo
    )


def _relative(packages: list[Package], spec: Spec) -> list[Package]:
    """Files from a relative find-links directory are recorded by a path relative to the
    spec (``../wheels/x.whl``), so the lock is the same on every checkout."""
    from urllib.parse import unquote, urlparse

    links = [(w, a) for w, a in _local_links(spec).items() if not Path(w).is_absolute()]
    out = []
    for p in packages:
        if p.url.startswith("file://"):
            local = unquote(urlparse(p.url).path)
            for written, absolute in links:
                if local.startswith(absolute.rstrip("/") + "/"):
                    rest = os.path.relpath(local, absolute)
                    p = replace(p, url=Path(written, rest).as_posix())
                    break
        out.append(p)
    return out


def _base_digest(base: str | None) -> str:
    if base and "@sha256:" in base:
        return "sha256:" + base.rsplit("@sha256:", 1)[1]
    return ""


def _resolved_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    now = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch else dt.datetime.now(dt.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


_SAME_RUN = ("spec-hash = ", "envlock = ", "resolved-at = ")


def _keep_timestamp(new: Lock, path: Path) -> tuple[Lock, str]:
    """The lock to write and its text.  If the old lock holds the same resolution (same
    packages, env ID and resolver; the spec's wording and envlock's version aside), its
    ``resolved-at`` is kept so that the bytes do not churn.  Compares canonical texts
    rather than parsing the old lock, and renders once: the two candidates differ only
    in the ``resolved-at`` line."""
    import re

    now = new.meta.get("resolved-at", "")
    try:
        old = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        old = ""
    stamp = re.search(r'^resolved-at = "([^"]+)"$', old, re.M)
    if stamp is None or stamp.group(1) == now:
        return new, lockmod.render(new)
    kept = replace(new, meta={**new.meta, "resolved-at": stamp.group(1)})
    candidate = lockmod.render(kept)

    def essence(t: str) -> list[str]:
        return [ln for ln in t.splitlines() if not ln.startswith(_SAME_RUN)]

    if essence(candidate) == essence(old):
        return kept, candidate
    line = f'resolved-at = "{stamp.group(1)}"'
    return new, candidate.replace(line, f'resolved-at = "{now}"', 1)


def _unchanged(files: dict[Path, str]) -> bool:
    for file, content in files.items():
        try:
            if file.read_text("utf-8") != content:
                return False
        except (OSError, UnicodeDecodeError):
            return False
    return True


def check_required_hashes(spec: Spec, platforms: list[PlatformLock]) -> None:
    """Every locked pip package named in ``[pip.require-hashes]`` must have one of its digests.

    Raises:
        CheckFailed: (exit 1) naming each package whose locked file has another hash.
    """
    allowed = dict(spec.pip.require_hashes)
    if not allowed:
        return
    problems = []
    for platform in platforms:
        for package in platform.packages:
            digests = allowed.get(package.name)
            if package.manager == "pip" and digests and f"sha256:{package.sha256}" not in digests:
                problems.append(f"{package.name} {package.version} ({platform.name})")
    if problems:
        raise CheckFailed(
            f"locked files whose sha256 the spec's require-hashes does not allow: {', '.join(problems)}",
            "the source file pinned other files: check the index, or update [pip.require-hashes]",
        )


def lock_spec(
    spec_path: Path,
    *,
    upgrade: bool = False,
    resolver: str = "uv",
    progress: Progress = _quiet,
) -> LockResult:
    start = time.perf_counter()
    # Cheap validation first; the PEP 440/508 checks (slow imports) run while uv resolves.
    spec = load(spec_path, strict=False)
    path = lock_path(spec.path)
    check_lock_path(path)  # before resolving: the lock could not be written there
    if not upgrade:
        current = fresh_lock(spec)
        if current is not None:
            return LockResult(spec, current, path, (), True, time.perf_counter() - start)
    from envlock import resolve
    from envlock.resolve import Request

    base_warnings = _check_base_python(spec)
    _check_resolver(resolver, spec)
    engine = resolve.get("uv" if resolver == "conda-lock" else resolver)
    jobs = _jobs(spec)  # compat errors surface here, before anything resolves
    conda_jobs = _conda_jobs(spec) if has_conda(spec) else []
    needs_pip = not conda_jobs or any(j.request.requirements for j in jobs)  # type: ignore[attr-defined]
    engine_version = engine.version() if needs_pip else ""
    solutions = _solve_conda(spec, conda_jobs, resolver, progress) if conda_jobs else {}
    channels = conda_jobs[0].request.channels if conda_jobs else ()  # type: ignore[attr-defined]
    if solutions:
        from envlock.resolve import conda

        solver = conda.version() if resolver != "conda-lock" else "conda-lock"
        engine_version = f"{engine_version}, {solver}" if engine_version else solver

    def pending_for(job: _Job) -> Any:
        """Start a job's pip resolution now (uv in the background) or defer it."""
        assert isinstance(job.request, Request)
        solution = solutions.get(job.platform)
        if not job.request.requirements:
            return None
        progress(f"Resolving {spec.name} for {job.platform} / Python {spec.python} with {engine_version}")
        if solution is not None and getattr(solution, "python_names", None):
            request = job.request

            def on_top() -> Any:
                return _resolve_on_top(engine, request, solution)

            on_top.cancel = lambda: None  # type: ignore[attr-defined]
            return on_top
        return engine.start(job.request)

    started: list[tuple[_Job, float, Any]] = []
    try:
        for job in jobs:
            started.append((job, time.perf_counter(), pending_for(job)))
        load(spec_path)  # strict: invalid requirement strings are bad input, not resolver errors
        from packaging import tags as _tags  # noqa: F401

        from envlock import platforms as _platforms  # noqa: F401  (warm the wheel-tag imports)
    except BaseException:
        for _, _, pending in started:
            if pending is not None:
                pending.cancel()
        raise

    platforms = []
    built: dict[Any, Package] = {}  # what was built from source, for the next platform
    warnings: list[str] = list(base_warnings)
    for index, (job, t0, pending) in enumerate(started):
        solution = solutions.get(job.platform)
        conda_packages: tuple[Package, ...] = ()
        if solution is not None:
            from envlock.resolve import conda

            assert isinstance(solution, conda.Solution)
            conda_packages = solution.packages
        packages: list[Package] = []
        if pending is not None:
            try:
                resolved = pending()
                packages = _from_source(resolved.packages, spec, job.request, progress, built)
            except BaseException:
                for _, _, later in started[index + 1 :]:
                    if later is not None:
                        later.cancel()
                raise
            warnings += resolved.warnings
            if spec.framework and isinstance(job.plan, _compat().Plan):
                _compat().check_resolved(
                    spec.framework, job.plan, job.platform, {p.name: p.version for p in packages}
                )
            took = time.perf_counter() - t0
            progress(f"Resolved {len(packages)} packages for {job.platform} in {took:.1f}s")
        platforms.append(
            PlatformLock(
                name=job.platform,
                python=spec.python,
                cuda=spec.framework.cuda if spec.framework else "cpu",
                base=spec.image.base or "",
                base_digest=_base_digest(spec.image.base),
                pip_options=job.pip_options,
                env=spec.image.env,
                workdir=spec.image.workdir,
                system=tuple(sorted(spec.image.system)),
                conda_channels=channels if conda_packages else (),
                bytecode=spec.image.bytecode,
                packages=(*conda_packages, *packages),
            )
        )

    for plat in platforms:  # every resolver has finished: an error here leaves nothing running
        warnings += _known_conflicts(spec, plat.name, list(plat.packages))
    if any(p.url.startswith("file://") for plat in platforms for p in plat.packages):
        from envlock.directrefs import absolute_locations

        warnings += absolute_locations([p for plat in platforms for p in plat.packages])
    check_required_hashes(spec, platforms)
    meta = {"envlock": __version__, "resolver": engine_version, "resolved-at": _resolved_at()}
    new = lockmod.make(spec.spec_hash, platforms, meta)
    new, text = _keep_timestamp(new, path)
    files = {path: text, **export.render_all(new, spec.path)}
    said = tuple(dict.fromkeys(warnings))
    if _unchanged(files):
        return LockResult(spec, new, path, tuple(files), False, time.perf_counter() - start, said)
    lockmod.write_files(files)
    return LockResult(spec, new, path, tuple(files), False, time.perf_counter() - start, said)
