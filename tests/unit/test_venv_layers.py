"""venv: wheels become a deterministic /opt/env layer, cached by its inputs; big packages are spotted."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from envlock.errors import CheckFailed
from envlock.image import layer as layermod
from envlock.image.model import LAYER_TAR
from envlock.image.venv import (
    BIG_BYTES,
    Interpreter,
    build_layer,
    is_big,
    layer_key,
    skeleton_entries,
)
from envlock.lockfile import Package
from envlock.store import Store

INTERP = Interpreter("/usr/bin/python3.11", "3.11")
SITE = "opt/env/lib/python3.11/site-packages"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    *,
    entry_points: dict[str, str] | None = None,
    data_scripts: dict[str, str] | None = None,
    root_files: dict[str, str] | None = None,
) -> Path:
    """A minimal, valid, byte-reproducible wheel (after tests/integration/support.py);
    ``root_files`` adds files by their path in the wheel (``"backports/__init__.py"``)."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f"__version__ = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: envlock-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    if entry_points:
        files[f"{dist}/cli.py"] = "def main():\n    print('hello')\n"
        lines = "".join(f"{k} = {v}\n" for k, v in sorted(entry_points.items()))
        files[f"{info}/entry_points.txt"] = "[console_scripts]\n" + lines
    files.update(root_files or {})
    for script, text in (data_scripts or {}).items():
        files[f"{dist}-{version}.data/scripts/{script}"] = text
    record = "".join(f"{p},{_record_hash(t.encode())},{len(t.encode())}\n" for p, t in files.items())
    files[f"{info}/RECORD"] = record + f"{info}/RECORD,,\n"
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, text in files.items():
            zi = zipfile.ZipInfo(arcname, _EPOCH)
            executable = ".data/scripts/" in arcname
            zi.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            zf.writestr(zi, text)
    return path


