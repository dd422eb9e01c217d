"""The operator's view, driven by the real engine over a scripted backend, a fake
clock and rich consoles that record what they were given."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from rich.console import Console

from orchestrator.backends.base import WaveContext
from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.host.procedure import HostOutcome
from orchestrator.models import (
    Artifact,
    Event,
    HostBefore,
    Plan,
    PlannedHost,
    ProbeResult,
    SshTarget,
    Wave,
    WaveOptions,
)
from orchestrator.run.engine import ApplyEnv, Rollout
from orchestrator.run.journal import EVENTS_FILE, EventTail, Journal, read_events
from orchestrator.view import Screen, follow
from orchestrator.view.live import LiveView, duration
from orchestrator.view.progress import JsonEvents, ProgressPrinter
from orchestrator.view.summary import (
    RunHistory,
    rollback_summary,
    run_summary,
    summary_markdown,
    summary_text,
)
from orchestrator.view.tally import Tally

TARGET = "b" * 64
OLD = "c" * 64
PASSED = ProbeResult(outcome="passed", method="docker", seconds=0.4)
HUNG = ProbeResult(outcome="hung", method="bundle", seconds=10.0, detail="anon_pipe_write")
HOSTILE = "x\x1b[2K\r  h9: done\n[/][red]"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def make_plan(sizes: tuple[int, ...] = (1, 4), budget: int = 1, bake: float = 0.0) -> Plan:
    waves, number = [], 0
    for index, size in enumerate(sizes):
        hosts = []
        for _ in range(size):
            number += 1
            before = HostBefore(
                runc_path="/usr/local/sbin/runc", runc_sha256=OLD, runc_version="1.0.0-rc93"
            )
            ssh = SshTarget(address="127.0.0.1")
            hosts.append(PlannedHost(name=f"h{number}", domain="a", ssh=ssh, before=before))
        waves.append(Wave(index=index, hosts=hosts, max_failures=budget, domains={"a": size}))
    plan = Plan(
        plan_id="x",
        plan_hash="0" * 64,
        inventory=("inv",),
        artifact=Artifact(path="/tmp/runc", sha256=TARGET, size=1, version="1.1.5"),
        options=WaveOptions(bake_seconds=bake),
        waves=waves,
        skipped=[],
        domains={"a": number},
    )
    return plan.sealed()


class ScriptedWaves:
    """Each host takes `seconds` of the fake clock: locked, swapped, then its scripted outcome
    (done with a passed probe unless told otherwise). `after` runs after each outcome."""

    def __init__(
        self,
        clock: FakeClock,
        outcomes: Mapping[str, HostOutcome],
        after: Callable[[str], None] = lambda name: None,
        seconds: float = 10.0,
    ) -> None:
        self.clock, self.outcomes, self.after, self.seconds = clock, outcomes, after, seconds

    def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None:
        for name in hosts:
            context.on_phase(name, "locked", None)
            self.clock.now += self.seconds
            outcome = self.outcomes.get(name)
            if outcome is None or outcome.status != "unreachable":
                context.on_phase(name, "swapped", TARGET)
            done = HostOutcome("done", "finished", TARGET, None, probe=PASSED)
            context.on_outcome(name, outcome or done)
            self.after(name)


def recording_console() -> Console:
    return Console(file=io.StringIO(), record=True, width=120, force_terminal=True)


def text_of(view: LiveView) -> str:
    console = recording_console()
    console.print(view.render())
    return console.export_text()


FAILURES = {
    "h3": HostOutcome(
        "failed", "finished", OLD, "probe hung in anon_pipe_write; rolled back", probe=HUNG
    ),
    "h4": HostOutcome("unreachable", "none", None, "ssh: connection refused"),
}


def test_live_view_counts_budget_estimate_and_failures_above(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = make_plan((1, 4), budget=2)
    journal = Journal.create(tmp_path, plan, clock)
    console = recording_console()
    view = LiveView(console, Tally.start(plan, journal.state), clock=clock, sleep=clock.sleep,
                    auto_refresh=False)  # fmt: skip
    seen: dict[str, str] = {}

    def after(name: str) -> None:
        seen[name] = text_of(view)

    rollout = Rollout(journal, ScriptedWaves(clock, FAILURES, after), env=ApplyEnv(
        clock=clock, sleep=view.sleep, on_event=view))  # fmt: skip
    with view:
        assert rollout.run() == ExitCode.HOST_FAILED
    middle = seen["h3"]  # wave 1: h2 done, h3 failed, h4 and h5 to go
    assert "wave 2/2" in middle
    assert "done 1" in middle and "failed 1" in middle and "in flight 0" in middle
    assert "budget 1 of 2 left" in middle
    assert "2/4 hosts  20s elapsed, ~20s left" in middle  # 2 hosts in 20 s, 2 to go
    assert "run: 3/5 hosts finished, ~20s left" in middle
    after_h4 = seen["h4"]
    assert "budget 0 of 2 left" in after_h4 and "unreachable 1" in after_h4
    printed = console.export_text()
    assert "FAILED h3: failed: probe hung in anon_pipe_write; rolled back" in printed
    assert "FAILED h4: unreachable: ssh: connection refused" in printed
    assert "h2: locked" not in printed and "h2: done" not in printed  # phases only with -v
    assert "wave 1 finished in 40s" in printed


def test_bake_is_counted_down_with_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = make_plan((1, 1), bake=30.0)
    journal = Journal.create(tmp_path, plan, clock)
    shown: list[str] = []

    def sleep(seconds: float) -> None:  # the engine's bake: the view is drawn meanwhile
        for _ in range(int(seconds)):
            shown.append(text_of(view))
            clock.sleep(1.0)

    view = LiveView(recording_console(), Tally.start(plan, journal.state), clock=clock,
                    sleep=sleep, auto_refresh=False)  # fmt: skip
    rollout = Rollout(journal, ScriptedWaves(clock, {}), env=ApplyEnv(
        clock=clock, sleep=view.sleep, on_event=view))  # fmt: skip
    with view:
        assert rollout.run() == ExitCode.OK
    assert "bake: 30s left before the next wave" in shown[0]
    assert "bake: 1s left" in shown[-1] and len(shown) == 30
    assert "bake" not in text_of(view)


def test_summary_names_reasons_actions_runc_probe_and_wave_times(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = make_plan((1, 4), budget=0)
    journal = Journal.create(tmp_path, plan, clock)
    rollout = Rollout(journal, ScriptedWaves(clock, FAILURES), env=ApplyEnv(clock=clock))
    assert rollout.run() == ExitCode.BUDGET_EXCEEDED
    events, _ = read_events(journal.run_dir / EVENTS_FILE)
    summary = run_summary("apply r", plan, journal.state, RunHistory.of(events))
    text = summary_text(summary)
    assert "apply r: halted in 50s: 5 hosts" in text
    assert "outcomes: 3 done, 1 failed, 1 unreachable" in text
    assert "wave 0: 1 host in 10s, 0 failed or unreachable" in text
    assert "wave 1: 4 hosts in 40s, 2 failed or unreachable" in text
    assert "3 x 1.1.5 (bbbbbbbbbbbb), 2 x 1.0.0-rc93 (cccccccccccc)" in text
    assert "h3: failed: probe hung in anon_pipe_write; rolled back" in text
    assert "did: rolled back to old runc; runc 1.0.0-rc93 (cccccccccccc); probe (bundle): hung" in (
        text
    )
    assert "h4: unreachable: ssh: connection refused" in text
    assert "did: left on old runc: needs resume" in text
    assert "probe (docker): passed in 0.4 s" in text
    markdown = summary_markdown(summary)
    assert markdown.startswith("### runc-rollout apply r: halted in 50s")
    assert "| 1 | 4 | 40s | 2 |" in markdown
    assert "| h4 | unreachable | ssh: connection refused | left on old runc: needs resume |" in (
        markdown
    )
    assert "| h2 | 1 | done | 1.1.5 (bbbbbbbbbbbb) | probe (docker): passed in 0.4 s |" in markdown


def test_a_host_cut_off_after_its_swap_needs_resume(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = make_plan((2,))
    journal = Journal.create(tmp_path, plan, clock)
    cut = {"h1": HostOutcome("unreachable", "swapped", TARGET, "connection lost")}
    Rollout(journal, ScriptedWaves(clock, cut), env=ApplyEnv(clock=clock)).run()
    events, _ = read_events(journal.run_dir / EVENTS_FILE)
    text = summary_text(run_summary("apply r", plan, journal.state, RunHistory.of(events)))
    assert "did: needs resume: swapped, then cut off" in text


def test_host_text_is_shown_never_obeyed_in_the_live_view_and_summary(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = make_plan((2,))
    journal = Journal.create(tmp_path, plan, clock)
    console = recording_console()
    view = LiveView(console, Tally.start(plan, journal.state), clock=clock, sleep=clock.sleep,
                    auto_refresh=False)  # fmt: skip
    hostile = {"h1": HostOutcome("failed", "finished", OLD, HOSTILE)}
    with view:
        Rollout(journal, ScriptedWaves(clock, hostile), env=ApplyEnv(clock=clock, on_event=view)
                ).run()  # fmt: skip
    assert "FAILED h1: failed: x\\x1b[2K\\x0d  h9: done\\x0a[/][red]" in console.export_text()
    events, _ = read_events(journal.run_dir / EVENTS_FILE)
    summary = run_summary("apply r", plan, journal.state, RunHistory.of(events))
    for text in (summary_text(summary), summary_markdown(summary)):
        assert "\x1b" not in text and "\r" not in text and "\n  h9" not in text
    assert "\\[/\\]\\[red\\]" in summary_markdown(summary)


def test_plain_lines_one_per_host_outcome_and_phases_only_verbose(tmp_path: Path) -> None:
    for verbose, phases in ((False, 0), (True, 9)):
        clock = FakeClock()
        plan = make_plan((1, 4))
        journal = Journal.create(tmp_path / str(verbose), plan, clock)
        err, out = io.StringIO(), io.StringIO()
        printer = ProgressPrinter(err, verbose=verbose)
        on_event = JsonEvents(out, printer)
        Rollout(journal, ScriptedWaves(clock, FAILURES), env=ApplyEnv(clock=clock,
                on_event=on_event)).run()  # fmt: skip
        lines = err.getvalue().splitlines()
        assert sum(": done" in line for line in lines) == 3
        assert "FAILED h3: failed: probe hung in anon_pipe_write; rolled back" in lines
        assert "FAILED h4: unreachable: ssh: connection refused" in lines
        assert any(line.startswith("wave 1 finished in 40.0 s: ") for line in lines)
        assert sum(line.endswith(("locked", "swapped")) for line in lines) == phases
        # --json: exactly the journal's lines
        assert out.getvalue() == (journal.run_dir / EVENTS_FILE).read_text()


def test_follow_reads_the_journal_as_it_grows_until_the_run_settles(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = make_plan((1, 1))
    source = Journal.create(tmp_path / "source", plan, clock)
    Rollout(source, ScriptedWaves(clock, {}), env=ApplyEnv(clock=clock)).run()
    written = (source.run_dir / EVENTS_FILE).read_bytes()
    target = Journal.create(tmp_path, plan, clock).run_dir / EVENTS_FILE
    seen: list[Event] = []

    def sleep(seconds: float) -> None:  # meanwhile, the apply elsewhere writes 50 more bytes
        done = target.stat().st_size
        with target.open("ab") as handle:
            handle.write(written[done : done + 50])

    follow(EventTail(target), seen.append, Screen(sleep=sleep), 0.5)
    assert [event.type for event in seen] == [
        json.loads(line)["type"] for line in written.decode().splitlines()
    ]
    assert seen[-1].type == "run.finished"


def test_status_watch_of_a_finished_run_prints_its_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    plan = make_plan((1, 2))
    journal = Journal.create(tmp_path, plan, clock)
    Rollout(journal, ScriptedWaves(clock, FAILURES), env=ApplyEnv(clock=clock)).run()
    args = ["status", str(journal.run_dir), "--watch", "--format", "markdown"]
    assert journal.state.status == "failed"
    assert main(args) == ExitCode.HOST_FAILED  # as the run ended, not 0
    out = capsys.readouterr().out
    assert "### runc-rollout run " in out and "| h3 | failed | probe hung" in out
    assert "wave 0" not in out  # the plain table is not appended to the Markdown


@pytest.mark.parametrize(
    ("hosts", "budget", "code"),
    [
        ({}, 1, ExitCode.OK),
        (FAILURES, 5, ExitCode.HOST_FAILED),
        (FAILURES, 0, ExitCode.BUDGET_EXCEEDED),
    ],
)
def test_status_exits_as_the_run_ended_and_speaks_markdown(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    hosts: dict[str, HostOutcome],
    budget: int,
    code: ExitCode,
) -> None:
    clock = FakeClock()
    journal = Journal.create(tmp_path, make_plan((1, 2), budget=budget), clock)
    Rollout(journal, ScriptedWaves(clock, hosts), env=ApplyEnv(clock=clock)).run()
    assert main(["status", str(journal.run_dir)]) == code
    assert "wave 0" in capsys.readouterr().out
    assert main(["status", str(journal.run_dir), "--format", "markdown"]) == code
    assert capsys.readouterr().out.startswith("### runc-rollout status ")


def test_status_speaks_json_and_keeps_the_old_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    journal = Journal.create(tmp_path, make_plan((1, 2), budget=5), clock)
    Rollout(journal, ScriptedWaves(clock, FAILURES), env=ApplyEnv(clock=clock)).run()
    run = str(journal.run_dir)
    assert main(["status", run, "--format", "json"]) == ExitCode.HOST_FAILED
    state = json.loads(capsys.readouterr().out)
    assert state["status"] == "failed" and state["hosts"]["h3"]["status"] == "failed"
    assert main(["status", run, "--json"]) == ExitCode.HOST_FAILED  # deprecated, still works
    done = capsys.readouterr()
    assert json.loads(done.out) == state and "--json is deprecated" in done.err
    assert main(["status", run, "--format", "table"]) == ExitCode.HOST_FAILED  # table is text
    assert "wave 0" in capsys.readouterr().out
    assert main(["status", run, "--format", "yaml"]) == ExitCode.BAD_INPUT


def test_status_watch_as_json_is_the_journal_and_the_summary_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    journal = Journal.create(tmp_path, make_plan((1, 2), budget=5), clock)
    Rollout(journal, ScriptedWaves(clock, FAILURES), env=ApplyEnv(clock=clock)).run()
    code = main(["status", str(journal.run_dir), "--watch", "--format", "json"])
    assert code == ExitCode.HOST_FAILED
    done = capsys.readouterr()
    written = (journal.run_dir / "events.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in done.out.splitlines()] == [
        json.loads(line) for line in written
    ]
    assert "run " in done.err and "h3" in done.err  # the summary, beside the events


def test_durations_read_short() -> None:
    assert [duration(s) for s in (0.4, 42, 185, 7620)] == ["0s", "42s", "3m05s", "2h07m"]


def test_hosts_a_halt_left_pending_say_so(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = make_plan((1, 1, 1), budget=0)
    journal = Journal.create(tmp_path, plan, clock)
    failed = {"h1": HostOutcome("failed", "staged", None, "staged runc reports 1.1.5+ds1")}
    Rollout(journal, ScriptedWaves(clock, failed), env=ApplyEnv(clock=clock)).run()
    events, _ = read_events(journal.run_dir / EVENTS_FILE)
    text = summary_text(run_summary("apply r", plan, journal.state, RunHistory.of(events)))
    # A resume would judge the wave the same and halt again: it is not what to do next.
    assert "h2: pending: run halted" in text
    assert "did: not started: the run halted (roll back, or plan anew)" in text
    assert "needs resume" not in text


def test_hosts_a_halt_left_pending_need_a_resume_when_the_wave_can_still_pass(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    plan = make_plan((1, 1, 1), budget=0)
    journal = Journal.create(tmp_path, plan, clock)
    cut = {"h1": HostOutcome("unreachable", "staged", None, "connection lost")}
    Rollout(journal, ScriptedWaves(clock, cut), env=ApplyEnv(clock=clock)).run()
    events, _ = read_events(journal.run_dir / EVENTS_FILE)
    text = summary_text(run_summary("apply r", plan, journal.state, RunHistory.of(events)))
    assert "h2: pending: run halted" in text and "did: not started: needs resume" in text


def test_rollback_summary_says_which_hosts_went_back_and_which_did_not() -> None:
    plan = make_plan((2,))
    outcomes = {
        "h1": ("rolled_back", OLD, "restored /usr/local/sbin/runc"),
        "h2": ("failed", None, "rollback failed: the journal says this run swapped it"),
    }
    summary = rollback_summary(plan, outcomes, 3.0)
    text = summary_text(summary)
    assert text.startswith("rollback: failed in 3s: 2 hosts")
    assert "h1  wave -   rolled_back  runc 1.0.0-rc93 (cccccccccccc)" in text
    assert "h2: failed: rollback failed: the journal says this run swapped it" in text
    assert "did: left as it was" in text


def test_summary_says_what_the_controller_sent_and_how_the_runc_arrived(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = make_plan((1, 2))
    journal = Journal.create(tmp_path, plan, clock)
    done = HostOutcome("done", "finished", TARGET, None, probe=PASSED)
    outcomes = {
        "h1": dataclasses.replace(done, delivery="push-gzip", sent_bytes=3_500_000),
        "h2": dataclasses.replace(done, delivery="url", sent_bytes=120_000),
        "h3": dataclasses.replace(done, delivery="push-gzip", sent_bytes=3_400_000),
    }
    Rollout(journal, ScriptedWaves(clock, outcomes), env=ApplyEnv(clock=clock)).run()
    events, _ = read_events(journal.run_dir / EVENTS_FILE)
    summary = run_summary("apply r", plan, journal.state, RunHistory.of(events))
    text = summary_text(summary)
    assert (
        "controller sent: 2.3 MB per host, 7.0 MB to 3 hosts; the new runc by 2 push-gzip, 1 url"
        in text
    )
    assert "h2  wave 1   done" in text and text.count("sent 3.5 MB") == 1
    assert (
        "| h2 | 1 | done | 1.1.5 (bbbbbbbbbbbb) | probe (docker): passed in 0.4 s | 120.0 kB |"
        in (summary_markdown(summary))
    )
    assert journal.state.hosts["h1"].sent_bytes == 3_500_000
