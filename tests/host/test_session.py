"""What every session runs on a host (`killed_after`), and how a batch reads a command whose
output was cut: real `sh` here, through a session that runs it as a host would."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from orchestrator.host.commands import HostCommand
from orchestrator.host.session import OUTPUT_CAP, CommandResult, killed_after, over_cap
from orchestrator.host.steps import SessionSteps


class LocalSession:
    """A `HostSession` that runs each command here, as sshd would run it on a host."""

    host = "here"

    def run(self, command: str, *, timeout: float, stdin: bytes | None = None) -> CommandResult:
        started = time.monotonic()
        done = subprocess.run(
            ["sh", "-c", killed_after(command, timeout)], input=stdin or b"", capture_output=True
        )
        return CommandResult(
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
            time.monotonic() - started,
            over_cap(done.stdout) or over_cap(done.stderr),
        )

    def put(self, local: Path, remote: str, *, mode: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def run_here(command: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["sh", "-c", killed_after(command, 30)], input=stdin, capture_output=True, timeout=60
    )


def test_a_command_keeps_its_status_stdin_and_both_streams() -> None:
    done = run_here("cat; echo err >&2; exit 3", stdin=b"in\n")
    assert (done.returncode, done.stdout, done.stderr) == (3, b"in\n", b"err\n")


def test_each_stream_is_cut_on_the_host_after_the_cap() -> None:
    """A writer past the cap gets SIGPIPE: the host sends the cap + 1 bytes, and stops."""
    started = time.monotonic()
    done = run_here("yes; echo never")
    assert len(done.stdout) == OUTPUT_CAP + 1 and done.returncode != 0
    assert time.monotonic() - started < 20
    done = run_here("yes >&2")
    assert len(done.stderr) == OUTPUT_CAP + 1 and done.stdout == b""


def test_a_batch_cut_short_fails_the_step_it_was_in() -> None:
    """Not a lost connection: the steps before it passed, the one it was cut in failed (and
    says why), the batch ended there: the procedure rolls back as after any failed step."""
    steps = SessionSteps(LocalSession())
    results = steps.run(
        HostCommand("before", "echo fine", 10),
        HostCommand("flood", "echo started; yes '\U0001f600 is four bytes'", 10),
        HostCommand("after", "echo never", 10),
    )
    assert [(result.name, result.exit_status) for result in results] == [
        ("before", 0),
        ("flood", -1),
    ]
    assert results[0].stdout == "fine\n"
    assert (
        results[1].last_line()
        == f"the host sent more than {OUTPUT_CAP >> 20} MiB of output: cut there"
    )
