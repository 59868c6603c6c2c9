"""Benchmark: push, pull and load of a big image, envlock vs the Docker engine (issue 14).

    python bench/bench_cuda.py [--spec specs/vision.toml] [--packages numpy pandas scikit-learn]
                               [--work DIR] [--min-free-gb 35] [--only-push | --only-cache | --only-load]

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
  * the machine: sha256, gzip/zstd decompression and single-thread compression MB/s; the
           parallel compression limit (every layer compressed on every core, as a push
           does, without sending it); the write+fsync rate of the work directory's disk;
  * CPU: for each push and cache build, the CPU-seconds envlock (or docker) and the
           registry spent, so a run shows which of them a 2-core machine waited for.

Everything it made is removed at the end.  Writes bench/results/cuda.json and prints a table.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))


CPU: dict[str, float] = {"last": 0.0}  # CPU-seconds (user + system) of the last command run


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU-seconds (user + system) a running process has used so far (proc(5), ``stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, str]:
    t0, c0 = time.perf_counter(), children_cpu()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    CPU["last"] = children_cpu() - c0
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


def measured(
    results: dict[str, object],
    key: str,
    peer: tuple[str, int],
    command: Callable[..., tuple[float, str]],
    *args: str,
    **kwargs: object,
) -> tuple[float, str]:
    """Run ``command(*args, **kwargs)`` (``envlock`` or ``docker``) and record its wall time
    as ``KEY_s`` and the CPU-seconds it and the peer process (``(name, pid)``: the registry or
    dockerd) spent as ``KEY_cpu``."""
    name, pid = peer
    before = process_cpu(pid)
    took, out = command(*args, **kwargs)
    results[f"{key}_s"] = round(took, 1)
    results[f"{key}_cpu"] = {
        "command": round(CPU["last"], 1),
        name: round(process_cpu(pid) - before, 1),
    }
    return took, out


def compression_limit(store: Path, image_id: str, codec: str) -> dict[str, float]:
    """The machine's parallel compression limit for this image: every layer compressed with
    the push's codec and settings, three layers at once on every core as a push does, read
    from the store and thrown away.  Returns wall seconds, CPU-seconds and bytes out."""
    from concurrent.futures import ThreadPoolExecutor

    from envlock.image import compress
    from envlock.store import Store

    blobs = Store(store)
    config = json.loads(blobs.blob_path(image_id).read_bytes())
    layers = [blobs.blob_path(d) for d in dict.fromkeys(config["rootfs"]["diff_ids"])]
    chosen = compress.codec(codec)

    class Count(io.RawIOBase):
        written = 0

        def writable(self) -> bool:
            return True

        def write(self, data: object) -> int:
            n = len(data)  # type: ignore[arg-type]
            self.written += n
            return n

    def one(path: Path) -> int:
        sink = Count()
        with path.open("rb") as src:
            compress.compress_into(src, sink, chosen, compress.cores())  # type: ignore[arg-type]
        return sink.written

    t0, c0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=3) as pool:
        out = sum(pool.map(one, layers))
    return {
        "s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "in_GB": round(sum(p.stat().st_size for p in layers) / 1e9, 2),
        "out_GB": round(out / 1e9, 2),
    }


def write_rate(work: Path, size: int = 1 << 30) -> dict[str, float]:
    """MB/s of writing ``size`` bytes into a new file in ``work`` and ``fsync``-ing it (what
    a store does with every blob), and the CPU-seconds per GB it cost this process."""
    block = os.urandom(1 << 20)
    path = work / "write-rate.bin"
    t0, c0 = time.perf_counter(), time.process_time()
    with path.open("wb") as fh:
        for _ in range(size // len(block)):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    took, cpu = time.perf_counter() - t0, time.process_time() - c0
    path.unlink()
    return {"write_fsync_MBps": round(size / took / 1e6), "write_cpu_s_per_GB": round(cpu / (size / 1e9), 2)}


def second_machine(
    spec: Path,
    store: Path,
    work: Path,
    reg: str,
    reg_pid: tuple[str, int],
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
        measured(results, f"cache_publish{suffix}", reg_pid, envlock, *cmd, env=env, cwd=work)
        fresh = work / "machine-b"
        build = ["build", str(spec), "--store", str(fresh), "--cache", cache]
        _, out = measured(
            results, f"second_machine_with_cache{suffix}", reg_pid, envlock, *build, env=env, cwd=work
        )
        assert out.splitlines()[-1] == image_id, (out, image_id)
        subprocess.run(["rm", "-rf", str(fresh)], check=False)

    cold = work / "machine-d"  # nothing at all: wheels downloaded, base bootstrapped
    _, out = measured(
        results,
        "second_machine_cold_no_cache",
        reg_pid,
        envlock,
        "build",
        str(spec),
        "--store",
        str(cold),
        env=env,
        cwd=work,
    )
    assert out.splitlines()[-1] == image_id, (out, image_id)
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
    _, out = measured(
        results,
        "second_machine_warm_wheels_no_cache",
        reg_pid,
        envlock,
        "build",
        str(spec),
        "--store",
        str(warm),
        env=env,
        cwd=work,
    )
    assert out.splitlines()[-1] == image_id, (out, image_id)
    subprocess.run(["rm", "-rf", str(warm)], check=False)


def load_measures(
    build: list[str],
    image_id: str,
    host: str,
    engine: tuple[str, int],
    work: Path,
    env: dict[str, str],
    results: dict[str, object],
    rounds: int = 1,
) -> None:
    """``envlock build --load`` into an engine without the image, against ``docker load`` of
    a ``docker save`` archive of it, then envlock again (``rounds`` times, at most 3,
    interleaved); the engine's CPU beside each.  The engine has the image afterwards."""
    measured(results, "envlock_load_1", engine, envlock, *build, "--load", env=env, cwd=work)
    archive = work / "saved.tar"
    results["docker_save_s"] = round(docker(host, "save", "-o", str(archive), image_id)[0], 1)
    docker(host, "rmi", "-f", image_id)
    for n in range(1, min(rounds, 3) + 1):
        if n > 1:
            docker(host, "rmi", "-f", image_id)
        measured(results, f"docker_load_archive_{n}", engine, docker, host, "load", "-i", str(archive))
        docker(host, "rmi", "-f", image_id)
        measured(results, f"envlock_load_{n + 1}", engine, envlock, *build, "--load", env=env, cwd=work)
    archive.unlink()  # the image stays in the engine


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
    parser.add_argument(
        "--only-push",
        action="store_true",
        help="build, then only the push measures (gzip, zstd, uncompressed) and the compression limits",
    )
    parser.add_argument(
        "--only-load",
        action="store_true",
        help="build, then only the load measures (envlock, docker save + docker load, envlock again)",
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
        results["store_write"] = write_rate(work)
        if args.only_cache:
            second_machine(
                spec,
                store,
                work,
                reg,
                ("registry", reg_proc.pid),
                image_id,
                env,
                results,
                ("gzip", "zstd", "none"),
            )
            raise _Done
        for codec in () if args.only_load else ("gzip", "zstd"):
            results[f"compression_limit_{codec}"] = compression_limit(store, image_id, codec)
        if args.only_push:
            for codec in ("gzip", "zstd", "none"):
                shutil.rmtree(store / "compressed", ignore_errors=True)
                push = ["build", str(spec), "--store", str(store), "--push", f"{reg}/only/{codec}"]
                measured(
                    results,
                    f"envlock_push_{codec}",
                    ("registry", reg_proc.pid),
                    envlock,
                    *push,
                    "--compression",
                    codec,
                    env=env,
                    cwd=work,
                )
            raise _Done
        if os.environ.get("DOCKER_HOST"):
            host, data_root = os.environ["DOCKER_HOST"], None
        else:
            (work / "dockerd").mkdir()
            dockerd, info = start_dockerd(work / "dockerd")
            procs.append(dockerd)
            host, data_root = info.host, work / "dockerd" / "data"
        engine = ("dockerd", dockerd.pid) if data_root is not None else ("bench", os.getpid())
        env_d = {**env, "DOCKER_HOST": host}
        build = ["build", str(spec), "--store", str(store)]
        if args.only_load:
            load_measures(build, image_id, host, engine, work, env_d, results, rounds=2)
            raise _Done

        took, out = measured(
            results,
            "envlock_push",
            ("registry", reg_proc.pid),
            envlock,
            *build,
            "--push",
            f"{reg}/envlock/gzip",
            env=env,
            cwd=work,
        )
        pushed = out.splitlines()[-1]
        results["envlock_push_again_s"] = round(
            envlock(*build, "--push", f"{reg}/envlock/gzip", env=env, cwd=work)[0], 1
        )
        second_machine(
            spec, store, work, reg, ("registry", reg_proc.pid), image_id, env, results
        )  # publishes what was just pushed
        shutil.rmtree(store / "compressed", ignore_errors=True)
        measured(
            results,
            "envlock_push_zstd",
            ("registry", reg_proc.pid),
            envlock,
            *build,
            "--push",
            f"{reg}/envlock/zstd",
            "--compression",
            "zstd",
            env=env,
            cwd=work,
        )
        results["envlock_push_mount_s"] = round(
            envlock(*build, "--push", f"{reg}/envlock/zstd2", "--compression", "zstd", env=env, cwd=work)[0],
            1,
        )
        results["store_after_push"] = json.loads(
            envlock("store", "du", "--json", "--store", str(store), env=env, cwd=work)[1]
        )

        load_measures(build, image_id, host, engine, work, env_d, results)
        docker(host, "tag", image_id, f"{reg}/docker/img:1")
        measured(
            results, "docker_push", ("registry", reg_proc.pid), docker, host, "push", f"{reg}/docker/img:1"
        )
        if data_root is not None:
            results["engine_data_root_bytes"] = du(data_root)
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
    only = [m for m in ("cache", "push", "load") if getattr(args, f"only_{m}")]
    name = f"cuda-{only[0]}.json" if only else "cuda.json"
    (out_dir / name).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    for key, value in sorted(results.items()):
        if not isinstance(value, dict) or key.endswith("_cpu") or key.startswith(("compression", "store_w")):
            print(f"{key:40} {value}")
    print(json.dumps(results.get("machine"), indent=2))
    print(json.dumps(results.get("store_after_push", {}).get("categories"), indent=2))  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
