"""The local journal: events are the truth, the state file is a snapshot rebuilt from them."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from orchestrator.backends.base import WaveContext
from orchestrator.errors import ExitCode, JournalWriteFailed
from orchestrator.models import (
    Artifact,
    HostState,
    Plan,
    PlannedHost,
    ProbeResult,
    RunState,
    SshTarget,
    Wave,
    WaveOptions,
)
from orchestrator.run import journal as journal_module
from orchestrator.run.engine import ApplyEnv, Rollout
from orchestrator.run.journal import (
    EVENTS_FILE,
    PLAN_FILE,
    SNAPSHOT_GROWTH,
    SNAPSHOT_SECONDS,
    STATE_FILE,
    Journal,
    read_events,
    state_chunks,
)


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


def first_wave_done(tmp_path: Path) -> Journal:
    """A new run whose first wave, h1 alone, finished done."""
    journal = Journal.create(tmp_path, small_plan(), clock)
    journal.record("run.started")
    journal.record("wave.started", wave=0)
    journal.record("host.phase", host="h1", phase="swapped", runc_sha256="b" * 64)
    journal.record("host.finished", host="h1", status="done", phase="finished")
    journal.record("wave.finished", wave=0)
    return journal


def test_events_fold_into_state(tmp_path: Path) -> None:
    journal = first_wave_done(tmp_path)
    state = journal.state
    assert state.hosts["h1"].status == "done"
    assert state.hosts["h1"].runc_sha256 == "b" * 64
    assert state.hosts["h2"].status == "pending"
    assert state.next_wave == 1
    journal.record("run.finished", status="completed")  # a run event: the snapshot is current
    saved = json.loads((journal.run_dir / STATE_FILE).read_text())
    assert saved["hosts"]["h1"]["status"] == "done"
    assert saved["last_seq"] == 6
    assert (journal.run_dir.stat().st_mode & 0o077) == 0


def saved_seq(journal: Journal) -> int:
    seq: int = json.loads((journal.run_dir / STATE_FILE).read_text())["last_seq"]
    return seq


def test_host_events_snapshot_the_state_after_some_time_and_some_growth(tmp_path: Path) -> None:
    """Rewriting every host's state after every event made a run quadratic in its hosts: a
    snapshot waits for SNAPSHOT_SECONDS and for new events of SNAPSHOT_GROWTH of its size."""
    now = [1_800_000_000.0]
    journal = Journal.create(tmp_path, small_plan(), lambda: now[0])
    journal.record("run.started")
    assert saved_seq(journal) == 1
    size = (journal.run_dir / STATE_FILE).stat().st_size
    events = journal.run_dir / EVENTS_FILE
    logged = events.stat().st_size
    while events.stat().st_size - logged < size * SNAPSHOT_GROWTH:  # grown enough, too soon
        journal.record("host.phase", host="h2", phase="locked")
    assert saved_seq(journal) == 1
    now[0] += SNAPSHOT_SECONDS
    journal.record("host.phase", host="h2", phase="staged")  # now it is due
    seq = journal.state.last_seq
    assert saved_seq(journal) == seq
    now[0] += SNAPSHOT_SECONDS
    journal.record("host.phase", host="h2", phase="swapped")  # time enough, too little growth
    assert saved_seq(journal) == seq
    journal.record("wave.finished", wave=1)
    journal.snapshot()  # what rollback does after its hosts, which end with no run event
    assert saved_seq(journal) == seq + 2


def test_a_crash_between_snapshots_loses_nothing(tmp_path: Path) -> None:
    journal = first_wave_done(tmp_path)
    journal.record("wave.started", wave=1)
    journal.record("host.phase", host="h2", phase="locked")
    del journal  # the process dies: state.json is the one of run.started
    run_dir = next(tmp_path.iterdir())
    stale = (run_dir / STATE_FILE).read_text()
    assert json.loads(stale)["last_seq"] == 1
    watched = Journal.open(run_dir, clock, read_only=True)  # status: folds the events
    assert watched.state.last_seq == 7
    assert watched.state.hosts["h1"].status == "done"
    assert watched.state.hosts["h2"].status == "running"
    assert watched.state.next_wave == 1
    assert (run_dir / STATE_FILE).read_text() == stale  # read only: left as it was
    resumed = Journal.open(run_dir, clock)  # resume: the snapshot is brought up to date
    saved = RunState.model_validate_json((run_dir / STATE_FILE).read_text())
    assert saved == resumed.state == watched.state


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


def test_events_are_lines_ended_by_newline_only(tmp_path: Path) -> None:
    """JSON leaves U+2028 and U+0085 unescaped: splitting the log as text lines lost such an
    event from a host's message; the log is read a line at a time, by its newlines."""
    journal = Journal.create(tmp_path, small_plan(), clock)
    journal.record("host.finished", host="h1", status="failed", message="a\u2028b\x85c\x0bd")
    events, problems = read_events(journal.run_dir / EVENTS_FILE)
    assert problems == [] and len(events) == 1
    reopened = Journal.open(journal.run_dir, clock)
    assert reopened.problems == []
    assert reopened.state.hosts["h1"].message == "a\u2028b\x85c\x0bd"


