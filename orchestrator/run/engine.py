"""Carry out a reviewed plan wave by wave: the error budget, bake, pause, resume and the journal.

The engine owns no host logic (that is `hostops`) and no connection logic (that is the
executor): it decides which hosts run when, records every outcome, and judges each wave after
all of its hosts have finished, as fabric judges a group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from orchestrator.backends.group import run_on_hosts
from orchestrator.errors import ArtifactError, BadInput, ExitCode, PlanError
from orchestrator.host.procedure import (
    HostOutcome,
    HostProcedure,
    PhaseListener,
    StepFailed,
    sysctl_files_to_change,
)
from orchestrator.host.session import ConnectionLost, Executor, HostUnreachable
from orchestrator.models import (
    UNSETTLED_PHASES,
    Event,
    HostFacts,
    HostPhase,
    HostState,
    HostStatus,
    Plan,
    PlannedHost,
)
from orchestrator.plan.artifact import sha256_file
from orchestrator.run.journal import PLAN_LIMIT, Journal
from orchestrator.util.fsutil import read_input

FINAL_STATUSES: frozenset[HostStatus] = frozenset(
    {"done", "noop", "failed", "drift", "rolled_back"}
)
COUNTED_AGAINST_BUDGET: frozenset[HostStatus] = frozenset({"failed", "unreachable"})


def load_plan(path: Path) -> Plan:
    """Read a plan file and refuse it if its body no longer matches its `plan_hash`."""
    try:
        plan = Plan.model_validate_json(read_input(path, PLAN_LIMIT, "plan file"))
    except BadInput as error:
        raise PlanError(str(error)) from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise PlanError(f"{path}: not a valid plan: {where}: {first['msg']}") from None
    if plan.computed_hash() != plan.plan_hash:
        raise PlanError(
            f"{path}: plan_hash does not match the plan's body: it was edited after review; "
            "make a new plan"
        )
    if plan.plan_id != plan.sealed().plan_id:  # the id is not part of the body: check it too
        raise PlanError(f"{path}: plan_id {plan.plan_id!r} does not match plan_hash: edited")
    return plan


def check_artifact(plan: Plan) -> None:
    path = Path(plan.artifact.path)
    if not path.is_file():
        raise ArtifactError(f"{path}: the plan's artifact is missing")
    actual = sha256_file(path)
    if actual != plan.artifact.sha256:
        raise ArtifactError(f"{path}: sha256 is {actual}, the plan says {plan.artifact.sha256}")


def needs_work(host: HostState) -> bool:
    """Not finished, or failed at a point where only the host knows its state (resume looks)."""
    return host.status not in FINAL_STATUSES or (
        host.status == "failed" and host.phase in UNSETTLED_PHASES
    )


@dataclass
class ApplyEnv:
    """What the engine needs from the outside world, injected so tests can drive it."""

    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    on_event: Callable[[Event], None] = field(default=lambda event: None)


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


class WaveBackend(Protocol):
    """Carries out the upgrade of one wave's hosts: over SSH here, or through Ansible."""

    def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None: ...


