"""The compat matrix: which framework releases exist with which CUDA variants and Pythons.

The facts live in TOML files beside this module, one row per release, each with
its source.  This module is the only reader; it turns a spec's ``[framework]``
table into a resolution plan (requirements, variant index) or an error that lists
the valid choices.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from envlock.errors import CheckFailed, CompatError
from envlock.platforms import PLATFORMS

if TYPE_CHECKING:  # envlock doctor reads the CUDA table without the spec module's import cost
    from envlock.spec import Framework


@dataclass(frozen=True)
class Release:
    version: str  # minor series, e.g. "2.5"
    latest: str
    python: tuple[str, ...]
    cuda: tuple[str, ...]
    cpu: bool
    pypi_default: str | None
    cudnn: str | None
    source: str


@dataclass(frozen=True)
class FrameworkInfo:
    name: str
    pip_name: str
    releases: tuple[Release, ...]
    variant_index: str | None
    cuda_extra: str | None
    companions: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class CudaInfo:
    version: str
    min_driver: str
    compat_driver: str
    source: str


@dataclass(frozen=True)
class Plan:
    """What resolving a framework for one platform needs."""

    requirements: tuple[str, ...]
    priority_indexes: tuple[str, ...]
    cuda: str
    releases: tuple[Release, ...]
    runtime: str | None  # CUDA version prefix the resolved nvidia-cuda-runtime must carry


def _read(name: str) -> dict[str, Any]:
    text = resources.files("envlock.compat").joinpath(f"{name}.toml").read_text("utf-8")
    return tomllib.loads(text)


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version))


@cache
def framework(name: str) -> FrameworkInfo:
    from envlock.spec import FRAMEWORKS

    if name not in FRAMEWORKS:
        raise CompatError(f"unknown framework {name!r}", f"valid frameworks: {', '.join(FRAMEWORKS)}")
    data = _read(name)
    releases = tuple(
        Release(
            version=r["version"],
            latest=r["latest"],
            python=tuple(r["python"]),
            cuda=tuple(r.get("cuda", ())),
            cpu=bool(r.get("cpu", True)),
            pypi_default=r.get("pypi-default"),
            cudnn=r.get("cudnn"),
            source=r["source"],
        )
        for r in data["releases"]
    )
    return FrameworkInfo(
        name=data["framework"],
        pip_name=data["pip-name"],
        releases=tuple(sorted(releases, key=lambda r: _key(r.version))),
        variant_index=data.get("variant-index"),
        cuda_extra=data.get("cuda-extra"),
        companions=tuple(data.get("companions", ())),
        source=data["source"],
    )


@cache
def cuda_versions() -> tuple[CudaInfo, ...]:
    data = _read("cuda")
    rows = (CudaInfo(r["version"], r["min-driver"], r["compat-driver"], r["source"]) for r in data["cuda"])
    return tuple(sorted(rows, key=lambda c: _key(c.version)))


def cuda_info(version: str) -> CudaInfo | None:
    return next((c for c in cuda_versions() if c.version == version), None)


def _matching_releases(info: FrameworkInfo, version: str) -> tuple[tuple[Release, ...], str]:
    """Releases the spec's version selects, and the requirement specifier for the pip name."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        v = Version(version)
    except InvalidVersion:
        spec = SpecifierSet(version)
        chosen = tuple(
            r
            for r in info.releases
            if spec.contains(r.latest, prereleases=True) or spec.contains(r.version + ".0")
        )
        return chosen, str(spec)
    series = f"{v.major}.{v.minor}"
    chosen = tuple(r for r in info.releases if r.version == series)
    pin = f"=={series}.*" if len(v.release) == 2 else f"=={v.public}"
    return chosen, pin


def _cuda_matches(info: FrameworkInfo, release: Release, cuda: str) -> bool:
    if cuda == "cpu":
        return release.cpu
    if info.name == "jax":
        return cuda.split(".")[0] in release.cuda
    return cuda in release.cuda


def _variants(release: Release) -> str:
    return ", ".join([*release.cuda, *(["cpu"] if release.cpu else [])]) or "none"


