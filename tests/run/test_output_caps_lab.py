"""Host output is bounded (real lab hosts, both backends): a tenant's container that floods the
`docker exec` check cannot fail or stall the host, and a step that sends more than a command
may is a failed step like any other: rolled back and unlocked, never "unreachable" with the
host's lock held."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.host.session import OUTPUT_CAP
from orchestrator.lab.hostdef import VERIFY_IMAGE
from orchestrator.lab.records import LabHost
from tests.conftest import LabFleet
from tests.run.test_apply_lab import host_state, make_plan

FLOOD = 100_000_000  # bytes: over the 64 MiB a command could once send back, far over the cap
TENANT = "rr-tenant-flood"


@pytest.fixture
def tenant(clean_lab: LabFleet) -> Iterator[LabHost]:
    """A full host running a tenant's container whose `true` prints `FLOOD` bytes, then exits 0."""
    host = clean_lab.full_hosts[0]
    flood = f"#!/bin/sh\\nyes | head -c {FLOOD}\\n"
    clean_lab.ssh(
        host,
        f"docker rm -f {TENANT} >/dev/null 2>&1; "
        f"docker run -d --name {TENANT} {VERIFY_IMAGE} sleep 600 >/dev/null && "
        f'docker exec {TENANT} sh -c \'rm /bin/true && printf "{flood}" > /bin/true '
        "&& chmod 755 /bin/true'",
    )
    yield host
    clean_lab.ssh(host, f"docker rm -f {TENANT} >/dev/null 2>&1 || true")


def apply(plan: Path, runs: Path, executor: str) -> tuple[int, dict[str, object]]:
    code = main(["apply", str(plan), "--yes", "--executor", executor, "--runs-dir", str(runs)])
    (run_dir,) = runs.iterdir()
    (host,) = json.loads((run_dir / "state.json").read_text())["hosts"].values()
    return code, host


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_a_tenant_flooding_the_exec_check_does_not_fail_the_host(
    clean_lab: LabFleet, tenant: LabHost, artifact: Path, tmp_path: Path, executor: str
) -> None:
    """The exec'd container's output goes to a bounded file on the host: its `true` still
    exits 0, so the check passes, and the controller gets a few bytes, not 100 MB."""
    plan = tmp_path / "plan.json"
    make_plan(clean_lab, artifact, plan, "--limit", tenant.name, "--verify-exec-container", TENANT)
    code, host = apply(plan, tmp_path / "runs", executor)
    assert (code, host["status"]) == (ExitCode.OK, "done"), host
    assert host_state(clean_lab, tenant.name)["lock"] == "free"


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_a_step_over_the_output_cap_fails_the_host_and_is_rolled_back(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, executor: str
) -> None:
    """A verification container that prints `FLOOD` bytes: its step is cut at the cap on the
    host, fails, and the host is rolled back and unlocked (once: unreachable at phase
    `swapped`, its lock held, its budget charged)."""
    host = clean_lab.full_hosts[0]
    before = host_state(clean_lab, host.name)
    plan = tmp_path / "plan.json"
    flood = f"sh -c 'yes | head -c {FLOOD}'"
    make_plan(clean_lab, artifact, plan, "--limit", host.name, "--verify-command", flood)
    code, outcome = apply(plan, tmp_path / "runs", executor)
    assert code == ExitCode.BUDGET_EXCEEDED
    assert (outcome["status"], outcome["phase"]) == ("failed", "finished"), outcome
    message = str(outcome["message"])
    assert f"more than {OUTPUT_CAP >> 20} MiB of output" in message, message
    assert message.endswith("rolled back to old runc"), message
    after = host_state(clean_lab, host.name)
    assert (after["runc"], after["sysctl"], after["lock"]) == (
        before["runc"],
        before["sysctl"],
        "free",
    )
