"""A command imports only what it uses: `--version`, `--help` and a command's `--help` build
every command's options, and must not import pydantic, the models, the backends or rich (the
help screen is typer's plain one); their cost is timed in bench/startup.py, here only which
modules are loaded is checked."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("pydantic", "rich", "paramiko", "fabric", "yaml", "ansible_runner", "orchestrator.models")

PROBE = """
import contextlib, io, json, sys
from orchestrator.cli.app import main
argv = json.loads(sys.argv[1])
if argv is not None:
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    assert code == 0, code
print(json.dumps(sorted(sys.modules)))
"""


def loaded_modules(argv: list[str] | None) -> set[str]:
    """The modules a fresh interpreter holds after importing the CLI (and running `argv`)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(done.stdout))


@pytest.mark.parametrize(
    "argv",
    [None, ["--version"], ["--help"], ["status", "--help"], ["plan", "--help"]],
    ids=["import", "version", "help", "status-help", "plan-help"],
)
def test_cli_start_imports_nothing_heavy(argv: list[str] | None) -> None:
    modules = loaded_modules(argv)
    assert modules >= {"orchestrator.cli.app", "orchestrator.cli.plan"}
    heavy = sorted(name for name in HEAVY if name in modules)
    assert not heavy, f"{argv}: imported {heavy}"


def test_plan_imports_no_connection_machinery(tmp_path: Path, artifact: Path) -> None:
    """`plan` without --gather reads ssh_config to check every host's route (paramiko's parser),
    but opens no connection and runs nothing: fabric, the backends and the runs' modules stay
    out (on 100k hosts they were a fifth of a second of its CPU)."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[web]\nweb-1 ansible_host=10.0.0.1\nweb-2 ansible_host=10.0.0.2\n")
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    argv = ["plan", "-i", str(inventory), "--runc", str(artifact), "--sha256", digest]
    modules = loaded_modules([*argv, "-o", str(tmp_path / "plan.json")])
    assert "orchestrator.plan.planner" in modules
    unused = ("fabric", "orchestrator.backends.base", "orchestrator.run.launch")
    assert not [name for name in unused if name in modules]
