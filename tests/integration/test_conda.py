"""conda specs end to end: local file:// channels (.tar.bz2 and .conda), solve with
py-rattler, lock, conda-lock.yml read by conda-lock itself, verify, build into an image,
unpack with umoci."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conda_channel import PLACEHOLDER, CondaPkg, fixture_packages, write_channel
from support import build_wheel, run_envlock, write_spec

from envlock import lockfile as lockmod


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_channel(tmp_path_factory.mktemp("conda-channel"), fixture_packages())


@pytest.fixture(scope="module")
def conda_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("conda-wheels")
    build_wheel(dest, "envlock-fx-alpha", "2.0", ("envlock-fx-beta>=1.0",))
    build_wheel(dest, "envlock-fx-beta", "1.0")
    build_wheel(dest, "envlock-fx-beta", "1.1")
    build_wheel(dest, "envlock-fx-needs-new-beta", "1.0", ("envlock-fx-beta>=1.1",))
    return dest


def conda_spec(
    root: Path,
    channel: str,
    packages: str,
    *,
    platforms: str = '"linux-64", "osx-arm64"',
    pip: str = "",
    base: Path | None = None,
    name: str = "env",
) -> Path:
    body = f"""python = "3.11"
platforms = [{platforms}]
[conda]
channels = ["{channel}"]
packages = [{packages}]
"""
    if pip:
        body += pip
    if base is not None:
        body += f'[image]\nbase = "oci:{base}"\n'
    return write_spec(root, name, body)


def lock(spec: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_envlock("lock", str(spec), *args, cwd=spec.parent.parent)


def test_lock_records_every_conda_field_for_each_platform(tmp_path: Path, channel: str) -> None:
    spec = conda_spec(tmp_path, channel, '"fx-a", "fx-tool"')
    proc = lock(spec)
    assert proc.returncode == 0, proc.stderr
    locked = lockmod.read(spec.with_suffix(".lock"))
    assert locked.platform_names == ("linux-64", "osx-arm64")
    assert lockmod.problems(locked) == []
    for plat in locked.platforms:
        conda = plat.by_name("conda")
        assert sorted(conda) == ["fx-a", "fx-b", "fx-c", "fx-tool"]  # a -> b -> c
        assert conda["fx-c"].version == "2.0" and conda["fx-c"].subdir == "noarch"
        assert conda["fx-b"].subdir == plat.name and conda["fx-b"].url.endswith(".conda")
        assert conda["fx-a"].url.endswith(".tar.bz2")
        assert conda["fx-a"].depends == ("fx-b >=1.0",)
        for p in conda.values():
            assert p.manager == "conda" and p.build == "0" and p.channel == channel
            assert len(p.sha256) == 64 and len(p.md5 or "") == 32
        assert plat.conda_channels == (channel,)
    assert spec.with_name("env.conda-lock.yml").is_file()
    # unchanged spec: returns at once, same bytes
    before = spec.with_suffix(".lock").read_bytes()
    again = lock(spec)
    assert again.returncode == 0 and "up to date" in again.stderr
    assert spec.with_suffix(".lock").read_bytes() == before


def test_conda_lock_parses_the_export_and_writes_the_same_bytes(tmp_path: Path, channel: str) -> None:
    import yaml
    from conda_lock.lockfile import parse_conda_lock_file

    spec = conda_spec(tmp_path, channel, '"fx-a", "fx-tool"')
    assert lock(spec).returncode == 0
    path = spec.with_name("env.conda-lock.yml")
    parsed = parse_conda_lock_file(path)
    assert parsed.metadata.platforms == ["linux-64", "osx-arm64"]
    assert [c.url for c in parsed.metadata.channels] == [channel]
    by_key = {(p.name, p.platform): p for p in parsed.package}
    assert len(by_key) == 8
    b = by_key[("fx-b", "linux-64")]
    assert b.manager == "conda" and b.hash.md5 and b.hash.sha256 and b.dependencies == {"fx-c": ""}
    # conda-lock's own writer gives exactly our bytes (after the comment header)
    parsed.alphasort_inplace()
    theirs = yaml.dump(parsed.to_v1().dict_for_output(), sort_keys=False)
    ours = "".join(line for line in path.read_text().splitlines(True) if not line.startswith("#"))
    assert ours == theirs


def test_verify_passes_and_catches_a_hand_edited_conda_lock(tmp_path: Path, channel: str) -> None:
    spec = conda_spec(tmp_path, channel, '"fx-a"')
    assert lock(spec).returncode == 0
    ok = run_envlock("verify", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    path = spec.with_name("env.conda-lock.yml")
    path.write_text(path.read_text().replace("version: '1.2'", "version: '1.3'", 1))
    bad = run_envlock("verify", cwd=tmp_path)
    assert bad.returncode == 1
    assert "env.conda-lock.yml" in bad.stdout + bad.stderr


def test_export_conda_lock_format(tmp_path: Path, channel: str) -> None:
    spec = conda_spec(tmp_path, channel, '"fx-tool"')
    assert lock(spec).returncode == 0
    out = run_envlock("export", str(spec), "--format", "conda-lock", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == spec.with_name("env.conda-lock.yml").read_text()


def test_pip_on_top_does_not_reinstall_what_conda_provides(
    tmp_path: Path, channel: str, conda_wheels: Path
) -> None:
    pip = f"""[pip]
