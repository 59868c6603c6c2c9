"""Benchmark: `envlock verify` on 10 specs, next to the cost of starting Python at all.

    python bench/bench_verify.py [--runs N]

Builds a throw-away project (a local wheelhouse, 10 specs locked against it with
`envlock lock`, so no network), commits it to git, then times, as wall time from process
start and as the median of N interleaved rounds (default 30):

  * `python -c pass`                      the floor: the interpreter and site
  * `python -c "import tomllib"`          plus the TOML parser every check needs
  * `python -m envlock verify -q`         scan specs/: 10 specs, locks, 20 exports
  * `python -m envlock verify --hook F..` what pre-commit runs: 40 file names, with the
                                          git index check (`git status`)

Writes bench/results/verify.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from support import PACKAGES, build_wheel  # noqa: E402

SPECS = 10
SPEC = """python = "3.11"
platforms = ["linux-64", "osx-arm64"]

[pip]
packages = [{packages}]
find-links = ["../wheels"]
no-index = true
"""
CHOICES = ['"envlock-fx-alpha"', '"envlock-fx-beta"', '"envlock-fx-gamma"']


def run(cmd: list[str], cwd: Path, check: bool = True) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return elapsed


def project(root: Path) -> list[str]:
    """10 locked specs in a git repository; returns every spec, lock and export name."""
    for name, version, requires, tag in PACKAGES:
        build_wheel(root / "wheels", name, version, requires, tag)
    specs = root / "specs"
    specs.mkdir()
    for i in range(SPECS):
        packages = ", ".join(CHOICES[: 1 + i % len(CHOICES)])
        (specs / f"env{i}.toml").write_text(SPEC.format(packages=packages))
    run([sys.executable, "-m", "envlock", "lock", "-q"], root)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "locked"]):
        run(["git", "-c", "user.name=bench", "-c", "user.email=bench@invalid", *args], root)
    return sorted(str(p.relative_to(root)) for p in specs.iterdir())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="envlock-bench-verify-") as tmp:
        root = Path(tmp)
        files = project(root)
        py = sys.executable
        commands = {
            "python -c pass": [py, "-c", "pass"],
            'python -c "import tomllib"': [py, "-c", "import tomllib"],
            "envlock verify (10 specs)": [py, "-m", "envlock", "verify", "-q"],
            f"envlock verify --hook ({len(files)} files)": [
                py, "-m", "envlock", "verify", "--hook", *files,
            ],
        }  # fmt: skip
        for cmd in commands.values():  # warm the OS caches, and fail early
            run(cmd, root)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):  # interleaved, so drift hits every command alike
            for name, cmd in commands.items():
                samples[name].append(run(cmd, root))

    results = {
        "runs": args.runs,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "median_ms": {n: round(statistics.median(s) * 1000, 1) for n, s in samples.items()},
        "min_ms": {n: round(min(s) * 1000, 1) for n, s in samples.items()},
    }
    out = HERE / "results" / "verify.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")

    floor = results["median_ms"]["python -c pass"]
    print(f"| command | median of {args.runs} | min | over `python -c pass` |")
    print("|---|---|---|---|")
    for name in commands:
        med, low = results["median_ms"][name], results["min_ms"][name]
        print(f"| {name} | {med} ms | {low} ms | +{med - floor:.1f} ms |")
    print(f"\nwrote {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
