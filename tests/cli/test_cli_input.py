"""Low findings of the first review: option values that docker would take as options, verification
commands split as a shell would, unbounded numbers, unparsable ssh arguments, unwritable
outputs: each one line and exit 2 (nothing changed), or a correct argument vector."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.diagnose.facts_report import facts_table
from orchestrator.host import commands
from orchestrator.host.facts import parse_facts
from orchestrator.host.session import HostUnreachable
from orchestrator.models import Event, HostFacts, HostState, RunState
from orchestrator.run.engine import preview_fails
from orchestrator.view.progress import ProgressPrinter, status_text
from tests.host.test_facts_parse import FULL_HOST
from tests.run.test_journal import small_plan

RUNC = Path("/usr/sbin/runc")


@pytest.fixture
def plan_args(tmp_path: Path) -> list[str]:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("h1\n")
    sha = hashlib.sha256(RUNC.read_bytes()).hexdigest()
    return ["plan", "-i", str(inventory), "--runc", str(RUNC), "--sha256", sha]


@pytest.mark.parametrize(
    ("option", "words"),
    [
        (["--verify-image", "--privileged"], "--verify-image"),
        (["--verify-image=-v=/:/h"], "--verify-image"),
        (["--verify-image", "busybox latest"], "--verify-image"),
        (["--verify-command", "sh -c 'echo"], "cannot be split into words"),
        (["--verify-exec-container=--privileged"], "--verify-exec-container"),
        (["--verify-timeout", "-5"], "--verify-timeout"),
        (["--verify-timeout", "inf"], "--verify-timeout"),
        (["--sysctl-target", "-1"], "--sysctl-target"),
        (["--sysctl-target", "100000000000000000000"], "--sysctl-target"),
        (["--sysctl-target", "1e20"], "--sysctl-target"),
        (["--bake", "inf"], "--bake"),
        (["--bake", "nan"], "--bake"),
        (["--pause-after", "-1"], "--pause-after"),
        (["--domain-key", "ansible_become_password"], "names a secret"),
    ],
)
def test_bad_plan_options_are_one_line_and_exit_2(
    plan_args: list[str],
    tmp_path: Path,
    option: list[str],
    words: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "plan.json"
    assert main([*plan_args, "-o", str(output), *option]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "Traceback" not in err, err
    assert not output.exists()


@pytest.mark.parametrize("output", ["/tmp", "/proc/x/y"])
def test_an_unwritable_plan_output(
    plan_args: list[str], output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*plan_args, "-o", output]) == 2
    assert capsys.readouterr().err.strip().startswith(f"runc-rollout: error: -o {output}: ")


def test_unbalanced_quotes_in_ssh_args(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text('h1 ansible_ssh_common_args="-o \'UserKnownHostsFile=/x"\n')
    assert main(["facts", "-i", str(inventory)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "host h1: ansible_ssh_common_args" in err[0]


def test_a_symlink_loop_in_group_vars(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hosts").write_text("h1\n")
    (tmp_path / "group_vars").mkdir()
    os.symlink("all", tmp_path / "group_vars" / "all")
    assert main(["facts", "-i", str(tmp_path / "hosts")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Too many levels of symbolic links" in err[0]


def fake_docker(tmp_path: Path) -> dict[str, str]:
    """A `docker` that records its arguments, one per line, and reports a running container."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    (bin_dir / "docker").write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do printf "%s\\n" "$a"; done >> {log}; echo --- >> {log}\n'
        'case "$1" in ps) echo keepalive;; inspect) echo true;; esac\n'
    )
    (bin_dir / "docker").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def docker_calls(tmp_path: Path) -> list[list[str]]:
    text = (tmp_path / "docker.log").read_text()
    return [call.strip("\n").split("\n") for call in text.split("---\n") if call.strip()]


