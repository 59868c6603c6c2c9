"""Tiny local conda channels for tests, benchmarks and the committed example channel
(``scripts/make-example-channel.py``): real ``.tar.bz2`` and ``.conda`` archives
(``info/index.json``, ``info/paths.json``) and a ``repodata.json`` per subdir.  The bytes
are a function of the package description only (fixed mtimes, sorted members)."""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# A long build prefix, as conda-build uses, so that /opt/env fits in binary files.
PLACEHOLDER = "/opt/conda-bld/envlock_1700000000000/_h_env_placehold_placehold_placehold_placehold"
SUBDIRS = ("linux-64", "osx-arm64", "noarch")


@dataclass
class CondaPkg:
    name: str
    version: str
    subdir: str = "linux-64"
    build: str = "0"
    depends: tuple[str, ...] = ()
    files: dict[str, bytes] = field(default_factory=dict)
    text_prefix: tuple[str, ...] = ()  # files holding PLACEHOLDER, replaced as text
    binary_prefix: tuple[str, ...] = ()  # files holding PLACEHOLDER, replaced as binary
    fmt: str = "tar.bz2"  # or "conda"
    noarch: str | None = None  # "python" or "generic"
    executable: tuple[str, ...] = ()
    license: str = "MIT"  # an SPDX expression, for info/index.json and repodata.json
    # hostile packages: raw members after the files, (name, kind, data or link target) with
    # kind file | dir | sym | lnk | fifo | chr; info_members replace generated info files;
    # info_override replaces their content; truncate cuts the archive to that many bytes
    members: tuple[tuple[str, str, bytes], ...] = ()
    info_members: tuple[tuple[str, str, bytes], ...] = ()
    info_override: dict[str, bytes] = field(default_factory=dict)
    truncate: int | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.{self.fmt}"


_KINDS = {
    "dir": tarfile.DIRTYPE,
    "sym": tarfile.SYMTYPE,
    "lnk": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chr": tarfile.CHRTYPE,
}


