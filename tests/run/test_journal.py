"""The local journal: events are the truth, the state file is rebuilt from them."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.models import Artifact, Plan, PlannedHost, SshTarget, Wave, WaveOptions
from orchestrator.run.journal import EVENTS_FILE, PLAN_FILE, STATE_FILE, Journal, read_events


def small_plan() -> Plan:
    hosts = [
        PlannedHost(name=name, domain="a", ssh=SshTarget(address="127.0.0.1"))
        for name in ("h1", "h2", "h3")
    ]
    waves = [
        Wave(index=0, hosts=hosts[:1], max_failures=0, domains={"a": 1}),
        Wave(index=1, hosts=hosts[1:], max_failures=0, domains={"a": 2}),
    ]
    plan = Plan(
        plan_id="x",
        plan_hash="0" * 64,
        inventory=("inv",),
        artifact=Artifact(path="/tmp/runc", sha256="a" * 64, size=1),
        options=WaveOptions(),
        waves=waves,
        skipped=[],
        domains={"a": 3},
    )
    return plan.sealed()


def clock() -> float:
    return 1_800_000_000.0


def test_events_fold_into_state(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, small_plan(), clock)
    journal.record("run.started")
    journal.record("wave.started", wave=0)
    journal.record("host.phase", host="h1", phase="swapped", runc_sha256="b" * 64)
    journal.record("host.finished", host="h1", status="done", phase="finished")
    journal.record("wave.finished", wave=0)
    state = journal.state
    assert state.hosts["h1"].status == "done"
    assert state.hosts["h1"].runc_sha256 == "b" * 64
    assert state.hosts["h2"].status == "pending"
    assert state.next_wave == 1
    saved = json.loads((journal.run_dir / STATE_FILE).read_text())
    assert saved["hosts"]["h1"]["status"] == "done"
    assert (journal.run_dir.stat().st_mode & 0o077) == 0


def test_state_is_rebuilt_when_missing_and_half_line_ignored(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, small_plan(), clock)
    journal.record("run.started")
    journal.record("host.finished", host="h1", status="failed", message="verify timed out")
    (journal.run_dir / STATE_FILE).unlink()
    with (journal.run_dir / EVENTS_FILE).open("a") as handle:
        handle.write('{"seq": 3, "time": 1.0, "type": "host.fin')  # a crash mid-write
    events, problems = read_events(journal.run_dir / EVENTS_FILE)
    assert [event.seq for event in events] == [1, 2]
    assert problems and ":3: unreadable" in problems[0]
    reopened = Journal.open(journal.run_dir, clock)
    assert reopened.state.hosts["h1"].status == "failed"
    assert reopened.state.hosts["h1"].message == "verify timed out"
    reopened.record("run.resumed")
    assert reopened.state.last_seq == 3
    events, _ = read_events(journal.run_dir / EVENTS_FILE)
    assert [event.type for event in events][-1] == "run.resumed"


def test_the_run_keeps_the_plan_as_pydantic_writes_it(tmp_path: Path) -> None:
    """The plan copy is written in pieces; its bytes are the plan's own JSON all the same."""
    plan = small_plan()
    journal = Journal.create(tmp_path, plan)
    copy = (journal.run_dir / PLAN_FILE).read_text()
    assert copy == plan.model_dump_json(indent=2) + "\n"
    assert Journal.open(journal.run_dir).plan == plan
