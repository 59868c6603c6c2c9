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
from envlock.lock import write_files
from envlock.spec import parse

TEMPLATES = ("pytorch-cuda", "tensorflow", "jax", "cpu")


def render(name: str, template: str, today: dt.date | None = None) -> str:
    if template not in TEMPLATES:
        raise UsageError(f"unknown template {template!r}", f"choose one of: {', '.join(TEMPLATES)}")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", name):
        raise UsageError(f"invalid environment name {name!r}", "use letters, digits, '-' and '_'")
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