class SshWaves:
    """The SSH backend: `HostProcedure` per host, `concurrency` hosts at a time."""

    def __init__(self, executor: Executor, concurrency: int) -> None:
        self.executor = executor
        self.concurrency = concurrency

    def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None:
        def one(name: str, planned: PlannedHost) -> None:
            context.on_outcome(name, self._upgrade(name, planned, context))

        run_on_hosts(hosts, one, concurrency=self.concurrency)

    def _upgrade(self, name: str, planned: PlannedHost, context: WaveContext) -> HostOutcome:
        try:
            session = self.executor.session(planned.ssh, name=name)
            procedure = HostProcedure(
                session,
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


class Rollout:
    def __init__(self, journal: Journal, backend: WaveBackend, *, env: ApplyEnv) -> None:
        self.journal = journal
        self.plan = journal.plan
        self.backend = backend
        self.env = env

    def run(self, *, resumed: bool = False) -> ExitCode:
        """Run every wave that still has work; return the exit code the CLI should use."""
        self._record("run.resumed" if resumed else "run.started")
        try:
            for wave in self.plan.waves:
                code = self._wave(wave.index)
                if code is not None:
                    return code
        except KeyboardInterrupt:
            self._record("run.interrupted", message="interrupted; `resume` continues the run")
            return ExitCode.INTERRUPTED
        statuses = [host.status for host in self.journal.state.hosts.values()]
        failed = any(status in COUNTED_AGAINST_BUDGET for status in statuses)
        self._record("run.finished", status="failed" if failed else "completed")
        if "drift" in statuses:
            return ExitCode.DRIFT
        return ExitCode.HOST_FAILED if failed else ExitCode.OK

    def _wave(self, index: int) -> ExitCode | None:
        wave = self.plan.waves[index]
        state = self.journal.state
        already_finished = state.next_wave > index
        todo = {host.name: host for host in wave.hosts if needs_work(state.hosts[host.name])}
        if not todo:
            return None
        self._record("wave.started", wave=index, message=f"{len(todo)} hosts")
        context = WaveContext(
            plan=self.plan,
            run_id=self.journal.run_id,
            on_phase=self._on_phase,
            on_outcome=self._on_outcome,
            phase_of=lambda name: self.journal.state.hosts[name].phase,
            clock=self.env.clock,
            on_job=lambda node, hosts, message: self._record(
                "wave.job", wave=index, execution_node=node, hosts=hosts, message=message
            ),
        )
        self.backend.run_wave(todo, context)
        hosts = self.journal.state.hosts
        failed = [
            host.name for host in wave.hosts if hosts[host.name].status in COUNTED_AGAINST_BUDGET
        ]
        summary = (
            f"{len(wave.hosts) - len(failed)} ok, {len(failed)} failed or unreachable "
            f"(budget {wave.max_failures})"
        )
        self._record("wave.finished", wave=index, message=summary)
        if len(failed) > wave.max_failures:
            self._record(
                "run.halted",
                wave=index,
                message=f"wave {index}: {len(failed)} failed or unreachable "
                f"({', '.join(failed)}), more than its budget of {wave.max_failures}",
            )
            return ExitCode.BUDGET_EXCEEDED
        last = index == len(self.plan.waves) - 1
        if not last and self.plan.options.pause_after == index and not already_finished:
            self._record("run.paused", wave=index, message="paused for promotion: run `resume`")
            return ExitCode.OK
        if not last and self.plan.options.bake_seconds > 0:
            self.env.sleep(self.plan.options.bake_seconds)
        return None

    def _on_outcome(self, name: str, outcome: HostOutcome) -> None:
        self._record(
            "host.finished",
            host=name,
            status=outcome.status,
            phase=outcome.phase,
            runc_sha256=outcome.runc_sha256,
            message=outcome.message,
            probe=outcome.probe,
        )

    def _on_phase(self, host: str, phase: HostPhase, runc_sha256: str | None) -> None:
        self._record("host.phase", host=host, phase=phase, runc_sha256=runc_sha256)

    def _record(self, type_: str, **fields: object) -> None:
        self.env.on_event(self.journal.record(type_, **fields))


def preview_fails(plan: Plan, results: dict[str, HostFacts | Exception]) -> bool:
    """Whether `apply` would fail a host `preview` shows: unreachable, no runc, not a target."""
    for host in plan.hosts:
        result = results.get(host.name)
        if not isinstance(result, HostFacts):
            return True
        runc = result.runc
        if runc is None or runc.sha256 is None:
            return True
        if runc.sha256 != plan.artifact.sha256 and runc.target_problem is not None:
            return True
    return False


def preview(plan: Plan, results: dict[str, HostFacts | Exception]) -> list[str]:
    """`apply --dry-run`: what each host would get, judged from fresh facts. Pure."""
    lines = []
    for host in plan.hosts:
        result = results.get(host.name)
        if not isinstance(result, HostFacts):
            lines.append(f"{host.name}: unreachable: {result}")
            continue
        runc = result.runc
        if runc is None or runc.sha256 is None:
            lines.append(f"{host.name}: fail: no runc binary found ({result.runc_source})")
            continue
        before = host.before
        if before is not None and (runc.file, runc.sha256) != (
            before.runc_path,
            before.runc_sha256,
        ):
            lines.append(
                f"{host.name}: drift: {runc.file} sha256 {runc.sha256[:12]} not as planned"
            )
            continue
        if runc.sha256 == plan.artifact.sha256:
            lines.append(f"{host.name}: noop: {runc.file} already at the target")
            continue
        if runc.target_problem is not None:
            lines.append(f"{host.name}: fail: {runc.target_problem}; not touched")
            continue
        files = sysctl_files_to_change(result, plan.options.sysctl_target)
        lines.append(
            f"{host.name}: swap {runc.file} {runc.version or '?'} ({runc.sha256[:12]}) -> "
            f"{plan.artifact.version or '?'} ({plan.artifact.sha256[:12]}); "
            f"sysctl {result.sysctl_runtime} -> {plan.options.sysctl_target}"
            + (f"; rewrite {', '.join(files)}" if files else "")
        )
    return lines
