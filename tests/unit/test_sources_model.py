"""Lock fields, exports and content digests of packages built from source (sdists, direct
URLs, git commits, local paths)."""

from __future__ import annotations

import stat
import subprocess
import tomllib
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import META, fake_sha256, make_package, make_platform

from envlock import directrefs, export
from envlock import lockfile as lockmod
from envlock.errors import CheckFailed, SpecError
from envlock.lockfile import Package
from envlock.resolve.artifacts import from_pylock
from envlock.sourcebuild import build_system_requires
from envlock.wheelcontent import content_digest, is_pure

SPEC_HASH = "sha256:" + "0" * 64
BUILT = "sha256:" + fake_sha256("built")
BACKEND = make_package("setuptools", "80.0")
COMMIT = "8c8023d845afcb3056796b33bb5a49d605c57984"


def sdist() -> Package:
    return Package(
        "pip",
        "antlr4-python3-runtime",
        "4.9.3",
        "https://files.example.org/antlr4-python3-runtime-4.9.3.tar.gz",
        fake_sha256("antlr"),
        built=BUILT,
        build_requires=(BACKEND,),
    )


def git_package() -> Package:
    return Package(
        "pip", "fx", "1.0", "git+https://${GIT_TOKEN}@git.example.org/fx", fake_sha256("tree"), source="git",
        commit=COMMIT, built=BUILT,
    )  # fmt: skip


def locked(*packages: Package) -> lockmod.Lock:
    return lockmod.make(SPEC_HASH, [make_platform("linux-64", list(packages))], META)


def test_new_fields_round_trip_and_are_valid() -> None:
    lock = locked(sdist(), git_package(), make_package("numpy", "2.0"))
    text = lockmod.render(lock)
    again = lockmod.parse(text)
    assert again == lock
    assert lockmod.problems(again) == []
    assert "[[platforms.packages.build-requires]]" in text


def test_env_ids_of_wheel_only_locks_do_not_change() -> None:
    plain = make_package("numpy", "2.0")
    assert plain.identity() == {"manager": "pip", "name": "numpy", "version": "2.0", "sha256": plain.sha256}


@pytest.mark.parametrize(
    "edit",
    [
        {"built": "sha256:" + fake_sha256("other")},
        {"commit": "1" * 40},
        {"build_requires": (replace(BACKEND, sha256=fake_sha256("other backend")),)},
        {"source": None, "commit": None},
    ],
)
def test_env_id_covers_the_build_identity(edit: dict[str, object]) -> None:
    base = git_package() if "commit" in edit else sdist()
    assert locked(base).env_id != locked(replace(base, **edit)).env_id  # type: ignore[arg-type]


def test_env_id_ignores_where_a_build_requirement_came_from() -> None:
    moved = replace(BACKEND, url="https://mirror.example.org/setuptools-80.0-py3-none-any.whl")
    assert locked(sdist()).env_id == locked(replace(sdist(), build_requires=(moved,))).env_id


def test_problems_catch_hand_edits_of_the_build_fields() -> None:
    bad = [
        replace(git_package(), commit="main"),
        replace(git_package(), built="sha256:short"),
        replace(sdist(), build_requires=(replace(BACKEND, sha256="x"),)),
        replace(make_package("x", "1.0"), built=BUILT),
        replace(sdist(), name="other", source="svn"),
    ]
    found = lockmod.problems(locked(*bad))
    assert any("not a full 40-hex git commit" in p for p in found)
    assert any("no valid 'built'" in p for p in found)
    assert any("build requirement setuptools is not a pinned, hashed wheel" in p for p in found)
    assert any("a wheel has no 'built'" in p for p in found)
    assert any("unknown source 'svn'" in p for p in found)


def test_an_sdist_locked_before_builds_stays_a_valid_lock() -> None:
    old = replace(sdist(), built=None, build_requires=())
    assert lockmod.problems(locked(old)) == []
    assert "built" not in old.identity()


