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

from envlock import __version__, export
from envlock import lock as lockmod
from envlock.errors import UsageError
from envlock.lock import Lock, Package, PlatformLock
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


def lock_path(spec_path: Path) -> Path:
    return spec_path.with_suffix(".lock")


def fresh_lock(spec: Spec) -> Lock | None:
    """The current lock if it matches the spec and its exports are intact, else ``None``."""
    path = lock_path(spec.path)
    try:
        text = path.read_text("utf-8")
        current = lockmod.parse(text, path)
    except (OSError, lockmod.LockError):
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
        except OSError:
            return None
    return current


@dataclass(frozen=True)
class _Job:
    platform: str
    request: object  # envlock.resolve.Request (imported lazily)
    plan: object | None  # envlock.compat.Plan
    pip_options: tuple[str, ...]


def _jobs(spec: Spec) -> list[_Job]:
    from envlock import compat
    from envlock.resolve import Request

    links = tuple(_local_links(spec).get(link, link) for link in spec.pip.find_links)
    jobs = []
    for platform in spec.platforms:
        plan = compat.plan(spec.framework, platform, spec.python) if spec.framework else None
        priority = plan.priority_indexes if plan else ()
        options: list[str] = []
        if spec.pip.no_index:
            options.append("--no-index")
        if spec.pip.index_url:
            options.append(f"--index-url {spec.pip.index_url}")
        options += [f"--extra-index-url {url}" for url in (*priority, *spec.pip.indexes)]
        options += [f"--find-links {link}" for link in spec.pip.find_links]
        request = Request(
            requirements=(*(plan.requirements if plan else ()), *spec.pip.packages),
            platform=platform,
            python=spec.python,
            index_url=spec.pip.index_url,
            indexes=(*priority, *spec.pip.indexes),
            find_links=links,
            no_index=spec.pip.no_index,
            exclude_newer=spec.pip.exclude_newer,
        )
        jobs.append(_Job(platform, request, plan, tuple(options)))
    return jobs


def _local_links(spec: Spec) -> dict[str, str]:
    """Relative find-links as written in the spec -> absolute paths (symlinks kept)."""
    base = Path.cwd() / spec.path.parent
    return {link: os.path.normpath(base / link) for link in spec.pip.find_links if "://" not in link}


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
    if not upgrade:
        current = fresh_lock(spec)
        if current is not None:
            return LockResult(spec, current, path, (), True, time.perf_counter() - start)
    if spec.conda is not None and spec.conda.packages:
        raise UsageError(
            f"{spec.path}: conda packages are not supported by this envlock version",
            "lock them with pip packages for now, or remove the [conda] table",
        )

    from envlock import compat, resolve
    from envlock.resolve import Request

    engine = resolve.get(resolver)
    jobs = _jobs(spec)  # compat errors surface here, before anything resolves
    engine_version = engine.version()

    started = []
    try:
        for job in jobs:
            assert isinstance(job.request, Request)
            progress(f"Resolving {spec.name} for {job.platform} / Python {spec.python} with {engine_version}")
            started.append((job, time.perf_counter(), engine.start(job.request)))
        load(spec_path)  # strict: invalid requirement strings are bad input, not resolver errors
        from packaging import tags as _tags  # noqa: F401

        from envlock import platforms as _platforms  # noqa: F401  (warm the wheel-tag imports)
    except BaseException:
        for _, _, pending in started:
            pending.cancel()  # type: ignore[attr-defined]
        raise

    platforms = []
    for index, (job, t0, pending) in enumerate(started):
        try:
            packages = pending()
        except BaseException:
            for _, _, later in started[index + 1 :]:
                later.cancel()  # type: ignore[attr-defined]
            raise
        if spec.framework and isinstance(job.plan, compat.Plan):
            compat.check_resolved(
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
                packages=tuple(_relative(packages, spec)),
            )
        )

    meta = {"envlock": __version__, "resolver": engine_version, "resolved-at": _resolved_at()}
    new = lockmod.make(spec.spec_hash, platforms, meta)
    try:
        old = lockmod.read(path)
        if (
            old.env_id == new.env_id
            and old.platforms == new.platforms
            and old.meta.get("resolver") == engine_version
        ):
            # Same resolution: keep the old timestamp so the bytes do not churn.
            new = replace(new, meta={**meta, "resolved-at": old.meta.get("resolved-at", meta["resolved-at"])})
    except lockmod.LockError:
        pass
    files = {path: lockmod.render(new), **export.render_all(new, spec.path)}
    lockmod.write_files(files)
    return LockResult(spec, new, path, tuple(files), False, time.perf_counter() - start)
