"""Benchmark: environment diff (library and CLI) and the TUI's responsiveness.

    python bench/bench_diff.py [--runs N]

Measures:
  * library: diff_locks on two synthetic 600-package locks (median of 50; target < 50 ms),
    and read + parse of both locks followed by the diff (what `envlock diff` does);
  * CLI: `envlock diff A B --json`, wall time from process start (median of 10);
  * TUI first paint of the diff screen: `python -m envlock tui --diff A B` in a real
    pseudo-terminal (80x24) with ENVLOCK_TUI_EXIT_AFTER_PAINT=1, which quits once the
    diff is on screen; wall time from process start (median of 10; target < 500 ms);
  * TUI home with 1,000 model rows: time to load the screen, then for Pilot to press
    `pagedown` 50 times in the models table (each press waits for the screen to settle).
Writes bench/results/diff.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import json
import os
import pty
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

from envlock import lockfile as lockmod
from envlock.diff import diff_locks
from envlock.lockfile import Lock, Package, PlatformLock

HERE = Path(__file__).resolve().parent
META = {"envlock": "0.1.0", "resolver": "uv 0.0.0", "resolved-at": "2026-11-01T00:00:00Z"}


def sha(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def package(name: str, version: str, salt: str = "") -> Package:
    return Package(
        manager="pip",
        name=name,
        version=version,
        url=f"https://files.example.org/{name}-{version}-py3-none-any.whl",
        sha256=sha(f"{name}-{version}{salt}"),
    )


def synthetic_locks(count: int = 600) -> tuple[Lock, Lock]:
    """Two locks of `count` packages: ~10% minor, 5% patch, 2% local, 1% rebuilt bumps,
    1% removed and 1% added; CUDA 12.1 -> 12.4 and torch 2.4.1 -> 2.5.1 as in the issue."""
    old, new = [package("torch", "2.4.1+cu121")], [package("torch", "2.5.1+cu124")]
    for i in range(count - 1):
        name = f"pkg-{i:04d}"
        old.append(package(name, "1.4.2"))
        if i % 100 == 7:
            continue  # removed
        if i % 10 == 0:
            new.append(package(name, "1.5.0"))
        elif i % 20 == 1:
            new.append(package(name, "1.4.3"))
        elif i % 50 == 2:
            new.append(package(name, "1.4.2+local1"))
        elif i % 100 == 3:
            new.append(package(name, "1.4.2", salt="rebuilt"))
        else:
            new.append(package(name, "1.4.2"))
    new += [package(f"new-{i:02d}", "0.1.0") for i in range(count - len(new))]
    a = lockmod.make(
        "sha256:" + "0" * 64, [PlatformLock("linux-64", "3.11", "12.1", packages=tuple(old))], META
    )
    b = lockmod.make(
        "sha256:" + "1" * 64, [PlatformLock("linux-64", "3.11", "12.4", packages=tuple(new))], META
    )
    return a, b


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def bench_library(a: Lock, b: Lock, runs: int) -> dict[str, float | str]:
    diff_locks(a, b)  # warm the compat cache, as any second call would be
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        d = diff_locks(a, b)
        times.append(time.perf_counter() - t0)
    return {"diff_locks_600_ms": ms(statistics.median(times)), "summary": d.summary}


def bench_parse_and_diff(project: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        a = lockmod.read(project / "specs" / "old.lock")
        b = lockmod.read(project / "specs" / "new.lock")
        diff_locks(a, b)
        times.append(time.perf_counter() - t0)
    return ms(statistics.median(times))


def write_project(root: Path, a: Lock, b: Lock) -> None:
    specs = root / "specs"
    specs.mkdir(parents=True)
    for name, lock in (("old", a), ("new", b)):
        (specs / f"{name}.toml").write_text('python = "3.11"\nplatforms = ["linux-64"]\n')
        (specs / f"{name}.lock").write_text(lockmod.render(lock))


def bench_cli(project: Path, runs: int) -> float:
    cmd = [sys.executable, "-m", "envlock", "diff", "specs/old.lock", "specs/new.lock", "--json"]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=project, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return ms(statistics.median(times))


def run_in_pty(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float | None]:
    """(wall time to exit, time to the first paint the app reports) of `cmd` in an 80x24
    pseudo-terminal, both from just before the process is spawned."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    output = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    spawned = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    code = proc.wait(timeout=60)
    took = time.perf_counter() - t0
    os.close(slave)
    reader.join(timeout=5)
    os.close(master)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {code}: {output[-2000:]!r}")
    match = re.search(rb"first paint at (\d+\.\d+)", bytes(output))
    return took, (float(match.group(1)) - spawned) if match else None


