"""Every boundary turns what comes from outside into one `error:` line naming the path:
files that are directories, binary or not UTF-8, outputs that cannot be files, dates out of
range, TOML nested too deeply or numbers too large; and a bug is one line unless --debug."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import Project

from envlock import compat
from envlock.cli import main
from envlock.errors import EnvlockError

Capsys = pytest.CaptureFixture[str]


def run(capsys: Capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str) -> str:
    lines = err.splitlines()
    assert lines and lines[0].startswith("error: "), err
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), err
    assert "Traceback" not in err
    return lines[0]


# -- a bug: one line, traceback only with --debug ---------------------------------------------


def boom(_name: str) -> None:
    raise RuntimeError("cannot reach https://alice:s3cret@index.example/simple?token=abc then")


def test_an_unexpected_exception_is_one_line_with_urls_redacted(
    capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENVLOCK_DEBUG", raising=False)
    monkeypatch.setattr(compat, "rows", boom)
    code, _, err = run(capsys, "matrix", "pytorch")
    assert code == 1
    assert err.splitlines() == [
        "error: internal error: RuntimeError: cannot reach https://***@index.example/simple?token=*** then",
        "hint: rerun with --debug (or ENVLOCK_DEBUG=1) for the traceback and report it",
    ]
    assert "s3cret" not in err and "abc" not in err


@pytest.mark.parametrize("how", ["flag-first", "flag-last", "env"])
def test_debug_shows_the_traceback(capsys: Capsys, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    monkeypatch.setattr(compat, "rows", boom)
    argv = {"flag-first": ["--debug", "matrix", "pytorch"], "flag-last": ["matrix", "pytorch", "--debug"]}
    if how == "env":
        monkeypatch.setenv("ENVLOCK_DEBUG", "1")
    with pytest.raises(RuntimeError, match="cannot reach"):
        main(argv.get(how, ["matrix", "pytorch"]))


def test_an_error_message_with_newlines_is_one_line(capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from envlock.errors import CheckFailed

    def forged(_name: str) -> None:
        raise CheckFailed("line one\nerror: forged second line", "do this")

    monkeypatch.setattr(compat, "rows", forged)
    code, _, err = run(capsys, "matrix", "pytorch")
    assert code == 1
    assert err.splitlines() == [
        "error: line one error: forged second line",
        "hint: do this",
    ]


# -- files read: spec and lock ----------------------------------------------------------------


def test_a_spec_that_is_a_directory_binary_or_not_utf8(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("dir.toml").mkdir()
    Path("bin.toml").write_bytes(b'python = "3.11"\n\x00\x01\x02')
    Path("latin.toml").write_bytes(b'python = "3.11"\n# caf\xe9\n')
    for name, words in (
        ("dir.toml", "dir.toml: is a directory"),
        ("bin.toml", "bin.toml: a binary file, not a spec"),
        ("latin.toml", "latin.toml:2: not UTF-8 text"),
    ):
        for command in (["lock", name], ["export", name, "--format", "requirements"], ["build", name]):
            code, _, err = run(capsys, *command)
            assert code == 2, err
            assert one_error(err).startswith(f"error: {words}"), err
    # verify reports it as a problem line, not a crash
    Path("specs").mkdir()
    Path("specs/latin.toml").write_bytes(Path("latin.toml").read_bytes())
    code, out, _ = run(capsys, "verify", "specs/latin.toml")
    assert code == 1 and "latin.toml:2: not UTF-8 text" in out, out


def test_a_lock_that_is_binary_or_a_directory(project: Project, capsys: Capsys) -> None:
    spec, lock = project.spec_path, project.lock_path
    for content, words in (
        (b"\x89PNG\r\n\x1a\n\x00\x00", "a binary file, not a lock"),
        (b"\xff\xfe", ":1: not UTF-8"),
    ):
        lock.write_bytes(content)
        code, _, err = run(capsys, "export", str(spec), "--format", "requirements")
        assert code == 2 and words in one_error(err)
        code, _, err = run(capsys, "diff", str(lock), str(lock))
        assert code == 2 and words in one_error(err)
        code, out, _ = run(capsys, "verify", str(spec))
        assert code == 1 and words.strip(":1") in out
    lock.unlink()
    lock.mkdir()
    code, _, err = run(capsys, "export", str(spec), "--format", "requirements")
    assert code == 2 and one_error(err) == f"error: {lock}: is a directory, not a lock"
    code, out, _ = run(capsys, "verify", str(spec))
    assert code == 1 and f"{lock}: is a directory" in out


# -- files written: export -o and init --dir --------------------------------------------------


def test_export_output_must_be_a_file_in_an_existing_directory(
    project: Project, tmp_path: Path, capsys: Capsys
) -> None:
    spec = str(project.spec_path)
    (tmp_path / "afile").write_text("x")
    cases = {
        str(tmp_path): "is a directory, not a file",
        str(tmp_path / "missing/req.txt"): f"no such directory {tmp_path / 'missing'}",
        str(tmp_path / "afile/req.txt"): f"{tmp_path / 'afile'} is a file, not a directory",
    }
    for output, words in cases.items():
        code, _, err = run(capsys, "export", spec, "--format", "requirements", "-o", output)
        assert code == 2 and words in one_error(err), err
    assert not (tmp_path / "missing").exists() and (tmp_path / "afile").read_text() == "x"
    code, _, err = run(capsys, "export", spec, "--format", "requirements", "-o", str(tmp_path / "req.txt"))
    assert code == 0, err
    assert (tmp_path / "req.txt").is_file()


def test_init_dir_is_created_but_never_a_file(tmp_path: Path, capsys: Capsys) -> None:
    (tmp_path / "afile").write_text("x")
    (tmp_path / "specs/taken.toml").mkdir(parents=True)
    for directory, name, words in (
        (tmp_path / "afile", "x", "afile is a file, not a directory"),
        (tmp_path / "afile/sub", "x", "afile is a file, not a directory"),
        (tmp_path / "specs", "taken", "taken.toml: is a directory, not a file"),
    ):
        code, _, err = run(capsys, "init", name, "--dir", str(directory), "--force")
        assert code == 2 and words in one_error(err), err
    code, _, err = run(capsys, "init", "x", "--dir", str(tmp_path / "new/deep"))
    assert code == 0, err
    assert (tmp_path / "new/deep/x.toml").is_file()


# -- spec values and TOML shapes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('"0000-01-01"', "spec.toml:3: invalid date '0000-01-01'"),
        ('"99999-01-01"', "spec.toml:3: invalid date '99999-01-01'"),
        ('"2026-02-30"', "spec.toml:3: invalid date '2026-02-30'"),
        ("0001-01-01T00:00:00+14:00", "spec.toml:3: date 0001-01-01 00:00:00+14:00 is out of range"),
        ("9999-12-31T23:59:59-10:00", "spec.toml:3: date 9999-12-31 23:59:59-10:00 is out of range"),
        ('"0001-01-01T00:00:00+14:00"', "spec.toml:3: date 0001-01-01T00:00:00+14:00 is out of range"),
        ("0000-01-01", "spec.toml:3:17: invalid TOML"),
    ],
)
def test_exclude_newer_out_of_range(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch, value: str, words: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("spec.toml").write_text(f'python = "3.11"\n[pip]\nexclude-newer = {value}\n')
    code, _, err = run(capsys, "export", "spec.toml", "--format", "requirements")
    assert code == 2
    assert one_error(err).startswith(f"error: {words}"), err


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("x = " + "[" * 3000 + "]" * 3000, "spec.toml: invalid TOML: arrays or tables nested too deeply"),
        (
            "x = " + "{a=" * 1000 + "1" + "}" * 1000,
            "spec.toml: invalid TOML: arrays or tables nested too deeply",
        ),
        ("x = " + "9" * 5000, "spec.toml:2: invalid TOML: a number too large"),
        ("[pip]\npackages = []\nx = " + "1" * 4400, "spec.toml:4: invalid TOML: a number too large"),
    ],
    ids=["deep-arrays", "deep-tables", "huge-int", "huge-int-line-4"],
)
def test_toml_too_deep_or_too_large(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch, body: str, words: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("spec.toml").write_text(f'python = "3.11"\n{body}\n')
    code, _, err = run(capsys, "export", "spec.toml", "--format", "requirements")
    assert code == 2 and one_error(err).startswith(f"error: {words}"), err
    Path("spec.lock").write_text(f"version = 1\n{body}\n")
    code, _, err = run(capsys, "diff", "spec.lock", "spec.lock")
    assert code == 2 and "spec.lock" in one_error(err), err


# -- the store: an env ID whose image's files are damaged -------------------------------------


def test_an_env_id_whose_stored_image_is_damaged(
    tmp_path: Path, capsys: Capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from envlock.store import EnvEntry, Store

    monkeypatch.setenv("ENVLOCK_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    store = Store()
    layer = store.put_blob(b"not a tar archive at all")
    config = store.put_blob(json.dumps({"rootfs": {"diff_ids": [layer]}, "history": []}).encode())
    manifest = store.put_blob(
        json.dumps(
            {"config": {"digest": config}, "layers": [{"digest": layer, "size": 1, "mediaType": "x"}]}
        ).encode()
    )
    env_id = "sha256:" + "5" * 64
    store.record_env(EnvEntry(env_id, manifest, config, "vision"))
    code, _, err = run(capsys, "diff", env_id[:20], env_id[:20])
    assert code == 1
    assert one_error(err).startswith(
        f"error: the store's image {config[:19]}… of env {env_id[:19]}… cannot be read"
    )
    assert "hint: check the store: envlock store fsck" in err


@pytest.mark.parametrize("kind", ["fifo", "zero", "devnull-link"])
def test_a_spec_or_lock_that_is_no_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    """A fifo would block for ever and /dev/zero never ends: both are one error line (exit 2)."""
    from envlock.boundary import read_text

    path = tmp_path / "x.toml"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero" if kind == "zero" else "/dev/null")
    with pytest.raises(EnvlockError, match="not a regular file"):
        read_text(path, "spec")


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_export_output_onto_a_fifo_or_link_is_refused_and_left_alone(tmp_path: Path, kind: str) -> None:
    """Writing is by rename: it would replace a device, fifo or link (as root, /dev/full)."""
    from envlock.boundary import check_output

    target = tmp_path / "out"
    if kind == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(EnvlockError, match="not a regular file"):
        check_output(target, "-o FILE", make_parents=False)
    assert target.is_symlink() or stat.S_ISFIFO(target.lstat().st_mode)
