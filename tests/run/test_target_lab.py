"""The target policy at apply, on real lab hosts: a plan that did not know its runc's version
carries its refusals, and the first host refuses an rc93 target before any swap."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.lab.rc93 import ensure_rc93_runc
from orchestrator.run.journal import EVENTS_FILE
from tests.conftest import LabFleet
from tests.run.test_apply_lab import host_state


def test_apply_refuses_rc93_on_the_first_host_when_the_plan_did_not_know_it(
    clean_lab: LabFleet, tmp_path: Path
) -> None:
    lab = clean_lab
    artifact = tmp_path / "runc"  # the lab's real rc93, one byte longer: not what hosts have
    artifact.write_bytes(ensure_rc93_runc().path.read_bytes() + b"\0")
    artifact.chmod(0o755)
    plan = tmp_path / "plan.json"
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    args = ["plan", "-i", str(lab.inventory), "--runc", str(artifact), "--sha256", digest,
            "--gather", "--waves", "1,100%", "-o", str(plan), "--format", "json"]  # fmt: skip
    assert main(args) == ExitCode.OK
    body = json.loads(plan.read_text())
    assert body["artifact"]["version"] is None
    assert [item["id"] for item in body["target"]["refuse"]] == ["runc-rc93-pipe-hang"]
    first = body["waves"][0]["hosts"][0]["name"]
    before = {host.name: host_state(lab, host.name) for host in lab.hosts}

    runs = tmp_path / "runs"
    assert main(["apply", str(plan), "--yes", "--runs-dir", str(runs)]) == (
        ExitCode.BUDGET_EXCEEDED
    )
    after = {host.name: host_state(lab, host.name) for host in lab.hosts}
    # Untouched: the same runc, sysctl and files; its batch may have kept a copy of its own
    # runc in the backup store (content-addressed) before the staged file's check came back.
    assert after[first]["backups"] in ("", before[first]["runc"])
    after[first]["backups"] = before[first]["backups"]
    assert after == before
    assert after[first]["lock"] == "free" and after[first]["temp_files"] == "0"
    (run_dir,) = runs.iterdir()
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "halted"
    failed = state["hosts"][first]
    assert failed["status"] == "failed"
    assert "staged runc 1.0.0-rc93 has runc-rc93-pipe-hang" in failed["message"]
    assert "not touched" in failed["message"]
    assert all(
        state["hosts"][host.name]["status"] == "pending" for host in lab.hosts if host.name != first
    )
    events = (run_dir / EVENTS_FILE).read_text()
    assert '"swapped"' not in events
