"""The wave engine (`Rollout`) over a scripted backend, a fake clock and sleep, and a real
journal: the error budget, pause, bake, what a resume runs again, the journal's events, and
runs cut off by Ctrl-C or by a SIGKILL."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from orchestrator.backends.base import WaveContext
from orchestrator.backends.ssh.backend import SshBackend
from orchestrator.errors import ExitCode, HostUnreachable
from orchestrator.host.procedure import PHASE_ORDER, HostOutcome, phase_at_least
from orchestrator.host.session import CommandResult, ConnectionLost, HostSession
from orchestrator.models import (
    Artifact,
    Event,
    HostBefore,
    HostPhase,
    HostState,
    HostStatus,
    Inventory,
    InventoryGroup,
    InventoryHost,
    Plan,
    PlannedHost,
    SshTarget,
    WaveOptions,
)
from orchestrator.plan.planner import build_plan
from orchestrator.run.engine import ApplyEnv, Rollout
from orchestrator.run.journal import EVENTS_FILE, Journal, read_events

TARGET = "b" * 64
OLD = "c" * 64
UPGRADE: tuple[HostPhase, ...] = (
    "locked", "staged", "backed_up", "swapped", "verified", "sysctl_restored",
)  # fmt: skip


@pytest.fixture(autouse=True)
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's files are real, its fsyncs skipped: durability is `test_journal`'s
    subject, and on a shared disk ~3 fsyncs per event made this file take 10 s."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


class FakeClock:
    """Time that moves only when told; `sleep` records each call and moves it."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self.slept: list[float] = []
        self.crash: type[BaseException] | None = None  # raised from `sleep` when set

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if self.crash is not None:
            raise self.crash()
        self.slept.append(seconds)
        self.now += seconds


class Killed(BaseException):
    """The orchestrator's process dies (SIGKILL): nothing in the engine may catch it."""


@dataclass(frozen=True)
class Host:
    """What one host does in a wave: report `phases`, then either end with its outcome or
    `crash` the orchestrator there."""

    status: HostStatus = "done"
    phases: tuple[HostPhase, ...] = UPGRADE
    phase: HostPhase = "finished"
    message: str | None = None
    crash: type[BaseException] | None = None


def settled_failure(message: str = "probe hung; rolled back to old runc") -> Host:
    return Host("failed", message=message)


UNREACHABLE = Host("unreachable", phases=(), phase="none", message="ssh: connection refused")


@dataclass
class ScriptedWaves:
    """A `WaveBackend` playing each host's `Host` script (done, if it has none), in order."""

    clock: FakeClock
    hosts: Mapping[str, Host] = field(default_factory=dict)
    waves: list[list[str]] = field(default_factory=list)  # the hosts each run_wave was given

    def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None:
        self.waves.append(list(hosts))
        for name in hosts:
            script = self.hosts.get(name, Host())
            for phase in script.phases:
                self.clock.now += 1
                context.on_phase(name, phase, TARGET if phase_at_least(phase, "swapped") else None)
            if script.crash is not None:
                raise script.crash()
            runc = TARGET if script.status == "done" else OLD
            context.on_outcome(name, HostOutcome(script.status, script.phase, runc, script.message))


def make_plan(
    count: int,
    waves: str = "1,100%",
    *,
    max_failures: str = "0",
    bake: float = 0.0,
    pause_after: int | None = None,
) -> Plan:
    """A reviewed plan of `count` hosts h1..hN, made by the planner."""
    names = [f"h{number}" for number in range(1, count + 1)]
    inventory = Inventory(
        sources=("inv",),
        hosts={name: InventoryHost(name=name) for name in names},
        groups={"all": InventoryGroup(name="all", hosts=tuple(names))},
    )
    artifact = Artifact(path="/nonexistent/runc", sha256=TARGET, size=1, version="1.1.5")
    options = WaveOptions(
        waves=tuple(waves.split(",")),
        max_failures=max_failures,
        bake_seconds=bake,
        pause_after=pause_after,
    )
    before = HostBefore(runc_path="/usr/local/sbin/runc", runc_sha256=OLD, runc_version="x")
    return build_plan(inventory, artifact, options, dict.fromkeys(names, before))


