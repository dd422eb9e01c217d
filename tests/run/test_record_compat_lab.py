"""Host-side state left by an older runc-rollout (`tests/data/records`, made at commit 89120ff)
is resumed or rolled back by this one: a host started by one version of the tool is
finished by the next.

Each fixture is planted on a lab host as that code left it: record.json, the lock, the staged
file, the backup store (`backup/<sha256>`: the lab's own rc93 binary; `files/<sha256>`: the lab's
own sysctl file), the runc and the sysctl. What must match this lab is rewritten, and only that:
the run and plan ids (the run resumed here is a new journal), the sha256 of the binaries and of
the sysctl file's old content (the lab's own, mapped from the fixture's), the staged file's name
(it carries the run id), and the daemons' PIDs and start times (the verification compares them).
Everything else in the record stays byte for byte what the old code wrote.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.host.commands import LOCK_DIR, RECORD, STATE_DIR, SYSCTL_PROC
from orchestrator.lab.records import LabHost
from orchestrator.run.engine import load_plan
from orchestrator.run.journal import Journal
from tests.conftest import LabFleet

RECORDS = Path(__file__).parent.parent / "data" / "records"
LAYOUT: dict[str, Any] = json.loads((RECORDS / "layout.json").read_text())
PHASES = ("backed_up", "swapped", "verified", "sysctl_restored", "done", "rolled_back")
RUNC = "/usr/local/sbin/runc"
# Both backends run the same procedure (host.procedure): every record through ssh, a few through
# the Ansible action too, to show it reads the same host-side state.
RESUMES = [(phase, "ssh") for phase in PHASES] + [("swapped", "ansible"), ("done", "ansible")]
ROLLBACKS = [(phase, "ssh", "inventory") for phase in PHASES] + [
    ("swapped", "ssh", "run"),
    ("sysctl_restored", "ssh", "run"),
    ("verified", "ansible", "inventory"),
]
SWAPPED = {"swapped", "verified", "sysctl_restored", "done"}  # the host runs the target there


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def host_side(lab: LabFleet, host: LabHost) -> dict[str, Any]:
    """What the fixtures' layout describes, read from the host over ssh."""
    incident = LAYOUT["incident_file"]
    out = lab.ssh(
        host,
        f"mkdir -p {STATE_DIR}; cd {STATE_DIR} && find . -mindepth 1 | sort; echo ---; "
        f"cat {LOCK_DIR}/owner 2>/dev/null; echo ---; "
        "ls -a /usr/local/sbin | grep runc-rollout; echo ---; "
        f"sha256sum {RUNC} | cut -d' ' -f1; cat {SYSCTL_PROC}; "
        f"sha256sum {incident} | cut -d' ' -f1",
        check=False,
    ).stdout
    tree, owner, staged, rest = out.split("---\n")
    runc, sysctl, incident_sha = rest.split()
    return {
        "state_dir": [line.removeprefix("./") for line in tree.split()],
        "lock_owner": owner.strip() or None,
        "staged": staged.split(),
        "runc_sha256": runc,
        "sysctl_runtime": int(sysctl),
        "incident_file_sha256": incident_sha,
    }


def host_record(lab: LabFleet, host: LabHost) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(lab.ssh(host, f"cat {RECORD}").stdout)
    return loaded


class Renames:
    """The fixture's names for things mapped to this lab's: applied to text and to JSON."""

    def __init__(self, pairs: dict[str, str]) -> None:
        self.pairs = {old: new for old, new in pairs.items() if old != new}

    def text(self, value: str) -> str:
        for old, new in self.pairs.items():
            value = value.replace(old, new)
        return value

    def layout(self, phase: str) -> dict[str, Any]:
        """The fixture's host-side layout for `phase`, in this lab's names."""
        fixture = LAYOUT["hosts"][phase]
        return {
            "state_dir": sorted(self.text(item) for item in fixture["state_dir"]),
            "lock_owner": fixture["lock_owner"] and self.text(fixture["lock_owner"]),
            "staged": [self.text(item) for item in fixture["staged"]],
            "runc_sha256": self.text(fixture["runc_sha256"]),
            "sysctl_runtime": fixture["sysctl_runtime"],
            "incident_file_sha256": self.text(fixture["incident_file_sha256"]),
        }


