"""Messy real-world inputs (issue 11): PyTorch-index wheel tags, yanked pins, two wheels
writing one path, a spec's Python the base does not ship, and builds that fail early
with every problem at once.  Wheels are built by fixtures and served from local indexes."""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import Index, build_wheel, locked_project, run_envlock, serve, write_simple_index, write_spec


@pytest.fixture(scope="module")
def yanked_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    wheels = tmp_path_factory.mktemp("yanked-wheels")
    build_wheel(wheels, "envlock-fx-yank", "1.0")
    bad = build_wheel(wheels, "envlock-fx-yank", "1.1")
    root = tmp_path_factory.mktemp("yanked-index")
    write_simple_index(root, wheels, yanked={bad.name: "broken build"})
    yield from serve(root, None)


def test_a_yanked_pin_locks_with_a_warning_line(tmp_path: Path, yanked_index: Index) -> None:
    body = f'python = "3.11"\n[pip]\npackages = ["envlock-fx-yank==1.1"]\nindex-url = "{yanked_index.url}"\n'
    spec = write_spec(tmp_path, "yank", body)
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert 'warning: `envlock-fx-yank==1.1` is yanked (reason: "broken build")' in proc.stderr.splitlines()
    assert 'version = "1.1"' in spec.with_suffix(".lock").read_text()


def test_an_unyanked_resolution_has_no_warning(tmp_path: Path, yanked_index: Index) -> None:
    body = f'python = "3.11"\n[pip]\npackages = ["envlock-fx-yank"]\nindex-url = "{yanked_index.url}"\n'
    spec = write_spec(tmp_path, "fine", body)
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" not in proc.stderr
    assert 'version = "1.0"' in spec.with_suffix(".lock").read_text()


def test_python_3_12_on_bookworm_is_exit_2_at_lock_time_naming_trixie(tmp_path: Path) -> None:
    body = 'python = "3.12"\n[pip]\npackages = ["envlock-fx-beta"]\nindex-url = "http://127.0.0.1:9/simple"\n'
    spec = write_spec(tmp_path, "py312", body + '[image]\nbase = "debian:bookworm"\n')
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(
        f"error: {spec}: the spec asks for Python 3.12, but debian:bookworm (Debian 12)"
    )
    assert "trixie: 3.13" in lines[0]
    assert lines[1].startswith('hint: use python = "3.13" with base = "debian:trixie"')
    assert len(lines) == 2  # nothing resolved (the index is not even up), no traceback
    assert sorted(p.name for p in spec.parent.iterdir()) == ["py312.toml"]


def test_python_3_13_on_bookworm_names_the_suite_that_ships_it(tmp_path: Path) -> None:
    body = 'python = "3.13"\n[pip]\npackages = ["x"]\n[image]\nbase = "debian:bookworm"\n'
    spec = write_spec(tmp_path, "py313", body)
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 2
    assert "debian:trixie ships 3.13" in proc.stderr
    assert 'hint: use base = "debian:trixie", or set python = "3.11"' in proc.stderr


# -- images: wheel tags, shared paths, early failures ---------------------------------------------

SITE = "opt/env/lib/python3.11/site-packages"
NAMESPACE = "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"


@pytest.fixture(scope="module")
def messy_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("messy-wheels")
    # how download.pytorch.org tags its +cpu builds
    build_wheel(dest, "envlock-fx-torchlike", "2.5.1+cpu", tag="cp311-cp311-linux_x86_64")
    # backports.*: one namespace __init__.py, the same bytes; one wheel big enough for a layer of its own
    build_wheel(
        dest, "envlock-fx-bp-tarfile", "1.2.0", files={"fxbackports/__init__.py": NAMESPACE}, payload=5 << 20
    )
    build_wheel(dest, "envlock-fx-bp-lru", "2.0.0", files={"fxbackports/__init__.py": NAMESPACE})
    # thop / ultralytics-thop: one path, different bytes; the winner (sorts last) is the big one, in
    # a lower layer than the small loser, so layer order alone would show the loser's file
    build_wheel(dest, "envlock-fx-thop", "0.1.1", files={"fxthop/profile.py": "WHO = 'thop'\n"})
    build_wheel(
        dest,
        "envlock-fx-ultralytics-thop",
        "2.0.0",
        files={"fxthop/profile.py": "WHO = 'ultralytics-thop'\n"},
        payload=5 << 20,
    )
    return dest