def plan(fw: Framework, subdir: str, python: str) -> Plan:
    """Check the combination and say how to resolve it, or raise ``CompatError``."""
    info = framework(fw.name)
    known = ", ".join(r.version for r in info.releases)
    chosen, specifier = _matching_releases(info, fw.version)
    if not chosen:
        raise CompatError(
            f"{fw.name} has no release matching {fw.version!r}",
            f"releases envlock knows: {known} (see: envlock matrix {fw.name})",
        )
    with_python = tuple(r for r in chosen if python in r.python)
    if not with_python:
        r = chosen[-1]
        raise CompatError(
            f"{fw.name} {r.version} does not support Python {python}",
            f"{fw.name} {r.version} supports Python {', '.join(r.python)}",
        )
    platform = PLATFORMS[subdir]
    if fw.cuda != "cpu" and subdir != "linux-64":
        raise CompatError(
            f"{fw.name} CUDA builds are locked for linux-64 only, not {subdir}",
            f'set cuda = "cpu" for {subdir}, or lock CUDA for platforms = ["linux-64"]',
        )
    usable = tuple(r for r in with_python if _cuda_matches(info, r, fw.cuda))
    if not usable:
        r = with_python[-1]
        what = "CPU build" if fw.cuda == "cpu" else f"CUDA {fw.cuda} build"
        raise CompatError(
            f"{fw.name} {r.version} has no {what}",
            f"valid CUDA variants for {fw.name} {r.version}: {_variants(r)}",
        )

    name = info.pip_name
    indexes: tuple[str, ...] = ()
    runtime: str | None = None
    if fw.name == "pytorch":
        defaults = {r.pypi_default for r in usable}
        on_pypi = platform.os != "linux" or (len(defaults) == 1 and fw.cuda in defaults)
        if not on_pypi and info.variant_index:
            tag = "cpu" if fw.cuda == "cpu" else "cu" + fw.cuda.replace(".", "")
            indexes = (info.variant_index.format(tag=tag),)
        requirement = f"{name}{specifier}"
        runtime = None if fw.cuda == "cpu" else fw.cuda
    elif fw.name == "tensorflow":
        extra = f"[{info.cuda_extra}]" if fw.cuda != "cpu" and info.cuda_extra else ""
        requirement = f"{name}{extra}{specifier}"
        runtime = None if fw.cuda == "cpu" else fw.cuda
    else:
        major = fw.cuda.split(".")[0]
        extra = f"[{(info.cuda_extra or 'cuda{major}').format(major=major)}]" if fw.cuda != "cpu" else ""
        requirement = f"{name}{extra}{specifier}"
        runtime = None if fw.cuda == "cpu" else major + "."
    return Plan(
        requirements=(requirement,),
        priority_indexes=indexes,
        cuda=fw.cuda,
        releases=usable,
        runtime=runtime,
    )


# torch <= 2.10 pins nvidia-cuda-runtime-cuNN; torch >= 2.11 pins cuda-toolkit[cudart]
_RUNTIME = re.compile(r"^(nvidia-cuda-runtime(-cu\d+)?|cuda-toolkit)$")


def _check_series(fw: Framework, got: str, releases: tuple[Release, ...], what: str) -> None:
    """The resolved framework version must lie in a release that fits Python and CUDA."""
    series = ".".join(got.split("+")[0].split(".")[:2])
    if series not in {r.version for r in releases}:
        raise CheckFailed(
            f"{what}, but {fw.name} {series} does not fit Python and CUDA {fw.cuda}",
            f"narrow framework.version to one of: {', '.join(r.version for r in releases)}",
        )


def check_resolved(fw: Framework, p: Plan, subdir: str, packages: dict[str, str]) -> None:
    """After resolution: the framework's version is in a usable release and CUDA matches.

    ``packages`` maps normalised names to versions.
    """
    info = framework(fw.name)
    got = packages.get(info.pip_name)
    if got is None:
        raise CheckFailed(f"the resolution for {subdir} does not contain {info.pip_name}")
    _check_series(fw, got, p.releases, f"{info.pip_name} {got} was resolved for {subdir}")
    runtimes = {n: v for n, v in packages.items() if _RUNTIME.match(n)}
    if fw.cuda == "cpu" and runtimes and PLATFORMS[subdir].os == "linux":
        name, version = next(iter(runtimes.items()))
        raise CheckFailed(
            f"a CPU environment for {subdir} resolved {name} {version}",
            "a package pulls in CUDA wheels: pin its CPU variant or set framework.cuda",
        )
    if p.runtime:
        prefix = p.runtime if p.runtime.endswith(".") else p.runtime + "."
        for name, version in runtimes.items():
            if not version.startswith(prefix):
                raise CheckFailed(
                    f"{info.pip_name} {got} for {subdir} resolved {name} {version}, "
                    f"not the CUDA {fw.cuda} that the spec asks for",
                    f"choose the CUDA variant that release ships (see: envlock matrix {fw.name})",
                )


