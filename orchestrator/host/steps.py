"""How the host procedure reaches a host: batches of steps, each batch one round trip.

`StepRunner` is all the procedure needs; `SessionSteps` provides it over any `HostSession` (the
SSH backend's, or the Ansible backend's connection), and the unit tests over a fake host.
"""

from __future__ import annotations

import secrets
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
from orchestrator.host.session import HostSession

INCOMPLETE = 125  # the launcher's exit status when the script arrived short


class StepRunner(Protocol):
    @property
    def host(self) -> str: ...

    def run(self, *steps: HostCommand) -> list[StepResult]:
        """Run `steps` in order until one fails: the results of those that ran, the last being
        the failure (exit -1 if the batch ended during it)."""
        ...

    def put(self, local: Path, remote: str, *, mode: int) -> None: ...


class SessionSteps:
    """`StepRunner` over a `HostSession`: the batch travels on stdin, checked on arrival."""

    def __init__(self, session: HostSession) -> None:
        self.session = session

    @property
    def host(self) -> str:
        return self.session.host

    def run(self, *steps: HostCommand) -> list[StepResult]:
        nonce = secrets.token_hex(8)
        command = batch(steps, nonce)
        script = command.script.encode()
        result = self.session.run(stdin_launcher(script), timeout=command.timeout, stdin=script)
        results = split_batch(result.stdout, result.stderr, nonce)
        if not results and result.exit_status == INCOMPLETE:
            raise ConnectionLost(self.host, "", "the batch script arrived incomplete")
        if not results:  # the shell did not even start it: say why, as the first step's failure
            return [StepResult(steps[0].name, result.exit_status, result.stdout, result.stderr)]
        return results

    def put(self, local: Path, remote: str, *, mode: int) -> None:
        self.session.put(local, remote, mode=mode)