@dataclass
class Run:
    """One `apply` (or `resume`) of a plan: the journal, the backend, what the engine emitted."""

    journal: Journal
    clock: FakeClock
    backend: ScriptedWaves
    emitted: list[Event] = field(default_factory=list)

    def go(self, *, resumed: bool = False) -> ExitCode:
        env = ApplyEnv(clock=self.clock, sleep=self.clock.sleep, on_event=self.emitted.append)
        return Rollout(self.journal, self.backend, env=env).run(resumed=resumed)

    @property
    def events(self) -> list[Event]:
        """Every event of the run's log on disk, from every apply and resume."""
        events, problems = read_events(self.journal.run_dir / EVENTS_FILE)
        assert problems == []
        return events

    def status(self, host: str) -> HostStatus:
        return self.journal.state.hosts[host].status


def apply(tmp_path: Path, plan: Plan, hosts: Mapping[str, Host] | None = None) -> Run:
    clock = FakeClock()
    journal = Journal.create(tmp_path, plan, clock)
    return Run(journal, clock, ScriptedWaves(clock, hosts or {}))


def resume(run: Run, hosts: Mapping[str, Host] | None = None) -> Run:
    """A later `resume`: the journal opened again from disk (the state folded from its events),
    a new backend whose hosts behave as `hosts` say now."""
    journal = Journal.open(run.journal.run_dir, run.clock)
    return Run(journal, run.clock, ScriptedWaves(run.clock, hosts or {}))


def kinds(events: Sequence[Event]) -> list[str]:
    """Events as short words: `wave.started:1`, `host.phase:h2:swapped`, `host.finished:h2:done`."""
    words = []
    for event in events:
        parts: list[str] = [event.type]
        if event.wave is not None:
            parts.append(str(event.wave))
        if event.host is not None:
            parts.append(event.host)
        if event.type == "host.phase" and event.phase is not None:
            parts.append(event.phase)
        if event.type in ("host.finished", "run.finished") and event.status is not None:
            parts.append(str(event.status))
        words.append(":".join(parts))
    return words


def upgrade_of(host: str, status: str = "done") -> list[str]:
    return [f"host.phase:{host}:{phase}" for phase in UPGRADE] + [f"host.finished:{host}:{status}"]


# -- the journal: order and content of events -----------------------------------------------


def test_a_clean_run_records_every_step_in_order(tmp_path: Path) -> None:
    run = apply(tmp_path, make_plan(3))
    assert run.go() == ExitCode.OK
    assert kinds(run.events) == [
        "run.started",
        "wave.started:0", *upgrade_of("h1"), "wave.finished:0",
        "wave.started:1", *upgrade_of("h2"), *upgrade_of("h3"), "wave.finished:1",
        "run.finished:completed",
    ]  # fmt: skip
    assert run.emitted == run.events  # the view sees exactly what the journal holds
    assert [event.seq for event in run.events] == list(range(1, len(run.events) + 1))
    times = [event.time for event in run.events]
    assert times == sorted(times) and times[0] == 1_800_000_000.0  # the injected clock
    by_kind = dict(zip(kinds(run.events), run.events, strict=True))
    assert by_kind["wave.started:1"].message == "2 hosts"
    assert by_kind["wave.finished:1"].message == "2 ok, 0 failed or unreachable (budget 0)"
    assert by_kind["host.phase:h2:backed_up"].runc_sha256 is None
    assert by_kind["host.phase:h2:swapped"].runc_sha256 == TARGET
    finished = by_kind["host.finished:h2:done"]
    assert (finished.phase, finished.runc_sha256) == ("finished", TARGET)
    state = run.journal.state
    assert (state.status, state.next_wave) == ("completed", 2)
    assert {name: host.status for name, host in state.hosts.items()} == dict.fromkeys(
        ("h1", "h2", "h3"), "done"
    )


def test_a_failed_host_is_recorded_with_its_reason_and_fails_the_run(tmp_path: Path) -> None:
    run = apply(tmp_path, make_plan(3, max_failures="1"), {"h2": settled_failure("verify: boom")})
    assert run.go() == ExitCode.HOST_FAILED
    finished = next(e for e in run.events if e.type == "host.finished" and e.host == "h2")
    assert (finished.status, finished.message, finished.runc_sha256) == (
        "failed", "verify: boom", OLD
    )  # fmt: skip
    assert kinds(run.events)[-1] == "run.finished:failed"
    assert run.journal.state.hosts["h2"].message == "verify: boom"


# -- the error budget -----------------------------------------------------------------------