def test_the_verification_command_is_split_as_a_shell_would_and_never_evaluated(
    tmp_path: Path,
) -> None:
    env = fake_docker(tmp_path)
    command = "sh -c 'echo \"$HOME\" $(id)' *"
    words = ["sh", "-c", 'echo "$HOME" $(id)', "*"]
    for step in (
        commands.verify_docker("r1", "lab/busybox", command, 10),
        commands.verify_exec(command, 10),
        commands.verify_exec(command, 10, "db-1"),
    ):
        script = step.script.replace(commands.STATE_DIR, str(tmp_path))
        done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    run, ps, exec_first, inspect, exec_chosen = docker_calls(tmp_path)
    assert run[0] == "run" and run[-len(words) - 2 :] == ["--", "lab/busybox", *words]
    assert ps[0] == "ps"
    assert exec_first == ["exec", "--", "keepalive", *words]
    assert inspect[-2:] == ["--", "db-1"]
    assert exec_chosen == ["exec", "--", "db-1", *words]


HOSTILE_TEXT = "x\x1b[2K\r  h1: done\n[/][red]"


def test_host_text_is_shown_never_obeyed(capsys: pytest.CaptureFixture[str]) -> None:
    """Escape sequences and rich markup from a host reach neither the terminal nor rich."""
    printer = ProgressPrinter(verbose=True)  # phases too
    for event in (
        Event(seq=1, time=0.0, type="host.finished", host="h1", status="failed",
              message=HOSTILE_TEXT),
        Event(seq=2, time=0.0, type="host.phase", host=HOSTILE_TEXT, phase="locked"),
    ):  # fmt: skip
        printer(event)
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\r" not in err
    assert "\\x1b[2K\\x0d  h1: done\\x0a[/][red]" in err
    assert err.count("\n") == 2  # one line each, whatever the host wrote
    state = RunState(
        run_id="r",
        plan_id="p",
        hosts={HOSTILE_TEXT: HostState(wave=0, message=HOSTILE_TEXT)},
    )
    text = status_text(state)
    assert "\x1b" not in text and text.count("\n") == 2


def test_the_facts_table_shows_hostile_values_as_text() -> None:
    facts = parse_facts("h1", FULL_HOST)
    assert facts.runc is not None
    runc = facts.runc.model_copy(update={"path": "/usr/[/]bin/\x1b[31mrunc", "version": "[/]"})
    table = facts_table({"h1": facts.model_copy(update={"runc": runc})})
    assert "\x1b" not in table and "/usr/[/]bin/\\x1b[31mrunc" in table


def test_plan_never_runs_the_artifact(
    plan_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unless asked (--run-artifact), plan does not execute the file it is given; the version
    can be stated (--runc-version) and each host then refuses a staged file reporting another."""
    mark = tmp_path / "ran"
    artifact = tmp_path / "runc"
    artifact.write_text(f"#!/bin/sh\ntouch {mark}\necho 'runc version 1.1.12'\n")
    artifact.chmod(0o755)
    sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    args = [*plan_args[:3], "--runc", str(artifact), "--sha256", sha, "--format", "json"]
    assert main([*args, "-o", str(tmp_path / "p.json"), "--runc-version", "1.1.12"]) == 0
    assert not mark.exists()
    assert '"version": "1.1.12"' in capsys.readouterr().out
    assert main([*args, "-o", str(tmp_path / "q.json"), "--run-artifact"]) == 0
    assert mark.exists()


def test_a_dry_run_fails_when_a_host_would(tmp_path: Path) -> None:
    plan = small_plan()
    unreachable: dict[str, HostFacts | Exception] = {
        host.name: HostUnreachable(host.name, "127.0.0.1", "refused") for host in plan.hosts
    }
    assert preview_fails(plan, unreachable)
    facts = parse_facts("h", FULL_HOST)
    # FULL_HOST's record.json is not a valid record: apply would fail the host, so must this.
    assert facts.record_json is not None
    assert preview_fails(plan, dict.fromkeys((h.name for h in plan.hosts), facts))
    clean = facts.model_copy(update={"record_json": None})
    assert not preview_fails(plan, dict.fromkeys((h.name for h in plan.hosts), clean))
