"""A maintenance window that closes mid-run, on real lab hosts through both backends, with an
injected clock (no sleeps): the running wave finishes, the next one does not start; with
`--no-wait` the run pauses (exit 5) and a resume inside the next window finishes it."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from orchestrator.backends.reach import open_backend
from orchestrator.choices import ExecutorName
from orchestrator.errors import ExitCode
from orchestrator.models import BecomePasswords, Event
from orchestrator.run.engine import ApplyEnv, Rollout, load_plan
from orchestrator.run.journal import Journal
from tests.conftest import LabFleet
from tests.run.test_apply_lab import host_state, make_plan, sha256


def berlin(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Europe/Berlin")).timestamp()


class Clock:
    """The run's time: moved by the test (and past the window's end when wave 0's first host
    finishes); sleeping moves it too."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.lock = threading.Lock()
        self.close_window_at_first_host = False

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds

    def on_event(self, event: Event) -> None:
        if event.type == "host.finished" and self.close_window_at_first_host:
            with self.lock:
                self.now = berlin("2026-12-09 06:00:30")  # Wednesday: the window has closed
                self.close_window_at_first_host = False


def run(journal: Journal, clock: Clock, executor: str, *, resumed: bool) -> ExitCode:
    env = ApplyEnv(
        clock=clock,
        sleep=clock.sleep,
        on_event=clock.on_event,
        wait_for_window=False,
        sleep_until_window=clock.sleep,
    )
    with open_backend(ExecutorName(executor), 4, None, BecomePasswords(), journal.run_dir) as end:
        return Rollout(journal, end, env=env).run(resumed=resumed)


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_a_window_that_closes_mid_run_pauses_it_and_resume_in_the_next_one_finishes_it(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, executor: str
) -> None:
    lab = clean_lab
    plan_file = tmp_path / "plan.json"
    make_plan(lab, artifact, plan_file, "--waves", "2,100%",
              "--window", "Tue 22:00-06:00 Europe/Berlin")  # fmt: skip
    plan = load_plan(plan_file)
    before = {host.name: host_state(lab, host.name)["runc"] for host in lab.hosts}
    clock = Clock(berlin("2026-12-09 05:59:00"))  # Tuesday night's window, a minute left
    clock.close_window_at_first_host = True
    journal = Journal.create(tmp_path / "runs", plan, clock)
    assert run(journal, clock, executor, resumed=False) == ExitCode.PAUSED
    first, rest = plan.waves[0].hosts, plan.waves[1].hosts
    state = journal.state
    assert [state.hosts[host.name].status for host in first] == ["done", "done"]  # finished
    assert [state.hosts[host.name].status for host in rest] == ["pending", "pending"]
    for host in first:
        assert host_state(lab, host.name)["runc"] == sha256(artifact)
    for host in rest:
        assert host_state(lab, host.name)["runc"] == before[host.name]  # untouched
    assert state.status == "paused"
    clock.now = berlin("2026-12-15 23:00")  # the next Tuesday night
    again = Journal.open(journal.run_dir, clock)
    assert run(again, clock, executor, resumed=True) == ExitCode.OK
    assert again.state.status == "completed"
    for lab_host in lab.hosts:
        assert host_state(lab, lab_host.name)["runc"] == sha256(artifact)