@dataclass(frozen=True)
class CondaVariant:
    releases: str  # PEP 440 specifier over release series, e.g. "<=2.5"
    channels: tuple[str, ...]
    specs: tuple[str, ...]
    cuda_specs: tuple[str, ...]
    cpu_specs: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class CondaPlan:
    """The conda match specs that give a framework from conda, and where they come from."""

    package: str  # the conda package that is the framework (pytorch, tensorflow, jax)
    specs: tuple[str, ...]
    channels: tuple[str, ...]  # the channels that carry these builds
    releases: tuple[Release, ...]
    source: str


@cache
def conda_variants(name: str) -> tuple[CondaVariant, ...]:
    return tuple(
        CondaVariant(
            releases=v["releases"],
            channels=tuple(v["channels"]),
            specs=tuple(v["specs"]),
            cuda_specs=tuple(v.get("cuda-specs", ())),
            cpu_specs=tuple(v.get("cpu-specs", ())),
            source=v["source"],
        )
        for v in _read(name).get("conda", [])
    )


def _conda_version(version: str) -> str:
    """A spec's framework version as a conda version spec: "2.5" -> "2.5.*"."""
    from packaging.version import InvalidVersion, Version

    try:
        v = Version(version)
    except InvalidVersion:
        return version.replace(" ", "")
    return f"{v.major}.{v.minor}.*" if len(v.release) == 2 else v.public


def conda_plan(fw: Framework, subdir: str, python: str) -> CondaPlan:
    """The conda specs for the framework (checked against the matrix like ``plan``)."""
    from packaging.specifiers import SpecifierSet

    pip_plan = plan(fw, subdir, python)
    newest = pip_plan.releases[-1]
    for variant in conda_variants(fw.name):
        if SpecifierSet(variant.releases).contains(newest.version + ".0"):
            break
    else:
        raise CompatError(
            f"the compat matrix has no conda builds of {fw.name} {newest.version}",
            "take the framework from pip (drop it from [conda]) or pick another version",
        )
    values = {"version": _conda_version(fw.version), "cuda": fw.cuda}
    extra = variant.cpu_specs if fw.cuda == "cpu" else variant.cuda_specs
    specs = tuple(s.format(**values) for s in (*variant.specs, *extra))
    package = variant.specs[0].split()[0]
    return CondaPlan(package, specs, variant.channels, pip_plan.releases, variant.source)


def check_conda_resolved(fw: Framework, p: CondaPlan, subdir: str, packages: dict[str, str]) -> None:
    """After a conda solve: the framework came from conda, in a release the matrix allows."""
    got = packages.get(p.package)
    if got is None:
        raise CheckFailed(f"the conda solution for {subdir} does not contain {p.package}")
    _check_series(fw, got, p.releases, f"conda resolved {p.package} {got} for {subdir}")


def min_driver(cuda: str) -> str | None:
    info = cuda_info(cuda)
    return info.min_driver if info else None


def rows(name: str) -> tuple[list[str], list[list[str]]]:
    """The matrix as a table (headers, rows) for ``envlock matrix NAME``."""
    if name == "cuda":
        headers = ["cuda", "min driver", "minor-compat driver"]
        return headers, [[c.version, c.min_driver, c.compat_driver] for c in cuda_versions()]
    info = framework(name)
    headers = ["release", "latest", "python", "cuda variants", "pypi default", "driver >="]
    table = []
    for r in info.releases:
        if name == "pytorch":
            default = r.pypi_default or "cpu"
        elif r.cuda and info.cuda_extra:
            default = "cpu; CUDA via [" + info.cuda_extra.replace("{major}", "N") + "]"
        else:
            default = "cpu"
        variants = [*r.cuda, *(["cpu"] if r.cpu else [])]
        shown = [default] if name == "pytorch" else list(r.cuda)
        drivers = [d for d in (min_driver(c) for c in shown if "." in c) if d]
        python = f"{r.python[0]}-{r.python[-1]}" if len(r.python) > 1 else r.python[0]
        table.append(
            [
                r.version,
                r.latest,
                python,
                ", ".join(variants),
                default,
                min(drivers, key=_key) if drivers else "-",
            ]
        )
    return headers, table
