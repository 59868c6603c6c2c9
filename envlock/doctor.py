"""``envlock doctor``: will this locked environment run on this host (or on a planned fleet)?

Three kinds of facts meet here: the host's (``envlock.hostfacts``: GPUs, driver, engine), the
environment's (from the lock: framework, CUDA runtime, minimum drivers from the compat matrix,
GPU architectures read from the locked wheel or taken from the matrix), and the rules that
join them (``verdicts``, pure).  Each verdict is one line with a level (``ok``, ``note``,
``warning``, ``error``) and usually a hint; any ``error`` means "will not run" (exit 1).

Driver rules, from NVIDIA's CUDA Compatibility guide
(https://docs.nvidia.com/deploy/cuda-compatibility/index.html):

- a driver >= the toolkit's own minimum (``min-driver`` in ``compat/cuda.toml``, release
  notes Table 3) runs everything the toolkit builds;
- from CUDA 11 on, minor-version compatibility: a driver >= the major's floor
  (``compat-driver``, release notes Table 2) runs any minor of that major, except features
  that need the newer driver, notably JIT-compiling PTX produced by the newer toolkit;
- forward compatibility (the ``cuda-compat`` package) lets an older driver run a newer
  toolkit, on NVIDIA data-center GPUs only ("Forward Compatibility" section of the guide).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envlock import gpuarch
from envlock.errors import UsageError
from envlock.gpuarch import BuildArchs, Capability

if TYPE_CHECKING:
    from envlock.hostfacts import Gpu, Host
    from envlock.lockfile import Lock, Package, PlatformLock

SCHEMA = "envlock.doctor/v1"
FORWARD_COMPAT_DOC = "https://docs.nvidia.com/deploy/cuda-compatibility/forward-compatibility.html"
LEVELS = ("ok", "note", "warning", "error")

# lock package -> framework it is (pip names, then conda names)
_FRAMEWORK_PACKAGES = {"torch": "pytorch", "pytorch": "pytorch", "tensorflow": "tensorflow", "jax": "jax"}
# packages that carry the CUDA runtime; their version is the runtime's
_RUNTIME = re.compile(r"^(nvidia-cuda-runtime(-cu\d+)?|cuda-cudart|cuda-toolkit)$")
# names of NVIDIA data-center GPUs (forward compatibility applies to these only)
_DATACENTER = re.compile(
    r"\b(tesla|[abhlt]\d{1,3}[a-z]?|gh200|gb200|gb300|b200|b300|a800|h800|h20|l40s?|dgx)\b", re.I
)


@dataclass(frozen=True)
class Verdict:
    level: str  # ok | note | warning | error
    code: str  # stable identifier for scripts, e.g. driver-too-old
    message: str
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "code": self.code, "message": self.message, "hint": self.hint}


@dataclass(frozen=True)
class EnvFacts:
    """What the locked environment needs from a host, for one platform."""

    label: str
    env_id: str
    platform: str
    framework: str | None  # pytorch | tensorflow | jax
    framework_package: str | None  # torch 2.9.1+cu128
    framework_version: str | None
    cuda: str  # the CUDA variant: "12.8", "12" (jax), or "cpu"
    cuda_runtime: str | None  # major.minor of the locked CUDA runtime (or of the variant)
    min_driver: str | None
    compat_driver: str | None
    archs: BuildArchs | None

    @property
    def series(self) -> str | None:
        if not self.framework_version:
            return None
        return ".".join(self.framework_version.split("+")[0].split(".")[:2])

    @property
    def what(self) -> str:
        if not self.framework_package:
            return "the environment"
        return f"{self.framework_package} {self.framework_version}"

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "env_id": self.env_id,
            "platform": self.platform,
            "framework": self.framework,
            "framework_package": self.framework_package,
            "framework_version": self.framework_version,
            "cuda": self.cuda,
            "cuda_runtime": self.cuda_runtime,
            "min_driver": self.min_driver,
            "compat_driver": self.compat_driver,
            "archs": self.archs.names() if self.archs else None,
            "archs_source": self.archs.source if self.archs else None,
        }


@dataclass(frozen=True)
class Report:
    host: Host
    env: EnvFacts | None
    verdicts: tuple[Verdict, ...]

    @property
    def errors(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.level == "error")

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "mode": "plan" if self.host.source == "plan" else "host",
            "runs": not self.errors,
            "exit_code": self.exit_code,
            "host": self.host.to_json(),
            "environment": self.env.to_json() if self.env else None,
            "verdicts": [v.to_json() for v in self.verdicts],
        }


def driver_key(version: str) -> tuple[int, ...]:
    """``"535.104.05"`` -> ``(535, 104, 5)``; raises ``UsageError`` for anything else."""
    if not re.fullmatch(r"\d+(\.\d+){0,3}", version.strip()):
        raise UsageError(f"{version!r} is not an NVIDIA driver version", "write it as e.g. 535.104.05")
    return tuple(int(x) for x in version.strip().split("."))


def _major_minor(version: str) -> str | None:
    m = re.match(r"^(\d+)\.(\d+)", version)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def _pick_platform(lock: Lock, platform: str | None) -> PlatformLock:
    if platform:
        return lock.platform(platform)
    for p in lock.platforms:
        if p.name == "linux-64":
            return p
    return lock.platforms[0]


def framework_of(plat: PlatformLock) -> tuple[str | None, Package | None]:
    """Which framework the locked platform holds, and its package (pip before conda)."""
    for manager in ("pip", "conda"):
        names = plat.by_name(manager)
        for name, framework in _FRAMEWORK_PACKAGES.items():
            if name in names:
                return framework, names[name]
    return None, None


def cuda_runtime_of(plat: PlatformLock) -> str | None:
    """major.minor of the locked CUDA runtime package, else of the CUDA variant (None for cpu)."""
    for p in plat.packages:
        if _RUNTIME.match(p.name):
            found = _major_minor(p.version)
            if found:
                return found
    return plat.cuda if re.fullmatch(r"\d+\.\d+", plat.cuda) else None


def env_facts(
    lock: Lock,
    label: str,
    *,
    platform: str | None = None,
    archs: BuildArchs | None = None,
) -> EnvFacts:
    """The environment's side of the check, from the lock alone (``archs`` from the artifact, if read).

    Without ``archs``, the architectures come from the matrix (``compat/archs.toml``) when it
    has the release series and CUDA variant, else they are unknown (``None``).
    """
    from envlock import compat

    plat = _pick_platform(lock, platform)
    framework, package = framework_of(plat)
    runtime = cuda_runtime_of(plat) if plat.cuda != "cpu" else None
    info = compat.cuda_info(runtime) if runtime else None
    if runtime and info is None and plat.cuda != runtime:
        info = compat.cuda_info(plat.cuda)
    version = package.version if package else None
    if archs is None and framework and version and plat.cuda != "cpu":
        series = ".".join(version.split("+")[0].split(".")[:2])
        archs = gpuarch.matrix_archs(framework, series, plat.cuda)
    return EnvFacts(
        label=label,
        env_id=lock.env_id,
        platform=plat.name,
        framework=framework,
        framework_package=package.name if package else None,
        framework_version=version,
        cuda=plat.cuda,
        cuda_runtime=runtime,
        min_driver=info.min_driver if info else None,
        compat_driver=info.compat_driver if info else None,
        archs=archs,
    )


# -- the rules ----------------------------------------------------------------------------


def _datacenter(gpus: Sequence[Gpu]) -> bool | None:
    """True when every GPU is a data-center part, False when one is not, None when names are unknown."""
    names = [g.name for g in gpus if g.name]
    if not names:
        return None
    return all(_DATACENTER.search(n) and not re.search(r"geforce|titan|quadro", n, re.I) for n in names)


def _forward_compat_hint(env: EnvFacts, gpus: Sequence[Gpu], need: str) -> str:
    runtime = env.cuda_runtime or env.cuda
    package = f"cuda-compat-{runtime.replace('.', '-')}"
    dc = _datacenter(gpus)
    if dc is True:
        return (
            f"upgrade the driver to >= {need}, or install {package} (CUDA forward compatibility, "
            f"supported on data-center GPUs: {FORWARD_COMPAT_DOC})"
        )
    if dc is False:
        names = sorted({g.name for g in gpus if g.name})
        return (
            f"upgrade the driver to >= {need}; the forward-compatibility package {package} does not "
            f"help here: it supports data-center GPUs only, not {', '.join(names)}"
        )
    return (
        f"upgrade the driver to >= {need}; on data-center GPUs {package} also works "
        f"(CUDA forward compatibility: {FORWARD_COMPAT_DOC})"
    )


def _driver_verdicts(env: EnvFacts, host: Host, fits: dict[Capability, gpuarch.Fit]) -> list[Verdict]:
    if host.driver is None or env.min_driver is None:
        if host.driver is None and host.gpus:
            return [Verdict("note", "driver-unknown", "the driver version is not known; not checked")]
        if env.min_driver is None and host.driver is not None:
            return [
                Verdict(
                    "note",
                    "driver-requirement-unknown",
                    f"the compat matrix has no minimum driver for CUDA {env.cuda}; driver not checked",
                )
            ]
        return []
    runtime = env.cuda_runtime or env.cuda
    have = driver_key(host.driver)
    full = driver_key(env.min_driver)
    if have >= full:
        return [
            Verdict("ok", "driver", f"driver {host.driver} runs CUDA {runtime} (needs >= {env.min_driver})")
        ]
    major = int(runtime.split(".")[0])
    floor = env.compat_driver
    if major >= 11 and floor and have >= driver_key(floor):
        out = [
            Verdict(
                "warning",
                "minor-version-compat",
                f"driver {host.driver} runs CUDA {runtime} through minor-version compatibility "
                f"(CUDA {major}.x needs >= {floor}); features that need the full CUDA {runtime} "
                f"driver (>= {env.min_driver}) are not available, e.g. JIT-compiling PTX built by "
                f"CUDA {runtime}",
                f"for the full feature set upgrade the driver to >= {env.min_driver}",
            )
        ]
        for cap, f in sorted(fits.items()):
            if f.how == "ptx" and f.arch is not None:
                out.append(
                    Verdict(
                        "error",
                        "ptx-needs-full-driver",
                        f"{cap.sm} has no machine code in {env.what}, only PTX {f.arch.compute} built "
                        f"by CUDA {runtime}, which driver {host.driver} cannot JIT-compile "
                        f"(needs the full driver >= {env.min_driver})",
                        _forward_compat_hint(env, host.gpus, env.min_driver),
                    )
                )
        return out
    need = floor if major >= 11 and floor else env.min_driver
    return [
        Verdict(
            "error",
            "driver-too-old",
            f"driver {host.driver} is too old for CUDA {runtime}: it needs >= {need}"
            + (
                f" (CUDA {major}.x minor-version compatibility; {env.min_driver} for every feature)"
                if need != env.min_driver
                else ""
            ),
            _forward_compat_hint(env, host.gpus, need),
        )
    ]


def _adds(env: EnvFacts, cap: Capability) -> str:
    """Which release or CUDA variant in the matrix has machine code (or PTX) for ``cap``."""
    if not env.framework:
        return "rebuild the environment with a CUDA toolkit that targets it"
    name = env.framework_package or env.framework
    options = gpuarch.builds_with(env.framework, cap)
    same = [o for o in options if o[0] == env.series]
    later = [o for o in options if gpuarch.series_key(o[0]) >= gpuarch.series_key(env.series or "0")]
    pick = (same or later or options)[:1]
    if not pick:
        return f"no {name} release in envlock's matrix targets {cap.sm} (see: envlock matrix {env.framework})"
    release, cuda, how = pick[0]
    jit = " (as PTX, JIT-compiled)" if how == "ptx" else ""
    return (
        f"{name} {release} with CUDA {cuda} has {cap.sm}{jit}: "
        f'set framework.version = "{release}" and cuda = "{cuda}", then re-lock'
    )


def _arch_verdicts(env: EnvFacts, gpus: Sequence[Gpu]) -> tuple[list[Verdict], dict[Capability, gpuarch.Fit]]:
    caps = sorted({g.capability for g in gpus if g.capability is not None})
    if not caps:
        return [], {}
    if env.archs is None:
        what = env.what
        return [
            Verdict(
                "note",
                "archs-unknown",
                f"the GPU architectures of {what} (CUDA {env.cuda}) are not in envlock's matrix; not checked",
                "build the image (envlock build) so that doctor can read them from the locked wheel",
            )
        ], {}
    out: list[Verdict] = []
    fits: dict[Capability, gpuarch.Fit] = {}
    carried = " ".join(env.archs.names())
    for cap in caps:
        f = gpuarch.fit(env.archs, cap)
        fits[cap] = f
        names = sorted({g.name for g in gpus if g.capability == cap and g.name})
        gpu = f"{', '.join(names)} ({cap.sm})" if names else cap.sm
        if f.how == "sass" and f.arch is not None:
            out.append(Verdict("ok", "arch", f"{gpu} runs {env.what}: machine code for {f.arch.sm}"))
        elif f.how == "ptx" and f.arch is not None:
            out.append(
                Verdict(
                    "warning",
                    "arch-ptx",
                    f"{gpu} runs {env.what} through PTX {f.arch.compute}, JIT-compiled on first use "
                    "(a slow first start; cache it with CUDA_CACHE_MAXSIZE)",
                    _adds(env, cap),
                )
            )
        else:
            out.append(
                Verdict(
                    "error",
                    "arch-missing",
                    f"{gpu} is not in the build of {env.what}: it carries {carried} "
                    '("no kernel image is available for execution on the device")',
                    _adds(env, cap),
                )
            )
    return out, fits


def verdicts(env: EnvFacts | None, host: Host) -> tuple[Verdict, ...]:
    """The rules of the module docstring, applied to one environment and one host (pure)."""
    out: list[Verdict] = []
    planning = host.source == "plan"
    if not host.gpus and not planning:
        out.append(Verdict("note", "no-gpu", "no GPU on this host"))
    if env is None:
        return tuple(out)
    engine = host.engine
    if env.cuda == "cpu":
        if host.gpus and not planning:
            out.append(
                Verdict(
                    "warning",
                    "cpu-lock-on-gpu-host",
                    f"{env.label} is a CPU-only environment; it will not use this host's "
                    f"{len(host.gpus)} GPU(s)",
                    "lock a CUDA variant to use them: set framework.cuda "
                    f"(see: envlock matrix {env.framework or 'pytorch'})",
                )
            )
        else:
            out.append(Verdict("ok", "cpu", f"{env.label} is a CPU-only environment"))
        return tuple(out)
    if not host.gpus and not planning:
        out.append(
            Verdict(
                "warning",
                "cuda-without-gpu",
                f"{env.label} uses CUDA {env.cuda}, but this host has no GPU: its CUDA code cannot run "
                "here (building the image needs none)",
                f"plan for a GPU node with: envlock doctor {env.label} --gpu sm_XY --driver VERSION",
            )
        )
    if planning and not host.gpus:
        out.append(Verdict("note", "no-gpu-given", "no --gpu given: GPU architectures not checked"))
    arch_lines, fits = _arch_verdicts(env, host.gpus)
    out.extend(_driver_verdicts(env, host, fits))
    out.extend(arch_lines)
    if engine is not None and not planning:
        if not engine.available:
            out.append(
                Verdict(
                    "warning",
                    "engine-unavailable",
                    f"{engine.problem}; the NVIDIA runtime is not checked",
                    "start dockerd (e.g. `sudo systemctl start docker`) or set DOCKER_HOST",
                )
            )
        elif not engine.nvidia_runtime:
            level = "error" if host.gpus else "warning"
            out.append(
                Verdict(
                    level,
                    "no-nvidia-runtime",
                    f"the Docker engine {engine.version} at {engine.host} has no NVIDIA runtime "
                    f"(runtimes: {', '.join(engine.runtimes) or 'none'}): a container would see no GPU "
                    "and run on CPU",
                    "install the NVIDIA Container Toolkit, run "
                    "`nvidia-ctk runtime configure --runtime=docker` and restart dockerd",
                )
            )
        else:
            out.append(
                Verdict("ok", "nvidia-runtime", f"the Docker engine {engine.version} has the NVIDIA runtime")
            )
    return tuple(out)


# -- entry points -------------------------------------------------------------------------


def plan_host(gpus: Sequence[str], driver: str | None) -> Host:
    """``--gpu`` values (sm_90, 9.0; comma lists allowed) and ``--driver`` -> a planned host."""
    from envlock.hostfacts import planned

    caps = [gpuarch.parse_capability(g) for value in gpus for g in value.split(",") if g.strip()]
    if driver is not None:
        driver_key(driver)
    return planned(caps, driver.strip() if driver else None)


def environment(
    target: str, *, root: Path, store: Any | None = None, platform: str | None = None
) -> EnvFacts:
    """The facts of a spec, lock, ``LOCK@REV``, model or env ID (``envlock.envref`` references).

    The architectures are read from the locked framework wheel when the store has it (cached
    by the wheel's sha256), else taken from the matrix.
    """
    if target.endswith(".lock") and (root / target).is_file():  # the common case, without envref's imports
        from envlock import lockfile as lockmod

        lock, label = lockmod.read(root / target), target
    else:
        from envlock import envref

        ref = envref.resolve(target, root)
        lock, label = ref.lock, ref.label
    facts = env_facts(lock, label, platform=platform)
    if store is not None and facts.cuda != "cpu":
        from envlock import fatbin

        read = fatbin.locked_archs(store, _pick_platform(lock, platform))
        if read is not None:
            facts = env_facts(lock, label, platform=platform, archs=read)
    return facts


def diagnose(
    target: str | None,
    *,
    root: Path,
    gpus: Sequence[str] = (),
    driver: str | None = None,
    store: Any | None = None,
    platform: str | None = None,
) -> Report:
    """Host mode (probe this host) or plan mode (``gpus``/``driver`` given) for one environment or none."""
    from envlock import hostfacts

    host = plan_host(gpus, driver) if gpus or driver else None
    env = environment(target, root=root, store=store, platform=platform) if target else None
    if host is None:
        host = hostfacts.probe(with_engine=env is not None and env.cuda != "cpu")
    return Report(host, env, verdicts(env, host))


def preflight(lock: Lock, label: str, *, store: Any | None = None, platform: str | None = None) -> Report:
    """The doctor's checks before ``envlock run`` / ``rebuild --run`` start a container on this host."""
    from envlock import hostfacts

    facts = env_facts(lock, label, platform=platform)
    if store is not None and facts.cuda != "cpu":
        from envlock import fatbin

        read = fatbin.locked_archs(store, _pick_platform(lock, platform))
        if read is not None:
            facts = env_facts(lock, label, platform=platform, archs=read)
    host = hostfacts.probe(with_engine=facts.cuda != "cpu")
    return Report(host, facts, verdicts(facts, host))


def host_lines(host: Host) -> list[str]:
    """Plain lines describing the host (for the CLI)."""
    if host.source == "plan":
        what = ", ".join(g.capability.sm for g in host.gpus if g.capability) or "no GPU given"
        return [f"planned host: {what}; driver {host.driver or 'not given'}"]
    lines = []
    for g in host.gpus:
        cap = f"{g.capability.sm} ({g.capability})" if g.capability else "capability unknown"
        mem = f", {g.memory_mib / 1024:.0f} GiB" if g.memory_mib else ""
        lines.append(f"GPU {g.index}: {g.name}, {cap}{mem}")
    if host.gpus:
        lines.append(f"driver {host.driver or 'unknown'} (from {host.source})")
    if host.engine is not None:
        e = host.engine
        if e.available:
            lines.append(f"Docker engine {e.version} at {e.host}: runtimes {', '.join(e.runtimes) or 'none'}")
        else:
            lines.append(f"Docker engine: {e.problem}")
    return lines


def env_lines(env: EnvFacts) -> list[str]:
    """Plain lines describing the environment (for the CLI)."""
    lines = [f"environment {env.label} ({env.env_id[:19]}…, {env.platform})"]
    if env.cuda == "cpu":
        lines.append(f"  {env.what}, CPU only")
        return lines
    driver = (
        f"driver >= {env.min_driver} (>= {env.compat_driver} with minor-version compatibility)"
        if env.min_driver
        else "minimum driver unknown"
    )
    lines.append(f"  {env.what}, CUDA {env.cuda} (runtime {env.cuda_runtime or 'unknown'}); {driver}")
    if env.archs:
        lines.append(f"  architectures: {' '.join(env.archs.names())}")
        lines.append(f"    from {env.archs.source}")
    else:
        lines.append("  architectures: unknown")
    return lines


def differences(trained: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """How two record ``host`` tables differ in GPU architecture or driver (empty when they agree).

    Records made before doctor hold GPU names only; their architectures then compare as names.
    """
    out = []
    key = "gpu_archs" if "gpu_archs" in trained and "gpu_archs" in now else "gpus"
    was, is_ = sorted(set(trained.get(key) or [])), sorted(set(now.get(key) or []))
    if was != is_:
        what = "GPU architectures" if key == "gpu_archs" else "GPUs"
        out.append(f"{what} differ: {', '.join(was) or 'no GPU'} -> {', '.join(is_) or 'no GPU'}")
    if (trained.get("driver") or None) != (now.get("driver") or None):
        out.append(f"driver differs: {trained.get('driver') or 'none'} -> {now.get('driver') or 'none'}")
    return out


def refuse(report: Report) -> None:
    """Raise ``CheckFailed`` with the first error's message when the report says it will not run."""
    from envlock.errors import CheckFailed

    if report.errors:
        first = report.errors[0]
        hint = f"{first.hint}; or pass --no-check to start it anyway" if first.hint else "or pass --no-check"
        raise CheckFailed(first.message, hint)


def this_host() -> dict[str, Any]:
    """This host's GPUs as a record stores them (``gpus``, ``gpu_archs``, ``driver``; empty without GPU)."""
    from envlock import hostfacts

    found, driver, _source = hostfacts.gpus()
    if not found:
        return {}
    return {
        "gpus": [g.name for g in found],
        "gpu_archs": [g.capability.sm for g in found if g.capability],
        "driver": driver,
    }


def record_host_differences(a: str, b: str, root: Path) -> list[str]:
    """When ``a`` and ``b`` both name recorded models, how their training hosts differ."""
    from envlock.envref import SPECS_DIR

    for ref in (a, b):  # what envref resolves before models: env IDs, paths, spec names
        name = ref.split("@", 1)[0]
        if (
            ref.startswith("sha256:")
            or (root / name).exists()
            or (root / SPECS_DIR / f"{name}.toml").is_file()
        ):
            return []
    from envlock.gitcli import toplevel
    from envlock.recording import find

    top = toplevel(root.absolute())
    if top is None:
        return []
    hosts = []
    for ref in (a, b):
        try:
            host = find(ref, top).data.get("host")
            hosts.append(host if isinstance(host, dict) else {})
        except UsageError:
            return []
    return differences(hosts[0], hosts[1])
