"""The command line as a user runs it: exit codes, stdout for scripts, error:/hint: on stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from envlock import __version__, compat, export
from envlock import init as initmod
from envlock.cli import main
from envlock.spec import load, parse

Capsys = pytest.CaptureFixture[str]


def test_version(capsys: Capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"envlock {__version__}"


def test_no_command_prints_help_and_exits_2(capsys: Capsys) -> None:
    assert main([]) == 2
    assert "usage: envlock" in capsys.readouterr().err


def test_matrix_pytorch_prints_a_table(capsys: Capsys) -> None:
    assert main(["matrix", "pytorch"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["release", "latest"]
    row = next(line for line in out.splitlines() if line.startswith("2.5 "))
    assert "2.5.1" in row and "12.4" in row


def test_matrix_json_is_machine_readable(capsys: Capsys) -> None:
    import json

    assert main(["matrix", "cuda", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"cuda": "12.4", "min driver": compat.min_driver("12.4")}.items() <= next(
        r for r in rows if r["cuda"] == "12.4"
    ).items()


def test_matrix_unknown_name_is_bad_input(capsys: Capsys) -> None:
    assert main(["matrix", "nope"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines == [
        "error: unknown matrix 'nope'",
        "hint: choose one of: pytorch, tensorflow, jax, cuda",
    ]
    assert "Traceback" not in captured.err
    assert captured.out == ""


@pytest.mark.parametrize("argv", [["--frobnicate"], ["verify", "--frobnicate"]])
def test_unknown_option_is_one_error_line(capsys: Capsys, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: unrecognized arguments: --frobnicate"
    ]
    assert "usage:" not in err


def test_init_writes_a_valid_spec(tmp_path: Path, capsys: Capsys) -> None:
    specs = tmp_path / "specs"
    assert main(["init", "vision", "--template", "pytorch-cuda", "--dir", str(specs)]) == 0

    path = specs / "vision.toml"
    assert capsys.readouterr().out.strip() == str(path)
    spec = load(path)
    assert spec.name == "vision"
    assert spec.framework is not None and spec.framework.name == "pytorch"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: Capsys) -> None:
    specs = tmp_path / "specs"
    assert main(["init", "vision", "--dir", str(specs)]) == 0
    path = specs / "vision.toml"
    path.write_text(path.read_text() + "# my edits\n")
    before = path.read_bytes()
    capsys.readouterr()

    assert main(["init", "vision", "--template", "jax", "--dir", str(specs)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: {path} already exists",
        "hint: pass --force to overwrite it",
    ]
    assert path.read_bytes() == before

    assert main(["init", "vision", "--template", "jax", "--dir", str(specs), "--force"]) == 0
    assert load(path).framework is not None


def test_init_unknown_template_is_bad_input(tmp_path: Path, capsys: Capsys) -> None:
    assert main(["init", "x", "--template", "mxnet", "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown template 'mxnet'")
    assert list(tmp_path.iterdir()) == []


def test_verify_good_project_exits_0(project, capsys: Capsys) -> None:
    assert main(["verify", str(project.spec_path)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "1 spec(s) verified" in captured.err


def test_verify_quiet_prints_nothing(project, capsys: Capsys) -> None:
    assert main(["verify", "-q", str(project.spec_path)]) == 0
    assert capsys.readouterr() == ("", "")


def test_verify_stale_project_exits_1_with_one_line_per_problem(project, capsys: Capsys) -> None:
    text = project.spec_path.read_text().replace('"pandas>=2"', '"pandas>=2", "rich"')
    project.spec_path.write_text(text)
    project.pylock_path.unlink()

    assert main(["verify", str(project.spec_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        f"{project.lock_path}: stale: the spec changed since it was locked "
        f"(fix: envlock lock {project.spec_path})",
        f"{project.pylock_path}: missing export (fix: envlock lock {project.spec_path})",
    ]
    assert "2 problem(s) in 1 spec(s)" in captured.err


def test_verify_without_specs_finds_specs_dir(
    project, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    monkeypatch.chdir(project.spec_path.parent.parent)
    assert main(["verify"]) == 0
    assert "1 spec(s) verified" in capsys.readouterr().err


def test_verify_without_specs_and_none_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["verify"]) == 2
    assert capsys.readouterr().err.startswith("error: no specs given and none found in specs/")


def test_export_pylock_prints_the_export(project, capsys: Capsys) -> None:
    assert main(["export", str(project.spec_path), "--format", "pylock"]) == 0
    assert capsys.readouterr().out == export.pylock(project.lock)


def test_export_requirements_to_a_file(project, tmp_path: Path, capsys: Capsys) -> None:
    out = tmp_path / "requirements.txt"
    args = ["export", str(project.spec_path), "--format", "requirements", "-o", str(out)]
    assert main(args) == 0
    assert out.read_text() == project.exports[project.requirements_path]
    assert capsys.readouterr().out == ""


def test_export_of_a_stale_lock_fails_the_check(project, capsys: Capsys) -> None:
    project.spec_path.write_text(project.spec_path.read_text().replace("numpy<2", "numpy<3"))
    assert main(["export", str(project.spec_path), "--format", "pylock"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: {project.lock_path} is stale")


@pytest.mark.parametrize("template", initmod.TEMPLATES)
def test_every_template_is_a_valid_combination(template: str) -> None:
    text = initmod.render("demo", template)
    spec = parse(text, Path("specs/demo.toml"))

    assert spec.name == "demo"
    assert spec.pip.exclude_newer is not None
    if spec.framework is not None:
        for platform in spec.platforms:
            plan = compat.plan(spec.framework, platform, spec.python)
            assert plan.requirements


def test_verify_hook_is_silent_on_success(project, capsys: Capsys) -> None:
    names = [str(project.lock_path), str(project.requirements_path), "pyproject.toml"]
    assert main(["verify", "--hook", *names]) == 0
    assert capsys.readouterr() == ("", "")


def test_verify_hook_prints_file_problem_and_fix(project, capsys: Capsys) -> None:
    project.requirements_path.write_text("numpy==1.0\n")
    assert main(["verify", "--hook", str(project.requirements_path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == (
        f"{project.requirements_path}: export does not match the lock (edited by hand?) "
        f"(fix: envlock lock {project.spec_path})\n"
    )
    assert "hint: after fixing, stage each spec with its lock and exports" in captured.err


def test_verify_reports_ignored_names(project, tmp_path: Path, capsys: Capsys) -> None:
    other = tmp_path / "pyproject.toml"
    other.write_text("[project]\n")
    assert main(["verify", str(project.spec_path), str(other)]) == 0
    assert "1 spec(s) verified; ignored 1 other file(s)" in capsys.readouterr().err


def test_lock_hook_on_fresh_locks_changes_nothing_and_exits_0(project, capsys: Capsys) -> None:
    names = [str(project.lock_path), str(project.pylock_path), "README.md"]
    assert main(["lock", "--hook", *names]) == 0
    assert capsys.readouterr() == ("", "")


def test_matrix_shows_companions_in_the_table_and_the_json(capsys: Capsys) -> None:
    import json

    assert main(["matrix", "pytorch"]) == 0
    out = capsys.readouterr().out
    assert any(line.split()[:3] == ["2.9", "torchvision", "0.24.1,"] for line in out.splitlines())
    assert main(["matrix", "tensorflow", "--json"]) == 0
    rows = {r["release"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["2.20"]["cuda runtime"] == "12.5: >=12.5.82,<13"
    assert rows["2.20"]["companions"] == "tf-keras, tensorflow-text 2.20.1"


SMALL = 'python = "3.11"\n[pip]\npackages = ["six"]\n'


def _one_error(capsys: Capsys, *words: str) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], err
    return err


def test_a_lock_path_that_is_a_directory_is_bad_input_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "app.toml").write_text(SMALL)
    (tmp_path / "specs" / "app.lock").mkdir()
    for argv in (["build", "specs/app.toml", "--store", "store"], ["lock", "specs/app.toml"]):
        assert main(argv) == 2
        err = _one_error(capsys, "specs/app.lock: is a directory, not a lock")
        assert "stale" not in err and "hint: move it away" in err
    assert main(["verify", "specs/app.toml"]) == 1  # verify reports it as a problem, with a fix that works
    assert (
        "specs/app.lock: is a directory, not a lock (fix: move it away, then envlock lock"
        in capsys.readouterr().out
    )


def test_a_lock_given_to_build_asks_for_the_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.lock").write_text('version = 1\nenv-id = "sha256:' + "0" * 64 + '"\n')
    assert main(["build", "x.lock", "--store", "store"]) == 2
    err = _one_error(capsys, "x.lock is a lock, not a spec")
    assert "hint: give the spec instead: x.toml" in err and "unknown key" not in err


def test_diff_and_verify_of_a_directory_say_it_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "app.toml").write_text(SMALL)
    (tmp_path / "somedir").mkdir()
    (tmp_path / "old.lock").mkdir()
    for ref in ("somedir", "old.lock", "specs"):
        assert main(["diff", ref, "app"]) == 2
        err = _one_error(capsys, f"{ref}: a directory, not a spec or lock")
        assert "no such file" not in err and "no environment named" not in err
    # --help documents FILE... (specs, locks or exports), not directories: a directory is bad input
    assert main(["verify", "specs"]) == 2
    _one_error(capsys, "specs: is a directory; verify takes spec, lock or export files")


def test_record_refuses_a_model_that_is_a_device_or_fifo_without_reading_it(tmp_path: Path) -> None:
    import os
    import threading

    from envlock.errors import UsageError
    from envlock.recording import _sha256, hash_model

    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    zero = tmp_path / "model.pt"
    zero.symlink_to("/dev/zero")
    for special in (fifo, zero):
        with pytest.raises(UsageError, match="not a regular file"):
            hash_model(special)
    # what a file that turns into a fifo or device after the check gets: refused at once
    outcome: list[str] = []

    def read(path: Path) -> None:
        try:
            _sha256(path)
        except UsageError as exc:
            outcome.append(exc.message)

    for special in (fifo, zero):
        reader = threading.Thread(target=read, args=(special,), daemon=True)
        reader.start()
        reader.join(timeout=10)
        assert not reader.is_alive(), f"reading {special} blocked or never ended"
    assert len(outcome) == 2 and all("not a regular file" in m for m in outcome)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "w.bin").write_bytes(b"weights")
    os.mkfifo(tree / "pipe")  # not part of the model: left out, never opened
    assert hash_model(tree)["files"] == 1


def test_store_gc_takes_specs_after_options_and_refuses_one_that_is_not_there(
    tmp_path: Path, capsys: Capsys
) -> None:
    """argparse ends `specs` at the first option (`store gc --force SPEC`); and a spec path with
    a typo must not be taken as "keep nothing"."""
    missing = tmp_path / "specs" / "visoin.toml"
    code = main(["store", "gc", "--dry-run", "--force", str(missing), "--store", str(tmp_path / "store")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"error: store gc: {missing} is not a spec file" in err
    assert "unrecognized arguments" not in err