def package_for(path: Path, name: str, version: str) -> Package:
    return Package(
        manager="pip",
        name=name,
        version=version,
        url=f"https://files.example.org/{path.name}",
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def as_artifact(store: Store, wheel: Path, name: str, version: str) -> tuple[Package, Path]:
    """The wheel as fetch leaves it: in the store, named by its sha256."""
    package = package_for(wheel, name, version)
    target = store.artifact_path(package.sha256)
    shutil.copyfile(wheel, target)
    return package, target


@pytest.fixture
def wheels(tmp_path: Path) -> list[tuple[Path, str, str]]:
    dest = tmp_path / "wheels"
    return [
        (build_wheel(dest, "alpha", "1.0", entry_points={"alpha-cli": "alpha.cli:main"}), "alpha", "1.0"),
        (
            build_wheel(dest, "beta-pkg", "2.0", data_scripts={"beta-tool": "#!python\nprint('beta')\n"}),
            "beta-pkg",
            "2.0",
        ),
    ]


def artifacts(store: Store, wheels: list[tuple[Path, str, str]]) -> list[tuple[Package, Path]]:
    return [as_artifact(store, w, n, v) for w, n, v in wheels]


def layer_members(store: Store, digest: str) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    out = {}
    with tarfile.open(fileobj=io.BytesIO(store.read_blob(digest))) as tar:
        for m in tar.getmembers():
            fh = tar.extractfile(m) if m.isreg() else None
            out[m.name] = (m, fh.read() if fh else b"")
    return out


# -- skeleton ---------------------------------------------------------------------------------


def test_skeleton_has_a_pyvenv_cfg_pointing_at_the_base_interpreter() -> None:
    entries = {e.path: e for e in skeleton_entries(INTERP)}

    cfg = entries["opt/env/pyvenv.cfg"]
    assert cfg.data is not None
    lines = cfg.data.decode().splitlines()
    assert "home = /usr/bin" in lines
    assert "include-system-site-packages = false" in lines
    assert "version = 3.11" in lines
    assert "executable = /usr/bin/python3.11" in lines


def test_skeleton_has_the_python_symlinks_and_site_packages() -> None:
    entries = {e.path: e for e in skeleton_entries(INTERP)}

    links = {p: e.target for p, e in entries.items() if e.kind == "symlink"}
    assert links == {
        "opt/env/bin/python": "/usr/bin/python3.11",
        "opt/env/bin/python3": "python",
        "opt/env/bin/python3.11": "python",
        "opt/env/lib64": "lib",
    }
    assert entries[SITE].kind == "dir"


def test_skeleton_for_usr_local_uses_that_home() -> None:
    entries = {e.path: e for e in skeleton_entries(Interpreter("/usr/local/bin/python3.13", "3.13"))}

    assert b"home = /usr/local/bin\n" in (entries["opt/env/pyvenv.cfg"].data or b"")
    assert "opt/env/bin/python3.13" in entries
    assert "opt/env/lib/python3.13/site-packages" in entries


# -- build_layer ------------------------------------------------------------------------------


def test_build_layer_installs_packages_into_site_packages(tmp_path: Path, wheels) -> None:
    store = Store(tmp_path / "store")

    layer = build_layer(store, artifacts(store, wheels), INTERP, "envlock: rest")
    members = layer_members(store, layer.digest)

    assert (layer.media_type, layer.diff_id, layer.created_by) == (LAYER_TAR, layer.digest, "envlock: rest")
    assert layer.size == store.blob_path(layer.digest).stat().st_size
    assert members[f"{SITE}/alpha/__init__.py"][1] == b"__version__ = '1.0'\n"
    assert f"{SITE}/beta_pkg/__init__.py" in members
    for info in ("alpha-1.0.dist-info", "beta_pkg-2.0.dist-info"):
        assert f"{SITE}/{info}/RECORD" in members
        assert members[f"{SITE}/{info}/INSTALLER"][1] == b"envlock\n"


def test_build_layer_writes_scripts_for_the_env_interpreter(tmp_path: Path, wheels) -> None:
    store = Store(tmp_path / "store")

    members = layer_members(store, build_layer(store, artifacts(store, wheels), INTERP, "x").digest)

    for script in ("opt/env/bin/alpha-cli", "opt/env/bin/beta-tool"):
        info, data = members[script]
        assert data.startswith(b"#!/opt/env/bin/python\n"), script
        assert info.mode == 0o755
    assert b"alpha.cli" in members["opt/env/bin/alpha-cli"][1]
    assert b"print('beta')" in members["opt/env/bin/beta-tool"][1]


def test_build_layer_writes_no_byte_code(tmp_path: Path, wheels) -> None:
    store = Store(tmp_path / "store")

    members = layer_members(store, build_layer(store, artifacts(store, wheels), INTERP, "x").digest)

    assert not [n for n in members if n.endswith(".pyc") or "__pycache__" in n]


def test_build_layer_record_lists_installed_files(tmp_path: Path, wheels) -> None:
    store = Store(tmp_path / "store")

    members = layer_members(store, build_layer(store, artifacts(store, wheels), INTERP, "x").digest)
    record = members[f"{SITE}/alpha-1.0.dist-info/RECORD"][1].decode()

    assert "alpha/__init__.py," in record
    assert "alpha-1.0.dist-info/INSTALLER," in record
    assert "alpha-cli," in record
    assert str(store.root) not in record


def test_build_layer_is_normalised(tmp_path: Path, wheels) -> None:
    store = Store(tmp_path / "store")

    members = layer_members(store, build_layer(store, artifacts(store, wheels), INTERP, "x").digest)

    names = list(members)
    assert names == sorted(names)
    assert names[0] == "opt"
    for info, _ in members.values():
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
    assert list(store.tmp.iterdir()) == []


def test_building_in_two_stores_gives_the_same_layer(tmp_path: Path, wheels) -> None:
    one, two = Store(tmp_path / "one"), Store(tmp_path / "two")

    first = build_layer(one, artifacts(one, wheels), INTERP, "x")
    second = build_layer(two, artifacts(two, wheels), INTERP, "x")

    assert first == second
    assert one.read_blob(first.digest) == two.read_blob(second.digest)


def test_building_from_wheel_files_or_hash_named_artifacts_is_the_same(tmp_path: Path, wheels) -> None:
    one, two = Store(tmp_path / "one"), Store(tmp_path / "two")
    direct = [(package_for(w, n, v), w) for w, n, v in wheels]

    assert build_layer(one, direct, INTERP, "x") == build_layer(two, artifacts(two, wheels), INTERP, "x")


def test_wheel_order_does_not_change_the_layer(tmp_path: Path, wheels) -> None:
    one, two = Store(tmp_path / "one"), Store(tmp_path / "two")

    forward = build_layer(one, artifacts(one, wheels), INTERP, "x")
    backward = build_layer(two, list(reversed(artifacts(two, wheels))), INTERP, "x")

    assert forward.digest == backward.digest


def test_the_layer_cache_answers_without_installing_again(tmp_path: Path, wheels) -> None:
    store = Store(tmp_path / "store")
    inputs = artifacts(store, wheels)
    first = build_layer(store, inputs, INTERP, "first")
    for _, path in inputs:
        path.unlink()

    again = build_layer(store, inputs, INTERP, "again")

    assert again.digest == first.digest
    assert again.size == first.size
    assert again.created_by == "again"


def test_the_layer_cache_is_rebuilt_when_its_blob_is_gone(tmp_path: Path, wheels) -> None:
    store = Store(tmp_path / "store")
    inputs = artifacts(store, wheels)
    first = build_layer(store, inputs, INTERP, "x")
    store.blob_path(first.digest).unlink()

    assert build_layer(store, inputs, INTERP, "x") == first
    assert store.has_blob(first.digest)


def test_layer_key_depends_on_wheels_and_interpreter_not_order(tmp_path: Path, wheels) -> None:
    packages = [package_for(w, n, v) for w, n, v in wheels]

    assert layer_key(packages, INTERP) == layer_key(list(reversed(packages)), INTERP)
    assert layer_key(packages, INTERP) != layer_key(packages[:1], INTERP)
    assert layer_key(packages, INTERP) != layer_key(
        packages, Interpreter("/usr/local/bin/python3.11", "3.11")
    )


def test_an_sdist_is_refused_and_leaves_no_stage(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    data = b"\x1f\x8b not really a tarball"
    sha = hashlib.sha256(data).hexdigest()
    store.artifact_path(sha).write_bytes(data)
    sdist = Package("pip", "legacy", "1.0", "https://files.example.org/legacy-1.0.tar.gz", sha)

    with pytest.raises(CheckFailed, match="source distribution") as exc:
        build_layer(store, [(sdist, store.artifact_path(sha))], INTERP, "x")

    assert "legacy-1.0.tar.gz" in exc.value.message
    assert exc.value.hint is not None
    assert "wheels" in exc.value.hint
    assert list(store.tmp.iterdir()) == []
    assert not (store.root / "layers").exists() or list((store.root / "layers").iterdir()) == []


# -- is_big -----------------------------------------------------------------------------------


def small_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.whl"
    path.write_bytes(b"x")
    return path


@pytest.mark.parametrize(
    "name",
    ["torch", "nvidia-cublas-cu12", "nvidia-cudnn-cu12", "tensorflow", "tensorflow-cpu", "jaxlib", "triton"],
)
def test_big_package_names_are_big_whatever_their_size(tmp_path: Path, name: str) -> None:
    assert is_big(Package("pip", name, "1", "u", "0" * 64), small_file(tmp_path))


@pytest.mark.parametrize("name", ["numpy", "torchvision", "my-torch", "pandas"])
def test_other_small_packages_are_not_big(tmp_path: Path, name: str) -> None:
    assert not is_big(Package("pip", name, "1", "u", "0" * 64), small_file(tmp_path))


def test_a_file_of_big_bytes_is_big(tmp_path: Path) -> None:
    package = Package("pip", "numpy", "1", "u", "0" * 64)
    path = tmp_path / "numpy.whl"
    with path.open("wb") as fh:
        fh.truncate(BIG_BYTES - 1)
    assert not is_big(package, path)

    with path.open("r+b") as fh:
        fh.truncate(BIG_BYTES)
    assert is_big(package, path)


def test_a_zip_sdist_is_refused_as_a_source_distribution(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("legacy-1.0/setup.py", "from setuptools import setup\nsetup()\n")
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    store.artifact_path(sha).write_bytes(buf.getvalue())
    sdist = Package("pip", "legacy", "1.0", "https://files.example.org/legacy-1.0.zip", sha)

    with pytest.raises(CheckFailed, match="source distribution"):
        build_layer(store, [(sdist, store.artifact_path(sha))], INTERP, "x")


# -- streamed straight from the wheel: the same layer installer's files on disk give -----------


def rich_wheel(dest: Path) -> Path:
    """A platlib wheel with every kind of content installer places: package files (one
    executable, one binary, one missing from RECORD), console and gui entry points,
    ``.data`` scripts with and without ``#!python``, data and headers."""
    info = "rich-3.0.dist-info"
    files: dict[str, bytes] = {
        "rich/__init__.py": b"VERSION = 3\n",
        "rich/sub/deep/mod.py": b"x = 1\n" * 50,
        "rich/_native.so": bytes(range(256)) * 4096,
        "rich/tool.sh": b"#!/bin/sh\necho rich\n",
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: rich\nVersion: 3.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: envlock-tests\nRoot-Is-Purelib: false\n"
        b"Tag: cp311-cp311-linux_x86_64\n",
        f"{info}/entry_points.txt": b"[console_scripts]\nrich-cli = rich:main\n[gui_scripts]\nrich-gui = rich:gui\n",
        "rich-3.0.data/scripts/rich-py": b"#!python\nimport rich\n",
        "rich-3.0.data/scripts/rich-sh": b"#!/bin/sh\necho sh\n",
        "rich-3.0.data/data/share/rich/config.json": b"{}\n",
        "rich-3.0.data/headers/rich.h": b"int rich(void);\n",
    }
    unrecorded = "rich/unrecorded.txt"
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in files.items())
    files[f"{info}/RECORD"] = (record + f"{unrecorded},,\n{info}/RECORD,,\n").encode()
    files[unrecorded] = b"not hashed in RECORD\n"
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "rich-3.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files.items():
            zi = zipfile.ZipInfo(arcname, _EPOCH)
            executable = arcname.endswith((".sh", "rich-py", "rich-sh"))
            zi.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            zf.writestr(zi, data)
    return path


def installed_on_disk(tmp_path: Path, wheels: list[tuple[Package, Path]]) -> list[layermod.Entry]:
    """The reference: installer's own destination writing real files, then scanned."""
    from installer import install
    from installer.destinations import SchemeDictionaryDestination
    from installer.sources import WheelFile

    root = tmp_path / "root"
    for package, path in wheels:
        named = tmp_path / "named" / package.filename
        named.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, named)
        site = "/opt/env/lib/python3.11/site-packages"
        scheme = {
            "purelib": site,
            "platlib": site,
            "headers": f"/opt/env/include/site/python3.11/{package.name}",
            "scripts": "/opt/env/bin",
            "data": "/opt/env",
        }
        destination = SchemeDictionaryDestination(
            scheme, "/opt/env/bin/python", "posix", bytecode_optimization_levels=(), destdir=str(root)
        )
        with WheelFile.open(named) as source:
            install(source, destination, {"INSTALLER": b"envlock\n"})
    return layermod.scan(root / "opt", "opt")


def test_a_streamed_layer_is_byte_for_byte_what_installer_writes_to_disk(tmp_path: Path, wheels) -> None:
    store = Store(tmp_path / "store")
    inputs = [*artifacts(store, wheels)]
    rich = rich_wheel(tmp_path / "wheels")
    inputs.append(as_artifact(store, rich, "rich", "3.0"))

    layer = build_layer(store, inputs, INTERP, "x")
    reference = io.BytesIO()
    layermod.write(installed_on_disk(tmp_path, inputs), reference)

    assert store.read_blob(layer.digest) == reference.getvalue()
    members = layer_members(store, layer.digest)
    assert members["opt/env/bin/rich-py"][1] == b"#!/opt/env/bin/python\nimport rich\n"
    assert members["opt/env/bin/rich-gui"][0].mode == 0o755
    assert members[f"{SITE}/rich/tool.sh"][0].mode == 0o755
    assert "opt/env/share/rich/config.json" in members
    assert "opt/env/include/site/python3.11/rich/rich.h" in members


def test_two_wheels_installing_one_path_with_the_same_bytes_give_one_entry(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    shared = {"backports/__init__.py": "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"}
    one = build_wheel(tmp_path / "a", "backports.tarfile", "1.2.0", root_files=shared)
    two = build_wheel(tmp_path / "b", "backports.functools-lru-cache", "2.0.0", root_files=shared)
    inputs = [
        as_artifact(store, one, "backports-tarfile", "1.2.0"),
        as_artifact(store, two, "backports-functools-lru-cache", "2.0.0"),
    ]

    members = layer_members(store, build_layer(store, inputs, INTERP, "x").digest)

    assert members[f"{SITE}/backports/__init__.py"][1] == shared["backports/__init__.py"].encode()
    assert len([m for m in members if m.endswith(".dist-info/RECORD")]) == 2


def clashing(tmp_path: Path, store: Store) -> list[tuple[Package, Path]]:
    """thop and ultralytics-thop: one path, different bytes (as on PyPI)."""
    one = build_wheel(tmp_path / "a", "thop", "0.1.1", root_files={"thop/profile.py": "OLD = 1\n"})
    two = build_wheel(
        tmp_path / "b", "ultralytics-thop", "2.0.0", root_files={"thop/profile.py": "NEW = 2\n"}
    )
    return [as_artifact(store, one, "thop", "0.1.1"), as_artifact(store, two, "ultralytics-thop", "2.0.0")]


def test_two_wheels_writing_one_path_differently_are_refused_undecided(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    with pytest.raises(
        CheckFailed, match=r"ultralytics-thop 2\.0\.0 and thop 0\.1\.1 both install /opt/env/lib.*different"
    ):
        build_layer(store, clashing(tmp_path, store), INTERP, "x")
    assert list(store.tmp.iterdir()) == []


def test_the_image_wide_decision_keeps_the_winner_in_one_layer(tmp_path: Path) -> None:
    from envlock.image.conflicts import scan

    store = Store(tmp_path / "store")
    inputs = clashing(tmp_path, store)
    decision = scan(inputs, "3.11")

    assert decision.omit == {"thop": frozenset({f"{SITE}/thop/profile.py"})}
    for order in (inputs, list(reversed(inputs))):
        members = layer_members(store, build_layer(store, order, INTERP, "x", decision.omit).digest)
        assert members[f"{SITE}/thop/profile.py"][1] == b"NEW = 2\n"


def test_the_losers_own_layer_leaves_the_path_out_and_its_key_says_so(tmp_path: Path) -> None:
    from envlock.image.conflicts import scan

    store = Store(tmp_path / "store")
    thop, ultra = clashing(tmp_path, store)
    decision = scan([thop, ultra], "3.11")

    alone = layer_members(store, build_layer(store, [thop], INTERP, "x", decision.omit).digest)
    assert f"{SITE}/thop/profile.py" not in alone
    assert f"{SITE}/thop/__init__.py" in alone
    assert layer_key([thop[0]], INTERP, decision.omit) != layer_key([thop[0]], INTERP)
    # packages that lose nothing keep the key they always had
    assert layer_key([ultra[0]], INTERP, decision.omit) == layer_key([ultra[0]], INTERP)


def test_a_wheel_writing_outside_its_scheme_is_refused(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    info = "evil-1.0.dist-info"
    files = {
        "evil-1.0.data/data/../../../etc/passwd": b"root::0:0::/:/bin/sh\n",
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, data in files.items():
            zf.writestr(zipfile.ZipInfo(arcname, _EPOCH), data)

    with pytest.raises(
        CheckFailed, match=r"evil 1\.0 \(evil-1\.0-py3-none-any\.whl\): member .* has '\.\.' in its path"
    ):
        build_layer(store, [as_artifact(store, path, "evil", "1.0")], INTERP, "x")


def test_scan_over_zip_members_confirms_same_bytes_and_caches_each_wheels_index(tmp_path: Path) -> None:
    from envlock.image.conflicts import scan

    store = Store(tmp_path / "store")
    shared = {"backports/__init__.py": "ns\n"}
    one = build_wheel(tmp_path / "a", "backports.tarfile", "1.2.0", root_files=shared)
    two = build_wheel(tmp_path / "b", "backports.functools-lru-cache", "2.0.0", root_files=shared)
    inputs = [as_artifact(store, one, "a", "1.0"), as_artifact(store, two, "b", "1.0")]
    assert scan(inputs, "3.11", store).conflicts == ()
    cached = sorted((store.root / "files").iterdir())
    assert [p.name.split("-")[1] for p in cached] == sorted(p.sha256 for p, _ in inputs)

    clash = clashing(tmp_path / "c", store)
    first = scan(clash, "3.11", store)
    assert scan(clash, "3.11", store) == first  # read back from the cache
    assert first.omit == {"thop": frozenset({f"{SITE}/thop/profile.py"})}


def test_scan_refuses_a_wheel_that_is_not_the_locked_one_and_caches_nothing(tmp_path: Path) -> None:
    from envlock.image.conflicts import scan

    store = Store(tmp_path / "store")
    thop, ultra = clashing(tmp_path, store)
    other = build_wheel(tmp_path / "x", "thop", "0.1.1", root_files={"thop/profile.py": "EVIL = 1\n"})
    thop[1].chmod(0o644)
    thop[1].write_bytes(other.read_bytes())  # the store's copy went bad

    with pytest.raises(CheckFailed, match=r"thop 0\.1\.1: .* is corrupt"):
        scan([thop, ultra], "3.11", store)
    assert not thop[1].exists()  # removed, so the next build fetches it again
    assert not any(p.name.split("-")[1] == thop[0].sha256 for p in (store.root / "files").glob("*"))
