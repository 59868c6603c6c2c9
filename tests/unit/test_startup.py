"""`envlock verify` runs on every commit: it must not import anything heavy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("textual", "docker", "git", "pydantic", "rich", "concurrent.futures", "packaging")
WRAPPER = """
import json, sys
from envlock.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


@pytest.mark.parametrize("flags", [[], ["--hook"], ["--staged", "-q"]])
def test_verify_imports_nothing_heavy(project, flags: list[str]) -> None:
    argv = ["verify", *flags, str(project.spec_path), str(project.lock_path)]
    proc = subprocess.run(
        [sys.executable, "-c", WRAPPER, *argv],
        capture_output=True,
        text=True,
        check=True,
        cwd=project.spec_path.parent,
    )
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["code"] == 0, proc.stderr
    modules = result["modules"]
    loaded = [m for m in modules if m in HEAVY or m.startswith(tuple(h + "." for h in HEAVY))]
    assert loaded == []
    assert "envlock.verify" in modules
