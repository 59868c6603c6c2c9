"""The compat matrix: which framework releases exist with which CUDA variants and Pythons.

The facts live in TOML files beside this module, one row per release, each with
its source.  This module is the only reader; it turns a spec's ``[framework]``
table into a resolution plan (requirements, variant index) or an error that lists
the valid choices.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
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
    """One release series of a framework, as its row in ``envlock/compat/NAME.toml`` says.

    ``companions``: (pip name, newest version) of each companion package built for this
    release (torchvision, tf-keras, jaxlib, ...), from the companions' own wheel metadata.
    ``cuda_runtime``: (CUDA variant, PEP 440 specifier) of what the release itself asks of the
    CUDA runtime wheel (``nvidia-cuda-runtime*`` / ``cuda-toolkit``) for that variant, e.g.
    ("12.5", ">=12.5.82,<13") for TensorFlow 2.20; a variant without one must match
    ``major.minor`` exactly.
    """

    version: str  # minor series, e.g. "2.5"
    latest: str
    python: tuple[str, ...]
    cuda: tuple[str, ...]
    cpu: bool
    pypi_default: str | None
    cudnn: str | None
    source: str
    companions: tuple[tuple[str, str], ...] = ()
    cuda_runtime: tuple[tuple[str, str], ...] = ()

    def companion(self, name: str) -> str | None:
        """The newest version of companion ``name`` built for this release, or ``None``."""
        return dict(self.companions).get(name)

    def runtime_spec(self, cuda: str) -> str | None:
        """The specifier the release puts on the CUDA runtime for variant ``cuda``, if any."""
        table = dict(self.cuda_runtime)
        return table.get(cuda) or table.get(cuda.split(".")[0])


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
    """What resolving a framework for one platform needs.

    ``requirements`` holds the framework's requirement and one pin per companion the spec
    lists (``torchvision==0.24.*``), so companions come from the same release and index;
    ``constraints`` pins every companion the releases have, for one that another package
    pulls in (constraints install nothing by themselves).
    """

    requirements: tuple[str, ...]
    priority_indexes: tuple[str, ...]
    cuda: str
    releases: tuple[Release, ...]
    runtime: str | None  # CUDA version prefix the resolved nvidia-cuda-runtime must carry
    constraints: tuple[str, ...] = ()


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
            companions=tuple(sorted(r.get("companions", {}).items())),
            cuda_runtime=tuple(sorted(r.get("cuda-runtime", {}).items())),
        )
        for r in data["releases"]
    )
    companions = list(data.get("companions", ()))
    for r in releases:
        companions += [n for n, _ in r.companions if n not in companions]
    return FrameworkInfo(
        name=data["framework"],
        pip_name=data["pip-name"],
        releases=tuple(sorted(releases, key=lambda r: _key(r.version))),
        variant_index=data.get("variant-index"),
        cuda_extra=data.get("cuda-extra"),
        companions=tuple(companions),
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


def plan(fw: Framework, subdir: str, python: str, packages: Sequence[str] = ()) -> Plan:
    """Check the combination and say how to resolve it, or raise ``CompatError``.

    ``packages`` are the spec's pip requirement strings: each companion among them
    (torchvision, tf-keras, jaxlib, ...) gets a pin to the release the matrix pairs with
    the framework, and one the user pinned to another release is a ``CompatError`` (exit 2)
    naming the compatible version.
    """
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
        requirements=(requirement, *companion_pins(info, usable, packages)),
        priority_indexes=indexes,
        cuda=fw.cuda,
        releases=usable,
        runtime=runtime,
        constraints=companion_constraints(info, usable),
    )


def _next_series(version: str) -> str:
    """The release series after ``version``'s: "0.24.1" -> "0.25"."""
    major, minor = _key(version)[:2]
    return f"{major}.{minor + 1}"


def _series(version: str) -> str:
    return ".".join(str(x) for x in _key(version)[:2])


def _admits(requirement: Any, newest: str) -> bool:
    """Whether a user's requirement admits some version of ``newest``'s release series.

    The candidates are the series' patch releases up to ``newest`` (and ``newest`` itself,
    for four-part versions such as jax 0.12.0.1); local versions (``+cu128``) are ignored
    as PEP 440 says for a public specifier.
    """
    series = _series(newest)
    patch = _key(newest)[2] if len(_key(newest)) > 2 else 0
    public = {f"{series}.{i}" for i in range(patch + 1)} | {newest}
    locals_ = {s.version.split("+", 1)[1] for s in requirement.specifier if "+" in s.version}
    candidates = public | {f"{c}+{tag}" for c in public for tag in locals_}
    return any(requirement.specifier.contains(c, prereleases=True) for c in candidates)


