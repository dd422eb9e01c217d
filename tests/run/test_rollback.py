"""Judging a rollback's outcomes against the run's journal, and what it leaves in the journal."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from orchestrator.backends.base import WaveContext
from orchestrator.host.procedure import HostOutcome, PhaseListener, StepFailed
from orchestrator.models import HostState, PlannedHost, RunState, SshTarget
from orchestrator.run.journal import STATE_FILE, Journal
from orchestrator.run.rollback import contradicting_journal, roll_back, swapped_by_run
from orchestrator.view.summary import rollback_summary, summary_json
from tests.run.test_journal import clock, small_plan

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


class RollingBack:
    """A backend whose every host rolls back at once."""

    def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None:
        raise NotImplementedError

    def rollback(
        self, targets: Mapping[str, SshTarget], *, run_id: str | None, on_phase: PhaseListener
    ) -> dict[str, HostOutcome | Exception]:
        for name in targets:
            on_phase(name, "finished", "c" * 64)
        return {name: HostOutcome("rolled_back", "finished", "c" * 64) for name in targets}


def test_a_rollback_leaves_the_state_snapshot_current(tmp_path: Path) -> None:
    """Its events are host events only, which snapshot the state at most every few seconds."""
    journal = Journal.create(tmp_path, small_plan(), clock)
    journal.record("run.started")
    targets = {host.name: host.ssh for host in journal.plan.hosts}
    roll_back(RollingBack(), targets, journal)
    saved = RunState.model_validate_json((journal.run_dir / STATE_FILE).read_text())
    assert saved == journal.state
    assert {host.status for host in saved.hosts.values()} == {"rolled_back"}


def test_rollback_summary_as_json_names_each_host_and_the_counts() -> None:
    outcomes = {
        "a": ("rolled_back", "ab" * 32, ""),
        "b": ("failed", None, "no record of the run\x1b[31m"),
    }
    document = json.loads(summary_json(rollback_summary(None, outcomes, 2.5)))
    assert document["status"] == "failed" and document["counts"] == {"rolled_back": 1, "failed": 1}
    hosts = {host["name"]: host for host in document["hosts"]}
    assert hosts["a"]["action"] == "rolled back to its before"
    assert hosts["b"]["reason"] == "no record of the run\x1b[31m"  # JSON escapes it: data
