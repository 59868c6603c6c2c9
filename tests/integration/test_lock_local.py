"""Locking against a wheelhouse and an HTTP index built in the test, with the real uv,
pip-tools and pip."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from support import Index, plain_uv_pins, run_envlock, sha256_file, write_spec

from envlock import lockfile as lockmod


def _find_links_spec(tmp_path: Path, wheelhouse: Path, packages: str, extra: str = "") -> Path:
    local = tmp_path / "wheels"
    if not local.exists():
        local.symlink_to(wheelhouse, target_is_directory=True)
    return write_spec(
        tmp_path,
        "local",
        f"""python = "3.11"
platforms = ["linux-64"]
{extra}
[pip]
packages = [{packages}]
find-links = ["../wheels"]
no-index = true
""",
    )


def _locked_names(spec: Path) -> dict[str, str]:
    lock = lockmod.read(spec.with_suffix(".lock"))
    return {p.name: p.version for p in lock.platforms[0].packages}


def test_lock_from_find_links_pins_hashes_and_writes_exports(tmp_path: Path, wheelhouse: Path) -> None:
    spec = _find_links_spec(tmp_path, wheelhouse, '"envlock-fx-alpha"')
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("sha256:")
    lock = lockmod.read(spec.with_suffix(".lock"))
    packages = {p.name: p for p in lock.platforms[0].packages}
    assert set(packages) == {"envlock-fx-alpha", "envlock-fx-beta"}
    alpha = packages["envlock-fx-alpha"]
    assert alpha.version == "2.0"
    # relative to the spec, so the lock is the same on every checkout
    assert alpha.url == "../wheels/envlock_fx_alpha-2.0-py3-none-any.whl"
    assert alpha.sha256 == sha256_file(wheelhouse / "envlock_fx_alpha-2.0-py3-none-any.whl")
    assert (tmp_path / "specs/local.linux-64.requirements.txt").is_file()
    assert (tmp_path / "specs/pylock.local.toml").is_file()
    assert run_envlock("verify", str(spec), cwd=tmp_path).returncode == 0


def test_target_platform_not_host_picks_that_platforms_wheel(tmp_path: Path, wheelhouse: Path) -> None:
    spec = _find_links_spec(tmp_path, wheelhouse, '"envlock-fx-gamma"')
    text = spec.read_text().replace('platforms = ["linux-64"]', 'platforms = ["linux-64", "osx-arm64"]')
    spec.write_text(text)
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lock = lockmod.read(spec.with_suffix(".lock"))
    files = {p.name: p.packages[0].filename for p in lock.platforms}
    assert files == {
        "linux-64": "envlock_fx_gamma-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "osx-arm64": "envlock_fx_gamma-1.0-cp311-cp311-macosx_11_0_arm64.whl",
    }
    from packaging.pylock import Pylock

    Pylock.from_dict(tomllib.loads((tmp_path / "specs/pylock.local.toml").read_text()))


def test_requirements_export_installs_with_pip_require_hashes(tmp_path: Path, wheelhouse: Path) -> None:
    spec = _find_links_spec(tmp_path, wheelhouse, '"envlock-fx-alpha"')
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--isolated",
            "--target",
            str(target),
            "--require-hashes",
            "-r",
            str(tmp_path / "specs/local.linux-64.requirements.txt"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path / "specs",
        env={k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
    )
    assert proc.returncode == 0, proc.stderr
    assert (target / "envlock_fx_alpha/__init__.py").read_text() == "__version__ = '2.0'\n"


def test_tampered_export_makes_pip_refuse(tmp_path: Path, wheelhouse: Path) -> None:
    spec = _find_links_spec(tmp_path, wheelhouse, '"envlock-fx-beta==1.0"')
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    req = tmp_path / "specs/local.linux-64.requirements.txt"
    req.write_text(req.read_text().replace("--hash=sha256:", "--hash=sha256:0", 1)[:-2] + "\n")
    bad = run_envlock("verify", str(spec), cwd=tmp_path)
    assert bad.returncode == 1
    assert "local.linux-64.requirements.txt: export does not match the lock" in bad.stdout


def test_unchanged_spec_relocks_without_resolving_or_writing(tmp_path: Path, wheelhouse: Path) -> None:
    spec = _find_links_spec(tmp_path, wheelhouse, '"envlock-fx-alpha"')
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    lock = spec.with_suffix(".lock")
    before = (lock.read_bytes(), lock.stat().st_mtime_ns)
    # make resolution impossible: if envlock resolved again, it would fail
    (tmp_path / "wheels").unlink()
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "is up to date" in proc.stderr
    assert (lock.read_bytes(), lock.stat().st_mtime_ns) == before


def test_upgrade_of_same_resolution_gives_identical_bytes(tmp_path: Path, wheelhouse: Path) -> None:
    spec = _find_links_spec(tmp_path, wheelhouse, '"envlock-fx-alpha"')
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    files = sorted((tmp_path / "specs").iterdir())
    before = {f.name: f.read_bytes() for f in files}
    proc = run_envlock("lock", "--upgrade", str(spec), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {f.name: f.read_bytes() for f in sorted((tmp_path / "specs").iterdir())} == before


def test_same_lock_under_hostile_environment(tmp_path: Path, wheelhouse: Path) -> None:
    """Another directory, umask, time zone, locale, temp dir and clock: same bytes."""
    body = '"envlock-fx-alpha", "envlock-fx-gamma"'
    a = tmp_path / "a"
    b = tmp_path / "deep dir" / "b"
    results = []
    for root, env in (
        (a, {"SOURCE_DATE_EPOCH": "1700000000"}),
        (
            b,
            {
                "SOURCE_DATE_EPOCH": "1700000000",
                "TZ": "Pacific/Kiritimati",
                "LC_ALL": "C",
                "LANG": "C",
                "TMPDIR": str(tmp_path / "tmp"),
            },
        ),
    ):
        root.mkdir(parents=True)
        (tmp_path / "tmp").mkdir(exist_ok=True)
        spec = _find_links_spec(root, wheelhouse, body)
        umask = "077" if root == b else "022"
        proc = subprocess.run(
            [
                "sh",
                "-c",
                f'umask {umask} && exec "$0" -m envlock lock specs/local.toml',
                sys.executable,
            ],
            cwd=root,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        results.append({f.name: f.read_bytes() for f in sorted(spec.parent.iterdir())})
    assert results[0] == results[1]
    mode = (b / "specs/local.lock").stat().st_mode & 0o777
    assert mode == 0o600  # files follow the user's umask


def test_private_index_credentials_come_from_env_and_never_reach_files(
    tmp_path: Path, private_index: Index
) -> None:
    url = private_index.url_with("${FX_USER}:${FX_TOKEN}")
    spec = write_spec(
        tmp_path,
        "private",
        f"""python = "3.11"
