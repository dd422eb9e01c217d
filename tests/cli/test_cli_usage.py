"""Usage errors as a user meets them: the installed console script, run as a process, answers a
bad command line with typer's usage screen and exit 2, never a traceback, for every command."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

CONSOLE_SCRIPT = Path(sys.executable).parent / "runc-rollout"

# Per command: (a required option or argument left out, a value of the wrong kind). Commands
# with nothing required leave an option's value out instead; those with no typed option get an
# argument they do not take.
CASES: dict[str, tuple[list[str], list[str]]] = {
    "plan": (["-i", "x", "--sha256", "0" * 64], ["-i", "x", "--runc", "r", "--sha256", "0",
                                                 "--seed", "many"]),
    "facts": ([], ["-i", "x", "--concurrency", "zero"]),
    "audit": ([], ["-i", "x", "--fail-on", "sometimes"]),
    "unstick": ([], ["-i", "x", "--max-seconds", "soon"]),
    "apply": ([], ["plan.json", "--executor", "telnet"]),
    "status": ([], ["run", "another-run"]),
    "resume": ([], ["run", "--concurrency", "-3"]),
    "rollback": (["--runs-dir"], ["run", "--executor", "pigeon"]),
    "lab up": (["--state-dir"], ["--hosts", "four"]),
    "lab status": (["--state-dir"], ["surplus"]),
    "lab down": (["--inventory"], ["surplus"]),
    "lab build-runc": (["--no-such-value"], ["surplus"]),
    "lab trigger": (["--host"], ["--state-dir"]),
    "sign": (["plan.json"], ["plan.json", "--key"]),
    "verify-plan": ([], ["plan.json", "--required-signatures", "some"]),
    "advisories": (["--check"], ["surplus"]),
}  # fmt: skip


def _usage_error(argv: list[str]) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), *argv], capture_output=True, text=True, timeout=60, stdin=None
    )
    return argv, done


def _all_cases() -> list[list[str]]:
    argvs: list[list[str]] = []
    for command, (missing, bad) in CASES.items():
        words = command.split()
        argvs += [[*words, "--no-such-option"], [*words, *missing], [*words, *bad]]
    return argvs


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="needs the installed console script")
def test_every_usage_error_is_typers_usage_screen_and_exit_2() -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(_usage_error, _all_cases()))
    for argv, done in results:
        where = f"runc-rollout {' '.join(argv)}"
        assert done.returncode == 2, (where, done.returncode, done.stderr)
        assert "Traceback" not in done.stderr + done.stdout, where
        # typer's usage screen, or its one line for an option left without its value
        assert done.stderr.startswith(("Usage: runc-rollout", "Error: ")), (where, done.stderr)
        assert "\nError: " in "\n" + done.stderr, where
        assert len(done.stderr.splitlines()) <= 6, (where, done.stderr)


def test_every_command_is_covered() -> None:
    from orchestrator.cli.app import app
    from orchestrator.cli.lab import lab_app

    names = {
        command.name or getattr(command.callback, "__name__", "")
        for command in app.registered_commands
    }
    names |= {f"lab {command.name}" for command in lab_app.registered_commands}
    assert names == set(CASES)


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="needs the installed console script")
def test_version_is_the_package_version() -> None:
    from orchestrator import __version__

    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"runc-rollout {__version__}"
