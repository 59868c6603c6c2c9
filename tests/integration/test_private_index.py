"""Private indexes for real: pypiserver behind basic auth; credentials from ``${VAR}``
placeholders or netrc, at lock time (uv) and at build time (envlock's downloads), and never
in a file, a message or the store."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conda_channel import fixture_packages, write_channel
from private_index import PrivateIndex, serve_private
from support import Index, run_envlock, serve, write_spec

from envlock import lockfile as lockmod

USER, TOKEN = "ci-user", "s3cret-t0ken-basic"
PATH_TOKEN = "p4th-t0ken-secret"
ENV = {"PI_USER": USER, "PI_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[PrivateIndex]:
    with serve_private(tmp_path_factory.mktemp("pypiserver"), wheelhouse, USER, TOKEN) as served:
        yield served


@pytest.fixture(scope="module")
def path_index(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[PrivateIndex]:
    """The same server under a secret path: http://HOST/p4th-t0ken-secret/simple."""
    root = tmp_path_factory.mktemp("pypiserver-path")
    with serve_private(root, wheelhouse, USER, TOKEN, prefix="/" + PATH_TOKEN) as served:
        yield served


def project(root: Path, index_url: str, base_layout: Path) -> Path:
    return write_spec(
        root / "project",
        "private",
        f"""python = "3.11"
[pip]
packages = ["envlock-fx-alpha==2.0"]
index-url = "{index_url}"
[image]
base = "oci:{base_layout}"
""",
    )


def build(spec: Path, store: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_envlock("build", str(spec), "--store", str(store), cwd=spec.parent.parent, env=env)


def assert_nowhere(root: Path, *secrets: str) -> None:
    """No file under ``root`` holds a secret, plain or as a basic-auth header value."""
    needles = [s.encode() for s in secrets]
    needles.append(base64.b64encode(f"{USER}:{TOKEN}".encode()))
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert files
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{needle!r} in {path}"


def caches(tmp_path: Path) -> dict[str, str]:
    """uv's and rattler's caches under ``tmp_path`` (XDG base directories), so the scan
    for secrets covers them too."""
    return {"XDG_CACHE_HOME": str(tmp_path / "cache")}


def test_env_credentials_lock_and_build_and_are_written_nowhere(
    tmp_path: Path, index: PrivateIndex, base_layout: Path
) -> None:
    spec = project(tmp_path, index.url_with("${PI_USER}:${PI_TOKEN}"), base_layout)
    locked = run_envlock("lock", str(spec), cwd=tmp_path, env=ENV | caches(tmp_path))
    assert locked.returncode == 0, locked.stderr
    lock = lockmod.read(spec.with_suffix(".lock"))
    urls = sorted(p.url for p in lock.platforms[0].packages)
    assert len(urls) == 2 and all(u.startswith(index.base + "/packages/") for u in urls), urls

    built = build(spec, tmp_path / "store", ENV)
    assert built.returncode == 0, built.stderr  # before: HTTP 401, credentials dropped
    assert built.stdout.strip().splitlines()[-1].startswith("sha256:")
    assert TOKEN not in built.stderr + built.stdout + locked.stderr + locked.stdout
    assert_nowhere(tmp_path, TOKEN)


def test_build_without_the_variable_names_it(tmp_path: Path, index: PrivateIndex, base_layout: Path) -> None:
    spec = project(tmp_path, index.url_with("${PI_USER}:${PI_TOKEN}"), base_layout)
    assert run_envlock("lock", str(spec), cwd=tmp_path, env=ENV).returncode == 0
    proc = build(spec, tmp_path / "store", {"PI_USER": USER})
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [errors[0]] and "environment variable PI_TOKEN is not set" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "store").glob("artifacts/**/*.whl"))


