"""Hostile and malformed archives, built for real and fed to ``envlock build``: conda
packages (``.tar.bz2`` and ``.conda``) and wheels.  Each is refused with exit 1 and ONE
``error:`` line naming the package, its file and the member; no host file is read, created,
moved or deleted (sentinel files in a temp dir are compared before and after)."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conda_channel import CondaPkg, write_channel
from support import build_wheel, locked_project, run_envlock, write_spec

from envlock.errors import CheckFailed
from envlock.image import venv
from envlock.lockfile import Package
from envlock.store import Store

SECRET = b"host secret: envlock must never read this\n"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a hostile archive aims at: a secret to read into the image, a victim to move, an
    index.json to be read instead of the package's own, an empty directory to write into."""
    root = tmp_path_factory.mktemp("host")
    (root / "secret.txt").write_bytes(SECRET)
    (root / "victim.txt").write_bytes(b"victim\n")
    (root / "index.json").write_text('{"name": "fx-h", "version": "1.0", "build": "0", "build_number": 0}')
    (root / "paths.json").write_text('{"paths": [{"_path": "../../secret.txt"}], "paths_version": 1}')
    (root / "drop").mkdir()
    return root


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))
    }


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


# -- conda packages ---------------------------------------------------------------------------

Variant = Callable[[Path], CondaPkg]
OK_FILES = {"share/ok/README": b"ok\n"}


def pkg(name: str, fmt: str = "tar.bz2", **kw: object) -> CondaPkg:
    return CondaPkg(f"fx-h-{name}", "1.0", "linux-64", files=dict(OK_FILES), fmt=fmt, **kw)  # type: ignore[arg-type]


def _b(path: Path | str) -> bytes:
    return str(path).encode()


