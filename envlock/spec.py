"""The spec: what the user wants.  Load a ``specs/NAME.toml``, validate every field.

Every error names the file and the line of the offending key and, where there is
a closed set of choices, lists them.  Validation is pure: it reads the file once
and touches nothing else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envlock.errors import SpecError
from envlock.platforms import PLATFORMS
from envlock.tomlpos import find_line
from envlock.urls import PLACEHOLDER

FRAMEWORKS = ("pytorch", "tensorflow", "jax")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # 64 at most: file names and image tags
_PYTHON = re.compile(r"^3\.(\d{1,2})$")
_CUDA = re.compile(r"^\d{1,2}(\.\d{1,2})?$")
_CHANNEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.\-]+)*$")
# a channel path is written into locks and joined to file:// URLs: nothing a URL would read
# differently (query, fragment, escapes) and nothing invisible
_CHANNEL_PATH_BAD = re.compile(r"[\x00-\x20\x7f\\%?#]")


@dataclass(frozen=True)
class Framework:
    name: str
    version: str
    cuda: str = "cpu"


@dataclass(frozen=True)
class PipSection:
    packages: tuple[str, ...] = ()
    index_url: str | None = None
    indexes: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    exclude_newer: str | None = None
    # distribution name (PEP 503 normalised) -> the sha256 digests allowed for it: hashes an
    # imported requirements file or lock carried, checked against the lock after resolving
    require_hashes: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class CondaSection:
    channels: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageSection:
    base: str | None = None
    system: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = "/workspace"
    bytecode: bool = False  # compile .pyc into the image (PEP 552, by the base's interpreter)
    file_conflicts: str = "warn"  # two packages, one path, different content: "warn" | "error"


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    python: str
    platforms: tuple[str, ...]
    framework: Framework | None = None
    pip: PipSection = field(default_factory=PipSection)
    conda: CondaSection | None = None
    image: ImageSection = field(default_factory=ImageSection)

    def canonical(self) -> dict[str, Any]:
        """The spec's meaning as plain data: comments, layout and key order drop out."""
        data: dict[str, Any] = {
            "name": self.name,
            "python": self.python,
            "platforms": list(self.platforms),
            "pip": {
                "packages": list(self.pip.packages),
                "index-url": self.pip.index_url,
                "indexes": list(self.pip.indexes),
                "find-links": list(self.pip.find_links),
                "no-index": self.pip.no_index,
                "exclude-newer": self.pip.exclude_newer,
            },
            "image": {
                "base": self.image.base,
                "system": list(self.image.system),
                "env": dict(self.image.env),
                "workdir": self.image.workdir,
            },
        }
        if self.image.bytecode:  # only when set: specs without it keep their hash
            data["image"]["bytecode"] = True
        if self.pip.require_hashes:  # likewise
            data["pip"]["require-hashes"] = {name: list(d) for name, d in self.pip.require_hashes}
        if self.image.file_conflicts != "warn":  # likewise
            data["image"]["file-conflicts"] = self.image.file_conflicts
        if self.framework is not None:
            data["framework"] = {
                "name": self.framework.name,
                "version": self.framework.version,
                "cuda": self.framework.cuda,
            }
        if self.conda is not None:
            data["conda"] = {
                "channels": list(self.conda.channels),
                "packages": list(self.conda.packages),
            }
        return data

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.canonical())

    @property
    def stem(self) -> str:
        return self.path.stem


def spec_hash(canonical: Mapping[str, Any]) -> str:
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


