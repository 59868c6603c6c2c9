"""Benchmark: `envlock doctor` on a host without GPU, and reading a torch wheel's GPU architectures.

    python bench/bench_doctor.py [--runs N] [--wheel PATH]

Writes a torch 2.9.1 + CUDA 12.8 lock (the packages `envlock lock` resolves for it, with their
PyPI sha256) into a throw-away directory, then times, as wall from process start, median of N
interleaved rounds (default 15):

  * `python -c pass`                           the floor
  * `envlock doctor`                           this host only
  * `envlock doctor LOCK`                      host + engine + the lock (architectures from the matrix)
  * `envlock doctor LOCK --gpu .. --driver ..` planning, no probing

and then the architectures read from the locked torch wheel itself (899,821,446 bytes; downloaded
once to ~/.cache/envlock-bench unless --wheel names a copy; its sha256 is checked): the first
`envlock doctor LOCK` with the wheel in the store (fatbin headers + sha256 of the whole wheel),
then the cached answer.  CPU seconds of the first read are printed too: on a shared machine wall
time says more about the neighbours than about envlock.

Writes bench/results/doctor.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from envlock import lockfile as lockmod  # noqa: E402
from envlock.lockfile import Package, PlatformLock  # noqa: E402

TORCH_URL = "https://files.pythonhosted.org/packages/56/be/76eaa36c9cd032d3b01b001e2c5a05943df75f26211f68fae79e62f87734/torch-2.9.1-cp311-cp311-manylinux_2_28_x86_64.whl"
TORCH_SHA = "d033ff0ac3f5400df862a51bdde9bad83561f3739ea0046e68f5401ebfa67c1b"
RUNTIME_URL = "https://files.pythonhosted.org/packages/0d/9b/a997b638fcd068ad6e4d53b8551a7d30fe8b404d6f1804abf1df69838932/nvidia_cuda_runtime_cu12-12.8.90-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"
RUNTIME_SHA = "adade8dcbd0edf427b7204d480d6066d33902cab2a4707dcfc48a2d0fd44ab90"


def write_lock(root: Path) -> Path:
    packages = (
        Package("pip", "torch", "2.9.1", TORCH_URL, TORCH_SHA, 899821446),
        Package("pip", "nvidia-cuda-runtime-cu12", "12.8.90", RUNTIME_URL, RUNTIME_SHA, 954765),
    )
    lock = lockmod.make("bench", [PlatformLock("linux-64", "3.11", cuda="12.8", packages=packages)], {})
    path = root / "vision.lock"
    lockmod.write_files({path: lockmod.render(lock)})
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def torch_wheel(given: str | None) -> Path:
    path = Path(given) if given else Path.home() / ".cache" / "envlock-bench" / TORCH_URL.rsplit("/", 1)[-1]
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"downloading {TORCH_URL} (900 MB) to {path}", file=sys.stderr)
        tmp = path.with_suffix(".part")
        with urllib.request.urlopen(TORCH_URL) as reply, tmp.open("wb") as out:
            shutil.copyfileobj(reply, out, 1 << 20)
        tmp.replace(path)
    if sha256(path) != TORCH_SHA:
        raise SystemExit(f"{path}: not the locked torch wheel (sha256 differs)")
    return path


CPU: dict[str, list[float]] = {}


def timed(cmd: list[str], cwd: Path, env: dict[str, str], name: str = "") -> float:
    """Wall seconds of one run; its CPU seconds (user + system) are kept under ``name``."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    CPU.setdefault(name or " ".join(cmd), []).append(cpu)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--wheel", help="a local copy of the torch 2.9.1 cp311 wheel")
    args = parser.parse_args()

    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="envlock-bench-doctor-") as tmp:
        root = Path(tmp)
        lock = write_lock(root)
        store = root / "store"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ENVLOCK_HOME": str(store)}
        doctor = [py, "-m", "envlock", "doctor"]
        cases = {
            "python -c pass": [py, "-c", "pass"],
            "envlock doctor": doctor,
            "envlock doctor LOCK": [*doctor, lock.name],
            "envlock doctor LOCK --gpu sm_90 --driver 535.104.05": [
                *doctor,
                lock.name,
                "--gpu",
                "sm_90",
                "--driver",
                "535.104.05",
            ],
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, cmd in cases.items():
                samples[name].append(timed(cmd, root, env, name))

        wheel = torch_wheel(args.wheel)
        from envlock import fatbin
        from envlock.store import Store

        s = Store(store)
        artifact = s.artifact_path(TORCH_SHA)
        shutil.copyfile(wheel, artifact)
        with artifact.open("rb") as fh:  # warm the page cache: we time parsing, not the disk
            while fh.read(8 << 20):
                pass
        cache = store / "archs" / f"{TORCH_SHA}.json"
        first: list[float] = []
        for _ in range(3):
            cache.unlink(missing_ok=True)
            first.append(timed([*doctor, lock.name], root, env, "first read"))
        cpu0 = time.process_time()
        found, _names = fatbin.read_verified(artifact, TORCH_SHA, fatbin.CARRIERS["torch"], fatbin.SAMPLE)
        cpu = time.process_time() - cpu0
        cached = [timed([*doctor, lock.name], root, env, "cached") for _ in range(args.runs)]
        archs = json.loads(cache.read_text())

    results = {
        "runs": args.runs,
        "load_average": os.getloadavg(),
        "median_ms": {name: statistics.median(v) * 1000 for name, v in samples.items()},
        "median_cpu_ms": {name: statistics.median(v) * 1000 for name, v in CPU.items()},
        "archs_first_read_ms": statistics.median(first) * 1000,
        "archs_first_read_cpu_s": cpu,
        "archs_cached_ms": statistics.median(cached) * 1000,
        "archs": {"sass": archs["sass"], "ptx": archs["ptx"], "containers": found.containers},
    }
    out = HERE / "results" / "doctor.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")

    print(f"load average {results['load_average'][0]:.1f} on {os.cpu_count()} CPUs\n")
    cpu_ms = results["median_cpu_ms"]
    print("| command | wall, median | CPU, median | target |\n|---|---|---|---|")
    for name, ms in results["median_ms"].items():
        target = "< 150 ms" if name.startswith("envlock doctor") else ""
        print(f"| `{name}` | {ms:.0f} ms | {cpu_ms[name]:.0f} ms | {target} |")
    print(
        f"| torch wheel architectures, first read (`envlock doctor LOCK`) | "
        f"{results['archs_first_read_ms'] / 1000:.2f} s | {cpu_ms['first read'] / 1000:.2f} s | < 2 s |"
    )
    print(
        f"| torch wheel architectures, cached | {results['archs_cached_ms']:.0f} ms "
        f"| {cpu_ms['cached']:.0f} ms | < 150 ms |"
    )
    print(f"\nin-process read_verified (hash thread included): {cpu:.2f} s CPU")
    print(f"\nread: sm {archs['sass']} ptx {archs['ptx']} from {found.containers} containers")


if __name__ == "__main__":
    main()