def test_exports_of_direct_references() -> None:
    url = Package("pip", "six", "1.17.0", "https://h.example/six-1.17.0-py2.py3-none-any.whl", fake_sha256("six"),
                  source="url")  # fmt: skip
    directory = Package("pip", "loc", "2.0", "../pkgs/loc/", fake_sha256("loc"), source="path", built=BUILT)
    lock = locked(url, git_package(), directory, sdist())
    requirements = export.requirements(lock, "linux-64", "app.lock")
    assert f"six @ {url.url} \\\n    --hash=sha256:{url.sha256}" in requirements
    assert f"fx @ git+https://${{GIT_TOKEN}}@git.example.org/fx@{COMMIT}" in requirements
    assert "\n../pkgs/loc/\n" in requirements
    text = export.pylock(lock)
    from packaging.pylock import Pylock

    Pylock.from_dict(tomllib.loads(text))
    by_name = {p["name"]: p for p in tomllib.loads(text)["packages"]}
    assert by_name["six"]["archive"] == {"url": url.url, "hashes": {"sha256": url.sha256}}
    assert by_name["fx"]["vcs"]["commit-id"] == COMMIT
    assert by_name["loc"]["directory"] == {"path": "../pkgs/loc"}
    assert by_name["antlr4-python3-runtime"]["tool"]["envlock"]["built"] == BUILT


def test_from_pylock_reads_archive_vcs_and_directory(tmp_path: Path) -> None:
    data = {
        "packages": [
            {"name": "six", "version": "1.17.0",
             "archive": {"url": "https://u:p@h.example/six-1.17.0-py2.py3-none-any.whl", "hashes": {"sha256": "a" * 64}}},
            {"name": "fx", "version": "1.0",
             "vcs": {"type": "git", "url": "https://h.example/fx", "commit-id": COMMIT}},
            {"name": "loc", "directory": {"path": "pkgs/loc"}},
        ]
    }  # fmt: skip
    six, fx, loc = from_pylock(data, "linux-64", "3.11", tmp_path)
    assert (six.source, six.url, six.sha256) == (
        "url",
        "https://h.example/six-1.17.0-py2.py3-none-any.whl",
        "a" * 64,
    )
    assert (fx.source, fx.url, fx.commit, fx.needs_build) == ("git", "git+https://h.example/fx", COMMIT, True)
    assert (loc.source, loc.url) == ("path", (tmp_path / "pkgs/loc").as_uri() + "/")


def test_relative_paths_must_stay_inside_the_repository(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "pkgs" / "a").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    spec = tmp_path / "specs" / "app.toml"
    (resolved,) = directrefs.for_resolver(["a @ file:../pkgs/a"], spec)
    assert resolved == f"a @ file://{tmp_path}/pkgs/a"
    with pytest.raises(SpecError, match="outside the repository"):
        directrefs.for_resolver(["a @ ../../etc"], spec)


