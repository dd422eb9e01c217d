"""The operator's gates, run on the controller: `--pre-gate` before the first wave, `--wave-gate`
after each wave (after its bake time). A gate is a shell command; it gets the wave's hosts and
outcomes as JSON on stdin and in `RUNC_ROLLOUT_*` environment variables; exit 0 lets the run go
on, anything else (a timeout too) halts it with the gate's output as the reason."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.models import GateName, Plan, RunState
from orchestrator.util.textsafe import one_line, terminal_safe

OUTPUT_KEPT = 4096  # bytes of a gate's output read back
REASON_MAX = 500  # characters of it kept as the reason
HOSTS_ENV_MAX = 64 * 1024  # RUNC_ROLLOUT_HOSTS is left empty beyond this (stdin has them all)


@dataclass(frozen=True)
class GateCall:
    """One gate to run: its command, what it reads on stdin, its environment, its timeout."""

    gate: GateName
    wave: int | None  # the wave it follows; None: the pre-gate
    command: str
    stdin: bytes
    env: Mapping[str, str]
    timeout: float


@dataclass(frozen=True)
class GateResult:
    exit_status: int | None  # None: it did not finish (timed out, or could not start)
    output: str  # bounded, on one line, terminal safe
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.exit_status == 0

    def reason(self, call: GateCall) -> str:
        if self.timed_out:
            said = f"timed out after {call.timeout:g}s"
        elif self.exit_status is None:
            said = "could not run"
        else:
            said = f"exit {self.exit_status}"
        return f"{call.gate} {said}" + (f": {self.output}" if self.output else "")


GateRunner = Callable[[GateCall], GateResult]


def gate_call(
    gate: GateName, command: str, plan: Plan, state: RunState, wave: int | None
) -> GateCall:
    """What `gate` gets: the wave's hosts (every host of the plan for the pre-gate) with their
    status and message, their counts by status, and who the run is."""
    planned = plan.hosts if wave is None else plan.waves[wave].hosts
    hosts = [
        {
            "name": host.name,
            "domain": host.domain,
            "status": state.hosts[host.name].status,
            "message": state.hosts[host.name].message,
        }
        for host in planned
    ]
    counts = dict(sorted(Counter(str(host["status"]) for host in hosts).items()))
    body = {
        "gate": gate,
        "run_id": state.run_id,
        "plan_id": plan.plan_id,
        "ticket": plan.options.ticket,
        "wave": wave,
        "waves": len(plan.waves),
        "counts": counts,
        "hosts": hosts,
    }
    names = " ".join(host.name for host in planned)
    failed = " ".join(str(h["name"]) for h in hosts if h["status"] in ("failed", "unreachable"))
    env = {
        "RUNC_ROLLOUT_GATE": gate,
        "RUNC_ROLLOUT_RUN_ID": state.run_id,
        "RUNC_ROLLOUT_PLAN_ID": plan.plan_id,
        "RUNC_ROLLOUT_WAVE": "" if wave is None else str(wave),
        "RUNC_ROLLOUT_WAVES": str(len(plan.waves)),
        "RUNC_ROLLOUT_HOSTS": names if len(names) <= HOSTS_ENV_MAX else "",
        "RUNC_ROLLOUT_FAILED": failed if len(failed) <= HOSTS_ENV_MAX else "",
        "RUNC_ROLLOUT_COUNTS": " ".join(f"{key}={value}" for key, value in counts.items()),
    }
    timeout = plan.options.gate_timeout
    return GateCall(gate, wave, command, json.dumps(body).encode(), env, timeout)


SECRET_ENV = frozenset({"RUNC_ROLLOUT_NOTIFY"})  # webhook URLs: a gate has no need of them


def _inherited() -> dict[str, str]:
    """The controller's environment (kubeconfig, proxies...) without runc-rollout's secrets."""
    return {name: value for name, value in os.environ.items() if name not in SECRET_ENV}


def run_gate(call: GateCall) -> GateResult:
    """`sh -c COMMAND` here, in its own process group (killed whole on timeout), stdin the
    JSON, stdout and stderr together into a temporary file of which the start is read back."""
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(
                ["/bin/sh", "-c", call.command],
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**_inherited(), **call.env},
                start_new_session=True,
            )
        except OSError as error:
            return GateResult(None, terminal_safe(error.strerror or error))
        timed_out = False
        try:
            process.communicate(call.stdin, timeout=call.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        output.seek(0)
        said = output.read(OUTPUT_KEPT).decode(errors="replace")
    status = None if timed_out else process.returncode
    return GateResult(status, one_line(said, REASON_MAX), timed_out)
