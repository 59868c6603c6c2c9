"""Archive members confined to one root (envlock.image.extract): examples, and properties
checked with hypothesis: any name or link target gives a confined path or an EnvlockError,
never another exception, never a path outside the root, on paper and on a real disk."""

from __future__ import annotations

import os
import posixpath
import tempfile
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from envlock.errors import CheckFailed, EnvlockError
from envlock.image.extract import (
    UnsafeMember,
    boundary,
    clear,
    link_target,
    member_name,
    read_regular,
    real_parent,
    regular_file,
    resolve_inside,
)

# names made of the parts that matter: separators, dots, NUL, a lone surrogate (a tar name
# that was not UTF-8), a backslash and plain letters
PIECES = st.sampled_from(["/", ".", "..", "a", "b", "\0", "\udcff", "\\", " ", "é", "//", "./", "../"])
NAMES = st.lists(PIECES, max_size=12).map("".join) | st.text(max_size=40) | st.binary(max_size=8)


def inside(path: str) -> bool:
    """A relative path that, joined to a root and normalised, stays under it."""
    joined = posixpath.normpath(posixpath.join("/root", path))
    return joined == "/root" or joined.startswith("/root/")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("./info/index.json", "info/index.json"),
        ("lib//libz.so.1", "lib/libz.so.1"),
        ("bin/", "bin"),
        ("./", ""),
        ("a/./b", "a/b"),
    ],
)
def test_member_names_are_normalised(name: str, expected: str) -> None:
    assert member_name(name) == expected


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "../x", "a/../../x", "a/..", "a\0b", "caf\udce9", b"bytes", None]
)
def test_unsafe_member_names_are_refused(name: object) -> None:
    with pytest.raises(UnsafeMember):
        member_name(name)


@given(NAMES)
@settings(max_examples=600, deadline=None)
def test_any_member_name_is_confined_or_refused(name: object) -> None:
    try:
        out = member_name(name)
    except EnvlockError:
        return
    assert isinstance(out, str) and inside(out)
    assert not out.startswith("/") and ".." not in out.split("/")
    assert out == "" or "" not in out.split("/")
    out.encode("utf-8")


@pytest.mark.parametrize(
    ("member", "target"),
    [("lib/libz.so", "libz.so.1"), ("bin/python3", "python3.11"), ("share/a/b", "../../lib/x"), ("a/b", ".")],
)
def test_confined_link_targets_are_accepted(member: str, target: str) -> None:
    link_target(member, target)


@pytest.mark.parametrize(
    ("member", "target", "why"),
    [
        ("lib/evil", "/etc/passwd", "absolute"),
        ("lib/evil", "../../etc/passwd", "outside"),
        ("evil", "..", "outside"),
        ("a/b", "c/../..", "after a name"),
        ("lib/x", "", "empty"),
        ("lib/x", "a\0", "NUL"),
    ],
)
def test_escaping_link_targets_are_refused(member: str, target: str, why: str) -> None:
    with pytest.raises(UnsafeMember, match=why):
        link_target(member, target)


@given(NAMES, NAMES)
@settings(max_examples=600, deadline=None)
def test_any_link_target_lands_inside_or_is_refused(member: object, target: object) -> None:
    try:
        name = member_name(member)
        if not name:
            return
        out = link_target(name, target)
    except EnvlockError:
        return
    assert inside(posixpath.join(posixpath.dirname(name), out))
    assert not out.startswith("/")


# -- on a real disk: links made only of accepted pieces never lead out ------------------------

PARTS = st.sampled_from(["a", "b", "c"])
REL = st.lists(PARTS, min_size=1, max_size=3).map("/".join)
TARGETS = st.lists(st.sampled_from(["..", ".", "a", "b", "c"]), min_size=1, max_size=4).map("/".join)


@given(st.lists(st.tuples(REL, TARGETS), max_size=10), st.lists(PARTS, max_size=4))
@example(links=[("a/b", ".."), ("c", "a/b/..")], tail=[])  # lexically "a", on disk the root's parent
@settings(max_examples=120, deadline=None)
def test_accepted_links_never_lead_out_of_the_root_on_disk(
    links: list[tuple[str, str]], tail: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "root")
        root.mkdir()
        made: list[str] = []
        for name, target in links:
            try:
                link_target(name, target)
                path = real_parent(root, name)
                clear(path, name)
            except UnsafeMember:
                continue
            path.symlink_to(target)
            made.append(name)
        real_root = os.path.realpath(root)
        for name in made:
            for path in (root / name, root.joinpath(name, *tail)):
                resolved = os.path.realpath(path)
                assert resolved == real_root or resolved.startswith(real_root + os.sep), (links, name)


