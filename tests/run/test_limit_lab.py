"""`apply --limit` on real lab hosts through the SSH executor: only the subset is upgraded, the
other hosts of the reviewed plan are not touched, and status and `rollback RUN` keep to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from tests.conftest import LabFleet
from tests.run.test_apply_lab import host_state, make_plan, sha256


def test_apply_limit_upgrades_the_subset_alone(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = clean_lab
    names = [host.name for host in lab.hosts]
    chosen, others = names[1:3], [names[0], *names[3:]]
    before = {name: host_state(lab, name) for name in names}
    plan = tmp_path / "plan.json"
    make_plan(lab, artifact, plan)  # every lab host, waves 1,100%
    runs = tmp_path / "runs"
    capsys.readouterr()
    argv = ["apply", str(plan), "--yes", "--runs-dir", str(runs), "--executor", "ssh"]
    assert main([*argv, "--limit", ":".join(chosen)]) == ExitCode.OK
    assert f"2 of the plan's {len(names)} hosts" in capsys.readouterr().err
    target = sha256(artifact)
    for name in chosen:
        assert host_state(lab, name)["runc"] == target, name
    for name in others:  # in the reviewed plan, outside the limit: untouched
        assert host_state(lab, name) == before[name], name

    (run_dir,) = runs.iterdir()
    state = json.loads((run_dir / "state.json").read_text())
    assert state["limit"] == ":".join(chosen) and sorted(state["hosts"]) == sorted(chosen)
    assert {host["status"] for host in state["hosts"].values()} == {"done"}
    assert main(["status", str(run_dir)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"limited to {':'.join(chosen)}: 2 hosts" in out and names[0] not in out

    # rollback RUN puts back the run's hosts only
    assert main(["rollback", str(run_dir), "--yes", "--format", "json"]) == ExitCode.OK
    rolled = json.loads(capsys.readouterr().out)
    assert sorted(host["name"] for host in rolled["hosts"]) == sorted(chosen)
    for name in names:
        assert host_state(lab, name) | {"backups": ""} == before[name] | {"backups": ""}, name
