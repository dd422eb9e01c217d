"""The incident probe on real lab hosts, with the real bug-bearing runc.

conftest's `no_python_lab`, one host per path: a full host (docker), a containerd-only host
(containerd with CRI and no dockerd, as a Kubernetes 1.24+ node: `ctr run`), a light host (an OCI
bundle).
Debian's runc goes out over the lab's rc93 and the probe passes on each path; then the rc93 build
is rolled out over Debian's runc and the probe hangs on each path, every host is rolled back, the
budget halts the run, and nothing of the probe is left behind: no process of its uid, no
container, no stuck `runc init`, the sysctl as it was. The same through Ansible.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.lab import rc93
from orchestrator.lab.hostdef import HOST_RUNC
from orchestrator.lab.records import LabHost
from tests.conftest import LabFleet
from tests.run.test_apply_lab import host_state, sha256

pytestmark = pytest.mark.lab

PROBE_TIMEOUT = "8"
# A probe that hangs is told at its timeout, and on a loaded machine a container may take longer
# than PROBE_TIMEOUT to reach its runc init: the audits of several paths at once get longer.
AUDIT_TIMEOUT = "20"


@pytest.fixture(scope="module")
def rc93_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bug-bearing build as an artifact (a copy: the cache is never handed out)."""
    path = tmp_path_factory.mktemp("rc93") / "runc"
    shutil.copy2(rc93.ensure_rc93_runc().path, path)
    return path


def _roll_out(
    lab: LabFleet, artifact: Path, work: Path, *options: str
) -> tuple[int, dict[str, dict[str, object]]]:
    """Plan `artifact` over the whole lab in one wave and apply it; the exit code and hosts."""
    plan = work / "plan.json"
    code = main(
        [
            "plan", "-i", str(lab.inventory),
            "--runc", str(artifact), "--sha256", sha256(artifact), "--gather",
            "--waves", "100%", "--probe-timeout", PROBE_TIMEOUT, "--verify-timeout", "30",
            # Accepted, so the hosts run it: the probe, not the version, must catch the bug.
            "--accept-advisory", "runc-rc93-pipe-hang",
            "-o", str(plan), "--format", "json",
        ]
    )  # fmt: skip
    assert code == ExitCode.OK
    runs = work / "runs"
    code = main(["apply", str(plan), "--yes", "--runs-dir", str(runs), *options])
    (run_dir,) = runs.iterdir()
    return code, json.loads((run_dir / "state.json").read_text())["hosts"]


PYTHONS = ("python3", "python", "python2")
_TRIPWIRE_DIR = "/usr/local/sbin"  # each host's own folder, first on its PATH: found first
_TRIPWIRE_LOG = f"{_TRIPWIRE_DIR}/.python-ran"


@contextmanager
def python_tripwire(lab: LabFleet, hosts: list[LabHost]) -> Iterator[Callable[[], list[str]]]:
    """A `python3` (and `python`, `python2`) first on each host's PATH that notes every call
    and fails: on a host without Python a call would fail, perhaps unnoticed; with this, every
    one is seen. Yields what reads the calls ("HOST: argv"). The tripwire is checked first:
    a call from a login shell is seen."""
    wire = f'#!/bin/sh\necho "$0 $*" >> {_TRIPWIRE_LOG}\nexit 127\n'
    paths = " ".join(f"{_TRIPWIRE_DIR}/{name}" for name in PYTHONS)
    for host in hosts:
        lab.ssh(
            host, f"for p in {paths}; do printf %b {shlex.quote(wire)} > $p; chmod 755 $p; done"
        )
        lab.ssh(host, "python3 -c 'print(1)'", check=False)

    def calls() -> list[str]:
        return [
            f"{host.name}: {line}"
            for host in hosts
            for line in lab.ssh(
                host, f"cat {_TRIPWIRE_LOG} 2>/dev/null || true"
            ).stdout.splitlines()
        ]

    try:
        assert [call.split(": ")[0] for call in calls()] == [h.name for h in hosts], calls()
        for host in hosts:
            lab.ssh(host, f"rm -f {_TRIPWIRE_LOG}")
        yield calls
    finally:
        for host in hosts:
            lab.ssh(host, f"rm -f {paths} {_TRIPWIRE_LOG}", check=False)


