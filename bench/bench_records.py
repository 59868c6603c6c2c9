"""Benchmark: model records at scale.

    python bench/bench_records.py [--commits 10000] [--records 1000]

Generates (with git fast-import) a repository of N commits and M model records in
refs/notes/envlock, all pointing at one real lock whose image is built once into
the store; then times, from process start, the median of repeated runs of:

  * `envlock models`                        target < 0.5 s
  * `envlock show NAME` (resolve a name)    target < 0.5 s
  * `envlock rebuild NAME` (image in store) target < 1 s end to end

Writes bench/results/records.json and prints a table.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(cmd: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.decode()[-2000:]}")
    return proc.stdout.decode()


def timed(cmd: list[str], cwd: Path, env: dict[str, str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(cmd, cwd, env)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def tiny_wheel(dest: Path) -> None:
    import zipfile

    files = {
        "benchpkg/__init__.py": "X = 1\n",
        "benchpkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: benchpkg\nVersion: 1.0\n",
        "benchpkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "benchpkg-1.0.dist-info/RECORD": "",
    }
    with zipfile.ZipFile(dest / "benchpkg-1.0-py3-none-any.whl", "w") as zf:
        for name, text in files.items():
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="envlock-bench-records-"))
    repo = work / "repo"
    store = work / "store"
    env = {
        **os.environ,
        "ENVLOCK_HOME": str(store),
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    try:
        repo.mkdir()
        (work / "wheels").mkdir()
        tiny_wheel(work / "wheels")
        run(["git", "init", "-q", "-b", "main"], repo, env)
        (repo / "specs").mkdir()
        (repo / "specs/vision.toml").write_text(
            f'python = "3.11"\n[pip]\npackages = ["benchpkg"]\nfind-links = ["{work / "wheels"}"]\nno-index = true\n'
        )
        envlock = [sys.executable, "-m", "envlock"]
        run([*envlock, "lock", "-q", "specs/vision.toml"], repo, env)
        built = run([*envlock, "build", "-q", "specs/vision.toml"], repo, env).split()[-1]
        lock_text = (repo / "specs/vision.lock").read_text()
        env_id = next(line.split('"')[1] for line in lock_text.splitlines() if line.startswith("env-id"))
        layers = []
        entry = json.loads(next((store / "envs").glob("*.json")).read_text())
        manifest = json.loads((store / "blobs/sha256" / entry["manifest"].split(":")[1]).read_text())
        config = json.loads((store / "blobs/sha256" / manifest["config"]["digest"].split(":")[1]).read_text())
        for diff_id, hist in zip(config["rootfs"]["diff_ids"], config["history"], strict=True):
            layers.append(
                {
                    "diff_id": diff_id,
                    "created_by": "base"
                    if "mmdebstrap" in hist.get("created_by", "")
                    else hist.get("created_by", ""),
                }
            )

        # N commits, the first with the spec and lock, then M notes
        t0 = time.perf_counter()
        stream = []
        spec_text = (repo / "specs/vision.toml").read_text()
        for i in range(1, args.commits + 1):
            stream.append(f"commit refs/heads/main\nmark :{i}\ncommitter b <b@x> {1700000000 + i} +0000\n")
            msg = f"commit {i}\n"
            stream.append(f"data {len(msg)}\n{msg}")
            if i > 1:
                stream.append(f"from :{i - 1}\n")
            if i == 1:
                for path, text in (("specs/vision.toml", spec_text), ("specs/vision.lock", lock_text)):
                    data = text.encode()
                    stream.append(f"M 100644 inline {path}\ndata {len(data)}\n{text}\n")
            stream.append("\n")
        stream.append("commit refs/notes/envlock\ncommitter b <b@x> 1800000000 +0000\ndata 6\nnotes\n")
        step = max(1, args.commits // args.records)
        for r in range(args.records):
            mark = 1 + (r * step) % args.commits
            record = {
                "schema": "envlock.manifest/v1",
                "id": f"{r:012x}",
                "name": f"model-{r % 400}",
                "model": {"path": "runs/m.pt", "sha256": "0" * 64, "size": 1, "kind": "file", "files": 1},
                "commit": "MARK",
                "branch": "main",
                "dirty": False,
                "dirty_paths": [],
                "spec": "specs/vision.toml",
                "lock": "specs/vision.lock",
                "env_id": env_id,
                "image_id": built,
                "platform": "linux-64",
                "base": {"reference": "debian:bookworm", "digest": ""},
                "layers": layers,
                "registry": None,
                "command": "python train.py",
                "created": f"2026-01-01T00:00:{r % 60:02d}.{r:06d}Z",
                "host": {"python": "3.11"},
            }
            note = json.dumps({"schema": "envlock.manifest/v1", "records": [record]})
            stream.append(f"N inline :{mark}\ndata {len(note.encode())}\n{note}\n")
        stream.append("\n")
        run(["git", "fast-import", "--quiet"], repo, env, "".join(stream).encode())
        # the notes name commits by sha: rewrite "MARK" now that shas exist
        shas = run(["git", "rev-list", "--reverse", "main"], repo, env).split()
        notes = run(["git", "notes", "--ref", "envlock", "list"], repo, env).split()
        fix = [
            "commit refs/notes/envlock\ncommitter b <b@x> 1800000001 +0000\ndata 4\nfix\nfrom refs/notes/envlock^0\n"
        ]
        blobs = run(["git", "cat-file", "--batch"], repo, env, "\n".join(notes[0::2]).encode() + b"\n")
        pos = 0
        for commit in notes[1::2]:
            header_end = blobs.index("\n", pos)
            size = int(blobs[pos:header_end].split()[2])
            body = blobs[header_end + 1 : header_end + 1 + size]
            pos = header_end + 1 + size + 1
            fixed = body.replace('"MARK"', f'"{commit}"')
            fix.append(f"N inline {commit}\ndata {len(fixed.encode())}\n{fixed}\n")
        run(["git", "fast-import", "--quiet"], repo, env, "".join(fix).encode())
        run(["git", "checkout", "-q", "-f", "main"], repo, env)
        generated = time.perf_counter() - t0
        assert len(shas) == args.commits

        results = {
            "commits": args.commits,
            "records": args.records,
            "generate_s": round(generated, 1),
            "models_s": round(timed([*envlock, "models"], repo, env, args.runs), 3),
            "show_name_s": round(timed([*envlock, "show", "model-123"], repo, env, args.runs), 3),
            "rebuild_in_store_s": round(timed([*envlock, "rebuild", "model-123"], repo, env, args.runs), 3),
            "python_startup_s": round(timed([sys.executable, "-c", "pass"], repo, env, args.runs), 3),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "records.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print()
    print("| measurement | time | target |")
    print("|---|---|---|")
    print(
        f"| envlock models ({args.records} records, {args.commits} commits) | {results['models_s']} s | < 0.5 s |"
    )
    print(f"| envlock show NAME | {results['show_name_s']} s | < 0.5 s |")
    print(f"| envlock rebuild NAME, image in store | {results['rebuild_in_store_s']} s | < 1 s |")


if __name__ == "__main__":
    main()
