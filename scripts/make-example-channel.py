"""Make the example conda channel ``specs/channels/example`` from pinned PyPI wheels.

    python scripts/make-example-channel.py            # (re)write specs/channels/example
    python scripts/make-example-channel.py --check    # rebuild in a temp dir, compare bytes
    python scripts/make-example-channel.py --wheels DIR   # read the wheels from DIR (offline)

Why: no conda channel (conda-forge, anaconda, prefix.dev) is reachable from the machines
that build and test envlock, only PyPI, so ``specs/conda.toml`` reads a small channel
committed beside it (see ``specs/channels/example/README.md``).

What: each package is a real, pure-Python wheel from PyPI, pinned below by version, URL
and sha256 (checked before anything is written), repackaged as a ``noarch: python`` conda
package the way conda-build lays one out: the wheel's files under ``site-packages/``, its
``*.dist-info`` with ``INSTALLER`` = ``conda`` (PEP 376, and the RECORD line for it),
``info/index.json``, ``info/paths.json`` (sha256 and size of every file),
``info/link.json`` (``noarch: python``) and ``info/about.json`` naming the wheel it came
from.  ``depends`` lists the wheel's run-time requirements (checked against its
``Requires-Dist`` for Linux and macOS, Python 3.11), but not ``python``: this channel has
no interpreter, the image's comes from its base.  Archives are ``.tar.bz2``: bzip2's
output has not changed in decades, while zstd's (``.conda``) may change with the library
version, and this channel must come out the same, byte for byte, on any machine.

The package writer is the one the tests use (``tests/integration/conda_channel.py``):
fixed mtimes, sorted members, no owner names.  Output is written to a temporary directory
beside the target and swapped in whole, so an interrupted run leaves the old channel.
Exit 0 done (or ``--check``: same bytes), 1 a hash or content check failed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from conda_channel import CondaPkg, write_channel  # noqa: E402

TARGET = ROOT / "specs" / "channels" / "example"
SUBDIRS = ("noarch", "linux-64", "osx-arm64")  # the platforms specs/conda.toml locks
BUILD = "py_0"  # conda's build string for a noarch python package, build number 0
FILES = "https://files.pythonhosted.org/packages"


@dataclass(frozen=True)
class Wheel:
    """A pinned PyPI wheel and the conda package made from it."""

    name: str  # the PyPI and conda name
    version: str
    url: str
    sha256: str  # of the wheel, as PyPI's JSON API lists it
    license: str  # SPDX: PyPI's license expression, or the wheel's LICENSE where PyPI says only BSD
    depends: tuple[str, ...] = ()  # conda match specs


# dask's pure-Python dependencies: what a data-preparation environment built around
# dask needs from conda, dask itself coming from PyPI on top (specs/conda.toml).  Versions
# published before 2026-11-01, the spec's exclude-newer.
WHEELS = (
    Wheel(
        "toolz",
        "1.2.0",
        f"{FILES}/db/17/4c8beb6c8c4176c6bf143bfd7e1e4dd6719b00ced90738c7ac471b71c1df/toolz-1.2.0-py3-none-any.whl",
        "890f820b1cb8152785aaf9386d8707770110809035800985ca65cb24ce1120ef",
        "BSD-3-Clause",
    ),
    Wheel(
        "cloudpickle",
        "3.1.2",
        f"{FILES}/88/39/799be3f2f0f38cc727ee3b4f1445fe6d5e4133064ec2e4115069418a5bb6/cloudpickle-3.1.2-py3-none-any.whl",
        "9acb47f6afd73f60dc1df93bb801b472f05ff42fa6c84167d25cb206be1fbf4a",
        "BSD-3-Clause",
    ),
    Wheel(
        "locket",
        "1.0.0",
        f"{FILES}/db/bc/83e112abc66cd466c6b83f99118035867cecd41802f8d044638aa78a106e/locket-1.0.0-py2.py3-none-any.whl",
        "b6c819a722f7b6bd955b80781788e4a66a55628b858d347536b7e81325a3a5e3",
        "BSD-2-Clause",
    ),
    Wheel(
        "partd",
        "1.4.2",
        f"{FILES}/71/e7/40fb618334dcdf7c5a316c0e7343c5cd82d3d866edc100d98e29bc945ecd/partd-1.4.2-py3-none-any.whl",
        "978e4ac767ec4ba5b86c6eaa52e5a2a3bc748a2ca839e8cc798f1cc6ce6efb0f",
        "BSD-3-Clause",
        depends=("locket", "toolz"),
    ),
)


class Refused(Exception):
    """A wheel that is not what the table pins, or not pure Python."""


def fetch(wheel: Wheel, wheels: Path | None) -> bytes:
    """The wheel's bytes, from ``wheels`` (a directory) or PyPI; its sha256 checked."""
    filename = wheel.url.rsplit("/", 1)[1]
    if wheels is not None:
        data = (wheels / filename).read_bytes()
    else:
        request = urllib.request.Request(wheel.url, headers={"User-Agent": "envlock-example-channel"})
        with urllib.request.urlopen(request, timeout=60) as response:
            data = response.read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != wheel.sha256:
        raise Refused(f"{filename}: sha256 {actual}, pinned {wheel.sha256}")
    return data


