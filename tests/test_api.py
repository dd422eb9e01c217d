"""The public Python API with fakes: a plan built here, a backend whose hosts are a dictionary,
streams and a clock of the test's own. What it does to real hosts is tests/test_api_lab.py's."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from orchestrator import api
from orchestrator.backends.base import WaveContext
from orchestrator.host.procedure import HostOutcome, PhaseListener
from orchestrator.models import Artifact, Event, Plan, PlannedHost, SshTarget
from orchestrator.view import Screen
from tests.plan.test_plan_cli import stand_in_runc
from tests.run.test_journal import small_plan

NOW = 1_800_000_000.0


class FakeHosts:
    """A backend over a dictionary: each host ends `done` unless it is in `failing`; a
    rollback puts it back."""

    def __init__(self, target: str, failing: set[str] | None = None) -> None:
        self.target = target
        self.failing = failing or set()
        self.swapped: list[str] = []

    def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None:
        for name in hosts:
            if name in self.failing:
                context.on_outcome(name, HostOutcome("failed", "staged", None, "no room"))
                continue
            context.on_phase(name, "swapped", self.target)
            self.swapped.append(name)
            context.on_outcome(name, HostOutcome("done", "finished", self.target))

    def rollback(
        self, targets: Mapping[str, SshTarget], *, run_id: str | None, on_phase: PhaseListener
    ) -> dict[str, HostOutcome | Exception]:
        self.swapped = [name for name in self.swapped if name not in targets]
        return {name: HostOutcome("rolled_back", "finished", "c" * 64) for name in targets}


def screen() -> Screen:
    return Screen(stdout=io.StringIO(), stderr=io.StringIO(), clock=lambda: NOW, terminal=False)


def printed(shown: Screen) -> tuple[str, str]:
    assert isinstance(shown.stdout, io.StringIO) and isinstance(shown.stderr, io.StringIO)
    return shown.stdout.getvalue(), shown.stderr.getvalue()


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    """Three hosts in two waves, its artifact a real file here."""
    runc = tmp_path / "runc"
    runc.write_bytes(b"runc\n")
    digest = hashlib.sha256(b"runc\n").hexdigest()
    artifact = Artifact(path=str(runc), sha256=digest, size=5)
    return small_plan().model_copy(update={"artifact": artifact}).sealed()


def test_apply_runs_a_plan_through_a_backend_on_the_callers_streams_and_clock(
    plan: Plan, tmp_path: Path
) -> None:
    shown = screen()
    hosts = FakeHosts(plan.artifact.sha256)
    events: list[Event] = []
    result = api.apply(
        plan,
        runs_dir=tmp_path / "runs",
        backend=hosts,
        screen=shown,
        json_events=True,
        on_event=lambda event: events.append(event),
    )
    assert result.exit_code == api.ExitCode.OK
    assert (result.status, result.needs_resume) == ("completed", False)
    assert result.run_dir.parent == tmp_path / "runs" and result.run_dir.is_dir()
    assert result.run_id.startswith("20270115T080000Z-")  # the injected clock's time
    assert hosts.swapped == ["h1", "h2", "h3"]
    assert result.summary is not None and len(result.summary.hosts) == 3
    out, err = printed(shown)
    lines = [json.loads(line) for line in out.splitlines()]
    on_stdout = [(line["seq"], line["type"]) for line in lines]
    assert on_stdout == [(event.seq, event.type) for event in events]  # the screen's stdout
    assert events[0].type == "run.started" and events[-1].type == "run.finished"
    assert {event.time for event in events} == {NOW}
    assert f"run {result.run_id}" in err  # progress on the screen's stderr


def test_apply_refuses_a_changed_artifact_with_its_exit_code_and_starts_no_run(
    plan: Plan, tmp_path: Path
) -> None:
    Path(plan.artifact.path).write_bytes(b"another runc\n")
    with pytest.raises(api.RolloutError) as refused:
        api.apply(plan, runs_dir=tmp_path / "runs", backend=FakeHosts("x"), screen=screen())
    assert refused.value.exit_code == api.ExitCode.BAD_INPUT
    assert "sha256" in str(refused.value)
    assert not (tmp_path / "runs").exists()


def test_a_refused_confirmation_starts_no_run(plan: Plan, tmp_path: Path) -> None:
    asked: list[str] = []

    def refuse(question: str) -> None:
        asked.append(question)
        raise api.RolloutError("no")

    hosts = FakeHosts(plan.artifact.sha256)
    with pytest.raises(api.RolloutError):
        api.apply(plan, runs_dir=tmp_path, backend=hosts, screen=screen(), confirm=refuse)
    assert asked == [f"apply {plan.plan_id} to 3 hosts in 2 waves?"]
    assert hosts.swapped == [] and list(tmp_path.iterdir()) == [Path(plan.artifact.path)]


def test_a_failed_host_halts_the_run_with_exit_3(plan: Plan, tmp_path: Path) -> None:
    hosts = FakeHosts(plan.artifact.sha256, failing={"h1"})
    halted = api.apply(plan, runs_dir=tmp_path, backend=hosts, screen=screen())
    assert (halted.exit_code, halted.status) == (api.ExitCode.BUDGET_EXCEEDED, "halted")
    assert hosts.swapped == []


def test_resume_finishes_a_paused_run_and_a_completed_one_runs_nothing(
    plan: Plan, tmp_path: Path
) -> None:
    options = plan.options.model_copy(update={"pause_after": 0})
    plan = plan.model_copy(update={"options": options}).sealed()
    runs = tmp_path / "runs"
    hosts = FakeHosts(plan.artifact.sha256)
    paused = api.apply(plan, runs_dir=runs, backend=hosts, screen=screen())
    assert (paused.exit_code, paused.status, paused.needs_resume) == (
        api.ExitCode.PAUSED,
        "paused",
        True,
    )
    assert hosts.swapped == ["h1"]
    resumed = api.resume(paused.run_id, runs_dir=runs, backend=hosts, screen=screen())
    assert (resumed.exit_code, resumed.status) == (api.ExitCode.OK, "completed")
    assert hosts.swapped == ["h1", "h2", "h3"]
    again = api.resume(paused.run_dir, backend=hosts, screen=(shown := screen()))
    assert (again.exit_code, again.summary) == (api.ExitCode.OK, None)
    assert "already completed" in printed(shown)[1]


def test_rollback_of_a_run_and_of_its_named_hosts(plan: Plan, tmp_path: Path) -> None:
    hosts = FakeHosts(plan.artifact.sha256)
    done = api.apply(plan, runs_dir=tmp_path, backend=hosts, screen=screen())
    with pytest.raises(api.RolloutError, match="--host: h9 not in run"):
        api.rollback(done.run_dir, hosts=["h9"], backend=hosts, screen=screen())
    one = api.rollback(done.run_dir, hosts=["h2"], backend=hosts, screen=screen())
    assert (one.exit_code, list(one.outcomes)) == (api.ExitCode.OK, ["h2"])
    assert one.outcomes["h2"][0] == "rolled_back" and hosts.swapped == ["h1", "h3"]
    assert one.summary.status == "rolled_back"


def test_rollback_needs_a_run_or_an_inventory_not_both() -> None:
    for run, inventory in ((None, ()), ("run", ["a,"])):
        with pytest.raises(api.RolloutError) as refused:
            api.rollback(run, inventory=inventory, screen=screen())
        assert refused.value.exit_code == api.ExitCode.BAD_INPUT


def test_plan_writes_the_plan_and_sets_the_old_plans_signatures_aside(tmp_path: Path) -> None:
    runc, digest = stand_in_runc(tmp_path / "runc", "1.1.12", "v1.1.12-0-g51d5e94")
    output = tmp_path / "plan.json"
    first = api.plan(["a,b,c,"], runc=runc, sha256=digest, output=output)
    assert [host.name for host in first.plan.hosts] == ["a", "b", "c"]
    assert json.loads(output.read_text())["plan_hash"] == first.plan.plan_hash
    assert first.stale_signatures is None
    (tmp_path / "plan.json.sig").write_text("a signature of the first plan\n")
    options = api.WaveOptions(waves=("1", "100%"), limit="a:b")
    second = api.plan(["a,b,c,"], runc=runc, sha256=digest, output=output, options=options)
    assert [len(wave.hosts) for wave in second.plan.waves] == [1, 1]
    assert second.stale_signatures == tmp_path / "plan.json.sig.stale"
    assert not (tmp_path / "plan.json.sig").exists()


def test_plan_and_audit_refuse_bad_input_with_exit_code_2(tmp_path: Path) -> None:
    runc, _ = stand_in_runc(tmp_path / "runc", "1.1.12", "v1.1.12-0-g51d5e94")
    with pytest.raises(api.RolloutError) as refused:
        api.plan(["a,"], runc=runc, sha256="0" * 64, output=tmp_path / "plan.json")
    assert refused.value.exit_code == api.ExitCode.BAD_INPUT
    assert not (tmp_path / "plan.json").exists()
    with pytest.raises(api.RolloutError, match="--ignore: no finding is called CVE-0") as bad:
        api.audit(["a,"], ignore=["CVE-0"])
    assert bad.value.exit_code == api.ExitCode.BAD_INPUT
