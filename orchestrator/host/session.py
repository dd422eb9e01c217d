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
from orchestrator.host.commands import EXIT_KILLED, EXIT_TIMEOUT
from orchestrator.models import SshTarget


def killed_after(command: str, timeout: float) -> str:
    """`command` under `sh`, killed on the host (SIGKILL) once `timeout` seconds have passed:
    what every session runs, whatever the connection does."""
    return f"timeout -s KILL {math.ceil(timeout)} sh -c {shlex.quote(command)}"


def timed_out(exit_status: int, duration: float, timeout: float) -> bool:
    """Whether a command run by `killed_after` ended because its time was up."""
    return exit_status in (-1, EXIT_TIMEOUT, EXIT_KILLED) and duration >= math.ceil(timeout)


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left: exit status (-1 if killed by a signal), output, wall time."""

    exit_status: int
    stdout: str
    stderr: str
    duration: float

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
