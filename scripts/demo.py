"""The README's main job, end to end, in a throw-away git repository (no daemon needed).

init -> lock (real resolution against PyPI, pinned by exclude-newer) -> verify ->
build (image assembled into a local store; Debian base bootstrapped with mmdebstrap) ->
"train" and record the model on the commit -> rebuild it from an *empty* store and
check the image ID is the recorded one.  Prints each step; exits non-zero on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def step(title: str, *args: str, cwd: Path, env: dict[str, str]) -> str:
    print(f"\n$ envlock {' '.join(args)}    # {title}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "envlock", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, text=True
    )
    sys.stdout.write(proc.stdout)
    print(f"  ({time.perf_counter() - t0:.2f}s, exit {proc.returncode})", flush=True)
    if proc.returncode != 0:
        raise SystemExit(proc.returncode)
    return proc.stdout.strip()


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="envlock-demo-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        env = {**os.environ, "ENVLOCK_HOME": str(Path(tmp) / "store")}
        git(root, "init", "-q", "-b", "main")
        git(root, "config", "user.email", "demo@envlock.invalid")
        git(root, "config", "user.name", "envlock demo")
        step("write a spec from a template", "init", "vision", "--template", "cpu", cwd=root, env=env)
        spec = root / "specs/vision.toml"
        text = spec.read_text()
        spec.write_text(text.replace('["numpy", "pandas", "scikit-learn"]', '["numpy", "packaging"]'))
        spec.write_text(spec.read_text().replace('exclude-newer = "', 'exclude-newer = "2026-11-01" #'))
        step("resolve it into a hashed lock and exports", "lock", "specs/vision.toml", cwd=root, env=env)
        step("check spec, lock and exports agree", "verify", cwd=root, env=env)
        built = step(
            "assemble the image into the local store", "build", "specs/vision.toml", cwd=root, env=env
        )
        (root / "train.py").write_text("open('model.bin', 'w').write('weights')\n")
        (root / ".gitignore").write_text("model.bin\n")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "train vision")
        subprocess.run([sys.executable, "train.py"], cwd=root, check=True)
        step(
            "record the trained model on the commit",
            "record",
            "model.bin",
            "--name",
            "vision-model",
            "--spec",
            "specs/vision.toml",
            "--command",
            "python train.py",
            cwd=root,
            env=env,
        )
        step("list recorded models", "models", cwd=root, env=env)
        env_empty = {**env, "ENVLOCK_HOME": str(Path(tmp) / "empty-store")}
        rebuilt = step(
            "bring the exact image back from an empty store",
            "rebuild",
            "vision-model",
            cwd=root,
            env=env_empty,
        )
        record = json.loads(step("the record", "show", "vision-model", "--check", cwd=root, env=env))
        ok = rebuilt.splitlines()[-1] == built.splitlines()[-1] == record["image_id"]
        print(
            f"\nimage ID built {built.splitlines()[-1][:19]}…, rebuilt {rebuilt.splitlines()[-1][:19]}…: "
            f"{'identical' if ok else 'DIFFERENT'}"
        )
        if not ok:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
