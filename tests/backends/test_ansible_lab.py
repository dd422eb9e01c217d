"""The Ansible backend on real lab hosts: parity with the SSH backend, cross-backend
rollback, the hanging candidate, check mode, idempotency, host keys, secrets, resume."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.backends.ansible.control import CONTROL_PREFIX, remove_stale_control_dirs
from orchestrator.backends.ansible.runner import PLAYBOOK_DIR
from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.models import HostRecord
from orchestrator.run.engine import load_plan
from orchestrator.run.journal import EVENTS_FILE, read_events
from tests.conftest import HANGING_RUNC, RUNC_ROLLOUT, LabFleet
from tests.run.test_apply_lab import (
    INCIDENT_FILE,
    apply_killed_after_swap,
    make_plan,
    sha256,
)

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
STATE = "/var/lib/runc-rollout"
# Everything of a host that an upgrade or rollback may change, one item per line.
SNAPSHOT = (
    "sha256sum /usr/local/sbin/runc | cut -d' ' -f1; "
    "cat /proc/sys/fs/pipe-user-pages-soft; "
    f"sha256sum {INCIDENT_FILE} | cut -d' ' -f1; "
    f"ls {STATE}/backup 2>/dev/null | tr '\\n' ' '; echo; "
    f"ls {STATE}/files 2>/dev/null | tr '\\n' ' '; echo; "
    f"test -d {STATE}/lock && echo locked || echo free; "
    "ls -A /usr/local/sbin | tr '\\n' ' '; echo; "
    f"tr -d '\\n' < {STATE}/record.json 2>/dev/null; echo"
)
LISTING = (
    "find /usr/local/sbin /etc/sysctl.d /etc/docker /var/lib/runc-rollout -printf "
    "'%p %s %T@ %m\\n' 2>/dev/null | sort; cat /proc/sys/fs/pipe-user-pages-soft; "
    "sha256sum /usr/local/sbin/* /etc/sysctl.d/* 2>/dev/null; docker ps -aq 2>/dev/null | sort"
)


def snapshot(lab: LabFleet, name: str) -> dict[str, Any]:
    """What matters on a host; the record without the fields that name a run or a time."""
    lines = lab.ssh(lab.host(name), SNAPSHOT).stdout.split("\n")
    keys = ("runc", "sysctl", "incident_file", "backups", "file_backups", "lock", "sbin")
    state: dict[str, Any] = {key: line.strip() for key, line in zip(keys, lines, strict=False)}
    record = lines[len(keys)].strip()
    state["record"] = (
        HostRecord.model_validate_json(record).model_dump(exclude={"run_id", "plan_id", "updated"})
        if record
        else None
    )
    return state


def journal_view(runs: Path) -> dict[str, Any]:
    """Each host's final state and its phases, in order, from a run's journal."""
    (run_dir,) = runs.iterdir()
    state = json.loads((run_dir / "state.json").read_text())
    events, _ = read_events(run_dir / EVENTS_FILE)
    return {
        "status": state["status"],
        "hosts": {
            name: (host["status"], host["phase"], host["runc_sha256"])
            for name, host in state["hosts"].items()
        },
        "phases": {
            name: [e.phase for e in events if e.type == "host.phase" and e.host == name]
            for name in state["hosts"]
        },
    }


def apply(plan: Path, runs: Path, executor: str) -> int:
    return main(["apply", str(plan), "--yes", "--executor", executor, "--runs-dir", str(runs)])


def test_parity_with_ssh_and_cross_backend_rollback(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = clean_lab
    names = [host.name for host in lab.hosts]
    plan = tmp_path / "plan.json"
    make_plan(lab, artifact, plan)
    before = {name: snapshot(lab, name) for name in names}
    secret = "s3cr3t-token-never-in-artifacts"
    monkeypatch.setenv("RUNC_ROLLOUT_TEST_TOKEN", secret)
    after: dict[str, dict[str, Any]] = {}
    journals: dict[str, dict[str, Any]] = {}
    # The host each backend's run gets rolled back on by the other backend: a full, a light one.
    rolled = {"ssh": lab.full_hosts[0].name, "ansible": lab.light_hosts[0].name}
    for executor, other in (("ssh", "ansible"), ("ansible", "ssh")):
        lab.reset()
        runs = tmp_path / f"runs-{executor}"
        assert apply(plan, runs, executor) == ExitCode.OK
        after[executor] = {name: snapshot(lab, name) for name in names}
        journals[executor] = journal_view(runs)
        (run_dir,) = runs.iterdir()
        host = rolled[executor]
        code = main(["rollback", str(run_dir), "--host", host, "--yes", "--executor", other])
        assert code == ExitCode.OK
        back = snapshot(lab, host)
        assert back["record"] is not None and back["record"]["outcome"] == "rolled_back"
        for key in ("runc", "sysctl", "incident_file", "lock", "sbin"):
            assert back[key] == before[host][key], (executor, host, key)

    target = sha256(artifact)
    assert after["ssh"] == after["ansible"]
    for state in after["ansible"].values():
        assert state["runc"] == target and state["sysctl"] == "16384"
        assert state["lock"] == "free" and state["sbin"] == "runc"
        assert state["record"]["outcome"] == "done" and state["record"]["files"]
    assert journals["ssh"] == journals["ansible"]
    assert journals["ansible"]["status"] == "completed"
    assert set(journals["ansible"]["phases"][names[0]]) >= {"locked", "swapped", "verified"}

    artifacts = [p for p in (tmp_path / "runs-ansible").rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in artifacts)
    key = lab.private_key.read_text().strip().splitlines()[1]
    for path in artifacts:
        text = path.read_bytes().decode(errors="replace")
        assert secret not in text and key not in text, path
    jobs = list((tmp_path / "runs-ansible").glob("*/ansible/job-*"))
    assert len(jobs) == 2 and all(job.stat().st_mode & 0o077 == 0 for job in jobs)


def test_hanging_candidate_fails_and_rolls_back_like_ssh(
    clean_lab: LabFleet, tmp_path: Path, artifact: Path
) -> None:
    lab = clean_lab
    artifact.write_text(HANGING_RUNC)
    artifact.chmod(0o755)
    plan = tmp_path / "plan.json"
    canary, light = lab.full_hosts[0].name, lab.light_hosts[0].name
    # --no-probe: the probe would catch this candidate first; this is the container check's test.
    limit = f"{canary}:{light}"
    make_plan(lab, artifact, plan, "--verify-timeout", "8", "--no-probe", "--limit", limit)
    before = snapshot(lab, canary)
    journals = {}
    for executor in ("ssh", "ansible"):
        lab.reset()
        runs = tmp_path / f"runs-{executor}"
        started = time.monotonic()
        assert apply(plan, runs, executor) == ExitCode.BUDGET_EXCEEDED
        assert time.monotonic() - started < 120
        after = snapshot(lab, canary)
        for key in ("runc", "sysctl", "incident_file", "lock", "sbin"):
            assert after[key] == before[key], (executor, key)
        assert after["record"]["outcome"] == "rolled_back"
        left = lab.ssh(lab.host(canary), "docker ps -aq --filter name=runc-rollout-verify").stdout
        assert left.strip() == ""
        (run_dir,) = runs.iterdir()
        state = json.loads((run_dir / "state.json").read_text())
        assert "timed out after 8s" in state["hosts"][canary]["message"], executor
        journals[executor] = journal_view(runs)
    assert journals["ssh"] == journals["ansible"]
    assert journals["ansible"]["status"] == "halted"
    assert journals["ansible"]["hosts"][canary][:2] == ("failed", "finished")
    assert journals["ansible"]["hosts"][light][0] == "pending"


def playbook(lab: LabFleet, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(lab.inventory), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def recap_changed(output: str) -> dict[str, int]:
    changed = {}
    for line in output.split("PLAY RECAP")[-1].splitlines():
        if "changed=" in line:
            host, _, counts = line.partition(":")
            changed[host.strip()] = int(counts.split("changed=")[1].split()[0])
    return changed


def test_playbooks_standalone_check_mode_and_idempotency(
    clean_lab: LabFleet, artifact: Path
) -> None:
    lab = clean_lab
    light = lab.light_hosts[0].name
    variables = [
        "-e", f"runc_rollout_artifact={artifact}", "-e", f"runc_rollout_sha256={sha256(artifact)}",
    ]  # fmt: skip
    upgrade = str(PLAYBOOK_DIR / "upgrade.yml")
    listing = {host.name: lab.ssh(host, LISTING).stdout for host in lab.hosts}

    checked = playbook(lab, upgrade, "--check", "--diff", *variables, "-e", "runc_rollout_run_id=c")
    assert checked.returncode == 0, checked.stdout[-3000:]
    assert "would swap /usr/local/sbin/runc 1.0.0-rc93" in checked.stdout
    assert "+fs.pipe-user-pages-soft = 16384" in checked.stdout  # the sysctl.d diff
    assert {host.name: lab.ssh(host, LISTING).stdout for host in lab.hosts} == listing

    first = playbook(lab, upgrade, "--limit", light, *variables, "-e", "runc_rollout_run_id=one")
    assert first.returncode == 0, first.stdout[-3000:]
    assert recap_changed(first.stdout)[light] > 0
    assert snapshot(lab, light)["runc"] == sha256(artifact)
    for run_id, says in (("one", "already finished by this run"), ("two", "already at the target")):
        again = playbook(
            lab, upgrade, "--limit", light, *variables, "-e", f"runc_rollout_run_id={run_id}"
        )
        assert again.returncode == 0 and recap_changed(again.stdout) == {light: 0}, again.stdout
        assert says in again.stdout
    checked = playbook(
        lab, upgrade, "--check", "--limit", light, *variables, "-e", "runc_rollout_run_id=c"
    )
    assert recap_changed(checked.stdout) == {light: 0}

    rollback = str(PLAYBOOK_DIR / "rollback.yml")
    back = playbook(lab, rollback, "--limit", light)
    assert back.returncode == 0 and "rc93 bug" in back.stdout, back.stdout[-3000:]
    assert snapshot(lab, light)["runc"] != sha256(artifact)
    again = playbook(lab, rollback, "--limit", light)
    assert recap_changed(again.stdout) == {light: 0} and "already rolled back" in again.stdout


def test_a_changed_host_key_fails_the_host_untouched(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    lab = clean_lab
    victim, other = lab.light_hosts[0], lab.full_hosts[0]
    plan_path = tmp_path / "plan.json"
    make_plan(lab, artifact, plan_path, "--limit", victim.name)
    # A known_hosts that gives the victim's address another host's key.
    (line,) = [
        line
        for line in lab.known_hosts.read_text().splitlines()
        if line.split()[0] == other.address
    ]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(line.replace(other.address, victim.address, 1) + "\n")
    plan = load_plan(plan_path)
    hosts = [
        replace(host, ssh=replace(host.ssh, known_hosts_file=str(wrong)))
        for host in plan.waves[0].hosts
    ]
    waves = [plan.waves[0].model_copy(update={"hosts": hosts}), *plan.waves[1:]]
    plan_path.write_text(plan.model_copy(update={"waves": waves}).sealed().model_dump_json())
    before = snapshot(lab, victim.name)
    runs = tmp_path / "runs"
    assert apply(plan_path, runs, "ansible") == ExitCode.BUDGET_EXCEEDED
    (run_dir,) = runs.iterdir()
    host = json.loads((run_dir / "state.json").read_text())["hosts"][victim.name]
    assert host["status"] == "unreachable"
    assert "host key" in host["message"].lower() or "HOST IDENTIFICATION" in host["message"]
    assert snapshot(lab, victim.name) == before


def test_resume_after_sigkill_with_ansible(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    lab = clean_lab
    plan = tmp_path / "plan.json"
    make_plan(lab, artifact, plan)
    run_dir = apply_killed_after_swap(plan, tmp_path / "runs", "--executor", "ansible")
    events_path = run_dir / EVENTS_FILE
    time.sleep(1)  # its ansible-playbook dies with it (PR_SET_PDEATHSIG)
    sockets = Path(tempfile.gettempdir())
    assert list(sockets.glob(f"{CONTROL_PREFIX}*.*-*")), "the killed job left no socket folder"
    assert main(["resume", str(run_dir), "--yes", "--executor", "ansible"]) == ExitCode.OK
    # The killed apply could not remove its SSH socket folder: the resume's first job did.
    assert remove_stale_control_dirs(sockets) == []
    events, _ = read_events(events_path)
    assert json.loads((run_dir / "state.json").read_text())["status"] == "completed"
    target = sha256(artifact)
    for host in lab.hosts:
        swaps = [e for e in events if e.host == host.name and e.phase == "swapped"]
        assert len(swaps) <= 1, host.name
        state = snapshot(lab, host.name)
        assert state["runc"] == target and state["sysctl"] == "16384", host.name
        assert state["lock"] == "free" and state["sbin"] == "runc", host.name
        assert len(state["backups"].split()) == 1 and state["record"]["outcome"] == "done"


def test_apply_as_the_readme_shows_it_from_the_project_folder(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    """`plan` and `apply --executor ansible` run from the project folder as the README shows
    them: the default runs folder (relative, `RUNC_ROLLOUT_RUNS` unset), a relative
    `--known-hosts`, an inventory naming its key file relatively. Every path handed to an
    Ansible job must still name the same file from inside the job's own folder."""
    lab = clean_lab
    project = Path(__file__).resolve().parents[2]
    key = os.path.relpath(lab.private_key, project)
    known = os.path.relpath(lab.known_hosts, project)
    inventory = tmp_path / "hosts.yml"
    text = lab.inventory.read_text().replace(str(lab.private_key), key)
    inventory.write_text(re.sub(r"-o UserKnownHostsFile=\S+ ", "", text))
    assert key in inventory.read_text() and "UserKnownHostsFile" not in inventory.read_text()
    environment = {k: v for k, v in os.environ.items() if k != "RUNC_ROLLOUT_RUNS"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RUNC_ROLLOUT, *args, "--known-hosts", known],
            cwd=project,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
        )

    plan = tmp_path / "plan.json"
    planned = run(
        "plan", "-i", str(inventory), "--runc", str(artifact), "--sha256", sha256(artifact),
        "--gather", "--waves", "1,100%", "-o", str(plan), "--format", "json",
    )  # fmt: skip
    assert planned.returncode == ExitCode.OK, planned.stderr
    runs = project / "runs"
    before = set(runs.iterdir()) if runs.is_dir() else set()
    result = run("apply", str(plan), "--yes", "--executor", "ansible")
    created = set(runs.iterdir()) - before if runs.is_dir() else set()
    try:
        assert result.returncode == ExitCode.OK, result.stdout + result.stderr
        (run_dir,) = created
        state = json.loads((run_dir / "state.json").read_text())
        assert state["status"] == "completed"
        assert {host["status"] for host in state["hosts"].values()} == {"done"}
    finally:
        for path in created:
            shutil.rmtree(path)
