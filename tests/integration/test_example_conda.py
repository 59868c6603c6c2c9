"""The committed conda example, ``specs/conda.toml`` with its lock, exports and the channel
``specs/channels/example``: copied to another path, it verifies, re-locks to the same
environment, builds on ``debian:bookworm`` and runs dask on the conda packages; and the
channel is what ``scripts/make-example-channel.py`` makes from the pinned PyPI wheels.

Live: the pip part re-locks against PyPI (``exclude-newer`` pinned) and the script fetches
its wheels from files.pythonhosted.org."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import hostile_env, run_envlock

from envlock import lockfile as lockmod

pytestmark = pytest.mark.live

CHECKOUT = Path(__file__).resolve().parents[2]
SPECS = CHECKOUT / "specs"
CONDA_PACKAGES = ["cloudpickle", "locket", "partd", "toolz"]

# dask on the conda packages: a bag grouped through partd's on-disk shuffle (partd, locket),
# with toolz underneath; each module must be the conda package's copy
RUN = r"""
import dask, dask.bag as db, cloudpickle, locket, partd, toolz
import importlib.metadata as md
b = db.from_sequence(range(100), npartitions=4)
groups = b.groupby(lambda x: x % 3, shuffle="disk").map(lambda kv: (kv[0], sum(kv[1])))
print(sorted(groups.compute(scheduler="sync")))
print({n: md.distribution(n).read_text("INSTALLER").strip() for n in ("cloudpickle", "locket", "partd", "toolz", "dask")})
print(dask.__version__, partd.__file__)
"""


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The example as a fresh clone would have it, at another path (with a space)."""
    root = tmp_path / "a clone"
    specs = root / "specs"
    specs.mkdir(parents=True)
    for name in ("conda.toml", "conda.lock", "conda.conda-lock.yml", "pylock.conda.toml"):
        shutil.copy2(SPECS / name, specs / name)
    for export in SPECS.glob("conda.*.requirements.txt"):
        shutil.copy2(export, specs / export.name)
    shutil.copytree(SPECS / "channels" / "example", specs / "channels" / "example")
    return root


