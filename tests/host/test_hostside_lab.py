"""The host side on lab hosts unlike the build machine: three whose userland is busybox (sh,
awk, sed, coreutils are busybox's applets; util-linux stays; no Python; root logs in to
busybox's sh), one full, one containerd-only (a Kubernetes node without dockershim), one light;
and one whose runc's folder is mounted read-only, as /usr on Flatcar and Fedora CoreOS.

On the busybox hosts, through both executors: audit --probe decides the rc93 finding (docker
and bundle paths), unstick frees a really stuck runc init, nothing runs Python;
apply from the rc93 build to a fixed runc passes with the probe's outcome "passed", and the rc93
build as a candidate is caught by the probe and rolled back. The read-only host is held back by
plan, with the reason and what to do instead, and nothing on it changes; the facts'
write-access test alone would hold it back too, and writes nothing on a writable host."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.host.facts import facts_script, parse_facts
from orchestrator.lab import hostdef
from orchestrator.lab import rc93 as lab_rc93
from tests.conftest import LabFleet, running_lab
from tests.host.test_probe_lab import (
    AUDIT_TIMEOUT,
    PROBE_TIMEOUT,
    _audit_probe,
    _left_behind,
    _roll_out,
    python_tripwire,
)
from tests.run.test_apply_lab import host_state, sha256

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def odd_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    """lab-1 full, lab-2 containerd-only and lab-3 light with a busybox userland; lab-4 light,
    its runc read-only."""
    base = tmp_path_factory.mktemp("hostside-lab")
    with running_lab(base, 4, 1, containerd=1, busybox=3, read_only=1) as lab:
        yield lab


@pytest.fixture
def clean_odd_lab(odd_lab: LabFleet) -> Iterator[LabFleet]:
    odd_lab.reset()
    yield odd_lab
    odd_lab.reset()


def test_the_busybox_hosts_userland_is_busybox(odd_lab: LabFleet) -> None:
    assert [h.kind for h in odd_lab.hosts] == ["full", "containerd", "light", "light"]
    for host in odd_lab.hosts[:3]:
        said = odd_lab.ssh(
            host,
            "cmp -s /proc/$$/exe /bin/busybox && echo busybox-sh; "
            "cat --help 2>&1 | head -n 1; awk 2>&1 | head -n 1; "
            "sed --help 2>&1 | head -n 1; python3 -c 'print(1)' 2>/dev/null || echo no-python",
        ).stdout.splitlines()
        assert said[0] == "busybox-sh", said  # root's login shell: busybox's sh
        assert all(line.startswith("BusyBox") for line in said[1:4]), said
        assert said[4] == "no-python", said
    # util-linux stays: the pipe holder needs its setpriv (by its path: busybox's sh runs its
    # own applet for a bare `setpriv`, which cannot change uids)
    assert "--reuid" in odd_lab.ssh(odd_lab.hosts[0], "/usr/bin/setpriv --help").stdout


def test_a_read_only_runc_is_held_back_by_plan(
    clean_odd_lab: LabFleet, artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = clean_odd_lab
    host = lab.hosts[3]
    touched = lab.ssh(host, f"touch {hostdef.HOST_RUNC}.x 2>&1; echo rc=$?").stdout
    assert "Read-only file system" in touched and "rc=1" in touched, touched
    facts = lab.facts(host)
    assert facts.runc is not None and facts.runc.read_only_mount == "/usr/local/sbin"
    assert all(
        h.runc is not None and h.runc.read_only_mount is None for h in map(lab.facts, lab.hosts[:3])
    )
    # The write-access test alone says so too (were the mount table to say rw), and writes nothing.
    script = facts_script("0123456789abcdef")
    said = lab.ssh(host, script).stdout
    assert "write_access=" in said and "Read-only file system" in said, said
    misread = parse_facts(host.name, said.replace("mount=ro ", "mount=rw "))
    assert misread.runc is not None and misread.runc.read_only_mount == "/usr/local/sbin"
    writable = lab.hosts[2]
    folder = hostdef.HOST_RUNC.rpartition("/")[0]
    listing = f"stat -c '%y %z' {folder}; ls -A {folder}"  # nothing in it, nor the folder, changes
    before_listing = lab.ssh(writable, listing).stdout
    assert "write_access=ok" in lab.ssh(writable, script).stdout
    assert lab.ssh(writable, listing).stdout == before_listing

    before = host_state(lab, host.name)
    plan = tmp_path / "plan.json"
    argv = ["plan", "-i", str(lab.inventory), "--runc", str(artifact)]
    argv += ["--sha256", sha256(artifact), "--gather", "-o", str(plan), "--format", "json"]
    capsys.readouterr()
    assert main(argv) == ExitCode.OK
    body = json.loads(plan.read_text())
    skipped = {item["name"]: item["reason"] for item in body["skipped"]}
    planned = {h["name"] for wave in body["waves"] for h in wave["hosts"]}
    assert planned == {h.name for h in lab.hosts[:3]} and set(skipped) == {host.name}
    assert (
        "is on a read-only file system (/usr/local/sbin is mounted read-only" in skipped[host.name]
    )
    assert "update the OS image" in skipped[host.name]
    assert main(["apply", str(plan), "--yes", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert host_state(lab, host.name) == before


def _paths(lab: LabFleet) -> dict[str, str]:
    """The busybox hosts, by the path their probe takes."""
    return {
        lab.hosts[0].name: "docker",
        lab.hosts[1].name: "containerd",
        lab.hosts[2].name: "bundle",
    }


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_audit_probe_and_unstick_on_busybox_hosts(
    clean_odd_lab: LabFleet, capsys: pytest.CaptureFixture[str], executor: str
) -> None:
    lab = clean_odd_lab
    full = lab.hosts[0]
    via = ("--executor", executor)
    paths = _paths(lab)
    with python_tripwire(lab, lab.hosts[:3]) as python_calls:
        hosts = _audit_probe(lab, capsys, ":".join(paths), *via, timeout=AUDIT_TIMEOUT)
        for name, method in paths.items():
            probe = hosts[name]["probe"]
            assert (probe["outcome"], probe["method"]) == ("hung", method), (name, probe)
            found = {f["id"]: f["detail"] for f in hosts[name]["findings"]}
            assert "hung in" in found["runc-rc93-pipe-hang"]
        assert _left_behind(lab) == []

        seed = lab.stick(full)
        argv = ["unstick", "-i", str(lab.inventory), "--limit", full.name, "--yes", "--json"]
        code = main([*argv, *via])
        report = json.loads(capsys.readouterr().out)
        assert code == ExitCode.OK, report
        freed = {p["pid"]: p for p in report["hosts"][full.name]["processes"]}[seed.pid]
        assert (freed["action"], freed["outcome"]) == ("drained", "exited"), freed
        assert python_calls() == []


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_apply_with_the_probe_on_busybox_hosts(
    clean_odd_lab: LabFleet, artifact: Path, tmp_path: Path, executor: str
) -> None:
    """Debian's runc over rc93: the probe passes (docker, containerd, bundle); then rc93 over
    Debian's: the probe catches it, each host is rolled back."""
    lab = clean_odd_lab
    paths = _paths(lab)
    code, hosts = _roll_out(lab, artifact, tmp_path / "fix", "--executor", executor)
    assert code == ExitCode.OK, hosts
    for name, method in paths.items():
        probe = hosts[name]["probe"]
        assert isinstance(probe, dict)
        assert (probe["outcome"], probe["method"]) == ("passed", method), (name, probe)
        assert float(probe["seconds"]) < float(PROBE_TIMEOUT)
        print(f"probe on busybox {name} ({method}, {executor}): passed in {probe['seconds']} s")
    fixed = {name: host_state(lab, name) for name in paths}

    rc93 = tmp_path / "rc93" / "runc"
    rc93.parent.mkdir()
    shutil.copy2(lab_rc93.ensure_rc93_runc().path, rc93)
    code, hosts = _roll_out(lab, rc93, tmp_path / "bug", "--executor", executor)
    assert code == ExitCode.BUDGET_EXCEEDED, hosts
    outcomes = {}
    for name in paths:
        probe = hosts[name]["probe"]
        assert isinstance(probe, dict)
        outcomes[name] = probe["outcome"]
        assert hosts[name]["status"] == "failed", (name, probe)
        assert "rolled back" in str(hosts[name]["message"])
        assert host_state(lab, name) | {"backups": ""} == fixed[name] | {"backups": ""}, name
    assert _left_behind(lab) == []
    assert outcomes == dict.fromkeys(paths, "hung"), outcomes