class _Checker:
    """Holds the file text so that every complaint can name its line."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def fail(self, keypath: tuple[str, ...], message: str, hint: str | None = None) -> SpecError:
        line = find_line(self.text, keypath) if keypath else None
        where = f"{self.path}:{line}" if line else str(self.path)
        return SpecError(f"{where}: {message}", hint)

    def table(self, data: Any, keypath: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, Any]:
        label = "[" + ".".join(keypath) + "]" if keypath else "the top level"
        if not isinstance(data, dict):
            raise self.fail(keypath, f"{label} must be a table, not {_kind(data)}")
        for key in data:
            if key not in allowed:
                import difflib

                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise self.fail(
                    (*keypath, key),
                    f"unknown key '{key}' in {label}",
                    f"{hint}valid keys: {', '.join(allowed)}",
                )
        return data

    def string(
        self, data: dict[str, Any], keypath: tuple[str, ...], default: str | None = None
    ) -> str | None:
        value = data.get(keypath[-1], default)
        if value is not None and not isinstance(value, str):
            raise self.fail(keypath, f"'{'.'.join(keypath)}' must be a string, not {_kind(value)}")
        return value

    def strings(self, data: dict[str, Any], keypath: tuple[str, ...]) -> tuple[str, ...]:
        value = data.get(keypath[-1], [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(keypath, f"'{'.'.join(keypath)}' must be a list of strings")
        return tuple(value)

    def check_each(
        self, values: tuple[str, ...], keypath: tuple[str, ...], check: Callable[[str], str | None]
    ) -> None:
        for value in values:
            problem = check(value)
            if problem:
                raise self.fail(keypath, f"'{'.'.join(keypath)}': {problem}")


def _kind(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def load(path: str | Path, *, strict: bool = True) -> Spec:
    """Read and validate a spec file; raise ``SpecError`` naming file and line."""
    from envlock.boundary import read_text

    p = Path(path)
    if not p.exists() and not p.is_symlink():
        if p.suffix == ".lock":
            raise _a_lock(p)
        raise SpecError(f"{p}: no such spec file", "create one with: envlock init NAME")

    text = read_text(p, "spec", None, SpecError)  # a directory, unreadable, binary, not UTF-8
    if p.suffix == ".lock" or _LOCK_KEYS.search(text):
        raise _a_lock(p)
    return parse(text, p, strict=strict)


# keys only a lock has at its top level (``envlock.lockfile``)
_LOCK_KEYS = re.compile(r'^(?:env-id|spec-hash)[ \t]*=[ \t]*"', re.M)


def _a_lock(path: Path) -> SpecError:
    spec = path.with_suffix(".toml")
    return SpecError(
        f"{path} is a lock, not a spec (envlock lock writes it from the spec beside it)",
        f"give the spec instead: {spec}",
    )


def parse(text: str, path: Path, *, strict: bool = True) -> Spec:
    """Validate ``text``.  ``strict=False`` skips the PEP 440/508 syntax checks of versions
    and requirements (they need ``packaging``), for callers such as ``verify`` that only
    compare the spec's hash with a lock made from an already validated spec."""
    # A byte order mark (U+FEFF, written by some Windows editors) is not TOML (TOML 1.0 is the
    # UTF-8 text itself; tomllib rejects it) but says nothing about the spec: it is skipped,
    # and the spec hash (of the parsed content) is the same with or without it.
    text = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        where = f"{path}:{m.group(1)}:{m.group(2)}" if m else str(path)
        reason = msg[: m.start()].strip() if m else msg
        raise SpecError(f"{where}: invalid TOML: {reason}") from None
    except (RecursionError, ValueError) as exc:
        from envlock.boundary import toml_failure

        line, why = toml_failure(exc, text)
        where = f"{path}:{line}" if line else str(path)
        raise SpecError(f"{where}: invalid TOML: {why}") from None
    c = _Checker(path, text)
    top = c.table(data, (), ("name", "python", "platforms", "framework", "pip", "conda", "image"))

    if "." in path.stem:
        raise SpecError(
            f"{path}: spec file names may not contain dots besides '.toml'",
            "rename it, e.g. specs/vision.toml (exports are named pylock.NAME.toml)",
        )
    name = c.string(top, ("name",), path.stem) or path.stem
    if not _NAME.match(name):
        raise c.fail(("name",), f"invalid name {name[:80]!r}", "use up to 64 letters, digits, '-' and '_'")

    python = c.string(top, ("python",))
    if python is None:
        raise c.fail((), "missing key 'python'", 'add e.g. python = "3.11"')
    if not _PYTHON.match(python):
        raise c.fail(("python",), f"invalid python {python!r}", 'give a CPython minor version, e.g. "3.11"')

    platforms = c.strings(top, ("platforms",)) if "platforms" in top else ("linux-64",)
    if not platforms:
        raise c.fail(("platforms",), "'platforms' is empty", f"choose from: {', '.join(PLATFORMS)}")
    for plat in platforms:
        if plat not in PLATFORMS:
            raise c.fail(
                ("platforms",),
                f"unknown platform {plat!r}",
                f"valid platforms: {', '.join(PLATFORMS)}",
            )
    if len(set(platforms)) != len(platforms):
        raise c.fail(("platforms",), "'platforms' lists a platform twice")

    framework = _framework(c, top, strict) if "framework" in top else None
    pip = _pip(c, top.get("pip", {}), strict)
    conda = _conda(c, top["conda"]) if "conda" in top else None
    image = _image(c, top.get("image", {}))
    return Spec(
        path=path,
        name=name,
        python=python,
        platforms=platforms,
        framework=framework,
        pip=pip,
        conda=conda,
        image=image,
    )


