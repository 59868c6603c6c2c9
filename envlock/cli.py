"""The command line: parse, call one library function, print.  No logic lives here.

Output meant for scripts (env IDs, exports) goes to stdout; progress and
messages go to stderr.  Expected failures print ``error:``/``hint:`` lines and
exit with the error's code (2 bad input, 1 failed check, 3 service missing).
Heavy modules are imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from envlock import __version__
from envlock.errors import EXIT_BAD_INPUT, EnvlockError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message}\nhint: see `{self.prog} --help`\n")
        raise SystemExit(EXIT_BAD_INPUT)


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _default_specs() -> list[Path]:
    from envlock.spec import discover

    found = discover(Path("specs"))
    if not found:
        raise UsageError(
            "no specs given and none found in specs/", "name spec files, or run: envlock init NAME"
        )
    return found


def cmd_init(args: argparse.Namespace) -> int:
    from envlock.init import init

    path = init(args.name, args.template, Path(args.dir), force=args.force)
    _say(f"Wrote {path}; lock it with: envlock lock {path}")
    print(path)
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    from envlock.locking import lock_spec

    progress = (lambda _m: None) if args.quiet else _say
    for spec in args.specs or _default_specs():
        result = lock_spec(
            Path(spec), upgrade=args.upgrade, resolver=args.resolver, progress=progress
        )
        if not args.quiet:
            if result.up_to_date:
                _say(f"{result.path} is up to date ({result.seconds * 1000:.0f} ms)")
            else:
                count = sum(len(p.packages) for p in result.lock.platforms)
                exports = len(result.written) - 1
                took = f"{result.seconds:.1f}s"
                _say(f"Locked {result.path}: {count} packages, {exports} exports, {took}")
        print(f"{result.lock.env_id}  {result.path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from envlock.verify import verify

    specs = [Path(s) for s in args.specs] if args.specs else _default_specs()
    problems = verify(specs)
    for problem in problems:
        print(problem)
    if problems:
        _say(f"{len(problems)} problem(s) in {len(specs)} spec(s)")
        return 1
    if not args.quiet:
        _say(f"{len(specs)} spec(s) verified")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from envlock import export, lock
    from envlock.errors import CheckFailed
    from envlock.spec import load

    spec = load(args.spec)
    current = lock.read(spec.path.with_suffix(".lock"))
    if current.spec_hash != spec.spec_hash:
        raise CheckFailed(
            f"{spec.path.with_suffix('.lock')} is stale", f"run: envlock lock {spec.path}"
        )
    text = export.render(current, spec.path, args.format, args.platform)
    if args.output:
        lock.write_files({Path(args.output): text})
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
            raise UsageError(
                f"unknown matrix {name!r}", "choose one of: pytorch, tensorflow, jax, cuda"
            )
        headers, rows = compat.rows(name)
        if args.json:
            import json

            print(json.dumps([dict(zip(headers, r, strict=True)) for r in rows], indent=2))
            continue
        if len(names) > 1:
            print(("\n" if i else "") + name)
        print(table(headers, rows))
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from envlock.envref import compare

    diff = compare(args.a, args.b)
    for side in (diff.a, diff.b):
        if side.note:
            _say(f"note: {side.label}: {side.note}")
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
    try:
        from envlock.tui.app import make_app
    except ImportError as exc:
        from envlock.errors import ToolMissing

        raise ToolMissing(
            f"envlock tui needs textual ({exc.name} is not installed)",
            "install it with: pip install 'envlock[tui]'",
        ) from None
    app = make_app(Path(), diff=tuple(args.diff) if args.diff else None)
    app.run()
    if app.exit_after_paint and app.painted_at is not None:
        _say(f"first paint at {app.painted_at:.6f}")  # read by bench/bench_diff.py
    return app.return_code or 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="envlock", description="Reproducible machine-learning environments.")
    parser.add_argument("--version", action="version", version=f"envlock {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("init", help="write specs/NAME.toml from a template")
    p.add_argument("name")
    p.add_argument(
        "--template", default="cpu", help="pytorch-cuda | tensorflow | jax | cpu (default: cpu)"
    )
    p.add_argument("--dir", default="specs", help="directory for the spec (default: specs)")
    p.add_argument("--force", action="store_true", help="overwrite an existing spec")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("lock", help="resolve specs into hashed locks and exports")
    p.add_argument("specs", nargs="*", help="spec files (default: specs/*.toml)")
    p.add_argument("--upgrade", action="store_true", help="re-resolve even if the lock is current")
    p.add_argument(
        "--resolver",
        default="uv",
        choices=["uv", "pip-tools"],
        help="resolution engine (default: uv)",
    )
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("verify", help="check specs, locks and exports agree (offline, fast)")
    p.add_argument("specs", nargs="*", help="spec files (default: specs/*.toml)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("export", help="print a view of the lock for other tools")
    p.add_argument("spec")
    p.add_argument("--format", required=True, choices=["requirements", "pylock"])
    p.add_argument("--platform", help="platform for requirements (default: the lock's only one)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("matrix", help="show what the compat matrix knows")
    p.add_argument("name", nargs="?", help="pytorch | tensorflow | jax | cuda (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_matrix)

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
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(args.func(args))
    except EnvlockError as exc:
        _say(f"error: {exc.message}")
        if exc.hint:
            _say(f"hint: {exc.hint}")
        return exc.exit_code
    except KeyboardInterrupt:
        _say("error: interrupted; nothing was written")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