def test_over_budget_halts_with_exit_3_and_starts_no_later_wave(tmp_path: Path) -> None:
    plan = make_plan(6, "1,3,100%", max_failures="1")
    run = apply(tmp_path, plan, {"h2": settled_failure(), "h4": UNREACHABLE})
    assert run.go() == ExitCode.BUDGET_EXCEEDED
    assert run.backend.waves == [["h1"], ["h2", "h3", "h4"]]
    assert kinds(run.events)[-3:] == [
        "host.finished:h4:unreachable",
        "wave.finished:1",
        "run.halted:1",
    ]
    halted = run.events[-1]
    assert halted.message == ("wave 1: 2 failed or unreachable (h2, h4), more than its budget of 1")
    assert run.events[-2].message == "1 ok, 2 failed or unreachable (budget 1)"
    assert run.journal.state.status == "halted"
    assert [run.status(name) for name in ("h5", "h6")] == ["pending", "pending"]


@pytest.mark.parametrize("victim", [settled_failure(), UNREACHABLE])
def test_one_failure_within_a_budget_of_one_goes_on(tmp_path: Path, victim: Host) -> None:
    """Strictly more than the budget halts: as many as the budget does not."""
    run = apply(tmp_path, make_plan(4, "2,100%", max_failures="1"), {"h1": victim})
    assert run.go() == ExitCode.HOST_FAILED
    assert run.backend.waves == [["h1", "h2"], ["h3", "h4"]]
    assert "run.halted" not in [event.type for event in run.events]


def test_an_unreachable_host_alone_exceeds_a_budget_of_zero(tmp_path: Path) -> None:
    run = apply(tmp_path, make_plan(3), {"h1": UNREACHABLE})
    assert run.go() == ExitCode.BUDGET_EXCEEDED
    assert run.backend.waves == [["h1"]]


@pytest.mark.parametrize("victim", [settled_failure(), UNREACHABLE])
def test_a_wave_without_a_success_halts_whatever_its_budget(tmp_path: Path, victim: Host) -> None:
    """A dead canary halts the rollout even when its budget allows one failure, as Ansible
    ends a play when every host of a batch failed; a resume judges the wave again."""
    plan = make_plan(4, "1,50%", max_failures="1")
    assert plan.waves[0].max_failures == 1
    run = apply(tmp_path, plan, {"h1": victim})
    assert run.go() == ExitCode.BUDGET_EXCEEDED
    assert run.backend.waves == [["h1"]]
    assert run.journal.state.status == "halted"
    assert run.events[-1].message == (
        f"wave 0: no host succeeded (h1 {victim.status}): a wave without a success halts"
    )
    again = resume(run, {"h1": victim})
    assert again.go() == ExitCode.BUDGET_EXCEEDED
    assert again.backend.waves == ([["h1"]] if victim.status == "unreachable" else [])
    assert resume(run).go() == (
        ExitCode.OK if victim.status == "unreachable" else ExitCode.BUDGET_EXCEEDED
    )


def test_a_wave_of_drifted_hosts_only_halts(tmp_path: Path) -> None:
    drift = Host("drift", phases=(), phase="none", message="host changed since the plan")
    run = apply(tmp_path, make_plan(3, "1,100%", max_failures="1"), {"h1": drift})
    assert run.go() == ExitCode.BUDGET_EXCEEDED
    assert run.backend.waves == [["h1"]]


@pytest.mark.parametrize(
    ("max_failures", "budgets"),
    [("50%", [1, 2]), ("10%", [0, 0]), ("25%", [0, 1]), ("1", [1, 1]), ("100%", [2, 4])],
)
def test_a_percentage_budget_is_of_each_wave_rounded_down(
    max_failures: str, budgets: list[int]
) -> None:
    plan = make_plan(6, "2,100%", max_failures=max_failures)
    assert [wave.max_failures for wave in plan.waves] == budgets


@pytest.mark.parametrize(("failing", "halts"), [(2, False), (3, True)])
def test_a_percentage_budget_halts_on_more_than_its_share(
    tmp_path: Path, failing: int, halts: bool
) -> None:
    plan = make_plan(6, "2,100%", max_failures="50%")  # budgets 1 and 2
    hosts = {f"h{3 + index}": settled_failure() for index in range(failing)}
    run = apply(tmp_path, plan, hosts)
    assert run.go() == (ExitCode.BUDGET_EXCEEDED if halts else ExitCode.HOST_FAILED)
    assert (run.journal.state.status == "halted") is halts