def companion_pins(
    info: FrameworkInfo, releases: tuple[Release, ...], packages: Sequence[str]
) -> tuple[str, ...]:
    """One pin per companion that ``packages`` (the spec's pip requirements) lists.

    A single release gives ``name==series.*`` (the framework's own requirement picks the
    patch and the index its local version); several give ``name>=first,<after-last``.
    Raises ``CompatError`` when a listed companion has no release the matrix pairs with
    every selected framework release, or when the user's own specifier excludes it.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    pins: list[str] = []
    seen: set[str] = set()
    for text in packages:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue  # the strict spec check reports it with its line
        name = canonicalize_name(req.name)
        if name not in info.companions or name in seen:
            continue
        seen.add(name)
        newest = [r.companion(name) for r in releases]
        have = [r.version for r in info.releases if r.companion(name)]
        if not all(newest):
            versions = [r.version for r in info.releases]
            if len(have) > 2 and versions[versions.index(have[0]) :][: len(have)] == have:
                have = [f"{have[0]} to {have[-1]}"]
            missing = ", ".join(r.version for r, v in zip(releases, newest, strict=True) if not v)
            raise CompatError(
                f"{info.name} {missing} has no {name} release that the compat matrix pairs with it",
                f"{name} is known for {info.name} {', '.join(have) or 'no release'}: pick one of those "
                f"or drop {name} (see: envlock matrix {info.name})",
            )
        known = [v for v in newest if v]
        if req.url is None and req.specifier and not any(_admits(req, v) for v in known):
            chosen = ", ".join(r.version for r in releases)
            fits = " or ".join(dict.fromkeys(f"{_series(v)}.* (newest {v})" for v in known))
            raise CompatError(
                f"{text.strip()} in [pip].packages does not fit {info.name} {chosen}",
                f"{info.name} {chosen} {'pairs' if len(releases) == 1 else 'pair'} with {name} {fits}: "
                f"change or drop the pin (see: envlock matrix {info.name})",
            )
        pins.append(_pin(name, known))
    return tuple(pins)


def _pin(name: str, newest: Sequence[str]) -> str:
    """``name==0.24.*`` for one release series, ``name>=0.19,<0.21`` for several."""
    if len({_series(v) for v in newest}) == 1:
        return f"{name}=={_series(newest[0])}.*"
    return f"{name}>={_series(newest[0])},<{_next_series(newest[-1])}"


def companion_constraints(info: FrameworkInfo, releases: tuple[Release, ...]) -> tuple[str, ...]:
    """A pin for every companion that all of ``releases`` have (for the resolver's
    ``--constraint``: it binds a companion only if something requires it)."""
    out = []
    for name in info.companions:
        newest = [r.companion(name) for r in releases]
        if releases and all(newest):
            out.append(_pin(name, [v for v in newest if v]))
    return tuple(out)


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
        series = _series(got.split("+")[0])
        release = next(r for r in p.releases if r.version == series)
        ranged = release.runtime_spec(fw.cuda)
        for name, version in runtimes.items():
            if not _runtime_fits(version, p.runtime, ranged):
                asked = f"the {ranged} that {fw.name} {series} asks for" if ranged else f"the CUDA {fw.cuda}"
                raise CheckFailed(
                    f"{info.pip_name} {got} for {subdir} resolved {name} {version}, "
                    f"not {asked} (spec: CUDA {fw.cuda})",
                    f"choose the CUDA variant that release ships (see: envlock matrix {fw.name})",
                )


def _runtime_fits(version: str, runtime: str, ranged: str | None) -> bool:
    """A resolved CUDA runtime wheel fits the release's own specifier when the matrix has one
    (TensorFlow 2.20: ``>=12.5.82,<13``), else it carries the spec's CUDA ``major.minor``."""
    if ranged is None:
        prefix = runtime if runtime.endswith(".") else runtime + "."
        return version.startswith(prefix)
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(ranged).contains(version.split("+")[0], prereleases=True)


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


def companion_rows(name: str) -> tuple[list[str], list[list[str]]]:
    """Per release: the companions pinned with it and the CUDA runtime it asks for.

    For ``envlock matrix NAME`` beside ``rows``; companions sharing one version are listed
    once with it ("jaxlib, jax-cuda12-plugin 0.8.3"), a release without any shows "-"; a
    release without a runtime range in the matrix shows ``==<cuda>.*`` (major.minor exactly).
    """
    info = framework(name)
    table = []
    for r in info.releases:
        by_version: dict[str, list[str]] = {}
        for companion in info.companions:
            version = r.companion(companion)
            if version:
                by_version.setdefault(version, []).append(companion)
        companions = ", ".join(f"{', '.join(names)} {v}" for v, names in by_version.items())
        runtime = "; ".join(f"{variant}: {spec}" for variant, spec in r.cuda_runtime)
        if not runtime and r.cuda:
            runtime = "==<cuda>.*"  # no range in the matrix: the variant's major.minor exactly
        table.append([r.version, companions or "-", runtime or "-"])
    return ["release", "companions", "cuda runtime"], table
