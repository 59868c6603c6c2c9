"""Benchmark: push, pull and load of a big image, envlock vs the Docker engine (issue 14).

    python bench/bench_cuda.py [--spec specs/vision.toml] [--packages numpy pandas scikit-learn]
                               [--work DIR] [--min-free-gb 35]

Default: ``specs/vision.toml`` (torch 2.9 + CUDA 12.8 + numpy/pandas/scikit-learn, ~7 GB
image; needs ~30 GB free and refuses to start below ``--min-free-gb``, 35).  ``--packages``
instead locks a small CPU spec of those packages on debian:bookworm (the CI-sized run).

Starts a docker-registry on 127.0.0.1 and a dockerd on a private socket (unless
DOCKER_HOST is set), builds the image into a fresh store, then measures, same run:

  * push:  ``envlock build --push`` (gzip; again with the cache warm; zstd) vs
           ``docker push`` of the same image loaded into the engine;
  * pull:  ``envlock pull`` into an empty store vs ``docker pull`` into an engine without it;
  * load:  ``envlock build --load`` (archive streamed) vs ``docker load`` of a ``docker save`` archive;
  * bytes: ``envlock store du`` (after ``store gc --drop-built-artifacts``; also before) vs the
           engine's data root (``du``), when we own the engine;
  * cache: ``envlock cache push``, then a second machine: ``envlock build --cache`` on an empty
           store vs ``envlock build`` on an empty store (downloads, bootstrap) and on a store
           with the wheels and the base but no layers;
  * the machine: sha256, gzip/zstd decompression and single-thread compression MB/s.

Everything it made is removed at the end.  Writes bench/results/cuda.json and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return took, proc.stdout.strip()


def envlock(*args: str, env: dict[str, str], cwd: Path) -> tuple[float, str]:
    return run([sys.executable, "-m", "envlock", *args], env, cwd)


def docker(host: str, *args: str) -> tuple[float, str]:
    return run(["docker", "--host", host, *args], dict(os.environ))


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else 0


def machine(sample: bytes) -> dict[str, float]:
    """MB/s of this machine on a real layer's first bytes, one thread each."""
    import gzip

    import zstandard
    from isal import igzip

    from envlock.image import compress

    def rate(fn: object) -> float:
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        return round(len(sample) / (time.perf_counter() - t0) / 1e6)

    gz = io.BytesIO()
    compress.compress_into(io.BytesIO(sample), gz, compress.codec("gzip"), 1)
    zs = io.BytesIO()
    compress.compress_into(io.BytesIO(sample), zs, compress.codec("zstd"), 1)
    gz_bytes, zs_bytes = gz.getvalue(), zs.getvalue()
    return {
        "sample_MB": round(len(sample) / 1e6),
        "sha256_MBps": rate(lambda: hashlib.sha256(sample).digest()),
        "igzip_l2_1thread_MBps": rate(
            lambda: compress.compress_into(io.BytesIO(sample), io.BytesIO(), compress.codec("gzip"), 1)
        ),
        "zlib_l6_1thread_MBps": rate(lambda: gzip.compress(sample, 6, mtime=0)),
        "zstd_l3_1thread_MBps": rate(
            lambda: compress.compress_into(io.BytesIO(sample), io.BytesIO(), compress.codec("zstd"), 1)
        ),
        "gunzip_isal_MBps": rate(lambda: igzip.decompress(gz_bytes)),
        "gunzip_zlib_MBps": rate(lambda: gzip.decompress(gz_bytes)),
        "unzstd_MBps": rate(lambda: zstandard.ZstdDecompressor().decompressobj().decompress(zs_bytes)),
        "gzip_ratio": round(len(gz_bytes) / len(sample), 3),
        "zstd_ratio": round(len(zs_bytes) / len(sample), 3),
    }


