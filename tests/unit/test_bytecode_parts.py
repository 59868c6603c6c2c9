"""bytecode: where .pyc files go, what their cache key covers, paths resolved inside a copied base."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

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
    from envlock import lockfile as lockmod
    from envlock.errors import UsageError
    from envlock.image.build import build_lock
    from envlock.lockfile import Package, PlatformLock
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
    """(name, kind, data or link target) -> an uncompressed tar stream; kinds: file, sym, lnk."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind in ("sym", "lnk"):
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = data.decode()
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host directory a hostile base aims at: a secret to read, a place to write."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"host secret")
    return outside


def _host_untouched(host: Path) -> None:
    assert sorted(p.name for p in host.iterdir()) == ["secret"]
    assert (host / "secret").read_bytes() == b"host secret"


STDLIB = ("usr/lib/python3.11/os.py", "file", b"# stdlib\n")


@pytest.mark.parametrize(
    "member",
    [
        ("usr/lib/python3.11/../../../../outside/dotdot", "file", b"escaped"),
        ("usr/lib/python3.11/evil", "lnk", b"../../../outside/secret"),
    ],
    ids=["dotdot-name", "hardlink-dotdot"],
)
def test_a_base_member_that_leaves_the_copy_is_an_error_naming_the_layer(
    tmp_path: Path, host: Path, member: tuple[str, str, bytes]
) -> None:
    from envlock.errors import CheckFailed
    from envlock.store import Store

    store = Store(tmp_path / "store")
    with (
        pytest.raises(CheckFailed, match=r"^base layer sha256:abc: member .* has '\.\.' in its path") as info,
        bytecode.runtime(store, [_tar([STDLIB, member])], INTERP, ["sha256:abc"]),
    ):
        pass
    assert info.value.exit_code == 1
    _host_untouched(host)
    assert list(store.tmp.iterdir()) == []


def test_a_base_cannot_write_or_read_outside_the_runtime_copy(tmp_path: Path, host: Path) -> None:
    """Links are followed inside the copy only, as in a chroot; hard links take files of the
    copy only; absolute member names are never wanted."""
    from envlock.store import Store

    store = Store(tmp_path / "store")
    layer = _tar(
        [
            STDLIB,
            (f"/{host}/absolute", "file", b"escaped"),
            ("usr/lib/python3.11/evil", "sym", str(host).encode()),  # symlink, then write through it
            ("usr/lib/python3.11/evil/through-link", "file", b"escaped"),
            ("usr/lib/python3.11/up", "sym", b"../../../../../../.."),  # '..' beyond the root
            ("usr/lib/python3.11/up/" + str(host).strip("/") + "/through-up", "file", b"escaped"),
            ("usr/lib/python3.11/secret-link", "sym", str(host / "secret").encode()),
            ("usr/lib/python3.11/copy", "lnk", b"usr/lib/python3.11/secret-link"),  # hard link to a symlink
            ("usr/lib/python3.11/copy2", "lnk", b"usr/lib/python3.11/evil/secret"),  # through a symlinked dir
            ("usr/lib/python3.11/os2.py", "lnk", b"usr/lib/python3.11/os.py"),  # a good one
        ]
    )
    with bytecode.runtime(store, [layer], INTERP) as rt:
        root = rt.root
        assert (root / "usr/lib/python3.11/os.py").read_bytes() == b"# stdlib\n"
        assert (root / "usr/lib/python3.11/os2.py").read_bytes() == b"# stdlib\n"
        assert (root / str(host).strip("/") / "through-link").read_bytes() == b"escaped"  # inside the copy
        assert (root / str(host).strip("/") / "through-up").read_bytes() == b"escaped"
        assert not (root / "usr/lib/python3.11/copy").exists()
        assert not (root / "usr/lib/python3.11/copy2").exists()
        copied = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        assert all(p.read_bytes() != b"host secret" for p in copied)
    _host_untouched(host)
    assert list(store.tmp.iterdir()) == []


def test_a_base_layer_that_is_not_a_tar_is_one_error(tmp_path: Path) -> None:
    from envlock.errors import CheckFailed
    from envlock.store import Store

    store = Store(tmp_path / "store")
    with (
        pytest.raises(CheckFailed, match=r"^base layer sha256:abc: cannot read it") as info,
        bytecode.runtime(store, [io.BytesIO(b"\x00garbage" * 100)], INTERP, ["sha256:abc"]),
    ):
        pass
    assert info.value.exit_code == 1
    assert list(store.tmp.iterdir()) == []


def test_the_compiler_runs_in_a_sandbox_holding_only_the_copy(tmp_path: Path) -> None:
    """bwrap with no network and the copy, read-only, as its only file system."""
    from envlock.store import Store

    store = Store(tmp_path / "store")
    layer = _tar(
        [("usr/bin/python3.11", "file", b"\x7fELF"), ("lib64/ld-linux-x86-64.so.2", "file", b"\x7fELF")]
    )
    with bytecode.runtime(store, [layer], INTERP) as rt:
        cmd = rt.command()
        root = str(rt.root)
    assert cmd[0].endswith("bwrap") and "--unshare-all" in cmd and "--share-net" not in cmd
    assert "--clearenv" in cmd and "--bind" not in cmd
    binds = [cmd[i + 1 : i + 3] for i, arg in enumerate(cmd) if arg == "--ro-bind"]
    assert binds == [[root, "/"]]
    argv = cmd[cmd.index("--") + 1 :]
    assert argv[:4] == ["/lib64/ld-linux-x86-64.so.2", "--library-path", argv[2], "/usr/bin/python3.11"]
    assert root not in " ".join(argv) and str(tmp_path) not in " ".join(cmd[cmd.index("--") :])
    assert "PYTHONHOME" in cmd and cmd[cmd.index("PYTHONHOME") + 1] == "/usr"


class _HostCommand(bytecode.Runtime):
    """A stand-in for a base's compiler: any host command (the tests' own Python)."""

    argv: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return list(self.argv)


def _stand_in(code: str) -> bytecode.Runtime:
    import sys

    rt = _HostCommand(Path("/nonexistent"), INTERP)
    object.__setattr__(rt, "argv", (sys.executable, "-c", code))
    return rt


def test_a_compiler_that_hangs_is_stopped_with_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from envlock.errors import CheckFailed

    monkeypatch.setattr(bytecode, "ANSWER_SECONDS", 0.5)
    start = time.monotonic()
    with pytest.raises(CheckFailed, match=r"did not answer within 0\.5 s while compiling byte code"):
        bytecode.compile_all(_stand_in("import time; time.sleep(60)"), [("/x.py", b"x = 1\n")], 1)
    assert time.monotonic() - start < 10


def test_a_compiler_answering_an_endless_frame_is_refused_without_reading_it() -> None:
    from envlock.errors import CheckFailed

    greet = "import sys, struct; sys.stdout.buffer.write(struct.pack('>I', 0xFFFFFFF0)); sys.stdout.flush()"
    with pytest.raises(CheckFailed, match=r"answered with 4294967280 bytes, more than a \.pyc can be"):
        bytecode.compile_all(_stand_in(greet + "; import time; time.sleep(60)"), [("/x.py", b"x = 1\n")], 1)
