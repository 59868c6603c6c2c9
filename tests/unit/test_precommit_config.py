"""init --pre-commit: envlock's hook is added to .pre-commit-config.yaml by a text edit that
keeps every comment and hook of the user's, byte for byte; twice adds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from envlock import __version__
from envlock.cli import main
from envlock.errors import UsageError
from envlock.precommit import HOOK_REPO, add_hook, block

Capsys = pytest.CaptureFixture[str]

TEAM = """\
# Our hooks. Keep this list short.
default_stages: [pre-commit]
repos:
  # formatting first
  - repo: https://github.com/psf/black
    rev: 24.1.0   # pinned on purpose
    hooks:
      - id: black
  - repo: local
    hooks:
      - id: no-op
        name: no-op
        entry: 'true'
        language: system
  # - repo: https://example.org/disabled
# CI settings below
ci:
  autofix_prs: false
"""

ZERO_INDENT = """\
repos:
- repo: local
  hooks:
  - id: x
    name: x
    entry: x
    language: system
"""


def envlock_repos(config: dict) -> list[dict]:
    return [r for r in config["repos"] if any(h["id"] == "envlock-verify" for h in r["hooks"])]


@pytest.mark.parametrize("old", [TEAM, ZERO_INDENT, "repos:\n", "fail_fast: true\n"])
def test_added_block_parses_and_old_text_stays_byte_for_byte(old: str) -> None:
    new = add_hook(old, "/src/envlock", "0123abc")
    assert new is not None
    loaded = yaml.safe_load(new)
    (repo,) = envlock_repos(loaded)
    assert repo == {"repo": "/src/envlock", "rev": "0123abc", "hooks": [{"id": "envlock-verify"}]}
    # exactly one contiguous block was inserted; removing it gives the old file back
    indent = "" if old is ZERO_INDENT else "  "
    inserted = block("/src/envlock", "0123abc", indent)
    if "repos:" not in old:
        inserted = "repos:\n" + inserted
    assert new.count(inserted) == 1
    assert new.replace(inserted, "") == old
    # the user's hooks and settings are all still there
    before = yaml.safe_load(old) or {}
    for key, value in before.items():
        if key == "repos":
            assert loaded["repos"][: len(value or [])] == (value or [])
        else:
            assert loaded[key] == value


def test_block_goes_after_the_last_hook_before_the_next_top_level_key() -> None:
    new = add_hook(TEAM, HOOK_REPO, "v1")
    assert new is not None
    lines = new.splitlines()
    start = lines.index(f"  - repo: {HOOK_REPO}")
    assert lines[start - 1] == "        language: system"
    assert lines[start + 4] == "  # - repo: https://example.org/disabled"


def test_second_run_adds_nothing() -> None:
    once = add_hook(TEAM)
    assert once is not None
    assert add_hook(once) is None


def test_new_file_and_empty_flow_list() -> None:
    created = add_hook(None)
    assert created is not None
    assert yaml.safe_load(created) == {
        "repos": [{"repo": HOOK_REPO, "rev": f"v{__version__}", "hooks": [{"id": "envlock-verify"}]}]
    }
    new = add_hook("repos: []  # none yet\nfail_fast: true\n")
    assert new is not None
    assert new.startswith("repos: # none yet\n")
    assert yaml.safe_load(new)["fail_fast"] is True
    assert len(envlock_repos(yaml.safe_load(new))) == 1


def test_revs_and_paths_that_yaml_would_misread_are_quoted() -> None:
    new = add_hook(None, "/path with space/envlock", "1234e5")
    assert new is not None
    (repo,) = envlock_repos(yaml.safe_load(new))
    assert repo["repo"] == "/path with space/envlock"
    assert repo["rev"] == "1234e5"


def test_crlf_file_stays_crlf() -> None:
    old = "repos:\r\n  - repo: a\r\n    rev: b\r\n    hooks:\r\n      - id: c\r\n"
    new = add_hook(old, "x", "y")
    assert new is not None
    assert new.startswith(old)
    assert "\n" not in new.replace("\r\n", "")


def test_flow_style_list_is_refused_with_the_block_to_add() -> None:
    with pytest.raises(UsageError) as info:
        add_hook("repos: [{repo: local, hooks: []}]\n")
    assert "not a block list" in info.value.message
    assert info.value.hint is not None and "- id: envlock-verify" in info.value.hint


def test_cli_init_pre_commit_edits_the_config_at_the_repo_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    (tmp_path / ".git").mkdir()
    config = tmp_path / ".pre-commit-config.yaml"
    config.write_text(TEAM)
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)

    argv = ["init", "--pre-commit", "--hook-repo", "/src/envlock", "--hook-rev", "abc123"]
    assert main(argv) == 0
    assert "Added the envlock-verify hook" in capsys.readouterr().err
    text = config.read_text()
    assert text.replace(block("/src/envlock", "abc123", "  "), "") == TEAM
    assert not (sub / ".pre-commit-config.yaml").exists()

    assert main(argv) == 0
    assert "already has the envlock-verify hook" in capsys.readouterr().err
    assert config.read_text() == text


def test_cli_init_name_and_pre_commit_write_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["init", "vision", "--pre-commit"]) == 0
    assert capsys.readouterr().out.strip() == "specs/vision.toml"
    config = yaml.safe_load((tmp_path / ".pre-commit-config.yaml").read_text())
    assert envlock_repos(config)[0]["rev"] == f"v{__version__}"


def test_cli_init_writes_nothing_when_the_config_cannot_be_edited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".pre-commit-config.yaml").write_text("repos: [{repo: local, hooks: []}]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["init", "vision", "--pre-commit"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot add the hook")
    assert not (tmp_path / "specs").exists()


def test_cli_init_without_name_or_pre_commit_is_bad_input(capsys: Capsys) -> None:
    assert main(["init"]) == 2
    assert capsys.readouterr().err.startswith("error: nothing to do: give a NAME")


OLD_LIST_FORMAT = """\
# pre-commit < 1.0
-   repo: https://github.com/pre-commit/pre-commit-hooks
    sha: v0.9.1
    hooks:
    -   id: trailing-whitespace