def test_build_with_refused_credentials_is_exit_3_naming_the_url(
    tmp_path: Path, index: PrivateIndex, base_layout: Path
) -> None:
    spec = project(tmp_path, index.url_with("${PI_USER}:${PI_TOKEN}"), base_layout)
    assert run_envlock("lock", str(spec), cwd=tmp_path, env=ENV).returncode == 0
    proc = build(spec, tmp_path / "store", {"PI_USER": USER, "PI_TOKEN": "wr0ng-t0ken-value"})
    assert proc.returncode == 3, proc.stderr
    error = next(ln for ln in proc.stderr.splitlines() if ln.startswith("error:"))
    assert f"{index.base}/packages/envlock_fx_" in error and "answered HTTP 40" in error
    assert "credentials refused" in error
    hint = next(ln for ln in proc.stderr.splitlines() if ln.startswith("hint:"))
    assert "netrc" in hint and "${VAR}" in hint
    assert "wr0ng-t0ken-value" not in proc.stderr and "Traceback" not in proc.stderr


def test_netrc_credentials_lock_and_build(tmp_path: Path, index: PrivateIndex, base_layout: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(f"machine 127.0.0.1\nlogin {USER}\npassword {TOKEN}\n")
    netrc.chmod(0o600)
    env = {"HOME": str(home), "NETRC": "", **caches(tmp_path)}
    spec = project(tmp_path, index.simple, base_layout)
    locked = run_envlock("lock", str(spec), cwd=tmp_path, env=env)  # uv reads ~/.netrc itself
    assert locked.returncode == 0, locked.stderr
    built = build(spec, tmp_path / "store", env)
    assert built.returncode == 0, built.stderr  # before: HTTP 401
    netrc.unlink()
    assert_nowhere(tmp_path, TOKEN)

    refused = build(spec, tmp_path / "store2", env)
    assert refused.returncode == 3
    assert "credentials needed" in refused.stderr and "netrc" in refused.stderr


def test_a_token_in_the_index_path_stays_a_placeholder(
    tmp_path: Path, path_index: PrivateIndex, base_layout: Path
) -> None:
    url = path_index.url_with("${PI_USER}:${PI_TOKEN}", "/${PI_PATH}")
    spec = project(tmp_path, url, base_layout)
    env = {**ENV, "PI_PATH": PATH_TOKEN, **caches(tmp_path)}
    locked = run_envlock("lock", str(spec), cwd=tmp_path, env=env)
    assert locked.returncode == 0, locked.stderr
    lock = lockmod.read(spec.with_suffix(".lock"))
    assert all("/${PI_PATH}/packages/" in p.url for p in lock.platforms[0].packages)
    pylock = (spec.parent / "pylock.private.toml").read_text()
    assert "/${PI_PATH}/packages/" in pylock
    built = build(spec, tmp_path / "store", env)
    assert built.returncode == 0, built.stderr
    assert_nowhere(tmp_path, TOKEN, PATH_TOKEN)


def test_index_errors_at_lock_time_echo_no_secret(tmp_path: Path, path_index: PrivateIndex) -> None:
    url = path_index.url_with("${PI_USER}:${PI_TOKEN}", "/${PI_PATH}")
    spec = write_spec(
        tmp_path, "private", f'python = "3.11"\n[pip]\npackages = ["envlock-fx-alpha"]\nindex-url = "{url}"\n'
    )
    env = {"PI_USER": USER, "PI_TOKEN": "wr0ng-t0ken-value", "PI_PATH": PATH_TOKEN}
    proc = run_envlock("lock", str(spec), cwd=tmp_path, env=env)
    assert proc.returncode == 3, proc.stderr  # before: exit 2, "no solution", the path token shown
    assert "wr0ng-t0ken-value" not in proc.stderr and PATH_TOKEN not in proc.stderr
    error = next(ln for ln in proc.stderr.splitlines() if ln.startswith("error:"))
    assert "/${PI_PATH}/simple" in error and ("403" in error or "401" in error)
    assert "PI_TOKEN" in proc.stderr  # the hint names the variables to check
    assert sorted(p.name for p in spec.parent.iterdir()) == ["private.toml"]


def test_pip_tools_locks_through_the_private_index_too(tmp_path: Path, path_index: PrivateIndex) -> None:
    url = path_index.url_with("${PI_USER}:${PI_TOKEN}", "/${PI_PATH}")
    spec = write_spec(
        tmp_path, "pt", f'python = "3.11"\n[pip]\npackages = ["envlock-fx-alpha==2.0"]\nindex-url = "{url}"\n'
    )
    env = {**ENV, "PI_PATH": PATH_TOKEN, **caches(tmp_path)}
    proc = run_envlock("lock", "--resolver", "pip-tools", str(spec), cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    lock = lockmod.read(spec.with_suffix(".lock"))
    assert all("/${PI_PATH}/packages/" in p.url for p in lock.platforms[0].packages)
    assert_nowhere(tmp_path, TOKEN, PATH_TOKEN)

    refused = run_envlock(
        "lock",
        "--upgrade",
        "--resolver",
        "pip-tools",
        str(spec),
        cwd=tmp_path,
        env=env | {"PI_TOKEN": "wr0ng-t0ken"},
    )
    # pip logs an index's 403 only at debug level: for pip-tools it is "no solution" (exit 2)
    assert refused.returncode == 2, refused.stderr
    assert "wr0ng-t0ken" not in refused.stderr and PATH_TOKEN not in refused.stderr


def test_sync_messages_hide_a_remote_password(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True)
    remote = "http://me:s3cret-remote-pw@127.0.0.1:9/records.git"
    proc = run_envlock("sync", remote, cwd=repo)
    assert proc.returncode == 3, proc.stderr
    assert "s3cret-remote-pw" not in proc.stderr
    assert "http://***@127.0.0.1:9/records.git" in proc.stderr


# -- conda channels -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_channel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    """The fixture conda channel under a secret path, behind basic auth."""
    root = tmp_path_factory.mktemp("private-channel")
    write_channel(root / PATH_TOKEN, fixture_packages())
    yield from serve(root, (USER, TOKEN))


def test_conda_channel_with_literal_credentials_is_refused(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        "chan",
        'python = "3.11"\n[conda]\nchannels = ["http://me:s3cret-chan@127.0.0.1:9/chan"]\npackages = ["fx-a"]\n',
    )
    proc = run_envlock("lock", str(spec), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr  # before: solved, and the secret landed in the lock
    assert f"{spec}:3: 'conda.channels'" in proc.stderr and "holds credentials" in proc.stderr
    assert "s3cret-chan" not in proc.stderr
    assert sorted(p.name for p in spec.parent.iterdir()) == ["chan.toml"]


def test_private_conda_channel_locks_and_builds_with_placeholders_kept(
    tmp_path: Path, private_channel: Index, base_layout: Path
) -> None:
    host = private_channel.url.removesuffix("/simple").removeprefix("http://")
    channel = f"http://${{PI_USER}}:${{PI_TOKEN}}@{host}/${{PI_PATH}}"
    spec = write_spec(
        tmp_path / "project",
        "chan",
        f"""python = "3.11"
[conda]
channels = ["{channel}"]
packages = ["fx-a", "fx-tool"]
[image]
base = "oci:{base_layout}"
""",
    )
    env = {**ENV, "PI_PATH": PATH_TOKEN, **caches(tmp_path)}
    locked = run_envlock("lock", str(spec), cwd=tmp_path, env=env)
    assert locked.returncode == 0, locked.stderr
    lock = lockmod.read(spec.with_suffix(".lock"))
    packages = lock.platforms[0].packages
    assert packages and all(p.url.startswith(f"http://{host}/${{PI_PATH}}/") for p in packages)
    assert all(p.channel == channel for p in packages)
    assert "/${PI_PATH}/linux-64/" in (spec.parent / "chan.conda-lock.yml").read_text()
    built = build(spec, tmp_path / "store", env)
    assert built.returncode == 0, built.stderr
    assert_nowhere(tmp_path, TOKEN, PATH_TOKEN)