@pytest.fixture(scope="module")
def messy_index(tmp_path_factory: pytest.TempPathFactory, messy_wheels: Path) -> Iterator[Index]:
    root = tmp_path_factory.mktemp("messy-index")
    write_simple_index(root, messy_wheels)
    yield from serve(root, None)


def from_index(root: Path, index: Index, base: Path, packages: str, image: str = "") -> Path:
    body = f'python = "3.11"\n[pip]\npackages = [{packages}]\nindex-url = "{index.url}"\n'
    spec = write_spec(root, "app", body + f'[image]\nbase = "oci:{base}"\n' + image)
    proc = run_envlock("lock", str(spec), cwd=root)
    assert proc.returncode == 0, proc.stderr
    return spec


def build(spec: Path, store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_envlock("build", str(spec), "--store", str(store), *args, cwd=spec.parent.parent)


def image_files(store: Path, image_id: str) -> tuple[dict[str, bytes], list[dict[str, bytes]]]:
    """What a container sees (layers applied in order, upper wins) and each layer's files."""
    from envlock.store import Store

    s = Store(store)
    entry = next(e for e in s.list_envs() if e.image_id == image_id)
    manifest = s.read_json(entry.manifest)
    visible: dict[str, bytes] = {}
    layers = []
    for layer in manifest["layers"][1:]:  # above the base
        files = {}
        with tarfile.open(s.blob_path(layer["digest"])) as tar:
            for member in tar.getmembers():
                if member.isreg():
                    fh = tar.extractfile(member)
                    assert fh is not None
                    files[member.name] = fh.read()
        visible.update(files)
        layers.append(files)
    return visible, layers


def built_id(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[-1]


def test_a_linux_x86_64_tagged_wheel_locks_and_builds(
    tmp_path: Path, messy_index: Index, base_layout: Path
) -> None:
    spec = from_index(tmp_path, messy_index, base_layout, '"envlock-fx-torchlike"')
    assert (
        "envlock_fx_torchlike-2.5.1+cpu-cp311-cp311-linux_x86_64.whl" in spec.with_suffix(".lock").read_text()
    )
    store = tmp_path / "store"
    visible, _ = image_files(store, built_id(build(spec, store)))
    assert visible[f"{SITE}/envlock_fx_torchlike/__init__.py"] == b"__version__ = '2.5.1+cpu'\n"

    # the store now knows the base's Python: a spec asking another is refused at lock time
    other = write_spec(tmp_path, "py312", spec.read_text().replace('python = "3.11"', 'python = "3.12"'))
    proc = run_envlock("lock", str(other), cwd=tmp_path, env={"ENVLOCK_HOME": str(store)})
    assert proc.returncode == 2, proc.stderr
    assert f"base oci:{base_layout} has Python 3.11 (/usr/bin/python3.11" in proc.stderr
    assert not other.with_suffix(".lock").exists()


def test_two_wheels_with_one_path_of_the_same_bytes_build_across_layers(
    tmp_path: Path, messy_index: Index, base_layout: Path
) -> None:
    spec = from_index(tmp_path, messy_index, base_layout, '"envlock-fx-bp-tarfile", "envlock-fx-bp-lru"')
    store = tmp_path / "store"
    proc = build(spec, store)
    visible, layers = image_files(store, built_id(proc))
    assert "warning:" not in proc.stderr
    path = f"{SITE}/fxbackports/__init__.py"
    assert visible[path] == NAMESPACE.encode()
    assert sum(path in files for files in layers) == 2  # each package's layer has it, unchanged


def test_different_bytes_warn_and_the_documented_winner_is_visible_whatever_the_layers(
    tmp_path: Path, messy_index: Index, base_layout: Path
) -> None:
    spec = from_index(tmp_path, messy_index, base_layout, '"envlock-fx-thop", "envlock-fx-ultralytics-thop"')
    store = tmp_path / "store"
    proc = build(spec, store)
    visible, layers = image_files(store, built_id(proc))
    path = f"{SITE}/fxthop/profile.py"
    warning = next(ln for ln in proc.stderr.splitlines() if ln.startswith("warning:"))
    assert "envlock-fx-thop 0.1.1 and envlock-fx-ultralytics-thop 2.0.0 install a file" in warning
    assert f"(/{path})" in warning and "the image has envlock-fx-ultralytics-thop's" in warning
    assert visible[path] == b"WHO = 'ultralytics-thop'\n"
    assert [path in files for files in layers].count(True) == 1  # the loser's layer leaves it out
    assert f"{SITE}/envlock_fx_thop/__init__.py" in visible  # the rest of the loser is there


def test_file_conflicts_error_is_exit_2_at_build_when_the_wheels_were_remote(
    tmp_path: Path, messy_index: Index, base_layout: Path
) -> None:
    packages = '"envlock-fx-thop", "envlock-fx-ultralytics-thop"'
    spec = from_index(tmp_path, messy_index, base_layout, packages, 'file-conflicts = "error"\n')
    proc = build(spec, tmp_path / "store")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-2].startswith(
        "error: envlock-fx-thop 0.1.1 and envlock-fx-ultralytics-thop"
    )
    assert 'hint: drop one of the packages, or set [image] file-conflicts = "warn"' in proc.stderr
    assert "Traceback" not in proc.stderr


def test_file_conflicts_are_known_at_lock_time_for_local_wheels(tmp_path: Path, messy_wheels: Path) -> None:
    packages = '"envlock-fx-thop", "envlock-fx-ultralytics-thop"'
    spec = locked_project(tmp_path, messy_wheels, packages, "")
    proc = run_envlock("lock", "--upgrade", str(spec), cwd=tmp_path)
    assert proc.returncode == 0
    assert (
        "warning: envlock-fx-thop 0.1.1 and envlock-fx-ultralytics-thop 2.0.0 install a file" in proc.stderr
    )

    spec.write_text(spec.read_text() + 'file-conflicts = "error"\n')
    before = spec.with_suffix(".lock").read_text()
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "error: envlock-fx-thop 0.1.1 and envlock-fx-ultralytics-thop 2.0.0" in proc.stderr
    assert spec.with_suffix(".lock").read_text() == before  # nothing written


def test_a_build_reports_every_problem_before_downloading_anything(
    tmp_path: Path, messy_index: Index
) -> None:
    local = tmp_path / "wheels"
    build_wheel(local, "envlock-fx-local-a", "1.0")
    build_wheel(local, "envlock-fx-local-b", "1.0")
    body = (
        'python = "3.11"\n[pip]\npackages = ["envlock-fx-local-a", "envlock-fx-local-b", "envlock-fx-torchlike"]\n'
        f'index-url = "{messy_index.url}"\nfind-links = ["../../wheels"]\n[image]\nbase = "debian:bookworm"\n'
    )
    spec = write_spec(tmp_path / "project", "app", body)
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    for wheel in local.iterdir():
        wheel.unlink()
    store = tmp_path / "store"
    proc = build(spec, store)
    assert proc.returncode == 1, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 2 and all("does not exist" in e for e in errors)
    assert errors[0].startswith("error: envlock-fx-local-a 1.0 (envlock_fx_local_a-1.0-py3-none-any.whl): ")
    assert errors[1].endswith(f"{tmp_path}/wheels/envlock_fx_local_b-1.0-py3-none-any.whl does not exist")
    assert "Bootstrapping" not in proc.stderr  # no base made
    assert list((store / "artifacts" / "sha256").iterdir()) == []  # the remote wheel was not fetched


def test_python_3_12_without_a_base_locks_with_a_warning_about_build(
    tmp_path: Path, messy_wheels: Path
) -> None:
    body = f'python = "3.12"\n[pip]\npackages = ["envlock-fx-bp-lru"]\nfind-links = ["{messy_wheels}"]\nno-index = true\n'
    spec = write_spec(tmp_path, "nobase", body)
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (
        "warning: envlock build needs an [image] base for this spec: no Debian release ships Python 3.12"
        in (proc.stderr)
    )
    assert spec.with_suffix(".lock").exists()


def test_pip_tools_passes_a_yanked_pin_warning_on_too(tmp_path: Path, yanked_index: Index) -> None:
    import sys

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    body = (
        f'python = "{python}"\n[pip]\npackages = ["envlock-fx-yank==1.1"]\nindex-url = "{yanked_index.url}"\n'
    )
    spec = write_spec(tmp_path, "yank", body)
    proc = run_envlock("lock", "--resolver", "pip-tools", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings and "yanked" in warnings[0] and "envlock-fx-yank" in warnings[0], proc.stderr
