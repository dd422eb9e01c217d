"""plan --gather -> apply -> status -> rollback, on real lab hosts."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.cli.app import main
from orchestrator.diagnose.facts_report import gather_fleet
from orchestrator.errors import ExitCode
from orchestrator.inventory.read import load_inventory
from orchestrator.lab.hostdef import INCIDENT_SYSCTL_VALUE
from orchestrator.models import HostFacts
from orchestrator.plan.planner import hosts_to_plan
from orchestrator.run.journal import EVENTS_FILE, read_events
from tests.conftest import HANGING_RUNC, RUNC_ROLLOUT, LabFleet

INCIDENT_FILE = "/etc/sysctl.d/90-runc-incident.conf"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def host_state(lab: LabFleet, name: str) -> dict[str, str]:
    """What matters on a host, read over real ssh."""
    out = lab.ssh(
        lab.host(name),
        "sha256sum /usr/local/sbin/runc | cut -d' ' -f1; cat /proc/sys/fs/pipe-user-pages-soft; "
        f"sha256sum {INCIDENT_FILE} | cut -d' ' -f1; "
        "ls /var/lib/runc-rollout/backup 2>/dev/null | tr '\\n' ' '; echo; "
        "test -d /var/lib/runc-rollout/lock && echo locked || echo free; "
        "ls -a /usr/local/sbin | grep -c runc-rollout || true",
    ).stdout.splitlines()
    keys = ("runc", "sysctl", "incident_file", "backups", "lock", "temp_files")
    return dict(zip(keys, [line.strip() for line in out] + [""] * 6, strict=False))


def apply_killed_after_swap(plan: Path, runs: Path, *options: str) -> Path:
    """Run `apply PLAN` in its own process, SIGKILL it once the journal shows a host swapped,
    and return the run directory."""
    argv = [RUNC_ROLLOUT, "apply", str(plan), "--yes"]
    proc = subprocess.Popen(
        [*argv, "--runs-dir", str(runs), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    events_path: Path | None = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(runs.glob("*/" + EVENTS_FILE)) if runs.exists() else []
        if found and '"swapped"' in found[0].read_text():
            events_path = found[0]
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert events_path is not None, "apply never reached a swap"
    return events_path.parent


def daemon_pids(lab: LabFleet) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    """Each full host's dockerd and containerd (pid, start ticks), from the facts."""
    targets = hosts_to_plan(load_inventory([lab.inventory]), None)
    with SshExecutor() as executor:
        facts = gather_fleet(executor, targets, concurrency=4)
    found = {}
    for host in lab.full_hosts:
        result = facts[host.name]
        assert isinstance(result, HostFacts)
        assert result.dockerd is not None and result.containerd is not None
        found[host.name] = (
            (result.dockerd.pid, result.dockerd.start_ticks),
            (result.containerd.pid, result.containerd.start_ticks),
        )
    return found


def make_plan(lab: LabFleet, artifact: Path, plan: Path, *extra: str) -> None:
    code = main(
        [
            "plan", "-i", str(lab.inventory), "--runc", str(artifact),
            "--sha256", sha256(artifact), "--gather", "--domain-key", "zone",
            "--waves", "1,100%", "-o", str(plan), "--format", "json", *extra,
        ]
    )  # fmt: skip
    assert code == ExitCode.OK


