"""The incident probe's uid on real lab hosts: a uid that something on the host already uses (a
user, a group, a process: a tenant's container running as it) is skipped for the run's next
candidate instead of failing the host; a uid the inventory forces is the only one tried."""

from __future__ import annotations

import json
import platform
import shlex
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.host import probe
from orchestrator.lab.hostdef import VERIFY_IMAGE
from orchestrator.lab.records import LabHost
from orchestrator.models import DEFAULT_PROBE_UID
from tests.conftest import LabFleet
from tests.run.test_apply_lab import make_plan

FREE = (2_000_000_011, 2_000_000_012)  # below the lab's own per-host probe uids
DEBIAN_RUNC = "/usr/sbin/runc"  # a fixed runc every lab host sees: the probe passes quickly


def gid_without_a_user() -> int:
    """A group of this machine (which the lab hosts share) whose number no user has."""
    users = {line.split(":")[2] for line in Path("/etc/passwd").read_text().splitlines() if line}
    for line in Path("/etc/group").read_text().splitlines():
        gid = line.split(":")[2]
        if gid not in users and gid != "0":
            return int(gid)
    raise AssertionError("every group has a user of its number")


def run_probe(lab: LabFleet, host: LabHost, uids: tuple[int, ...]) -> dict[str, str]:
    command = probe.probe(
        "bundle", DEBIAN_RUNC, uids=uids, timeout=8, run_id="uid-test", holds_lock=False,
        machine=platform.machine(),
    )  # fmt: skip
    with SshExecutor() as executor:
        result = executor.session(lab.target(host)).run(command.script, timeout=command.timeout)
    return dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)


@pytest.fixture
def busy_uid(lab: LabFleet) -> Iterator[int]:
    """FREE[0] busy: a process runs as it on a light host (all lab hosts see it)."""
    host = lab.light_hosts[0]
    sleeper = f"setpriv --reuid={FREE[0]} --regid={FREE[0]} --clear-groups sleep 120"
    pid = lab.ssh(host, f"sh -c {shlex.quote(f'{sleeper} </dev/null >/dev/null 2>&1 & echo $!')}")
    yield FREE[0]
    lab.ssh(host, f"kill {int(pid.stdout.split()[-1])}", check=False)


def test_a_busy_uid_is_skipped_for_the_next(lab: LabFleet, busy_uid: int) -> None:
    host = lab.light_hosts[0]
    gid = gid_without_a_user()
    said = run_probe(lab, host, (1, gid, busy_uid, FREE[1]))  # a user, a group, a process
    assert said["probe"] == "passed", said
    assert f"uid={FREE[1]}" in said["probe_holder"], said
    said = run_probe(lab, host, (busy_uid,))  # forced: no other to try
    assert said["probe"] == "unavailable" and f"{busy_uid}" in said["reason"], said


def test_a_tenant_running_as_the_old_public_uid_blocks_nothing(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    """A tenant's container runs as 2147000000, the probe uid every host once used: a host
    whose inventory forces no probe uid is upgraded, its probe as a uid of the run's."""
    host = clean_lab.full_hosts[0]
    inventory = yaml.safe_load(clean_lab.inventory.read_text())
    del inventory["all"]["children"]["lab"]["hosts"][host.name]["runc_rollout_probe_uid"]
    unforced = tmp_path / "hosts.yml"
    unforced.write_text(yaml.safe_dump(inventory))
    tenant = "rr-tenant-probe-uid"
    clean_lab.ssh(
        host,
        f"docker run -d --name {tenant} --user {DEFAULT_PROBE_UID}:{DEFAULT_PROBE_UID} "
        f"{VERIFY_IMAGE} sleep 600",
    )
    try:
        plan = tmp_path / "plan.json"
        make_plan(replace(clean_lab, inventory=unforced), artifact, plan, "--limit", host.name)
        runs = tmp_path / "runs"
        code = main(["apply", str(plan), "--yes", "--runs-dir", str(runs)])
        (run_dir,) = runs.iterdir()
        (outcome,) = json.loads((run_dir / "state.json").read_text())["hosts"].values()
    finally:
        clean_lab.ssh(host, f"docker rm -f {tenant}", check=False)
    assert (code, outcome["status"]) == (ExitCode.OK, "done"), outcome
    uid = int(outcome["probe"]["holder"].split("uid=")[1].split()[0])
    assert uid in probe.probe_uids(run_dir.name) and uid != DEFAULT_PROBE_UID
