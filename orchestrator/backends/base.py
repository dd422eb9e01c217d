"""The interface every backend provides to the run engine and to rollback.

A backend carries out the host procedure (`orchestrator.host.procedure`) on many hosts: the SSH
backend over its own connections, the Ansible backend as ansible-runner jobs whose action plugin
runs the same procedure. It reports through callbacks; judging the wave is the engine's job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from orchestrator.host.procedure import HostOutcome, PhaseListener
from orchestrator.models import HostPhase, Plan, PlannedHost, SshTarget


@dataclass(frozen=True)
class WaveContext:
    """What a backend needs to carry out one wave of a run, and where it reports."""

    plan: Plan
    run_id: str
    on_phase: PhaseListener  # a host reached a phase (journal `host.phase`)
    on_outcome: Callable[[str, HostOutcome], None]  # a host finished (exactly once per host)
    phase_of: Callable[[str], HostPhase]  # how far the journal says a host got
    clock: Callable[[], float] = time.time
    # A job of the wave runs these hosts on this execution node (None: the controller), as said.
    on_job: Callable[[str | None, list[str], str], None] = lambda node, hosts, message: None


class WaveRunner(Protocol):
    """What the run engine needs of a backend."""

    def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None:
        """Upgrade one wave's hosts; every host gets exactly one `on_outcome`."""
        ...


class Backend(WaveRunner, Protocol):
    """A backend: waves for the engine, and rollback."""

    def rollback(
        self,
        targets: Mapping[str, SshTarget],
        *,
        run_id: str | None,
        on_phase: PhaseListener,
    ) -> dict[str, HostOutcome | Exception]:
        """Roll each host back to its host-side record (of `run_id` only, when given): its
        outcome, or the error that stopped it (like `run_on_hosts`)."""
        ...
