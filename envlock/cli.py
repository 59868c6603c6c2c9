"""The command line: parse, call one library function, print.  No logic lives here.

Output meant for scripts (env IDs, exports) goes to stdout; progress and
messages go to stderr.  Expected failures print ``error:``/``hint:`` lines and
exit with the error's code (2 bad input, 1 failed check, 3 service missing).
Heavy modules are imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from envlock import __version__
from envlock.errors import EXIT_BAD_INPUT, EXIT_UNAVAILABLE, EnvlockError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message}\nhint: see `{self.prog} --help`\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _out(chunk: bytes) -> None:
    """A running container's output, as it comes."""
    sys.stdout.buffer.write(chunk)
    sys.stdout.flush()


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _warn(message: str) -> None:
    _say(f"warning: {message}")


def _default_specs() -> list[Path]:
    from envlock.spec import discover

    found = discover(Path("specs"))
    if not found:
        raise UsageError(
            "no specs given and none found in specs/", "name spec files, or run: envlock init NAME"
        )
    return found


def cmd_init(args: argparse.Namespace) -> int:
    if args.source is not None:
        from envlock.init import import_spec

        imported = import_spec(
            args.name,
            Path(args.source),
            Path(args.dir),
            extras=tuple(args.extra),
            force=args.force,
            exclude_newer=None if args.exclude_newer == "none" else args.exclude_newer,
        )
        for warning in imported.warnings:
            _say(f"warning: {warning}")
        spec = imported.spec
        _say(f"Wrote {spec} from {args.source} ({imported.kind}); lock it with: envlock lock {spec}")
        print(imported.spec)
        return 0
    from envlock.init import setup

    done = setup(
        args.name,
        args.template,
        Path(args.dir),
        force=args.force,
        pre_commit=args.pre_commit,
        hook_repo=args.hook_repo,
        hook_rev=args.hook_rev,
    )
    if done.config is not None:
        if done.config_changed:
            _say(f"Added the envlock-verify hook to {done.config}; run: pre-commit install")
        else:
            _say(f"{done.config} already has the envlock-verify hook")
    if done.spec is not None:
        _say(f"Wrote {done.spec}; lock it with: envlock lock {done.spec}")
        print(done.spec)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    from envlock.layout import select
    from envlock.locking import lock_spec

    quiet = args.quiet or args.hook
    progress = (lambda _m: None) if quiet else _say
    if args.hook:
        specs = list(select(Path(f) for f in args.specs).specs)
    else:
        specs = [Path(s) for s in args.specs] or _default_specs()
    changed = 0
    for spec in specs:
        result = lock_spec(spec, upgrade=args.upgrade, resolver=args.resolver, progress=progress)
        for warning in result.warnings:
            _say(f"warning: {warning}")
        if args.hook:
            if not result.up_to_date:
                changed += 1
                _say(f"re-locked {spec}; review and stage {result.path} and its exports")
            continue
        if not args.quiet:
            if result.up_to_date:
                _say(f"{result.path} is up to date ({result.seconds * 1000:.0f} ms)")
            else:
                count = sum(len(p.packages) for p in result.lock.platforms)
                exports = len(result.written) - 1
                took = f"{result.seconds:.1f}s"
                _say(f"Locked {result.path}: {count} packages, {exports} exports, {took}")
        print(f"{result.lock.env_id}  {result.path}")
    return 1 if changed else 0


