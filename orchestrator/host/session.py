"""The executor interface: everything runc-rollout does to a host is `run` a command or `put` a
file, over one session per host. Backends (SSH here, Ansible later) implement these protocols.

Errors (defined in `orchestrator.errors`, re-exported here) carry the host's name and address so
that a fleet report can say which host failed and why.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator.errors import (
    AuthenticationFailed,
    CommandTimeout,
    ConnectionLost,
    ExecutorError,
    HostKeyRejected,
    HostUnreachable,
)
from orchestrator.host.commands import EXIT_KILLED, EXIT_TIMEOUT, stdin_launcher
from orchestrator.models import SshTarget

OUTPUT_CAP = 8 << 20  # bytes of stdout, and of stderr, one command may send back


def killed_after(command: str, timeout: float) -> str:
    """`command` under `sh`, killed on the host (SIGKILL) once `timeout` seconds have passed,
    its stdout and its stderr each cut on the host after `OUTPUT_CAP` + 1 bytes (a writer past
    that gets SIGPIPE): what every session runs, whatever the connection does. Exits with
    `command`'s status."""
    run = f'timeout -s KILL {math.ceil(timeout)} sh -c "$1"'
    cut = f"head -c {OUTPUT_CAP + 1}"
    capped = (
        f"exec 4>&1 5>&2; rc=$({{ {{ {{ {run} 3>&- 4>&- 5>&-; echo $? >&3; }} | {cut} >&4; }} "
        f"2>&1 | {cut} >&5; }} 3>&1); exit ${{rc:-1}}"
    )
    return f"sh -c {shlex.quote(capped)} sh {shlex.quote(command)}"


def over_cap(output: str | bytes) -> bool:
    """Whether one stream of a command's output was cut (more than `OUTPUT_CAP` bytes)."""
    size = len(output.encode("utf-8", "surrogateescape") if isinstance(output, str) else output)
    return size > OUTPUT_CAP


def cut_message() -> str:
    return f"the host sent more than {OUTPUT_CAP >> 20} MiB of output: cut there"


def timed_out(exit_status: int, duration: float, timeout: float) -> bool:
    """Whether a command run by `killed_after` ended because its time was up."""
    return exit_status in (-1, EXIT_TIMEOUT, EXIT_KILLED) and duration >= math.ceil(timeout)


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left: exit status (-1 if killed by a signal), output, wall time.
    Output over the cap makes a failed command (`cut`), never a lost connection: the steps it
    was running fail, and the host is rolled back and unlocked as after any failure."""

    exit_status: int
    stdout: str
    stderr: str
    duration: float
    cut: bool = False  # more than `OUTPUT_CAP` bytes of stdout or stderr: the rest was dropped

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


class HostSession(Protocol):
    """One connection to one host, reused for all of that host's steps."""

    @property
    def host(self) -> str:
        """The host's inventory name (its address if it has none)."""
        ...

    def run(self, command: str, *, timeout: float, stdin: bytes | None = None) -> CommandResult:
        """Run a POSIX shell script; raise `CommandTimeout` (after killing it) if it overruns."""
        ...

    def put(self, local: Path, remote: str, *, mode: int) -> None:
        """Write `local` to the path `remote` with permissions `mode`; not atomic: stage first."""
        ...

    def close(self) -> None: ...


def send_script(session: HostSession, script: str, *, timeout: float) -> CommandResult:
    """Run a host-side script the one way scripts are sent: on stdin, through the checksummed
    launcher (nothing large in argv; with stdin, Ansible's connection asks for no terminal, which
    would turn the output's newlines into CRLF)."""
    data = script.encode()
    return session.run(stdin_launcher(data), timeout=timeout, stdin=data)


class Executor(Protocol):
    def session(self, target: SshTarget, *, name: str | None = None) -> HostSession:
        """The open session to `target`, connecting if needed; `name` is used in messages."""
        ...

    def release(self, target: SshTarget, *, name: str | None = None) -> None:
        """Close `target`'s session if it is open (its host is done; `session` opens anew)."""
        ...

    def close(self) -> None:
        """Close every session."""
        ...


__all__ = [
    "AuthenticationFailed",
    "CommandResult",
    "CommandTimeout",
    "ConnectionLost",
    "Executor",
    "ExecutorError",
    "HostKeyRejected",
    "HostSession",
    "HostUnreachable",
]