def test_the_committed_conda_example_verifies_relocks_and_builds_from_a_clone(
    clone: Path, tmp_path: Path, base_store: Path
) -> None:
    committed = lockmod.read(SPECS / "conda.lock")
    spec = clone / "specs" / "conda.toml"
    assert run_envlock("verify", cwd=clone).returncode == 0
    for plat in committed.platforms:
        conda = plat.by_name("conda")
        assert sorted(conda) == CONDA_PACKAGES
        assert all(p.url.startswith("./channels/example/noarch/") for p in conda.values())
        assert "dask" in plat.by_name("pip") and not set(plat.by_name("pip")) & set(CONDA_PACKAGES)

    # conda-lock reads the export: channel and package URLs relative to the spec's directory
    from conda_lock.lockfile import parse_conda_lock_file

    parsed = parse_conda_lock_file(spec.with_name("conda.conda-lock.yml"))
    assert [c.url for c in parsed.metadata.channels] == ["./channels/example"]
    assert {p.url for p in parsed.package if p.manager == "conda"} == {
        f"./channels/example/noarch/{p.filename}" for p in committed.platforms[0].by_name("conda").values()
    }

    # re-locked from another directory: the same environment, and still verified
    relock = run_envlock("lock", "--upgrade", "a clone/specs/conda.toml", cwd=tmp_path)
    assert relock.returncode == 0, relock.stderr
    again = lockmod.read(spec.with_suffix(".lock"))
    assert (again.env_id, again.spec_hash) == (committed.env_id, committed.spec_hash)
    assert run_envlock("verify", cwd=clone).returncode == 0

    # built on debian:bookworm (bootstrapped once for the session; a linked copy of its store)
    store = tmp_path / "store"
    shutil.copytree(base_store, store, copy_function=os.link)
    layout = tmp_path / "layout"
    build = run_envlock("build", str(spec), "--store", str(store), "--oci", str(layout), cwd=clone)
    assert build.returncode == 0, build.stderr
    image_id = build.stdout.split()[-1]
    assert image_id.startswith("sha256:")
    # the same image ID from another store (the base and the downloaded files only: under
    # the clock years ahead no TLS certificate is valid) and directory, umask 077, time zone,
    # locale and clock
    other = tmp_path / "elsewhere"
    shutil.copytree(base_store, other / "store b", copy_function=os.link)
    shutil.copytree(
        store / "artifacts", other / "store b/artifacts", copy_function=os.link, dirs_exist_ok=True
    )
    hostile = 'umask 077 && exec "$0" -m envlock build "$1" --store "$2"'
    second = subprocess.run(
        ["sh", "-c", hostile, sys.executable, str(spec), str(other / "store b")],
        cwd=other,
        env={**os.environ, **hostile_env(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    assert "Assembling conda for linux-64" in second.stderr and "Fetching" not in second.stderr
    assert second.stdout.split()[-1] == image_id
    tag = subprocess.run(["umoci", "ls", "--layout", str(layout)], capture_output=True, text=True, check=True)
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "raw", "unpack", "--rootless", "--image", f"{layout}:{tag.stdout.split()[0]}", str(bundle)],
        capture_output=True,
        check=True,
    )
    env = bundle / "opt/env"
    records = sorted(p.name for p in (env / "conda-meta").glob("*.json"))
    assert records == [
        f"{n}-{committed.platforms[0].by_name('conda')[n].version}-py_0.json" for n in CONDA_PACKAGES
    ]
    meta = json.loads((env / "conda-meta" / records[2]).read_text())
    assert meta["channel"] == "./channels/example" and meta["depends"] == ["locket", "toolz"]
    site = env / "lib/python3.11/site-packages"
    assert len(list(site.glob("toolz-*.dist-info"))) == 1  # pip did not install it again

    # the environment runs: the image's own interpreter, sandboxed (no network, read-only)
    from envlock.sandbox import Mount, Sandbox, run

    box = Sandbox(mounts=[Mount(bundle, "/")], env={"PATH": "/opt/env/bin:/usr/bin:/bin", "HOME": "/tmp"})
    proc = run(box, ["/opt/env/bin/python", "-c", RUN], timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == str(
        [(0, sum(range(0, 100, 3))), (1, sum(range(1, 100, 3))), (2, sum(range(2, 100, 3)))]
    )
    assert json.loads(lines[1].replace("'", '"')) == {
        "cloudpickle": "conda",
        "locket": "conda",
        "partd": "conda",
        "toolz": "conda",
        "dask": "envlock",
    }
    assert lines[2].endswith("/opt/env/lib/python3.11/site-packages/partd/__init__.py")


def test_the_example_channel_is_what_the_script_makes_from_the_pinned_wheels(tmp_path: Path) -> None:
    """Byte for byte: the script rebuilds the channel from PyPI's wheels (their sha256
    checked) into a temporary directory and compares every file with the committed one."""
    proc = subprocess.run(
        [sys.executable, str(CHECKOUT / "scripts/make-example-channel.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "the same bytes" in proc.stdout


def test_the_script_refuses_a_wheel_that_is_not_the_pinned_one(tmp_path: Path) -> None:
    """A wheel whose sha256 differs from the pin is refused, and the channel is left as it was."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "toolz-1.2.0-py3-none-any.whl").write_bytes(b"not the wheel")
    out = tmp_path / "channel"
    out.mkdir()
    (out / "keep").write_text("old channel\n")
    proc = subprocess.run(
        [
            sys.executable,
            str(CHECKOUT / "scripts/make-example-channel.py"),
            "--wheels",
            str(wheels),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: toolz-1.2.0-py3-none-any.whl: sha256 ")
    assert sorted(p.name for p in out.iterdir()) == ["keep"]