def _tar(
    files: dict[str, bytes],
    executable: tuple[str, ...] = (),
    members: tuple[tuple[str, str, bytes], ...] = (),
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = 1700000000
            info.mode = 0o755 if name in executable else 0o644
            tar.addfile(info, io.BytesIO(files[name]))
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = _KINDS[kind]
            if kind in ("sym", "lnk"):
                info.linkname = data.decode("utf-8", "surrogateescape")
            tar.addfile(info)
    return buf.getvalue()


def _index(pkg: CondaPkg) -> dict[str, object]:
    index: dict[str, object] = {
        "name": pkg.name,
        "version": pkg.version,
        "build": pkg.build,
        "build_number": 0,
        "depends": list(pkg.depends),
        "subdir": pkg.subdir,
        "license": pkg.license,
    }
    if pkg.noarch:
        index["noarch"] = pkg.noarch
    return index


def _info(pkg: CondaPkg) -> dict[str, bytes]:
    paths = []
    for path in sorted(pkg.files):
        data = pkg.files[path]
        entry: dict[str, object] = {
            "_path": path,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        if path in pkg.text_prefix or path in pkg.binary_prefix:
            entry["prefix_placeholder"] = PLACEHOLDER
            entry["file_mode"] = "binary" if path in pkg.binary_prefix else "text"
        paths.append(entry)
    info = {
        "info/index.json": json.dumps(_index(pkg), indent=2).encode(),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2).encode(),
        "info/files": "".join(p + "\n" for p in sorted(pkg.files)).encode(),
    }
    has_prefix = [
        f"{PLACEHOLDER} {'binary' if p in pkg.binary_prefix else 'text'} {p}\n"
        for p in sorted({*pkg.text_prefix, *pkg.binary_prefix})
    ]
    if has_prefix:
        info["info/has_prefix"] = "".join(has_prefix).encode()
    if pkg.noarch == "python":
        info["info/link.json"] = json.dumps(
            {"noarch": {"type": "python"}, "package_metadata_version": 1}
        ).encode()
    info.update(pkg.info_override)
    for name, _, _ in pkg.info_members:
        info.pop(name, None)
    return info


def build_package(pkg: CondaPkg) -> bytes:
    data = _build_package(pkg)
    return data if pkg.truncate is None else data[: pkg.truncate]


def _build_package(pkg: CondaPkg) -> bytes:
    info = _info(pkg)
    if pkg.fmt == "tar.bz2":
        return bz2.compress(_tar({**info, **pkg.files}, pkg.executable, pkg.info_members + pkg.members), 9)
    import zstandard

    stem = pkg.filename.removesuffix(".conda")
    cctx = zstandard.ZstdCompressor(level=3)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        entries = {
            "metadata.json": json.dumps({"conda_pkg_format_version": 2}).encode(),
            f"pkg-{stem}.tar.zst": cctx.compress(_tar(pkg.files, pkg.executable, pkg.members)),
            f"info-{stem}.tar.zst": cctx.compress(_tar(info, (), pkg.info_members)),
        }
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def write_channel(root: Path, packages: list[CondaPkg], subdirs: tuple[str, ...] = SUBDIRS) -> str:
    """Write the channel under ``root``; returns its file:// URL."""
    repodata: dict[str, dict[str, dict[str, object]]] = {
        s: {"packages": {}, "packages.conda": {}} for s in subdirs
    }
    for pkg in packages:
        data = build_package(pkg)
        directory = root / pkg.subdir
        directory.mkdir(parents=True, exist_ok=True)
        (directory / pkg.filename).write_bytes(data)
        record = {
            **_index(pkg),
            "md5": hashlib.md5(data).hexdigest(),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }
        key = "packages.conda" if pkg.fmt == "conda" else "packages"
        repodata.setdefault(pkg.subdir, {"packages": {}, "packages.conda": {}})[key][pkg.filename] = record
    for subdir, content in repodata.items():
        directory = root / subdir
        directory.mkdir(parents=True, exist_ok=True)
        body = {"info": {"subdir": subdir}, "repodata_version": 1, **content}
        (directory / "repodata.json").write_text(json.dumps(body, indent=1, sort_keys=True))
    return root.absolute().as_uri()


def fixture_packages() -> list[CondaPkg]:
    """The test world: a -> b -> c (c is noarch generic), a text-prefix tool, a binary-prefix
    library, a .conda package, a noarch python package envlock-fx-beta, per-platform builds."""
    out: list[CondaPkg] = []
    for subdir in ("linux-64", "osx-arm64"):
        out += [
            CondaPkg(
                "fx-a",
                "1.0",
                subdir,
                depends=("fx-b >=1.0",),
                files={"share/fx-a/README": b"fx-a\n"},
            ),
            CondaPkg(
                "fx-b",
                "1.2",
                subdir,
                depends=("fx-c",),
                files={"lib/libfxb.so": b"\x7fELF\0fake\0" + PLACEHOLDER.encode() + b"/lib/plugins\0tail\0"},
                binary_prefix=("lib/libfxb.so",),
                fmt="conda",
            ),
            CondaPkg(
                "fx-tool",
                "0.3",
                subdir,
                files={
                    "bin/fx-tool": f"#!/bin/sh\n# prefix: {PLACEHOLDER}\necho fx-tool from {PLACEHOLDER}\n".encode(),
                    "etc/fx-tool.conf": f"root = {PLACEHOLDER}/share\n".encode(),
                },
                text_prefix=("bin/fx-tool", "etc/fx-tool.conf"),
                executable=("bin/fx-tool",),
            ),
            CondaPkg("fx-old", "1.0", subdir, files={"share/fx-old/v": b"1.0\n"}),
            CondaPkg("fx-old", "2.0", subdir, files={"share/fx-old/v": b"2.0\n"}),
            CondaPkg("fx-needs-old", "1.0", subdir, depends=("fx-old <2",)),
        ]
    out += [
        CondaPkg("fx-c", "2.0", "noarch", noarch="generic", files={"share/fx-c/data.txt": b"c\n"}),
        CondaPkg("fx-c", "1.0", "noarch", noarch="generic", files={"share/fx-c/data.txt": b"c1\n"}),
        CondaPkg(
            "envlock-fx-beta",
            "1.0",
            "noarch",
            noarch="python",
            files={"site-packages/envlock_fx_beta/__init__.py": b"__version__ = '1.0'  # from conda\n"},
        ),
    ]
    return out
