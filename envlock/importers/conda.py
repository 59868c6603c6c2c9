"""conda's environment.yml (https://docs.conda.io/projects/conda/en/stable/user-guide/tasks/
manage-environments.html#create-env-file-manually) and conda-lock.yml (conda-lock's v1 lock
format: ``metadata`` + ``package`` list with ``manager``, ``platform``, ``name``, ``version``).
"""

from __future__ import annotations

import re
from pathlib import Path

from envlock.errors import SpecError
from envlock.importers import Imported
from envlock.importers.text import read_yaml

_PYTHON_SPEC = re.compile(r"^python\s*(?:[=<>!~].*)?$")
_KNOWN_SUBDIRS = ("linux-64", "linux-aarch64", "osx-64", "osx-arm64", "win-64")
# conda's ``defaults`` is not a channel on anaconda.org but a multichannel: the
# ``default_channels`` of conda's configuration, on Linux and macOS pkgs/main and pkgs/r
# (https://docs.conda.io/projects/conda/en/stable/user-guide/configuration/settings.html#default-channels)
DEFAULT_CHANNELS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r")


def _channel(value: str) -> str:
    """A channel as a spec names it: anaconda.org names stay names, URLs stay URLs."""
    m = re.fullmatch(r"https?://conda\.anaconda\.org/([^/]+)/?", value)
    return m.group(1) if m else value.rstrip("/")


def _python_minor(spec: str) -> str | None:
    m = re.search(r"(3\.\d+)", spec)
    return m.group(1) if m else None


def load_environment(path: Path) -> Imported:
    """Read an environment.yml: channels, conda dependencies and the ``pip:`` section.

    Raises:
        SpecError: invalid YAML or wrong shapes, naming the file.
    """
    from envlock.importers.requirements import read_lines

    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: an environment file is a mapping with 'dependencies'")
    found = Imported(kind="environment", source=path)
    if isinstance(data.get("name"), str):
        found.name = data["name"]
    channels = data.get("channels") or []
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise SpecError(f"{path}: 'channels' must be a list of names or URLs")
    found.conda_channels = []
    for c in channels:
        if c == "defaults":
            found.conda_channels += [u for u in DEFAULT_CHANNELS if u not in found.conda_channels]
            listed = ", ".join(DEFAULT_CHANNELS)
            found.warn(f"channel 'defaults': written as conda's default channels {listed}")
        elif c != "nodefaults":
            found.conda_channels.append(_channel(c))
    deps = data.get("dependencies") or []
    if not isinstance(deps, list):
        raise SpecError(f"{path}: 'dependencies' must be a list")
    for dep in deps:
        if isinstance(dep, dict) and set(dep) == {"pip"}:
            pip = dep["pip"]
            if not isinstance(pip, list) or not all(isinstance(p, str) for p in pip):
                raise SpecError(f"{path}: the 'pip:' section must be a list of strings")
            read_lines(found, "\n".join(pip), path, f"{path} pip:", set())
            continue
        if not isinstance(dep, str):
            raise SpecError(f"{path}: dependency {dep!r} is not a string")
        dep = dep.strip()
        if dep == "pip" or dep.startswith(("pip=", "pip ", "pip>", "pip<")):
            continue  # envlock installs pip packages without pip
        if _PYTHON_SPEC.match(dep):
            found.python = _python_minor(dep) or found.python
        found.conda_packages.append(dep)
    if "variables" in data:
        found.warn("'variables' (set them in [image] env)")
    if "prefix" in data:
        found.warn("'prefix' (envlock installs into /opt/env)")
    return found


def load_conda_lock(path: Path) -> Imported:
    """Read a conda-lock.yml: every conda package pinned to its version and build, every pip
    package to its version, for the lock's platforms.

    Raises:
        SpecError: invalid YAML or not conda-lock's v1 shape.
    """
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("package"), list):
        raise SpecError(f"{path}: not a conda-lock file (no 'package' list)")
    found = Imported(kind="conda-lock", source=path, pinned=True)
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    platforms = meta.get("platforms") if isinstance(meta, dict) else None
    if isinstance(platforms, list):
        found.platforms = [p for p in platforms if isinstance(p, str) and p in _KNOWN_SUBDIRS]
        dropped = [str(p) for p in platforms if p not in _KNOWN_SUBDIRS]
        if dropped:
            found.warn(f"platforms envlock does not lock: {', '.join(dropped)}")
    channels = meta.get("channels") if isinstance(meta, dict) else None
    if isinstance(channels, list):
        for channel in channels:
            url = channel.get("url") if isinstance(channel, dict) else channel
            if isinstance(url, str) and _channel(url) not in found.conda_channels:
                found.conda_channels.append(_channel(url))
    conda: dict[str, dict[str, str]] = {}  # name -> platform -> version
    pip: dict[str, dict[str, str]] = {}
    for index, entry in enumerate(data["package"]):
        if not isinstance(entry, dict):
            raise SpecError(f"{path}: package entry {index} is not a mapping")
        name, version, manager = entry.get("name"), entry.get("version"), entry.get("manager")
        if not (isinstance(name, str) and isinstance(version, str) and manager in ("conda", "pip")):
            raise SpecError(f"{path}: package entry {index} lacks name, version or manager")
        raw_platform = entry.get("platform")
        platform = raw_platform if isinstance(raw_platform, str) else "any"
        target = conda if manager == "conda" else pip
        target.setdefault(name, {})[platform] = version
        if manager == "conda" and name == "python":
            found.python = _python_minor(version)
        sha = entry.get("hash", {}).get("sha256") if isinstance(entry.get("hash"), dict) else None
        if manager == "pip" and isinstance(sha, str):
            found.add_hash(name, "sha256:" + sha)
    every = set(found.platforms) or {p for versions in conda.values() for p in versions}
    local: list[str] = []
    for name in sorted(conda):
        if not every <= set(conda[name]):
            local.append(name)  # platform-specific (libgcc, __osx deps...): the solver picks it
            continue
        found.conda_packages.append(f"{name}=={_one_version(found, name, conda[name])}")
    if local:
        shown = ", ".join(local[:8]) + (f" and {len(local) - 8} more" if len(local) > 8 else "")
        found.warn(f"pins of conda packages found on some platforms only: {shown} (the solver picks them)")
    for name in sorted(pip):
        version = _one_version(found, name, pip[name])
        marker = _platform_marker(set(pip[name])) if not every <= set(pip[name]) else ""
        found.packages.append(f"{name}=={version}{marker}")
    return found


def _one_version(found: Imported, name: str, by_platform: dict[str, str]) -> str:
    versions = sorted(set(by_platform.values()))
    if len(versions) > 1:
        found.warn(f"{name} has versions {', '.join(versions)} across platforms; pinned to {versions[-1]}")
    return versions[-1]


_SYS_PLATFORM = {"linux": "linux", "osx": "darwin", "win": "win32"}


def _platform_marker(platforms: set[str]) -> str:
    """A PEP 508 marker selecting the operating systems of ``platforms`` (conda subdirs)."""
    systems = sorted({_SYS_PLATFORM.get(p.split("-")[0], p) for p in platforms})
    return "; " + " or ".join(f"sys_platform == '{s}'" for s in systems)
