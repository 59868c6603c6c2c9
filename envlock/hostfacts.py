"""Facts about this host for ``envlock doctor``: GPUs, the NVIDIA driver, the Docker engine's runtimes.

GPUs come from NVML (the ``nvidia-ml-py`` package, imported only here) and, where NVML cannot
be loaded, from ``nvidia-smi --query-gpu ... --format=csv``.  A host without either has no
GPU: that is a fact, not an error (a build host needs none).  The engine is asked ``GET /info``
over its socket (Docker Engine API, https://docs.docker.com/reference/api/engine/ "System
information": ``Runtimes``, ``ServerVersion``) with a plain socket, because importing the docker
SDK alone costs about 120 ms (and ``http.client`` 25 ms) and doctor answers in less than 150 ms.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envlock.gpuarch import Capability, from_number, parse_capability

SMI_QUERY = "index,name,compute_cap,memory.total,driver_version"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: Capability | None  # None where the tool does not say (nvidia-smi before 510)
    memory_mib: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "compute_capability": str(self.capability) if self.capability else None,
            "arch": self.capability.sm if self.capability else None,
            "memory_mib": self.memory_mib,
        }


@dataclass(frozen=True)
class Engine:
    """The Docker engine as ``GET /info`` describes it; ``available`` False with ``problem`` otherwise."""

    host: str
    available: bool
    version: str = ""
    runtimes: tuple[str, ...] = ()
    nvidia_runtime: bool = False
    problem: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "available": self.available,
            "version": self.version or None,
            "runtimes": list(self.runtimes),
            "nvidia_runtime": self.nvidia_runtime,
            "problem": self.problem or None,
        }


@dataclass(frozen=True)
class Host:
    """GPUs and driver of a host (``source``: nvml | nvidia-smi | none | plan) and its engine."""

    gpus: tuple[Gpu, ...]
    driver: str | None
    source: str
    engine: Engine | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "driver": self.driver,
            "gpus": [g.to_json() for g in self.gpus],
            "engine": self.engine.to_json() if self.engine else None,
        }


def _cell(value: str) -> str | None:
    value = value.strip()
    return None if not value or value.startswith("[") or value.upper() == "N/A" else value


def parse_smi_csv(text: str) -> tuple[tuple[Gpu, ...], str | None]:
    """Rows of ``nvidia-smi --query-gpu=index,name,compute_cap,memory.total,driver_version
    --format=csv,noheader,nounits`` -> (GPUs, driver version).

    A header line (``index, name, ...``) and units (``81559 MiB``) are tolerated; ``[N/A]`` and
    ``[Not Supported]`` cells become ``None``.  Lines that do not have five cells are skipped.
    """
    gpus: list[Gpu] = []
    driver: str | None = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 5 or cells[0].lower() == "index":
            continue
        index, name, cap, memory, drv = (_cell(c) for c in cells)
        if index is None or not index.isdigit() or name is None:
            continue
        capability = None
        if cap:
            with contextlib.suppress(Exception):
                capability = parse_capability(cap)
        mib = None
        if memory:
            number = memory.split()[0]
            mib = int(number) if number.isdigit() else None
        gpus.append(Gpu(int(index), name, capability, mib))
        driver = driver or drv
    return tuple(gpus), driver


# Where an NVIDIA driver is: its kernel module's /proc entry (also inside containers the NVIDIA
# runtime starts), or WSL's driver library directory.  Without either, and without nvidia-smi,
# the host has no NVIDIA GPU, and NVML is not even imported (doctor answers in ~100 ms).
_DRIVER_MARKERS = ("/proc/driver/nvidia/version", "/usr/lib/wsl/lib/libnvidia-ml.so.1")


def _nvml() -> tuple[tuple[Gpu, ...], str | None] | None:
    """GPUs and driver through NVML, or None when NVML cannot be loaded on this host."""
    if not any(Path(m).exists() for m in _DRIVER_MARKERS):
        return None
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    try:
        raw = pynvml.nvmlSystemGetDriverVersion()
        driver = raw.decode() if isinstance(raw, bytes) else str(raw)
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            total = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total)
            gpus.append(
                Gpu(
                    i,
                    name.decode() if isinstance(name, bytes) else str(name),
                    from_number(10 * int(major) + int(minor)),
                    total // (1 << 20),
                )
            )
        return tuple(gpus), driver
    except pynvml.NVMLError:
        return None
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def _smi() -> tuple[tuple[Gpu, ...], str | None] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return parse_smi_csv(proc.stdout)


def gpus() -> tuple[tuple[Gpu, ...], str | None, str]:
    """This host's GPUs, driver and where they came from (nvml | nvidia-smi | none)."""
    for source, probe in (("nvml", _nvml), ("nvidia-smi", _smi)):
        found = probe()
        if found is not None:
            return found[0], found[1], source
    return (), None, "none"


def _get(where: str, path: str, timeout: float) -> tuple[int, bytes]:
    """``GET path`` on a Docker engine address (``unix://`` or ``tcp://``) as HTTP/1.0: the engine
    answers without chunking and closes, so the reply is status line, headers, body.  A socket
    instead of ``http.client`` because that import alone costs ~25 ms of doctor's budget."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(where)
    if url.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: Any = url.path
    elif url.scheme in ("tcp", "http"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        address = (url.hostname or "localhost", url.port or 2375)
    else:
        raise ValueError(f"doctor cannot query a {url.scheme}:// engine")
    with sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\nAccept: application/json\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
        raise ValueError("the engine's reply is not HTTP")
    return int(status[1]), body


def engine(timeout: float = 3.0) -> Engine:
    """The Docker engine at ``DOCKER_HOST`` (default ``unix:///var/run/docker.sock``), asked ``GET /info``.

    Never raises: an engine that does not answer is ``Engine(available=False, problem=...)``.
    The NVIDIA runtime counts as present when ``Runtimes`` names ``nvidia``, or, for a local
    engine, when ``nvidia-container-runtime`` is installed (``--gpus`` uses its hook).
    """
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        status, body = _get(where, "/info", timeout)
        if status != 200:
            return Engine(
                where, False, problem=f"the engine at {where} answered GET /info with HTTP {status}"
            )
        info = json.loads(body)
        runtimes = tuple(sorted((info.get("Runtimes") or {}).keys()))
    except (OSError, ValueError, AttributeError) as exc:
        return Engine(where, False, problem=f"no Docker engine answers at {where}: {exc}")
    local_hook = where.startswith("unix:") and shutil.which("nvidia-container-runtime") is not None
    return Engine(
        where,
        True,
        version=str(info.get("ServerVersion") or ""),
        runtimes=runtimes,
        nvidia_runtime="nvidia" in runtimes or local_hook,
    )


def probe(with_engine: bool = True) -> Host:
    """Everything doctor needs to know about this host."""
    found, driver, source = gpus()
    return Host(found, driver, source, engine() if with_engine else None)


def planned(archs: list[Capability], driver: str | None) -> Host:
    """A host described on the command line (``--gpu``, ``--driver``): no probing at all."""
    gpus_ = tuple(Gpu(i, "", cap, None) for i, cap in enumerate(archs))
    return Host(gpus_, driver, "plan", None)