def test_apply_status_and_rollback(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = clean_lab
    names = [host.name for host in lab.hosts]
    before = {name: host_state(lab, name) for name in names}
    pids = daemon_pids(lab)
    plan = tmp_path / "plan.json"
    make_plan(lab, artifact, plan)
    assert {h["action"] for w in json.loads(plan.read_text())["waves"] for h in w["hosts"]} == {
        "swap"
    }
    runs = tmp_path / "runs"
    assert main(["apply", str(plan), "--yes", "--runs-dir", str(runs)]) == ExitCode.OK
    target = sha256(artifact)
    for name in names:
        after = host_state(lab, name)
        assert after["runc"] == target, name
        assert after["sysctl"] == "16384", name
        assert after["backups"].split() == [before[name]["runc"]], name
        assert after["lock"] == "free" and after["temp_files"] == "0", name
        content = lab.ssh(lab.host(name), f"cat {INCIDENT_FILE}").stdout
        assert "fs.pipe-user-pages-soft = 16384" in content
    assert daemon_pids(lab) == pids  # nothing restarted
    for host in lab.full_hosts:
        lab.ssh(host, "docker exec lab-keepalive true")
        version = lab.ssh(host, "docker info --format '{{.RuncCommit.ID}}'").stdout
        assert "1.1.5" in version

    (run_dir,) = runs.iterdir()
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "completed"
    assert {h["status"] for h in state["hosts"].values()} == {"done"}
    for host in lab.full_hosts:  # the outcome names the container docker exec proved it in
        assert (
            state["hosts"][host.name]["message"] == "docker exec checked in container lab-keepalive"
        )
    assert main(["status", run_dir.name, "--runs-dir", str(runs)]) == ExitCode.OK

    # Roll back one host from the journal; then another from its own record alone.
    first, second = names[0], names[1]
    assert main(["rollback", str(run_dir), "--host", first, "--yes"]) == ExitCode.OK
    assert host_state(lab, first) | {"backups": ""} == before[first] | {"backups": ""}
    assert main(["rollback", "-i", str(lab.inventory), "--limit", second, "--yes"]) == 0
    assert host_state(lab, second) | {"backups": ""} == before[second] | {"backups": ""}
    assert host_state(lab, names[2])["runc"] == target  # the others keep the new runc

    # A host whose record is gone is not "never changed": the rollback fails and says so.
    third = names[2]
    lab.ssh(lab.host(third), "rm /var/lib/runc-rollout/record.json")
    capsys.readouterr()
    assert main(["rollback", str(run_dir), "--host", third, "--yes"]) == ExitCode.HOST_FAILED
    assert "the journal says this run swapped it" in capsys.readouterr().out
    assert host_state(lab, third)["runc"] == target


def test_hanging_candidate_is_rolled_back_and_halts(
    clean_lab: LabFleet, tmp_path: Path, artifact: Path
) -> None:
    lab = clean_lab
    artifact.write_text(HANGING_RUNC)
    artifact.chmod(0o755)
    plan = tmp_path / "plan.json"
    canary = lab.full_hosts[0].name
    make_plan(  # --no-probe: the probe would catch it first; this tests the container check
        lab,
        artifact,
        plan,
        "--verify-timeout",
        "8",
        "--no-probe",
        "--limit",
        f"{canary}:{lab.light_hosts[0].name}",
    )
    before = host_state(lab, canary)
    runs = tmp_path / "runs"
    started = time.monotonic()
    code = main(["apply", str(plan), "--yes", "--runs-dir", str(runs)])
    assert code == ExitCode.BUDGET_EXCEEDED
    assert time.monotonic() - started < 120
    after = host_state(lab, canary)
    assert after["runc"] == before["runc"] and after["sysctl"] == "163840"
    assert after["lock"] == "free" and after["temp_files"] == "0"
    left = lab.ssh(lab.host(canary), "docker ps -aq --filter name=runc-rollout-verify").stdout
    assert left.strip() == ""
    (run_dir,) = runs.iterdir()
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "halted"
    assert state["hosts"][canary]["status"] == "failed"
    assert "timed out" in state["hosts"][canary]["message"]
    assert state["hosts"][lab.light_hosts[0].name]["status"] == "pending"  # no further wave started


def test_edited_plan_is_refused(clean_lab: LabFleet, artifact: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    make_plan(clean_lab, artifact, plan)
    body = json.loads(plan.read_text())
    body["options"]["max_failures"] = "50%"
    plan.write_text(json.dumps(body))
    assert main(["apply", str(plan), "--yes", "--runs-dir", str(tmp_path)]) == ExitCode.BAD_INPUT
    assert host_state(clean_lab, clean_lab.hosts[0].name)["lock"] == "free"


def test_dry_run_changes_nothing(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = clean_lab
    plan = tmp_path / "plan.json"
    make_plan(lab, artifact, plan)
    listing = (
        "find /usr/local/sbin /etc/sysctl.d /etc/docker /var/lib/runc-rollout -printf "
        "'%p %s %T@ %m\\n' 2>/dev/null | sort; cat /proc/sys/fs/pipe-user-pages-soft; "
        "sha256sum /usr/local/sbin/* /etc/sysctl.d/* 2>/dev/null"
    )
    before = {h.name: (host_state(lab, h.name), lab.ssh(h, listing).stdout) for h in lab.hosts}
    capsys.readouterr()
    assert main(["apply", str(plan), "--check", "--diff"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert all(f"{h.name}: swap /usr/local/sbin/runc" in out for h in lab.hosts)
    # --diff: each change as before and after, once per host.
    assert out.count("  -runc 1.0.0-rc93 sha256 ") == len(lab.hosts)
    assert out.count(f"  -fs.pipe-user-pages-soft = {INCIDENT_SYSCTL_VALUE}") == len(lab.hosts)
    assert out.count("  +fs.pipe-user-pages-soft = 16384") == len(lab.hosts)
    assert {h.name: (host_state(lab, h.name), lab.ssh(h, listing).stdout) for h in lab.hosts} == (
        before
    )


def test_resume_after_sigkill_finishes_without_redoing(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    lab = clean_lab
    plan = tmp_path / "plan.json"
    make_plan(lab, artifact, plan)
    run_dir = apply_killed_after_swap(plan, tmp_path / "runs")
    events_path = run_dir / EVENTS_FILE
    assert main(["resume", str(run_dir), "--yes"]) == ExitCode.OK
    events, _problems = read_events(events_path)
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "completed"
    target = sha256(artifact)
    for host in lab.hosts:
        swaps = [e for e in events if e.host == host.name and e.phase == "swapped"]
        assert len(swaps) <= 1, host.name
        after = host_state(lab, host.name)
        assert after["runc"] == target and after["sysctl"] == "16384"
        assert after["lock"] == "free" and after["temp_files"] == "0"
        assert len(after["backups"].split()) == 1