def second_machine(
    spec: Path,
    store: Path,
    work: Path,
    reg: str,
    image_id: str,
    env: dict[str, str],
    results: dict[str, object],
    codecs: tuple[str, ...] = ("gzip",),
) -> None:
    """The build cache (one per codec): publish, then build on an empty store from it, against building on an
    empty store without it (wheels downloaded, base bootstrapped) and on a store that has the
    wheels and the base (hard links of the first store's) but no layers."""
    from envlock.store import Store

    for codec in codecs:
        cache = f"{reg}/envlock/cache-{codec}"
        cmd = ["cache", "push", str(spec), "--cache", cache, "--compression", codec, "--store", str(store)]
        suffix = "" if codec == "gzip" else f"_{codec}"
        results[f"cache_publish{suffix}_s"] = round(envlock(*cmd, env=env, cwd=work)[0], 1)
        fresh = work / "machine-b"
        took, out = envlock("build", str(spec), "--store", str(fresh), "--cache", cache, env=env, cwd=work)
        assert out.splitlines()[-1] == image_id, (out, image_id)
        results[f"second_machine_with_cache{suffix}_s"] = round(took, 1)
        subprocess.run(["rm", "-rf", str(fresh)], check=False)

    cold = work / "machine-d"  # nothing at all: wheels downloaded, base bootstrapped
    took, out = envlock("build", str(spec), "--store", str(cold), env=env, cwd=work)
    assert out.splitlines()[-1] == image_id, (out, image_id)
    results["second_machine_cold_no_cache_s"] = round(took, 1)
    subprocess.run(["rm", "-rf", str(cold)], check=False)

    warm = work / "machine-c"
    subprocess.run(["cp", "-al", str(store), str(warm)], check=True)
    records = [json.loads(p.read_text()) for p in (warm / "bases").glob("*.json")]
    bases = [r["manifest"] for r in records if isinstance(r, dict) and "manifest" in r]
    keep = {d.split(":")[1] for m in bases for d in Store(warm).manifest_closure(m)}
    for blob in (warm / "blobs" / "sha256").iterdir():
        if blob.name not in keep:
            blob.unlink()
    for gone in ("layers", "envs", "buildkeys", "compressed", "index.json"):
        subprocess.run(["rm", "-rf", str(warm / gone)], check=False)
    took, out = envlock("build", str(spec), "--store", str(warm), env=env, cwd=work)
    assert out.splitlines()[-1] == image_id, (out, image_id)
    results["second_machine_warm_wheels_no_cache_s"] = round(took, 1)
    subprocess.run(["rm", "-rf", str(warm)], check=False)


