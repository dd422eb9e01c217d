"""How the host procedure reaches a host: batches of steps, each batch one round trip.

`StepRunner` is all the procedure needs; `SessionSteps` provides it over any `HostSession` (the
SSH backend's, or the Ansible backend's connection), and the unit tests over a fake host.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from orchestrator.errors import ConnectionLost
from orchestrator.host.commands import (
    HostCommand,
    StepResult,
    batch,
    split_batch,
    stdin_launcher,
)
from orchestrator.host.session import HostSession, cut_message

INCOMPLETE = 125  # the launcher's exit status when the script arrived short


class Payload:
    """Bytes made on first use, then shared by every host of the run (the artifact's gzip: a
    run whose hosts all fetch it themselves never makes it). Safe to use from many threads."""

    def __init__(self, make: Callable[[], bytes]) -> None:
        self._make = make
        self._data: bytes | None = None
        self._lock = threading.Lock()

    def data(self) -> bytes:
        with self._lock:
            if self._data is None:
                self._data = self._make()
            return self._data


class StepRunner(Protocol):
    @property
    def host(self) -> str: ...

    def run(self, *steps: HostCommand) -> list[StepResult]:
        """Run `steps` in order until one fails: the results of those that ran, the last being
        the failure (exit -1 if the batch ended during it)."""
        ...

    def send(self, step: HostCommand, payload: bytes) -> StepResult:
        """Run the one step `step` with `payload` on its stdin (the only step that reads it)."""
        ...

    def put(self, local: Path, remote: str, *, mode: int) -> None: ...


class SessionSteps:
    """`StepRunner` over a `HostSession`: the batch travels on stdin, checked on arrival.
    `sent_bytes` counts what went to the host: scripts, payloads and files (not SSH's framing)."""

    def __init__(self, session: HostSession) -> None:
        self.session = session
        self.sent_bytes = 0

    @property
    def host(self) -> str:
        return self.session.host

    def run(self, *steps: HostCommand) -> list[StepResult]:
        nonce = secrets.token_hex(8)
        command = batch(steps, nonce)
        script = command.script.encode()
        launcher = stdin_launcher(script)
        self.sent_bytes += len(launcher) + len(script)
        result = self.session.run(launcher, timeout=command.timeout, stdin=script)
        results = split_batch(result.stdout, result.stderr, nonce)
        if result.cut:  # the step the output was cut in failed, and the batch ended there
            name = results[-1].name if results else steps[0].name
            return [*results[:-1], StepResult(name, -1, "", cut_message())]
        if not results and result.exit_status == INCOMPLETE:
            raise ConnectionLost(self.host, "", "the batch script arrived incomplete")
        if not results:  # the shell did not even start it: say why, as the first step's failure
            return [StepResult(steps[0].name, result.exit_status, result.stdout, result.stderr)]
        return results

    def send(self, step: HostCommand, payload: bytes) -> StepResult:
        self.sent_bytes += len(step.script) + len(payload)
        result = self.session.run(step.script, timeout=step.timeout, stdin=payload)
        if result.cut:
            return StepResult(step.name, -1, "", cut_message())
        return StepResult(step.name, result.exit_status, result.stdout, result.stderr)

    def put(self, local: Path, remote: str, *, mode: int) -> None:
        self.sent_bytes += local.stat().st_size
        self.session.put(local, remote, mode=mode)
