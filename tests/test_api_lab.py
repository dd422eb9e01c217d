"""The public Python API on real lab hosts: audit, plan (with the hosts' facts), apply and
rollback, called as a Python program would, never through the command line."""

from __future__ import annotations

import io
from pathlib import Path

from orchestrator import api
from tests.conftest import LabFleet
from tests.run.test_apply_lab import host_state, sha256


def test_audit_plan_apply_and_rollback_through_the_api(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    lab = clean_lab
    names = [host.name for host in lab.hosts]
    before = {name: host_state(lab, name) for name in names}

    audited = api.audit([lab.inventory], domain_key="zone")
    assert audited.exit_code == api.ExitCode.OK
    assert sorted(host.host for host in audited.report.hosts) == sorted(names)
    assert all("rc93" in " ".join(f.id for f in host.findings) for host in audited.report.hosts)

    planned = api.plan(
        [lab.inventory],
        runc=artifact,
        sha256=sha256(artifact),
        gather=True,
        options=api.WaveOptions(waves=("1", "100%"), domain_key="zone"),
        output=tmp_path / "plan.json",
    )
    assert sorted(host.name for host in planned.plan.hosts) == sorted(names)
    assert {host.action for host in planned.plan.hosts} == {"swap"}

    questions: list[str] = []
    shown = api.Screen(stdout=io.StringIO(), stderr=io.StringIO(), terminal=False)
    applied = api.apply(
        planned.output, runs_dir=tmp_path / "runs", confirm=questions.append, screen=shown
    )
    assert (applied.exit_code, applied.status) == (api.ExitCode.OK, "completed")
    assert questions == [f"apply {planned.plan.plan_id} to {len(names)} hosts in 2 waves?"]
    target = sha256(artifact)
    for name in names:
        assert host_state(lab, name)["runc"] == target, name
    assert applied.summary is not None
    assert {host.status for host in applied.summary.hosts} == {"done"}
    assert isinstance(shown.stderr, io.StringIO) and applied.run_id in shown.stderr.getvalue()

    rolled = api.rollback(applied.run_dir, screen=shown)
    assert rolled.exit_code == api.ExitCode.OK
    assert {status for status, _, _ in rolled.outcomes.values()} == {"rolled_back"}
    for name in names:
        assert host_state(lab, name) | {"backups": ""} == before[name] | {"backups": ""}, name
