"""An MLflow model directory: ``MLmodel`` plus the environment files MLflow writes beside it
(``python_env.yaml`` with its ``requirements.txt``, or ``conda.yaml``).  See MLflow's
"Model Dependencies" documentation (https://mlflow.org/docs/latest/model/dependencies.html)."""

from __future__ import annotations

from pathlib import Path

from envlock.errors import SpecError
from envlock.importers import Imported
from envlock.importers.text import read_yaml


def load_mlflow(path: Path) -> Imported:
    """Read the model directory ``path`` (or its ``MLmodel`` file): the virtualenv flavour's
    ``python_env.yaml`` first (pip), else ``conda.yaml``, else ``requirements.txt``.

    Raises:
        SpecError: no MLmodel, invalid YAML, no environment file beside it.
    """
    from envlock.importers.conda import load_environment
    from envlock.importers.requirements import read_into, read_lines

    directory = path if path.is_dir() else path.parent
    mlmodel = read_yaml(directory / "MLmodel")
    if not isinstance(mlmodel, dict):
        raise SpecError(f"{directory / 'MLmodel'}: not an MLmodel file")
    env = (mlmodel.get("flavors") or {}).get("python_function", {}).get("env") or {}
    env = env if isinstance(env, dict) else {"conda": env} if isinstance(env, str) else {}
    python_env = directory / str(env.get("virtualenv") or "python_env.yaml")
    conda_env = directory / str(env.get("conda") or "conda.yaml")
    if python_env.is_file():
        found = Imported(kind="mlflow", source=directory)
        data = read_yaml(python_env)
        if not isinstance(data, dict):
            raise SpecError(f"{python_env}: not a python_env.yaml mapping")
        if data.get("python") is not None:
            found.python = ".".join(str(data["python"]).split(".")[:2])
        deps = data.get("dependencies") or []
        if not isinstance(deps, list):
            raise SpecError(f"{python_env}: 'dependencies' must be a list")
        read_lines(found, "\n".join(str(d) for d in deps), python_env, str(python_env), set())
    elif conda_env.is_file():
        found = load_environment(conda_env)
        found.kind, found.source = "mlflow", directory
    elif (directory / "requirements.txt").is_file():
        found = Imported(kind="mlflow", source=directory)
        read_into(found, directory / "requirements.txt", set())
    else:
        raise SpecError(f"{directory}: no python_env.yaml, conda.yaml or requirements.txt beside MLmodel")
    if found.python is None and isinstance(mlmodel.get("python_version"), str):
        found.python = ".".join(mlmodel["python_version"].split(".")[:2])
    return found
