"""Fixture sources for sdist, direct-URL and git tests: a tiny PEP 517 build backend shipped as a
wheel (so build requirements come from a local wheelhouse, never from PyPI), sdists that use
it, and git repositories holding such projects."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from support import build_wheel

# A PEP 517 backend (https://peps.python.org/pep-0517/#build-wheel) in one module: the project's
# name and version come from pyproject.toml's [project]; every file under the import package
# goes into a byte-reproducible wheel.  [tool.fx] tag = "cp311-cp311-linux_x86_64" makes a
# platform wheel (as a compiled extension would); noise = true adds random bytes on each build;
# dynamic = [...] are requirements its get_requires_for_build_wheel hook asks for (PEP 517) and
# its build imports.
BACKEND = r"""
import base64, hashlib, os, tomllib, zipfile

def _project():
    with open("pyproject.toml", "rb") as fh:
        data = tomllib.load(fh)
    return data["project"], data.get("tool", {}).get("fx", {})

def _hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

def get_requires_for_build_wheel(config_settings=None):
    return list(_project()[1].get("dynamic", []))

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project, fx = _project()
    for req in fx.get("dynamic", []):  # as setuptools' setup_requires: needed by the build itself
        __import__(req.replace("-", "_"))
    name, version = project["name"], project["version"]
    dist = name.replace("-", "_")
    tag = fx.get("tag", "py3-none-any")
    files = {}
    for root, dirs, names in os.walk(dist):
        dirs.sort()
        for n in sorted(names):
            path = os.path.join(root, n)
            with open(path, "rb") as fh:
                files[path.replace(os.sep, "/")] = fh.read()
    if fx.get("noise"):
        files[dist + "/noise.bin"] = os.urandom(16)
    if fx.get("probe"):
        import json, socket
        host, port = fx["probe"]["connect"].split(":")
        try:
            socket.create_connection((host, int(port)), timeout=3).close()
            net = True
        except OSError:
            net = False
        seen = {
            "network": net,
            "secret": os.path.exists(fx["probe"]["secret"]),
            "env": sorted(os.environ),
            "writable_usr": os.access("/usr", os.W_OK),
            "source_date_epoch": os.environ.get("SOURCE_DATE_EPOCH"),
        }
        files[dist + "/probe.json"] = json.dumps(seen).encode()
    info = f"{dist}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in project.get("dependencies", []))
    files[info + "/METADATA"] = meta.encode()
    purelib = "true" if tag.endswith("-none-any") else "false"
    files[info + "/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: fx-backend\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n".encode()
    record = "".join(f"{p},{_hash(d)},{len(d)}\n" for p, d in files.items()) + f"{info}/RECORD,,\n"
    files[info + "/RECORD"] = record.encode()
    filename = f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zi = zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0))
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    return filename
"""


def backend_wheel(dest: Path) -> Path:
    """``envlock-fx-backend 1.0`` (module ``envlock_fx_backend``) as a wheel in ``dest``."""
    return build_wheel(dest, "envlock-fx-backend", "1.0", modules={"__init__.py": "", "api.py": BACKEND})


def pyproject(
    name: str,
    version: str,
    *,
    tag: str | None = None,
    noise: bool = False,
    deps: tuple[str, ...] = (),
    requires: tuple[str, ...] = ("envlock-fx-backend",),
    probe: tuple[str, str] | None = None,
    dynamic: tuple[str, ...] = (),
) -> str:
    text = (
        f"[build-system]\nrequires = {list(requires)!r}\n".replace("'", '"')
        + 'build-backend = "envlock_fx_backend.api"\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = {list(deps)!r}\n'.replace(
            "'", '"'
        )
    )
    fx = []
    if tag:
        fx.append(f'tag = "{tag}"')
    if noise:
        fx.append("noise = true")
    if probe:
        fx.append(f'probe = {{ connect = "{probe[0]}", secret = "{probe[1]}" }}')
    if dynamic:
        fx.append(f"dynamic = {list(dynamic)!r}".replace("'", '"'))
    if fx:
        text += "[tool.fx]\n" + "\n".join(fx) + "\n"
    return text


def project_files(name: str, version: str, **options: object) -> dict[str, str]:
    dist = name.replace("-", "_")
    return {
        "pyproject.toml": pyproject(name, version, **options),  # type: ignore[arg-type]
        f"{dist}/__init__.py": f"__version__ = {version!r}\n",
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }


def build_sdist(dest: Path, name: str, version: str, **options: object) -> Path:
    """A byte-reproducible ``NAME-VERSION.tar.gz`` (PEP 625 name) using the fixture backend."""
    dist = name.replace("-", "_")
    top = f"{dist}-{version}"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, text in sorted(project_files(name, version, **options).items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    import gzip

    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{top}.tar.gz"
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))
    return path


def git(repo: Path, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
        "PATH": "/usr/bin:/bin",
        "HOME": str(repo.parent),
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def git_project(repo: Path, name: str, version: str, **options: object) -> str:
    """A git repository holding the project, tagged ``v{version}``; returns the commit."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for rel, text in project_files(name, version, **options).items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    git(repo, "tag", f"v{version}")
    return git(repo, "rev-parse", "HEAD")