[pip]
packages = ["envlock-fx-alpha==1.0"]
index-url = "{url}"
""",
    )
    missing = run_envlock("lock", str(spec), cwd=tmp_path)
    assert missing.returncode == 2
    assert "error: environment variable FX_USER is not set" in missing.stderr
    assert not spec.with_suffix(".lock").exists()

    env = {"FX_USER": private_index.user or "", "FX_TOKEN": private_index.password or ""}
    proc = run_envlock("lock", str(spec), cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    for written in (tmp_path / "specs").iterdir():
        text = written.read_text()
        assert "s3cret-t0ken" not in text and "ci-user" not in text, written
    lock = lockmod.read(spec.with_suffix(".lock"))
    assert lock.platforms[0].packages[0].url.startswith("http://127.0.0.1:")
    assert "--index-url http://${FX_USER}:${FX_TOKEN}@127.0.0.1" in lock.platforms[0].pip_options[0]


def test_unsatisfiable_spec_is_exit_2_and_writes_nothing(tmp_path: Path, simple_index: Index) -> None:
    spec = write_spec(
        tmp_path,
        "broken",
        f"""python = "3.11"
[pip]
packages = ["envlock-fx-alpha==2.0", "envlock-fx-beta<1.0"]
index-url = "{simple_index.url}"
""",
    )
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith(("error:", "hint:"))]
    assert lines[0].startswith("error: no solution for linux-64 / Python 3.11")
    assert "envlock-fx-beta" in lines[0]
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in spec.parent.iterdir()) == ["broken.toml"]


def test_unreachable_index_is_exit_3(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        "offline",
        """python = "3.11"
[pip]
packages = ["envlock-fx-alpha"]
index-url = "http://127.0.0.1:9/simple"
""",
    )
    proc = run_envlock("lock", str(spec), cwd=tmp_path, env={"UV_HTTP_RETRIES": "0"})
    assert proc.returncode == 3, proc.stderr
    assert "\nerror: cannot reach the package index at http://127.0.0.1:9/simple/" in proc.stderr
    assert not spec.with_suffix(".lock").exists()


def test_bad_spec_is_exit_2_with_file_and_line(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "typo", 'python = "3.11"\n\n[pip]\npackges = ["x"]\n')
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-2:] == [
        f"error: {spec}:4: unknown key 'packges' in [pip]",
        "hint: did you mean 'packages'? valid keys: packages, index-url, indexes, find-links, "
        "no-index, exclude-newer, require-hashes",
    ]


def test_pip_tools_engine_gives_the_same_pins_as_uv(tmp_path: Path, simple_index: Index) -> None:
    body = f"""python = "{sys.version_info.major}.{sys.version_info.minor}"
