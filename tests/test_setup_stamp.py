"""scripts/setup.sh keeps one install stamp: the run command (no extras: the "server" extra) and the test
command ("test") never reinstall each other's packages; a pyproject.toml or constraints.txt change reinstalls
once, keeping the extras; both install at the versions of constraints.txt."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >> "$(dirname "$0")/../calls.log"
"""


def setup(tmp: Path, extras: str = "") -> list[str]:
    """Run a copy of setup.sh in `tmp` with a stand-in .venv python; the pip installs it asked for."""
    log = tmp / ".venv" / "calls.log"
    log.unlink(missing_ok=True)
    subprocess.run(["bash", "scripts/setup.sh", *([extras] if extras else [])], cwd=tmp, check=True,
                   capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return [call for call in calls if call.startswith("-m pip install -q -e")]


def test_run_and_test_commands_share_one_install(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)

    (tmp_path / "constraints.txt").write_text("torch==2.13.0\n")
    pinned = "-m pip install -q -e .[server,test] -c constraints.txt"
    assert setup(tmp_path, "test") == [pinned]  # the test command first
    assert setup(tmp_path) == []  # then the run command: nothing reinstalled
    assert setup(tmp_path, "test") == []
    stamp = tmp_path / ".venv" / ".pidflow-installed"
    for changed in ("pyproject.toml", "constraints.txt"):
        earlier = (tmp_path / changed).stat().st_mtime - 5
        os.utime(stamp, (earlier, earlier))  # pyproject.toml, then constraints.txt, changed since
        assert setup(tmp_path) == [pinned]  # once, keeping the test extras
        assert setup(tmp_path, "test") == [] and setup(tmp_path) == []


def test_the_run_command_alone_installs_the_server_extra(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    assert setup(tmp_path) == ["-m pip install -q -e .[server]"]  # no constraints.txt here: no -c