def plant(lab: LabFleet, host: LabHost, phase: str, artifact: Path, runs: Path) -> Path:
    """A run of this lab's plan for `host` whose journal and host-side state are where the
    fixture `phase` left them; returns the run directory."""
    plan_path = runs.parent / "plan.json"
    code = main(
        [
            "plan", "-i", str(lab.inventory), "--runc", str(artifact), "--sha256",
            sha256(artifact), "--gather", "--limit", host.name, "--waves", "100%",
            "-o", str(plan_path), "--format", "json",
        ]
    )  # fmt: skip
    assert code == ExitCode.OK
    plan = load_plan(plan_path)
    journal = Journal.create(runs, plan)
    fixture = LAYOUT["hosts"][phase]
    facts = lab.facts(host)
    assert facts.runc is not None and facts.runc.file == RUNC and facts.runc.sha256 is not None
    assert facts.dockerd is not None and facts.containerd is not None
    incident = LAYOUT["incident_file"]
    old_file = lab.ssh(host, f"cat {incident}").stdout
    old_file_sha = hashlib.sha256(old_file.encode()).hexdigest()
    renames = Renames(
        {
            fixture["run_id"]: journal.run_id,
            LAYOUT["before_sha256"]: facts.runc.sha256,
            LAYOUT["target_sha256"]: sha256(artifact),
            LAYOUT["before"]["incident_file_sha256"]: old_file_sha,
        }
    )

    text = (RECORDS / f"{phase}.json").read_text()
    record: dict[str, Any] = json.loads(text)
    assert json.dumps(record, indent=2) + "\n" == text  # so it is written back in the old format
    record["run_id"], record["plan_id"] = journal.run_id, plan.plan_id
    for key in ("before_sha256", "target_sha256"):
        record[key] = renames.text(record[key])
    for item in record["files"]:
        item["before_sha256"] = renames.text(item["before_sha256"])
    assert set(record["daemons"]) == {"dockerd", "containerd"}
    record["daemons"] = {
        "dockerd": [facts.dockerd.pid, facts.dockerd.start_ticks],
        "containerd": [facts.containerd.pid, facts.containerd.start_ticks],
    }

    expected = renames.layout(phase)
    steps = ["set -eu", f"mkdir -p {STATE_DIR}/backup {STATE_DIR}/files", f"chmod 0700 {STATE_DIR}"]
    for item in expected["state_dir"]:
        if item.startswith("backup/"):
            assert item == f"backup/{facts.runc.sha256}"
            steps.append(f"cp -p {RUNC} {STATE_DIR}/{item}")
        elif item.startswith("files/"):
            assert item == f"files/{old_file_sha}"
            steps.append(f"cp -p {incident} {STATE_DIR}/{item}")
    if expected["lock_owner"]:
        steps += [f"mkdir {LOCK_DIR}", f"echo {shlex.quote(journal.run_id)} > {LOCK_DIR}/owner"]
    staging = Path("/tmp") / f"runc-rollout-plant-{journal.run_id}"  # lab hosts share /tmp
    staging.write_bytes(artifact.read_bytes())
    for name in expected["staged"]:
        steps.append(f"cp {staging} /usr/local/sbin/{name} && chmod 0755 /usr/local/sbin/{name}")
    if phase in SWAPPED:
        plant_tmp = f"{RUNC}.plant"
        steps += [f"cp {staging} {plant_tmp}", f"chmod 0755 {plant_tmp}", f"mv {plant_tmp} {RUNC}"]
    if expected["sysctl_runtime"] != facts.sysctl_runtime:
        steps.append(f"echo {expected['sysctl_runtime']} > {SYSCTL_PROC}")
    if expected["incident_file_sha256"] != old_file_sha:
        content = LAYOUT["incident_file_contents"][expected["incident_file_sha256"]]
        steps.append(f"printf %s {shlex.quote(content)} > {incident}")
    steps.append(f"printf '%s\\n' {shlex.quote(json.dumps(record, indent=2))} > {RECORD}")
    try:
        lab.ssh(host, "\n".join(steps))
    finally:
        staging.unlink()
    assert host_side(lab, host) == expected, "planted state differs from the fixture's"

    journal.record("run.started")
    journal.record("wave.started", wave=0, message="1 hosts")
    for reached in fixture["journal_phases"]:  # the journal as far as the old run wrote it
        journal.record("host.phase", host=host.name, phase=reached)
    return journal.run_dir