def test_drift_and_noop_are_not_counted_against_the_budget(tmp_path: Path) -> None:
    drift = Host("drift", phases=(), phase="none", message="host changed since the plan")
    noop = Host("noop", phases=(), phase="none", message="already at the target")
    run = apply(tmp_path, make_plan(4, "2,100%"), {"h1": drift, "h2": noop, "h3": noop})
    assert run.go() == ExitCode.DRIFT  # every wave ran; the drifted host is reported
    assert run.backend.waves == [["h1", "h2"], ["h3", "h4"]]
    assert run.events[-1].status == "completed"
    assert [e.message for e in run.events if e.type == "wave.finished"] == [
        "2 ok, 0 failed or unreachable (budget 0)",
        "2 ok, 0 failed or unreachable (budget 0)",
    ]


def test_noop_hosts_alone_complete_the_run(tmp_path: Path) -> None:
    noop = Host("noop", phases=(), phase="none")
    run = apply(tmp_path, make_plan(2), {"h1": noop, "h2": noop})
    assert run.go() == ExitCode.OK
    assert run.journal.state.status == "completed"


# -- pause and bake -------------------------------------------------------------------------


def test_pause_after_stops_and_resume_continues_from_the_next_wave(tmp_path: Path) -> None:
    plan = make_plan(5, "1,2,100%", pause_after=0)
    first = apply(tmp_path, plan)
    assert first.go() == ExitCode.PAUSED  # not done: the operator promotes with `resume`
    assert first.backend.waves == [["h1"]]
    assert kinds(first.events)[-2:] == ["wave.finished:0", "run.paused:0"]
    assert first.events[-1].message == "paused for promotion: run `resume`"
    assert first.journal.state.status == "paused"
    second = resume(first)
    assert second.journal.state.status == "paused"  # as folded from the events on disk
    assert second.go(resumed=True) == ExitCode.OK
    assert second.backend.waves == [["h2", "h3"], ["h4", "h5"]]  # h1 not again, no new pause
    assert kinds(second.emitted)[:2] == ["run.resumed", "wave.started:1"]
    assert kinds(second.events)[-1] == "run.finished:completed"


def test_pause_after_the_last_wave_is_no_pause(tmp_path: Path) -> None:
    run = apply(tmp_path, make_plan(3, "1,100%", pause_after=1))
    assert run.go() == ExitCode.OK
    assert "run.paused" not in [event.type for event in run.events]
    assert run.journal.state.status == "completed"


def test_bake_sleeps_between_waves_and_not_after_the_last(tmp_path: Path) -> None:
    run = apply(tmp_path, make_plan(6, "1,2,100%", bake=30))
    assert run.go() == ExitCode.OK
    assert run.clock.slept == [30, 30]
    words = kinds(run.events)
    for wave in (0, 1):  # each bake: right after a wave finished, before the next one started
        after = words.index(f"wave.finished:{wave}")
        assert words[after + 1] == f"wave.started:{wave + 1}"
        assert run.events[after + 1].time - run.events[after].time == 30
    assert words[-2:] == ["wave.finished:2", "run.finished:completed"]
    assert run.events[-1].time == run.events[-2].time


def test_no_bake_after_a_halt_or_before_a_pause(tmp_path: Path) -> None:
    halted = apply(tmp_path / "a", make_plan(3, bake=30), {"h1": UNREACHABLE})
    assert halted.go() == ExitCode.BUDGET_EXCEEDED
    paused = apply(tmp_path / "b", make_plan(3, bake=30, pause_after=0))
    assert paused.go() == ExitCode.PAUSED
    assert halted.clock.slept == paused.clock.slept == []


# -- resume: which hosts run again ----------------------------------------------------------


@pytest.mark.parametrize("phase", PHASE_ORDER)
@pytest.mark.parametrize(
    "status",
    ["pending", "running", "done", "noop", "failed", "unreachable", "drift", "rolled_back"],
)
def test_needs_work(status: HostStatus, phase: HostPhase) -> None:
    """Unfinished hosts run again, and failed ones whose new runc may still be in place (only
    the host knows how far it got); finished, noop, drifted and rolled-back ones do not."""
    unsettled = phase in ("swapped", "verified", "sysctl_restored")
    expected = status in ("pending", "running", "unreachable") or (status == "failed" and unsettled)
    assert HostState(wave=0, status=status, phase=phase).needs_work is expected


