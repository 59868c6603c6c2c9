"""``envlock init``: write a new spec from one of the shipped templates."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from envlock import precommit
from envlock.boundary import check_output
from envlock.errors import UsageError
from envlock.lockfile import write_files
from envlock.spec import parse

TEMPLATES = ("pytorch-cuda", "tensorflow", "jax", "cpu")


def check_env_name(name: str) -> None:
    """An environment name: a letter or digit, then up to 63 letters, digits, '-' or '_' (it
    names files beside the spec and the image's tag).

    Raises:
        UsageError: (exit 2) for anything else.
    """
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", name):
        raise UsageError(
            f"invalid environment name {name[:80]!r}", "use up to 64 letters, digits, '-' and '_'"
        )


def render(name: str, template: str, today: dt.date | None = None) -> str:
    if template not in TEMPLATES:
        raise UsageError(f"unknown template {template!r}", f"choose one of: {', '.join(TEMPLATES)}")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", name):
        raise UsageError(
            f"invalid environment name {name[:80]!r}", "use up to 64 letters, digits, '-' and '_'"
        )
    text = resources.files("envlock").joinpath("templates", f"{template}.toml").read_text("utf-8")
    day = (today or dt.datetime.now(dt.UTC).date()).isoformat()
    return text.replace("{name}", name).replace("{today}", day)


def init(name: str, template: str, directory: Path, *, force: bool = False) -> Path:
    """Write ``DIRECTORY/NAME.toml``; refuses to overwrite unless ``force``.

    ``DIRECTORY`` is created when missing (with its parents).

    Raises:
        UsageError: unknown template or name, the spec exists (without ``force``), the spec
            path is a directory, or ``DIRECTORY`` (or a parent) is a file.
    """
    text = render(name, template)
    path = directory / f"{name}.toml"
    check_output(path, "NAME or --dir", make_parents=True)  # --dir may be new; never a file
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", "pass --force to overwrite it")
    parse(text, path)  # a template that does not validate is a bug; fail before writing
    write_files({path: text})
    return path


@dataclass(frozen=True)
class Setup:
    spec: Path | None  # the spec written, if a name was given
    config: Path | None  # .pre-commit-config.yaml, if asked for
    config_changed: bool = False  # False: the hook was already there


def setup(
    name: str | None,
    template: str,
    directory: Path,
    *,
    force: bool = False,
    pre_commit: bool = False,
    hook_repo: str | None = None,
    hook_rev: str | None = None,
) -> Setup:
    """``envlock init``: write the spec and/or add envlock's hook to the repository's
    ``.pre-commit-config.yaml`` (repo and rev default to this release of envlock).
    Everything is checked before anything is written."""
    if name is None and not pre_commit:
        raise UsageError("nothing to do: give a NAME", "e.g. envlock init vision, or --pre-commit")
    config, text = (None, None)
    if pre_commit:
        config, text = precommit.plan(
            precommit.repo_root(directory),
            hook_repo or precommit.HOOK_REPO,
            hook_rev or precommit.HOOK_REV,
        )
    spec = None
    if name is not None:
        spec = init(name, template, directory, force=force)
    if config is not None and text is not None:
        write_files({config: text})
    return Setup(spec, config, text is not None)


_BASE_FOR_PYTHON = {"3.9": "debian:bullseye", "3.11": "debian:bookworm", "3.13": "debian:trixie"}


@dataclass(frozen=True)
class Imported:
    """What ``envlock init --from`` wrote: the spec, the source's format, and one line for
    each thing that could not be carried over."""

    spec: Path
    kind: str
    warnings: tuple[str, ...]


def import_spec(
    name: str | None,
    source: Path,
    directory: Path,
    *,
    extras: tuple[str, ...] = (),
    force: bool = False,
    exclude_newer: str | None = "now",
) -> Imported:
    """``envlock init [NAME] --from FILE``: write ``DIRECTORY/NAME.toml`` from an existing
    environment file (see :mod:`envlock.importers` for the formats).  NAME defaults to the
    source's own name (file stem, or the directory of an MLflow model / pyproject).
    ``exclude_newer`` is written into ``[pip]``: ``"now"`` (the current UTC second), a date or
    time as the spec takes it, or None for none.

    The spec is validated before it is written; nothing is written on any error.

    Raises:
        SpecError: unreadable or malformed source (exit 2).
        UsageError: the spec exists (without ``force``) or the name is invalid.
    """
    from envlock import importers

    found = importers.load(source, extras=extras)
    if name is None and found.name:
        name = re.sub(r"[^A-Za-z0-9_-]+", "-", found.name).strip("-_") or None
    if name is None:
        stem = source.resolve().name if source.is_dir() else source.stem
        if stem.lower() in ("requirements", "pyproject", "environment", "uv", "pylock", "cog", "mlmodel"):
            stem = source.resolve().parent.name
        name = re.sub(r"[^A-Za-z0-9_-]+", "-", stem.split(".")[0]).strip("-_") or "env"
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", name):
        raise UsageError(
            f"invalid environment name {name[:80]!r}", "use up to 64 letters, digits, '-' and '_'"
        )
    if exclude_newer == "now":
        exclude_newer = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = importers.render(name, found, exclude_newer)
    python = found.python or "3.11"
    base = _BASE_FOR_PYTHON.get(python)
    if base is None:
        text = text.replace(
            'base = "debian:bookworm"\n',
            f"# no Debian suite ships Python {python}: name a base image that has it\n"
            'base = "debian:bookworm"\n',
        )
        found.warn(f"Python {python}: set [image] base to an image that ships it (bookworm has 3.11)")
    else:
        text = text.replace('base = "debian:bookworm"\n', f'base = "{base}"\n')
    path = directory / f"{name}.toml"
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", "pass --force to overwrite it")
    parse(text, path)
    write_files({path: text})
    return Imported(path, found.kind, tuple(found.warnings))
