"""verify: the offline pre-commit check finds every kind of drift, and names the file."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from envlock.verify import Problem, check, verify, verify_spec

NEW_SHA = "f" * 64


def relock(spec: Path) -> str:
    return f"envlock lock {spec}"


def upgrade(spec: Path) -> str:
    return f"envlock lock --upgrade {spec}"


def test_a_fresh_project_has_no_problems(project) -> None:
    assert verify([project.spec_path]) == []


def test_spec_changed_is_stale(project) -> None:
    text = project.spec_path.read_text().replace('"pandas>=2"', '"pandas>=2", "rich"')
    project.spec_path.write_text(text)

    assert verify([project.spec_path]) == [
        Problem(
            project.lock_path,
            "stale: the spec changed since it was locked",
            relock(project.spec_path),
        )
    ]


def test_comment_only_spec_edit_is_not_stale(project) -> None:
    project.spec_path.write_text("# reviewed\n" + project.spec_path.read_text())
    assert verify([project.spec_path]) == []


def test_missing_lock(project) -> None:
    project.lock_path.unlink()

    assert verify([project.spec_path]) == [
        Problem(project.lock_path, "missing: the spec has no lock", relock(project.spec_path))
    ]


def test_env_id_edited_by_hand(project) -> None:
    text = project.lock_path.read_text()
    project.lock_path.write_text(text.replace(project.lock.env_id, "sha256:" + "0" * 64))

    problems = verify([project.spec_path])

    lock_problems = [p for p in problems if p.path == project.lock_path]
    assert len(lock_problems) == 1
    (problem,) = lock_problems
    assert problem.message.startswith("tampered: env-id does not match the lock's content")
    assert "recorded sha256:0000000000" in problem.message
    assert problem.fix == upgrade(project.spec_path)
    # the exports carry the real env ID in their header, so they disagree with the edited lock
    assert {p.path for p in problems} - {project.lock_path} <= set(project.exports)


def test_package_sha256_edited_by_hand(project) -> None:
    old = project.lock.platforms[0].by_name()["numpy"].sha256
    text = project.lock_path.read_text()
    assert text.count(old) == 1
    project.lock_path.write_text(text.replace(old, NEW_SHA))

    problems = verify([project.spec_path])

    assert problems[0].path == project.lock_path
    assert problems[0].message.startswith("tampered: env-id does not match the lock's content")
    assert problems[0].fix == upgrade(project.spec_path)
    # the exports still hold the old hash: each is reported as not matching the lock
    assert problems[1:] == [
        Problem(path, "export does not match the lock (edited by hand?)", relock(project.spec_path))
        for path in project.exports
    ]


def test_package_version_emptied_by_hand(project) -> None:
    text = project.lock_path.read_text().replace('version = "1.26.4"', 'version = ""')
    project.lock_path.write_text(text)

    messages = [p.message for p in verify([project.spec_path]) if p.path == project.lock_path]
    assert "tampered: linux-64: pip package numpy: not pinned to a version" in messages


def test_export_edited_by_hand(project) -> None:
    path = project.requirements_path
    path.write_text(path.read_text().replace("numpy==1.26.4", "numpy==1.26.3"))

    assert verify([project.spec_path]) == [
        Problem(path, "export does not match the lock (edited by hand?)", relock(project.spec_path))
    ]


def test_export_deleted(project) -> None:
    project.pylock_path.unlink()

    assert verify([project.spec_path]) == [
        Problem(project.pylock_path, "missing export", relock(project.spec_path))
    ]


def test_lock_reformatted_is_edited_by_hand(project) -> None:
    text = project.lock_path.read_text()
    project.lock_path.write_text(text.replace("\n[meta]", "\n\n[meta]", 1))

    assert verify([project.spec_path]) == [
        Problem(
            project.lock_path,
            "edited by hand: not the bytes envlock writes",
            upgrade(project.spec_path),
        )
    ]


def test_unparseable_lock_is_one_problem(project) -> None:
    project.lock_path.write_text("version = \n")

    (problem,) = verify([project.spec_path])
    assert problem.path == project.lock_path
    assert problem.message.startswith("not valid TOML")
    assert problem.fix == upgrade(project.spec_path)


def test_broken_spec_is_one_problem(project) -> None:
    project.spec_path.write_text('python = "3.11"\npyhton = "3.11"\n')

    (problem,) = verify([project.spec_path])
    assert problem.path == project.spec_path
    assert "unknown key 'pyhton'" in problem.message
    assert problem.fix == "correct the spec"


def test_broken_spec_problem_names_the_file_once_with_its_line(project) -> None:
    project.spec_path.write_text('python = "3.11"\npyhton = "3.11"\n')

    (problem,) = verify([project.spec_path])
    printed = str(problem)
    assert printed.count(str(project.spec_path)) == 1
    assert re.match(rf"^{re.escape(str(project.spec_path))}:2: unknown key 'pyhton'", printed)


def test_problem_prints_path_message_and_fix(project) -> None:
    project.lock_path.unlink()
    (problem,) = verify_spec(project.spec_path)
    assert str(problem) == (
        f"{project.lock_path}: missing: the spec has no lock (fix: envlock lock {project.spec_path})"
    )


def test_verify_checks_every_spec(tmp_path: Path, new_project: Callable) -> None:
    good = new_project(tmp_path / "specs", name="good")
    bad = new_project(tmp_path / "specs", name="bad")
    bad.lock_path.unlink()

    problems = verify([good.spec_path, bad.spec_path])
    assert [p.path for p in problems] == [bad.lock_path]


def test_multi_platform_project_verifies(tmp_path: Path, new_project: Callable) -> None:
    text = 'python = "3.11"\nplatforms = ["osx-arm64", "linux-64"]\n[pip]\npackages = ["numpy"]\n'
    proj = new_project(tmp_path / "specs", spec_text=text)

    assert len(proj.exports) == 3
    assert verify([proj.spec_path]) == []


def test_lock_and_export_names_map_to_their_spec(project) -> None:
    text = project.spec_path.read_text().replace('"pandas>=2"', '"pandas>=2", "rich"')
    project.spec_path.write_text(text)

    for name in (project.lock_path, project.requirements_path, project.pylock_path):
        (problem,) = verify([name])
        assert problem.path == project.lock_path
        assert problem.fix == relock(project.spec_path)


def test_several_names_of_one_spec_check_it_once(project) -> None:
    project.lock_path.unlink()
    names = [project.spec_path, project.lock_path, *project.exports]
    assert len(verify(names)) == 1


def test_lock_whose_spec_was_deleted_is_an_orphan(project) -> None:
    project.spec_path.unlink()

    assert verify([project.lock_path, project.pylock_path]) == [
        Problem(
            project.lock_path,
            f"orphaned lock: its spec {project.spec_path} was deleted",
            f"delete it, or restore {project.spec_path}",
        ),
        Problem(
            project.pylock_path,
            f"orphaned export: its spec {project.spec_path} was deleted",
            f"delete it, or restore {project.spec_path}",
        ),
    ]


def test_non_spec_toml_is_ignored_not_reported(tmp_path: Path, project) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[project]\nname = 'x'\n")
    report = check([pyproject, project.spec_path])
    assert report.problems == ()
    assert report.specs == (project.spec_path,)
    assert report.ignored == (pyproject,)


def test_check_without_names_scans_the_directory_for_orphans_too(
    tmp_path: Path, new_project: Callable
) -> None:
    good = new_project(tmp_path / "specs", name="good")
    gone = new_project(tmp_path / "specs", name="gone")
    gone.spec_path.unlink()

    report = check(directory=tmp_path / "specs")
    assert report.specs == (good.spec_path,)
    assert {p.path for p in report.problems} == {gone.lock_path, *gone.exports}
    assert all(p.message.startswith("orphaned ") for p in report.problems)


def test_staged_check_outside_git_is_skipped(
    project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert verify([project.spec_path], staged=True) == []
