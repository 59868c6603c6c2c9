"""base: root filesystems re-packed deterministically; interpreters found; OCI layouts read verified."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from envlock.errors import CheckFailed, SpecError
from envlock.image.base import (
    _dpkg_packages,
    _from_layout,
    _normalise,
    default_base,
    find_interpreter,
    load,
    pick_platform,
)
from envlock.image.layer import MTIME
from envlock.image.model import CONFIG, LAYER_GZIP, LAYER_TAR, MANIFEST, Layer, digest_of
from envlock.image.venv import Interpreter
from envlock.store import Store, canonical_json

# -- a hand-made root filesystem ------------------------------------------------------------

SHARED = b"#!/bin/sh\necho shared\n"


def member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_700_000_000,
    linkname: str = "",
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, mtime
    info.uname, info.gname = "root", "mail" if gid == 8 else "root"
    info.linkname = linkname
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    if pax:
        info.pax_headers = dict(pax)
    return info, data


ROOTFS = [
    member("./", tarfile.DIRTYPE, mode=0o755),
    member("./etc/", tarfile.DIRTYPE, mode=0o755, mtime=1),
    member("./etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n", mtime=123),
    member("./dev/", tarfile.DIRTYPE, mode=0o755),
    member("./dev/null", tarfile.CHRTYPE, mode=0o666),
    member("./run/", tarfile.DIRTYPE, mode=0o755),
    member("./run/initctl", tarfile.FIFOTYPE, mode=0o600),
    member("./usr/", tarfile.DIRTYPE, mode=0o755),
    member("./usr/bin/", tarfile.DIRTYPE, mode=0o755, mtime=999_999),
    member("./usr/bin/zzz", data=SHARED, mode=0o755, mtime=5),
    member("./usr/bin/aaa", tarfile.LNKTYPE, mode=0o755, linkname="./usr/bin/zzz"),
    member("./usr/bin/su", data=b"ELF", mode=0o4755, uid=0),
    member("./usr/bin/sh", tarfile.SYMTYPE, mode=0o777, linkname="zzz"),
    member(
        "./usr/bin/ping",
        data=b"ELF ping",
        mode=0o755,
        pax={"SCHILY.xattr.security.capability": "\x01\x00\x00\x02"},
    ),
    member("./var/", tarfile.DIRTYPE, mode=0o755),
    member("./var/mail/", tarfile.DIRTYPE, mode=0o2775, gid=8),
    member("./var/mail/root", data=b"", mode=0o660, gid=8, mtime=2_000_000_000),
    member("./tmp/", tarfile.DIRTYPE, mode=0o1777),
]

EXPECTED_NAMES = [
    "dev",
    "etc",
    "etc/passwd",
    "run",
    "tmp",
    "usr",
    "usr/bin",
    "usr/bin/aaa",
    "usr/bin/ping",
    "usr/bin/sh",
    "usr/bin/su",
    "usr/bin/zzz",
    "var",
    "var/mail",
    "var/mail/root",
]


def write_rootfs(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def normalised(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], name: str = "raw") -> bytes:
    raw = write_rootfs(tmp_path / f"{name}.tar", members)
    out = io.BytesIO()
    _normalise(raw, out)
    return out.getvalue()


def read(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: m for m in tar.getmembers()}


def content(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        fh = tar.extractfile(name)
        assert fh is not None
        return fh.read()


def test_normalise_sorts_names_and_drops_dot_slash_devices_and_fifos(tmp_path: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(normalised(tmp_path, ROOTFS))) as tar:
        names = [n for n in tar.getnames() if n != "."]

    assert names == EXPECTED_NAMES


def test_normalise_drops_the_root_entry(tmp_path: Path) -> None:
    assert "." not in read(normalised(tmp_path, ROOTFS))


def test_normalise_turns_a_hard_link_into_a_file_with_the_target_content(tmp_path: Path) -> None:
    data = normalised(tmp_path, ROOTFS)
    link = read(data)["usr/bin/aaa"]

    assert link.isreg()
    assert link.size == len(SHARED)
    assert content(data, "usr/bin/aaa") == SHARED
    assert content(data, "usr/bin/zzz") == SHARED


def test_normalise_keeps_modes_owners_and_symlinks(tmp_path: Path) -> None:
    out = read(normalised(tmp_path, ROOTFS))

    assert (out["usr/bin/su"].mode, out["usr/bin/su"].uid) == (0o4755, 0)
    assert (out["var/mail/root"].mode, out["var/mail/root"].gid) == (0o660, 8)
    assert (out["var/mail"].mode, out["var/mail"].gid) == (0o2775, 8)
    assert out["tmp"].mode == 0o1777
    assert out["etc/passwd"].mode == 0o644
    assert out["usr/bin/sh"].issym()
    assert out["usr/bin/sh"].linkname == "zzz"


def test_normalise_fixes_times_and_clears_names_and_xattrs(tmp_path: Path) -> None:
    data = normalised(tmp_path, ROOTFS)

    for m in read(data).values():
        assert (m.mtime, m.uname, m.gname) == (MTIME, "", ""), m.name
        assert not any(k.startswith("SCHILY.xattr") for k in m.pax_headers), m.name
    assert b"security.capability" not in data


def test_normalise_is_independent_of_member_order(tmp_path: Path) -> None:
    forward = normalised(tmp_path, ROOTFS, "forward")
    backward = normalised(tmp_path, list(reversed(ROOTFS)), "backward")

    assert forward == backward


def test_normalise_is_independent_of_input_mtimes(tmp_path: Path) -> None:
    shifted = [
        member(i.name, i.type, d, mode=i.mode, uid=i.uid, gid=i.gid, mtime=42, linkname=i.linkname)
        for i, d in ROOTFS
    ]

    assert normalised(tmp_path, ROOTFS, "a") == normalised(tmp_path, shifted, "b")


def test_normalise_output_is_pax(tmp_path: Path) -> None:
    assert normalised(tmp_path, ROOTFS)[257:265] == b"ustar\x0000"


def test_dpkg_packages_lists_name_equals_version_sorted(tmp_path: Path) -> None:
    status = (
        b"Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\n\n"
        b"Package: bash\nVersion: 5.2.15-2+b2\nDescription: shell\n\n"
    )
    raw = write_rootfs(tmp_path / "raw.tar", [member("./var/lib/dpkg/status", data=status)])

    assert _dpkg_packages(raw) == ["bash=5.2.15-2+b2", "zlib1g=1:1.2.13.dfsg-1"]


def test_dpkg_packages_of_a_rootfs_without_dpkg_is_empty(tmp_path: Path) -> None:
    assert _dpkg_packages(write_rootfs(tmp_path / "raw.tar", ROOTFS)) == []


# -- default_base ------------------------------------------------------------------------------


def test_default_base_for_python_3_11_is_bookworm() -> None:
    assert default_base("3.11") == "debian:bookworm"


def test_default_base_for_a_python_no_debian_ships_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"Python 3\.12") as exc:
        default_base("3.12")
    assert exc.value.hint is not None
    assert "oci:PATH" in exc.value.hint


# -- find_interpreter --------------------------------------------------------------------------


def layer_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out.getvalue()


def stored(store: Store, members: list[tuple[tarfile.TarInfo, bytes]], *, gz: bool = False) -> Layer:
    data = layer_tar(members)
    diff_id = digest_of(data)
    if gz:
        data = gzip.compress(data, mtime=0)
    digest = store.put_blob(data)
    return Layer(digest, diff_id, len(data), LAYER_GZIP if gz else LAYER_TAR)


def fake_manifest(label: str) -> str:
    return digest_of(label.encode())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def test_find_interpreter_finds_usr_bin_python(store: Store) -> None:
    layers = [stored(store, [member("usr/bin/python3.11", data=b"ELF", mode=0o755)])]

    assert find_interpreter(store, fake_manifest("a"), layers) == Interpreter("/usr/bin/python3.11", "3.11")


def test_find_interpreter_accepts_dot_slash_names_and_symlinks(store: Store) -> None:
    layers = [stored(store, [member("./usr/bin/python3.13", tarfile.SYMTYPE, linkname="python3")])]

    assert find_interpreter(store, fake_manifest("b"), layers) == Interpreter("/usr/bin/python3.13", "3.13")


def test_find_interpreter_prefers_usr_local_bin(store: Store) -> None:
    layers = [
        stored(store, [member("usr/bin/python3.11", data=b"ELF", mode=0o755)]),
        stored(store, [member("usr/local/bin/python3.12", data=b"ELF", mode=0o755)]),
    ]

    assert find_interpreter(store, fake_manifest("c"), layers) == Interpreter(
        "/usr/local/bin/python3.12", "3.12"
    )


def test_find_interpreter_without_python_is_none(store: Store) -> None:
    layers = [
        stored(
            store,
            [
                member("usr/bin/python3", tarfile.SYMTYPE, linkname="python3.11"),
                member("usr/bin/python3.11-config", data=b"sh"),
                member("usr/lib/python3.11/", tarfile.DIRTYPE, mode=0o755),
            ],
        )
    ]

    assert find_interpreter(store, fake_manifest("d"), layers) is None


def test_find_interpreter_reads_gzip_layers(store: Store) -> None:
    layers = [stored(store, [member("usr/local/bin/python3.11", data=b"ELF")], gz=True)]

    assert find_interpreter(store, fake_manifest("e"), layers) == Interpreter(
        "/usr/local/bin/python3.11", "3.11"
    )


def test_find_interpreter_honours_whiteouts_in_later_layers(store: Store) -> None:
    layers = [
        stored(
            store, [member("usr/bin/python3.11", data=b"ELF"), member("usr/local/bin/python3.12", data=b"x")]
        ),
        stored(store, [member("usr/local/bin/.wh.python3.12")]),
    ]

    assert find_interpreter(store, fake_manifest("f"), layers) == Interpreter("/usr/bin/python3.11", "3.11")


def test_find_interpreter_caches_its_answer_per_manifest(store: Store) -> None:
    layer = stored(store, [member("usr/bin/python3.11", data=b"ELF")])
    first = find_interpreter(store, fake_manifest("g"), [layer])
    store.blob_path(layer.digest).unlink()

    assert find_interpreter(store, fake_manifest("g"), [layer]) == first


# -- oci:PATH layouts ---------------------------------------------------------------------------


def put(root: Path, data: bytes) -> str:
    digest = digest_of(data)
    path = root / "blobs" / "sha256" / digest.split(":")[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def add_image(root: Path, python: str, label: str) -> tuple[str, int, str, str]:
    """Write one image into the layout at ``root``; return (manifest, size, config, layer) digests."""
    tar = layer_tar([member(f"usr/bin/python{python}", data=label.encode(), mode=0o755)])
    layer = put(root, tar)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer]},
    }
    config_bytes = canonical_json(config)
    config_digest = put(root, config_bytes)
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": LAYER_TAR, "digest": layer, "size": len(tar)}],
        }
    )
    return put(root, manifest), len(manifest), config_digest, layer


def write_index(root: Path, entries: list[tuple[str, int, str]]) -> None:
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    manifests = [
        {
            "mediaType": MANIFEST,
            "digest": digest,
            "size": size,
            "annotations": {"org.opencontainers.image.ref.name": name},
        }
        for digest, size, name in entries
    ]
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": manifests}))


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    root = tmp_path / "layout"
    root.mkdir()
    return root


def test_from_layout_copies_a_single_image_into_the_store(store: Store, layout: Path) -> None:
    manifest, size, config, layer = add_image(layout, "3.11", "one")
    write_index(layout, [(manifest, size, "one")])

    assert _from_layout(store, str(layout)) == manifest
    for digest in (manifest, config, layer):
        assert store.has_blob(digest)
    assert store.fsck() == []


def test_a_layout_base_loads_with_its_interpreter(store: Store, layout: Path) -> None:
    manifest, size, _, layer = add_image(layout, "3.11", "one")
    write_index(layout, [(manifest, size, "one")])

    base = load(store, f"oci:{layout}", _from_layout(store, str(layout)), "3.11")

    assert base.digest == manifest
    assert base.interpreter == Interpreter("/usr/bin/python3.11", "3.11")
    assert [la.diff_id for la in base.layers] == [layer]


def test_a_layout_base_with_another_python_is_a_check_failure(store: Store, layout: Path) -> None:
    manifest, size, _, _ = add_image(layout, "3.11", "one")
    write_index(layout, [(manifest, size, "one")])

    with pytest.raises(CheckFailed, match=r"Python 3\.11 .* asks for 3\.13"):
        load(store, f"oci:{layout}", _from_layout(store, str(layout)), "3.13")


def test_from_layout_rejects_a_corrupted_layer(store: Store, layout: Path) -> None:
    manifest, size, _, layer = add_image(layout, "3.11", "one")
    write_index(layout, [(manifest, size, "one")])
    path = layout / "blobs" / "sha256" / layer.split(":")[1]
    path.write_bytes(path.read_bytes().replace(b"one", b"two"))

    with pytest.raises(CheckFailed, match="mismatch"):
        _from_layout(store, str(layout))

    assert not store.has_blob(layer)
    assert not store.has_blob(manifest)
    assert list(store.tmp.iterdir()) == []


def test_from_layout_rejects_a_corrupted_config(store: Store, layout: Path) -> None:
    manifest, size, config, _ = add_image(layout, "3.11", "one")
    write_index(layout, [(manifest, size, "one")])
    (layout / "blobs" / "sha256" / config.split(":")[1]).write_bytes(b"{}")

    with pytest.raises(CheckFailed, match="does not match its digest"):
        _from_layout(store, str(layout))


def test_from_layout_reports_a_missing_blob(store: Store, layout: Path) -> None:
    manifest, size, config, _ = add_image(layout, "3.11", "one")
    write_index(layout, [(manifest, size, "one")])
    (layout / "blobs" / "sha256" / config.split(":")[1]).unlink()

    with pytest.raises(CheckFailed, match=f"missing blob {config}"):
        _from_layout(store, str(layout))


def test_from_layout_picks_the_pinned_image(store: Store, layout: Path) -> None:
    first, size1, _, _ = add_image(layout, "3.11", "one")
    second, size2, _, layer2 = add_image(layout, "3.13", "two")
    write_index(layout, [(first, size1, "one"), (second, size2, "two")])

    assert _from_layout(store, f"{layout}@{second}") == second
    assert store.has_blob(layer2)
    assert not store.has_blob(first)


def test_from_layout_with_two_images_and_no_pin_lists_the_refs(store: Store, layout: Path) -> None:
    first, size1, _, _ = add_image(layout, "3.11", "one")
    second, size2, _, _ = add_image(layout, "3.13", "two")
    write_index(layout, [(first, size1, "first-ref"), (second, size2, "second-ref")])

    with pytest.raises(SpecError, match="holds 2 images; pin one") as exc:
        _from_layout(store, str(layout))

    assert exc.value.hint is not None
    assert "first-ref" in exc.value.hint
    assert "second-ref" in exc.value.hint
    assert list(store.blobs.iterdir()) == []


def test_from_layout_of_a_directory_without_index_is_a_spec_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not an OCI image layout"):
        _from_layout(store, str(tmp_path))


def test_from_layout_follows_an_image_index_to_linux_amd64(store: Store, layout: Path) -> None:
    manifest, size, _, _ = add_image(layout, "3.11", "one")
    nested = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": MANIFEST,
                    "digest": digest_of(b"arm"),
                    "size": 1,
                    "platform": {"os": "linux", "architecture": "arm64"},
                },
                {
                    "mediaType": MANIFEST,
                    "digest": manifest,
                    "size": size,
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
            ],
        }
    )
    write_index(layout, [(put(layout, nested), len(nested), "multi")])

    assert _from_layout(store, str(layout)) == manifest


def test_pick_platform_without_linux_amd64_is_a_check_failure() -> None:
    with pytest.raises(CheckFailed, match="linux/amd64"):
        pick_platform([{"digest": digest_of(b"x"), "platform": {"os": "linux", "architecture": "arm64"}}])


def test_from_layout_reports_a_missing_layer_blob(store: Store, layout: Path) -> None:
    manifest, size, _, layer = add_image(layout, "3.11", "one")
    write_index(layout, [(manifest, size, "one")])
    (layout / "blobs" / "sha256" / layer.split(":")[1]).unlink()

    with pytest.raises(CheckFailed, match=f"missing blob {layer}"):
        _from_layout(store, str(layout))