def test_absolute_file_urls_follow_the_rule_of_relative_paths(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    (repo / "pkgs" / "a").mkdir(parents=True)
    (tmp_path / "elsewhere" / "b").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    spec = repo / "specs" / "app.toml"
    inside = f"a @ {(repo / 'pkgs' / 'a').as_uri()}"
    assert directrefs.for_resolver([inside], spec) == (inside,)
    for outside in (f"b @ {(tmp_path / 'elsewhere' / 'b').as_uri()}", "c @ file://localhost/etc"):
        with pytest.raises(SpecError, match="outside the repository") as info:
            directrefs.for_resolver([outside], spec)
        assert "works only on this machine" in (info.value.hint or "")
    with pytest.raises(SpecError, match="does not exist"):
        directrefs.for_resolver([f"d @ {(repo / 'pkgs' / 'gone').as_uri()}"], spec)


def test_files_locked_by_absolute_path_get_one_warning_per_directory() -> None:
    packages = [
        Package("pip", "a", "1.0", "file:///srv/wheels/a-1.0-py3-none-any.whl", "0" * 64),
        Package("pip", "b", "1.0", "file:///srv/wheels/b-1.0-py3-none-any.whl", "1" * 64),
        Package("pip", "c", "1.0", "file:///srv/wheels/c-1.0-py3-none-any.whl", "2" * 64),
        Package("pip", "d", "1.0", "file:///opt/x/d-1.0-py3-none-any.whl", "3" * 64),
        Package("pip", "e", "1.0", "../wheels/e-1.0-py3-none-any.whl", "4" * 64),
        Package("pip", "f", "1.0", "https://files.example/f-1.0-py3-none-any.whl", "5" * 64),
    ]
    first, second = directrefs.absolute_locations(packages)
    assert first.startswith("the lock names 1 file(s) in /opt/x by absolute path (d-1.0-py3-none-any.whl)")
    assert second.startswith("the lock names 3 file(s) in /srv/wheels by absolute path (a-1.0")
    assert ", ...): it works only where that path exists" in second
    assert directrefs.absolute_locations(packages[4:]) == []


def test_locked_urls_keep_the_specs_placeholders(tmp_path: Path) -> None:
    written = "fx @ git+https://${GIT_TOKEN}@git.example.org/fx@v1.0"
    resolved = Package("pip", "fx", "1.0", "git+https://git.example.org/fx", "", source="git", commit=COMMIT)
    (locked_fx,) = directrefs.as_locked([resolved], [written], tmp_path / "specs" / "app.toml")
    assert locked_fx.url == "git+https://${GIT_TOKEN}@git.example.org/fx"


def _wheel(path: Path, members: dict[str, tuple[bytes, int]], tag: str = "py3-none-any") -> Path:
    wheel = path / f"fx-1.0-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, (data, mode) in members.items():
            info = zipfile.ZipInfo(name, (2020, 5, 5, 1, 2, 3))
            info.external_attr = (stat.S_IFREG | mode) << 16
            zf.writestr(info, data)
    return wheel


def test_content_digest_ignores_order_times_and_record_but_not_files_or_modes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    files = {
        "fx/__init__.py": (b"x = 1\n", 0o644),
        "fx-1.0.dist-info/WHEEL": (b"Root-Is-Purelib: true\n", 0o644),
    }
    one = _wheel(tmp_path / "a", {**files, "fx-1.0.dist-info/RECORD": (b"one", 0o644)})
    two = _wheel(
        tmp_path / "b", dict(reversed([*files.items(), ("fx-1.0.dist-info/RECORD", (b"two", 0o600))]))
    )
    assert content_digest(one) == content_digest(two)
    executable = _wheel(tmp_path / "c", {**files, "fx/__init__.py": (b"x = 1\n", 0o755)})
    assert content_digest(executable) != content_digest(one)
    assert is_pure(one)
    with pytest.raises(CheckFailed):
        content_digest(tmp_path / "a")


def test_platform_wheels_are_not_pure(tmp_path: Path) -> None:
    files = {"fx-1.0.dist-info/WHEEL": (b"Root-Is-Purelib: false\n", 0o644)}
    assert not is_pure(_wheel(tmp_path, files, "cp311-cp311-linux_x86_64"))
    assert not is_pure(_wheel(tmp_path, files))  # the right tag, yet platlib


def test_build_system_requires_default_to_pep_518(tmp_path: Path) -> None:
    assert build_system_requires(tmp_path) == ("setuptools>=40.8.0", "wheel")
    (tmp_path / "pyproject.toml").write_text('[build-system]\nrequires = ["flit_core>=3.2"]\n')
    assert build_system_requires(tmp_path) == ("flit_core>=3.2",)


@pytest.mark.parametrize(
    ("requirement", "refused"),
    [
        ("fx @ https://${FX_USER}:${FX_TOKEN}@h.example/fx-1.0-py3-none-any.whl", False),
        ("fx @ git+ssh://git@h.example/fx@v1.0", False),
        ("fx @ https://ghp_literal@h.example/fx-1.0-py3-none-any.whl", True),
        ("fx @ git+https://user:pass@h.example/fx@v1.0", True),
    ],
)
def test_direct_urls_take_credentials_only_as_placeholders(requirement: str, refused: bool) -> None:
    from envlock.spec import parse

    text = f'python = "3.11"\n[pip]\npackages = [{requirement!r}]\n'.replace("'", '"')
    if refused:
        with pytest.raises(SpecError, match=r"holds credentials; write them as \$\{ENV_VAR\}") as info:
            parse(text, Path("specs/app.toml"))
        assert "pass" not in info.value.message and "ghp_literal" not in info.value.message
    else:
        assert parse(text, Path("specs/app.toml")).pip.packages == (requirement,)
