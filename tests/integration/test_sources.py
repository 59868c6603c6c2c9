"""sdists, direct URLs, git commits and local paths: locked, built from source in a sandbox at
lock time, rebuilt and checked at build time (envlock issue 11 items 1, 2, 3 and 12)."""

from __future__ import annotations

import json
import subprocess
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdists import backend_wheel, build_sdist, git, git_project
from support import (
    Index,
    build_wheel,
    free_port,
    hostile_build,
    run_envlock,
    serve,
    sha256_file,
    write_spec,
)

from envlock import lockfile as lockmod


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build backend and a runtime dependency, as wheels (the only build requirement)."""
    dest = tmp_path_factory.mktemp("src-wheels")
    backend_wheel(dest)
    build_wheel(dest, "envlock-fx-beta", "1.1")
    return dest


@pytest.fixture(scope="module")
def sdist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("sdists")
    build_sdist(dest, "envlock-fx-src", "1.0", deps=("envlock-fx-beta",))
    build_sdist(dest, "envlock-fx-noisy", "1.0", noise=True)
    build_sdist(dest, "envlock-fx-native", "1.0", tag="cp311-cp311-linux_x86_64")
    build_sdist(dest, "envlock-fx-broken", "1.0", requires=("envlock-fx-no-such-backend",))
    build_sdist(dest, "envlock-fx-dyn", "1.0", dynamic=("envlock-fx-beta",))
    return dest


@pytest.fixture(scope="module")
def files_server(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Iterator[Index]:
    """A plain HTTP server on 127.0.0.1 for direct-URL wheels (``/files/NAME``)."""
    root = tmp_path_factory.mktemp("direct")
    (root / "files").mkdir()
    build_wheel(root / "files", "envlock-fx-direct", "3.0")
    build_sdist(root / "files", "envlock-fx-urlsrc", "1.0")
    yield from serve(root, None)


def _spec(root: Path, packages: list[str], links: list[Path], image: str = "", name: str = "app") -> Path:
    listed = ", ".join(json.dumps(p) for p in packages)
    found = ", ".join(json.dumps(str(p)) for p in links)
    body = f'python = "3.11"\n[pip]\npackages = [{listed}]\nfind-links = [{found}]\nno-index = true\n'
    return write_spec(root, name, body + (f"[image]\n{image}" if image else ""))


def _env(tmp: Path) -> dict[str, str]:
    return {"ENVLOCK_HOME": str(tmp / "lock-store")}


def _lock(spec: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    return run_envlock("lock", str(spec), cwd=spec.parent.parent, env=_env(tmp))


def _build(spec: Path, store: Path, tmp: Path) -> subprocess.CompletedProcess[str]:
    return run_envlock("build", str(spec), "--store", str(store), cwd=spec.parent.parent, env=_env(tmp))


def _image_id(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def _package(spec: Path, name: str) -> lockmod.Package:
    lock = lockmod.read(spec.with_suffix(".lock"))
    return lock.platforms[0].by_name()[name]


def _image_files(store: Path, image_id: str) -> dict[str, bytes]:
    """Every regular file in the image's layers (later layers win), read from the store."""
    index = json.loads((store / "index.json").read_text())
    for entry in index["manifests"]:
        manifest = json.loads((store / "blobs/sha256" / entry["digest"].split(":")[1]).read_bytes())
        if manifest["config"]["digest"] == image_id:
            break
    else:
        raise AssertionError(f"{image_id} not in {store}")
    files: dict[str, bytes] = {}
    for layer in manifest["layers"]:
        with tarfile.open(store / "blobs/sha256" / layer["digest"].split(":")[1]) as tar:
            for member in tar:
                if member.isfile() and member.name.startswith("opt/env/"):
                    stream = tar.extractfile(member)
                    assert stream is not None
                    files[member.name] = stream.read()
    return files


SITE = "opt/env/lib/python3.11/site-packages"


