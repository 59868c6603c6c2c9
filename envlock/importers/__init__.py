"""``envlock init --from FILE``: turn the environment files users already have into a spec.

Each supported format has one module that reads it into an :class:`Imported` (pure data:
what the environment asks for, plus the warnings for whatever could not be carried over);
:mod:`envlock.importers.framework` then lifts torch / tensorflow / jax into ``[framework]``
so the compat matrix checks them, and :func:`render` writes the spec text.

Formats (``kind`` names): ``requirements`` (requirements.txt / .in, pip-compile and uv
output), ``pyproject`` (PEP 621), ``environment`` (conda environment.yml), ``conda-lock``
(conda-lock.yml v1), ``pylock`` (PEP 751), ``uv-lock`` (uv.lock), ``cog`` (cog.yaml),
``mlflow`` (an MLflow model directory holding ``MLmodel``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from envlock.errors import SpecError

KINDS = ("requirements", "pyproject", "environment", "conda-lock", "pylock", "uv-lock", "cog", "mlflow")


@dataclass
class Imported:
    """What an environment file asks for, in envlock's terms.

    ``packages`` are PEP 508 requirements for pip; ``conda_packages`` conda match specs;
    ``hashes`` maps a normalised distribution name to the ``sha256:`` digests the source
    allowed (checked against the lock after locking); ``warnings`` says what was not carried
    over.  ``pinned`` is true when the source was itself a lock (every package ``==``).
    """

    kind: str
    source: Path
    name: str | None = None  # the environment's own name in the source, if it has one
    python: str | None = None
    platforms: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    index_url: str | None = None
    indexes: list[str] = field(default_factory=list)
    find_links: list[str] = field(default_factory=list)
    no_index: bool = False
    conda_channels: list[str] = field(default_factory=list)
    conda_packages: list[str] = field(default_factory=list)
    system: list[str] = field(default_factory=list)
    framework: tuple[str, str, str] | None = None  # (name, version, cuda)
    cuda_hint: str | None = None  # a CUDA version the source names outside the requirements (cog)
    hashes: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    pinned: bool = False
    # ${VAR} names given to literal credentials in this import -> sha256 of the secret
    # (envlock.importers.scrub; two secrets for one host get two names, the secret is not kept)
    placeholders: dict[str, str] = field(default_factory=dict, repr=False)

    def add_hash(self, name: str, digest: str) -> None:
        """Allow ``digest`` (``sha256:<hex>``) for the distribution ``name`` (normalised here)."""
        from envlock.importers.text import canonical_name

        allowed = self.hashes.setdefault(canonical_name(name), [])
        if digest.lower() not in allowed:
            allowed.append(digest.lower())

    def warn(self, message: str) -> None:
        """Add a warning (printed, and written as a comment into the spec): URL user info and
        token query values in it are hidden (``envlock.urls.redact_text``)."""
        from envlock.urls import redact_text

        message = redact_text(message)
        if message not in self.warnings:
            self.warnings.append(message)


def detect(path: Path) -> str:
    """The format of ``path``, from its name (and, for a directory, an ``MLmodel`` file in it).

    Raises:
        SpecError: (exit 2) a missing path or a file name envlock does not know.
    """
    if path.is_dir():
        if (path / "MLmodel").is_file():
            return "mlflow"
        raise SpecError(f"{path}: a directory without an MLmodel file", f"import one of: {_NAMES}")
    if not path.exists():
        raise SpecError(f"{path}: no such file")
    name = path.name.lower()
    if name == "mlmodel":
        return "mlflow"
    if name == "pyproject.toml":
        return "pyproject"
    if name == "uv.lock":
        return "uv-lock"
    if name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml")):
        return "pylock"
    if name in ("cog.yaml", "cog.yml"):
        return "cog"
    if name.endswith(("conda-lock.yml", "conda-lock.yaml")):
        return "conda-lock"
    if name.endswith((".yml", ".yaml")):
        return "environment"
    if name.endswith((".txt", ".in")):
        return "requirements"
    raise SpecError(f"{path}: envlock does not know this kind of file", f"import one of: {_NAMES}")


_NAMES = (
    "requirements.txt/.in, pyproject.toml, environment.yml, conda-lock.yml, pylock.toml, uv.lock, "
    "cog.yaml, an MLflow model directory"
)


def load(path: Path, *, kind: str | None = None, extras: tuple[str, ...] = ()) -> Imported:
    """Read ``path`` (format ``kind``, detected when None) into an :class:`Imported`,
    framework detected.  ``extras`` selects pyproject optional-dependency groups.

    Raises:
        SpecError: (exit 2) unreadable or malformed input, naming the file.
    """
    from envlock.importers import framework
    from envlock.importers.scrub import scrub

    kind = kind or detect(path)
    if kind not in KINDS:
        raise SpecError(f"unknown import format {kind!r}", f"choose one of: {', '.join(KINDS)}")
    if kind == "requirements":
        from envlock.importers.requirements import load_file

        found = load_file(path)
    elif kind == "pyproject":
        from envlock.importers.pyproject import load_pyproject

        found = load_pyproject(path, extras)
    elif kind == "environment":
        from envlock.importers.conda import load_environment

        found = load_environment(path)
    elif kind == "conda-lock":
        from envlock.importers.conda import load_conda_lock

        found = load_conda_lock(path)
    elif kind == "pylock":
        from envlock.importers.locks import load_pylock

        found = load_pylock(path)
    elif kind == "uv-lock":
        from envlock.importers.locks import load_uv_lock

        found = load_uv_lock(path)
    elif kind == "cog":
        from envlock.importers.cog import load_cog

        found = load_cog(path)
    else:
        from envlock.importers.mlflow import load_mlflow

        found = load_mlflow(path)
    scrub(found)
    framework.lift(found)
    return found


def render(name: str, found: Imported, exclude_newer: str | None) -> str:
    """The spec text for ``found``: commented with its source, canonical key order.

    ``exclude_newer`` (an RFC 3339 time, or None for none) is written so that a re-lock of a
    spec with ranges gives the same answer.
    """
    from envlock.tomlwrite import quote

    def strings(values: list[str]) -> str:
        if not values:
            return "[]"
        if len(values) <= 3 and sum(len(v) for v in values) < 60:
            return "[" + ", ".join(quote(v) for v in values) + "]"
        return "[\n" + "".join(f"    {quote(v)},\n" for v in values) + "]"

    lines = [
        f"# envlock spec imported from {found.source.name} ({found.kind}) by `envlock init --from`.",
        f"# Lock it with `envlock lock specs/{name}.toml`.",
    ]
    for warning in found.warnings:
        lines.append(f"# import: {warning}")
    lines += [f"name = {quote(name)}", f"python = {quote(found.python or '3.11')}"]
    lines.append(f"platforms = {strings(found.platforms or ['linux-64'])}")
    if found.framework:
        fw_name, fw_version, cuda = found.framework
        lines += ["", "[framework]", f"name = {quote(fw_name)}", f"version = {quote(fw_version)}"]
        lines.append(f"cuda = {quote(cuda)}")
    if found.conda_channels or found.conda_packages:
        lines += ["", "[conda]", f"channels = {strings(found.conda_channels)}"]
        lines.append(f"packages = {strings(found.conda_packages)}")
    lines += ["", "[pip]", f"packages = {strings(found.packages)}"]
    if found.index_url:
        lines.append(f"index-url = {quote(found.index_url)}")
    if found.indexes:
        lines.append(f"indexes = {strings(found.indexes)}")
    if found.find_links:
        lines.append(f"find-links = {strings(found.find_links)}")
    if found.no_index:
        lines.append("no-index = true")
    if exclude_newer:
        lines.append(f"exclude-newer = {quote(exclude_newer)}")
    if found.hashes:
        lines.append("")
        lines.append("[pip.require-hashes]  # from the source file; checked against the lock")
        for dist in sorted(found.hashes):
            key = dist if re.fullmatch(r"[A-Za-z0-9_-]+", dist) else quote(dist)
            lines.append(f"{key} = {strings(sorted(found.hashes[dist]))}")
    lines += ["", "[image]", 'base = "debian:bookworm"']
    if found.system:
        lines.append(f"system = {strings(found.system)}")
    lines.append('env = { PYTHONUNBUFFERED = "1" }')
    return "\n".join(lines) + "\n"
