"""Benchmark: envlock build vs `docker build` of the equivalent Dockerfile, same run.

    python bench/bench_build.py [--torch-wheel PATH] [--runs N]

Environment: torch (CPU wheel) + numpy, pandas, scipy, scikit-learn on debian:bookworm.
Both sides start from a warm artifact cache (all wheels already downloaded and
verified) and the same base image:

  * envlock: `envlock build` into a store that has the artifacts and the base but no
    layers or image (its layer cache is emptied before each run);
  * docker: `docker build --no-cache` of a Dockerfile that COPYs the same wheels into
    the image and `pip install`s them from that local wheelhouse (as in issue 3).

The envlock side is measured twice: as specs get it by default (no byte code in the
image; Python compiles on first import) and with `bytecode = true` (every .py compiled,
as pip does in the Dockerfile).  Also measured: rebuild of an already-built lock, bytes shared by two environments that
differ in one small package, image sizes (as the engine reports them), and this
machine's sha256 and unzip throughput.  Starts its own dockerd on a private socket
unless DOCKER_HOST is set.  Writes bench/results/build.json and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_TORCH = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")
PACKAGES = ["numpy", "pandas", "scipy", "scikit-learn"]


def spec_text(torch: Path, extra: str = "", bytecode: bool = False) -> str:
    version = torch.name.split("-")[1]
    pkgs = ", ".join(f'"{p}"' for p in [f"torch=={version}", *PACKAGES, *([extra] if extra else [])])
    return f"""python = "3.11"
[pip]
packages = [{pkgs}]
find-links = ["{torch.parent}"]
exclude-newer = "2026-11-01"
[image]
base = "debian:bookworm"
""" + ("bytecode = true\n" if bytecode else "")


def envlock(*args: str, cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "envlock", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"envlock {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return took, proc.stdout.strip().splitlines()[-1]


def docker(*args: str, env: dict[str, str]) -> str:
    proc = subprocess.run(["docker", *args], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def reset_store(store: Path, keep: set[str]) -> None:
    """Forget images and layers; keep artifacts and the base's blobs."""
    for sub in ("envs", "layers", "gzip"):
        shutil.rmtree(store / sub, ignore_errors=True)
        (store / sub).mkdir()
    for blob in (store / "blobs/sha256").iterdir():
        if "sha256:" + blob.name not in keep:
            blob.unlink()


