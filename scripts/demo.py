"""The README's main job, end to end, in a throw-away project directory.

init -> lock (real resolution against PyPI, pinned by exclude-newer) -> verify ->
relock (no change, instant).  Prints each step; exits non-zero on the first failure.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path


def step(title: str, *args: str, cwd: Path) -> None:
    print(f"\n$ envlock {' '.join(args)}    # {title}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "envlock", *args], cwd=cwd, check=False)
    print(f"  ({time.perf_counter() - t0:.2f}s, exit {proc.returncode})", flush=True)
    if proc.returncode != 0:
        raise SystemExit(proc.returncode)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="envlock-demo-") as tmp:
        root = Path(tmp)
        step("write a spec from a template", "init", "vision", "--template", "cpu", cwd=root)
        spec = root / "specs/vision.toml"
        spec.write_text(spec.read_text().replace('exclude-newer = "', 'exclude-newer = "2026-11-01" #'))
        step("resolve it into a hashed lock and exports", "lock", "specs/vision.toml", cwd=root)
        step("check spec, lock and exports agree", "verify", cwd=root)
        step("lock again: nothing changed, nothing resolved", "lock", "specs/vision.toml", cwd=root)
        print("\nFiles written:")
        for path in sorted((root / "specs").iterdir()):
            print(f"  specs/{path.name}  ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