class _Done(Exception):
    """The measures asked for are taken."""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spec", type=Path, default=ROOT / "specs" / "vision.toml")
    parser.add_argument("--packages", nargs="*", help="lock a small CPU spec of these instead")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--min-free-gb", type=float, default=35.0)
    parser.add_argument(
        "--only-cache",
        action="store_true",
        help="build, then only the build cache measures (gzip, zstd and uncompressed entries); no engine",
    )
    args = parser.parse_args()
    free = shutil.disk_usage(args.work).free / 1e9
    if free < args.min_free_gb:
        raise SystemExit(
            f"only {free:.0f} GB free in {args.work}; this benchmark needs {args.min_free_gb:.0f}"
        )
    from support import start_dockerd, start_registry

    work = Path(tempfile.mkdtemp(prefix="envlock-bench-cuda-", dir=args.work))
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, object] = {}
    results["loadavg_at_start"] = [round(x, 1) for x in os.getloadavg()]
    try:
        (work / "specs").mkdir()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if args.packages is not None:
            pkgs = ", ".join(f'"{p}"' for p in args.packages)
            spec = work / "specs" / "small.toml"
            spec.write_text(
                f'python = "3.11"\n[pip]\npackages = [{pkgs}]\nexclude-newer = "2026-11-01"\n'
                '[image]\nbase = "debian:bookworm"\n'
            )
            results["lock_s"] = round(envlock("lock", str(spec), env=env, cwd=work)[0], 1)
        else:
            spec = work / "specs" / args.spec.name
            for file in args.spec.parent.iterdir():  # the spec, its lock and its exports
                if file.is_file() and args.spec.stem in file.name.split("."):
                    shutil.copy(file, work / "specs" / file.name)
        store, pulled = work / "store", work / "pulled"
        took, out = envlock("build", str(spec), "--store", str(store), env=env, cwd=work)
        image_id = out.splitlines()[-1]
        results["build_cold_s"] = round(took, 1)
        (work / "registry").mkdir()
        reg_proc, reg = start_registry(work / "registry")
        procs.append(reg_proc)
        if args.only_cache:
            second_machine(spec, store, work, reg, image_id, env, results, ("gzip", "zstd", "none"))
            raise _Done
        if os.environ.get("DOCKER_HOST"):
            host, data_root = os.environ["DOCKER_HOST"], None
        else:
            (work / "dockerd").mkdir()
            dockerd, info = start_dockerd(work / "dockerd")
            procs.append(dockerd)
            host, data_root = info.host, work / "dockerd" / "data"
        env_d = {**env, "DOCKER_HOST": host}
        build = ["build", str(spec), "--store", str(store)]

        took, out = envlock(*build, "--push", f"{reg}/envlock/gzip", env=env, cwd=work)
        pushed = out.splitlines()[-1]
        results["envlock_push_s"] = round(took, 1)
        results["envlock_push_again_s"] = round(
            envlock(*build, "--push", f"{reg}/envlock/gzip", env=env, cwd=work)[0], 1
        )
        second_machine(spec, store, work, reg, image_id, env, results)  # publishes what was just pushed
        shutil.rmtree(store / "compressed", ignore_errors=True)
        results["envlock_push_zstd_s"] = round(
            envlock(*build, "--push", f"{reg}/envlock/zstd", "--compression", "zstd", env=env, cwd=work)[0], 1
        )
        results["envlock_push_mount_s"] = round(
            envlock(*build, "--push", f"{reg}/envlock/zstd2", "--compression", "zstd", env=env, cwd=work)[0],
            1,
        )
        results["store_after_push"] = json.loads(
            envlock("store", "du", "--json", "--store", str(store), env=env, cwd=work)[1]
        )

        results["envlock_load_s"] = round(envlock(*build, "--load", env=env_d, cwd=work)[0], 1)
        docker(host, "tag", image_id, f"{reg}/docker/img:1")
        results["docker_push_s"] = round(docker(host, "push", f"{reg}/docker/img:1")[0], 1)
        if data_root is not None:
            results["engine_data_root_bytes"] = du(data_root)
        archive = work / "saved.tar"
        results["docker_save_s"] = round(docker(host, "save", "-o", str(archive), image_id)[0], 1)
        docker(host, "rmi", "-f", image_id)
        results["docker_load_archive_s"] = round(docker(host, "load", "-i", str(archive))[0], 1)
        archive.unlink()
        docker(host, "rmi", "-f", image_id)
        results["envlock_load_again_s"] = round(envlock(*build, "--load", env=env_d, cwd=work)[0], 1)
        docker(host, "rmi", "-f", image_id)
        docker(host, "image", "prune", "-af")
        results["docker_pull_s"] = round(docker(host, "pull", pushed)[0], 1)
        took, out = envlock("pull", pushed, "--store", str(pulled), env=env, cwd=work)
        assert out.strip() == image_id, (out, image_id)
        results["envlock_pull_s"] = round(took, 1)
        results["store_bytes_with_wheels"] = json.loads(
            envlock("store", "du", "--json", "--store", str(store), env=env, cwd=work)[1]
        )["total"]
        envlock(
            "store",
            "gc",
            str(spec),
            "--force",
            "--drop-built-artifacts",
            "--store",
            str(store),
            env=env,
            cwd=work,
        )
        results["store_bytes"] = json.loads(
            envlock("store", "du", "--json", "--store", str(store), env=env, cwd=work)[1]
        )["total"]
        biggest = max((store / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
        with biggest.open("rb") as fh:
            sample = fh.read(256 << 20)
        results["machine"] = machine(sample)
        results["cores"] = len(os.sched_getaffinity(0))
        results["loadavg_at_end"] = [round(x, 1) for x in os.getloadavg()]
        results["image_id"] = image_id
    except _Done:
        pass
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / ("cuda-cache.json" if args.only_cache else "cuda.json")).write_text(
        json.dumps(results, indent=2, sort_keys=True) + "\n"
    )
    for key, value in sorted(results.items()):
        if not isinstance(value, dict):
            print(f"{key:28} {value}")
    print(json.dumps(results.get("machine"), indent=2))
    print(json.dumps(results.get("store_after_push", {}).get("categories"), indent=2))  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