"""


def _init_pre_commit(root: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    (root / ".git").mkdir(exist_ok=True)
    monkeypatch.chdir(root)
    return main(["init", "vision", "--pre-commit"])


def test_old_list_format_is_refused_with_migrate_config_and_nothing_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    config = tmp_path / ".pre-commit-config.yaml"
    config.write_text(OLD_LIST_FORMAT)
    assert _init_pre_commit(tmp_path, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: the old pre-commit format (a top-level list")
    assert "hint: run `pre-commit migrate-config`" in err
    assert "Traceback" not in err
    assert config.read_text() == OLD_LIST_FORMAT
    assert not (tmp_path / "specs").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("repos:\n  - repo: local\n   hooks: [\n", ":3: not valid YAML"),
        ("just a string\n", "not a pre-commit config (a YAML str, not a mapping)"),
        ("\xff\xfe", "not UTF-8 text"),
    ],
)
def test_invalid_config_is_one_error_line_and_nothing_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys, content: str, message: str
) -> None:
    config = tmp_path / ".pre-commit-config.yaml"
    config.write_bytes(content.encode("latin-1"))
    assert _init_pre_commit(tmp_path, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}")
    assert message in err.splitlines()[0]
    assert config.read_bytes() == content.encode("latin-1")
    assert not (tmp_path / "specs").exists()


def test_config_that_is_a_directory_or_fifo_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    import os

    config = tmp_path / ".pre-commit-config.yaml"
    config.mkdir()
    assert _init_pre_commit(tmp_path, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err == f"error: {config}: is a directory\n"
    assert config.is_dir() and not any(config.iterdir())
    config.rmdir()
    os.mkfifo(config)
    assert _init_pre_commit(tmp_path, monkeypatch) == 2  # would block on open/read
    assert "not a regular file" in capsys.readouterr().err
    assert not (tmp_path / "specs").exists()


def test_unreadable_config_is_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys
) -> None:
    # a symlink loop cannot be opened by anyone (root included: the suite may run as root)
    config = tmp_path / ".pre-commit-config.yaml"
    config.symlink_to(config.name)
    assert _init_pre_commit(tmp_path, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: too many levels of symbolic links")
    assert config.is_symlink() and not (tmp_path / "specs").exists()


def test_edit_that_would_not_read_back_is_refused() -> None:
    from envlock.precommit import _check_new

    with pytest.raises(UsageError) as info:
        _check_new("repos:\n  - repo: local\n    hooks: []\n", Path("c.yaml"), "r", "v")
    assert "not one envlock can edit safely" in info.value.message
    assert info.value.hint is not None and "- id: envlock-verify" in info.value.hint
