"""A small repository for the TUI tests: specs in every lock state, made with envlock's API."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from envlock import export
from envlock import lockfile as lockmod
from envlock.lockfile import Package, PlatformLock
from envlock.spec import load

META = {"envlock": "0.1.0", "resolver": "uv 0.0.0", "resolved-at": "2026-11-01T00:00:00Z"}

VISION = {
    "torch": "2.4.1+cu121",
    "torchvision": "0.19.1+cu121",
    "numpy": "1.26.4",
    "pandas": "2.2.3",
    "pillow": "10.4.0",
    "requests": "2.32.3",
}
NLP = {
    "torch": "2.5.1+cu124",
    "torchvision": "0.20.1+cu124",
    "numpy": "2.0.2",
    "pandas": "2.2.3",
    "pillow": "10.4.0",
    "requests": "2.32.3",
    "tokenizers": "0.20.3",
    "transformers": "4.46.3",
}


def spec_text(packages: dict[str, str]) -> str:
    reqs = ", ".join(f'"{name}"' for name in packages)
    return f'python = "3.11"\nplatforms = ["linux-64"]\n\n[pip]\npackages = [{reqs}]\n'


def package(name: str, version: str) -> Package:
    filename = f"{name}-{version}-py3-none-any.whl"
    return Package(
        manager="pip",
        name=name,
        version=version,
        url=f"https://files.example.org/{filename}",
        sha256=hashlib.sha256(f"{name}-{version}".encode()).hexdigest(),
    )


def write_env(specs: Path, name: str, packages: dict[str, str], *, cuda: str = "cpu") -> Path:
    specs.mkdir(parents=True, exist_ok=True)
    spec_path = specs / f"{name}.toml"
    spec_path.write_text(spec_text(packages), encoding="utf-8")
    spec = load(spec_path)
    plat = PlatformLock(
        name="linux-64",
        python="3.11",
        cuda=cuda,
        packages=tuple(package(n, v) for n, v in packages.items()),
    )
    lock = lockmod.make(spec.spec_hash, [plat], META)
    lockmod.write_files(
        {spec_path.with_suffix(".lock"): lockmod.render(lock), **export.render_all(lock, spec_path)}
    )
    return spec_path


def make_repo(root: Path) -> Path:
    """vision and nlp (fresh), legacy (stale: spec edited), draft (no lock yet)."""
    specs = root / "specs"
    write_env(specs, "vision", VISION, cuda="12.1")
    write_env(specs, "nlp", NLP, cuda="12.4")
    legacy = write_env(specs, "legacy", {"numpy": "1.24.0", "scipy": "1.10.1"})
    legacy.write_text(spec_text({"numpy": "", "scipy": "", "matplotlib": ""}), encoding="utf-8")
    (specs / "draft.toml").write_text(spec_text({"numpy": ""}), encoding="utf-8")
    return root


def model_rows(count: int) -> list[dict[str, str]]:
    statuses = ("in store", "in registry", "missing")
    return [
        {
            "name": f"model-{i:04d}",
            "commit": hashlib.sha1(str(i).encode()).hexdigest(),
            "date": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T10:00:00Z",
            "env_id": "sha256:" + hashlib.sha256(str(i).encode()).hexdigest(),
            "image_status": statuses[i % 3],
        }
        for i in range(count)
    ]


def write_models(path: Path, count: int) -> Path:
    path.write_text(json.dumps(model_rows(count)), encoding="utf-8")
    return path
