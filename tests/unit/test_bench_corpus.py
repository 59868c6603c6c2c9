"""bench/bench_corpus.py: its corpus is complete and its spec edits and failure classes hold."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_corpus", ROOT / "bench" / "bench_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_corpus"] = module
    spec.loader.exec_module(module)
    return module


def test_every_project_has_its_file_and_a_source_line(corpus: ModuleType) -> None:
    assert len(corpus.PROJECTS) >= 12
    for p in corpus.PROJECTS:
        folder = ROOT / "bench" / "corpus" / p.name
        assert (folder / p.file).is_file(), p.name
        source = (folder / "SOURCE").read_text()
        assert re.search(r"repo [\w.-]+/[\w.-]+, path \S+, commit [0-9a-f]{40}; license \S", source), p.name
        assert p.imports


SPEC = """name = "x"
python = "3.11"

[pip]
packages = [
    "coverage[toml]",
    "torch>=1.3",
]
exclude-newer = "2026-11-01"

[image]
base = "debian:bookworm"
"""


def _wheelhouse(tmp_path: Path) -> Path:
    house = tmp_path / "wheels"
    house.mkdir()
    with zipfile.ZipFile(house / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "w"):
        pass
    return house


def test_cpu_torch_adds_find_links_and_pins_last_when_the_range_allows(
    corpus: ModuleType, tmp_path: Path
) -> None:
    spec = tmp_path / "x.toml"
    spec.write_text(SPEC)
    house = _wheelhouse(tmp_path)
    assert corpus.cpu_torch(spec, house) == "torch==2.13.0+cpu"
    pip = tomllib.loads(spec.read_text())["pip"]
    assert pip["find-links"] == [str(house)]
    assert pip["packages"] == ["coverage[toml]", "torch>=1.3", "torch==2.13.0+cpu"]


def test_cpu_torch_leaves_an_exact_other_pin_alone(corpus: ModuleType, tmp_path: Path) -> None:
    spec = tmp_path / "x.toml"
    spec.write_text(SPEC.replace("torch>=1.3", "torch==2.9.1"))
    assert corpus.cpu_torch(spec, _wheelhouse(tmp_path)) == ""
    assert tomllib.loads(spec.read_text())["pip"]["packages"] == ["coverage[toml]", "torch==2.9.1"]


def test_add_system(corpus: ModuleType, tmp_path: Path) -> None:
    spec = tmp_path / "x.toml"
    spec.write_text(SPEC)
    corpus.add_system(spec, ("libgomp1",))
    assert tomllib.loads(spec.read_text())["image"]["system"] == ["libgomp1"]


@pytest.mark.parametrize(
    ("text", "cls"),
    [
        ("error: cannot read conda channel https://conda.anaconda.org/pytorch: failed", "environment"),
        ("Because torch==1.7.0 has no wheels ... your requirements are unsatisfiable.", "project"),
        ("error: seqeval 1.2.2 cannot be built from source: error: ... No solution found", "envlock"),
        ("error: import cv2: ImportError: libxcb.so.1: cannot open shared object file", "project"),
        ("error: import torchvision: RuntimeError: operator torchvision::nms does not exist", "environment"),
        ("error: import foo: KeyError: 'bar'", "envlock"),
    ],
)
def test_classify(corpus: ModuleType, text: str, cls: str) -> None:
    assert corpus.classify(text) == cls
