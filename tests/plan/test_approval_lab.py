"""The signed-approval flow end to end on the lab: sign, verify, refuse an unsigned plan,
refuse a re-sealed one, apply the signed one, and resume only what was approved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.models import Plan
from orchestrator.plan.render import plan_json
from orchestrator.run.journal import PLAN_FILE
from tests.conftest import LabFleet
from tests.plan.test_approval import resealed, reviewer
from tests.run.test_apply_lab import host_state, sha256


def test_signed_plans_only(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = clean_lab
    host = lab.light_hosts[0].name
    before = host_state(lab, host)
    plan = tmp_path / "plan.json"
    args = ["plan", "-i", str(lab.inventory), "--limit", host, "--runc", str(artifact)]
    assert main([*args, "--sha256", sha256(artifact), "--gather", "-o", str(plan)]) == 0
    alice, line = reviewer(tmp_path, "alice")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(line)
    runs = tmp_path / "runs"
    apply = ["--allowed-signers", str(allowed), "--runs-dir", str(runs), "--yes"]

    assert main(["apply", str(plan), *apply]) == ExitCode.BAD_INPUT  # unsigned
    assert main(["sign", str(plan), "--key", str(alice)]) == 0
    assert main(["verify-plan", str(plan), "--allowed-signers", str(allowed)]) == 0
    assert "signed by alice@example.org" in capsys.readouterr().out

    forged = tmp_path / "forged.json"
    forged.write_bytes(plan_json(resealed(Plan.model_validate_json(plan.read_bytes()))))
    (tmp_path / "forged.json.sig").write_bytes((tmp_path / "plan.json.sig").read_bytes())
    assert main(["apply", str(forged), *apply]) == ExitCode.BAD_INPUT
    assert not runs.exists() and host_state(lab, host) == before  # nothing happened anywhere

    assert main(["apply", str(plan), *apply]) == ExitCode.OK
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "approval.json").read_text())["signers"] == ["alice@example.org"]
    assert host_state(lab, host)["runc"] == sha256(artifact)
    # The run's copy re-sealed with another artifact: resume refuses it.
    copy = run_dir / PLAN_FILE
    copy.write_bytes(plan_json(resealed(Plan.model_validate_json(copy.read_bytes()))))
    resume = ["resume", str(run_dir), "--yes", "--allowed-signers", str(allowed)]
    assert main(resume) == ExitCode.BAD_INPUT
    assert "not the hash this run was started with" in capsys.readouterr().err