def test_resume_runs_again_only_the_hosts_that_need_it(tmp_path: Path) -> None:
    plan = make_plan(6, "2,100%", max_failures="4")
    unsettled = Host("failed", phases=UPGRADE[:4], phase="swapped", message="rollback failed")
    first = apply(tmp_path, plan, {"h2": settled_failure(), "h3": UNREACHABLE, "h4": unsettled})
    assert first.go() == ExitCode.HOST_FAILED
    assert first.journal.state.status == "failed"
    second = resume(first)
    assert second.go(resumed=True) == ExitCode.HOST_FAILED  # h2 stays failed
    assert second.backend.waves == [["h3", "h4"]]  # not h1, h5, h6 (done), nor h2 (settled)
    assert kinds(second.emitted) == [
        "run.resumed",
        "wave.started:1", *upgrade_of("h3"), *upgrade_of("h4"), "wave.finished:1",
        "run.finished:failed",
    ]  # fmt: skip
    assert second.emitted[1].message == "2 hosts"
    assert [second.status(f"h{n}") for n in range(1, 7)] == [
        "done", "failed", "done", "done", "done", "done"
    ]  # fmt: skip


def test_resume_of_a_completed_run_does_nothing(tmp_path: Path) -> None:
    first = apply(tmp_path, make_plan(2))
    assert first.go() == ExitCode.OK
    second = resume(first)
    assert second.go(resumed=True) == ExitCode.OK
    assert second.backend.waves == []
    assert kinds(second.emitted) == ["run.resumed", "run.finished:completed"]


def test_resume_after_a_halt_finishes_the_wave_and_goes_on(tmp_path: Path) -> None:
    first = apply(tmp_path, make_plan(4, "2,100%"), {"h2": UNREACHABLE})
    assert first.go() == ExitCode.BUDGET_EXCEEDED
    second = resume(first)  # the host is back
    assert second.go(resumed=True) == ExitCode.OK
    assert second.backend.waves == [["h2"], ["h3", "h4"]]


def test_resume_after_a_halt_halts_again_while_the_host_is_still_down(tmp_path: Path) -> None:
    first = apply(tmp_path, make_plan(4, "2,100%"), {"h2": UNREACHABLE})
    assert first.go() == ExitCode.BUDGET_EXCEEDED
    second = resume(first, {"h2": UNREACHABLE})
    assert second.go(resumed=True) == ExitCode.BUDGET_EXCEEDED
    assert second.backend.waves == [["h2"]]
    assert [second.status(name) for name in ("h3", "h4")] == ["pending", "pending"]


def test_resume_never_starts_the_wave_after_one_over_its_budget(tmp_path: Path) -> None:
    """The canary failed (and was rolled back): a resume has nothing to run again in that
    wave, but the wave is still over its budget, so the next wave must not start."""
    first = apply(tmp_path, make_plan(3), {"h1": settled_failure()})
    assert first.go() == ExitCode.BUDGET_EXCEEDED
    second = resume(first)
    assert second.go(resumed=True) == ExitCode.BUDGET_EXCEEDED
    assert second.backend.waves == []
    assert [second.status(name) for name in ("h2", "h3")] == ["pending", "pending"]
    assert kinds(second.emitted) == ["run.resumed", "run.halted:0"]
    assert second.emitted[-1].message == (
        "wave 0: 1 failed or unreachable (h1), more than its budget of 0"
    )


def test_a_pause_cut_short_by_a_halt_is_still_taken_on_resume(tmp_path: Path) -> None:
    """pause_after 0 with the canary unreachable: the run halts before its pause; once the
    canary is back, a resume finishes wave 0 and then pauses for promotion as planned."""
    first = apply(tmp_path, make_plan(3, pause_after=0), {"h1": UNREACHABLE})
    assert first.go() == ExitCode.BUDGET_EXCEEDED
    second = resume(first)
    assert second.go(resumed=True) == ExitCode.PAUSED
    assert second.backend.waves == [["h1"]]
    assert kinds(second.emitted)[-1] == "run.paused:0"
    third = resume(second)
    assert third.go(resumed=True) == ExitCode.OK
    assert third.backend.waves == [["h2", "h3"]]


# -- runs cut off -----------------------------------------------------------------------------


