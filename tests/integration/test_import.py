"""`envlock init --from` on files written by the real tools (pip-compile, uv, the
conda-lock.yml envlock writes in conda-lock's own format, MLflow), then locking the imported
spec: where the source was a lock, the same versions come back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conda_channel import fixture_packages, write_channel
from support import Index, run_envlock, write_spec

from envlock import lockfile as lockmod


def _versions(spec: Path, manager: str = "pip") -> dict[str, str]:
    locked = lockmod.read(spec.with_suffix(".lock"))
    return {p.name: p.version for p in locked.platforms[0].packages if p.manager == manager}


def _import_and_lock(root: Path, source: Path, name: str, index: str | None = None) -> Path:
    """``init --from`` then ``lock``; ``index`` is added as [pip] index-url when the source
    cannot say it (uv's pylock.toml names no index for --index-url)."""
    # the fixture index has no upload times, which exclude-newer would filter out
    proc = run_envlock("init", name, "--from", str(source), "--exclude-newer", "none", cwd=root)
    assert proc.returncode == 0, proc.stderr
    spec = root / "specs" / f"{name}.toml"
    assert proc.stdout.strip() == f"specs/{name}.toml"
    if index is not None:
        assert "without an index" in proc.stderr
        spec.write_text(spec.read_text().replace("[pip]\n", f'[pip]\nindex-url = "{index}"\n'))
    locked = run_envlock("lock", str(spec), cwd=root)
    assert locked.returncode == 0, locked.stderr
    return spec


def test_pip_compile_output_with_hashes_locks_to_the_same_pins(tmp_path: Path, simple_index: Index) -> None:
    (tmp_path / "requirements.in").write_text("envlock-fx-alpha==2.0\nenvlock-fx-beta==1.0\n")
    subprocess.run(
        [sys.executable, "-m", "piptools", "compile", "--quiet", "--generate-hashes", "--no-config",
         "--index-url", simple_index.url, "-o", "requirements.txt", "requirements.in"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    spec = _import_and_lock(tmp_path, tmp_path / "requirements.txt", "compiled")
    assert _versions(spec) == {"envlock-fx-alpha": "2.0", "envlock-fx-beta": "1.0"}
    text = spec.read_text()
    assert "[pip.require-hashes]" in text and simple_index.url in text
    # a hash the index does not serve: the lock is refused, exit 1, and nothing is written
    spec.with_suffix(".lock").unlink()
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if '"sha256:' in line)
    lines[first] = '    "sha256:' + "0" * 64 + '",'
    spec.write_text("\n".join(lines) + "\n")
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "require-hashes" in proc.stderr and "Traceback" not in proc.stderr
    assert not spec.with_suffix(".lock").exists()


def test_requirements_in_with_ranges(tmp_path: Path, simple_index: Index) -> None:
    (tmp_path / "requirements.in").write_text(f"--index-url {simple_index.url}\nenvlock-fx-alpha>=1,<3\n")
    spec = _import_and_lock(tmp_path, tmp_path / "requirements.in", "ranges")
    assert _versions(spec) == {"envlock-fx-alpha": "2.0", "envlock-fx-beta": "1.1"}


def _uv(*args: str, cwd: Path) -> None:
    from envlock.resolve.uv import binary

    proc = subprocess.run([binary(), *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_uv_pylock_and_uv_lock_lock_to_the_same_pins(tmp_path: Path, simple_index: Index) -> None:
    (tmp_path / "requirements.in").write_text("envlock-fx-alpha==2.0\nenvlock-fx-beta==1.0\n")
    _uv("pip", "compile", "--no-config", "--index-url", simple_index.url, "--python-version", "3.11",
        "-o", "pylock.toml", "requirements.in", cwd=tmp_path)  # fmt: skip
    spec = _import_and_lock(tmp_path, tmp_path / "pylock.toml", "frompylock", simple_index.url)
    assert _versions(spec) == {"envlock-fx-alpha": "2.0", "envlock-fx-beta": "1.0"}

    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nversion = "0.1"\nrequires-python = ">=3.11"\n'
        'dependencies = ["envlock-fx-alpha==2.0", "envlock-fx-beta==1.0"]\n'
    )
    _uv("lock", "--no-config", "--default-index", simple_index.url, cwd=project)
    spec = _import_and_lock(tmp_path, project / "uv.lock", "fromuv")
    assert _versions(spec) == {"envlock-fx-alpha": "2.0", "envlock-fx-beta": "1.0"}
    assert "proj" not in _versions(spec)


def test_pyproject_with_an_optional_group(tmp_path: Path, simple_index: Index) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "proj"\nrequires-python = ">=3.11"\ndependencies = ["envlock-fx-beta<1.1"]\n'
        '[project.optional-dependencies]\nextra = ["envlock-fx-gamma"]\n'
    )
    proc = run_envlock(
        "init", "--from", "pyproject.toml", "--extra", "extra", "--exclude-newer", "none", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    spec = tmp_path / "specs" / "proj.toml"
    text = spec.read_text().replace("[pip]\n", f'[pip]\nindex-url = "{simple_index.url}"\n')
    spec.write_text(text)
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    assert _versions(spec) == {"envlock-fx-beta": "1.0", "envlock-fx-gamma": "1.0"}


def test_conda_lock_yml_round_trips_to_the_same_versions(tmp_path: Path) -> None:
    channel = write_channel(tmp_path / "channel", fixture_packages())
    first = write_spec(
        tmp_path,
        "orig",
        f'python = "3.11"\nplatforms = ["linux-64", "osx-arm64"]\n[conda]\nchannels = ["{channel}"]\n'
        'packages = ["fx-a", "fx-tool"]\n',
    )
    assert run_envlock("lock", str(first), cwd=tmp_path).returncode == 0
    source = first.with_name(
        "orig.conda-lock.yml"
    )  # conda-lock's own format (tests/integration/test_conda.py)
    spec = _import_and_lock(tmp_path, source, "again")
    assert _versions(spec, "conda") == _versions(first, "conda")
    assert lockmod.read(spec.with_suffix(".lock")).platform_names == ("linux-64", "osx-arm64")


def test_mlflow_model_directory_written_by_mlflow(tmp_path: Path) -> None:
    script = (
        "import mlflow.pyfunc\n"
        "class M(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input):\n"
        "        return model_input\n"
        "mlflow.pyfunc.save_model('model', python_model=M(), pip_requirements=['six==1.16.0'])\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, capture_output=True)
    proc = run_envlock("init", "served", "--from", "model", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "specs" / "served.toml").read_text()
    assert '"six==1.16.0"' in text and "mlflow==" in text
    assert f'python = "{sys.version_info.major}.{sys.version_info.minor}"' in text


@pytest.mark.parametrize("source", ["missing.txt", "."])
def test_cli_errors_are_one_line(tmp_path: Path, source: str) -> None:
    proc = run_envlock("init", "x", "--from", source, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "specs").exists()


def test_literal_credentials_in_find_links_and_direct_urls_become_variables_that_lock(
    tmp_path: Path, private_index: Index
) -> None:
    """A requirements file with the password of a basic-auth server in a --find-links URL and a
    direct reference: the spec gets ${VAR}s (named in the warnings), never the secret, and
    locks against the real server once the user exports them."""
    secret = private_index.password or ""
    assert secret
    creds = f"{private_index.user}:{secret}"
    host = private_index.url.split("/")[2]
    beta = next(
        p.name for p in (private_index.root / "files").iterdir() if p.name.startswith("envlock_fx_beta-1.1")
    )
    (tmp_path / "requirements.txt").write_text(
        "--no-index\n"
        f"--find-links {private_index.url_with(creds)}/envlock-fx-alpha/\n"
        "envlock-fx-alpha==1.0\n"
        f"envlock-fx-beta @ http://{creds}@{host}/files/{beta}\n"
    )
    init = run_envlock("init", "priv", "--from", "requirements.txt", "--exclude-newer", "none", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    spec = tmp_path / "specs" / "priv.toml"
    user, password = "HOST_127_0_0_1_USER", "HOST_127_0_0_1_PASSWORD"
    assert f"export {user} and {password} before locking" in init.stderr
    assert secret not in spec.read_text() and secret not in init.stderr
    env = {user: private_index.user or "", password: secret}
    locked = run_envlock("lock", str(spec), cwd=tmp_path, env=env)
    assert locked.returncode == 0, locked.stderr
    assert _versions(spec) == {"envlock-fx-alpha": "1.0", "envlock-fx-beta": "1.1"}
    for written in (tmp_path / "specs").iterdir():
        assert secret not in written.read_text(), written