def test_a_layer_with_a_package_built_from_source_comes_from_the_build_cache_unbuilt(
    tmp_path: Path, wheels: Path, sdist_dir: Path, base_layout: Path, registry: str
) -> None:
    """The layer's key names the built wheel by the content digest the lock pins, so a second
    machine finds it in the cache without building the sdist (or fetching anything)."""
    spec = _spec(tmp_path / "p", ["envlock-fx-src"], [wheels, sdist_dir], f'base = "oci:{base_layout}"\n')
    assert _lock(spec, tmp_path).returncode == 0
    cache = f"{registry}/sources/cache"
    first = run_envlock(
        "cache",
        "push",
        str(spec),
        "--cache",
        cache,
        "--store",
        str(tmp_path / "store-a"),
        cwd=tmp_path,
        env=_env(tmp_path),
    )
    assert first.returncode == 0, first.stderr
    assert "from source" in first.stderr
    again = run_envlock(
        "build",
        str(spec),
        "--store",
        str(tmp_path / "store-b"),
        "--cache",
        cache,
        cwd=tmp_path,
        env=_env(tmp_path),
    )
    assert _image_id(again) == first.stdout.strip()
    assert "from source" not in again.stderr and "Fetching" not in again.stderr
    assert "Took 1 of 1 layers from the build cache" in again.stderr


def test_sdist_only_dependency_locks_builds_and_rebuilds_the_same_image(
    tmp_path: Path, wheels: Path, sdist_dir: Path, base_layout: Path
) -> None:
    spec = _spec(tmp_path / "p", ["envlock-fx-src"], [wheels, sdist_dir], f'base = "oci:{base_layout}"\n')
    proc = _lock(spec, tmp_path)
    assert proc.returncode == 0, proc.stderr
    src = _package(spec, "envlock-fx-src")
    assert src.filename == "envlock_fx_src-1.0.tar.gz"
    assert src.sha256 == sha256_file(sdist_dir / "envlock_fx_src-1.0.tar.gz")
    assert src.built is not None and src.built.startswith("sha256:")
    backend = wheels / "envlock_fx_backend-1.0-py3-none-any.whl"
    assert [(r.name, r.version, r.sha256) for r in src.build_requires] == [
        ("envlock-fx-backend", "1.0", sha256_file(backend))
    ]
    assert "envlock-fx-beta" in lockmod.read(spec.with_suffix(".lock")).platforms[0].by_name()
    # the exports say how the package is pinned; verify agrees with everything
    assert run_envlock("verify", str(spec), cwd=tmp_path / "p").returncode == 0
    pylock = tomllib.loads((spec.parent / "pylock.app.toml").read_text())
    entry = next(p for p in pylock["packages"] if p["name"] == "envlock-fx-src")
    assert entry["sdist"]["hashes"]["sha256"] == src.sha256
    assert entry["tool"]["envlock"]["built"] == src.built

    first = _image_id(_build(spec, tmp_path / "store-a", tmp_path))
    files = _image_files(tmp_path / "store-a", first)
    assert files[f"{SITE}/envlock_fx_src/__init__.py"] == b"__version__ = '1.0'\n"
    assert files[f"{SITE}/envlock_fx_src-1.0.dist-info/INSTALLER"] == b"envlock\n"
    # an empty store builds the wheel again from the sdist: the same image
    again = _build(spec, tmp_path / "store-b", tmp_path)
    assert "from source" in again.stderr
    assert _image_id(again) == first


def test_built_from_source_under_a_hostile_second_build_gives_the_same_image(
    tmp_path: Path, wheels: Path, sdist_dir: Path, base_layout: Path
) -> None:
    """Another store (so the wheel is built again), umask 077, time zone, locale, temp dir and a
    clock years ahead: the sdist's wheel and the image come out the same."""
    spec = _spec(tmp_path / "p", ["envlock-fx-src"], [wheels, sdist_dir], f'base = "oci:{base_layout}"\n')
    assert _lock(spec, tmp_path).returncode == 0
    first = _image_id(_build(spec, tmp_path / "store-a", tmp_path))
    proc = hostile_build(spec, tmp_path)
    assert "from source" in proc.stderr
    assert _image_id(proc) == first