packages = ["envlock-fx-alpha"]
find-links = ["{conda_wheels}"]
no-index = true
"""
    spec = conda_spec(tmp_path, channel, '"envlock-fx-beta"', pip=pip)
    proc = lock(spec)
    assert proc.returncode == 0, proc.stderr
    for plat in lockmod.read(spec.with_suffix(".lock")).platforms:
        assert sorted(plat.by_name("pip")) == ["envlock-fx-alpha"]
        assert plat.by_name("conda")["envlock-fx-beta"].version == "1.0"
    text = spec.with_name("env.linux-64.requirements.txt").read_text()
    assert "envlock-fx-alpha==2.0" in text and "envlock-fx-beta" not in text
    from conda_lock.lockfile import parse_conda_lock_file

    managers = {
        (p.name, p.manager) for p in parse_conda_lock_file(spec.with_name("env.conda-lock.yml")).package
    }
    assert managers == {("envlock-fx-alpha", "pip"), ("envlock-fx-beta", "conda")}


def test_pip_needing_another_version_of_a_conda_package_is_exit_2(
    tmp_path: Path, channel: str, conda_wheels: Path
) -> None:
    pip = f"""[pip]
packages = ["envlock-fx-needs-new-beta"]
find-links = ["{conda_wheels}"]
no-index = true
"""
    spec = conda_spec(tmp_path, channel, '"envlock-fx-beta"', pip=pip, platforms='"linux-64"')
    proc = lock(spec)
    assert proc.returncode == 2, proc.stderr
    assert "envlock-fx-beta" in proc.stderr and "Traceback" not in proc.stderr
    assert not spec.with_suffix(".lock").exists()


def test_unsatisfiable_conda_spec_is_exit_2_naming_the_conflict(tmp_path: Path, channel: str) -> None:
    spec = conda_spec(tmp_path, channel, '"fx-needs-old", "fx-old >=2"')
    proc = lock(spec)
    assert proc.returncode == 2
    error = proc.stderr
    assert "error: no conda solution for" in error and "fx-old" in error and "Traceback" not in error
    assert len([ln for ln in error.splitlines() if ln.startswith("error:")]) == 1
    assert list(spec.parent.iterdir()) == [spec]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/channel", "file:///nonexistent/envlock-channel"])
def test_unreachable_channel_is_exit_3_with_the_url(tmp_path: Path, url: str) -> None:
    spec = conda_spec(tmp_path, url, '"fx-a"', platforms='"linux-64"')
    proc = lock(spec)
    assert proc.returncode == 3, proc.stderr
    assert url in proc.stderr and "Traceback" not in proc.stderr
    assert list(spec.parent.iterdir()) == [spec]


def test_conda_lock_resolver_without_a_conda_binary_is_exit_2(tmp_path: Path, channel: str) -> None:
    assert not any(shutil.which(b) for b in ("conda", "mamba", "micromamba"))
    spec = conda_spec(tmp_path, channel, '"fx-a"')
    proc = lock(spec, "--resolver", "conda-lock")
    assert proc.returncode == 2
    assert "micromamba" in proc.stderr and "hint:" in proc.stderr
    assert not spec.with_suffix(".lock").exists()


def test_cuda_virtual_package_comes_from_the_framework(tmp_path: Path) -> None:
    """A package that needs __cuda solves only when the spec asks for CUDA (linux-64)."""
    chan = write_channel(
        tmp_path / "cuda-channel",
        [CondaPkg("fx-gpu", "1.0", "linux-64", depends=("__cuda >=12", "__glibc >=2.17"))],
    )
    spec = conda_spec(tmp_path / "cpu", chan, '"fx-gpu"', platforms='"linux-64"')
    assert lock(spec).returncode == 2


# -- images -------------------------------------------------------------------------------


def _unpack(tmp_path: Path, spec: Path, store: Path) -> tuple[str, Path]:
    layout = tmp_path / f"layout-{store.name}"
    proc = run_envlock(
        "build", str(spec), "--store", str(store), "--oci", str(layout), cwd=spec.parent.parent
    )
    assert proc.returncode == 0, proc.stderr
    image_id = [ln for ln in proc.stdout.splitlines() if ln.startswith("sha256:")][-1]
    ref = subprocess.run(["umoci", "ls", "--layout", str(layout)], capture_output=True, text=True, check=True)
    bundle = tmp_path / f"bundle-{store.name}"
    subprocess.run(
        ["umoci", "raw", "unpack", "--rootless", "--image", f"{layout}:{ref.stdout.split()[0]}", str(bundle)],
        capture_output=True,
        check=True,
    )
    return image_id, bundle


def test_build_installs_conda_packages_into_the_prefix_reproducibly(
    tmp_path: Path, channel: str, conda_wheels: Path, base_layout: Path
) -> None:
    pip = f"""[pip]
