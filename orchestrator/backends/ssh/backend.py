"""The SSH backend: the host procedure per host over the executor's sessions, N at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import partial
from pathlib import Path

from orchestrator.backends.base import WaveContext
from orchestrator.backends.group import run_on_hosts
from orchestrator.host.procedure import (
    HostOutcome,
    HostProcedure,
    PhaseListener,
    StepFailed,
    rollback_host,
)
from orchestrator.host.session import ConnectionLost, Executor, HostUnreachable
from orchestrator.host.steps import Payload, SessionSteps
from orchestrator.models import PlannedHost, SshTarget
from orchestrator.plan.artifact import packed_artifact


class SshBackend:
    def __init__(self, executor: Executor, concurrency: int, *, gzip: bool = True) -> None:
        self.executor = executor
        self.concurrency = concurrency
        self.gzip = gzip  # a push sends the artifact compressed (else as it is)

    def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None:
        artifact = context.plan.artifact
        packed = (
            Payload(partial(packed_artifact, Path(artifact.path), artifact.sha256))
            if self.gzip
            else None
        )  # made when the first host needs it: not at all if every host fetches the URL

        def one(name: str, planned: PlannedHost) -> None:
            context.on_outcome(name, self._upgrade(name, planned, context, packed))

        run_on_hosts(hosts, one, concurrency=self.concurrency)

    def rollback(
        self,
        targets: Mapping[str, SshTarget],
        *,
        run_id: str | None,
        on_phase: PhaseListener,
    ) -> dict[str, HostOutcome | Exception]:
        def one(name: str, target: SshTarget) -> HostOutcome:
            try:
                steps = SessionSteps(self.executor.session(target, name=name))
                return rollback_host(steps, name, run_id=run_id, on_phase=on_phase)
            finally:
                self.executor.release(target, name=name)

        return run_on_hosts(targets, one, concurrency=self.concurrency)

    def _upgrade(
        self, name: str, planned: PlannedHost, context: WaveContext, packed: Payload | None
    ) -> HostOutcome:
        steps: SessionSteps | None = None
        procedure: HostProcedure | None = None
        try:
            steps = SessionSteps(self.executor.session(planned.ssh, name=name))
            procedure = HostProcedure(
                steps,
                planned,
                context.plan.artifact,
                packed=packed,
                run_id=context.run_id,
                plan_id=context.plan.plan_id,
                sysctl_target=context.plan.options.sysctl_target,
                on_phase=context.on_phase,
                clock=context.clock,
                refuse=context.plan.target.refuse if context.plan.target else (),
            )
            outcome = procedure.upgrade()
        except (HostUnreachable, ConnectionLost) as error:
            outcome = HostOutcome("unreachable", context.phase_of(name), None, str(error))
        except StepFailed as failure:
            outcome = HostOutcome(failure.status, context.phase_of(name), None, str(failure))
        except Exception as error:  # a host's unexpected error must not stop its wave
            message = f"{type(error).__name__}: {error}"
            outcome = HostOutcome("failed", context.phase_of(name), None, message)
        finally:
            self.executor.release(planned.ssh, name=name)
        return dataclasses.replace(
            outcome,
            delivery=procedure.delivery if procedure else None,
            sent_bytes=steps.sent_bytes if steps else None,
        )