@pytest.fixture
def host(lab: LabFleet) -> Iterator[LabHost]:
    """The first full host of the session's lab, in the incident's state before and after."""
    chosen = lab.full_hosts[0]
    lab.reset(chosen)
    yield chosen
    lab.reset(chosen)


@pytest.mark.parametrize(("phase", "executor"), RESUMES)
def test_resume_finishes_an_old_record(
    lab: LabFleet, host: LabHost, phase: str, executor: str, artifact: Path, tmp_path: Path
) -> None:
    before = host_side(lab, host)
    run_dir = plant(lab, host, phase, artifact, tmp_path / "runs")
    code = main(["resume", str(run_dir), "--yes", "--executor", executor])
    state = json.loads((run_dir / "state.json").read_text())["hosts"][host.name]
    after = host_side(lab, host)
    record = host_record(lab, host)
    assert after["lock_owner"] is None and after["staged"] == [], after
    assert f"backup/{before['runc_sha256']}" in after["state_dir"]
    assert record["phase"] == "finished"
    if phase == "rolled_back":  # the old run ended it: resume reports that and changes nothing
        assert code == ExitCode.BUDGET_EXCEEDED  # the plan's budget is 0: the wave halts
        assert state["status"] == "failed"
        assert "ended it rolled_back" in state["message"]
        assert after | {"state_dir": []} == before | {"state_dir": []}
        assert record["outcome"] == "rolled_back"
        return
    assert code == ExitCode.OK, state
    assert state["status"] == "done", state
    assert after["runc_sha256"] == sha256(artifact)
    assert after["sysctl_runtime"] == 16384
    assert lab.ssh(host, f"cat {LAYOUT['incident_file']}").stdout.endswith(
        "fs.pipe-user-pages-soft = 16384\n"
    )
    assert record["outcome"] == "done"
    if phase == "done":
        assert state["message"] == "already finished by this run"
    lab.ssh(host, "docker exec lab-keepalive true")


@pytest.mark.parametrize(("phase", "executor", "via"), ROLLBACKS)
def test_rollback_restores_the_before_of_an_old_record(
    lab: LabFleet,
    host: LabHost,
    phase: str,
    executor: str,
    via: str,
    artifact: Path,
    tmp_path: Path,
) -> None:
    """From the host's record alone (`-i INVENTORY`), or through the run's journal."""
    before = host_side(lab, host)
    run_dir = plant(lab, host, phase, artifact, tmp_path / "runs")
    if via == "inventory":
        argv = ["rollback", "-i", str(lab.inventory), "--limit", host.name, "--yes"]
    else:
        argv = ["rollback", str(run_dir), "--yes"]
    code = main([*argv, "--executor", executor])
    assert code == ExitCode.OK
    after = host_side(lab, host)
    assert after | {"state_dir": []} == before | {"state_dir": []}
    assert f"backup/{before['runc_sha256']}" in after["state_dir"]
    record = host_record(lab, host)
    assert (record["phase"], record["outcome"]) == ("finished", "rolled_back")
    lab.ssh(host, "docker exec lab-keepalive true")
