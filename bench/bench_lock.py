"""Benchmark: locking a realistic spec, against plain uv and pip-compile in the same run.

    python bench/bench_lock.py [--runs N]

Measures, each as the median of N runs:
  * cold lock (empty caches) of torch + CUDA + numpy/pandas/scikit-learn:
    envlock lock vs `uv pip compile --generate-hashes` vs `pip-compile --generate-hashes`
    on the same input (same target, same exclude-newer cut-off);
  * warm lock (caches filled) for the same three;
  * no-change relock (`envlock lock` on a fresh lock), wall time from process start;
  * `envlock verify` on 10 specs, wall time from process start.
Writes bench/results/lock.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
CUTOFF = "2026-11-01"
REQUIREMENTS = ["torch==2.9.*", "numpy", "pandas", "scikit-learn"]
SPEC = f"""python = "3.11"
platforms = ["linux-64"]

[framework]
name = "pytorch"
version = "2.9"
cuda = "12.8"

[pip]
packages = ["numpy", "pandas", "scikit-learn"]
exclude-newer = "{CUTOFF}"
"""


def clean_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(
        UV_CACHE_DIR=str(cache / "uv"),
        PIP_CACHE_DIR=str(cache / "pip"),
        XDG_CACHE_HOME=str(cache / "xdg"),
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return elapsed


def uv_bin() -> str:
    from envlock.resolve.uv import binary

    return binary()


def envlock_cmd(spec: Path) -> list[str]:
    return [sys.executable, "-m", "envlock", "lock", "--upgrade", "-q", str(spec)]


def uv_cmd(req: Path) -> list[str]:
    return [
        uv_bin(),
        "pip",
        "compile",
        str(req),
        "--generate-hashes",
        "--python-version",
        "3.11",
        "--python-platform",
        "x86_64-manylinux_2_28",
        "--exclude-newer",
        f"{CUTOFF}T00:00:00Z",
        "--quiet",
        "--no-config",
        "-o",
        str(req.with_suffix(".uv.txt")),
    ]


def pip_compile_cmd(req: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "piptools",
        "compile",
        "--generate-hashes",
        "--quiet",
        "--pip-args",
        f"--uploaded-prior-to={CUTOFF}T00:00:00Z",
        "--cache-dir",
        "CACHE",
        "-o",
        str(req.with_suffix(".pt.txt")),
        str(req),
    ]


def median_of(runs: int, fn: Callable[[int], float]) -> tuple[float, list[float]]:
    samples = [fn(i) for i in range(runs)]
    return statistics.median(samples), samples


def interleaved(runs: int, fns: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
    """Run the tools in turn, ``runs`` rounds, so drift (network, caches) hits them alike."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(runs):
        for name, fn in fns.items():
            samples[name].append(fn(i))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5, help="runs per cold/warm measurement")
    parser.add_argument("--fast-runs", type=int, default=20, help="runs for relock/verify")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="envlock-bench-"))
    (work / "specs").mkdir()
    spec = work / "specs/vision.toml"
    spec.write_text(SPEC)
    req = work / "req.in"
    req.write_text("\n".join(REQUIREMENTS) + "\n")
    results: dict[str, object] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}

    def cold(make_cmd: Callable[[], list[str]]) -> Callable[[int], float]:
        def run(i: int) -> float:
            cache = work / f"cache-cold-{make_cmd.__name__}-{i}"
            cmd = [c.replace("CACHE", str(cache / "piptools")) for c in make_cmd()]
            try:
                return timed(cmd, work, clean_env(cache))
            finally:
                shutil.rmtree(cache, ignore_errors=True)

        return run

    def warm(make_cmd: Callable[[], list[str]]) -> Callable[[int], float]:
        cache = work / f"cache-warm-{make_cmd.__name__}"
        cmd = [c.replace("CACHE", str(cache / "piptools")) for c in make_cmd()]
        timed(cmd, work, clean_env(cache))  # fill the cache

        def run(i: int) -> float:
            return timed(cmd, work, clean_env(cache))

        return run

    tools: dict[str, Callable[[], list[str]]] = {
        "envlock": lambda: envlock_cmd(spec),
        "uv": lambda: uv_cmd(req),
        "pip-compile": lambda: pip_compile_cmd(req),
    }
    for name, fn in tools.items():
        fn.__name__ = name.replace("-", "_")
    for phase, wrap in (("cold", cold), ("warm", warm)):
        by_tool = interleaved(args.runs, {name: wrap(make) for name, make in tools.items()})
        for name, samples in by_tool.items():
            med = statistics.median(samples)
            results[f"{phase}_{name}_s"] = round(med, 3)
            results[f"{phase}_{name}_samples"] = [round(s, 3) for s in samples]
            print(
                f"{phase:5} {name:12} median {med:7.2f}s  {[round(s, 2) for s in samples]}",
                flush=True,
            )

    # no-change relock, from process start
    env = {**os.environ}
    relock = [sys.executable, "-m", "envlock", "lock", "-q", str(spec)]
    subprocess.run(relock, cwd=work, env=env, check=True, capture_output=True)
    med, _ = median_of(args.fast_runs, lambda i: timed(relock, work, env))
    results["relock_nochange_ms"] = round(med * 1000, 1)

    # verify on 10 specs
    for i in range(10):
        other = work / f"specs/env{i}.toml"
        other.write_text(SPEC.replace("scikit-learn", f"scikit-learn>=1.{i}"))
        lock_other = [sys.executable, "-m", "envlock", "lock", "-q", str(other)]
        subprocess.run(lock_other, cwd=work, env=env, check=True, capture_output=True)
    specs = [str(work / f"specs/env{i}.toml") for i in range(10)]
    verify = [sys.executable, "-m", "envlock", "verify", "-q", *specs]
    med, _ = median_of(args.fast_runs, lambda i: timed(verify, work, env))
    results["verify_10_specs_ms"] = round(med * 1000, 1)
    python_only = [sys.executable, "-c", "pass"]
    med, _ = median_of(args.fast_runs, lambda i: timed(python_only, work, env))
    results["python_startup_ms"] = round(med * 1000, 1)

    c_env, c_uv, c_pt = (results[f"cold_{n}_s"] for n in ("envlock", "uv", "pip-compile"))
    assert isinstance(c_env, float) and isinstance(c_uv, float) and isinstance(c_pt, float)
    results["cold_ratio_vs_uv"] = round(c_env / c_uv, 2)
    results["cold_speedup_vs_pip_compile"] = round(c_pt / c_env, 1)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "lock.json").write_text(json.dumps(results, indent=2) + "\n")
    print()
    print("| measurement | envlock | uv pip compile | pip-compile | ratio |")
    print("|---|---|---|---|---|")
    for phase in ("cold", "warm"):
        e, u, p = (results[f"{phase}_{n}_s"] for n in ("envlock", "uv", "pip-compile"))
        assert isinstance(e, float) and isinstance(u, float) and isinstance(p, float)
        ratio = f"{e / u:.2f}x uv, {p / e:.1f}x faster than pip-compile"
        print(f"| {phase} lock | {e:.2f} s | {u:.2f} s | {p:.2f} s | {ratio} |")
    print(f"| no-change relock | {results['relock_nochange_ms']} ms | | | target < 100 ms |")
    startup = f"python -c pass: {results['python_startup_ms']} ms"
    verify_ms = results["verify_10_specs_ms"]
    print(f"| verify, 10 specs | {verify_ms} ms | | | target < 100 ms ({startup}) |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