def bench_first_paint(project: Path, runs: int) -> dict[str, float]:
    env = {**os.environ, "ENVLOCK_TUI_EXIT_AFTER_PAINT": "1", "TERM": "xterm-256color"}
    cmd = [sys.executable, "-m", "envlock", "tui", "--diff", "specs/old.lock", "specs/new.lock"]
    run_in_pty(cmd, project, env)  # warm the OS file cache and byte code
    walls, paints = [], []
    for _ in range(runs):
        wall, paint = run_in_pty(cmd, project, env)
        walls.append(wall)
        if paint is not None:
            paints.append(paint)
    return {
        "tui_diff_first_paint_ms": ms(statistics.median(paints)) if paints else -1.0,
        "tui_diff_start_to_exit_wall_ms": ms(statistics.median(walls)),
    }


async def _scroll(project: Path, presses: int) -> dict[str, float]:
    from envlock.tui.app import EnvlockApp
    from envlock.tui.screens import HomeScreen

    app = EnvlockApp(project)
    t0 = time.perf_counter()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        loaded = time.perf_counter() - t0
        assert isinstance(app.screen, HomeScreen)
        models = app.screen.query_one("#models")
        models.focus()
        await pilot.pause()
        t1, c1 = time.perf_counter(), time.process_time()
        for _ in range(presses):
            await pilot.press("pagedown")
        await pilot.pause()
        scrolled, cpu = time.perf_counter() - t1, time.process_time() - c1
    return {"load": loaded, "wall": scrolled, "cpu": cpu}


def _models(rows: int) -> list[dict[str, str]]:
    statuses = ("in store", "in registry", "missing")
    return [
        {
            "name": f"model-{i:04d}",
            "commit": hashlib.sha1(str(i).encode()).hexdigest(),
            "date": "2026-11-01T00:00:00Z",
            "env_id": "sha256:" + sha(str(i)),
            "image_status": statuses[i % 3],
        }
        for i in range(rows)
    ]


def bench_home_scroll(project: Path, presses: int = 50) -> dict[str, float]:
    """Pilot waits for the app to go idle after every key (polling in 20 ms steps), so its
    wall time has a floor; the same run over a 10-row table gives that floor."""
    out: dict[str, float] = {}
    for rows in (1000, 10):
        path = project / f"models-{rows}.json"
        path.write_text(json.dumps(_models(rows)))
        os.environ["ENVLOCK_TUI_MODELS"] = str(path)
        try:
            got = asyncio.run(_scroll(project, presses))
        finally:
            del os.environ["ENVLOCK_TUI_MODELS"]
        out[f"home_{rows}_models_load_ms"] = ms(got["load"])
        out[f"home_{rows}_pagedown_x{presses}_ms"] = ms(got["wall"])
        out[f"home_{rows}_pagedown_cpu_each_ms"] = ms(got["cpu"] / presses)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10, help="runs of the process benchmarks")
    args = parser.parse_args()
    a, b = synthetic_locks()
    results: dict[str, object] = {"packages_per_lock": 600, "python": sys.version.split()[0]}
    results.update(bench_library(a, b, 50))
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        write_project(project, a, b)
        results["read_parse_diff_600_ms"] = bench_parse_and_diff(project, 50)
        results["cli_diff_json_wall_ms"] = bench_cli(project, args.runs)
        results.update(bench_first_paint(project, args.runs))
        results.update(bench_home_scroll(project))
    out = HERE / "results" / "diff.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    rows = [
        ("diff_locks, 600 vs 600 packages (median of 50)", "diff_locks_600_ms", "< 50 ms"),
        ("read + parse both locks + diff (median of 50)", "read_parse_diff_600_ms", ""),
        ("`envlock diff --json`, process wall", "cli_diff_json_wall_ms", ""),
        ("TUI diff screen: process start to first paint", "tui_diff_first_paint_ms", "< 500 ms"),
        (
            "TUI diff screen: process start to exit (after paint)",
            "tui_diff_start_to_exit_wall_ms",
            "",
        ),
        ("TUI home, 1,000 models: start + load (Pilot)", "home_1000_models_load_ms", ""),
        ("TUI home, 1,000 models: 50 x pagedown, Pilot wall", "home_1000_pagedown_x50_ms", ""),
        ("TUI home, 10 models: 50 x pagedown, Pilot wall (floor)", "home_10_pagedown_x50_ms", ""),
        ("TUI home, 1,000 models: CPU per pagedown", "home_1000_pagedown_cpu_each_ms", "no lag"),
        ("TUI home, 10 models: CPU per pagedown", "home_10_pagedown_cpu_each_ms", ""),
    ]
    print(f"process measures: median of {args.runs}\n")
    print("| measure | ms | target |\n|---|---|---|")
    for label, key, target in rows:
        print(f"| {label} | {results[key]} | {target} |")
    print(f"\nsummary of the synthetic diff: {results['summary']}")
    print(f"wrote {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
