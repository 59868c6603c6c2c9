"""Byte code (``[image] bytecode = true``): compiled by the base's own Python, the same bytes
under a hostile second build, used by Python in the container."""

from __future__ import annotations

import io
import marshal
import subprocess
import tarfile
from pathlib import Path

import pytest
from support import (
    Dockerd,
    build_wheel,
    docker,
    hostile_build,
    locked_project,
    run_envlock,
    sha256_file,
)

from envlock.image import base as basemod
from envlock.image import bytecode
from envlock.image.build import load_image
from envlock.store import Store

SITE = "opt/env/lib/python3.11/site-packages"
MODULES = {
    # set and frozenset constants: their order must not follow the hash seed
    "sets.py": "NAMES = frozenset({'alpha', 'beta', 'gamma', 'delta'})\n"
    "def kind(x):\n    return 'greek' if x in {'alpha', 'beta', 'gamma', 'delta', 'epsilon'} else 'other'\n",
    # shared constants, closures, f-strings, classes: what marshal's back-references would share
    "deep/nested.py": "\n".join(
        f"def f{i}(x, label='shared label'):\n    def g(y):\n        return f'{{label}}:{{x}}:{{y}}'\n    return g"
        for i in range(40)
    )
    + "\nclass Model:\n    name = 'shared label'\n    def forward(self):\n        return ('shared label', 1.5, 2j)\n",
    "deep/__init__.py": "",
    # does not compile: gets no .pyc, as with pip
    "py2_leftover.py": "print 'hello'\n",
}


@pytest.fixture(scope="module")
def code_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("code-wheels")
    build_wheel(dest, "envlock-fx-code", "1.0", modules=MODULES)
    build_wheel(dest, "envlock-fx-tool", "1.0", entry_points={"fx-hello": "envlock_fx_tool.cli:main"})
    return dest


def project(
    root: Path,
    wheels: Path,
    base: Path,
    packages: str = '"envlock-fx-code", "envlock-fx-tool"',
    name: str = "code",
) -> Path:
    return locked_project(root, wheels, packages, f'base = "oci:{base}"\nbytecode = true\n', name)