def _left_behind(lab: LabFleet) -> list[str]:
    """Anything of the probe still there: a process of a probe uid, a probe container, a probe
    directory, a stuck `runc init` on a lab host (as its facts see it: other labs on this
    machine may have stuck ones of their own)."""
    # A process the probe killed as it ended may take a moment to exit on a loaded machine.
    deadline = time.monotonic() + 10
    while lab.probe_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    found = [f"process {pid} of a probe uid" for pid in lab.probe_processes()]
    for host in lab.hosts:
        out = lab.ssh(host, "ls -d /var/lib/runc-rollout/probe.* 2>/dev/null || true").stdout
        found += [f"{host.name}: {path}" for path in out.split()]
    for host in lab.full_hosts:
        names = lab.ssh(host, "docker ps -a --format '{{.Names}}'").stdout.split()
        found += [f"{host.name}: container {n}" for n in names if "probe" in n]
    for host in lab.full_hosts + lab.containerd_hosts:
        tasks = lab.ssh(host, "ctr -n runc-rollout containers ls -q").stdout.split()
        found += [f"{host.name}: ctr container {t}" for t in tasks]
        found += [f"{host.name}: containerd-shim {pid}" for pid in _probe_shims(lab, host)]
    for host in lab.hosts:
        found += [f"{host.name}: stuck runc init {p.pid}" for p in lab.facts(host).stuck]
    return found


def _probe_shims(lab: LabFleet, host: LabHost) -> list[str]:
    """The host's containerd shims of probe containers (its mount namespace's: every lab host
    sees the machine's processes). One outlives its container when its runc was killed under it."""
    script = (
        "me=$(readlink /proc/self/ns/mnt); "
        "for f in $(grep -l -a -F -e runc-rollout-probe- /proc/[0-9]*/cmdline 2>/dev/null); do "
        'd=${f%/cmdline}; case "$(cat $d/comm 2>/dev/null)" in containerd-shim*) ;; '
        "*) continue;; esac; "
        '[ "$(readlink $d/ns/mnt 2>/dev/null)" = "$me" ] && echo ${d#/proc/}; done; true'
    )
    return lab.ssh(host, script).stdout.split()


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_probe_passes_the_fix_and_refuses_rc93_on_every_path(
    clean_no_python_lab: LabFleet,
    artifact: Path,
    rc93_artifact: Path,
    tmp_path: Path,
    executor: str,
) -> None:
    lab = clean_no_python_lab
    via = ["--executor", executor]
    paths = {
        lab.full_hosts[0].name: "docker",
        lab.containerd_hosts[0].name: "containerd",
        lab.light_hosts[0].name: "bundle",
    }
    # Without dockerd the runtime's runc is containerd's CRI BinaryName: the lab's rc93.
    facts = lab.facts(lab.containerd_hosts[0])
    assert facts.dockerd is None and facts.containerd is not None
    assert facts.runc is not None and facts.runc.path == HOST_RUNC
    assert (facts.runc.version, facts.runc_source) == (rc93.VERSION, "containerd CRI BinaryName")

    # Debian's runc over the lab's rc93: the probe passes on each path.
    code, hosts = _roll_out(lab, artifact, tmp_path / "fix", *via)
    assert code == ExitCode.OK, hosts
    for name, method in paths.items():
        probe = hosts[name]["probe"]
        assert isinstance(probe, dict)
        assert (probe["outcome"], probe["method"]) == ("passed", method), (name, probe)
        assert float(probe["seconds"]) < float(PROBE_TIMEOUT)
        print(f"probe without Python on {name} ({method}, {executor}): {probe['seconds']} s")
    fixed = {name: host_state(lab, name) for name in paths}

    # The bug-bearing runc over Debian's: every probe hangs, every host goes back.
    code, hosts = _roll_out(lab, rc93_artifact, tmp_path / "bug", *via)
    assert code == ExitCode.BUDGET_EXCEEDED, hosts
    for name, method in paths.items():
        state = hosts[name]
        probe = state["probe"]
        assert isinstance(probe, dict)
        assert state["status"] == "failed", (name, state)
        assert (probe["outcome"], probe["method"]) == ("hung", method), (name, probe)
        assert "pipe_write" in str(probe["detail"]), probe
        assert f"probe ({method}): hung in" in str(state["message"])
        assert "rolled back" in str(state["message"])
        after = host_state(lab, name)
        assert after | {"backups": ""} == fixed[name] | {"backups": ""}, name  # Debian's, 16384
    assert _left_behind(lab) == []


