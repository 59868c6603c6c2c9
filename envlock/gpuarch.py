"""GPU architectures: compute capabilities, what a CUDA build carries, and whether a GPU can run it.

A CUDA binary carries machine code (SASS, ``sm_XY``) for some compute capabilities and may
carry PTX (``compute_XY``) that the driver compiles on first use.  The rules, from NVIDIA's
CUDA C++ Programming Guide, section "Binary Compatibility" / "PTX Compatibility"
(https://docs.nvidia.com/cuda/cuda-c-programming-guide/index.html#binary-compatibility):

- SASS for ``X.y`` runs on a GPU of capability ``X.z`` with ``z >= y`` (same major only);
  architecture-specific SASS (``sm_90a``, ``sm_100a``) runs only on exactly that capability.
- PTX for ``X.y`` can be JIT-compiled for any GPU of capability ``>= X.y``.

The matrix part (``envlock/compat/archs.toml``) says which architectures a framework's wheels
carry per release and CUDA variant, each row with its source.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache

from envlock.errors import UsageError

_ARCH = re.compile(r"^(?:(sm|compute)_?)?(\d{1,2})\.?(\d)([af]?)$")


@dataclass(frozen=True, order=True)
class Capability:
    """A compute capability such as 9.0 (Hopper) or 12.0 (consumer Blackwell)."""

    major: int
    minor: int
    suffix: str = ""  # "a": architecture-specific features, runs on this capability only

    @property
    def sm(self) -> str:
        return f"sm_{self.major}{self.minor}{self.suffix}"

    @property
    def compute(self) -> str:
        return f"compute_{self.major}{self.minor}{self.suffix}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


def parse_capability(text: str) -> Capability:
    """``"sm_90"``, ``"sm_90a"``, ``"compute_120"``, ``"9.0"`` or ``"90"`` -> ``Capability``.

    Raises ``UsageError`` naming the value for anything else.
    """
    m = _ARCH.match(text.strip().lower())
    if not m:
        raise UsageError(
            f"{text!r} is not a GPU architecture",
            "write it as sm_XY or X.Y, e.g. sm_90 (H100), sm_120 (RTX 50xx), 8.6",
        )
    return Capability(int(m.group(2)), int(m.group(3)), m.group(4))


def from_number(value: int) -> Capability:
    """The fatbin / NVML encoding ``10 * major + minor`` (e.g. 90, 120) -> ``Capability``."""
    return Capability(value // 10, value % 10)


@dataclass(frozen=True)
class BuildArchs:
    """What a CUDA build carries: SASS and PTX capabilities, and where that fact comes from."""

    sass: tuple[Capability, ...]
    ptx: tuple[Capability, ...]
    source: str

    def names(self) -> list[str]:
        return [c.sm for c in self.sass] + [c.compute for c in self.ptx]


@dataclass(frozen=True)
class Fit:
    """How a GPU runs a build: ``"sass"`` natively, ``"ptx"`` JIT-compiled on first use, or ``"none"``."""

    how: str
    arch: Capability | None


def fit(build: BuildArchs, gpu: Capability) -> Fit:
    """Whether ``gpu`` runs ``build`` (rules in the module docstring); prefers SASS over PTX."""
    native = [
        c
        for c in build.sass
        if (c.major == gpu.major and c.minor <= gpu.minor and not c.suffix)
        or (c.suffix and (c.major, c.minor) == (gpu.major, gpu.minor))
    ]
    if native:
        return Fit("sass", max(native))
    jit = [c for c in build.ptx if (c.major, c.minor) <= (gpu.major, gpu.minor)]
    if jit:
        return Fit("ptx", max(jit))
    return Fit("none", None)


@dataclass(frozen=True)
class ArchRow:
    framework: str
    releases: tuple[str, ...]
    cuda: str
    archs: BuildArchs


@cache
def matrix() -> tuple[ArchRow, ...]:
    """Every row of ``envlock/compat/archs.toml``."""
    from importlib import resources

    text = resources.files("envlock.compat").joinpath("archs.toml").read_text("utf-8")
    data = tomllib.loads(text)
    rows = []
    for framework, entries in data.items():
        if not isinstance(entries, list):
            continue
        for e in entries:
            archs = BuildArchs(
                tuple(parse_capability(a) for a in e["sass"]),
                tuple(parse_capability(a) for a in e.get("ptx", [])),
                e["source"],
            )
            rows.append(ArchRow(framework, tuple(e["releases"]), e["cuda"], archs))
    return tuple(rows)


def matrix_archs(framework: str, release: str, cuda: str) -> BuildArchs | None:
    """The matrix's architectures for a framework release series (``"2.8"``) and CUDA variant."""
    for row in matrix():
        if row.framework == framework and release in row.releases and row.cuda == cuda:
            return row.archs
    return None


def series_key(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text))


def builds_with(framework: str, gpu: Capability) -> list[tuple[str, str, str]]:
    """Matrix (release, CUDA variant, how) that run ``gpu``, oldest release first; how is sass|ptx."""
    found: list[tuple[str, str, str]] = []
    for row in matrix():
        if row.framework != framework:
            continue
        how = fit(row.archs, gpu).how
        if how != "none":
            found.extend((release, row.cuda, how) for release in row.releases)
    return sorted(found, key=lambda r: (r[2] != "sass", series_key(r[0]), series_key(r[1])))
