"""The engine with what surrounds a rollout: who applied it (journal and summary), the wave
results as fields; over the scripted backend and fake clock of `test_engine`."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import ExitCode
from orchestrator.models import Operator
from orchestrator.run.engine import ApplyEnv, Rollout
from orchestrator.run.operator import current_operator
from orchestrator.view import journal_summary
from orchestrator.view.summary import summary_markdown, summary_text
from tests.run.test_engine import (
    UNREACHABLE,
    Run,
    apply,
    make_plan,
    no_fsync,  # noqa: F401 (autouse: the journal's fsyncs skipped)
    resume,
    settled_failure,
)

ALICE = Operator(user="alice", host="ctl-1", signers=["bob@example.org"])


def go(run: Run, *, resumed: bool = False, operator: Operator | None = None) -> ExitCode:
    environment = ApplyEnv(
        clock=run.clock, sleep=run.clock.sleep, on_event=run.emitted.append, operator=operator
    )
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