def built_id(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def image_files(store: Path, image_id: str) -> dict[str, bytes]:
    s = Store(store)
    entry = next(e for e in s.list_envs() if e.image_id == image_id)
    image = load_image(s, entry.manifest)
    files: dict[str, bytes] = {}
    for la in image.layers:
        if la.created_by == "base":
            continue
        with tarfile.open(fileobj=io.BytesIO(s.read_blob(la.digest))) as tar:
            for m in tar:
                fh = tar.extractfile(m) if m.isreg() else None
                if fh is not None:
                    files[m.name] = fh.read()
    return files


def test_byte_code_is_the_same_under_a_hostile_second_build(
    tmp_path: Path, code_wheels: Path, base_layout: Path
) -> None:
    spec = project(tmp_path / "p", code_wheels, base_layout)
    first = run_envlock("build", str(spec), "--store", str(tmp_path / "a"), cwd=tmp_path / "p")
    assert "Compiling 7 Python files to byte code with the base's /usr/bin/python3.11" in first.stderr

    second = hostile_build(spec, tmp_path)
    assert built_id(second) == built_id(first)

    files = image_files(tmp_path / "a", built_id(first))
    pyc = files[f"{SITE}/envlock_fx_code/__pycache__/sets.cpython-311.pyc"]
    assert pyc[4:8] == (3).to_bytes(4, "little")  # PEP 552: hash-based, checked
    code = marshal.loads(pyc[16:])  # the host's 3.11 reads the base's 3.11 byte code
    assert code.co_filename == f"/{SITE}/envlock_fx_code/sets.py"
    assert f"{SITE}/envlock_fx_code/deep/__pycache__/nested.cpython-311.pyc" in files
    assert f"{SITE}/envlock_fx_tool/__pycache__/cli.cpython-311.pyc" in files
    assert not [n for n in files if "py2_leftover" in n and n.endswith(".pyc")]
    assert not [n for n in files if n.endswith(".pyc") and "/site-packages/" not in n]


def test_which_process_compiles_a_file_changes_no_byte(tmp_path: Path, base_layout: Path) -> None:
    store = Store(tmp_path / "store")
    base = basemod.resolve(store, f"oci:{base_layout}", "3.11")
    files = [(f"/{SITE}/pkg/{name}", text.encode()) for name, text in sorted(MODULES.items())] * 3
    streams = [basemod.open_layer(store, la) for la in base.layers]
    with bytecode.runtime(store, streams, base.interpreter) as rt:
        tag, one = bytecode.compile_all(rt, files, 1)
        _, three = bytecode.compile_all(rt, files, 3)
        _, backwards = bytecode.compile_all(rt, files[::-1], 2)
    for s in streams:
        s.close()
    assert tag == "cpython-311"
    assert one == three == backwards[::-1]
    assert one[0] and not one[[n for n, _ in files].index(f"/{SITE}/pkg/py2_leftover.py")]
    assert list(store.tmp.iterdir()) == []  # the runtime copy is gone


def test_python_in_the_container_uses_the_byte_code(
    tmp_path: Path, code_wheels: Path, base_layout: Path, dockerd: Dockerd
) -> None:
    spec = project(tmp_path, code_wheels, base_layout)
    env = {"DOCKER_HOST": dockerd.host}
    built = built_id(
        run_envlock("build", str(spec), "--store", str(tmp_path / "s"), "--load", cwd=tmp_path, env=env)
    )
    # read-only: Python cannot write byte code of its own, only use what the image has
    out = docker(
        dockerd.host,
        "run",
        "--rm",
        "--read-only",
        "--network=none",
        built,
        "python",
        "-v",
        "-c",
        "from envlock_fx_code import sets; from envlock_fx_code.deep import nested; "
        "print(sets.kind('beta'), nested.Model().forward()[0], nested.f3(1)(2))",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "greek shared label shared label:1:2"
    for module in ("__pycache__/sets", "deep/__pycache__/nested"):
        assert f"code object from '/{SITE}/envlock_fx_code/{module}.cpython-311.pyc'" in out.stderr


def test_a_failing_package_layer_stops_the_compiler_and_leaves_nothing(
    tmp_path: Path, code_wheels: Path, base_layout: Path
) -> None:
    """The store's copy of a locked wheel went bad on disk (the payload, not a source file)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for w in code_wheels.glob("*.whl"):
        (wheels / w.name).write_bytes(w.read_bytes())
    good = build_wheel(wheels, "envlock-fx-broken", "1.0", payload=1 << 20)
    spec = project(tmp_path, wheels, base_layout, '"envlock-fx-code", "envlock-fx-broken"', "broken")
    store = tmp_path / "store"
    raw = bytearray(good.read_bytes())
    at = raw.index(b"envlock_fx_broken/payload.bin") + len(b"envlock_fx_broken/payload.bin") + 1000
    raw[at] ^= 0xFF  # a stored member: its CRC no longer matches
    artifact = store / "artifacts/sha256" / sha256_file(good)
    artifact.parent.mkdir(parents=True)
    artifact.write_bytes(bytes(raw))

    proc = run_envlock("build", str(spec), "--store", str(store), cwd=tmp_path)

    assert proc.returncode == 1, proc.stderr
    assert f"error: envlock-fx-broken 1.0: {artifact} is corrupt" in proc.stderr
    assert "hint: run the build again: envlock fetches it anew" in proc.stderr
    assert "Traceback" not in proc.stderr and "stopped" not in proc.stderr
    assert not artifact.exists()  # the next build fetches it again
    assert list((store / "tmp").iterdir()) == []
    assert list((store / "envs").iterdir()) == []
    again = run_envlock("build", str(spec), "--store", str(store), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