def test_the_build_backend_runs_without_network_host_files_or_environment(
    tmp_path: Path, wheels: Path, simple_index: Index
) -> None:
    secret = Path(__file__).resolve()  # a host file outside /tmp, readable by this process
    port = simple_index.url.split(":")[2].split("/")[0]
    sdists = tmp_path / "sdists"
    build_sdist(sdists, "envlock-fx-probe", "1.0", probe=(f"127.0.0.1:{port}", str(secret)))
    spec = _spec(tmp_path / "p", ["envlock-fx-probe"], [wheels, sdists])
    proc = run_envlock("lock", str(spec), cwd=tmp_path / "p", env={**_env(tmp_path), "FX_LEAK": "x"})
    assert proc.returncode == 0, proc.stderr
    [wheel] = (tmp_path / "lock-store" / "built").glob("*/envlock_fx_probe-1.0-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as zf:
        seen = json.loads(zf.read("envlock_fx_probe/probe.json"))
    assert seen["network"] is False  # the index on 127.0.0.1 is up, yet not reachable
    assert seen["secret"] is False
    assert seen["writable_usr"] is False
    assert "FX_LEAK" not in seen["env"] and "ENVLOCK_HOME" not in seen["env"]
    assert seen["source_date_epoch"] == "315532800"


def test_a_rebuild_with_other_files_is_exit_1_naming_the_package(
    tmp_path: Path, wheels: Path, sdist_dir: Path, base_layout: Path
) -> None:
    spec = _spec(tmp_path / "p", ["envlock-fx-noisy"], [wheels, sdist_dir], f'base = "oci:{base_layout}"\n')
    assert _lock(spec, tmp_path).returncode == 0
    proc = _build(spec, tmp_path / "other-store", tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "error: envlock-fx-noisy 1.0: the wheel built from source differs" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_compiled_extensions_are_refused_at_lock_time_with_a_way_out(
    tmp_path: Path, wheels: Path, sdist_dir: Path
) -> None:
    spec = _spec(tmp_path / "p", ["envlock-fx-native"], [wheels, sdist_dir])
    proc = _lock(spec, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "envlock-fx-native 1.0 builds a platform wheel" in proc.stderr
    assert "hint:" in proc.stderr and "direct-URL wheel" in proc.stderr
    assert not spec.with_suffix(".lock").exists()


def test_dynamic_build_requirements_are_locked_and_the_build_gets_them(
    tmp_path: Path, wheels: Path, sdist_dir: Path, base_layout: Path
) -> None:
    # PEP 517 get_requires_for_build_wheel (setuptools' setup_requires, e.g. setuptools_scm):
    # asked of the backend in the sandbox at lock time, locked, offered to the offline build
    spec = _spec(tmp_path / "p", ["envlock-fx-dyn"], [wheels, sdist_dir], f'base = "oci:{base_layout}"\n')
    proc = _lock(spec, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "envlock-fx-dyn 1.0 also needs envlock-fx-beta to build" in proc.stderr
    dyn = _package(spec, "envlock-fx-dyn")
    assert [r.name for r in dyn.build_requires] == ["envlock-fx-backend", "envlock-fx-beta"]
    # an empty store builds it again from the lock alone
    built = _build(spec, tmp_path / "store", tmp_path)
    assert built.returncode == 0, built.stderr
    files = _image_files(tmp_path / "store", _image_id(built))
    assert f"{SITE}/envlock_fx_dyn/__init__.py" in files


def test_an_sdist_that_cannot_be_built_fails_at_lock_time(
    tmp_path: Path, wheels: Path, sdist_dir: Path
) -> None:
    spec = _spec(tmp_path / "p", ["envlock-fx-broken"], [wheels, sdist_dir])
    proc = _lock(spec, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "envlock-fx-broken 1.0: its build requirements (envlock-fx-no-such-backend)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(spec.parent.iterdir()) == [spec]


def test_direct_url_wheel_is_locked_by_url_and_hash_and_built(
    tmp_path: Path, wheels: Path, files_server: Index, base_layout: Path
) -> None:
    url = files_server.url.replace("/simple", "/files/envlock_fx_direct-3.0-py3-none-any.whl")
    spec = _spec(tmp_path / "p", [f"envlock-fx-direct @ {url}"], [wheels], f'base = "oci:{base_layout}"\n')
    proc = _lock(spec, tmp_path)
    assert proc.returncode == 0, proc.stderr
    direct = _package(spec, "envlock-fx-direct")
    assert (direct.source, direct.url, direct.built) == ("url", url, None)
    assert direct.sha256 == sha256_file(files_server.root / "files/envlock_fx_direct-3.0-py3-none-any.whl")
    requirements = (spec.parent / "app.linux-64.requirements.txt").read_text()
    assert f"envlock-fx-direct @ {url} \\\n    --hash=sha256:{direct.sha256}" in requirements
    pylock = tomllib.loads((spec.parent / "pylock.app.toml").read_text())
    assert pylock["packages"][0]["archive"] == {"url": url, "hashes": {"sha256": direct.sha256}}
    # an sdist by URL is built like any sdist
    sdist_url = files_server.url.replace("/simple", "/files/envlock_fx_urlsrc-1.0.tar.gz")
    text = spec.read_text().replace(
        f'"envlock-fx-direct @ {url}"', f'"envlock-fx-direct @ {url}", "envlock-fx-urlsrc @ {sdist_url}"'
    )
    spec.write_text(text)
    assert _lock(spec, tmp_path).returncode == 0
    urlsrc = _package(spec, "envlock-fx-urlsrc")
    assert (urlsrc.source, urlsrc.url) == ("url", sdist_url) and urlsrc.built is not None
    files = _image_files(tmp_path / "store", _image_id(_build(spec, tmp_path / "store", tmp_path)))
    assert f"{SITE}/envlock_fx_direct/__init__.py" in files
    assert f"{SITE}/envlock_fx_urlsrc/__init__.py" in files


def test_direct_url_with_credentials_keeps_the_placeholders(
    tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "served"
    build_wheel(root / "files", "envlock-fx-direct", "3.0")
    server = serve(root, ("fx-user", "fx-s3cret"))
    index = next(server)
    try:
        url = index.url.replace("http://", "http://${FX_USER}:${FX_PASS}@").replace(
            "/simple", "/files/envlock_fx_direct-3.0-py3-none-any.whl"
        )
        spec = _spec(tmp_path / "p", [f"envlock-fx-direct @ {url}"], [wheels])
        env = {**_env(tmp_path), "FX_USER": "fx-user", "FX_PASS": "fx-s3cret"}
        proc = run_envlock("lock", str(spec), cwd=tmp_path / "p", env=env)
        assert proc.returncode == 0, proc.stderr
        package = _package(spec, "envlock-fx-direct")
        assert package.url == url
        for written in spec.parent.iterdir():
            assert "fx-s3cret" not in written.read_text()
        # build time: the placeholders are expanded again for the download
        from envlock.fetch import fetch_all
        from envlock.store import Store

        monkeypatch.setenv("FX_USER", "fx-user")
        monkeypatch.setenv("FX_PASS", "fx-s3cret")
        paths = fetch_all(Store(tmp_path / "store"), [package], spec.parent)
        assert sha256_file(paths[package.sha256]) == package.sha256
        monkeypatch.setenv("FX_PASS", "wrong")
        with pytest.raises(Exception) as refused:
            fetch_all(Store(tmp_path / "store2"), [package], spec.parent)
        assert getattr(refused.value, "exit_code", None) == 3
        assert "wrong" not in str(refused.value) and "fx-s3cret" not in str(refused.value)
    finally:
        server.close()


def test_unreachable_direct_url_is_exit_3_naming_the_url(tmp_path: Path, wheels: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/envlock_fx_direct-3.0-py3-none-any.whl"
    spec = _spec(tmp_path / "p", [f"envlock-fx-direct @ {url}"], [wheels])
    proc = _lock(spec, tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert url in proc.stderr and "Traceback" not in proc.stderr
    assert list(spec.parent.iterdir()) == [spec]


def test_git_requirement_by_tag_locks_the_commit_and_builds(
    tmp_path: Path, wheels: Path, base_layout: Path
) -> None:
    repo = tmp_path / "repo"
    commit = git_project(repo, "envlock-fx-git", "1.0")
    requirement = f"envlock-fx-git @ git+file://{repo}@v1.0"
    spec = _spec(tmp_path / "p", [requirement], [wheels], f'base = "oci:{base_layout}"\n')
    proc = _lock(spec, tmp_path)
    assert proc.returncode == 0, proc.stderr
    locked = _package(spec, "envlock-fx-git")
    assert (locked.source, locked.url, locked.commit) == ("git", f"git+file://{repo}", commit)
    assert locked.built is not None and len(locked.sha256) == 64
    pylock = tomllib.loads((spec.parent / "pylock.app.toml").read_text())
    assert pylock["packages"][0]["vcs"] == {"type": "git", "url": f"file://{repo}", "commit-id": commit}
    # pinned by the full commit, as in the issue: the same package
    by_sha = _spec(tmp_path / "q", [f"envlock-fx-git @ git+file://{repo}@{commit}"], [wheels])
    assert _lock(by_sha, tmp_path).returncode == 0
    assert _package(by_sha, "envlock-fx-git") == locked
    # a new commit on the tag's branch changes nothing: the lock holds the commit
    (repo / "envlock_fx_git" / "__init__.py").write_text("__version__ = 'moved'\n")
    git(repo, "commit", "-qam", "move on")
    files = _image_files(tmp_path / "store", _image_id(_build(spec, tmp_path / "store", tmp_path)))
    assert files[f"{SITE}/envlock_fx_git/__init__.py"] == b"__version__ = '1.0'\n"


def test_unreachable_git_host_is_exit_3_at_lock_and_build(tmp_path: Path, wheels: Path) -> None:
    port = free_port()
    spec = _spec(tmp_path / "p", [f"envlock-fx-git @ git+http://127.0.0.1:{port}/repo@main"], [wheels])
    proc = _lock(spec, tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert f"http://127.0.0.1:{port}/repo" in proc.stderr and "Traceback" not in proc.stderr

    # a lock made while the host was up, built after it went away
    repo = tmp_path / "repo"
    git_project(repo, "envlock-fx-git", "1.0")
    spec = _spec(tmp_path / "q", [f"envlock-fx-git @ git+file://{repo}@main"], [wheels])
    assert _lock(spec, tmp_path).returncode == 0
    text = spec.with_suffix(".lock").read_text()
    moved = text.replace(f"git+file://{repo}", f"git+http://127.0.0.1:{port}/repo")
    spec.with_suffix(".lock").write_text(moved)
    lock = lockmod.parse(moved)
    from envlock.image.build import build_lock
    from envlock.store import Store

    with pytest.raises(Exception) as caught:
        build_lock(lock, spec.parent, "app", store=Store(tmp_path / "empty"))
    assert getattr(caught.value, "exit_code", None) == 3
    assert f"http://127.0.0.1:{port}/repo" in str(caught.value)


def test_path_requirements_inside_the_repository_only(tmp_path: Path, wheels: Path) -> None:
    root = tmp_path / "p"
    pkg = root / "pkgs" / "envlock-fx-local"
    git_project(pkg, "envlock-fx-local", "2.0")
    (pkg / ".git").rename(tmp_path / "inner-git")
    git(root, "init", "-q")  # the user's repository, holding the spec and the package
    spec = _spec(root, ["envlock-fx-local @ file:../pkgs/envlock-fx-local"], [wheels])
    proc = _lock(spec, tmp_path)
    assert proc.returncode == 0, proc.stderr
    local = _package(spec, "envlock-fx-local")
    assert (local.source, local.url, local.version) == ("path", "../pkgs/envlock-fx-local/", "2.0")
    assert local.built is not None and len(local.sha256) == 64

    outside = tmp_path / "elsewhere.tar.gz"
    outside.write_bytes(build_sdist(tmp_path / "x", "envlock-fx-src", "1.0").read_bytes())
    spec = _spec(root / "sub", ["envlock-fx-src @ file:../../../elsewhere.tar.gz"], [wheels], name="out")
    proc = _lock(spec, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "outside the repository" in proc.stderr


SIX_URL = (
    "https://files.pythonhosted.org/packages/b7/ce/149a00dd41f10bc29e5921b496af8b574d8413afcd5e30dfa0ed46c2cc5e/"
    "six-1.17.0-py2.py3-none-any.whl"
)


@pytest.mark.live
def test_live_omegaconf_with_its_sdist_only_antlr4_runtime_locks_and_builds(
    tmp_path: Path, base_layout: Path
) -> None:
    """omegaconf (so every Hydra project) needs antlr4-python3-runtime==4.9.3, which has no
    wheel on PyPI; its build requirements (setuptools, wheel) come from PyPI as of the cut-off.
    The six wheel by direct URL is the issue's other example."""
    body = f"""python = "3.11"
[pip]
packages = ["omegaconf==2.3.0", "six @ {SIX_URL}"]
exclude-newer = "2026-11-01"
[image]
base = "oci:{base_layout}"
"""
    spec = write_spec(tmp_path / "p", "hydra", body)
    proc = _lock(spec, tmp_path)
    assert proc.returncode == 0, proc.stderr
    antlr = _package(spec, "antlr4-python3-runtime")
    assert (antlr.version, antlr.sha256) == (
        "4.9.3",
        "f224469b4168294902bb1efa80a8bf7855f24c99aef99cbefc1bcd3cce77881b",
    )
    assert {r.name for r in antlr.build_requires} >= {"setuptools", "wheel"}
    six = _package(spec, "six")
    assert (six.source, six.url, six.sha256) == (
        "url",
        SIX_URL,
        "4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274",
    )
    first = _image_id(_build(spec, tmp_path / "store-a", tmp_path))
    files = _image_files(tmp_path / "store-a", first)
    assert f"{SITE}/antlr4/__init__.py" in files and f"{SITE}/omegaconf/__init__.py" in files
    # built again from the sdist in an empty store: the same image
    assert _image_id(_build(spec, tmp_path / "store-b", tmp_path)) == first
