"""conda solving in-process with py-rattler: channels by URL (``file://`` included) or as
directories relative to the spec, virtual packages for the target, one solve per platform,
results as envlock ``Package`` rows.

A channel directory relative to the spec (``./channels/example``) is read through its
absolute ``file://`` URL, and written back to the lock in the spec's form, its packages'
URLs relative to the lock's directory (``./channels/example/noarch/x.tar.bz2``): the lock
is the same in every checkout, at any path (``envlock.fetch.source_url`` reads it back).

rattler is imported only here, and only when a spec has conda packages.  A solve that has
no answer is a ``ResolutionError`` (exit 2) naming the package and the conflict in one
line; a channel that cannot be read is ``ServiceUnavailable`` (exit 3) naming its URL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from envlock.errors import CheckFailed, ResolutionError, ServiceUnavailable
from envlock.lockfile import Package
from envlock.urls import expand, redact, redact_text, strip_userinfo, variables, written

DEFAULT_CHANNEL_HOST = "https://conda.anaconda.org"

# glibc of the C library in bases envlock knows; others get the manylinux2014-era default
GLIBC_BY_BASE = {
    "debian:bookworm": "2.36",
    "debian:trixie": "2.41",
    "debian:bullseye": "2.31",
    "ubuntu:24.04": "2.39",
    "ubuntu:22.04": "2.35",
    "ubuntu:20.04": "2.31",
}
DEFAULT_GLIBC = "2.28"
LINUX_KERNEL = "5.10"  # conda-lock's default for __linux
_ARCHSPEC = {
    "linux-64": "x86_64",
    "linux-aarch64": "aarch64",
    "linux-ppc64le": "ppc64le",
    "osx-64": "x86_64",
    "osx-arm64": "arm64",
    "win-64": "x86_64",
}


@dataclass(frozen=True)
class CondaRequest:
    # in priority order, as written to the lock: URLs with ${VAR} placeholders kept, or
    # directories relative to the spec (./PATH, ../PATH; see envlock.spec.is_channel_path)
    channels: tuple[str, ...]
    specs: tuple[str, ...]  # match specs
    platform: str  # conda subdir
    virtual: tuple[tuple[str, str, str], ...]  # (name, version, build) of virtual packages
    constraints: tuple[str, ...] = ()  # restrict without installing, e.g. "python 3.11.*"
    spec_dir: Path | None = None  # what ./PATH and ../PATH channels are relative to

    def locations(self) -> tuple[str, ...]:
        """The URLs to read, one per channel (``${VAR}`` placeholders kept)."""
        return tuple(channel_location(c, self.spec_dir) for c in self.channels)


@dataclass(frozen=True)
class Solution:
    platform: str
    packages: tuple[Package, ...]
    # pip name -> version of every conda package that is a Python distribution
    python_names: Mapping[str, str]
    # whether the solution holds a Python interpreter (conda's ``python``)
    has_python: bool


def channel_url(channel: str) -> str:
    """A spec's channel in the form the lock keeps (``${VAR}`` placeholders kept): names are
    channels on anaconda.org (a URL); a directory relative to the spec stays relative,
    normalised (``./a/../b/`` -> ``./b``)."""
    import posixpath

    from envlock.spec import is_channel_path

    if is_channel_path(channel):
        normal = posixpath.normpath(channel)  # never starts with "./"
        if normal in (".", ".."):
            return normal + "/"
        return normal if normal.startswith("../") else "./" + normal
    if "://" in channel:
        return channel.rstrip("/")
    return f"{DEFAULT_CHANNEL_HOST}/{channel.strip('/')}"


def channel_location(channel: str, spec_dir: Path | None) -> str:
    """The URL to read a lock's channel from: a directory relative to the spec becomes the
    ``file://`` URL of ``spec_dir / channel`` (symlinks kept, as for find-links); other
    channels are URLs already.  ``spec_dir`` may be relative to the current directory."""
    from envlock.spec import is_channel_path

    if not is_channel_path(channel):
        return channel
    base = Path.cwd() / (spec_dir if spec_dir is not None else Path())
    return Path(os.path.normpath(base / channel)).as_uri()


def _relative_form(url: str, channel: str, located: str) -> str | None:
    """``url`` (a package in the channel read from ``located``) in the channel's written form,
    when the channel is a directory relative to the spec; else ``None``.  Compared without
    percent-encoding: rattler and ``Path.as_uri`` escape different characters."""
    from urllib.parse import unquote

    if channel == located:
        return None
    plain, root = unquote(url), unquote(located).rstrip("/")
    if plain.startswith(root + "/"):
        return channel.rstrip("/") + plain[len(root) :]
    return None


def glibc_for(base: str | None) -> str:
    if base:
        ref = base.split("@", 1)[0]
        for known, version in GLIBC_BY_BASE.items():
            if ref == known or ref.startswith(known + "-"):
                return version
    return DEFAULT_GLIBC


def virtual_packages(platform: str, cuda: str, base: str | None) -> tuple[tuple[str, str, str], ...]:
    """The virtual packages the target provides: what the solver may assume about the machine."""
    found: list[tuple[str, str, str]] = []
    if platform.startswith("linux-"):
        found += [("__unix", "0", "0"), ("__linux", LINUX_KERNEL, "0"), ("__glibc", glibc_for(base), "0")]
        if cuda != "cpu":
            found.append(("__cuda", cuda, "0"))
    elif platform.startswith("osx-"):
        found += [("__unix", "0", "0"), ("__osx", "11.0", "0")]
    elif platform.startswith("win-"):
        found.append(("__win", "0", "0"))
    if platform in _ARCHSPEC:
        found.append(("__archspec", "1", _ARCHSPEC[platform]))
    return tuple(found)


@cache
def version() -> str:
    from rattler.utils.rattler_version import get_rattler_version

    return f"py-rattler {get_rattler_version()}"


def python_dists(name: str, url: str, sha256: str | None) -> tuple[str, ...]:
    """The PyPI distributions a conda package installs.

    Its own ``*.dist-info`` names when the archive is at hand (a ``file://`` channel, or
    the store's copy by sha256), else the name map (``envlock.compat.pypi_names``).
    Raises ``CheckFailed`` when a local channel's file does not have the channel's sha256.
    """
    from envlock.compat import pypi_names

    archive = _archive_at_hand(url, sha256)
    if archive is not None:
        found = pypi_names.dist_names(_listed_paths(archive, url))
        if found:
            return found
    return pypi_names.pypi_names(name)


def _archive_at_hand(url: str, sha256: str | None) -> Path | None:
    """A local copy of the archive whose sha256 is the one the channel gives, or ``None``."""
    from urllib.parse import unquote, urlparse

    from envlock.store import default_home

    if not sha256:
        return None
    candidates = []
    if url.startswith("file://"):
        candidates.append((Path(unquote(urlparse(url).path)), True))
    artifacts = default_home() / "artifacts" / "sha256"  # the layout of envlock.store.Store
    if artifacts.is_dir():
        candidates.append((artifacts / sha256, False))
    for path, local_channel in candidates:
        if not path.is_file():
            continue
        if _sha256(path) == sha256:
            return path
        if local_channel:
            raise CheckFailed(
                f"conda package {redact(url)} does not have the sha256 its channel lists ({sha256})",
                "re-index the channel (rattler-index, conda index) or restore the file",
            )
    return None


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


_INFO_LIMIT = 64 << 20  # bytes of info/paths.json read at most


def _listed_paths(archive: Path, url: str) -> list[str]:
    """The paths a conda archive installs, from ``info/paths.json`` or ``info/files``.

    Reads only the info part (``info-*.tar.zst`` of a ``.conda``; a ``.tar.bz2`` is read as a
    stream up to its info files).  An archive that cannot be read lists nothing (the build
    checks it again before installing anything).
    """
    import json
    import tarfile
    import zipfile

    def from_tar(tar: tarfile.TarFile) -> list[str]:
        files: list[str] | None = None
        for member in tar:
            if member.name in ("info/paths.json", "info/files") and member.isfile():
                if member.size > _INFO_LIMIT:
                    return []
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                data = fh.read()
                if member.name == "info/paths.json":
                    listed = json.loads(data)
                    entries = listed.get("paths") if isinstance(listed, dict) else None
                    if not isinstance(entries, list):
                        return []
                    return [
                        e["_path"] for e in entries if isinstance(e, dict) and isinstance(e.get("_path"), str)
                    ]
                files = data.decode("utf-8", "replace").splitlines()
        return files or []

    try:
        if url.endswith(".conda"):
            import zstandard

            with zipfile.ZipFile(archive) as zf:
                inner = [m for m in zf.namelist() if m.startswith("info-") and m.endswith(".tar.zst")]
                if len(inner) != 1:
                    return []
                with zf.open(inner[0]) as raw:
                    reader = zstandard.ZstdDecompressor().stream_reader(raw)
                    with tarfile.open(fileobj=reader, mode="r|") as tar:
                        return from_tar(tar)
        with tarfile.open(archive, mode="r|bz2") as tar:
            return from_tar(tar)
    except (OSError, EOFError, ValueError, tarfile.TarError, zipfile.BadZipFile, UnicodeDecodeError):
        return []


def solve_all(requests: Sequence[CondaRequest], cache_dir: Path | None = None) -> list[Solution]:
    """Solve every request (one per platform) concurrently; results in request order.

    rattler's repodata cache records each channel's URL as given, credentials included, so
    with a ``${VAR}`` in any channel the solve uses a cache of its own, removed afterwards.
    """
    import asyncio
    import tempfile

    async def main(cache: Path | None) -> list[Solution]:
        from rattler import Gateway

        gateway = Gateway(cache_dir=cache) if cache is not None else Gateway()
        return list(await asyncio.gather(*(_solve(gateway, r) for r in requests)))

    if cache_dir is None and any(variables(c) for r in requests for c in r.channels):
        with tempfile.TemporaryDirectory(prefix="envlock-rattler-") as tmp:
            return asyncio.run(main(Path(tmp)))
    return asyncio.run(main(cache_dir))


async def _solve(gateway: Any, req: CondaRequest) -> Solution:
    import rattler
    from rattler import BuildString, Channel, GenericVirtualPackage, PackageName, Subdir, Version

    virtual = [GenericVirtualPackage(PackageName(n), Version(v), BuildString(b)) for n, v, b in req.virtual]
    channels = [Channel(expand(url, os.environ)) for url in req.locations()]
    try:
        records = await rattler.solve(
            channels,
            list(req.specs),
            gateway=gateway,
            platforms=[Subdir(req.platform), Subdir("noarch")],
            virtual_packages=virtual,
            constraints=list(req.constraints),
            timestamp_policy="allow-missing",
        )
    except Exception as exc:  # rattler's exceptions are generated classes; sort by name
        raise _failure(exc, req) from None
    return _solution(records, req)


def _solution(records: Sequence[Any], req: CondaRequest) -> Solution:
    from envlock.compat import pypi_names

    packages = []
    python_names: dict[str, str] = {}
    has_python = False
    for r in records:
        name = r.name.normalized
        if r.sha256 is None or r.md5 is None:
            raise ResolutionError(
                f"conda package {name} {r.version} from {_written(r.url, req)} "
                "has no sha256 or md5 in its channel",
                "envlock locks hashed files only; re-index the channel (rattler-index, conda index)",
            )
        depends = tuple(r.depends)
        packages.append(
            Package(
                manager="conda",
                name=name,
                version=str(r.version),
                url=_written(r.url, req),
                sha256=r.sha256.hex(),
                size=r.size,
                build=str(r.build),
                channel=_channel_of(r.channel, req),
                subdir=r.subdir,
                md5=r.md5.hex(),
                depends=depends,
            )
        )
        if name == "python":
            has_python = True
        elif r.noarch.python or pypi_names.known(name) or any(_dep_name(d) == "python" for d in depends):
            for dist in python_dists(name, r.url, r.sha256.hex()):
                python_names[dist] = str(r.version)
    packages.sort()
    return Solution(req.platform, tuple(packages), python_names, has_python)


def _written(url: str, req: CondaRequest) -> str:
    """A package URL as the lock keeps it: relative to the lock for a channel directory
    relative to the spec, else without credentials (``envlock.urls.written``)."""
    for channel, located in zip(req.channels, req.locations(), strict=True):
        relative = _relative_form(url, channel, located)
        if relative is not None:
            return relative
    return written(url, req.channels, os.environ)


def _dep_name(dep: str) -> str:
    return re.split(r"[\s=<>!~\[]", dep.strip(), maxsplit=1)[0]


def _channel_of(record_channel: str | None, req: CondaRequest) -> str:
    """The spec's channel (in its written form) that a solved record came from."""
    from urllib.parse import unquote

    got = strip_userinfo((record_channel or "").rstrip("/"))  # rattler shows u:****@
    for channel, url in zip(req.channels, req.locations(), strict=True):
        forms = (strip_userinfo(url.rstrip("/")), strip_userinfo(expand(url, os.environ).rstrip("/")))
        if got in forms or unquote(got) in map(unquote, forms):
            return channel
    return written(got, req.channels, os.environ) or req.channels[0]


def _condense(text: str) -> str:
    lines = [ln.strip(" │├└─\t") for ln in text.splitlines()]
    return re.sub(r"\s+", " ", " ".join(ln for ln in lines if ln)).strip()


def _failure(exc: Exception, req: CondaRequest) -> Exception:
    from urllib.parse import unquote

    kind = type(exc).__name__
    text = redact_text(str(exc), req.channels, os.environ)
    target = f"{req.platform}"
    if kind == "SolverError":
        reason = _condense(re.sub(r"^Cannot solve the request because of:\s*", "", text))
        return ResolutionError(
            f"no conda solution for {target}: {reason}",
            "loosen a pin in [conda].packages, or check the channels and package names",
        )
    if kind in ("GatewayError", "FetchRepoDataError", "InvalidChannelError", "IoError"):
        url = next((c for c in req.channels if c.rstrip("/") in text), None)  # text has placeholders
        for channel, located in zip(req.channels, req.locations(), strict=True):
            root = unquote(located).rstrip("/")
            if url is None and channel != located and root in unquote(text):
                url = f"{channel} ({root.removeprefix('file://')})"  # a directory relative to the spec
        if url is None:
            m = re.search(r"(https?|file)://[^\s'`)]+", text)
            url = m.group(0) if m else ", ".join(req.channels)
        return ServiceUnavailable(
            f"cannot read conda channel {redact(url)}: {_condense(text).split(' Caused by: ')[-1]}",
            "check the channel URL and your network (a file:// channel needs repodata.json per subdir)",
        )
    if kind in ("InvalidMatchSpecError", "InvalidPackageNameError", "InvalidVersionSpecError"):
        return ResolutionError(f"invalid conda package spec: {_condense(text)}", "see [conda].packages")
    return ResolutionError(f"conda solve failed for {target}: {_condense(text)} ({kind})")


# -- pip on top of conda ------------------------------------------------------------------
#
# pip must not reinstall what conda provides.  Each Python distribution in the conda
# solution is offered to the pip resolver as an empty placeholder wheel of the same name
# and version (in a temporary find-links directory) and pinned with a constraint
# ``name==version``: pip's requirements on it are checked by the pip resolver itself,
# against exactly the version conda installs, and a conflict is the resolver's own error.
# Afterwards every package conda provides is dropped from the pip set.


def provided_constraints(python_names: Mapping[str, str], dest: Path) -> tuple[str, ...]:
    """Write placeholder wheels for ``python_names`` into ``dest``; return the constraints."""
    import zipfile

    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    dest.mkdir(parents=True, exist_ok=True)
    constraints = []
    for name, raw in sorted(python_names.items()):
        try:
            version = str(Version(raw))
        except InvalidVersion:
            continue  # not a PEP 440 version: pip cannot ask for it; drop_provided still guards
        dist = canonicalize_name(name).replace("-", "_")
        info = f"{dist}-{version}.dist-info"
        files = {
            f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
            f"{info}/WHEEL": (
                "Wheel-Version: 1.0\nGenerator: envlock\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            ),
        }
        files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in [*files, f"{info}/RECORD"])
        with zipfile.ZipFile(dest / f"{dist}-{version}-py3-none-any.whl", "w") as zf:
            for arcname, text in files.items():
                zf.writestr(zipfile.ZipInfo(arcname, (1980, 1, 1, 0, 0, 0)), text)
        constraints.append(f"{canonicalize_name(name)}=={version}")
    return tuple(constraints)


def drop_provided(
    packages: Sequence[Package], python_names: Mapping[str, str], platform: str
) -> list[Package]:
    """The pip packages without those conda provides; a different version is an error."""
    from packaging.utils import canonicalize_name
    from packaging.version import InvalidVersion, Version

    provided = {canonicalize_name(n): v for n, v in python_names.items()}
    kept = []
    for p in packages:
        conda_version = provided.get(canonicalize_name(p.name))
        if conda_version is None:
            kept.append(p)
            continue
        try:
            same = Version(p.version) == Version(conda_version)
        except InvalidVersion:
            same = p.version == conda_version
        if not same:
            raise ResolutionError(
                f"pip needs {p.name} {p.version} for {platform}, but conda provides {p.name} {conda_version}",
                "pin a compatible version in [conda].packages, or take the package from pip only",
            )
    return kept


# -- conda-lock's own solver (needs a conda, mamba or micromamba binary) ------------------

CONDA_BINARIES = ("micromamba", "mamba", "conda")


def conda_binary() -> str | None:
    import shutil

    for name in CONDA_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    return None


def solve_with_conda_lock(requests: Sequence[CondaRequest], binary: str) -> list[Solution]:
    """Run ``conda-lock lock`` (which solves with ``binary``) and read its lockfile back.

    The conda part only: pip packages are resolved by envlock on top, as with rattler.
    """
    import subprocess
    import sys
    import tempfile

    import yaml  # type: ignore[import-untyped]  # conda-lock's own dependency

    from envlock.compat import pypi_names

    if not requests:
        return []
    platforms = [r.platform for r in requests]
    with tempfile.TemporaryDirectory(prefix="envlock-conda-lock-") as tmp:
        env_file = Path(tmp, "environment.yml")
        env_file.write_text(
            yaml.safe_dump(
                {
                    "channels": list(requests[0].locations()),
                    "dependencies": list(requests[0].specs),
                    "platforms": platforms,
                }
            ),
            "utf-8",
        )
        out = Path(tmp, "conda-lock.yml")
        virtual = Path(tmp, "virtual-packages.yml")
        virtual.write_text(
            yaml.safe_dump(
                {
                    "subdirs": {
                        r.platform: {
                            "packages": {n: (v if n != "__archspec" else f"1 {b}") for n, v, b in r.virtual}
                        }
                        for r in requests
                    }
                }
            ),
            "utf-8",
        )
        cmd = [sys.executable, "-m", "conda_lock", "lock", "--conda", binary, "-f", str(env_file)]
        cmd += ["--lockfile", str(out), "--virtual-package-spec", str(virtual)]
        for platform in platforms:
            cmd += ["-p", platform]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            text = redact_text(proc.stderr or proc.stdout, requests[0].channels, os.environ)
            if re.search(r"(Connection|HTTP|resolve host|timed out)", text):
                raise ServiceUnavailable(
                    f"conda-lock could not reach a channel ({', '.join(map(redact, requests[0].channels))})",
                    "check the channel URLs and your network",
                )
            raise ResolutionError(f"conda-lock found no solution: {_condense(text)[-400:]}")
        data = yaml.safe_load(out.read_text("utf-8"))
    solutions = []
    for req in requests:
        packages = []
        python_names: dict[str, str] = {}
        for item in data.get("package", []):
            if item["platform"] != req.platform or item["manager"] != "conda":
                continue
            raw = str(item["url"])
            subdir = raw.rsplit("/", 2)[-2]
            url = _written(raw, req)
            channel = next(
                (c for c in req.channels if url.startswith(strip_userinfo(c).rstrip("/") + "/")),
                url.rsplit("/", 2)[0],
            )
            depends = tuple(f"{k} {v}".strip() for k, v in sorted(item.get("dependencies", {}).items()))
            packages.append(
                Package(
                    manager="conda",
                    name=item["name"],
                    version=str(item["version"]),
                    url=url,
                    sha256=item["hash"]["sha256"],
                    build=str(item.get("build") or url.rsplit("-", 1)[-1].split(".")[0]),
                    channel=channel,
                    subdir=subdir,
                    md5=item["hash"]["md5"],
                    depends=depends,
                )
            )
            if item["name"] != "python" and (
                subdir == "noarch"
                or "python" in item.get("dependencies", {})
                or pypi_names.known(item["name"])
            ):
                local = raw if raw.startswith("file://") else url  # the archive at hand, if any
                for dist in python_dists(item["name"], local, item["hash"]["sha256"]):
                    python_names[dist] = str(item["version"])
        has_python = any(p.name == "python" for p in packages)
        solutions.append(Solution(req.platform, tuple(sorted(packages)), python_names, has_python))
    return solutions