def test_ctrl_c_mid_wave_is_recorded_and_a_resume_finishes_the_run(tmp_path: Path) -> None:
    plan = make_plan(5, "1,2,100%")
    cut = Host(phases=UPGRADE[:4], crash=KeyboardInterrupt)  # Ctrl-C right after h3's swap
    first = apply(tmp_path, plan, {"h3": cut})
    assert first.go() == ExitCode.INTERRUPTED
    assert kinds(first.events)[-3:] == ["host.phase:h3:backed_up", "host.phase:h3:swapped",
                                        "run.interrupted"]  # fmt: skip
    assert first.events[-1].message == "interrupted; `resume` continues the run"
    state = first.journal.state
    assert (state.hosts["h3"].status, state.hosts["h3"].phase) == ("running", "swapped")
    assert state.next_wave == 1  # wave 1 never finished
    second = resume(first)
    assert second.go(resumed=True) == ExitCode.OK
    assert second.backend.waves == [["h3"], ["h4", "h5"]]  # h2 finished before the Ctrl-C
    assert second.journal.state.status == "completed"


def test_a_sigkill_mid_wave_leaves_a_journal_a_resume_finishes(tmp_path: Path) -> None:
    plan = make_plan(5, "1,2,100%", pause_after=1)
    first = apply(tmp_path, plan, {"h2": Host(phases=UPGRADE[:2], crash=Killed)})
    with pytest.raises(Killed):  # no clean-up, no last event: the process is gone
        first.go()
    assert kinds(first.events)[-1] == "host.phase:h2:staged"
    second = resume(first)  # the state is folded again from the events on disk
    assert second.journal.state.hosts["h2"].phase == "staged"
    assert second.go(resumed=True) == ExitCode.PAUSED
    assert second.backend.waves == [["h2", "h3"]]  # then the planned pause after wave 1
    assert kinds(second.events)[-1] == "run.paused:1"
    third = resume(second)
    assert third.go(resumed=True) == ExitCode.OK
    assert third.backend.waves == [["h4", "h5"]]
    assert third.journal.state.status == "completed"


def test_a_sigkill_during_the_bake_resumes_with_the_next_wave(tmp_path: Path) -> None:
    first = apply(tmp_path, make_plan(3, bake=600))
    first.clock.crash = Killed
    with pytest.raises(Killed):
        first.go()
    assert kinds(first.events)[-1] == "wave.finished:0"
    first.clock.crash = None
    second = resume(first)
    assert second.go(resumed=True) == ExitCode.OK
    assert second.backend.waves == [["h2", "h3"]]


# -- the SSH backend's outcomes for hosts it cannot work on ---------------------------------


class BrokenSession:
    """A session whose every command fails with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @property
    def host(self) -> str:
        return "h1"

    def run(self, command: str, *, timeout: float, stdin: bytes | None = None) -> CommandResult:
        raise self.error

    def put(self, local: Path, remote: str, *, mode: int) -> None:
        raise self.error

    def close(self) -> None:
        pass


class BrokenExecutor:
    def __init__(self, error: Exception, *, at_connect: bool = False) -> None:
        self.error, self.at_connect = error, at_connect

    def session(self, target: SshTarget, *, name: str | None = None) -> HostSession:
        if self.at_connect:
            raise self.error
        return BrokenSession(self.error)

    def release(self, target: SshTarget, *, name: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("executor", "status", "message"),
    [
        (BrokenExecutor(HostUnreachable("h1", "10.0.0.1", "refused"), at_connect=True),
         "unreachable", "h1 (10.0.0.1): refused"),
        (BrokenExecutor(ConnectionLost("h1", "10.0.0.1", "reset")),
         "unreachable", "h1 (10.0.0.1): reset"),
        (BrokenExecutor(ValueError("boom")), "failed", "ValueError: boom"),
    ],
)  # fmt: skip
def test_ssh_backend_turns_host_errors_into_outcomes(
    tmp_path: Path, executor: BrokenExecutor, status: HostStatus, message: str
) -> None:
    """A host's error never stops its wave: it becomes that host's outcome, counted against
    the budget, at the phase the journal last saw."""
    clock = FakeClock()
    journal = Journal.create(tmp_path, make_plan(2, "2", max_failures="1"), clock)
    journal.record("host.phase", host="h1", phase="locked")
    rollout = Rollout(journal, SshBackend(executor, concurrency=2), env=ApplyEnv(clock=clock))
    assert rollout.run() == ExitCode.BUDGET_EXCEEDED  # both hosts fail, the budget is 1
    host = journal.state.hosts["h1"]
    assert (host.status, host.phase, host.message) == (status, "locked", message)
    assert journal.state.hosts["h2"].phase == "none"