@given(st.lists(st.tuples(REL, st.text(alphabet="/.abc", min_size=1, max_size=12)), max_size=8), NAMES)
@settings(max_examples=120, deadline=None)
def test_resolving_inside_a_base_copy_never_leaves_it(links: list[tuple[str, str]], name: object) -> None:
    """A base's own links (absolute ones, '..' beyond its root) followed as in a chroot."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "root")
        root.mkdir()
        for rel, target in links:
            try:
                path = real_parent(root, rel)
                clear(path, rel)
            except UnsafeMember:
                continue
            path.symlink_to(target)
        try:
            found = resolve_inside(root, member_name(name), follow_last=True)
        except EnvlockError:
            return
        assert found == root or root in found.parents


# -- reading and writing without following ---------------------------------------------------


def test_nothing_is_written_or_read_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    root = tmp_path / "root"
    (root / "info").mkdir(parents=True)
    (root / "lib").symlink_to(outside)
    (root / "info/index.json").symlink_to(outside / "secret")
    with pytest.raises(UnsafeMember, match="which is a symlink"):
        real_parent(root, "lib/owned")
    with pytest.raises(UnsafeMember, match="is a symlink"):
        read_regular(root, "info/index.json")
    with pytest.raises(UnsafeMember, match="which is a symlink"):
        regular_file(root, "lib/secret")
    assert read_regular(root, "info/missing.json") is None
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_a_member_cannot_replace_a_directory(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    with pytest.raises(UnsafeMember, match="replace a directory"):
        clear(tmp_path / "lib", "lib")


def test_resolve_inside_stops_at_the_root_like_a_chroot(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "lib").symlink_to("/usr/lib")
    (tmp_path / "up").symlink_to("../../../..")
    assert resolve_inside(tmp_path, "lib/x") == tmp_path / "usr/lib/x"
    assert resolve_inside(tmp_path, "up/etc/passwd") == tmp_path / "etc/passwd"
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(UnsafeMember, match="too many levels"):
        resolve_inside(tmp_path, "loop/x")


def test_the_boundary_names_the_archive_once(tmp_path: Path) -> None:
    import zipfile

    bad = tmp_path / "x.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckFailed) as info, boundary("x 1.0 (x.whl)"):
        zipfile.ZipFile(bad)
    assert info.value.message == "x 1.0 (x.whl): cannot read it: File is not a zip file"
    with pytest.raises(CheckFailed) as info, boundary("x 1.0 (x.whl)"):
        member_name("../evil")
    assert info.value.message == "x 1.0 (x.whl): member '../evil' has '..' in its path"
    assert info.value.exit_code == 1 and info.value.hint


# -- whole archives: random members unpacked for real ----------------------------------------

_OUTSIDE = "/tmp/envlock-never-here"  # the absolute paths members aim at (never created)
MEMBER_NAMES = st.lists(
    st.sampled_from(["a", "b", "info", "..", ".", "", _OUTSIDE.strip("/")]), min_size=1, max_size=4
).map("/".join) | st.sampled_from([_OUTSIDE + "/x", "/etc/passwd"])
LINKS = MEMBER_NAMES | st.sampled_from(["..", "../..", "a/..", _OUTSIDE, "."])
MEMBERS = st.lists(
    st.tuples(MEMBER_NAMES, st.sampled_from(["file", "dir", "sym", "lnk", "fifo", "chr"]), LINKS), max_size=12
)


def _archive(members: list[tuple[str, str, str]]) -> bytes:
    import io
    import tarfile

    kinds = {
        "dir": tarfile.DIRTYPE,
        "sym": tarfile.SYMTYPE,
        "lnk": tarfile.LNKTYPE,
        "fifo": tarfile.FIFOTYPE,
        "chr": tarfile.CHRTYPE,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, link in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = 1
                tar.addfile(info, io.BytesIO(b"x"))
                continue
            info.type = kinds[kind]
            info.linkname = link
            tar.addfile(info)
    return buf.getvalue()


def _everything_inside(root: Path, outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"host secret"
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            assert not path.is_fifo() and not path.is_char_device()
            if path.is_file() and not path.is_symlink():
                assert path.read_bytes() != b"host secret"


@given(MEMBERS)
@example([("a", "sym", _OUTSIDE + "/secret"), ("b", "lnk", "a")])  # issue 12.3: a host file copied in
@example([("a", "sym", "."), ("a/b", "file", "")])
@settings(max_examples=150, deadline=None)
def test_any_conda_tar_unpacks_inside_its_stage_or_is_refused(members: list[tuple[str, str, str]]) -> None:
    import io
    import tarfile

    from envlock.image import conda as condamod

    with tempfile.TemporaryDirectory() as tmp:
        outside = Path(tmp, "outside")
        outside.mkdir()
        (outside / "secret").write_bytes(b"host secret")
        root = Path(tmp, "stage")
        root.mkdir()
        data = _archive(
            [
                (n.replace(_OUTSIDE, str(outside)), k, lk.replace(_OUTSIDE, str(outside)))
                for n, k, lk in members
            ]
        )
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
                condamod._extract_tar(tar, root)
        except EnvlockError:
            pass
        _everything_inside(root, outside)
        real_root = os.path.realpath(root)
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                resolved = os.path.realpath(Path(dirpath, name))
                assert resolved == real_root or resolved.startswith(real_root + os.sep), members


@given(MEMBERS)
@example([("a", "sym", _OUTSIDE), ("a/b", "file", "")])  # a symlinked directory, then a file in it
@example([("a", "sym", _OUTSIDE + "/secret"), ("b", "lnk", "usr/lib/python3.11/a")])
@settings(max_examples=150, deadline=None)
def test_any_base_layer_is_copied_inside_the_runtime_or_refused(members: list[tuple[str, str, str]]) -> None:
    """The byte-code runtime copy: links may point anywhere (they are resolved inside the
    copy, by envlock and by the sandbox), but nothing is written or read outside it."""
    import io
    import tarfile

    from envlock.image import bytecode

    with tempfile.TemporaryDirectory() as tmp:
        outside = Path(tmp, "outside")
        outside.mkdir()
        (outside / "secret").write_bytes(b"host secret")
        root = Path(tmp, "copy")
        root.mkdir()
        data = _archive(
            [
                (
                    "usr/lib/python3.11/" + n.replace(_OUTSIDE, str(outside)),
                    k,
                    lk.replace(_OUTSIDE, str(outside)),
                )
                for n, k, lk in members
            ]
        )
        try:
            with boundary("layer"), tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tar:
                for member in tar:
                    if not member.isdir():
                        bytecode._extract(tar, member, root)
        except EnvlockError:
            pass
        _everything_inside(root, outside)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
PATHS_DOCS = JSON | st.fixed_dictionaries(
    {"paths": st.lists(JSON | st.fixed_dictionaries({"_path": JSON, "prefix_placeholder": JSON}), max_size=4)}
)


@given(PATHS_DOCS, JSON)
@settings(max_examples=300, deadline=None)
def test_any_conda_metadata_parses_or_is_one_check_failed(paths: object, index: object) -> None:
    import json

    from envlock.image import conda as condamod

    for parse, doc in ((condamod.parse_paths, paths), (condamod.parse_index, index)):
        try:
            result = parse(json.dumps(doc).encode())  # type: ignore[operator]
        except CheckFailed:
            continue
        if parse is condamod.parse_paths:
            assert all(inside(e.path) and e.path for e in result)


def test_the_cache_tag_a_base_answers_must_be_a_plain_name() -> None:
    from envlock.image import bytecode
    from envlock.image.venv import Interpreter

    rt = bytecode.Runtime(Path("/nonexistent"), Interpreter("/usr/bin/python3.11", "3.11"))
    assert bytecode._cache_tag(b"cpython-311 a70d0d0a", rt) == "cpython-311"
    for bad in (b"../../../etc a70d", b"a/b 00", b"", b"\xff\xfe 00", b".hidden 00"):
        with pytest.raises(CheckFailed, match="instead of its cache tag"):
            bytecode._cache_tag(bad, rt)
