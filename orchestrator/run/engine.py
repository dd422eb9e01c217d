"""Carry out a reviewed plan wave by wave: the error budget, bake, pause, resume and the journal.

The engine owns no host logic (that is `host.procedure`) and no connection logic (that is the
backend, `backends.base.Backend`): it decides which hosts run when, records every outcome, and
judges each wave after all of its hosts have finished, as fabric judges a group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from orchestrator.backends.base import WaveContext, WaveRunner
from orchestrator.errors import ArtifactError, BadInput, ExitCode, PlanError
from orchestrator.host.procedure import HostOutcome, decide, describe
from orchestrator.models import (
    Event,
    HostFacts,
    HostPhase,
    HostStatus,
    Plan,
    PlannedHost,
)
from orchestrator.plan.artifact import sha256_file
from orchestrator.run.journal import PLAN_LIMIT, Journal
from orchestrator.util.fsutil import read_input

COUNTED_AGAINST_BUDGET: frozenset[HostStatus] = frozenset({"failed", "unreachable"})
SUCCEEDED: frozenset[HostStatus] = frozenset({"done", "noop"})


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


@dataclass
class ApplyEnv:
    """What the engine needs from the outside world, injected so tests can drive it."""

    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    on_event: Callable[[Event], None] = field(default=lambda event: None)


class Rollout:
    def __init__(self, journal: Journal, backend: WaveRunner, *, env: ApplyEnv) -> None:
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
        except BaseException:
            self.journal.snapshot()  # cut off by an error: its last host events too
            raise
        statuses = [host.status for host in self.journal.state.hosts.values()]
        failed = any(status in COUNTED_AGAINST_BUDGET for status in statuses)
        self._record("run.finished", status="failed" if failed else "completed")
        if "drift" in statuses:
            return ExitCode.DRIFT
        return ExitCode.HOST_FAILED if failed else ExitCode.OK

    def _wave(self, index: int) -> ExitCode | None:
        """Run the wave's hosts that need work, then judge the whole wave: a wave over its
        budget halts the run on every pass, also when a resume found nothing in it to redo."""
        wave = self.plan.waves[index]
        todo = {
            host.name: host for host in wave.hosts if self.journal.state.hosts[host.name].needs_work
        }
        if todo:
            self._run_wave(index, todo)
        statuses = {host.name: self.journal.state.hosts[host.name].status for host in wave.hosts}
        reason = halt_reason(index, wave.max_failures, statuses)
        if reason is not None:
            self._record("run.halted", wave=index, message=reason)
            return ExitCode.BUDGET_EXCEEDED
        if index == len(self.plan.waves) - 1:
            return None
        if self.plan.options.pause_after == index and self.journal.state.paused_after != index:
            self._record("run.paused", wave=index, message="paused for promotion: run `resume`")
            return ExitCode.OK
        if todo and self.plan.options.bake_seconds > 0:
            self.env.sleep(self.plan.options.bake_seconds)
        return None

    def _run_wave(self, index: int, todo: Mapping[str, PlannedHost]) -> None:
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
        wave = self.plan.waves[index]
        hosts = self.journal.state.hosts
        failed = sum(1 for host in wave.hosts if hosts[host.name].status in COUNTED_AGAINST_BUDGET)
        summary = (
            f"{len(wave.hosts) - failed} ok, {failed} failed or unreachable "
            f"(budget {wave.max_failures})"
        )
        self._record("wave.finished", wave=index, message=summary)

    def _on_outcome(self, name: str, outcome: HostOutcome) -> None:
        self._record("host.finished", host=name, **outcome.event_fields())

    def _on_phase(self, host: str, phase: HostPhase, runc_sha256: str | None) -> None:
        self._record("host.phase", host=host, phase=phase, runc_sha256=runc_sha256)

    def _record(self, type_: str, **fields: object) -> None:
        self.env.on_event(self.journal.record(type_, **fields))


def halt_reason(index: int, budget: int, statuses: Mapping[str, HostStatus]) -> str | None:
    """Why wave `index` halts the run, judged on its hosts' statuses, or None. More failed or
    unreachable hosts than the budget halts it; so does a wave in which no host succeeded
    (none upgraded, none already at the target), whatever the budget allows, as Ansible
    ends a play when every host of a batch failed."""
    failed = [name for name, status in statuses.items() if status in COUNTED_AGAINST_BUDGET]
    if len(failed) > budget:
        return (
            f"wave {index}: {len(failed)} failed or unreachable ({', '.join(failed)}), "
            f"more than its budget of {budget}"
        )
    if statuses and not any(status in SUCCEEDED for status in statuses.values()):
        listed = ", ".join(f"{name} {status}" for name, status in statuses.items())
        return f"wave {index}: no host succeeded ({listed}): a wave without a success halts"
    return None


def preview_fails(plan: Plan, results: dict[str, HostFacts | Exception]) -> bool:
    """Whether `apply` would fail a host `preview` shows: unreachable, or a host it cannot
    upgrade (no runc, not a target, no room...)."""
    for host in plan.hosts:
        result = results.get(host.name)
        if not isinstance(result, HostFacts):
            return True
        if decide(host, plan.artifact, result, run_id=None).action == "fail":
            return True
    return False


def preview(plan: Plan, results: dict[str, HostFacts | Exception]) -> list[str]:
    """`apply --dry-run`: what each host would get, judged from fresh facts by the procedure's
    own `decide`. Pure."""
    lines = []
    for host in plan.hosts:
        result = results.get(host.name)
        if not isinstance(result, HostFacts):
            lines.append(f"{host.name}: unreachable: {result}")
            continue
        decision = decide(host, plan.artifact, result, run_id=None)
        line = describe(decision, plan.artifact, result, plan.options.sysctl_target)
        lines.append(f"{host.name}: {line}")
    return lines
