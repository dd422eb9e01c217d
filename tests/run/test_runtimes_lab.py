"""Hosts whose Docker default runtime is not plain runc, on real lab hosts.

lab-01 is a GPU node as NVIDIA documents one: Docker's default runtime is NVIDIA's Container
Runtime, a shim. The lab's shim follows the real one's documented behaviour (see
orchestrator/lab/runtimes.py): `--version` prints its banner, then the wrapped runc's; it reads
/etc/nvidia-container-runtime/config.toml for the runtime to exec (first found on PATH: the
host's rc93 in /usr/local/sbin); on `create` it adds its prestart hook to the OCI spec; then it
execs that runc. lab-02's default runtime is Debian's crun, which wraps no runc. lab-03 runs
Docker's containers with /usr/local/sbin/runc and containerd CRI's (kubelet's) with another
file, /usr/local/bin/runc, named by CRI's BinaryName. lab-04's default runtime is gVisor's runsc
(Debian 12's package), which wraps no runc either.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.cli.app import main
from orchestrator.diagnose.audit import AuditReport
from orchestrator.errors import ExitCode
from orchestrator.lab import runtimes
from orchestrator.lab.invariant import check_runs
from tests.conftest import LabFleet, running_lab

SHIM_HOST, CRUN_HOST, CRI_HOST, RUNSC_HOST = "lab-01", "lab-02", "lab-03", "lab-04"
RUNC = "/usr/local/sbin/runc"
WATCHED = (
    runtimes.SHIM,
    runtimes.HOOK,
    runtimes.CRUN,
    runtimes.RUNSC,
    RUNC,
    runtimes.CRI_RUNC,
    "/usr/sbin/runc",
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    """This module's lab (conftest's `clean_lab` resets it around each test)."""
    if not os.access(runtimes.CRUN, os.X_OK):
        pytest.skip("lab unavailable: Debian's crun is not installed (scripts/setup.sh does)")
    if not os.access(runtimes.RUNSC, os.X_OK):
        pytest.skip("lab unavailable: Debian's runsc is not installed (scripts/setup.sh does)")
    base = tmp_path_factory.mktemp("runtimes")
    with running_lab(base, 4, 4, runtimes=("nvidia", "crun", "cri", "runsc")) as fleet:
        yield fleet


@pytest.fixture(params=["ssh", "ansible"])
def executor(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sums(lab: LabFleet, name: str) -> dict[str, str]:
    """sha256 of every runtime file that matters, as the host sees it (absent: "")."""
    out = lab.ssh(
        lab.host(name),
        " ".join(f"(sha256sum {path} 2>/dev/null || echo - {path});" for path in WATCHED),
    ).stdout
    found = {path: digest for digest, path in (line.split() for line in out.splitlines())}
    return {path: ("" if found[path] == "-" else found[path]) for path in WATCHED}


def hook_ran_for_a_new_container(lab: LabFleet) -> bool:
    """A container started through Docker's default runtime got the shim's prestart hook."""
    host = lab.host(SHIM_HOST)
    lab.ssh(
        host,
        "rm -f /run/hook.cid; docker run --rm --cidfile /run/hook.cid --network none "
        "--security-opt no-new-privileges lab/busybox:latest true",
    )
    cid = lab.ssh(host, "cat /run/hook.cid").stdout.strip()
    log = lab.ssh(host, f"cat {runtimes.HOOK_LOG}").stdout.splitlines()
    return len(cid) == 64 and f"prestart {cid}" in log


def daemon_logs(lab: LabFleet, name: str) -> str:
    """What dockerd and containerd last logged on a host (why a container failed)."""
    return lab.ssh(lab.host(name), "tail -n 15 /var/log/dockerd.log /var/log/containerd.log").stdout


def audit(lab: LabFleet, capsys: pytest.CaptureFixture[str], *extra: str) -> AuditReport:
    capsys.readouterr()
    main(["audit", "-i", str(lab.inventory), "--format", "json", *extra])
    return AuditReport.model_validate_json(capsys.readouterr().out)


def test_audit_finds_rc93_behind_the_shim_and_says_crun_uses_no_runc(
    clean_lab: LabFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = clean_lab
    report = audit(lab, capsys, "--probe")
    hosts = {host.host: host for host in report.hosts}
    gpu = hosts[SHIM_HOST]
    assert (gpu.runc_path, gpu.runc_version, gpu.runc_via) == (
        "/usr/local/sbin/runc",
        "1.0.0-rc93",
        runtimes.SHIM,
    )
    assert "runc-rc93-pipe-hang" in [finding.id for finding in gpu.findings]
    # The probe's container went through the shim, and the runc behind it hung.
    assert gpu.probe is not None and gpu.probe.outcome == "hung", gpu.probe
    for name, what in ((CRUN_HOST, "crun"), (RUNSC_HOST, "runsc")):
        other = hosts[name]
        assert other.runc_path is None and other.probe is None
        (not_used,) = [finding for finding in other.findings if finding.id == "runc-not-used"]
        assert not_used.detail.startswith(f"default runtime {what}: runc not used by default")
        assert "runc-not-found" not in [finding.id for finding in other.findings]
    kubelets = hosts[CRI_HOST]
    assert [text.split()[0] for text in kubelets.also_runc] == [runtimes.CRI_RUNC]
    # Each runc the runtimes execute is probed: Docker's through docker, CRI's through ctr.
    assert kubelets.probe is not None and kubelets.probe.outcome == "hung", kubelets.probe
    (cri_probe,) = kubelets.also_probes.items()
    assert cri_probe[0] == runtimes.CRI_RUNC
    assert (cri_probe[1].method, cri_probe[1].outcome) == ("containerd", "hung"), cri_probe
    (hang,) = [finding for finding in kubelets.findings if finding.id == "runc-rc93-pipe-hang"]
    assert f"also {runtimes.CRI_RUNC} (containerd CRI BinaryName)" in hang.detail
    assert lab.probe_processes() == []


def test_apply_swaps_the_runc_behind_the_shim_and_leaves_shim_and_crun(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, executor: str
) -> None:
    lab = clean_lab
    before = {name: sums(lab, name) for name in (SHIM_HOST, CRUN_HOST)}
    assert hook_ran_for_a_new_container(lab)

    plan = tmp_path / "plan.json"
    common = ["-i", str(lab.inventory), "--runc", str(artifact), "--sha256", sha256(artifact)]
    limit = ["--limit", f"{SHIM_HOST}:{CRUN_HOST}"]
    assert main(["plan", *common, *limit, "--gather", "--format", "json", "-o", str(plan)]) == 0
    body = json.loads(plan.read_text())
    (planned,) = [host for wave in body["waves"] for host in wave["hosts"]]
    assert planned["name"] == SHIM_HOST
    assert planned["before"]["runc_path"] == "/usr/local/sbin/runc"
    assert planned["before"]["runc_via"] == runtimes.SHIM
    assert body["skipped"] == [
        {"name": CRUN_HOST, "reason": "default runtime crun: runc not used by default"}
    ]

    runs = tmp_path / "runs"
    argv = ["apply", str(plan), "--yes", "--executor", executor, "--runs-dir", str(runs)]
    assert main(argv) == ExitCode.OK, daemon_logs(lab, planned["name"])
    (run_dir,) = runs.iterdir()
    state = json.loads((run_dir / "state.json").read_text())
    assert state["hosts"][SHIM_HOST]["status"] == "done"
    assert state["hosts"][SHIM_HOST]["probe"]["outcome"] == "passed"  # through the shim
    after = sums(lab, SHIM_HOST)
    assert after == before[SHIM_HOST] | {"/usr/local/sbin/runc": sha256(artifact)}
    assert sums(lab, CRUN_HOST) == before[CRUN_HOST]
    said = lab.ssh(lab.host(SHIM_HOST), f"{runtimes.SHIM} --version").stdout
    assert said.startswith("NVIDIA Container Runtime") and "runc version 1.1.5+ds1" in said
    assert hook_ran_for_a_new_container(lab)  # GPU containers keep their hook

    assert main(["rollback", str(run_dir), "--yes", "--executor", executor]) == ExitCode.OK
    assert sums(lab, SHIM_HOST) == before[SHIM_HOST]
    assert hook_ran_for_a_new_container(lab)


@pytest.mark.parametrize(("name", "what"), [(CRUN_HOST, "crun"), (RUNSC_HOST, "runsc")])
def test_apply_without_facts_leaves_a_crun_or_runsc_host_alone(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, name: str, what: str
) -> None:
    """A plan made without --gather finds out on the host: not failed, not swapped."""
    lab = clean_lab
    before = sums(lab, name)
    plan = tmp_path / "plan.json"
    common = ["-i", str(lab.inventory), "--runc", str(artifact), "--sha256", sha256(artifact)]
    assert main(["plan", *common, "--limit", name, "-o", str(plan)]) == 0
    runs = tmp_path / "runs"
    assert main(["apply", str(plan), "--yes", "--runs-dir", str(runs)]) == ExitCode.OK
    state = json.loads(next(runs.glob("*/state.json")).read_text())
    host = state["hosts"][name]
    assert host["status"] == "noop"
    assert host["message"] == f"default runtime {what}: runc not used by default; not touched"
    assert sums(lab, name) == before


def test_apply_swaps_dockers_runc_and_kubelets_and_proves_each(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, executor: str
) -> None:
    lab = clean_lab
    before = sums(lab, CRI_HOST)
    assert before[RUNC] == before[runtimes.CRI_RUNC]  # both rc93, two files
    facts = lab.facts(lab.host(CRI_HOST))
    assert facts.runc is not None and facts.runc.file == RUNC
    assert [(item.source, item.runc.file) for item in facts.also_runc] == [
        ("containerd CRI BinaryName", runtimes.CRI_RUNC)
    ]

    plan = tmp_path / "plan.json"
    common = ["-i", str(lab.inventory), "--runc", str(artifact), "--sha256", sha256(artifact)]
    limit = ["--limit", CRI_HOST, "--gather", "--format", "json", "-o", str(plan)]
    assert main(["plan", *common, *limit]) == 0
    (planned,) = [host for wave in json.loads(plan.read_text())["waves"] for host in wave["hosts"]]
    assert [item["path"] for item in planned["before"]["also"]] == [runtimes.CRI_RUNC]

    runs = tmp_path / "runs"
    argv = ["apply", str(plan), "--yes", "--executor", executor, "--runs-dir", str(runs)]
    assert main(argv) == ExitCode.OK, daemon_logs(lab, planned["name"])
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "state.json").read_text())["hosts"][CRI_HOST]["status"] == "done"
    new = sha256(artifact)
    assert sums(lab, CRI_HOST) == before | {RUNC: new, runtimes.CRI_RUNC: new}
    record = json.loads(lab.ssh(lab.host(CRI_HOST), "cat /var/lib/runc-rollout/record.json").stdout)
    assert record["runc_path"] == RUNC
    assert [item["path"] for item in record["also"]] == [runtimes.CRI_RUNC]
    leftovers = lab.ssh(lab.host(CRI_HOST), "ls -a /usr/local/bin /usr/local/sbin").stdout
    assert ".runc-rollout-" not in leftovers and lab.probe_processes() == []
    # The lab's end-of-run oracle holds, and it looks past the first runc: kubelet's replaced
    # behind the tool's back is a violation.
    with SshExecutor() as ssh:
        assert check_runs([run_dir], ssh) == []
        cri = runtimes.CRI_RUNC
        lab.ssh(
            lab.host(CRI_HOST),
            f"cp {cri} /root/cri-runc.keep && cp /bin/true {cri}.x && mv {cri}.x {cri}",
        )
        try:
            problems = check_runs([run_dir], ssh)
        finally:
            lab.ssh(lab.host(CRI_HOST), f"mv /root/cri-runc.keep {cri}")
        assert any(f"{CRI_HOST}: {cri} has sha256 " in problem for problem in problems), problems
        assert any("not the target, though the record says done" in p for p in problems)

    assert main(["rollback", str(run_dir), "--yes", "--executor", executor]) == ExitCode.OK
    assert sums(lab, CRI_HOST) == before
