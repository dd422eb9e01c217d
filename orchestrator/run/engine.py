"""Carry out a reviewed plan wave by wave: the error budget, bake, pause, resume and the journal.

The engine owns no host logic (that is `host.procedure`) and no connection logic (that is the
backend, `backends.base.Backend`): it decides which hosts run when, records every outcome, and
judges each wave after all of its hosts have finished, as fabric judges a group.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from orchestrator.backends.base import WaveContext, WaveRunner
from orchestrator.errors import ArtifactError, BadInput, ExitCode, PlanError
from orchestrator.host.constants import SYSCTL_KEY, SYSCTL_PROC
from orchestrator.host.procedure import (
    HostOutcome,
    decide,
    describe,
    swap_targets,
    sysctl_settings_to_change,
)
from orchestrator.models import (
    Artifact,
    Event,
    HostFacts,
    HostPhase,
    HostStatus,
    Operator,
    Plan,
    PlannedHost,
)
from orchestrator.plan.artifact import sha256_file
from orchestrator.plan.windows import next_opening, parse_windows, utc_text
from orchestrator.run.gates import GateCall, GateRunner, gate_call, run_gate
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
    operator: Operator | None = None  # who applies: recorded when the run starts or resumes
    run_gate: GateRunner = run_gate  # the operator's --pre-gate and --wave-gate commands
    wait_for_window: bool = True  # outside the maintenance windows: wait (else pause and exit)
    sleep_until_window: Callable[[float], None] = time.sleep  # (the view counts it down)


class Rollout:
    def __init__(self, journal: Journal, backend: WaveRunner, *, env: ApplyEnv) -> None:
        self.journal = journal
        self.plan = journal.plan
        self.backend = backend
        self.env = env
        self.windows = parse_windows(self.plan.options.windows)
        self._pre_gated = False

    def run(self, *, resumed: bool = False) -> ExitCode:
        """Run every wave that still has work; return the exit code the CLI should use."""
        self._record(
            "run.resumed" if resumed else "run.started",
            operator=self.env.operator,
            limit=self.journal.state.limit,
        )
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
        if not wave.hosts:  # a wave `apply --limit` left no host of: nothing to run or judge
            return None
        todo = {
            host.name: host for host in wave.hosts if self.journal.state.hosts[host.name].needs_work
        }
        if todo:
            code = self._await_window(index) or self._pre_gate()
            if code is not None:
                return code
            self._run_wave(index, todo)
        statuses = {host.name: self.journal.state.hosts[host.name].status for host in wave.hosts}
        reason = halt_reason(index, wave.max_failures, statuses)
        if reason is not None:
            self._record("run.halted", wave=index, message=reason)
            return ExitCode.BUDGET_EXCEEDED
        last = not any(later.hosts for later in self.plan.waves[index + 1 :])
        options = self.plan.options
        pausing = not last and options.pause_after == index
        pausing = pausing and self.journal.state.paused_after != index
        if todo and not last and not pausing and options.bake_seconds > 0:
            self.env.sleep(options.bake_seconds)
        code = self._wave_gate(index)
        if code is not None or last:
            return code
        if pausing:
            self._record("run.paused", wave=index, message="paused for promotion: run `resume`")
            return ExitCode.PAUSED
        return None

    def _await_window(self, index: int) -> ExitCode | None:
        """Start wave `index` only inside a maintenance window: outside, wait for the next one
        to open (or, without waiting, pause the run)."""
        while True:
            now = self.env.clock()
            opens = next_opening(self.windows, now)
            if opens <= now:
                return None
            said = f"wave {index} waits for a maintenance window, next opening {utc_text(opens)}"
            if not self.env.wait_for_window:
                self._record("run.paused", wave=index, until=opens, message=f"{said}: resume then")
                return ExitCode.PAUSED
            self._record("run.waiting", wave=index, until=opens, message=said)
            self.env.sleep_until_window(opens - now)

    def _pre_gate(self) -> ExitCode | None:
        """`--pre-gate`, before the first wave this apply (or resume) works on."""
        command = self.plan.options.pre_gate
        if command is None or self._pre_gated:
            return None
        self._pre_gated = True
        return self._gate(gate_call("pre-gate", command, self.plan, self.journal.state, None))

    def _wave_gate(self, index: int) -> ExitCode | None:
        """`--wave-gate` after wave `index`, unless it already said yes (a resume runs a gate
        that said no, or never ran, again)."""
        command = self.plan.options.wave_gate
        if command is None or index in self.journal.state.gates_passed:
            return None
        return self._gate(gate_call("wave-gate", command, self.plan, self.journal.state, index))

    def _gate(self, call: GateCall) -> ExitCode | None:
        """Run a gate; a gate that says no halts the run, as an exhausted error budget does."""
        result = self.env.run_gate(call)
        wave = call.wave
        reason = result.reason(call)
        if result.passed:
            self._record("gate.passed", wave=wave, gate=call.gate, message=reason)
            return None
        self._record("gate.failed", wave=wave, gate=call.gate, message=reason)
        where = "before the first wave" if wave is None else f"after wave {wave}"
        self._record("run.halted", wave=wave, message=f"{where}: {reason}")
        return ExitCode.BUDGET_EXCEEDED

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
        counts = Counter(hosts[host.name].status for host in wave.hosts)
        self._record(
            "wave.finished",
            wave=index,
            message=summary,
            counts=dict(sorted(counts.items())),
            budget=wave.max_failures,
        )

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


def preview(
    plan: Plan, results: dict[str, HostFacts | Exception], *, diff: bool = False
) -> list[str]:
    """`apply --dry-run`: what each host would get, judged from fresh facts by the procedure's
    own `decide`; with `diff` (`--check --diff`), each change as before and after. Pure."""
    lines = []
    for host in plan.hosts:
        result = results.get(host.name)
        if not isinstance(result, HostFacts):
            lines.append(f"{host.name}: unreachable: {result}")
            continue
        decision = decide(host, plan.artifact, result, run_id=None)
        line = describe(decision, plan.artifact, result, plan.options.sysctl_target, host)
        lines.append(f"{host.name}: {line}")
        if diff and decision.action == "swap":
            lines.extend(changes(result, plan.artifact, plan.options.sysctl_target))
    return lines


def changes(facts: HostFacts, artifact: Artifact, sysctl_target: int) -> list[str]:
    """What a swap changes on a host, each thing as a `-` line (now) and a `+` line (after),
    as Ansible's --diff shows it: every runc file, the runtime sysctl, and each line of a
    sysctl file that sets another value."""
    new = f"{artifact.version or '?'} sha256 {artifact.sha256[:12]}"
    out: list[str] = []
    for runc in swap_targets(facts, artifact):
        out += [
            f"  --- {runc.file}",
            f"  +++ {runc.file}",
            f"  -runc {runc.version or '?'} sha256 {(runc.sha256 or '?')[:12]}",
            f"  +runc {new}",
        ]
    out += [
        f"  --- {SYSCTL_PROC} (runtime)",
        f"  +++ {SYSCTL_PROC} (runtime)",
        f"  -{facts.sysctl_runtime}",
        f"  +{sysctl_target}",
    ]
    for setting in sysctl_settings_to_change(facts, sysctl_target):
        name = setting.real_file or setting.file
        out += [
            f"  --- {name}",
            f"  +++ {name}",
            f"  @@ line {setting.line} @@",
            f"  -{SYSCTL_KEY} = {setting.value.strip()}",
            f"  +{SYSCTL_KEY} = {sysctl_target}",
        ]
    return out
