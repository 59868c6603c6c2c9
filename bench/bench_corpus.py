"""Benchmark: real ML projects' dependency files -> spec -> lock -> image -> import (issue 11).

    python bench/bench_corpus.py [--only NAME ...] [--no-build] [--cpu] [--system] [--keep]
                                 [--exclude-newer DATE] [--min-free-gb N]

Each project under bench/corpus/<project>/ holds one public project's dependency file
(requirements.txt, pyproject.toml or environment.yml) and a SOURCE line naming its
repository, path, commit and license.  For each project, in a fresh directory:

  1. ``envlock init NAME --from FILE --exclude-newer DATE`` (a fixed date, so reruns agree);
  2. ``envlock lock``;
  3. ``envlock build --load`` into a Docker engine (a private dockerd on a unix socket that
     this script starts, or the user's ``DOCKER_HOST``), refusing to start under
     ``--min-free-gb`` of free disk;
  4. ``docker run --network none IMAGE python -c ...`` importing the project's top-level
     modules one by one, so a failure names the module.

Each stage's outcome, seconds and last error line are recorded, with a class for a
failure: ``envlock`` (envlock's fault), ``project`` (the project's own pins are
unsatisfiable or too old for the Python, it needs a GPU, a system library its file does not
declare, or the network at import), or ``environment`` (this machine: no conda channel, no
download.pytorch.org or other non-PyPI host).  The class comes from the error text
(:func:`classify`); unknown failures count as envlock's until someone reads them.  Prints a
Markdown table and writes bench/results/corpus.json.  Images are removed and the store is
garbage-collected after each project unless ``--keep``.

``--cpu`` adds a local wheelhouse with CPU builds of torch (``--cpu-wheels``, default
/opt/wheels) as ``find-links`` to each spec: PyPI's default torch is the CUDA build (about
900 MB plus 3 GB of nvidia wheels) and download.pytorch.org is not reachable from the
project's machines.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = HERE / "corpus"
RESULTS = HERE / "results" / "corpus.json"


@dataclass(frozen=True)
class Project:
    """One corpus entry: its directory under bench/corpus, the file imported, the modules."""

    name: str
    kind: str
    file: str
    imports: tuple[str, ...]
    extras: tuple[str, ...] = ()
    # Debian packages its imports need that no Python dependency file can declare (found by
    # this benchmark); added to [image] system only with --system
    system: tuple[str, ...] = ()


PROJECTS: tuple[Project, ...] = (
    Project("timm", "vision", "requirements.txt", ("torch", "torchvision", "yaml")),
    Project(
        "whisper",
        "audio / speech recognition",
        "requirements.txt",
        ("numba", "numpy", "torch", "tqdm", "more_itertools", "tiktoken", "triton", "scipy", "pytest"),
    ),
    Project(
        "torchaudio",
        "audio",
        "requirements.txt",
        ("numpy", "kaldi_io", "flake8", "pytest", "librosa", "scipy"),
    ),
    Project(
        "speechbrain",
        "audio / speech toolkit",
        "requirements.txt",
        (
            "h5py",
            "joblib",
            "numpy",
            "yaml",
            "ruamel.yaml",
            "scipy",
            "sentencepiece",
            "soundfile",
            "sphinx",
            "torch",
        ),
    ),
    Project(
        "transformers-text-classification",
        "language model fine-tuning (HF example)",
        "requirements.txt",
        (
            "accelerate",
            "datasets",
            "sentencepiece",
            "scipy",
            "sklearn",
            "google.protobuf",
            "torch",
            "evaluate",
        ),
    ),
    Project(
        "sentence-transformers",
        "text embeddings",
        "pyproject.toml",
        ("transformers", "tqdm", "torch", "sklearn", "scipy", "huggingface_hub", "PIL"),
    ),
    Project(
        "nanochat",
        "language model training (LLM)",
        "pyproject.toml",
        (
            "datasets",
            "fastapi",
            "ipykernel",
            "kernels",
            "matplotlib",
            "psutil",
            "dotenv",
            "regex",
            "rustbpe",
            "scipy",
            "tabulate",
            "tiktoken",
            "tokenizers",
            "torch",
            "transformers",
            "uvicorn",
            "wandb",
            "zstandard",
        ),
    ),
    Project(
        "diffusers-text-to-image",
        "diffusion (HF example)",
        "requirements.txt",
        ("accelerate", "torchvision", "transformers", "datasets", "ftfy", "tensorboard", "jinja2"),
    ),
    Project(
        "ultralytics",
        "vision / detection (YOLO)",
        "pyproject.toml",
        (
            "matplotlib",
            "numpy",
            "cv2",
            "PIL",
            "yaml",
            "requests",
            "scipy",
            "torch",
            "torchvision",
            "psutil",
            "cpuinfo",
            "thop",
            "pandas",
            "seaborn",
        ),
        system=("libgl1", "libglib2.0-0", "libxcb1"),
    ),
    Project(
        "lightning-hydra-template",
        "Hydra + Lightning training template",
        "requirements.txt",
        (
            "torch",
            "torchvision",
            "pytorch_lightning",
            "torchmetrics",
            "hydra",
            "wandb",
            "rich",
            "dotenv",
            "sklearn",
            "pandas",
            "seaborn",
        ),
    ),
    Project(
        "vit-jax",
        "JAX / Flax vision transformer",
        "requirements.txt",
        (
            "absl",
            "chex",
            "clu",
            "einops",
            "flax",
            "jax",
            "ml_collections",
            "pandas",
            "tensorflow",
            "tensorflow_datasets",
            "tensorflow_probability",
        ),
    ),
    Project(
        "flax-mnist",
        "JAX / Flax example (2022 pins)",
        "requirements.txt",
        (
            "absl",
            "clu",
            "flax",
            "jax",
            "jaxlib",
            "ml_collections",
            "optax",
            "tensorflow",
            "tensorflow_datasets",
        ),
    ),
    Project(
        "tf-models-official",
        "TensorFlow model garden",
        "requirements.txt",
        (
            "tensorflow_hub",
            "tensorflow_datasets",
            "tensorflow_addons",
            "tensorflow_model_optimization",
            "tf_slim",
            "gin",
            "cv2",
            "sentencepiece",
            "seqeval",
            "pandas",
            "googleapiclient",
            "google.cloud.bigquery",
        ),
    ),
    Project(
        "pycaret",
        "tabular (scikit-learn, xgboost, lightgbm, catboost)",
        "requirements.txt",
        (
            "pandas",
            "sklearn",
            "xgboost",
            "lightgbm",
            "catboost",
            "plotly",
            "umap",
            "gensim",
            "spacy",
            "nltk",
            "mlxtend",
            "pyod",
            "imblearn",
            "mlflow",
            "yellowbrick",
        ),
        system=("libgomp1",),
    ),
    Project(
        "stable-diffusion",
        "diffusion (conda environment.yaml)",
        "environment.yaml",
        (
            "torch",
            "torchvision",
            "numpy",
            "albumentations",
            "cv2",
            "pytorch_lightning",
            "transformers",
            "kornia",
        ),
    ),
)


@dataclass
class Outcome:
    """What happened to one project; ``stage`` is the first stage that failed ('' when none)."""

    name: str
    kind: str
    source: str
    init: bool | None = None
    lock: bool | None = None
    build: bool | None = None
    imports: bool | None = None
    packages: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    image_mb: float | None = None
    stage: str = ""
    error: str = ""
    cls: str = ""
    warnings: list[str] = field(default_factory=list)
    detail: str = ""  # the failing stage's last output, for classifying again (--report)


# (pattern, class) tried in order against the failing stage's output; first match wins.
RULES: tuple[tuple[str, str], ...] = (
    (
        r"download\.pytorch\.org|storage\.googleapis\.com|conda\.anaconda\.org|repo\.anaconda\.com",
        "environment",
    ),
    (r"channel|conda", "environment"),
    (r"cannot be built from source", "envlock"),
    # --cpu only: PyPI's torchvision is built against PyPI's (CUDA) torch; the matching CPU
    # torchvision is on download.pytorch.org, which this machine cannot reach
    (r"operator torchvision::\w+ does not exist", "environment"),
    # an old release chosen for a loose pin whose metadata does not cap pyarrow
    (r"module 'pyarrow' has no attribute", "project"),
    # tensorflow-probability imports tf_keras but declares it only in its [tf] extra
    (r"No module named 'tf_keras'", "project"),
    # tensorflow-hub imports pkg_resources without declaring setuptools; tensorflow-addons
    # (end of life) imports Keras 2 internals that Keras 3 removed
    (r"No module named 'pkg_resources'|No module named 'keras\.src\.engine'", "project"),
    (r"No solution found|unsatisfiable|no version of|requirements are unsatisfiable", "project"),
    (r"Python>=|Python<|requires-python|only .* available for Python", "project"),
    (r"libcuda|NVIDIA driver|CUDA driver|no CUDA GPUs", "project"),
    (r"lib\w+\.so[.\d]*: cannot open shared object file", "project"),
    (r"Temporary failure in name resolution|Network is unreachable|Max retries exceeded", "project"),
)


def classify(text: str) -> str:
    """The class of a failure from its output: environment, project or (by default) envlock."""
    for pattern, cls in RULES:
        if re.search(pattern, text):
            return cls
    return "envlock"


def error_line(text: str) -> str:
    """The most telling line of a failure: the first ``error:`` line, else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("error:") or "Error:" in ln or ln.startswith("×"):
            return ln[:300]
    return lines[-1][:300] if lines else ""


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str, str, float]:
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return 124, out, err + f"\nerror: timed out after {timeout:.0f} s", time.perf_counter() - t0
    return proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0