def cmd_verify(args: argparse.Namespace) -> int:
    from envlock.verify import check

    paths = [Path(f) for f in args.files] if args.files else None
    report = check(paths, staged=args.staged or args.hook, records=args.records)
    if paths is None and not report.specs and not report.problems:
        raise UsageError(
            "no specs given and none found in specs/", "name spec files, or run: envlock init NAME"
        )
    for problem in report.problems:
        print(problem)
    if report.problems:
        _say(f"{len(report.problems)} problem(s) in {len(report.specs)} spec(s)")
        if args.hook:
            _say("hint: after fixing, stage each spec with its lock and exports")
        return 1
    if not (args.quiet or args.hook):
        skipped = f"; ignored {len(report.ignored)} other file(s)" if report.ignored else ""
        _say(f"{len(report.specs)} spec(s) verified{skipped}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from envlock import export, lockfile
    from envlock.errors import CheckFailed
    from envlock.spec import load

    if args.output:
        from envlock.boundary import check_output

        check_output(Path(args.output), "-o FILE", make_parents=False)
    spec = load(args.spec)
    current = lockfile.read(spec.path.with_suffix(".lock"))
    if current.spec_hash != spec.spec_hash:
        raise CheckFailed(f"{spec.path.with_suffix('.lock')} is stale", f"run: envlock lock {spec.path}")
    text = export.render(current, spec.path, args.format, args.platform)
    if args.output:
        lockfile.write_files({Path(args.output): text})
        _say(f"Wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    from envlock import compat
    from envlock.output import table

    names = [args.name] if args.name else ["pytorch", "tensorflow", "jax", "cuda"]
    for i, name in enumerate(names):
        if name not in ("pytorch", "tensorflow", "jax", "cuda"):
            raise UsageError(f"unknown matrix {name!r}", "choose one of: pytorch, tensorflow, jax, cuda")
        headers, rows = compat.rows(name)
        extra_headers, extra = compat.companion_rows(name) if name != "cuda" else ([], [])
        if args.json:
            import json

            records = [dict(zip(headers, r, strict=True)) for r in rows]
            for record, more in zip(records, extra, strict=False):
                record.update(zip(extra_headers[1:], more[1:], strict=True))
            print(json.dumps(records, indent=2))
            continue
        if len(names) > 1:
            print(("\n" if i else "") + name)
        print(table(headers, rows))
        if extra:
            print("\n" + table(extra_headers, extra))
    return 0


def _store(args: argparse.Namespace) -> Any:
    from envlock.store import Store

    return Store(Path(args.store) if getattr(args, "store", None) else None)


def cmd_build(args: argparse.Namespace) -> int:
    from envlock.image.oci import check_archive_target, check_layout_target

    if args.oci:  # a bad target is refused before anything is built
        check_layout_target(Path(args.oci))
    if args.docker_archive:
        check_archive_target(Path(args.docker_archive))
    store = _store(args)
    with store.using():  # gc waits until the image is built and exported
        return _build(args, store)


def _build(args: argparse.Namespace, store: Any) -> int:
    from envlock.image.build import build_spec, image_ref
    from envlock.progress import FetchProgress

    say = (lambda _m: None) if args.quiet else _say
    if args.engine == "docker":
        from envlock.dockerfile import build_with_docker

        print(build_with_docker(Path(args.spec), store=store, say=say, platform=args.platform))
        return 0
    cache = _build_cache(args, store, say)
    with FetchProgress(enabled=None if not args.quiet else False) as progress, _cache_warnings(cache):
        result = build_spec(
            Path(args.spec),
            store=store,
            platform=args.platform,
            say=say,
            fetch_progress=progress,
            cache=cache,
        )
    for warning in result.warnings:
        _say(f"warning: {warning}")
    image = result.image
    if result.reused:
        say(f"Image {image.image_id[:19]} is in the store already ({result.seconds:.2f}s)")
    else:
        size = sum(la.size for la in image.layers)
        took = f"{result.seconds:.1f}s"
        say(f"Built {image.image_id[:19]}: {len(image.layers)} layers, {size / 1e6:.0f} MB, {took}")
    name = image.annotations.get("org.opencontainers.image.ref.name") or image_ref(
        Path(args.spec).stem, result.env_id, result.platform
    )
    if args.oci:
        from envlock.image.oci import write_layout

        write_layout(store, image, Path(args.oci), name.rsplit(":", 1)[-1])
        say(f"Wrote OCI layout {args.oci}")
    if args.docker_archive:
        from envlock.image.oci import write_docker_archive

        write_docker_archive(store, image, Path(args.docker_archive), [name])
        say(f"Wrote docker-archive {args.docker_archive}")
    if args.load:
        from envlock import engine

        engine.load(store, image, [name], say)
        say(f"Loaded into the Docker engine as {name}")
    print(image.image_id)
    if args.push:
        from envlock.image import registry

        pushed = registry.push(store, image, args.push, say, compression=args.compression)
        print(pushed)
        if args.cache is not None:  # published only when asked here: $ENVLOCK_CACHE is only read
            _publish(args, store, result, say)
    return 0


def _cache_reference(args: argparse.Namespace) -> str | None:
    """``--cache`` (checked: an empty one is a mistake, not "no cache"), else
    ``$ENVLOCK_CACHE`` (unset or empty: no cache)."""
    if args.cache is None:
        return os.environ.get("ENVLOCK_CACHE") or None
    from envlock.image.buildcache import target

    target(args.cache)
    return str(args.cache)


@contextlib.contextmanager
def _cache_warnings(cache: Any) -> Iterator[None]:
    """A build that fails still says what its build cache refused or could not reach (a
    successful one returns them with its other warnings)."""
    try:
        yield
    except EnvlockError:
        for warning in cache.warnings if cache is not None else ():
            _warn(warning)
        raise


def _build_cache(args: argparse.Namespace, store: Any, say: Any) -> Any:
    """The ``--cache`` (or ``$ENVLOCK_CACHE``) build cache to read, if any."""
    reference = _cache_reference(args)
    if reference is None:
        return None
    from envlock.image.buildcache import RemoteCache

    return RemoteCache(reference, store, say)


def _publish(args: argparse.Namespace, store: Any, result: Any, say: Any) -> None:
    from envlock.image import buildcache

    entries = buildcache.entries_of(result, Path(args.spec), store, say)
    done = buildcache.publish(store, entries, _cache_reference(args) or "", say, compression=args.compression)
    for warning in done.warnings:
        _warn(warning)
    say(f"Build cache: {done.added} entries added, {done.present} already there, {done.replaced} replaced")


def cmd_cache(args: argparse.Namespace) -> int:
    from envlock.image import buildcache

    reference = _cache_reference(args)
    if reference is None:
        raise UsageError(
            "no build cache given", "envlock cache push SPEC --cache REGISTRY/REPO (or set ENVLOCK_CACHE)"
        )
    buildcache.target(reference)
    say = (lambda _m: None) if args.quiet else _say
    store = _store(args)
    specs = [Path(s) for s in args.specs] or _default_specs()
    with store.using():
        for spec in specs:
            reader = buildcache.RemoteCache(reference, store, say)
            with _cache_warnings(reader):
                result, done = buildcache.push_spec(
                    spec,
                    reference,
                    store=store,
                    platform=args.platform,
                    say=say,
                    compression=args.compression,
                    cache=reader,
                )
            for warning in (*result.warnings, *done.warnings):
                _warn(warning)
            say(f"{spec}: {done.added} entries added, {done.present} already there, {done.replaced} replaced")
            print(result.image.image_id)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from envlock.image import registry

    store = _store(args)
    with store.using():
        digest = registry.pull(store, args.reference, None if args.quiet else _say)
        manifest = store.read_manifest(digest)
        store.tag(
            args.reference.replace("@", "-").replace("/", "_").replace(":", "_"),
            digest,
            len(store.read_blob(digest)),
        )
    print(manifest.config.digest)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from envlock import engine
    from envlock.image.build import build_spec

    store = _store(args)
    command = args.command
    if not command:
        raise UsageError("no command given", "envlock run SPEC -- python train.py")
    from envlock.locking import fresh_lock
    from envlock.spec import load

    current = fresh_lock(load(Path(args.spec)))
    if current is not None:  # checked before a long build; a stale lock is build_spec's error to give
        _preflight(current, Path(args.spec).stem, store, None, args.no_check)
    result = build_spec(Path(args.spec), store=store, say=_say)
    name = result.image.annotations.get("org.opencontainers.image.ref.name", "envlock/image:latest")
    engine.load(store, result.image, [name], _say)
    workdir = result.image.config["config"].get("WorkingDir") or "/workspace"
    cuda = result.image.config["config"].get("Labels", {}).get("dev.envlock.cuda", "cpu") != "cpu"
    return engine.run(
        result.image_id, command, mount=Path(args.mount), workdir=workdir, cuda=cuda, say=_say, output=_out
    )


def _preflight(lock: Any, label: str, store: Any, platform: str | None, skip: bool) -> None:
    """The doctor's checks before a container starts: warnings printed, a known failure refused."""
    if skip:
        _say("warning: --no-check: the GPU, driver and NVIDIA runtime checks were skipped")
        return
    from envlock import doctor

    report = doctor.preflight(lock, label, store=store, platform=platform)
    for v in report.verdicts:
        if v.level == "warning":
            _say(f"warning: {v.message}")
    doctor.refuse(report)


def cmd_doctor(args: argparse.Namespace) -> int:
    from envlock import doctor

    store = None
    if args.target:  # architectures are read from the store's wheels; doctor never creates a store
        from envlock.store import Store, default_home

        home = Path(args.store) if args.store else default_home()
        store = Store(home) if home.is_dir() else None
    report = doctor.diagnose(
        args.target,
        root=Path(),
        gpus=args.gpu or [],
        driver=args.driver,
        store=store,
        platform=args.platform,
    )
    if args.json:
        import json

        print(json.dumps(report.to_json(), indent=2))
        return report.exit_code
    lines = doctor.host_lines(report.host) + (doctor.env_lines(report.env) if report.env else [])
    for line in lines:
        print(line)
    for v in report.verdicts:
        print(f"{v.level}: {v.message}")
        if v.hint and v.level in ("warning", "error", "note"):
            print(f"hint: {v.hint}")
    return report.exit_code


def cmd_store(args: argparse.Namespace) -> int:
    from envlock.output import table

    store = _store(args)
    if args.action == "ls":
        rows = [[e.name, e.platform, e.env_id[:19], e.image_id[:19]] for e in store.list_envs()]
        print(table(["name", "platform", "env id", "image id"], rows))
        _say(f"{len(rows)} image(s), {store.usage() / 1e6:.0f} MB in {store.root}")
        return 0
    if args.action == "du":
        return _store_du(store, args.json)
    if args.action == "fsck":
        problems = store.fsck()
        for line in problems:
            print(line)
        _say(
            f"{len(problems)} problem(s) in {store.root}" if problems else f"{store.root}: all blobs verified"
        )
        return 1 if problems else 0
    from envlock.collect import collect

    specs = [Path(s) for s in args.specs] if args.specs else []
    if not specs and Path("specs").is_dir():
        specs = _default_specs()
    done = collect(
        store,
        specs,
        Path.cwd(),
        dry_run=args.dry_run,
        waiting=lambda: _say("Waiting for running builds to finish with the store"),
        keep_artifacts=args.keep_artifacts,
        drop_built_artifacts=args.drop_built_artifacts,
        keep_newer_than=args.keep_newer_than,
        max_size=args.max_size,
        force=args.force,
    )
    for warning in done.warnings:
        _say(f"warning: {warning}")
    verb = "would remove" if args.dry_run else "removed"
    files, size = done.leftovers
    tmp = f" ({files} left in tmp/ by killed builds, {size / 1e6:.1f} MB)" if files else ""
    _say(
        f"{verb} {done.removed} file(s), {done.freed / 1e6:.1f} MB{tmp}; "
        f"kept {done.kept} env(s) referenced by locks and records"
    )
    return 0


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: days must be 0 or more")
    return value


def _size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    number, unit = text.rstrip("BbIi").upper(), ""
    if number and number[-1] in units:
        number, unit = number[:-1], number[-1]
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 500M, 20G)") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a size is 0 or more")
    return int(value)