packages = ["envlock-fx-alpha"]
find-links = ["{conda_wheels}"]
no-index = true
"""
    spec = conda_spec(
        tmp_path / "p",
        channel,
        '"fx-a", "fx-tool", "envlock-fx-beta"',
        platforms='"linux-64"',
        pip=pip,
        base=base_layout,
    )
    assert lock(spec).returncode == 0
    first, bundle = _unpack(tmp_path, spec, tmp_path / "store1")
    env = bundle / "opt/env"
    # text prefix replaced, exec bit kept
    tool = env / "bin/fx-tool"
    assert tool.read_text() == "#!/bin/sh\n# prefix: /opt/env\necho fx-tool from /opt/env\n"
    assert tool.stat().st_mode & 0o111
    assert (env / "etc/fx-tool.conf").read_text() == "root = /opt/env/share\n"
    # binary prefix replaced inside its C string, padded with NULs to the same length
    original = b"\x7fELF\0fake\0" + PLACEHOLDER.encode() + b"/lib/plugins\0tail\0"
    lib = (env / "lib/libfxb.so").read_bytes()
    assert len(lib) == len(original) and PLACEHOLDER.encode() not in lib
    assert lib.startswith(b"\x7fELF\0fake\0/opt/env/lib/plugins\0\0") and lib.endswith(b"\0tail\0")
    # dependency chain and noarch packages
    assert (env / "share/fx-a/README").read_text() == "fx-a\n"
    assert (env / "share/fx-c/data.txt").read_text() == "c\n"
    site = env / "lib/python3.11/site-packages"
    assert "from conda" in (site / "envlock_fx_beta/__init__.py").read_text()
    assert (site / "envlock_fx_alpha/__init__.py").read_text() == "__version__ = '2.0'\n"
    assert not list(site.glob("envlock_fx_beta-*.dist-info"))  # pip did not reinstall it
    assert (env / "pyvenv.cfg").is_file()  # no conda python: a venv on the base's interpreter
    # conda-meta: one record per package, nothing that changes between builds
    records = {p.name: json.loads(p.read_text()) for p in (env / "conda-meta").glob("*.json")}
    assert sorted(records) == [
        "envlock-fx-beta-1.0-0.json",
        "fx-a-1.0-0.json",
        "fx-b-1.2-0.json",
        "fx-c-2.0-0.json",
        "fx-tool-0.3-0.json",
    ]
    tool_meta = records["fx-tool-0.3-0.json"]
    assert tool_meta["files"] == ["bin/fx-tool", "etc/fx-tool.conf"]
    assert tool_meta["channel"] == channel and len(tool_meta["md5"]) == 32
    assert records["envlock-fx-beta-1.0-0.json"]["files"] == [
        "lib/python3.11/site-packages/envlock_fx_beta/__init__.py"
    ]
    for record in records.values():
        assert not {"timestamp", "extracted_package_dir", "package_tarball_full_path", "url"} & set(record)
    # a second store, built from scratch, gives the same image ID
    second, _ = _unpack(tmp_path, spec, tmp_path / "store2")
    assert first == second


def test_a_channel_directory_relative_to_the_spec_locks_and_builds_at_any_path(
    tmp_path: Path, base_layout: Path
) -> None:
    """``channels = ["../channels/local"]``: the lock names the channel and its files relative
    to itself, so a copy of the checkout at another path (with a space in it) verifies,
    re-locks to the same bytes from another working directory, and builds."""
    first = tmp_path / "checkout"
    write_channel(first / "channels/local", fixture_packages())
    spec = conda_spec(
        first, "../channels/local/", '"fx-a", "envlock-fx-beta"', platforms='"linux-64"', base=base_layout
    )
    assert lock(spec).returncode == 0
    locked = lockmod.read(spec.with_suffix(".lock"))
    conda = locked.platforms[0].by_name("conda")
    assert locked.platforms[0].conda_channels == ("../channels/local",)
    assert conda["fx-a"].url == "../channels/local/linux-64/fx-a-1.0-0.tar.bz2"
    assert {p.channel for p in conda.values()} == {"../channels/local"}
    assert str(tmp_path) not in spec.with_name("env.conda-lock.yml").read_text()
    before = spec.with_suffix(".lock").read_bytes()

    clone = tmp_path / "another clone"
    shutil.copytree(first, clone, symlinks=True)
    shutil.rmtree(first)
    moved = clone / "specs/env.toml"
    assert run_envlock("verify", cwd=clone).returncode == 0
    relock = run_envlock("lock", "--upgrade", "another clone/specs/env.toml", cwd=tmp_path)
    assert relock.returncode == 0, relock.stderr
    assert moved.with_suffix(".lock").read_bytes() == before

    _, bundle = _unpack(tmp_path, moved, tmp_path / "store")
    env = bundle / "opt/env"
    assert (env / "share/fx-a/README").read_text() == "fx-a\n"
    assert "from conda" in (env / "lib/python3.11/site-packages/envlock_fx_beta/__init__.py").read_text()
    meta = json.loads((env / "conda-meta/fx-a-1.0-0.json").read_text())
    assert meta["channel"] == "../channels/local"


def test_a_missing_channel_directory_is_exit_2_naming_it(tmp_path: Path) -> None:
    spec = conda_spec(tmp_path, "./no-such-channel", '"fx-a"', platforms='"linux-64"')
    proc = lock(spec)
    assert proc.returncode == 2, proc.stderr
    assert "conda channel ./no-such-channel is not a directory" in proc.stderr
    assert proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    assert not spec.with_suffix(".lock").exists()


def test_tampered_conda_package_is_refused(
    tmp_path: Path, base_layout: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path / "chan"
    chan = write_channel(root, [CondaPkg("fx-solo", "1.0", "linux-64", files={"share/solo": b"1\n"})])
    spec = conda_spec(tmp_path / "p", chan, '"fx-solo"', platforms='"linux-64"', base=base_layout)
    assert lock(spec).returncode == 0
    (root / "linux-64/fx-solo-1.0-0.tar.bz2").write_bytes(b"not the locked file")
    proc = run_envlock("build", str(spec), "--store", str(tmp_path / "store"), cwd=tmp_path / "p")
    assert proc.returncode == 1
    assert "sha256 mismatch" in proc.stderr and "fx-solo" in proc.stderr


def test_verify_of_a_conda_spec_stays_lean(tmp_path: Path, channel: str) -> None:
    """pre-commit runs verify on every commit: no rattler, conda_lock, pydantic or yaml."""
    import sys

    spec = conda_spec(tmp_path, channel, '"fx-a", "fx-tool"')
    assert lock(spec).returncode == 0
    wrapper = (
        "import json, sys\nfrom envlock.cli import main\ncode = main(sys.argv[1:])\n"
        "print(json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", wrapper, "verify", str(spec)], capture_output=True, text=True, cwd=tmp_path
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["code"] == 0, proc.stderr
    heavy = ("rattler", "conda_lock", "pydantic", "yaml", "zstandard", "packaging")
    assert [m for m in result["modules"] if m.split(".")[0] in heavy] == []
