"""``envlock init``: write a new spec from one of the shipped templates."""

from __future__ import annotations

import datetime as dt
import re
from importlib import resources
from pathlib import Path

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
    """Write ``DIRECTORY/NAME.toml``; refuses to overwrite unless ``force``."""
    text = render(name, template)
    path = directory / f"{name}.toml"
    if path.exists() and not force:
        raise UsageError(f"{path} already exists", "pass --force to overwrite it")
    parse(text, path)  # a template that does not validate is a bug; fail before writing
    write_files({path: text})
    return path