def start_dockerd(root: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    if os.environ.get("DOCKER_HOST"):
        return None, os.environ["DOCKER_HOST"]
    sock = root / "docker.sock"
    proc = subprocess.Popen(
        [
            "dockerd",
            f"--host=unix://{sock}",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'pid'}",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    host = f"unix://{sock}"
    for _ in range(300):
        if subprocess.run(["docker", "--host", host, "version"], capture_output=True).returncode == 0:
            return proc, host
        time.sleep(0.2)
    raise SystemExit("dockerd did not start")


def throughput(torch: Path) -> dict[str, float]:
    data = os.urandom(256 << 20)
    t0 = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    sha = len(data) / (time.perf_counter() - t0) / 1e6
    t0 = time.perf_counter()
    total = 0
    with zipfile.ZipFile(torch) as zf:
        for info in zf.infolist():
            with zf.open(info) as fh:
                while chunk := fh.read(1 << 20):
                    total += len(chunk)
    unzip = total / (time.perf_counter() - t0) / 1e6
    return {"sha256_MBps": round(sha), "unzip_MBps": round(unzip), "torch_unzipped_MB": round(total / 1e6)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--torch-wheel", type=Path, default=DEFAULT_TORCH)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not args.torch_wheel.is_file():
        raise SystemExit(f"no torch CPU wheel at {args.torch_wheel}; pass --torch-wheel PATH")

    work = Path(tempfile.mkdtemp(prefix="envlock-bench-build-"))
    (work / "specs").mkdir()
    spec = work / "specs/cpu.toml"
    spec.write_text(spec_text(args.torch_wheel))
    store = work / "store"
    env = {**os.environ, "ENVLOCK_HOME": str(store)}
    dockerd, host = start_dockerd(work / "dockerd")
    env["DOCKER_HOST"] = host
    results: dict[str, object] = {"cpus": os.cpu_count()}
    try:
        envlock("lock", str(spec), cwd=work, env=env)
        # warm: artifacts downloaded and verified, base bootstrapped, first image built
        envlock("build", str(spec), cwd=work, env=env)
        lock = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import json,sys,tomllib; print(json.dumps(tomllib.load(open(sys.argv[1],'rb'))))",
                    str(spec.with_suffix(".lock")),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        base_manifest = next(
            json.loads(p.read_text())["manifest"]
            for p in (store / "bases").glob("*.json")
            if not p.name.startswith("inspect")
        )
        keep = {base_manifest}
        manifest = json.loads((store / "blobs/sha256" / base_manifest.split(":")[1]).read_text())
        keep |= {manifest["config"]["digest"], *(la["digest"] for la in manifest["layers"])}

        # envlock, from warm artifacts
        envlock_times, ids = [], set()
        for _ in range(args.runs):
            reset_store(store, keep)
            took, image = envlock("build", str(spec), "-q", cwd=work, env=env)
            envlock_times.append(took)
            ids.add(image)
        results["envlock_build_s"] = round(statistics.median(envlock_times), 2)
        results["envlock_build_samples"] = [round(t, 2) for t in envlock_times]
        print("envlock build:", results["envlock_build_samples"], flush=True)
        results["envlock_ids_distinct"] = len(ids)
        image_id = ids.pop()
        rebuild = [envlock("build", str(spec), "-q", cwd=work, env=env)[0] for _ in range(5)]
        results["envlock_rebuild_s"] = round(statistics.median(rebuild), 3)
        envlock("build", str(spec), "-q", "--load", cwd=work, env=env)
        results["envlock_image_MB"] = round(
            int(docker("image", "inspect", "--format", "{{.Size}}", image_id, env=env)) / 1e6
        )

        # the same with byte code compiled into the image (as pip in the Dockerfile does)
        compiled = work / "specs/cpubc.toml"
        compiled.write_text(spec_text(args.torch_wheel, bytecode=True))
        envlock("lock", str(compiled), cwd=work, env=env)
        bytecode_times = []
        for _ in range(args.runs):
            reset_store(store, keep)
            took, compiled_id = envlock("build", str(compiled), "-q", cwd=work, env=env)
            bytecode_times.append(took)
        results["envlock_bytecode_build_s"] = round(statistics.median(bytecode_times), 2)
        results["envlock_bytecode_build_samples"] = [round(t, 2) for t in bytecode_times]
        print("envlock build, bytecode = true:", results["envlock_bytecode_build_samples"], flush=True)
        envlock("build", str(compiled), "-q", "--load", cwd=work, env=env)
        results["envlock_bytecode_image_MB"] = round(
            int(docker("image", "inspect", "--format", "{{.Size}}", compiled_id, env=env)) / 1e6
        )
        envlock("build", str(spec), "-q", cwd=work, env=env)  # the plain image again, for the sharing test

        # docker build of the equivalent Dockerfile, same wheels, same base
        ctx = work / "ctx"
        (ctx / "wheels").mkdir(parents=True)
        lines = []
        for p in lock["platforms"][0]["packages"]:
            name = p["url"].rsplit("/", 1)[-1].replace("%2B", "+")
            os.link(store / "artifacts/sha256" / p["sha256"], ctx / "wheels" / name)
            lines.append(f"{p['name']}=={p['version']} --hash=sha256:{p['sha256']}")
        (ctx / "requirements.txt").write_text("\n".join(lines) + "\n")
        base_tag = "envlock-bench-base:latest"
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"""
from envlock.store import Store
from envlock.image.build import load_image
from envlock import engine
s = Store()
engine.load(s, load_image(s, "{base_manifest}"), ["{base_tag}"])
""",
            ],
            env=env,
            check=True,
        )
        (ctx / "Dockerfile").write_text(
            f"FROM {base_tag}\n"
            "COPY wheels /wheels\nCOPY requirements.txt /requirements.txt\n"
            "RUN python3.11 -m venv /opt/env && /opt/env/bin/pip install --no-index --find-links /wheels "
            "--require-hashes -r /requirements.txt\n"
            'ENV PATH="/opt/env/bin:$PATH"\n'
        )
        docker_times, docker_ids = [], set()
        for i in range(args.runs):
            t0 = time.perf_counter()
            docker("build", "--no-cache", "-q", "-t", f"bench-docker:{i}", str(ctx), env=env)
            docker_times.append(time.perf_counter() - t0)
            docker_ids.add(docker("image", "inspect", "--format", "{{.Id}}", f"bench-docker:{i}", env=env))
        results["docker_build_s"] = round(statistics.median(docker_times), 2)
        results["docker_build_samples"] = [round(t, 2) for t in docker_times]
        print("docker build:", results["docker_build_samples"], flush=True)
        results["docker_ids_distinct"] = len(docker_ids)
        results["docker_image_MB"] = round(
            int(docker("image", "inspect", "--format", "{{.Size}}", "bench-docker:0", env=env)) / 1e6
        )

        # sharing: the same environment plus one small package
        other = work / "specs/cpu2.toml"
        other.write_text(spec_text(args.torch_wheel, "tomli-w"))  # a small package not in the env
        envlock("lock", str(other), cwd=work, env=env)
        took_other, other_id = envlock("build", str(other), "-q", cwd=work, env=env)
        results["envlock_build_plus_one_package_s"] = round(took_other, 2)

        def layers(wanted: str) -> dict[str, int]:
            entry = next(
                json.loads(p.read_text())
                for p in (store / "envs").glob("*.json")
                if json.loads(p.read_text())["image_id"] == wanted
            )
            m = json.loads((store / "blobs/sha256" / entry["manifest"].split(":")[1]).read_text())
            return {la["digest"]: la["size"] for la in m["layers"]}

        a, b = layers(image_id), layers(other_id)
        shared = sum(size for digest, size in b.items() if digest in a)
        results["shared_bytes_pct"] = round(100 * shared / sum(b.values()), 2)
        results.update(throughput(args.torch_wheel))
    finally:
        if dockerd is not None:
            dockerd.terminate()
            dockerd.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)

    speedup = float(results["docker_build_s"]) / float(results["envlock_build_s"])  # type: ignore[arg-type]
    smaller = 100 * (1 - float(results["envlock_image_MB"]) / float(results["docker_image_MB"]))  # type: ignore[arg-type]
    results["speedup_vs_docker"] = round(speedup, 1)
    bc_speedup = float(results["docker_build_s"]) / float(results["envlock_bytecode_build_s"])  # type: ignore[arg-type]
    results["bytecode_speedup_vs_docker"] = round(bc_speedup, 1)
    results["smaller_than_docker_pct"] = round(smaller, 1)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "build.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print()
    print("| measurement | envlock | docker build | ratio |")
    print("|---|---|---|---|")
    r = results
    e, d = r["envlock_build_s"], r["docker_build_s"]
    print(f"| build, warm artifacts | {e} s | {d} s | {speedup:.1f}x faster |")
    print(f"| image size | {r['envlock_image_MB']} MB | {r['docker_image_MB']} MB | {smaller:.0f}% smaller |")
    b = r["envlock_bytecode_build_s"]
    print(f"| build with bytecode = true | {b} s | {d} s | {bc_speedup:.1f}x faster |")
    print(f"| image size with bytecode | {r['envlock_bytecode_image_MB']} MB | {r['docker_image_MB']} MB | |")
    ei, di = r["envlock_ids_distinct"], r["docker_ids_distinct"]
    print(f"| distinct IDs, {args.runs} builds | {ei} | {di} | |")
    print(f"| rebuild of a built lock | {results['envlock_rebuild_s']} s | | target < 0.5 s |")
    print(f"| bytes shared, +1 small package | {results['shared_bytes_pct']}% | | target > 95% |")
    print(
        f"| build of that +1 package env | {results['envlock_build_plus_one_package_s']} s | | shared layers reused |"
    )
    print(f"| machine: sha256 {results['sha256_MBps']} MB/s, unzip {results['unzip_MBps']} MB/s | | | |")


if __name__ == "__main__":
    main()
