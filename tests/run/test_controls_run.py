"""The engine with what surrounds a rollout: who applied it (journal and summary), the wave
results as fields; over the scripted backend and fake clock of `test_engine`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from orchestrator.errors import ExitCode
from orchestrator.models import Operator, Plan
from orchestrator.run.engine import ApplyEnv, Rollout
from orchestrator.run.gates import GateCall, GateResult, run_gate
from orchestrator.run.operator import current_operator
from orchestrator.view import journal_summary
from orchestrator.view.summary import summary_markdown, summary_text
from tests.run.test_engine import (
    UNREACHABLE,
    Run,
    apply,
    kinds,
    make_plan,
    no_fsync,  # noqa: F401 (autouse: the journal's fsyncs skipped)
    resume,
    settled_failure,
)

ALICE = Operator(user="alice", host="ctl-1", signers=["bob@example.org"])


class Gates:
    """A scripted gate runner: says no to the calls `refuse` names ("pre-gate", or the wave
    a wave gate follows), and records each call with the time it came (on the fake clock)."""

    def __init__(self, run: Run, refuse: set[object] | None = None) -> None:
        self.run = run
        self.refuse = refuse or set()
        self.calls: list[tuple[GateCall, float]] = []

    def __call__(self, call: GateCall) -> GateResult:
        self.calls.append((call, self.run.clock.now))
        key = "pre-gate" if call.wave is None else call.wave
        if key in self.refuse:
            return GateResult(1, "node h2: NotReady")
        return GateResult(0, "")


def go(
    run: Run,
    *,
    resumed: bool = False,
    operator: Operator | None = None,
    gates: Gates | None = None,
    wait: bool = True,
) -> ExitCode:
    environment = ApplyEnv(
        clock=run.clock,
        sleep=run.clock.sleep,
        on_event=run.emitted.append,
        operator=operator,
        wait_for_window=wait,
        sleep_until_window=run.clock.sleep,
    )
    if gates is not None:
        environment.run_gate = gates
    return Rollout(run.journal, run.backend, env=environment).run(resumed=resumed)


def test_who_applied_and_resumed_is_in_the_journal_and_the_summary(tmp_path: Path) -> None:
    plan = make_plan(3, pause_after=0)
    plan = plan.model_copy(
        update={"options": plan.options.model_copy(update={"ticket": "CHG-7", "reason": "rc93"})}
    ).sealed()
    first = apply(tmp_path, plan)
    assert go(first, operator=ALICE) != ExitCode.HOST_FAILED
    started = first.events[0]
    assert (started.type, started.operator) == ("run.started", ALICE)
    second = resume(first)
    carol = Operator(user="carol (as root)", host="ctl-2")
    assert go(second, resumed=True, operator=carol) == ExitCode.OK
    summary = journal_summary("resume", second.journal)
    assert summary.who == [
        "ticket CHG-7",
        "reason: rc93",
        "applied by alice@ctl-1, approved by bob@example.org",
        "resumed by carol (as root)@ctl-2",
    ]
    assert "  applied by alice@ctl-1, approved by bob@example.org" in summary_text(summary)
    assert "- resumed by carol (as root)@ctl-2" in summary_markdown(summary)


def test_wave_results_are_counts_in_fields(tmp_path: Path) -> None:
    plan = make_plan(5, "1,100%", max_failures="2")
    run = apply(tmp_path, plan, {"h3": settled_failure(), "h4": UNREACHABLE})
    assert go(run) == ExitCode.HOST_FAILED
    finished = [event for event in run.events if event.type == "wave.finished"]
    assert [(event.wave, event.counts, event.budget) for event in finished] == [
        (0, {"done": 1}, 2),
        (1, {"done": 2, "failed": 1, "unreachable": 1}, 2),
    ]


def test_the_operator_is_the_local_user_the_sudo_user_behind_it_and_the_signers() -> None:
    plain = current_operator([], environ={})
    assert plain.user and plain.host and plain.signers == []
    behind = current_operator(["r@x"], environ={"SUDO_USER": "alice"})
    assert behind.user == f"alice (as {plain.user})" or plain.user == "alice"
    assert behind.signers == ["r@x"]


def gated(plan: Plan, **options: object) -> Plan:
    return plan.model_copy(update={"options": plan.options.model_copy(update=options)}).sealed()


def test_a_wave_gate_runs_after_each_wave_after_its_bake_with_the_waves_hosts(
    tmp_path: Path,
) -> None:
    plan = gated(make_plan(5, "1,2,100%", bake=60, max_failures="1"), wave_gate="check-nodes")
    run = apply(tmp_path, plan, {"h3": settled_failure()})
    gates = Gates(run)
    assert go(run, gates=gates) == ExitCode.HOST_FAILED
    assert [call.wave for call, _ in gates.calls] == [0, 1, 2]
    assert run.clock.slept == [60, 60]  # the bake, before the gate; none after the last wave
    call, when = gates.calls[1]
    bake_ended = next(e.time for e in run.events if e.type == "gate.passed" and e.wave == 1)
    assert when == bake_ended  # the gate ran once the bake was over
    body = json.loads(call.stdin)
    assert (body["gate"], body["wave"], body["waves"]) == ("wave-gate", 1, 3)
    assert body["counts"] == {"done": 1, "failed": 1}
    assert [(h["name"], h["status"]) for h in body["hosts"]] == [("h2", "done"), ("h3", "failed")]
    assert call.env["RUNC_ROLLOUT_HOSTS"] == "h2 h3"
    assert call.env["RUNC_ROLLOUT_FAILED"] == "h3"
    assert call.env["RUNC_ROLLOUT_COUNTS"] == "done=1 failed=1"
    assert call.env["RUNC_ROLLOUT_WAVE"] == "1" and call.command == "check-nodes"
    assert run.journal.state.gates_passed == [0, 1, 2]


def test_a_wave_gate_that_says_no_halts_with_exit_3_and_resume_runs_it_again(
    tmp_path: Path,
) -> None:
    plan = gated(make_plan(5, "1,2,100%"), wave_gate="check-nodes")
    first = apply(tmp_path, plan)
    refusing = Gates(first, refuse={1})
    assert go(first, gates=refusing) == ExitCode.BUDGET_EXCEEDED
    assert first.backend.waves == [["h1"], ["h2", "h3"]]  # no wave after the gate said no
    failed, halted = first.events[-2:]
    assert (failed.type, failed.gate, failed.wave) == ("gate.failed", "wave-gate", 1)
    assert halted.type == "run.halted"
    assert halted.message == "after wave 1: wave-gate exit 1: node h2: NotReady"
    assert first.journal.state.status == "halted"
    second = resume(first)
    again = Gates(second)
    assert go(second, resumed=True, gates=again) == ExitCode.OK
    assert [call.wave for call, _ in again.calls] == [1, 2]  # wave 0's gate said yes already
    assert second.backend.waves == [["h4", "h5"]]


def test_a_pre_gate_that_says_no_touches_no_host(tmp_path: Path) -> None:
    plan = gated(make_plan(3), pre_gate="fleet-healthy", wave_gate="w")
    first = apply(tmp_path, plan)
    gates = Gates(first, refuse={"pre-gate"})
    assert go(first, gates=gates) == ExitCode.BUDGET_EXCEEDED
    assert first.backend.waves == []
    assert [event.type for event in first.events] == ["run.started", "gate.failed", "run.halted"]
    assert first.events[-1].message == "before the first wave: pre-gate exit 1: node h2: NotReady"
    ((call, _),) = gates.calls
    assert [host["name"] for host in json.loads(call.stdin)["hosts"]] == ["h1", "h2", "h3"]
    assert call.env["RUNC_ROLLOUT_WAVE"] == ""
    second = resume(first)
    assert go(second, resumed=True, gates=Gates(second)) == ExitCode.OK  # healthy now


def test_run_gate_runs_a_real_shell_command_with_stdin_env_and_a_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNC_ROLLOUT_NOTIFY", "https://hooks.example/t0ken")
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/admin.conf")

    def call(command: str, timeout: float = 10) -> GateCall:
        env = {"RUNC_ROLLOUT_WAVE": "3"}
        return GateCall("wave-gate", 3, command, b'{"hosts": []}', env, timeout)

    said = run_gate(call('read -r body; echo "wave $RUNC_ROLLOUT_WAVE: $body"'))
    assert (said.passed, said.output) == (True, 'wave 3: {"hosts": []}')
    inherited = run_gate(call('echo "$KUBECONFIG ${RUNC_ROLLOUT_NOTIFY:-no webhooks}"'))
    assert inherited.output == "/etc/kube/admin.conf no webhooks"
    refused = run_gate(call("printf 'not ready\\n\\033[2J'; exit 4"))
    assert (refused.passed, refused.exit_status) == (False, 4)
    assert refused.reason(call("x")) == "wave-gate exit 4: not ready / \\x1b[2J"
    chatty = run_gate(call("yes no-good | head -c 100000; exit 1"))
    assert len(chatty.output) == 503 and chatty.output.endswith("...")
    slow = run_gate(call("sleep 30 & wait", timeout=0.5))
    assert (slow.passed, slow.timed_out, slow.exit_status) == (False, True, None)
    assert slow.reason(call("x", timeout=0.5)) == "wave-gate timed out after 0.5s"


NIGHTS = ("Mon-Fri 22:00-06:00 Europe/Berlin",)


def berlin(text: str) -> float:
    from zoneinfo import ZoneInfo

    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Europe/Berlin")).timestamp()


def test_a_window_that_closes_mid_wave_lets_it_finish_and_the_next_wave_waits(
    tmp_path: Path,
) -> None:
    plan = gated(make_plan(3, "1,100%", bake=1), windows=NIGHTS, wave_gate="g")
    run = apply(tmp_path, plan)
    run.clock.now = berlin("2026-12-08 05:59:58")  # Tuesday, 2 s before the window closes
    gates = Gates(run)
    assert go(run, gates=gates) == ExitCode.OK
    waiting = next(event for event in run.events if event.type == "run.waiting")
    assert waiting.wave == 1 and waiting.until == berlin("2026-12-08 22:00")
    assert waiting.message == (
        "wave 1 waits for a maintenance window, next opening Tue 2026-12-08 21:00 UTC"
    )
    words = kinds(run.events)
    assert (
        words.index("wave.finished:0")
        < words.index("run.waiting:1")
        < words.index("wave.started:1")
    )
    finished_0 = next(e for e in run.events if e.type == "wave.finished" and e.wave == 0)
    assert finished_0.time > berlin("2026-12-08 06:00")  # wave 0 ran past the window's end
    started_1 = next(e for e in run.events if e.type == "wave.started" and e.wave == 1)
    assert started_1.time == berlin("2026-12-08 22:00")
    assert run.clock.slept[0] == 1  # the bake; then the wait for the window, on the clock
    assert run.clock.slept[1] == berlin("2026-12-08 22:00") - finished_0.time - 1


def test_no_wait_pauses_outside_the_windows_with_exit_5_and_resume_continues(
    tmp_path: Path,
) -> None:
    plan = gated(make_plan(3, "1,100%", pause_after=None), windows=NIGHTS)
    first = apply(tmp_path, plan)
    first.clock.now = berlin("2026-12-08 05:59:58")
    assert go(first, wait=False) == ExitCode.PAUSED
    assert first.backend.waves == [["h1"]]
    paused = first.events[-1]
    assert (paused.type, paused.wave, paused.until) == ("run.paused", 1, berlin("2026-12-08 22:00"))
    assert first.journal.state.status == "paused" and first.journal.state.paused_after is None
    assert first.clock.slept == []
    second = resume(first)
    assert go(second, resumed=True, wait=False) == ExitCode.PAUSED  # still daytime
    second.clock.now = berlin("2026-12-08 22:30")
    third = resume(second)
    assert go(third, resumed=True, wait=False) == ExitCode.OK
    assert third.backend.waves == [["h2", "h3"]]
    assert third.journal.state.status == "completed"


def test_a_window_pause_does_not_stand_for_a_promotion_pause(tmp_path: Path) -> None:
    """Paused for promotion after wave 0, then for a window before wave 1: resuming in the
    window runs wave 1 and does not pause for promotion again."""
    plan = gated(make_plan(3, "1,100%", pause_after=0), windows=NIGHTS)
    first = apply(tmp_path, plan)
    first.clock.now = berlin("2026-12-08 05:00")
    assert go(first, wait=False) == ExitCode.PAUSED
    assert kinds(first.events)[-1] == "run.paused:0"
    second = resume(first)
    second.clock.now = berlin("2026-12-08 12:00")
    assert go(second, resumed=True, wait=False) == ExitCode.PAUSED
    assert second.journal.state.paused_after == 0
    third = resume(second)
    third.clock.now = berlin("2026-12-08 23:00")
    assert go(third, resumed=True, wait=False) == ExitCode.OK
    assert third.backend.waves == [["h2", "h3"]]


def test_a_run_a_gate_halted_is_summed_up_as_needing_a_resume_not_a_new_plan(
    tmp_path: Path,
) -> None:
    plan = gated(make_plan(3, "1,100%"), wave_gate="check-nodes")
    run = apply(tmp_path, plan)
    assert go(run, gates=Gates(run, refuse={0})) == ExitCode.BUDGET_EXCEEDED
    summary = journal_summary("apply", run.journal)
    pending = [host for host in summary.hosts if host.status == "pending"]
    assert [host.action for host in pending] == ["not started: needs resume"] * 2
    assert summary.needs_resume
