"""The operator's own checks on real lab hosts: a host check that fails on one host (rolled
back, its output the reason) through both backends, announced to a webhook on 127.0.0.1 in
order while another webhook is down; a wave gate that says no after a wave
(halt, exit 3; resume runs it again); a pre-gate that says no (nothing changed anywhere)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.run.journal import EVENTS_FILE, read_events
from tests.conftest import LabFleet
from tests.run.test_apply_lab import host_state, make_plan, sha256
from tests.run.test_notify import Webhook, dead_url
from tests.run.test_notify import webhook as webhook  # the fixture: a receiver on 127.0.0.1

SICK = 'echo "kubelet: PLEG is not healthy on $RUNC_ROLLOUT_HOST"; exit 1'


def state_of(runs: Path) -> dict[str, object]:
    (run_dir,) = runs.iterdir()
    state: dict[str, object] = json.loads((run_dir / "state.json").read_text())
    return state


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_a_host_check_that_fails_on_one_host_rolls_it_back_with_its_reason(
    clean_lab: LabFleet,
    artifact: Path,
    tmp_path: Path,
    executor: str,
    webhook: Webhook,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lab = clean_lab
    sick = lab.full_hosts[1].name
    check = f'[ "$RUNC_ROLLOUT_HOST" != {sick} ] || {{ {SICK}; }}; test -x "$RUNC_ROLLOUT_RUNC"'
    plan = tmp_path / "plan.json"
    make_plan(lab, artifact, plan, "--host-check", check, "--max-failures", "1")
    before = {host.name: host_state(lab, host.name) for host in lab.hosts}
    runs = tmp_path / "runs"
    notify = ["--notify", webhook.url, "--notify", dead_url()]
    code = main(
        ["apply", str(plan), "--yes", "--executor", executor, "--runs-dir", str(runs), *notify]
    )
    assert code == ExitCode.HOST_FAILED
    (run_dir,) = runs.iterdir()
    told = [(body["event"]["type"], body["event"].get("host")) for _, body in webhook.received]
    assert told[0] == ("run.started", None) and told[-1] == ("run.finished", None)
    assert ("host.finished", sick) in told
    assert [kind for kind, _ in told].count("wave.finished") == 2
    waves = [body["event"]["wave"] for _, body in webhook.received if "wave" in body["event"]]
    assert waves == sorted(waves)  # in order
    out = capsys.readouterr()
    assert "secret" not in out.out + out.err and "notifying 127.0.0.1, 127.0.0.1" in out.err
    for name in ("events.jsonl", "state.json", "plan.json"):
        assert "secret" not in (run_dir / name).read_text()
    events, _ = read_events(run_dir / EVENTS_FILE)
    assert any(e.type == "notify.failed" and "Connection refused" in str(e.message) for e in events)
    hosts = state_of(runs)["hosts"]
    assert isinstance(hosts, dict)
    assert hosts[sick]["status"] == "failed"
    assert hosts[sick]["message"] == (
        f"host check failed (exit 1): kubelet: PLEG is not healthy on {sick}; "
        "rolled back to old runc"
    )
    after = host_state(lab, sick)
    assert after["runc"] == before[sick]["runc"] and after["sysctl"] == before[sick]["sysctl"]
    assert after["lock"] == "free" and after["temp_files"] == "0"
    leftover = lab.ssh(lab.host(sick), "ls /var/lib/runc-rollout | grep -c host-check || true")
    assert leftover.stdout.strip() == "0"
    for host in lab.hosts:
        if host.name != sick:
            assert hosts[host.name]["status"] == "done", host.name
            assert host_state(lab, host.name)["runc"] == sha256(artifact)


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_a_wave_gate_halts_after_wave_1_and_resume_runs_it_again(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, executor: str
) -> None:
    lab = clean_lab
    flag = tmp_path / "unhealthy"
    flag.write_text("")
    seen = tmp_path / "seen.jsonl"
    gate = (
        f'cat >> {seen}; echo >> {seen}; [ "$RUNC_ROLLOUT_WAVE" != 1 ] || '
        f'[ ! -e {flag} ] || {{ echo "node $RUNC_ROLLOUT_HOSTS: NotReady"; exit 1; }}'
    )
    plan = tmp_path / "plan.json"
    make_plan(lab, artifact, plan, "--waves", "1,1,100%", "--wave-gate", gate)
    runs = tmp_path / "runs"
    with_executor = ["--yes", "--executor", executor]
    code = main(["apply", str(plan), *with_executor, "--runs-dir", str(runs)])
    assert code == ExitCode.BUDGET_EXCEEDED
    state = state_of(runs)
    assert state["status"] == "halted"
    (run_dir,) = runs.iterdir()
    events, _ = read_events(run_dir / EVENTS_FILE)
    halted = events[-1]
    second = json.loads(plan.read_text())["waves"][1]["hosts"][0]["name"]
    assert halted.message == f"after wave 1: wave-gate exit 1: node {second}: NotReady"
    bodies = [json.loads(line) for line in seen.read_text().splitlines() if line.strip()]
    assert [(body["wave"], body["counts"]) for body in bodies] == [
        (0, {"done": 1}),
        (1, {"done": 1}),
    ]
    hosts = state["hosts"]
    assert isinstance(hosts, dict)
    assert sorted(host["status"] for host in hosts.values()) == [
        "done",
        "done",
        "pending",
        "pending",
    ]
    flag.unlink()
    assert main(["resume", str(run_dir), *with_executor]) == ExitCode.OK
    bodies = [json.loads(line) for line in seen.read_text().splitlines() if line.strip()]
    assert [body["wave"] for body in bodies] == [0, 1, 1, 2]  # wave 1's gate again, then 2's


def test_a_pre_gate_that_says_no_changes_nothing_anywhere(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    lab = clean_lab
    before = {host.name: host_state(lab, host.name) for host in lab.hosts}
    plan = tmp_path / "plan.json"
    make_plan(lab, artifact, plan, "--pre-gate", "echo 3 nodes NotReady; exit 2")
    runs = tmp_path / "runs"
    assert main(["apply", str(plan), "--yes", "--runs-dir", str(runs)]) == ExitCode.BUDGET_EXCEEDED
    assert {host.name: host_state(lab, host.name) for host in lab.hosts} == before
    (run_dir,) = runs.iterdir()
    events, _ = read_events(run_dir / EVENTS_FILE)
    assert [event.type for event in events] == ["run.started", "gate.failed", "run.halted"]
    assert events[-1].message == "before the first wave: pre-gate exit 2: 3 nodes NotReady"