def _audit_probe(
    lab: LabFleet,
    capsys: pytest.CaptureFixture[str],
    limit: str,
    *options: str,
    timeout: str = PROBE_TIMEOUT,
) -> dict[str, dict[str, Any]]:
    capsys.readouterr()
    argv = ["audit", "-i", str(lab.inventory), "--limit", limit, "--probe", *options]
    assert main([*argv, "--probe-timeout", timeout, "--format", "json"]) == ExitCode.OK
    return {host["host"]: host for host in json.loads(capsys.readouterr().out)["hosts"]}


def test_audit_probe_decides_by_what_the_runc_does(
    clean_no_python_lab: LabFleet,
    artifact: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lab = clean_no_python_lab
    bug, fixed = lab.full_hosts[0].name, lab.light_hosts[0].name
    hosts = _audit_probe(lab, capsys, f"{bug}:{fixed}")
    for name in (bug, fixed):
        assert hosts[name]["probe"]["outcome"] == "hung", hosts[name]["probe"]
        found = {f["id"]: f["detail"] for f in hosts[name]["findings"]}
        assert "hung in" in found["runc-rc93-pipe-hang"]

    plan = tmp_path / "plan.json"
    argv = ["plan", "-i", str(lab.inventory), "--limit", fixed, "--runc", str(artifact)]
    argv += ["--sha256", sha256(artifact), "--gather", "-o", str(plan), "--format", "json"]
    assert main(argv) == ExitCode.OK
    assert main(["apply", str(plan), "--yes", "--runs-dir", str(tmp_path / "runs")]) == 0

    hosts = _audit_probe(lab, capsys, f"{bug}:{fixed}")
    assert hosts[bug]["probe"]["outcome"] == "hung"
    assert hosts[fixed]["probe"]["outcome"] == "passed"
    assert "runc-rc93-pipe-hang" not in {f["id"] for f in hosts[fixed]["findings"]}
    assert _left_behind(lab) == []


def test_diagnostics_through_ansible_run_no_python_on_the_hosts(
    clean_no_python_lab: LabFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit --probe` decides the rc93 finding on every path and `unstick` frees a really hung
    runc init, both with --executor ansible; nothing on the hosts ran Python (nor did the same
    over SSH)."""
    lab = clean_no_python_lab
    via = ("--executor", "ansible")
    names = {
        lab.full_hosts[0].name: "docker",
        lab.containerd_hosts[0].name: "containerd",
        lab.light_hosts[0].name: "bundle",
    }
    with python_tripwire(lab, lab.hosts) as python_calls:
        for executor in ("ansible", "ssh"):
            began = time.monotonic()
            # (a hang is only told at the timeout: the machine's load must not pass for one)
            hosts = _audit_probe(
                lab, capsys, ":".join(names), "--executor", executor, timeout=AUDIT_TIMEOUT
            )
            print(f"audit --probe --executor {executor}: {time.monotonic() - began:.1f} s")
            for name, method in names.items():
                probe = hosts[name]["probe"]
                assert (probe["outcome"], probe["method"]) == ("hung", method), (name, probe)
                found = {f["id"]: f["detail"] for f in hosts[name]["findings"]}
                assert "hung in" in found["runc-rc93-pipe-hang"], found
        assert _left_behind(lab) == []

        full = lab.full_hosts[0]
        seed = lab.stick(full)
        argv = ["unstick", "-i", str(lab.inventory), "--limit", full.name, "--json", *via]
        capsys.readouterr()
        assert main(argv) == ExitCode.OK
        dry = json.loads(capsys.readouterr().out)["hosts"][full.name]["processes"]
        assert {p["pid"]: p["action"] for p in dry}[seed.pid] == "would drain"
        assert main([*argv, "--yes"]) == ExitCode.OK
        report = json.loads(capsys.readouterr().out)
        freed = {p["pid"]: p for p in report["hosts"][full.name]["processes"]}[seed.pid]
        assert (freed["action"], freed["outcome"]) == ("drained", "exited"), freed

        assert main(["facts", "-i", str(lab.inventory), "--format", "json", *via]) == 0
        facts = json.loads(capsys.readouterr().out)
        assert set(facts["hosts"]) == {h.name for h in lab.hosts} and facts["errors"] == {}
        assert python_calls() == []
