"""Add envlock's hook to a ``.pre-commit-config.yaml`` by editing text, not by YAML round-trip.

A YAML load + dump would drop the user's comments and reflow their file.  Instead a
``- repo:`` block is inserted at the end of the ``repos:`` list (or the file is created),
and nothing else changes: every old byte stays where it was, in the same order.  The YAML
is parsed (PyYAML) only to check it: the old file must be a pre-commit config (a mapping),
and the edited text must read back with envlock's hook in ``repos``, else nothing is written.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from envlock import __version__
from envlock.boundary import read_text
from envlock.errors import UsageError

CONFIG = ".pre-commit-config.yaml"
HOOK_REPO = "https://github.com/envlock/envlock"
HOOK_REV = f"v{__version__}"
HOOK_ID = "envlock-verify"

_REPOS = re.compile(r"^repos:[ \t]*(?P<rest>[^#\r\n]*?)[ \t]*(?P<comment>#[^\r\n]*)?(?P<eol>\r?\n|\Z)", re.M)
_PLAIN = re.compile(r"[A-Za-z/~][A-Za-z0-9._/:@+~-]*")


def _scalar(value: str) -> str:
    """A YAML scalar that reads back as this string (a sha like ``1234e5`` would not, bare)."""
    if _PLAIN.fullmatch(value) and ": " not in value and value not in ("true", "false", "null"):
        return value
    return json.dumps(value)  # a JSON string is a valid double-quoted YAML scalar


def has_hook(text: str, hook_id: str = HOOK_ID) -> bool:
    pattern = rf"^[ \t]*-?[ \t]*id:[ \t]*['\"]?{re.escape(hook_id)}['\"]?[ \t]*(#.*)?\r?$"
    return re.search(pattern, text, re.M) is not None


def block(repo: str, rev: str, indent: str, newline: str = "\n") -> str:
    lines = [
        f"{indent}- repo: {_scalar(repo)}",
        f"{indent}  rev: {_scalar(rev)}",
        f"{indent}  hooks:",
        f"{indent}    - id: {HOOK_ID}",
    ]
    return newline.join(lines) + newline


def add_hook(text: str | None, repo: str = HOOK_REPO, rev: str = HOOK_REV) -> str | None:
    """The config with envlock's repo block added, or ``None`` if the hook is already there.

    ``text`` is ``None`` for a new file.  Raises ``UsageError`` where a text edit cannot be
    done safely (a flow-style ``repos: [...]`` list that is not empty).
    """
    if text is None or not text.strip():
        head = text or ""
        return head + "# See https://pre-commit.com for more information\nrepos:\n" + block(repo, rev, "  ")
    if has_hook(text):
        return None
    nl = "\r\n" if "\r\n" in text else "\n"
    if not text.endswith(("\n", "\r")):
        text += nl
    m = _REPOS.search(text)
    if m is None:
        return text + "repos:" + nl + block(repo, rev, "  ", nl)
    rest = m["rest"]
    if rest == "[]":  # `repos: []`: turn the empty flow list into a block list
        comment = f" {m['comment']}" if m["comment"] else ""
        head = text[: m.start("rest")].rstrip(" \t") + comment + nl
        return head + block(repo, rev, "  ", nl) + text[m.end() :]
    if rest:
        raise UsageError(
            f"cannot add the hook to {CONFIG}: 'repos' is not a block list",
            "add this under repos: by hand:\n" + block(repo, rev, "  "),
        )
    lines = text.splitlines(keepends=True)
    first = text.count("\n", 0, m.start()) + 1  # index of the line after `repos:`
    indent: str | None = None
    last = first - 1  # last line that belongs to the list
    for i in range(first, len(lines)):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        lead = lines[i][: len(lines[i]) - len(lines[i].lstrip(" \t"))]
        if indent is None:
            if not stripped.startswith("-"):
                break  # `repos:` with no items, followed by another key
            indent = lead
        elif len(lead) < len(indent) or (len(lead) == len(indent) and not stripped.startswith("-")):
            break  # the next top-level key
        last = i
    new = block(repo, rev, indent if indent is not None else "  ", nl)
    return "".join(lines[: last + 1]) + new + "".join(lines[last + 1 :])


def _load(text: str, path: Path) -> Any:
    """``text`` parsed as YAML (PyYAML's safe loader), or a ``UsageError`` naming the line."""
    import yaml  # type: ignore[import-untyped]

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or type(exc).__name__
        raise UsageError(
            f"{path}{where}: not valid YAML ({reason})", "fix the file (pre-commit cannot read it either)"
        ) from None
    except RecursionError:
        raise UsageError(f"{path}: not valid YAML (nested too deeply)") from None


def _check_old(config: Any, path: Path, repo: str, rev: str) -> None:
    """Refuse a file that is not a pre-commit config mapping.

    A top-level list is the format of pre-commit before 1.0, which pre-commit 1.0 deprecated
    and today's pre-commit refuses ("Expected a Config map but got a list"; pre-commit's
    ``clientlib.py`` and ``commands/migrate_config.py``): its own ``migrate-config`` turns it
    into ``repos:``, after which the hook can be added.  Editing the list in place would give
    a file that no current pre-commit reads.
    """
    if config is None or isinstance(config, dict):
        return
    if isinstance(config, list):
        raise UsageError(
            f"{path}: the old pre-commit format (a top-level list of repos, before pre-commit 1.0)",
            "run `pre-commit migrate-config` to convert it to `repos:`, then envlock init --pre-commit again",
        )
    raise UsageError(
        f"{path}: not a pre-commit config (a YAML {type(config).__name__}, not a mapping)",
        "a pre-commit config is a mapping with a `repos:` list; this block goes under it:\n"
        + block(repo, rev, "  "),
    )


def _check_new(text: str, path: Path, repo: str, rev: str) -> None:
    """The edited text must read back as a config whose ``repos`` list holds the new block."""
    config = _load(text, path)
    repos = config.get("repos") if isinstance(config, dict) else None
    wanted = {"repo": repo, "rev": rev, "hooks": [{"id": HOOK_ID}]}
    if not isinstance(repos, list) or wanted not in repos:
        raise UsageError(
            f"cannot add the hook to {path}: its layout is not one envlock can edit safely",
            "add this under repos: by hand:\n" + block(repo, rev, "  "),
        )


def plan(root: Path, repo: str = HOOK_REPO, rev: str = HOOK_REV) -> tuple[Path, str | None]:
    """``ROOT/.pre-commit-config.yaml`` and its new text (``None``: the hook is there).

    Nothing is written here; the caller writes the text (atomically) when all is checked.

    Raises:
        UsageError: (exit 2) the config is a directory, a special file, unreadable, not UTF-8,
            not valid YAML, in pre-commit's pre-1.0 list format, or not a mapping; or the
            edit would not read back as a config holding the hook.
    """
    path = root / CONFIG
    text: str | None = None
    if path.exists() or path.is_symlink():
        text = read_text(path, "pre-commit config")
        _check_old(_load(text, path), path, repo, rev)
    new = add_hook(text, repo, rev)
    if new is not None:
        _check_new(new, path, repo, rev)
    return path, new


def repo_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding ``.git``, else ``start``."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return start
