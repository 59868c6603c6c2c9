"""layer: the same files give the same tar bytes, whatever the order, umask or mtimes."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from envlock.image import layer
from envlock.image.layer import MTIME, Entry


def tar_bytes(entries: list[Entry]) -> bytes:
    out = io.BytesIO()
    layer.write(entries, out)
    return out.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def names(data: bytes) -> list[str]:
    return [m.name for m in members(data)]


SAMPLE = [
    layer.file("opt/env/bin/tool", b"#!/bin/sh\n", executable=True),
    layer.file("opt/env/pyvenv.cfg", b"home = /usr/bin\n"),
    layer.symlink("opt/env/bin/python", "/usr/bin/python3.11"),
    layer.directory("opt/env/lib"),
]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def make_tree(root: Path, mask: int) -> None:
    """The same files, created under ``mask``."""
    with umask(mask):
        (root / "pkg" / "sub").mkdir(parents=True)
        (root / "pkg" / "__init__.py").write_bytes(b"x = 1\n")
        (root / "pkg" / "sub" / "data.txt").write_bytes(b"data\n")
        script = root / "bin" / "run"
        script.parent.mkdir()
        script.write_bytes(b"#!/bin/sh\necho hi\n")
        script.chmod(0o777 & ~mask)
        (root / "bin" / "alias").symlink_to("run")


def test_entry_order_does_not_change_the_bytes() -> None:
    assert tar_bytes(SAMPLE) == tar_bytes(list(reversed(SAMPLE)))
    assert tar_bytes(SAMPLE) == tar_bytes([SAMPLE[2], SAMPLE[0], SAMPLE[3], SAMPLE[1]])


def test_umask_does_not_change_the_bytes_of_scanned_files(tmp_path: Path) -> None:
    strict, loose = tmp_path / "strict", tmp_path / "loose"
    make_tree(strict, 0o077)
    make_tree(loose, 0o022)
    assert (strict / "pkg" / "__init__.py").stat().st_mode & 0o777 == 0o600

    assert tar_bytes(layer.scan(strict, "opt/env")) == tar_bytes(layer.scan(loose, "opt/env"))


def test_mtimes_do_not_change_the_bytes_of_scanned_files(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    make_tree(old, 0o022)
    make_tree(new, 0o022)
    for i, path in enumerate(sorted(old.rglob("*"))):
        if not path.is_symlink():
            os.utime(path, (1000 + i, 1000 + i))
    for path in new.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (2_000_000_000, 2_000_000_000))

    assert tar_bytes(layer.scan(old, "opt")) == tar_bytes(layer.scan(new, "opt"))


def test_scan_places_entries_under_the_prefix(tmp_path: Path) -> None:
    make_tree(tmp_path / "t", 0o022)

    paths = {e.path: e for e in layer.scan(tmp_path / "t", "/opt/env/")}

    assert set(paths) == {
        "opt/env/bin",
        "opt/env/bin/alias",
        "opt/env/bin/run",
        "opt/env/pkg",
        "opt/env/pkg/__init__.py",
        "opt/env/pkg/sub",
        "opt/env/pkg/sub/data.txt",
    }
    assert paths["opt/env/bin/run"].executable
    assert not paths["opt/env/pkg/__init__.py"].executable
    assert paths["opt/env/bin/alias"].kind == "symlink"
    assert paths["opt/env/bin/alias"].target == "run"


def test_scan_skips_fifos(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "file").write_bytes(b"x")
    os.mkfifo(tmp_path / "t" / "pipe")

    data = tar_bytes(layer.scan(tmp_path / "t", "opt"))

    assert names(data) == ["opt", "opt/file"]


def test_every_member_has_fixed_owner_and_time() -> None:
    for m in members(tar_bytes(SAMPLE)):
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (MTIME, 0, 0, "", ""), m.name


def test_modes_are_normalised_by_kind_and_exec_bit() -> None:
    modes = {m.name: (m.type, m.mode) for m in members(tar_bytes(SAMPLE))}

    assert modes == {
        "opt": (tarfile.DIRTYPE, 0o755),
        "opt/env": (tarfile.DIRTYPE, 0o755),
        "opt/env/bin": (tarfile.DIRTYPE, 0o755),
        "opt/env/bin/python": (tarfile.SYMTYPE, 0o777),
        "opt/env/bin/tool": (tarfile.REGTYPE, 0o755),
        "opt/env/lib": (tarfile.DIRTYPE, 0o755),
        "opt/env/pyvenv.cfg": (tarfile.REGTYPE, 0o644),
    }


def test_scanned_modes_follow_only_the_exec_bit(tmp_path: Path) -> None:
    make_tree(tmp_path / "t", 0o077)

    modes = {m.name: m.mode for m in members(tar_bytes(layer.scan(tmp_path / "t", "x")))}

    assert modes["x/bin/run"] == 0o755
    assert modes["x/pkg/__init__.py"] == 0o644
    assert modes["x/pkg/sub"] == 0o755
    assert modes["x/bin/alias"] == 0o777


def test_parent_directories_are_explicit_and_precede_children() -> None:
    data = tar_bytes([layer.file("a/b/c/d.txt", b"d"), layer.file("a/z.txt", b"z")])

    assert names(data) == ["a", "a/b", "a/b/c", "a/b/c/d.txt", "a/z.txt"]


def test_entries_are_sorted_by_path() -> None:
    entries = [layer.file(p, b"") for p in ("b", "a-b", "a/c", "A", "a.txt")]

    result = names(tar_bytes(entries))

    assert result == sorted(result)
    assert set(result) == {"A", "a", "a-b", "a.txt", "a/c", "b"}


def test_contents_and_symlink_targets_are_kept(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(bytes(range(256)) * 10)
    entries = [layer.file("mem.txt", b"in memory"), Entry("disk.bin", "file", source=source), *SAMPLE]

    with tarfile.open(fileobj=io.BytesIO(tar_bytes(entries))) as tar:
        assert tar.extractfile("mem.txt").read() == b"in memory"  # type: ignore[union-attr]
        assert tar.extractfile("disk.bin").read() == source.read_bytes()  # type: ignore[union-attr]
        assert tar.getmember("opt/env/bin/python").linkname == "/usr/bin/python3.11"


def test_leading_slashes_are_stripped() -> None:
    assert names(tar_bytes([layer.file("/etc/x", b""), layer.directory("/var/")])) == ["etc", "etc/x", "var"]


def test_the_format_is_posix_pax() -> None:
    data = tar_bytes(SAMPLE)

    assert data[257:265] == b"ustar\x0000"  # POSIX magic, not GNU's "ustar  \0"


def test_long_paths_use_pax_headers_and_round_trip() -> None:
    long = "opt/" + "/".join(["d" * 60] * 4) + "/file.py"

    data = tar_bytes([layer.file(long, b"x")])

    assert long in names(data)
    assert b"path=" + long.encode() in data
    assert b"././@LongLink" not in data


@pytest.mark.parametrize("name", ["caf\u00e9.txt", "\u65e5\u672c.py"])
def test_non_ascii_names_round_trip(name: str) -> None:
    assert names(tar_bytes([layer.file(name, b"")])) == [name]


def test_there_are_no_device_nodes_or_hard_links() -> None:
    for m in members(tar_bytes(SAMPLE)):
        assert m.type in (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE)


def test_a_later_entry_for_the_same_path_wins_and_appears_once() -> None:
    data = tar_bytes([layer.file("x", b"first"), layer.file("x", b"second")])

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["x"]
        assert tar.extractfile("x").read() == b"second"  # type: ignore[union-attr]


# -- the writer is tarfile's format, without tarfile's stream buffer ----------------------------


def tarfile_bytes(entries: list[Entry]) -> bytes:
    """What tarfile itself writes for the same entries (``w|``, UTF-8 names)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=layer.FORMAT, encoding="utf-8") as tar:
        for e in layer._with_parents(entries):
            info = layer._info(e)
            if e.kind == "file":
                assert e.data is not None
                tar.addfile(info, io.BytesIO(e.data))
            else:
                tar.addfile(info)
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 10240 - 1536, 10240, (3 << 20) + 7])
def test_the_bytes_are_what_tarfile_writes(size: int) -> None:
    entries = [
        *SAMPLE,
        layer.file("opt/env/data.bin", bytes(range(256)) * (size // 256) + b"x" * (size % 256)),
        layer.file("opt/env/" + "long/" * 30 + "name.py", b"deep\n"),
        layer.file("opt/env/naïve-ünïcode.txt", b"u\n"),
    ]
    assert tar_bytes(entries) == tarfile_bytes(entries)


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    return path


def test_zip_members_are_written_as_their_content(tmp_path: Path) -> None:
    big = os.urandom(3 << 20)
    archive = make_zip(tmp_path / "a.zip", {"pkg/big.so": big, "pkg/x.py": b"x = 1\n"})
    streamed = [
        layer.zip_member("opt/env/big.so", archive, "pkg/big.so", len(big), executable=True),
        layer.zip_member("opt/env/x.py", archive, "pkg/x.py", 6),
    ]
    in_memory = [layer.file("opt/env/big.so", big, executable=True), layer.file("opt/env/x.py", b"x = 1\n")]
    assert tar_bytes(streamed) == tar_bytes(in_memory)


def test_a_corrupt_zip_member_is_refused_naming_it(tmp_path: Path) -> None:
    from envlock.errors import CheckFailed

    data = b"hello world " * 1000
    archive = make_zip(tmp_path / "a.zip", {"pkg/mod.py": data})
    raw = bytearray(archive.read_bytes())
    start = raw.index(b"pkg/mod.py") + len(b"pkg/mod.py")  # the local header's name, then the data
    raw[start + 40] ^= 0xFF
    archive.write_bytes(bytes(raw))
    with pytest.raises(CheckFailed, match=r"a\.zip: member pkg/mod\.py is corrupt"):
        tar_bytes([layer.zip_member("opt/env/mod.py", archive, "pkg/mod.py", len(data))])


def test_a_member_shorter_than_its_entry_says_is_refused(tmp_path: Path) -> None:
    from envlock.errors import CheckFailed

    archive = make_zip(tmp_path / "a.zip", {"pkg/mod.py": b"short\n"})
    with pytest.raises(CheckFailed, match="bytes short"):
        tar_bytes([layer.zip_member("opt/env/mod.py", archive, "pkg/mod.py", 100)])


def test_a_member_whose_deflate_stream_is_broken_is_refused(tmp_path: Path) -> None:
    from envlock.errors import CheckFailed

    data = os.urandom(1 << 16)
    archive = make_zip(tmp_path / "a.zip", {"pkg/mod.so": data})
    raw = bytearray(archive.read_bytes())
    start = raw.index(b"pkg/mod.so") + len(b"pkg/mod.so")
    for i in range(8):
        raw[start + i] = 0xFF  # the first deflate block header: an invalid block type
    archive.write_bytes(bytes(raw))
    with pytest.raises(CheckFailed, match="is corrupt"):
        tar_bytes([layer.zip_member("opt/env/mod.so", archive, "pkg/mod.so", len(data))])
