"""Presentation of an :class:`envlock.diff.EnvDiff` for people: rows, colours, a rich table.

Shared by ``envlock diff`` and the TUI's diff screen so both show the same thing.
Rich is imported only inside :func:`renderables`; ``rows`` and the style table are
plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from envlock.diff import EnvDiff, PlatformDiff

if TYPE_CHECKING:
    from rich.console import RenderableType

# Colour per kind of change (rich / Textual style strings).
KIND_STYLE = {
    "added": "green",
    "removed": "red",
    "major": "bold red",
    "minor": "yellow",
    "patch": "green",
    "local": "cyan",
    "build": "cyan",
    "rebuilt": "magenta",
    "other": "blue",
    "python": "bold magenta",
    "cuda": "bold magenta",
    "base": "bold magenta",
}


@dataclass(frozen=True)
class Row:
    platform: str
    label: str  # package (conda packages as conda:NAME), or python / cuda / base
    old: str
    new: str
    kind: str  # a package kind, or "python" / "cuda" / "base"
    framework: bool = False


def _version(version: str | None, build: str | None) -> str:
    if version is None:
        return ""
    return f"{version} {build}" if build else version


def platform_rows(plat: PlatformDiff) -> list[Row]:
    rows = [
        Row(plat.name, key, value.old, value.new, key)
        for key, value in (("python", plat.python), ("cuda", plat.cuda), ("base", plat.base))
        if value is not None
    ]
    for c in plat.changes:
        kind = c.kind + (" ↓" if c.downgrade else "")
        old = _version(c.old_version, c.old_build if c.manager == "conda" else None)
        new = _version(c.new_version, c.new_build if c.manager == "conda" else None)
        rows.append(Row(plat.name, c.label, old, new, kind, c.framework))
    return rows


def rows(diff: EnvDiff) -> list[Row]:
    out: list[Row] = []
    for plat in diff.platforms:
        out.extend(platform_rows(plat))
    return out


def style(kind: str) -> str:
    return KIND_STYLE.get(kind.split(" ", 1)[0], "")


def renderables(diff: EnvDiff) -> list[RenderableType]:
    """A header, the summary, and one table per platform that changed; fits 80 columns."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out: list[RenderableType] = []
    header = Text()
    header.append(diff.a.label, "bold")
    header.append("  ->  ")
    header.append(diff.b.label, "bold")
    out.append(header)
    out.append(Text(diff.summary, "bold" if not diff.identical else "dim"))
    several = len(diff.platforms) > 1
    for plat in diff.platforms:
        if not plat.changed:
            continue
        if plat.status != "both":
            where = diff.b.label if plat.status == "added" else diff.a.label
            out.append(Text(f"\n{plat.name}: only in {where} ({len(plat.changes)} packages)", "bold"))
            continue
        table = Table(
            box=box.SIMPLE_HEAD,
            title=f"{plat.name} ({plat.unchanged} unchanged)" if several else None,
            title_justify="left",
            pad_edge=False,
            expand=False,
        )
        table.add_column("package", overflow="fold", ratio=3)
        table.add_column("old", overflow="fold", ratio=3)
        table.add_column("new", overflow="fold", ratio=3)
        table.add_column("change", no_wrap=True)
        for row in platform_rows(plat):
            name = Text(row.label, "bold" if row.framework or row.kind in KIND_STYLE else "")
            table.add_row(name, row.old, row.new, Text(row.kind, style(row.kind)))
        out.append(table)
    return out


def plain(diff: EnvDiff) -> str:
    """The same content as plain text, for when rich is not installed."""
    from envlock.output import table

    lines = [f"{diff.a.label}  ->  {diff.b.label}", diff.summary]
    for plat in diff.platforms:
        if not plat.changed:
            continue
        if plat.status != "both":
            where = diff.b.label if plat.status == "added" else diff.a.label
            lines += ["", f"{plat.name}: only in {where} ({len(plat.changes)} packages)"]
            continue
        body = [(r.label, r.old, r.new, r.kind) for r in platform_rows(plat)]
        lines += ["", plat.name, table(("package", "old", "new", "change"), body)]
    return "\n".join(lines)
