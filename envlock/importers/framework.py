"""Find the framework in imported requirements and lift it into ``[framework]``, so that the
compat matrix checks the framework / CUDA / Python combination.

The CUDA variant comes from, in this order: the PEP 440 local version of the pin
(``+cu121`` -> 12.1, ``+cpu``); a PyTorch per-variant index URL
(``download.pytorch.org/whl/cu124``); the ``nvidia-cuda-runtime-cuNN`` pin; cog's ``cuda``;
otherwise the release's default on PyPI (for torch, the CUDA build PyPI's Linux wheel
carries, from the matrix).  A combination the matrix rejects stays in ``[pip] packages``
with a warning that says why.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from envlock.errors import CompatError
from envlock.importers import Imported
from envlock.importers.text import canonical_name

if TYPE_CHECKING:
    from packaging.requirements import Requirement

_TORCH_INDEX = re.compile(r"^https?://download\.pytorch\.org/whl/(cu\d+|cpu|rocm[\d.]+)/?$")
_LOCAL_CUDA = re.compile(r"^cu(\d+)(\d)$")
_RUNTIME = re.compile(r"^nvidia-cuda-runtime(?:-cu(\d+))?$")
_FRAMEWORK_NAMES = {
    "torch": "pytorch",
    "tensorflow": "tensorflow",
    "tensorflow-cpu": "tensorflow",
    "jax": "jax",
}
_JAX_CUDA_EXTRA = re.compile(r"^cuda(\d+)(?:_.*)?$")
_JAX_PLUGIN = re.compile(r"^jax-cuda(\d+)-plugin$")


def cuda_of_tag(tag: str) -> str:
    """``cu121`` -> ``12.1``, ``cu118`` -> ``11.8``, ``cu130`` -> ``13.0``, ``cpu`` -> ``cpu``."""
    if tag == "cpu":
        return "cpu"
    m = _LOCAL_CUDA.match(tag)
    if not m:
        raise ValueError(tag)
    return f"{m.group(1)}.{m.group(2)}"


def lift(found: Imported) -> None:
    """Move the framework requirement of ``found.packages`` into ``found.framework`` (in place),
    drop the PyTorch variant index the framework plan adds itself, and strip the variant's
    local version from companions (``torchvision==0.20.1+cu121`` -> ``==0.20.1``: PEP 440
    matches any local version then, and the framework plan picks the variant)."""
    from packaging.requirements import Requirement

    parsed = [(text, Requirement(text)) for text in found.packages]
    framework = [(t, r) for t, r in parsed if canonical_name(r.name) in _FRAMEWORK_NAMES]
    if not framework:
        return
    if len({_FRAMEWORK_NAMES[canonical_name(r.name)] for _, r in framework}) > 1:
        found.warn("more than one framework (torch, tensorflow, jax): none lifted into [framework]")
        return
    text, req = framework[0]
    name = _FRAMEWORK_NAMES[canonical_name(req.name)]
    version, local = _version(req)
    if version is None:
        found.warn(f"{text}: an unpinned framework stays in [pip] packages (give [framework] a version)")
        return
    cuda = _cuda(found, parsed, name, req, local)
    if cuda is None:
        return
    from envlock.spec import Framework

    if found.python is None:
        found.python = "3.11"
    try:
        from envlock import compat

        compat.plan(Framework(name, version, cuda), "linux-64", found.python)
    except CompatError as exc:
        found.warn(f"{text} stays in [pip] packages: {exc.message}")
        return
    found.framework = (name, version, cuda)
    kept: list[str] = []
    companions = _companions(name)
    for other_text, other in parsed:
        if other_text == text:
            continue
        if canonical_name(other.name) in companions:
            other_text = _strip_local(other_text)
        kept.append(other_text)
    found.packages = kept
    found.index_url = None if found.index_url and _TORCH_INDEX.match(found.index_url) else found.index_url
    found.indexes = [url for url in found.indexes if not _TORCH_INDEX.match(url)]


def _companions(name: str) -> set[str]:
    from envlock import compat

    return {canonical_name(c) for c in compat.framework(name).companions}


def _version(req: Requirement) -> tuple[str | None, str | None]:
    """(version or specifier, local label) of a framework requirement."""
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        public, _, local = specs[0].version.partition("+")
        return public, local or None
    if specs:
        return str(req.specifier), None
    return None, None


def _cuda(
    found: Imported, parsed: list[tuple[str, Requirement]], name: str, req: Requirement, local: str | None
) -> str | None:
    extras = set(req.extras)
    if local:
        if local.startswith("rocm"):
            found.warn(f"{req}: ROCm builds are not in envlock's matrix; left in [pip] packages")
            return None
        try:
            return cuda_of_tag(local)
        except ValueError:
            pass
    for url in [found.index_url or "", *found.indexes]:
        m = _TORCH_INDEX.match(url)
        if m and name == "pytorch":
            if m.group(1).startswith("rocm"):
                found.warn(f"{url}: ROCm builds are not in envlock's matrix; torch left in [pip] packages")
                return None
            return cuda_of_tag(m.group(1))
    runtime = _runtime_pin(parsed)
    if name == "tensorflow" and canonical_name(req.name) == "tensorflow-cpu":
        return "cpu"
    if name == "tensorflow" and "and-cuda" not in extras and runtime is None:
        return "cpu"
    if name == "jax":
        majors = [m.group(1) for e in extras if (m := _JAX_CUDA_EXTRA.match(e))]
        plugin = [m.group(1) for _, r in parsed if (m := _JAX_PLUGIN.match(canonical_name(r.name)))]
        major = (majors or plugin or [None])[0]
        return major if major else "cpu"
    if runtime:
        return runtime
    hint = found.cuda_hint
    if hint and hint != "gpu":
        return hint
    if name == "pytorch":
        return _pypi_default(found, req)
    from envlock import compat

    version, _ = _version(req)
    for release in compat.framework(name).releases:
        if version and (version == release.version or version.startswith(release.version + ".")):
            return release.cuda[-1] if release.cuda else "cpu"
    return "cpu"


def _runtime_pin(parsed: list[tuple[str, Requirement]]) -> str | None:
    """The CUDA major.minor of an ``nvidia-cuda-runtime-cuNN==X.Y.Z`` pin, if any."""
    for _, req in parsed:
        if _RUNTIME.match(canonical_name(req.name)):
            version, _ = _version(req)
            if version and re.match(r"^\d+\.\d+", version):
                return ".".join(version.split(".")[:2])
    return None


def _pypi_default(found: Imported, req: Requirement) -> str | None:
    """The CUDA variant of PyPI's default Linux torch wheel for the pinned release (matrix)."""
    from envlock import compat

    version, _ = _version(req)
    for release in compat.framework("pytorch").releases:
        if version and (version == release.version or version.startswith(release.version + ".")):
            return release.pypi_default or "cpu"
    found.warn(f"{req}: a torch release envlock's matrix does not know; left in [pip] packages")
    return None


def _strip_local(requirement: str) -> str:
    return re.sub(r"(==\s*[^;,\s+]+)\+[A-Za-z0-9.]+", r"\1", requirement, count=1)
