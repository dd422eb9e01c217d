"""The executor interface: everything runc-rollout does to a host is `run` a command or `put` a
file, over one session per host. Backends (SSH here, Ansible later) implement these protocols.

Errors (defined in `orchestrator.errors`, re-exported here) carry the host's name and address so
that a fleet report can say which host failed and why; `run_on_hosts` collects them per host
instead of raising, and the caller judges the batch.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from orchestrator.errors import (
    AuthenticationFailed,
    CommandTimeout,
    ConnectionLost,
    ExecutorError,
    HostKeyRejected,
    HostUnreachable,
)
from orchestrator.models import SshTarget

T = TypeVar("T")
R = TypeVar("R")


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

    def close(self) -> None:
        """Close every session."""
        ...


def run_on_hosts(
    items: Mapping[str, T],
    fn: Callable[[str, T], R],
    *,
    concurrency: int,
    on_done: Callable[[str, R | Exception], None] | None = None,
) -> dict[str, R | Exception]:
    """`fn(name, item)` for every host, at most `concurrency` at a time, each outcome kept.

    Like fabric's GroupResult: one host's exception does not stop the others; the caller judges
    the batch afterwards. Results are in the order of `items`. `on_done` sees each outcome as it
    arrives (in the calling thread). On KeyboardInterrupt, hosts not yet started are cancelled.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    outcomes: dict[str, R | Exception] = {}
    if not items:
        return outcomes
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=min(concurrency, len(items)), thread_name_prefix="host"
    )
    try:
        futures = {pool.submit(fn, name, item): name for name, item in items.items()}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                outcome: R | Exception = future.result()
            except Exception as error:
                outcome = error
            outcomes[name] = outcome
            if on_done is not None:
                on_done(name, outcome)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return {name: outcomes[name] for name in items}


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
    "run_on_hosts",
]