CONDA_VARIANTS: dict[str, tuple[Variant, str]] = {
    # links out of the package
    "abs-symlink": (
        lambda h: pkg("abs-symlink", members=(("lib/evil", "sym", _b(h / "secret.txt")),)),
        r"symlink 'lib/evil' -> '/.*' points to an absolute path",
    ),
    "abs-symlink-conda": (
        lambda h: pkg("abs-symlink-conda", "conda", members=(("lib/evil", "sym", _b(h / "secret.txt")),)),
        r"symlink 'lib/evil' -> '/.*' points to an absolute path",
    ),
    "dotdot-symlink": (
        lambda h: pkg("dotdot-symlink", members=(("lib/evil", "sym", b"../" * 12 + _b(h / "secret.txt")),)),
        r"symlink 'lib/evil' -> .* points outside the package",
    ),
    "symlink-chain-escape": (
        lambda h: pkg(
            "symlink-chain-escape", members=(("lib/l1", "sym", b"l2"), ("lib/l2", "sym", b"../.."))
        ),
        r"symlink 'lib/l2' -> '\.\./\.\.' points outside the package",
    ),
    "symlink-chain-up-after-name": (
        lambda h: pkg(
            "symlink-chain-up-after-name", members=(("a/b", "sym", b".."), ("c", "sym", b"a/b/.."))
        ),
        r"symlink 'c' -> 'a/b/\.\.' has '\.\.' after a name",
    ),
    "hardlink-to-host-symlink": (
        lambda h: pkg(
            "hardlink-to-host-symlink",
            members=(("lib/evil", "sym", _b(h / "secret.txt")), ("lib/copy", "lnk", b"lib/evil")),
        ),
        r"symlink 'lib/evil' -> '/.*' points to an absolute path",
    ),
    "hardlink-to-symlink": (
        lambda h: pkg(
            "hardlink-to-symlink",
            members=(("lib/ok", "sym", b"../share/ok/README"), ("lib/copy", "lnk", b"lib/ok")),
        ),
        r"hard link 'lib/copy': member 'lib/ok' is a symlink",
    ),
    "hardlink-abs": (
        lambda h: pkg("hardlink-abs", members=(("lib/copy", "lnk", _b(h / "secret.txt")),)),
        r"hard link 'lib/copy': member '/.*' has an absolute path",
    ),
    "hardlink-dotdot": (
        lambda h: pkg("hardlink-dotdot", members=(("lib/copy", "lnk", b"../" * 12 + _b(h / "secret.txt")),)),
        r"hard link 'lib/copy': member .* has '\.\.' in its path",
    ),
    # info/ files that are links
    "symlinked-index-json": (
        lambda h: pkg(
            "symlinked-index-json", info_members=(("info/index.json", "sym", _b(h / "index.json")),)
        ),
        r"symlink 'info/index.json' -> '/.*' points to an absolute path",
    ),
    "symlinked-index-json-conda": (
        lambda h: pkg(
            "symlinked-index-json-conda",
            "conda",
            info_members=(("info/index.json", "sym", _b(h / "index.json")),),
        ),
        r"symlink 'info/index.json' -> '/.*' points to an absolute path",
    ),
    "index-json-links-inside": (
        lambda h: pkg(
            "index-json-links-inside",
            info_members=(("info/index.json", "sym", b"../share/ok/README"),),
        ),
        r"member 'info/index.json' is a symlink",
    ),
    "symlinked-paths-json": (
        lambda h: pkg(
            "symlinked-paths-json", info_members=(("info/paths.json", "sym", _b(h / "paths.json")),)
        ),
        r"symlink 'info/paths.json' -> '/.*' points to an absolute path",
    ),
    "symlinked-has-prefix": (
        lambda h: pkg(
            "symlinked-has-prefix", info_members=(("info/has_prefix", "sym", _b(h / "secret.txt")),)
        ),
        r"symlink 'info/has_prefix' -> '/.*' points to an absolute path",
    ),
    # paths.json entries that lead out
    "paths-json-via-host-symlink": (
        lambda h: pkg(
            "paths-json-via-host-symlink",
            members=(("via", "sym", _b(h)),),
            info_override={
                "info/paths.json": b'{"paths": [{"_path": "via/victim.txt"}], "paths_version": 1}'
            },
        ),
        r"symlink 'via' -> '/.*' points to an absolute path",
    ),
    "paths-json-via-symlinked-dir": (
        lambda h: pkg(
            "paths-json-via-symlinked-dir",
            members=(("via", "sym", b"share/ok"),),
            info_override={"info/paths.json": b'{"paths": [{"_path": "via/README"}], "paths_version": 1}'},
        ),
        r"member 'via/README' lies under 'via', which is a symlink",
    ),
    "paths-json-dotdot": (
        lambda h: pkg(
            "paths-json-dotdot",
            info_override={
                "info/paths.json": b'{"paths": [{"_path": "../../../../../..' + _b(h / "victim.txt") + b'"}]}'
            },
        ),
        r"info/paths.json: entry 0: member .* has '\.\.' in its path",
    ),
    "paths-json-absolute": (
        lambda h: pkg(
            "paths-json-absolute",
            info_override={"info/paths.json": b'{"paths": [{"_path": "' + _b(h / "victim.txt") + b'"}]}'},
        ),
        r"info/paths.json: entry 0: member '/.*' has an absolute path",
    ),
    # member names and kinds
    "member-absolute": (
        lambda h: pkg("member-absolute", members=((str(h / "drop/created"), "file", b"x"),)),
        r"member '/.*/drop/created' has an absolute path",
    ),
    "member-dotdot": (
        lambda h: pkg("member-dotdot", members=(("../" * 12 + str(h / "drop/created"), "file", b"x"),)),
        r"member '\.\./.*' has '\.\.' in its path",
    ),
    "symlink-then-write": (
        lambda h: pkg(
            "symlink-then-write", members=(("lib/evil", "sym", b"../share"), ("lib/evil/x", "file", b"x"))
        ),
        r"member 'lib/evil/x' lies under 'lib/evil', which is a symlink",
    ),
    "fifo": (
        lambda h: pkg("fifo", members=(("lib/pipe", "fifo", b""),)),
        r"member 'lib/pipe' is a fifo",
    ),
    "device": (
        lambda h: pkg("device", "conda", members=(("dev/null", "chr", b""),)),
        r"member 'dev/null' is a device node",
    ),
    "non-utf8-name": (
        lambda h: pkg("non-utf8-name", members=(("lib/caf\udce9", "file", b"x"),)),
        r"member 'lib/caf\\udce9' has a name that is not UTF-8",
    ),
    # malformed archives and metadata
    "truncated-tar-bz2": (lambda h: pkg("truncated-tar-bz2", truncate=300), r"cannot read it: "),
    "truncated-conda": (lambda h: pkg("truncated-conda", "conda", truncate=400), r"cannot read it: "),
    "index-json-garbage": (
        lambda h: pkg("index-json-garbage", info_override={"info/index.json": b"{not json"}),
        r"info/index.json is not UTF-8 JSON",
    ),
    "index-json-list": (
        lambda h: pkg("index-json-list", info_override={"info/index.json": b"[1, 2]"}),
        r"info/index.json is not a JSON object",
    ),
    "index-json-types": (
        lambda h: pkg("index-json-types", info_override={"info/index.json": b'{"build_number": "x"}'}),
        r"info/index.json: build_number 'x' is not a number",
    ),
    "index-json-directory": (
        lambda h: pkg("index-json-directory", info_members=(("info/index.json", "dir", b""),)),
        r"member 'info/index.json' is not a regular file",
    ),
    "paths-json-not-a-list": (
        lambda h: pkg("paths-json-not-a-list", "conda", info_override={"info/paths.json": b'{"paths": "x"}'}),
        r"info/paths.json has no list of paths",
    ),
    "paths-json-path-type": (
        lambda h: pkg(
            "paths-json-path-type", info_override={"info/paths.json": b'{"paths": [{"_path": 5}]}'}
        ),
        r"info/paths.json: entry 0: member name 5 is not a string",
    ),
    "paths-json-placeholder-type": (
        lambda h: pkg(
            "paths-json-placeholder-type",
            info_override={
                "info/paths.json": b'{"paths": [{"_path": "share/ok/README", "prefix_placeholder": 3}]}'
            },
        ),
        r"info/paths.json: share/ok/README: prefix_placeholder 3 is not a string",
    ),
    "paths-json-not-utf8": (
        lambda h: pkg("paths-json-not-utf8", info_override={"info/paths.json": b'{"paths": ["\xff"]}'}),
        r"info/paths.json is not UTF-8 JSON",
    ),
}


