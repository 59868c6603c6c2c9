"""bytecode: where .pyc files go, what their cache key covers, paths resolved inside a copied base."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from envlock.image import bytecode
from envlock.image.venv import Interpreter

INTERP = Interpreter("/usr/bin/python3.11", "3.11")


def test_pyc_paths_are_where_importlib_looks() -> None:
    assert (
        bytecode.pyc_path("/opt/env/lib/python3.11/site-packages/pkg/mod.py", "cpython-311")
        == "opt/env/lib/python3.11/site-packages/pkg/__pycache__/mod.cpython-311.pyc"
    )


def test_the_key_covers_the_packages_the_base_and_its_interpreter() -> None:
    key = bytecode.layer_key("a" * 64, "sha256:" + "1" * 64, INTERP)
    assert key != bytecode.layer_key("b" * 64, "sha256:" + "1" * 64, INTERP)
    assert key != bytecode.layer_key("a" * 64, "sha256:" + "2" * 64, INTERP)
    assert key != bytecode.layer_key(
        "a" * 64, "sha256:" + "1" * 64, Interpreter("/usr/local/bin/python3.11", "3.11")
    )


def test_absolute_symlinks_resolve_inside_the_copy(tmp_path: Path) -> None:
    (tmp_path / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2").write_bytes(b"\x7fELF")
    (tmp_path / "usr/lib64").mkdir()
    (tmp_path / "usr/lib64/ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "lib64").symlink_to("usr/lib64")

    found = bytecode._inside(tmp_path, "/lib64/ld-linux-x86-64.so.2")

    assert found == tmp_path / "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"


def test_a_symlink_loop_or_a_missing_file_resolves_to_nothing(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to("/b")
    (tmp_path / "b").symlink_to("/a")
    assert bytecode._inside(tmp_path, "/a/python") is None
    assert bytecode._inside(tmp_path, "/usr/bin/python3.11") is None


def test_dot_dot_cannot_leave_the_copy(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/python3").write_bytes(b"")
    (tmp_path / "usr/bin/up").symlink_to("../../../../../usr/bin/python3")
    assert bytecode._inside(tmp_path, "/usr/bin/up") == tmp_path / "usr/bin/python3"


def test_byte_code_is_refused_for_an_environment_on_condas_python(tmp_path: Path) -> None:
    import pytest

    from envlock import lock as lockmod
    from envlock.errors import UsageError
    from envlock.image.build import build_lock
    from envlock.lock import Package, PlatformLock
    from envlock.store import Store

    python = Package(
        manager="conda",
        name="python",
        version="3.11.9",
        url="file:///channel/linux-64/python-3.11.9-h1_0.conda",
        sha256="a" * 64,
        build="h1_0",
        channel="file:///channel",
        subdir="linux-64",
        md5="b" * 32,
    )
    plat = PlatformLock(name="linux-64", python="3.11", packages=(python,), bytecode=True)
    lock = lockmod.make("sha256:" + "0" * 64, [plat], {})
    store = Store(tmp_path / "store")

    with pytest.raises(UsageError, match="conda's python") as info:
        build_lock(lock, tmp_path, "env", store=store)
    assert info.value.hint is not None and "drop bytecode" in info.value.hint
    assert list(store.blobs.iterdir()) == []


def _tar(members: list[tuple[str, str, bytes]]) -> io.BytesIO:
    """(name, kind, data or link target) -> an uncompressed tar stream."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, data.decode()
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


def test_a_base_cannot_write_outside_the_runtime_copy(tmp_path: Path) -> None:
    from envlock.store import Store

    store = Store(tmp_path / "store")
    outside = tmp_path / "outside"
    outside.mkdir()
    layer = _tar(
        [
            ("usr/lib/python3.11/os.py", "file", b"# stdlib\n"),
            ("usr/lib/python3.11/../../../../outside/dotdot", "file", b"escaped"),
            ("usr/lib/python3.11/evil", "sym", str(outside).encode()),
            ("usr/lib/python3.11/evil/through-link", "file", b"escaped"),
        ]
    )
    with bytecode.runtime(store, [layer], INTERP) as rt:
        assert (rt.root / "usr/lib/python3.11/os.py").read_bytes() == b"# stdlib\n"
    assert list(outside.iterdir()) == []
    assert list(store.tmp.iterdir()) == []
