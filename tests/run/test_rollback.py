"""Judging a rollback's outcomes against the run's journal (pure)."""

from __future__ import annotations

from orchestrator.host.procedure import HostOutcome, StepFailed
from orchestrator.models import HostState, RunState
from orchestrator.run.rollback import contradicting_journal, swapped_by_run

NEVER = HostOutcome("rolled_back", "none", "a" * 64, "run r never changed this host")
DONE = HostOutcome("rolled_back", "finished", "b" * 64)


def run_state(**hosts: HostState) -> RunState:
    return RunState(run_id="r", plan_id="p", hosts=hosts)


def test_swapped_by_run_counts_hosts_past_the_swap_not_rolled_back() -> None:
    state = run_state(
        done=HostState(wave=0, status="done", phase="finished"),
        mid=HostState(wave=0, status="failed", phase="verified"),
        staged=HostState(wave=0, status="failed", phase="staged"),
        noop=HostState(wave=0, status="noop", phase="none"),
        undone=HostState(wave=0, status="rolled_back", phase="finished"),
    )
    assert swapped_by_run(state) == {"done", "mid"}


def test_nothing_found_on_a_swapped_host_is_a_failure() -> None:
    error = RuntimeError("unreachable")
    results: dict[str, HostOutcome | Exception] = {
        "lost": NEVER,
        "fine": DONE,
        "untouched": NEVER,
        "down": error,
    }
    checked = contradicting_journal(results, {"lost", "fine", "down"})
    assert isinstance(checked["lost"], StepFailed)
    assert "the journal says this run swapped it" in str(checked["lost"])
    assert "never changed this host" in str(checked["lost"])
    assert checked["fine"] is DONE and checked["untouched"] is NEVER and checked["down"] is error