def _store_du(store: Any, as_json: bool) -> int:
    import json

    from envlock.output import table
    from envlock.storeusage import usage

    found = usage(store)
    if as_json:
        print(json.dumps(found.to_json(), indent=2, sort_keys=True))
        return 0
    rows = [[kind, f"{size / 1e6:.1f}"] for kind, size in found.categories.items()]
    print(table(["what", "MB"], [*rows, ["total", f"{found.total / 1e6:.1f}"]]))
    images = [
        [im.name, im.platform, im.image_id[:19], f"{im.bytes / 1e6:.1f}", f"{im.own / 1e6:.1f}"]
        for im in found.images
    ]
    if images:
        print()
        print(table(["image", "platform", "image id", "MB", "own MB"], images))
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from envlock.api import record

    done = record(
        args.model,
        name=args.name,
        spec=args.spec,
        command=args.command_line or "",
        allow_dirty=args.allow_dirty,
        store=getattr(args, "store", None),
        push=args.push,
        mlflow_run=args.mlflow_run,
        say=_say,
    )
    rec = done.record
    if rec.dirty:
        _say(f"warning: recorded a dirty tree ({', '.join(rec.dirty_paths[:5])})")
    _say(f"Recorded {rec.name} ({rec.id}) on {rec.commit[:12]}: env {rec.env_id[:19]}…")
    print(rec.id)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from envlock.output import table
    from envlock.recording import all_records

    records = all_records(Path.cwd(), _warn)
    if args.json:
        import json

        print(json.dumps([r.to_json() for r in records], indent=2, sort_keys=True))
        return 0
    rows = [
        [
            r.name,
            r.id,
            r.commit[:10] + ("*" if r.dirty else ""),
            r.created_at,
            r.env_id[7:19],
            r.image_id[7:19],
            r.model.sha256[:12],
        ]
        for r in records
    ]
    print(table(["name", "record", "commit", "date (UTC)", "env id", "image id", "model sha256"], rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import json

    from envlock.recording import check_model, find

    rec = find(args.model, Path.cwd(), _warn)
    print(json.dumps(rec.to_json(), indent=2, sort_keys=True))
    from envlock.doctor import differences, this_host

    host = rec.data.get("host")
    for line in differences(host if isinstance(host, dict) else {}, this_host()):
        _say(f"note: this host differs from the training host: {line}")
    if args.check:
        problems = check_model(rec, Path.cwd())
        for line in problems:
            _say(f"error: {line}")
        if problems:
            return 1
        _say(f"{rec.model.path}: sha256 matches the record")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from envlock.rebuilding import k8s_job, rebuild, retrain_command

    store = _store(args)
    worktree = Path(args.worktree) if args.worktree else None
    if args.run and worktree is None:
        raise UsageError("--run needs the code checked out", "add --worktree PATH (a new directory)")
    if (args.gpu_product or args.node_selector) and not args.k8s_job:
        raise UsageError("--gpu-product and --node-selector are for --k8s-job")
    if args.run:  # before anything is pulled or built
        from envlock.rebuilding import lock_at_commit
        from envlock.recording import find, repo_root

        root = repo_root(Path.cwd())
        ref = args.model
        if ref.startswith("mlflow:"):
            from envlock.mlflow_handoff import record_of_run

            ref = record_of_run(ref.removeprefix("mlflow:"))
        wanted = find(ref, root, _warn)
        _preflight(lock_at_commit(root, wanted), wanted.name, store, wanted.platform, args.no_check)
    cache = _cache_reference(args)
    done = rebuild(args.model, cwd=Path.cwd(), store=store, worktree=worktree, say=_say, cache=cache)
    rec = done.record
    source = {"store": "found in the store", "registry": "pulled from the registry", "built": "rebuilt"}[
        done.how
    ]
    _say(f"{rec.name} ({rec.id}): image {done.image_id[:19]}… {source}, matches the record")
    command = list(args.command)
    if args.k8s_job:
        reference = rec.registry
        if args.push:
            from envlock.image import registry

            reference = registry.push(store, done.image, args.push, _say)
        if not reference:
            raise UsageError(
                "the record has no registry reference for the Job's image",
                "pass --push REG/REPO, or record with --push",
            )
        placement = {"gpu_products": args.gpu_product or [], "node_selector": args.node_selector or []}
        sys.stdout.write(k8s_job(rec, done.image, reference, command, **placement))
        return 0
    if args.run:
        from envlock import engine
        from envlock.rebuilding import split_command

        run_command = command or split_command(rec.command)
        if not run_command:
            raise UsageError("the record has no command", "give one after --")
        name = f"envlock/{rec.name.lower()}:{rec.id}"
        engine.load(store, done.image, [name], _say)
        workdir = done.image.config["config"].get("WorkingDir") or "/workspace"
        cuda = done.image.config["config"].get("Labels", {}).get("dev.envlock.cuda", "cpu") != "cpu"
        assert worktree is not None
        return engine.run(
            done.image_id, run_command, mount=worktree, workdir=workdir, cuda=cuda, say=_say, output=_out
        )
    print(done.image_id)
    _say("retrain with: " + retrain_command(rec, done.image_id, worktree, command))
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from envlock.sync import sync

    sync(args.remote, cwd=Path.cwd(), say=_say)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from envlock.envref import compare

    diff = compare(args.a, args.b)
    for side in (diff.a, diff.b):
        if side.note:
            _say(f"note: {side.label}: {side.note}")
    from envlock.doctor import record_host_differences

    for line in record_host_differences(args.a, args.b, Path()):
        _say(f"note: the training hosts differ: {line}")
    if args.json:
        import json

        from envlock.diff import to_json

        print(json.dumps(to_json(diff), indent=2))
    else:
        from envlock import diffview

        try:
            from rich.console import Console
        except ImportError:
            print(diffview.plain(diff))
        else:
            console = Console(highlight=False, soft_wrap=False)
            for part in diffview.renderables(diff):
                console.print(part)
    return 1 if args.exit_code and not diff.identical else 0


def cmd_tui(args: argparse.Namespace) -> int:
    from envlock.tui.app import make_app

    app = make_app(Path(), diff=tuple(args.diff) if args.diff else None)
    app.run()
    if app.exit_after_paint and app.painted_at is not None:
        _say(f"first paint at {app.painted_at:.6f}")  # read by bench/bench_diff.py
    return app.return_code or 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="envlock", description="Reproducible machine-learning environments.")
    parser.add_argument("--version", action="version", version=f"envlock {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an internal error (also ENVLOCK_DEBUG=1); any position",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("init", help="write specs/NAME.toml from a template")
    p.add_argument("name", nargs="?", help="environment name (optional with --pre-commit)")
    p.add_argument("--template", default="cpu", help="pytorch-cuda | tensorflow | jax | cpu (default: cpu)")
    p.add_argument("--dir", default="specs", help="directory for the spec (default: specs)")
    p.add_argument("--force", action="store_true", help="overwrite an existing spec")
    p.add_argument(
        "--from",
        dest="source",
        metavar="FILE",
        help="import requirements.txt/.in, pyproject.toml, environment.yml, conda-lock.yml, "
        "pylock.toml, uv.lock, cog.yaml or an MLflow model directory",
    )
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="GROUP",
        help="with --from pyproject.toml: an optional-dependencies group to include (repeatable; 'all')",
    )
    p.add_argument(
        "--exclude-newer",
        default="now",
        metavar="DATE",
        help="with --from: [pip] exclude-newer of the new spec (default: now; 'none' for none)",
    )
    p.add_argument(
        "--pre-commit",
        action="store_true",
        help="add the envlock-verify hook to the repository's .pre-commit-config.yaml",
    )
    p.add_argument("--hook-repo", metavar="URL", help="repo for the hook (default: envlock's)")
    p.add_argument("--hook-rev", metavar="REV", help="rev for the hook (default: this version)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("lock", help="resolve specs into hashed locks and exports")
    p.add_argument("specs", nargs="*", help="spec files (default: specs/*.toml)")
    p.add_argument(
        "--hook",
        action="store_true",
        help="for pre-commit: take any spec/lock/export names, re-lock the stale specs "
        "among them, exit 1 if anything changed",
    )
    p.add_argument("--upgrade", action="store_true", help="re-resolve even if the lock is current")
    p.add_argument(
        "--resolver",
        default="uv",
        choices=["uv", "pip-tools", "conda-lock"],
        help="resolution engine (default: uv; conda packages with py-rattler in-process; "
        "conda-lock: conda-lock's solver, needs a conda/mamba/micromamba binary)",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("verify", help="check specs, locks and exports agree (offline, fast)")
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="specs, locks or exports; each maps to its spec (default: everything in specs/)",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument(
        "--staged",
        action="store_true",
        help="also fail when a spec is staged in git but its lock or exports are not",
    )
    p.add_argument(
        "--records",
        action="store_true",
        help="also check that every model record's lock (git notes) still has its env ID",
    )
    p.add_argument("--hook", action="store_true", help="for pre-commit: --staged, and silent on success")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("export", help="print a view of the lock for other tools")
    p.add_argument("spec")
    p.add_argument("--format", required=True, choices=["requirements", "pylock", "conda-lock"])
    p.add_argument("--platform", help="platform for requirements (default: the lock's only one)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("matrix", help="show what the compat matrix knows")
    p.add_argument("name", nargs="?", help="pytorch | tensorflow | jax | cuda (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("build", help="assemble the spec's image into the local store; prints the image ID")
    p.add_argument("spec")
    p.add_argument("--oci", metavar="DIR", help="also write an OCI image layout to DIR")
    p.add_argument("--docker-archive", metavar="FILE", help="also write a `docker load` archive")
    p.add_argument("--load", action="store_true", help="load the image into the Docker engine")
    p.add_argument("--push", metavar="REG/REPO", help="push by digest; prints REG/REPO@sha256:... last")
    p.add_argument(
        "--compression",
        choices=["gzip", "zstd", "none"],
        default="gzip",
        help="with --push: layer compression (zstd needs containerd >= 1.5, Docker >= 23 with the "
        "containerd image store, or podman; none: uncompressed tar layers, for a registry close by)",
    )
    p.add_argument(
        "--cache",
        metavar="REG/REPO",
        help="take layers from this build cache by build key (default: $ENVLOCK_CACHE); "
        "with --push, also publish this image's layers to it ($ENVLOCK_CACHE alone is only read)",
    )
    p.add_argument("--platform", help="platform of the lock to build (default: linux-64)")
    p.add_argument(
        "--engine",
        choices=["envlock", "docker"],
        default="envlock",
        help="docker: render a Dockerfile and docker build it (not bit-reproducible)",
    )
    p.add_argument("--store", help="store directory (default: $ENVLOCK_HOME or ~/.cache/envlock)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("cache", help="publish images' layers to a build cache in a registry")
    p.add_argument("action", choices=["push"])
    p.add_argument("specs", nargs="*", help="specs whose images are published (default: specs/*.toml)")
    p.add_argument("--cache", metavar="REG/REPO", help="the build cache (default: $ENVLOCK_CACHE)")
    p.add_argument(
        "--compression",
        choices=["gzip", "zstd", "none"],
        default="gzip",
        help="layer compression (only envlock reads cache entries: any choice works; "
        "none is fastest to build from, with ~1.7x gzip's bytes for a CUDA image)",
    )
    p.add_argument("--platform", help="platform of the lock (default: linux-64)")
    p.add_argument("--store", help="store directory")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser("pull", help="pull REG/REPO@sha256:... into the store; prints the image ID")
    p.add_argument("reference")
    p.add_argument("--store", help="store directory")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("run", help="run a command in the spec's image with this directory mounted")
    p.add_argument("spec")
    p.add_argument("command", nargs="*", help="the command, after --")
    p.add_argument("--mount", default=".", help="directory mounted at the image's workdir (default: .)")
    p.add_argument("--store", help="store directory")
    p.add_argument(
        "--no-check", action="store_true", help="start it even if envlock doctor says it will fail"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("record", help="record a trained model on HEAD (git note under refs/notes/envlock)")
    p.add_argument("model", help="the model file or directory")
    p.add_argument("--name", required=True)
    p.add_argument("--spec", required=True, help="the spec the model was trained in")
    p.add_argument("--command", dest="command_line", help="the command that trains it")
    p.add_argument("--allow-dirty", action="store_true", help="record even if the tree has changes")
    p.add_argument("--push", metavar="REG/REPO", help="also push the image and record its digest")
    p.add_argument("--store", help="store directory")
    p.add_argument(
        "--mlflow-run",
        metavar="RUN_ID",
        help="tag this MLflow run with the record and log the lock to it (default: $MLFLOW_RUN_ID)",
    )
    p.set_defaults(func=cmd_record)

    p = sub.add_parser("models", help="list recorded models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("show", help="show a model record: NAME, NAME@REV or a record ID")
    p.add_argument("model")
    p.add_argument("--check", action="store_true", help="re-hash the model file")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("rebuild", help="bring back the exact image of a recorded model")
    p.add_argument("model", help="NAME, NAME@REV, a record ID, or mlflow:RUN_ID")
    p.add_argument("command", nargs="*", help="with --run or --k8s-job: the command, after --")
    p.add_argument("--worktree", help="check the recorded commit out here (git worktree)")
    p.add_argument("--run", action="store_true", help="run the command in the image, worktree mounted")
    p.add_argument("--k8s-job", action="store_true", help="print a Kubernetes batch/v1 Job")
    p.add_argument("--push", metavar="REG/REPO", help="with --k8s-job: push the image first")
    p.add_argument(
        "--gpu-product",
        action="append",
        metavar="PRODUCT",
        help="with --k8s-job: only nodes with this nvidia.com/gpu.product label (repeatable)",
    )
    p.add_argument(
        "--node-selector",
        action="append",
        metavar="KEY=VALUE",
        help="with --k8s-job: a nodeSelector label (repeatable)",
    )
    p.add_argument("--no-check", action="store_true", help="with --run: skip the envlock doctor checks")
    p.add_argument(
        "--cache", metavar="REG/REPO", help="take layers from this build cache (default: $ENVLOCK_CACHE)"
    )
    p.add_argument("--store", help="store directory")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser(
        "doctor",
        help="will a locked environment run on this host (GPUs, driver, NVIDIA runtime)?",
        description="Without --gpu/--driver: this host. With them: plan for a fleet without the hardware. "
        "Exit 0 runs, 1 will not run, 2 bad input.",
    )
    p.add_argument("target", nargs="?", help="a spec, lock, LOCK@REV, model NAME[@REV] or env ID")
    p.add_argument(
        "--gpu",
        action="append",
        metavar="ARCH",
        help="plan for GPUs of this architecture: sm_90, 8.6 (repeatable)",
    )
    p.add_argument("--driver", metavar="VERSION", help="plan for this NVIDIA driver, e.g. 535.104.05")
    p.add_argument("--platform", help="platform of the lock (default: linux-64)")
    p.add_argument("--json", action="store_true", help="envlock.doctor/v1 JSON on stdout")
    p.add_argument("--store", help="store directory (architectures are read from the wheels it holds)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("sync", help="push and fetch model records (refs/notes/envlock), merging")
    p.add_argument("remote", nargs="?", default="origin")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("store", help="inspect and maintain the local store")
    p.add_argument("action", choices=["ls", "du", "fsck", "gc"])
    p.add_argument("specs", nargs="*", help="gc: specs whose locks' images are kept (default: specs/*.toml)")
    p.add_argument("--dry-run", action="store_true", help="gc: only say what would be removed")
    p.add_argument("--keep-artifacts", action="store_true", help="gc: keep every downloaded wheel/package")
    p.add_argument(
        "--drop-built-artifacts",
        action="store_true",
        help="gc: also remove the wheels/packages of images the store holds (one copy of each layer's "
        "bytes; the lock fetches them again if a layer must be rebuilt)",
    )
    p.add_argument(
        "--keep-newer-than",
        type=_days,
        metavar="DAYS",
        help="gc: also keep unreferenced images built or pulled within DAYS days",
    )
    p.add_argument(
        "--max-size",
        type=_size,
        metavar="SIZE",
        help="gc: also keep unreferenced images, newest first, while all kept images fit in SIZE (e.g. 20G)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="gc: run outside a git repository (no model record is read: only the specs' images are kept)",
    )
    p.add_argument("--json", action="store_true", help="du: machine-readable output")
    p.add_argument("--store", help="store directory")
    p.set_defaults(func=cmd_store)
    refs = "a spec, a lock, LOCK@REV, a model NAME or NAME@REV, or an env ID (sha256:...)"
    p = sub.add_parser("diff", help="compare two environments", description=f"A and B: {refs}.")
    p.add_argument("a", metavar="A", help="the old environment")
    p.add_argument("b", metavar="B", help="the new environment")
    p.add_argument("--json", action="store_true", help="envlock.diff/v1 JSON on stdout")
    p.add_argument("--exit-code", action="store_true", help="exit 1 when the two differ")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("tui", help="browse environments, history and diffs in the terminal")
    p.add_argument("--diff", nargs=2, metavar=("A", "B"), help="open on the diff of A and B")
    p.set_defaults(func=cmd_tui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    tail: list[str] | None = None
    if "--" in raw:  # everything after -- is the command to run, verbatim
        cut = raw.index("--")
        raw, tail = raw[:cut], raw[cut + 1 :]
    debug = "--debug" in raw or os.environ.get("ENVLOCK_DEBUG", "") not in ("", "0")
    raw = [a for a in raw if a != "--debug"]
    args, extra = parser.parse_known_args(raw)
    if extra:  # argparse ends a `nargs="*"` positional at the first option: `store gc --force SPEC`
        if getattr(args, "func", None) is cmd_store and not any(e.startswith("-") for e in extra):
            args.specs = [*args.specs, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if tail is not None:
        if not hasattr(args, "command") or not isinstance(args.command, list):
            parser.error("'--' is only for commands that run something (run, rebuild)")
        args.command = [*args.command, *tail]
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args))
    except EnvlockError as exc:  # one error line each, whatever text from outside a message holds
        problems = getattr(exc, "errors", (exc,))  # envlock.errors.Problems: one line each
        for problem in problems:
            _say("error: " + " ".join(problem.message.splitlines()))
        for hint in dict.fromkeys(p.hint for p in problems if p.hint):
            _say(f"hint: {hint}")  # envlock's own words; may show a block to paste (init --pre-commit)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        # a dependency imported lazily by this command is missing: a broken install
        missing = (exc.name or str(exc)).split(".")[0]
        _say(f"error: envlock needs the Python module '{missing}', which is not installed")
        _say("hint: repair the install: pip install --force-reinstall envlock")
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        _say("error: interrupted; nothing was written")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:  # our own output could not be written (stdout on a full disk)
        if exc.errno not in (errno.ENOSPC, errno.EIO, errno.EFBIG, errno.EDQUOT):
            if debug:
                raise
            from envlock.boundary import internal_error

            error = internal_error(exc)
            _say(f"error: {error.message}")
            _say(f"hint: {error.hint}")
            return error.exit_code
        _say(f"error: cannot write the output: {exc.strerror}")
        _say("hint: free space where the output goes, or redirect it elsewhere")
        return 1
    except Exception as exc:  # a bug: one line, the traceback only on request
        if debug:
            raise
        from envlock.boundary import internal_error

        error = internal_error(exc)
        _say(f"error: {error.message}")
        _say(f"hint: {error.hint}")
        return error.exit_code


def entry() -> None:
    """The ``envlock`` command (and ``python -m envlock``): :func:`main`, then exit.

    When py-rattler was loaded (a conda solve), the process ends with ``os._exit`` once its
    output is flushed: rattler's native runtime threads can crash the interpreter's
    finalization (SIGSEGV after the work and its messages are done, seen on busy machines),
    which would turn a finished command's exit code into -11.
    """
    code = main()
    if "rattler" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":
    entry()
