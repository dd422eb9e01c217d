"""`apply --limit PATTERN`: a subset of the reviewed plan, inside it, recorded in the journal,
and kept to by resume, status and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import BadInput, ExitCode
from orchestrator.host.procedure import HostOutcome
from orchestrator.inventory.read import load_inventory
from orchestrator.models import Plan, Skipped
from orchestrator.run.engine import ApplyEnv, Rollout
from orchestrator.run.journal import EVENTS_FILE, Journal, RunLimit
from orchestrator.run.limit import plan_subset
from orchestrator.view import journal_summary
from orchestrator.view.progress import status_text
from orchestrator.view.summary import summary_text
from tests.view.test_view import FakeClock, ScriptedWaves, make_plan

INVENTORY = """\
[zone_a]
h1
h2
h3
[zone_b]
h4
h5
h6
h7
"""


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.ini"
    path.write_text(INVENTORY)
    return path


def plan_of(inventory: Path, sizes: tuple[int, ...] = (1, 2, 2)) -> Plan:
    """h1..h5 planned in waves of `sizes`; h6 held back; h7 not in the plan at all."""
    plan = make_plan(sizes)
    update = {"inventory": (str(inventory),), "skipped": [Skipped(name="h6", reason="skip")]}
    return plan.model_copy(update=update).sealed()


def test_a_pattern_selects_the_plans_hosts_in_plan_order(inventory: Path) -> None:
    plan = plan_of(inventory)
    assert plan_subset(plan, "zone_b:!h7:h2") == RunLimit("zone_b:!h7:h2", ("h2", "h4", "h5"))
    assert plan_subset(plan, "zone_a[1:]").hosts == ("h2", "h3")
    # a held-back host the pattern selects is left out, as the plan leaves it out
    assert plan_subset(plan, "h5:h6").hosts == ("h5",)


def test_a_host_outside_the_plan_is_refused(inventory: Path) -> None:
    plan = plan_of(inventory)
    with pytest.raises(BadInput, match=r"--limit zone_b: h7 not in plan plan-\w+: apply --limit"):
        plan_subset(plan, "zone_b")
    with pytest.raises(BadInput, match=r"selects only hosts plan .* holds back"):
        plan_subset(plan, "h6")
    with pytest.raises(Exception, match="matches no host or group"):  # a typo is no subset
        plan_subset(plan, "zone_c", load_inventory([inventory]))


def test_the_limited_plan_keeps_its_waves_and_the_approved_hash(inventory: Path) -> None:
    plan = plan_of(inventory)
    limited = plan.limited_to({"h2", "h5"})
    assert [[h.name for h in wave.hosts] for wave in limited.waves] == [[], ["h2"], ["h5"]]
    assert [wave.max_failures for wave in limited.waves] == [w.max_failures for w in plan.waves]
    assert limited.plan_hash == plan.plan_hash and limited.computed_hash() != plan.plan_hash


def test_a_limited_run_works_on_its_hosts_and_says_so_everywhere(
    inventory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    plan = plan_of(inventory)
    limit = plan_subset(plan, "h2:h3:h5")
    journal = Journal.create(tmp_path / "runs", plan, clock, limit=limit)
    assert journal.approved_plan is plan and sorted(journal.state.hosts) == ["h2", "h3", "h5"]
    worked: list[str] = []
    backend = ScriptedWaves(clock, {}, after=worked.append)
    assert Rollout(journal, backend, env=ApplyEnv(clock=clock)).run() == ExitCode.OK
    assert worked == ["h2", "h3", "h5"]  # wave 0 (h1 alone) is empty here: nothing ran
    events = [json.loads(line) for line in (journal.run_dir / EVENTS_FILE).read_text().splitlines()]
    assert events[0]["type"] == "run.limited" and events[0]["hosts"] == ["h2", "h3", "h5"]
    assert events[1]["type"] == "run.started" and events[1]["limit"] == "h2:h3:h5"
    assert [e["wave"] for e in events if e["type"] == "wave.started"] == [1, 2]

    # Opened again (status, resume, rollback RUN): the same subset, the whole plan approved.
    again = Journal.open(journal.run_dir, clock)
    assert again.state.limit == "h2:h3:h5" and sorted(again.state.hosts) == ["h2", "h3", "h5"]
    assert [h.name for h in again.plan.hosts] == ["h2", "h3", "h5"]
    assert again.approved_plan.computed_hash() == plan.plan_hash
    assert "limited to h2:h3:h5: 3 hosts" in status_text(again.state)
    summary = journal_summary("status", again)
    assert {host.name for host in summary.hosts} == {"h2", "h3", "h5"}
    assert "limited to h2:h3:h5: 3 of the plan's 5 hosts" in summary_text(summary)
    assert main(["status", str(journal.run_dir)]) == ExitCode.OK
    assert "h1" not in capsys.readouterr().out


def test_a_resume_of_a_limited_run_stays_inside_it(inventory: Path, tmp_path: Path) -> None:
    clock = FakeClock()
    plan = plan_of(inventory, sizes=(1, 4))
    journal = Journal.create(tmp_path / "runs", plan, clock, limit=plan_subset(plan, "h1:h3"))
    gone = {"h3": HostOutcome("unreachable", "none", None, "cannot connect")}
    code = Rollout(journal, ScriptedWaves(clock, gone), env=ApplyEnv(clock=clock)).run()
    assert code == ExitCode.BUDGET_EXCEEDED  # wave 1 is h3 alone here, and it did not succeed
    reopened = Journal.open(journal.run_dir, clock)
    worked: list[str] = []
    backend = ScriptedWaves(clock, {}, after=worked.append)
    assert Rollout(reopened, backend, env=ApplyEnv(clock=clock)).run(resumed=True) == ExitCode.OK
    assert worked == ["h3"]  # h2, h4 and h5 are in the plan's wave 1, not in this run
    assert reopened.state.status == "completed" and sorted(reopened.state.hosts) == ["h1", "h3"]


def test_apply_limit_refuses_a_host_outside_the_plan_before_anything_runs(
    inventory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_file = tmp_path / "plan.json"
    plan_file.write_bytes(b"".join(plan_of(inventory).json_chunks(indent=2)))
    runs = tmp_path / "runs"
    argv = ["apply", str(plan_file), "--yes", "--runs-dir", str(runs), "--limit", "h4:h7"]
    assert main(argv) == ExitCode.BAD_INPUT
    assert "h7 not in plan" in capsys.readouterr().err
    assert not runs.exists()  # no run was started
