"""The SSH backend: the host procedure per host over the executor's sessions, N at a time."""

from __future__ import annotations

from collections.abc import Mapping

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
from orchestrator.host.steps import SessionSteps
from orchestrator.models import PlannedHost, SshTarget


class SshBackend:
    def __init__(self, executor: Executor, concurrency: int) -> None:
        self.executor = executor
        self.concurrency = concurrency

    def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None:
        def one(name: str, planned: PlannedHost) -> None:
            context.on_outcome(name, self._upgrade(name, planned, context))

        run_on_hosts(hosts, one, concurrency=self.concurrency)

    def rollback(
        self,
        targets: Mapping[str, SshTarget],
        *,
        run_id: str | None,
        on_phase: PhaseListener,
    ) -> dict[str, HostOutcome | Exception]:
        def one(name: str, target: SshTarget) -> HostOutcome:
            steps = SessionSteps(self.executor.session(target, name=name))
            return rollback_host(steps, name, run_id=run_id, on_phase=on_phase)

        return run_on_hosts(targets, one, concurrency=self.concurrency)

    def _upgrade(self, name: str, planned: PlannedHost, context: WaveContext) -> HostOutcome:
        try:
            session = self.executor.session(planned.ssh, name=name)
            procedure = HostProcedure(
                SessionSteps(session),
                planned,
                context.plan.artifact,
                run_id=context.run_id,
                plan_id=context.plan.plan_id,
                sysctl_target=context.plan.options.sysctl_target,
                on_phase=context.on_phase,
                clock=context.clock,
            )
            return procedure.upgrade()
        except (HostUnreachable, ConnectionLost) as error:
            return HostOutcome("unreachable", context.phase_of(name), None, str(error))
        except StepFailed as failure:
            return HostOutcome(failure.status, context.phase_of(name), None, str(failure))
        except Exception as error:  # a host's unexpected error must not stop its wave
            message = f"{type(error).__name__}: {error}"
            return HostOutcome("failed", context.phase_of(name), None, message)