def _framework(c: _Checker, top: dict[str, Any], strict: bool) -> Framework:
    fw = c.table(top["framework"], ("framework",), ("name", "version", "cuda"))
    name = c.string(fw, ("framework", "name"))
    if name not in FRAMEWORKS:
        raise c.fail(
            ("framework", "name"),
            f"unknown framework {name!r}" if name else "missing 'framework.name'",
            f"valid frameworks: {', '.join(FRAMEWORKS)}",
        )
    version = c.string(fw, ("framework", "version"))
    if not version:
        raise c.fail(("framework",), "missing 'framework.version'", 'e.g. version = "2.5"')
    problem = _version_problem(version) if strict else None
    if problem:
        raise c.fail(
            ("framework", "version"),
            problem,
            'give a version ("2.5", "2.5.1") or a specifier (">=2.4,<2.6")',
        )
    cuda = c.string(fw, ("framework", "cuda"), "cpu") or "cpu"
    if cuda != "cpu" and not _CUDA.match(cuda):
        raise c.fail(
            ("framework", "cuda"),
            f"invalid cuda {cuda!r}",
            'use "cpu" or a CUDA major.minor such as "12.4"',
        )
    return Framework(name=name, version=version, cuda=cuda)


def _version_problem(version: str) -> str | None:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        Version(version)
        return None
    except InvalidVersion:
        pass
    try:
        SpecifierSet(version)
        return None
    except InvalidSpecifier:
        return f"invalid version {version!r}"


def _requirement_problem(value: str) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(value)
    except InvalidRequirement as exc:
        return f"invalid requirement {value!r}: {str(exc).splitlines()[0]}"
    # a direct reference's URL follows the index rule: credentials only as ${VAR} placeholders
    # (a bare user name is fine for ssh, as in git+ssh://git@host/repo)
    userinfo = re.match(r"^[^@;]*@\s*(?:git\+)?([a-z]+)://([^/@\s]*)@", value)
    literal = userinfo is not None and PLACEHOLDER.sub("", userinfo.group(2)).strip(":")
    if userinfo and literal and not (userinfo.group(1) == "ssh" and ":" not in userinfo.group(2)):
        shown = value[: userinfo.start(2)] + "***" + value[userinfo.end(2) :]  # never print the secret
        return f"{shown!r} holds credentials; write them as ${{ENV_VAR}} placeholders"
    return None


def _url_problem(value: str) -> str | None:
    from envlock import urls

    return urls.problem(value)


def is_channel_path(channel: str) -> bool:
    """Whether a ``[conda]`` channel is a directory relative to the spec (``./PATH`` or
    ``../PATH``, as conda and rattler read a channel that starts with a dot) rather than
    a channel name or a URL."""
    return channel.startswith(("./", "../"))


def _channel_problem(value: str) -> str | None:
    """A conda channel: a URL (checked like an index URL), a name on anaconda.org, or a
    directory relative to the spec (``./PATH``, ``../PATH``)."""
    if "://" in value:
        return _url_problem(value)
    if is_channel_path(value):
        if _CHANNEL_PATH_BAD.search(value) or "${" in value:
            return (
                f"channel path {value[:80]!r} may not hold white space, control characters, "
                "'\\', '%', '?', '#' or ${VAR} placeholders"
            )
        return None
    if not _CHANNEL_NAME.match(value):
        from envlock.urls import redact

        return (
            f"{redact(value)!r} is neither a channel name (letters, digits, '.', '_', '-', '/'), "
            "an http(s):// or file:// URL, nor a directory relative to the spec (./PATH, ../PATH)"
        )
    return None