def _requirements(metadata: str) -> set[str]:
    """The names a wheel needs at run time on Linux/macOS with Python 3.11 (no extras)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    needed = set()
    for line in HeaderParser().parsestr(metadata).get_all("Requires-Dist") or []:
        req = Requirement(line)
        for system in ("Linux", "Darwin"):
            env = {"python_version": "3.11", "python_full_version": "3.11.2", "platform_system": system}
            env |= {"sys_platform": system.lower(), "extra": ""}
            if req.marker is None or req.marker.evaluate(env):
                needed.add(canonicalize_name(req.name))
    return needed


def package(wheel: Wheel, data: bytes) -> CondaPkg:
    """The ``noarch: python`` conda package holding the wheel's files.

    Raises:
        Refused: the wheel is not pure Python (``Root-Is-Purelib``, a ``*-none-any`` tag,
            no ``.data`` directory), names another project or version, or needs a package
            that ``depends`` does not list.
    """
    from packaging.utils import canonicalize_name

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    info = f"{wheel.name.replace('-', '_')}-{wheel.version}.dist-info"
    needed = (f"{info}/WHEEL", f"{info}/METADATA", f"{info}/RECORD")
    if any(n not in files for n in needed):
        raise Refused(f"{wheel.name}: no {info}/WHEEL, METADATA or RECORD")
    tags = HeaderParser().parsestr(files[f"{info}/WHEEL"].decode())
    if tags.get("Root-Is-Purelib", "").strip().lower() != "true" or not all(
        t.endswith("-none-any") for t in tags.get_all("Tag") or ["?"]
    ):
        raise Refused(f"{wheel.name}: not a pure-Python wheel")
    if any(name.split("/", 1)[0].endswith(".data") for name in files):
        raise Refused(f"{wheel.name}: has a .data directory (scripts or headers)")
    metadata = files[f"{info}/METADATA"].decode()
    head = HeaderParser().parsestr(metadata)
    if canonicalize_name(head["Name"]) != canonicalize_name(wheel.name) or head["Version"] != wheel.version:
        raise Refused(f"{wheel.name}: METADATA says {head['Name']} {head['Version']}")
    listed = {canonicalize_name(d.split()[0]) for d in wheel.depends}
    missing = sorted(_requirements(metadata) - listed)
    if missing:
        raise Refused(f"{wheel.name}: needs {', '.join(missing)}, which depends does not list")
    installer = b"conda\n"
    files[f"{info}/INSTALLER"] = installer
    digest = hashlib.sha256(installer).digest()
    line = (
        f"{info}/INSTALLER,sha256={base64.urlsafe_b64encode(digest).rstrip(b'=').decode()},{len(installer)}\n"
    )
    files[f"{info}/RECORD"] = files[f"{info}/RECORD"] + line.encode()
    about = {
        "home": f"https://pypi.org/project/{wheel.name}/{wheel.version}/",
        "license": wheel.license,
        "summary": head.get("Summary", ""),
        "extra": {"made_from": wheel.url, "sha256": wheel.sha256, "by": "scripts/make-example-channel.py"},
    }
    return CondaPkg(
        wheel.name,
        wheel.version,
        "noarch",
        build=BUILD,
        depends=wheel.depends,
        files={f"site-packages/{name}": content for name, content in files.items()},
        noarch="python",
        license=wheel.license,
        info_override={"info/about.json": json.dumps(about, indent=2, sort_keys=True).encode()},
    )


def make(dest: Path, wheels: Path | None) -> None:
    """Write the channel (archives, a repodata.json per subdir, README kept) into ``dest``."""
    packages = [package(w, fetch(w, wheels)) for w in WHEELS]
    write_channel(dest, packages, SUBDIRS)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=TARGET, help="channel directory (default: %(default)s)")
    parser.add_argument("--wheels", type=Path, help="read the pinned wheels from this directory")
    parser.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare bytes")
    args = parser.parse_args(argv)
    out: Path = args.out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".example-channel-", dir=out.parent) as tmp:
        fresh = Path(tmp, "channel")
        try:
            make(fresh, args.wheels)
        except (Refused, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        readme = out / "README.md"
        if readme.is_file():
            shutil.copyfile(readme, fresh / "README.md")
        if args.check:
            ours, theirs = _tree(fresh), _tree(out) if out.is_dir() else {}
            differ = sorted(n for n in ours.keys() | theirs.keys() if ours.get(n) != theirs.get(n))
            if differ:
                print(f"error: {out} differs from a fresh build: {', '.join(differ)}", file=sys.stderr)
                return 1
            print(f"{out}: the same bytes as a fresh build from the pinned wheels")
            return 0
        old = Path(tmp, "old")
        if out.exists():
            out.replace(old)
        fresh.replace(out)
    for name, data in _tree(out).items():
        print(f"{hashlib.sha256(data).hexdigest()}  {len(data):>7}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