@pytest.fixture(scope="module")
def hostile_channel(tmp_path_factory: pytest.TempPathFactory, host: Path) -> str:
    packages = [make(host) for make, _ in CONDA_VARIANTS.values()]
    return write_channel(tmp_path_factory.mktemp("hostile-channel"), packages, ("linux-64", "noarch"))


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One store for the refused builds (the base is copied in once): none of them may
    leave anything in it."""
    return tmp_path_factory.mktemp("hostile-store")


@pytest.mark.parametrize("variant", sorted(CONDA_VARIANTS))
def test_a_hostile_conda_package_is_refused_and_the_host_untouched(
    tmp_path: Path, variant: str, hostile_channel: str, host: Path, base_layout: Path, shared_store: Path
) -> None:
    made = CONDA_VARIANTS[variant][0](host)
    body = (
        f'python = "3.11"\nplatforms = ["linux-64"]\n[conda]\nchannels = ["{hostile_channel}"]\n'
        f'packages = ["{made.name}"]\n[image]\nbase = "oci:{base_layout}"\n'
    )
    spec = write_spec(tmp_path, "hostile", body)
    locked = run_envlock("lock", str(spec), cwd=tmp_path)
    assert locked.returncode == 0, locked.stderr
    before = snapshot(host)

    proc = run_envlock("build", str(spec), "--store", str(shared_store), cwd=tmp_path)

    assert snapshot(host) == before  # no host file moved, deleted, created or changed
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = errors(proc.stderr)
    assert line.startswith(f"error: {made.name} 1.0 ({made.filename}): "), line
    assert re.search(CONDA_VARIANTS[variant][1], line), line
    assert list((shared_store / "tmp").iterdir()) == []
    assert not list((shared_store / "envs").glob("*"))


def test_a_package_with_links_inside_it_still_installs(
    tmp_path: Path, base_layout: Path, shared_store: Path
) -> None:
    """The rules refuse what leaves a package, not links: relative symlinks (also up and
    across directories) and hard links to earlier files install as before."""
    links = CondaPkg(
        "fx-links",
        "1.0",
        "linux-64",
        files={"lib/libfx.so.1": b"\x7fELF fx\n"},
        members=(
            ("lib/libfx.so", "sym", b"libfx.so.1"),
            ("share/fx/lib", "sym", b"../../lib/libfx.so.1"),
            ("share/fx/here", "sym", b"."),
            ("lib/libfx-copy.so.1", "lnk", b"lib/libfx.so.1"),
        ),
    )
    channel = write_channel(tmp_path / "chan", [links], ("linux-64", "noarch"))
    body = (
        f'python = "3.11"\nplatforms = ["linux-64"]\n[conda]\nchannels = ["{channel}"]\n'
        f'packages = ["fx-links"]\n[image]\nbase = "oci:{base_layout}"\n'
    )
    spec = write_spec(tmp_path, "links", body)
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    store = tmp_path / "store"
    proc = run_envlock("build", str(spec), "--store", str(store), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    from envlock.image.build import load_image

    s = Store(store)
    (entry,) = s.list_envs()
    (layer,) = [
        la for la in load_image(s, entry.manifest).layers if la.created_by.startswith("envlock: conda")
    ]
    with tarfile.open(fileobj=io.BytesIO(s.read_blob(layer.digest))) as tar:
        members = {m.name: m for m in tar}
        assert members["opt/env/lib/libfx.so"].linkname == "libfx.so.1"
        assert members["opt/env/share/fx/lib"].linkname == "../../lib/libfx.so.1"
        assert members["opt/env/share/fx/here"].linkname == "."
        copy = tar.extractfile(members["opt/env/lib/libfx-copy.so.1"])
        assert copy is not None and copy.read() == b"\x7fELF fx\n"


# -- wheels -----------------------------------------------------------------------------------

WheelEdit = dict[str, bytes | None]  # member -> new bytes, or None to drop it


def hostile_wheel(
    dest: Path, name: str, edit: Callable[[str], WheelEdit] | None = None, raw: bytes = b""
) -> Path:
    """A valid wheel of ``name`` 1.0, then its members edited (``edit(dist_info)``), or
    its bytes replaced by ``raw``."""
    good = build_wheel(dest / "good", name, "1.0")
    path = dest / good.name
    if raw:
        path.write_bytes(raw)
        return path
    members: dict[str, bytes | None] = {}
    with zipfile.ZipFile(good) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members.update(edit(f"{name.replace('-', '_')}-1.0.dist-info") if edit else {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            if data is not None:
                zf.writestr(zipfile.ZipInfo(member, (1980, 1, 1, 0, 0, 0)), data)
    return path


def _record_plus(info: str, line: str) -> WheelEdit:
    record = f"{info}/RECORD"
    return {record: f"{line}\n{info}/RECORD,,\n".encode()}


WHEEL_VARIANTS: dict[str, tuple[Callable[[str], WheelEdit] | None, bytes, str]] = {
    "member-dotdot": (lambda i: {"../../../../etc/cron.d/owned": b"x"}, b"", r"member '\.\./.*' has '\.\.'"),
    "member-absolute": (
        lambda i: {"/etc/cron.d/owned": b"x"},
        b"",
        r"member '/etc/cron.d/owned' has an absolute",
    ),
    "data-escape": (
        lambda i: {i.replace(".dist-info", ".data") + "/data/x/../../../../etc/owned": b"x"},
        b"",
        r"member '.*\.data/data/x/\.\./.*' has '\.\.' in its path",
    ),
    "data-scripts-escape": (
        lambda i: {i.replace(".dist-info", ".data") + "/scripts/../../usr/bin/python3": b"x"},
        b"",
        r"has '\.\.' in its path",
    ),
    "data-unknown-scheme": (
        lambda i: {i.replace(".dist-info", ".data") + "/evil/x": b"x"},
        b"",
        r"is not contained in a valid \.data subdirectory",
    ),
    "entry-point-escape": (
        lambda i: {f"{i}/entry_points.txt": b"[console_scripts]\n../../../usr/bin/owned = a:b\n"},
        b"",
        r"a wheel tries to write \.\./\.\./\.\./usr/bin/owned outside /opt/env/bin",
    ),
    "record-dotdot": (
        lambda i: _record_plus(i, "../../../etc/passwd,sha256=AAAA,4"),
        b"",
        r"RECORD lists '\.\./\.\./\.\./etc/passwd', a path outside the wheel",
    ),
    "record-absolute": (
        lambda i: _record_plus(i, "/etc/passwd,sha256=AAAA,4"),
        b"",
        r"RECORD lists '/etc/passwd', a path outside the wheel",
    ),
    "no-wheel": (lambda i: {f"{i}/WHEEL": None}, b"", r"dist-info/WHEEL is missing"),
    "garbage-wheel": (
        lambda i: {f"{i}/WHEEL": b"\xff\xfe\x00garbage"},
        b"",
        r"cannot read it: 'utf-8' codec",
    ),
    "wheel-version-9": (
        lambda i: {f"{i}/WHEEL": b"Wheel-Version: 9.0\n"},
        b"",
        r"cannot read it: Incompatible Wheel-Version 9\.0",
    ),
    "no-metadata": (lambda i: {f"{i}/METADATA": None}, b"", r"dist-info/METADATA is missing"),
    "metadata-without-name": (
        lambda i: {f"{i}/METADATA": b"Metadata-Version: 2.1\n"},
        b"",
        r"METADATA has no Name or no Version",
    ),
    "no-record": (lambda i: {f"{i}/RECORD": None}, b"", r"dist-info/RECORD is missing"),
    "garbage-record": (lambda i: {f"{i}/RECORD": b"a,b\n\xff\xfe"}, b"", r"cannot read it: 'utf-8' codec"),
    "two-dist-info": (lambda i: {"other-1.0.dist-info/METADATA": b"x"}, b"", r"exactly one \.dist-info"),
    "not-a-zip": (None, b"this is not a zip archive\n", r"cannot read it: File is not a zip file"),
    "truncated": (None, b"PK\x03\x04" + b"\0" * 40, r"cannot read it: File is not a zip file"),
}


@pytest.mark.parametrize("variant", sorted(WHEEL_VARIANTS))
def test_a_hostile_or_malformed_wheel_is_one_error_naming_it(tmp_path: Path, variant: str) -> None:
    """At the layer builder, the function ``envlock build`` runs for each group of wheels."""
    edit, raw, pattern = WHEEL_VARIANTS[variant]
    path = hostile_wheel(tmp_path, "envlock-fx-w", edit, raw)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    package = Package("pip", "envlock-fx-w", "1.0", f"file://{path}", sha)
    store = Store(tmp_path / "store")
    interp = venv.Interpreter("/usr/bin/python3.11", "3.11")

    with pytest.raises(CheckFailed) as info:
        venv.build_layer(store, [(package, path)], interp, "envlock: pip 1 package")

    message = info.value.message
    assert message.startswith(f"envlock-fx-w 1.0 ({path.name}): "), message
    assert re.search(pattern, message), message
    assert "\n" not in message and info.value.hint and info.value.exit_code == 1
    assert list(store.blobs.iterdir()) == [] and list(store.tmp.iterdir()) == []


@pytest.mark.parametrize(
    "variant", ["member-dotdot", "data-escape", "record-dotdot", "no-wheel", "entry-point-escape"]
)
def test_envlock_build_refuses_a_hostile_wheel_with_one_line(
    tmp_path: Path, variant: str, base_layout: Path, shared_store: Path
) -> None:
    edit, raw, pattern = WHEEL_VARIANTS[variant]
    wheels = tmp_path / "wheels"
    path = hostile_wheel(wheels, "envlock-fx-w", edit, raw)
    (wheels / "good" / path.name).unlink()
    spec = locked_project(tmp_path / "p", wheels, '"envlock-fx-w"', f'base = "oci:{base_layout}"\n')

    proc = run_envlock("build", str(spec), "--store", str(shared_store), cwd=tmp_path / "p")

    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = errors(proc.stderr)
    assert line.startswith(f"error: envlock-fx-w 1.0 ({path.name}): "), line
    assert re.search(pattern, line), line
    assert list((shared_store / "tmp").iterdir()) == []


def test_a_non_utf8_tar_name_reaches_the_member_check_as_a_surrogate() -> None:
    """What the conda variant "non-utf8-name" relies on: tarfile hands envlock the name with
    surrogate escapes, which member_name refuses."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("lib/caf\udce9")
        tar.addfile(info)
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r|") as tar:
        (member,) = list(tar)
    assert member.name == "lib/caf\udce9"


def test_a_wheel_with_a_member_name_that_is_not_utf8_is_one_error(tmp_path: Path) -> None:
    """The zip's UTF-8 flag is set but the name's bytes are not UTF-8."""
    path = hostile_wheel(tmp_path, "envlock-fx-w", lambda i: {"envlock_fx_w/caf\u00e9.py": b"x = 1\n"})
    data = path.read_bytes()
    assert data.count("caf\u00e9".encode()) == 2  # the local header and the central directory
    path.write_bytes(data.replace("caf\u00e9".encode(), b"caf\xff\xa9"))
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    package = Package("pip", "envlock-fx-w", "1.0", f"file://{path}", sha)
    store = Store(tmp_path / "store")

    with pytest.raises(CheckFailed) as info:
        venv.build_layer(store, [(package, path)], venv.Interpreter("/usr/bin/python3.11", "3.11"), "x")

    assert info.value.message.startswith(f"envlock-fx-w 1.0 ({path.name}): cannot read it: 'utf-8' codec")