def envlock(*args: str) -> list[str]:
    return [sys.executable, "-m", "envlock", *args]


def start_dockerd(root: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    """The user's DOCKER_HOST, else a private dockerd (the test suite's: no bridge, no iptables)."""
    if os.environ.get("DOCKER_HOST"):
        return None, os.environ["DOCKER_HOST"]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
    from support import start_dockerd as start_private

    root.mkdir(parents=True, exist_ok=True)
    proc, info = start_private(root)
    return proc, info.host


def import_script(modules: tuple[str, ...]) -> str:
    """Python source that imports each module, prints each failure, exits 1 if any failed."""
    return (
        "import importlib, sys\n"
        "bad = 0\n"
        f"for m in {list(modules)!r}:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except BaseException as e:\n"
        "        bad += 1\n"
        "        print(f'error: import {m}: {type(e).__name__}: {e}'.splitlines()[0])\n"
        "sys.exit(1 if bad else 0)\n"
    )


def cpu_torch(spec: Path, wheels: Path) -> str:
    """Offer the CPU torch wheels in ``wheels`` to the spec: ``find-links`` first, and, where the
    spec's own torch requirement allows the newest of them, a pin to it (PyPI's newer CUDA
    releases would win a plain range).  A text edit: the spec is envlock's own output.
    Returns the pin added, or ''."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import parse_wheel_filename

    text = spec.read_text()
    link = f"find-links = [{json.dumps(str(wheels))}]\n"
    if "\nfind-links = [" in text:
        text = text.replace("\nfind-links = [", f"\nfind-links = [{json.dumps(str(wheels))}, ", 1)
    elif "\n[pip]\n" in text:
        text = text.replace("\n[pip]\n", "\n[pip]\n" + link, 1)
    else:
        text += "\n[pip]\n" + link
    versions = sorted(parse_wheel_filename(w.name)[1] for w in wheels.glob("torch-*.whl"))
    wanted = [
        Requirement(r)
        for r in tomllib.loads(text).get("pip", {}).get("packages", [])
        if Requirement(r).name == "torch"
    ]
    pin = ""
    if versions and wanted and all(r.specifier.contains(versions[-1], prereleases=True) for r in wanted):
        pin = f"torch=={versions[-1]}"
        # appended last: uv takes requirements in order, and a pin first changes its choices
        end = _list_end(text, text.index("packages = [", text.index("\n[pip]\n")))
        text = text[:end].rstrip().rstrip(",") + f", {json.dumps(pin)}" + text[end:]
    spec.write_text(text)
    return pin


def add_system(spec: Path, packages: tuple[str, ...]) -> None:
    """Add ``packages`` as the spec's ``[image] system`` (a text edit of envlock's own output)."""
    text = spec.read_text()
    line = f"system = {json.dumps(list(packages))}\n"
    text = (
        text.replace("\n[image]\n", "\n[image]\n" + line, 1)
        if "\n[image]\n" in text
        else text + "\n[image]\n" + line
    )
    spec.write_text(text)


def _list_end(text: str, at: int) -> int:
    """Index of the ``]`` closing the TOML array that opens at the first ``[`` from ``at``
    (brackets inside basic strings, as in ``"coverage[toml]"``, do not count)."""
    i = text.index("[", at) + 1
    in_string = False
    while True:
        c = text[i]
        if in_string:
            if c == "\\":
                i += 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c == "]":
            return i
        i += 1


def free_gb(path: Path) -> float:
    return shutil.disk_usage(path).free / 1e9


def bench_one(p: Project, args: argparse.Namespace, work: Path, env: dict[str, str]) -> Outcome:
    src = CORPUS / p.name / p.file
    source = (CORPUS / p.name / "SOURCE").read_text().splitlines()[0].split(";")[0]
    out = Outcome(p.name, p.kind, source)
    cwd = work / p.name
    cwd.mkdir()

    def fail(stage: str, text: str) -> Outcome:
        out.stage, out.error, out.cls = stage, error_line(text), classify(text)
        out.detail = text[-3000:]
        return out

    cmd = envlock("init", p.name, "--from", str(src), "--exclude-newer", args.exclude_newer)
    for extra in p.extras:
        cmd += ["--extra", extra]
    rc, so, se, took = run(cmd, cwd, env, 120)
    out.seconds["init"] = round(took, 2)
    out.warnings = [ln for ln in se.splitlines() if ln.startswith("warning:")]
    out.init = rc == 0
    if rc != 0:
        return fail("init", so + se)
    spec = cwd / "specs" / f"{p.name}.toml"
    if args.cpu and args.cpu_wheels.is_dir():
        pin = cpu_torch(spec, args.cpu_wheels)
        if pin:
            out.warnings.append(f"--cpu: added {pin} from {args.cpu_wheels}")

    if args.system and p.system:
        add_system(spec, p.system)
        out.warnings.append(f"--system: [image] system = {list(p.system)}")
    rc, so, se, took = run(envlock("lock", str(spec)), cwd, env, args.lock_timeout)
    out.seconds["lock"] = round(took, 2)
    out.lock = rc == 0
    if rc != 0:
        return fail("lock", so + se)
    lock = spec.with_suffix(".lock").read_text()
    out.packages = len(re.findall(r"^\[\[", lock, flags=re.M))
    if args.no_build:
        return out

    if free_gb(work) < args.min_free_gb:
        out.build = None
        out.stage, out.error, out.cls = "build", f"not started: {free_gb(work):.0f} GB free", "environment"
        return out
    rc, so, se, took = run(envlock("build", "--load", str(spec)), cwd, env, args.build_timeout)
    out.seconds["build"] = round(took, 2)
    out.build = rc == 0
    if rc != 0:
        return fail("build", so + se)
    image = so.strip().splitlines()[-1]
    size = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Size}}", image], env=env, capture_output=True, text=True
    )
    if size.returncode == 0:
        out.image_mb = round(int(size.stdout.strip()) / 1e6)
    rc, so, se, took = run(
        ["docker", "run", "--rm", "--network", "none", image, "python", "-c", import_script(p.imports)],
        cwd,
        env,
        600,
    )
    out.seconds["import"] = round(took, 2)
    out.imports = rc == 0
    if rc != 0:
        fail("import", so + se)
    if not args.keep:
        subprocess.run(["docker", "rmi", "-f", image], env=env, capture_output=True)
    return out


def cleanup(work: Path, env: dict[str, str]) -> None:
    """Forget every image and artifact in the store but keep its bases (gc from an empty directory, no git: --force)."""
    empty = work / "empty"
    empty.mkdir(exist_ok=True)
    subprocess.run(envlock("store", "gc", "--force"), cwd=empty, env=env, capture_output=True)


def mark(ok: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "–"}[ok]


def table(outcomes: list[Outcome]) -> str:
    rows = [
        "| project | kind | init | lock | pkgs | build | import | lock s | build s | image MB | failure class | error |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        rows.append(
            f"| {o.name} | {o.kind} | {mark(o.init)} | {mark(o.lock)} | {o.packages or ''} | {mark(o.build)} | "
            f"{mark(o.imports)} | {o.seconds.get('lock', '')} | {o.seconds.get('build', '')} | "
            f"{o.image_mb or ''} | {o.cls} | {o.error.replace('|', '/')[:160]} |"
        )
    return "\n".join(rows)


def shares(outcomes: list[Outcome]) -> dict[str, str]:
    n = len(outcomes)
    built = [o for o in outcomes if o.build is not None]
    return {
        "projects": str(n),
        "init": f"{sum(bool(o.init) for o in outcomes)}/{n}",
        "lock": f"{sum(bool(o.lock) for o in outcomes)}/{n}",
        "build (of those tried)": f"{sum(bool(o.build) for o in built)}/{len(built)}",
        "import (of those built)": f"{sum(bool(o.imports) for o in built if o.build)}/{sum(bool(o.build) for o in built)}",
        "failures by class": json.dumps(
            {
                c: sum(o.cls == c for o in outcomes)
                for c in ("envlock", "project", "environment")
                if any(o.cls == c for o in outcomes)
            }
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="this project only (repeatable)"
    )
    parser.add_argument("--no-build", action="store_true", help="init and lock only")
    parser.add_argument("--cpu", action="store_true", help="add --cpu-wheels as find-links (CPU torch)")
    parser.add_argument("--cpu-wheels", type=Path, default=Path("/opt/wheels"))
    parser.add_argument("--system", action="store_true", help="add each project's known Debian packages")
    parser.add_argument("--keep", action="store_true", help="keep images, the store and the work directory")
    parser.add_argument("--exclude-newer", default="2026-11-01")
    parser.add_argument("--min-free-gb", type=float, default=20.0)
    parser.add_argument("--lock-timeout", type=float, default=900)
    parser.add_argument("--build-timeout", type=float, default=3600)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="classify a results file again and print its table; runs nothing",
    )
    args = parser.parse_args()
    if args.report:
        data = json.loads(args.report.read_text())
        outcomes = [Outcome(**o) for o in data["projects"]]
        for o in outcomes:
            if o.stage:
                o.cls = classify(o.detail or o.error)
        data["projects"], data["shares"] = [asdict(o) for o in outcomes], shares(outcomes)
        args.report.write_text(json.dumps(data, indent=2) + "\n")
        print(table(outcomes))
        print()
        for k, v in shares(outcomes).items():
            print(f"- {k}: {v}")
        return

    known = {p.name: p for p in PROJECTS}
    unknown = [n for n in args.only if n not in known]
    if unknown:
        raise SystemExit(f"unknown project(s) {', '.join(unknown)}; known: {', '.join(known)}")
    projects = [known[n] for n in args.only] if args.only else list(PROJECTS)

    work = Path(tempfile.mkdtemp(prefix="envlock-bench-corpus-"))
    env = {**os.environ, "ENVLOCK_HOME": str(work / "store"), "PYTHONPATH": str(ROOT)}
    dockerd: subprocess.Popen[bytes] | None = None
    outcomes: list[Outcome] = []
    try:
        if not args.no_build:
            dockerd, env["DOCKER_HOST"] = start_dockerd(work / "dockerd")
        for p in projects:
            o = bench_one(p, args, work, env)
            outcomes.append(o)
            print(
                f"{o.name}: init={mark(o.init)} lock={mark(o.lock)} build={mark(o.build)} "
                f"import={mark(o.imports)} {o.seconds} {o.cls} {o.error}",
                file=sys.stderr,
                flush=True,
            )
            if not args.keep and not args.no_build:
                cleanup(work, env)
    finally:
        if dockerd is not None:
            dockerd.terminate()
            dockerd.wait(60)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}", file=sys.stderr)
    print(table(outcomes))
    print()
    for k, v in shares(outcomes).items():
        print(f"- {k}: {v}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(
        json.dumps(
            {
                "exclude_newer": args.exclude_newer,
                "cpu": args.cpu,
                "no_build": args.no_build,
                "shares": shares(outcomes),
                "projects": [asdict(o) for o in outcomes],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
