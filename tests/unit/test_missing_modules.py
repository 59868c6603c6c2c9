"""A dependency that a command imports lazily and that is missing (a broken install) is one
`error:` line naming the module and how to repair, exit 3, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BLOCK = """
import sys
sys.modules[sys.argv[1]] = None  # any import of it now raises ModuleNotFoundError
from envlock.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def _files(root: Path) -> None:
    (root / "environment.yml").write_text("dependencies: [python=3.11]\n")
    (root / "requirements.txt").write_text("six==1.16.0\n")
    (root / "specs").mkdir()
    (root / "specs" / "geo.toml").write_text(
        'python = "3.11"\n[conda]\nchannels = ["file:///nonexistent"]\npackages = ["x"]\n'
    )


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("textual", ["tui"]),
        ("yaml", ["init", "env", "--from", "environment.yml"]),
        ("packaging", ["init", "req", "--from", "requirements.txt"]),
        ("rattler", ["lock", "specs/geo.toml"]),
    ],
)
def test_missing_module_is_one_error_line(tmp_path: Path, module: str, argv: list[str]) -> None:
    _files(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK, module, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert f"error: envlock needs the Python module '{module}', which is not installed" in lines
    assert lines[-1].startswith("hint: ")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "specs" / "env.toml").exists() and not (tmp_path / "specs" / "req.toml").exists()


def test_the_python_api_is_typed_lazy_and_complete(tmp_path: Path) -> None:
    """`import envlock` stays cheap; envlock.lock/record/rebuild are the library functions."""
    script = (
        "import sys, envlock\n"
        "heavy = [m for m in ('envlock.api', 'envlock.locking', 'envlock.recording') if m in sys.modules]\n"
        "from envlock.api import lock, rebuild, record\n"
        "assert envlock.lock is lock and envlock.record is record and envlock.rebuild is rebuild\n"
        "from envlock import lockfile, rebuilding, recording\n"
        "import envlock.api\n"
        "assert (envlock.lock, envlock.record, envlock.rebuild) == (lock, record, rebuild)  # not shadowed\n"
        "assert issubclass(envlock.EnvlockError, Exception)\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_output_onto_a_full_device_is_one_error_line(tmp_path: Path) -> None:
    with Path("/dev/full").open("w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "envlock", "matrix", "pytorch"],
            stdout=full, stderr=subprocess.PIPE, text=True, check=False, cwd=tmp_path,
        )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot write the output: No space left on device")
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_a_resolver_sees_none_of_the_user_s_other_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving may run an sdist's build backend for its metadata: no token reaches it."""
    from envlock.resolve import isolated_env

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("MY_TOKEN", "t0k3n")
    monkeypatch.setenv("PIP_INDEX_URL", "https://elsewhere/simple")
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    env = isolated_env()
    assert "AWS_SECRET_ACCESS_KEY" not in env and "MY_TOKEN" not in env and "PIP_INDEX_URL" not in env
    assert env["https_proxy"] == "http://proxy:3128" and "PATH" in env