@pytest.mark.parametrize(("hosts", "per_chunk"), [(0, 2), (1, 2), (3, 2), (4, 2), (5, 1)])
def test_the_state_is_written_in_pieces_as_pydantic_writes_it(
    monkeypatch: pytest.MonkeyPatch, hosts: int, per_chunk: int
) -> None:
    monkeypatch.setattr(journal_module, "HOSTS_PER_CHUNK", per_chunk)
    probe = ProbeResult(outcome="hung", method="bundle", seconds=8.0, detail='a "b"\n{}')
    state = RunState(
        run_id="r{}",
        plan_id="p",
        hosts={
            f"h{n}\n{{}}": HostState(wave=n, status="failed", message="x\ny", probe=probe)
            for n in range(hosts)
        },
    )
    assert b"".join(state_chunks(state)) == state.model_dump_json(indent=2).encode()


def test_a_run_cut_off_by_an_error_leaves_the_snapshot_current(tmp_path: Path) -> None:
    class Broken:
        def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None:
            context.on_phase(next(iter(hosts)), "locked", None)
            raise RuntimeError("a bug in a backend")

    journal = Journal.create(tmp_path, small_plan(), clock)
    with pytest.raises(RuntimeError):
        Rollout(journal, Broken(), env=ApplyEnv(clock=clock)).run()
    assert saved_seq(journal) == journal.state.last_seq == 3
    assert journal.state.hosts["h1"].status == "running"


def test_a_full_disk_leaves_no_half_event_and_stops_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills in the middle of an event: the event is not kept in part (a half line
    would swallow the next event resume appends), the journal says so with a one-line error,
    and writes nothing more (no gap in the sequence) until a resume opens it again."""
    journal = first_wave_done(tmp_path)
    events = tmp_path / journal.run_id / EVENTS_FILE
    before = events.read_bytes()
    real_write = os.write
    room = [40]  # bytes the disk still takes

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        if room[0] == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        count: int = real_write(fd, bytes(data)[: room[0]])
        room[0] -= count
        return count

    monkeypatch.setattr(os, "write", full_disk)  # for the two records below
    with pytest.raises(JournalWriteFailed, match="No space left on device") as failed:
        journal.record("wave.started", wave=1)
    assert failed.value.exit_code == ExitCode.HOST_FAILED
    assert str(journal.run_dir) in str(failed.value) and "\n" not in str(failed.value)
    assert events.read_bytes() == before
    room[0] = 1 << 20  # space is back, but this journal stays stopped
    with pytest.raises(JournalWriteFailed):
        journal.record("host.phase", host="h2", phase="locked")
    assert events.read_bytes() == before
    assert journal.state.last_seq == 5 and journal.state.hosts["h2"].status == "pending"
    journal.snapshot()  # nothing to do for a stopped journal, and no error
    reopened = Journal.open(tmp_path / journal.run_id)
    reopened.record("wave.started", wave=1)
    assert [event.seq for event in read_events(events)[0]] == [1, 2, 3, 4, 5, 6]
