"""Benchmark: solve + lock of a 200-package synthetic conda channel, against py-rattler's
bare solve of the same specs in the same run.

    python bench/bench_conda.py [--runs N]

Builds a local file:// channel of 200 packages (a dependency web: each package depends
on 0-4 lower-numbered packages, a few with version pins; two versions of each; half
linux-64, half noarch; one in five as .conda), then times, as the median of N
interleaved rounds (default 15):

  * `rattler.solve`                 bare in-process solve (fresh Gateway), linux-64 + noarch
  * `envlock lock` (in-process)     lock_spec(upgrade=True): solve + lock + conda-lock.yml,
                                    written atomically
  * `python -c "<bare solve>"`      the bare solve as a process (interpreter + import rattler)
  * `python -m envlock lock --upgrade`  the CLI, wall time from process start

Writes bench/results/conda.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "integration"))

from conda_channel import CondaPkg, write_channel  # noqa: E402

COUNT = 200
ROOTS = 20


def synthetic(count: int = COUNT) -> list[CondaPkg]:
    rng = random.Random(7)
    out = []
    for i in range(count):
        name = f"syn-{i:03d}"
        subdir = "noarch" if i % 2 else "linux-64"
        deps = []
        for j in sorted(rng.sample(range(i), min(i, rng.randint(0, 4)))):
            pin = " >=1.0" if rng.random() < 0.3 else ""
            deps.append(f"syn-{j:03d}{pin}")
        for version in ("1.0", "1.1"):
            out.append(
                CondaPkg(
                    name,
                    version,
                    subdir,
                    depends=tuple(deps),
                    files={f"share/{name}/v": version.encode()},
                    fmt="conda" if i % 5 == 0 else "tar.bz2",
                    noarch="generic" if subdir == "noarch" else None,
                )
            )
    return out


def specs() -> list[str]:
    return [f"syn-{i:03d}" for i in range(COUNT - ROOTS, COUNT)]


# py-rattler 0.28 sometimes crashes at interpreter exit (SIGSEGV/abort, ~1 in 8 runs here)
# when solve results are still alive; the bare script leaves with os._exit after printing,
# which also skips teardown, so its time is if anything a little low.
BARE = """
import asyncio, os, sys, rattler
async def main():
    return await rattler.solve([rattler.Channel(sys.argv[1])], sys.argv[2:], gateway=rattler.Gateway(),
        platforms=["linux-64", "noarch"], timestamp_policy="allow-missing")
print(len(asyncio.run(main())), flush=True)
os._exit(0)
"""


def bare_solve(url: str) -> int:
    import rattler

    async def main() -> list[object]:
        return list(
            await rattler.solve(
                [rattler.Channel(url)],
                specs(),
                gateway=rattler.Gateway(),
                platforms=["linux-64", "noarch"],
                timestamp_policy="allow-missing",
            )
        )

    return len(asyncio.run(main()))


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    from envlock.locking import lock_spec

    with tempfile.TemporaryDirectory(prefix="envlock-bench-conda-") as tmp:
        root = Path(tmp)
        url = write_channel(root / "channel", synthetic(), subdirs=("linux-64", "noarch"))
        spec = root / "project/specs/syn.toml"
        spec.parent.mkdir(parents=True)
        listed = ", ".join(f'"{s}"' for s in specs())
        spec.write_text(
            f'python = "3.11"\nplatforms = ["linux-64"]\n'
            f'[conda]\nchannels = ["{url}"]\npackages = [{listed}]\n'
        )
        solved = bare_solve(url)
        locked = lock_spec(spec, upgrade=True)
        n_locked = len(locked.lock.platforms[0].packages)
        assert n_locked == solved, (n_locked, solved)
        cli = [sys.executable, "-m", "envlock", "lock", "--upgrade", "-q", str(spec)]
        bare_cli = [sys.executable, "-c", BARE, url, *specs()]
        times: dict[str, list[float]] = {k: [] for k in ("bare", "lock", "bare_proc", "cli")}
        for _ in range(args.runs):
            times["bare"].append(timed(lambda: bare_solve(url)))
            times["lock"].append(timed(lambda: lock_spec(spec, upgrade=True)))
            times["bare_proc"].append(
                timed(lambda: subprocess.run(bare_cli, check=True, capture_output=True))
            )
            times["cli"].append(timed(lambda: subprocess.run(cli, check=True, capture_output=True)))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "channel_packages": COUNT,
        "channel_records": 2 * COUNT,
        "requested": ROOTS,
        "solved": solved,
        "runs": args.runs,
        "median_s": med,
        "ratio_in_process": med["lock"] / med["bare"],
        "ratio_process": med["cli"] / med["bare_proc"],
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "conda.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"Synthetic channel: {COUNT} packages x 2 versions, {ROOTS} requested, {solved} solved; "
        f"median of {args.runs}\n"
    )
    print("| what | median | vs bare solve |")
    print("|---|---:|---:|")
    print(f"| `rattler.solve` (in-process) | {med['bare'] * 1000:.0f} ms | 1.00x |")
    lock_ms, lock_ratio = med["lock"] * 1000, result["ratio_in_process"]
    print(f"| `lock_spec` solve + lock + exports (in-process) | {lock_ms:.0f} ms | {lock_ratio:.2f}x |")
    print(f"| bare solve as a process | {med['bare_proc'] * 1000:.0f} ms | 1.00x |")
    print(f"| `envlock lock --upgrade` (CLI) | {med['cli'] * 1000:.0f} ms | {result['ratio_process']:.2f}x |")


if __name__ == "__main__":
    main()