[pip]
packages = ["envlock-fx-alpha", "envlock-fx-gamma"]
index-url = "{simple_index.url}"
"""
    uv_dir, pt_dir = tmp_path / "uv", tmp_path / "pt"
    uv_spec, pt_spec = write_spec(uv_dir, "x", body), write_spec(pt_dir, "x", body)
    assert run_envlock("lock", str(uv_spec), cwd=uv_dir).returncode == 0
    proc = run_envlock("lock", "--resolver", "pip-tools", str(pt_spec), cwd=pt_dir)
    assert proc.returncode == 0, proc.stderr
    uv_lock = lockmod.read(uv_spec.with_suffix(".lock"))
    pt_lock = lockmod.read(pt_spec.with_suffix(".lock"))
    assert uv_lock.env_id == pt_lock.env_id
    # the same files; uv also names the other files of each version for the target (other-hashes)
    same = [replace(p, other_hashes=()) for p in uv_lock.platforms[0].packages]
    assert same == list(pt_lock.platforms[0].packages)
    assert "pip-tools" in pt_lock.meta["resolver"]


def test_pip_tools_refuses_a_foreign_target(tmp_path: Path, simple_index: Index) -> None:
    spec = write_spec(
        tmp_path,
        "mac",
        f"""python = "3.11"
platforms = ["osx-arm64"]
[pip]
packages = ["envlock-fx-alpha"]
index-url = "{simple_index.url}"
""",
    )
    proc = run_envlock("lock", "--resolver", "pip-tools", str(spec), cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: pip-tools resolves for the interpreter running it" in proc.stderr
    assert "hint: use the default resolver (--resolver uv)" in proc.stderr


def test_pins_equal_plain_uv_pip_compile(tmp_path: Path, simple_index: Index) -> None:
    spec = write_spec(
        tmp_path,
        "cross",
        f"""python = "3.11"
[pip]
packages = ["envlock-fx-alpha", "envlock-fx-gamma"]
index-url = "{simple_index.url}"
""",
    )
    assert run_envlock("lock", str(spec), cwd=tmp_path).returncode == 0
    plain = plain_uv_pins(
        tmp_path, ["envlock-fx-alpha", "envlock-fx-gamma"], "--default-index", simple_index.url
    )
    assert _locked_names(spec) == plain


@pytest.mark.parametrize("resolver", ["uv", "pip-tools"])
def test_lock_covers_every_dependency_once(tmp_path: Path, simple_index: Index, resolver: str) -> None:
    spec = write_spec(
        tmp_path,
        "deps",
        f"""python = "{sys.version_info.major}.{sys.version_info.minor}"
[pip]
packages = ["envlock-fx-alpha>=2"]
index-url = "{simple_index.url}"
""",
    )
    assert run_envlock("lock", "--resolver", resolver, str(spec), cwd=tmp_path).returncode == 0
    assert _locked_names(spec) == {"envlock-fx-alpha": "2.0", "envlock-fx-beta": "1.1"}


def test_invalid_requirement_is_bad_input_even_though_uv_already_started(
    tmp_path: Path, simple_index: Index
) -> None:
    spec = write_spec(
        tmp_path,
        "typo",
        f"""python = "3.11"
[pip]
index-url = "{simple_index.url}"
packages = ["envlock-fx-alpha", "numpy>>1"]
""",
    )
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors and errors[0].startswith(f"error: {spec}:4: 'pip.packages': invalid requirement 'numpy>>1'")
    assert sorted(p.name for p in spec.parent.iterdir()) == ["typo.toml"]


def test_absolute_paths_outside_the_repository_warn_or_are_refused(tmp_path: Path, wheelhouse: Path) -> None:
    """find-links by absolute path: the lock names file:///... URLs that exist only here, so
    `lock` says so; a relative wheelhouse inside the repository gives a portable lock without
    a word.  A `name @ file:///...` outside the repository is refused like a relative one."""
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    body = 'python = "3.11"\n[pip]\npackages = [{packages}]\nfind-links = ["{links}"]\nno-index = true\n'
    spec = write_spec(repo, "abs", body.format(packages='"envlock-fx-beta==1.0"', links=wheelhouse))
    proc = run_envlock("lock", str(spec), cwd=repo)
    assert proc.returncode == 0, proc.stderr
    warning = f"warning: the lock names 1 file(s) in {wheelhouse} by absolute path (envlock_fx_beta-1.0"
    assert warning in proc.stderr, proc.stderr
    assert "it works only where that path exists" in proc.stderr

    (repo / "wheels").mkdir()
    for wheel in wheelhouse.glob("envlock_fx_beta-1.0-*.whl"):
        (repo / "wheels" / wheel.name).write_bytes(wheel.read_bytes())
    portable = write_spec(repo, "rel", body.format(packages='"envlock-fx-beta==1.0"', links="../wheels"))
    proc = run_envlock("lock", str(portable), cwd=repo)
    assert proc.returncode == 0, proc.stderr
    assert "warning:" not in proc.stderr
    assert 'url = "../wheels/envlock_fx_beta-1.0' in portable.with_suffix(".lock").read_text()

    wheel = next(wheelhouse.glob("envlock_fx_beta-1.0-*.whl"))
    direct = write_spec(
        repo, "direct", body.format(packages=f'"envlock-fx-beta @ {wheel.as_uri()}"', links="../wheels")
    )
    proc = run_envlock("lock", str(direct), cwd=repo)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-2].startswith(
        f"error: {direct}: 'envlock-fx-beta @ {wheel.as_uri()}' points outside the repository"
    )
    assert lines[-1].startswith("hint: paths in a spec must stay inside the repository")
    assert not direct.with_suffix(".lock").exists()