def _date(c: _Checker, value: Any, keypath: tuple[str, ...]) -> str:
    """Normalise exclude-newer to an RFC 3339 UTC timestamp (no local time zones)."""
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        stamp = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    elif isinstance(value, str):
        try:
            stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise c.fail(keypath, f"invalid date {value!r}", 'use "YYYY-MM-DD" or an RFC 3339 time') from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.UTC)
    else:
        raise c.fail(keypath, f"'exclude-newer' must be a date, not {_kind(value)}")
    try:
        utc = stamp.astimezone(dt.UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise c.fail(keypath, f"date {value!s} is out of range", "use a date between 0001 and 9999") from None
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pip(c: _Checker, raw: Any, strict: bool) -> PipSection:
    keys = ("packages", "index-url", "indexes", "find-links", "no-index", "exclude-newer", "require-hashes")
    pip = c.table(raw, ("pip",), keys)
    packages = c.strings(pip, ("pip", "packages"))
    if strict:
        c.check_each(packages, ("pip", "packages"), _requirement_problem)
    index_url = c.string(pip, ("pip", "index-url"))
    if index_url is not None:
        c.check_each((index_url,), ("pip", "index-url"), _url_problem)
    indexes = c.strings(pip, ("pip", "indexes"))
    c.check_each(indexes, ("pip", "indexes"), _url_problem)
    find_links = c.strings(pip, ("pip", "find-links"))
    c.check_each(tuple(link for link in find_links if "://" in link), ("pip", "find-links"), _url_problem)
    no_index = pip.get("no-index", False)
    if not isinstance(no_index, bool):
        raise c.fail(("pip", "no-index"), "'pip.no-index' must be true or false")
    if no_index and not find_links:
        raise c.fail(("pip", "no-index"), "'no-index' without 'find-links' leaves nowhere to find packages")
    exclude_newer = (
        _date(c, pip["exclude-newer"], ("pip", "exclude-newer")) if "exclude-newer" in pip else None
    )
    return PipSection(
        require_hashes=_require_hashes(c, pip.get("require-hashes", {})),
        packages=packages,
        index_url=index_url,
        indexes=indexes,
        find_links=find_links,
        no_index=no_index,
        exclude_newer=exclude_newer,
    )


_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")


def _require_hashes(c: _Checker, raw: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``[pip.require-hashes]``: distribution name -> list of ``sha256:<hex>`` digests."""
    keypath = ("pip", "require-hashes")
    if not isinstance(raw, dict):
        raise c.fail(keypath, "'pip.require-hashes' must be a table of name = [digests]")
    out: dict[str, tuple[str, ...]] = {}
    for name, digests in raw.items():
        if not isinstance(digests, list) or not all(isinstance(d, str) and _SHA256.match(d) for d in digests):
            raise c.fail(
                (*keypath, name),
                f"'pip.require-hashes.{name}' must be a list of sha256:<64 hex> digests",
            )
        out[re.sub(r"[-_.]+", "-", name).lower()] = tuple(sorted(set(digests)))
    return tuple(sorted(out.items()))


def _conda(c: _Checker, raw: Any) -> CondaSection:
    conda = c.table(raw, ("conda",), ("channels", "packages"))
    channels = c.strings(conda, ("conda", "channels"))
    c.check_each(channels, ("conda", "channels"), _channel_problem)
    return CondaSection(
        channels=channels,
        packages=c.strings(conda, ("conda", "packages")),
    )


def _image(c: _Checker, raw: Any) -> ImageSection:
    image = c.table(raw, ("image",), ("base", "system", "env", "workdir", "bytecode", "file-conflicts"))
    base = c.string(image, ("image", "base"))
    system = c.strings(image, ("image", "system"))
    env_raw = image.get("env", {})
    if not isinstance(env_raw, dict) or not all(isinstance(v, str) for v in env_raw.values()):
        raise c.fail(("image", "env"), "'image.env' must be a table of strings")
    from envlock.lockfile import env_problem

    for key, value in env_raw.items():
        problem = env_problem(key, value)
        if problem is not None:
            raise c.fail(
                ("image", "env"),
                problem,
                "a variable name is letters, digits and '_' (e.g. PYTHONUNBUFFERED)",
            )
    workdir = c.string(image, ("image", "workdir"), "/workspace") or "/workspace"
    if not workdir.startswith("/"):
        raise c.fail(("image", "workdir"), f"workdir {workdir!r} must be an absolute path")
    if system and not (base or "").startswith("debian:"):
        raise c.fail(
            ("image", "system"),
            "'system' packages need a debian:SUITE base",
            'set base = "debian:bookworm" or install them in your own base image',
        )
    bytecode = image.get("bytecode", False)
    if not isinstance(bytecode, bool):
        raise c.fail(("image", "bytecode"), "'image.bytecode' must be true or false")
    conflicts = image.get("file-conflicts", "warn")
    if conflicts not in ("warn", "error"):
        raise c.fail(
            ("image", "file-conflicts"),
            f'\'image.file-conflicts\' must be "warn" or "error", not {conflicts!r}',
            '"warn" keeps the documented winner and says so; "error" refuses the environment',
        )
    return ImageSection(
        base=base,
        system=system,
        env=tuple(sorted(env_raw.items())),
        workdir=workdir,
        bytecode=bytecode,
        file_conflicts=conflicts,
    )


def discover(directory: Path) -> list[Path]:
    """Spec files in a directory: ``*.toml`` whose stem has no dot (so not ``pylock.NAME.toml``)."""
    return sorted(p for p in directory.glob("*.toml") if "." not in p.stem)
