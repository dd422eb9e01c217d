"""A host whose dockerd and containerd run in a mount namespace of their own, on a real lab host.

lab-01 (`lab up --runtime mountns`) runs its daemons as a systemd unit with `ProtectSystem=` and
`PrivateTmp=`, or Ubuntu's snap-packaged docker, would: in a child of the host's mount namespace,
not the one SSH sessions get, where /usr/local/sbin (the runc's folder) is read-only and /tmp is
private. Its stuck runc init is the incident's, for real (`lab.stick`). lab-02 is a light host.

Before this host kind was handled, facts saw no dockerd and no containerd there, and audit and
unstick reported no stuck runc init (`stuck_pids: []`, "0 runc init processes") while one hung
in pipe_write: these tests fail on that code.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.diagnose.audit import AuditReport
from orchestrator.errors import ExitCode
from orchestrator.lab import hostdef, runtimes
from orchestrator.lab.fleet import load_record
from tests.conftest import LabFleet, running_lab
from tests.fakes import BLOCKED, state, wchan

pytestmark = pytest.mark.lab

NS_HOST, LIGHT_HOST = "lab-01", "lab-02"
RUNC = "/usr/local/sbin/runc"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    """This module's lab (conftest's `clean_lab` resets it around each test)."""
    with running_lab(tmp_path_factory.mktemp("mountns"), 2, 1, runtimes=("mountns",)) as fleet:
        yield fleet


def daemon_pids(lab: LabFleet) -> dict[str, int]:
    record = load_record(lab.state_dir)
    assert record is not None
    procs = next(host for host in record.hosts if host.name == NS_HOST).procs
    return {what: procs[what].pid for what in ("containerd", "dockerd")}


def session_ns(lab: LabFleet, name: str) -> str:
    return lab.ssh(lab.host(name), "readlink /proc/self/ns/mnt").stdout.strip()


def sha256(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_stuck_runc_init_and_the_daemons_namespace_are_found_and_unstuck(
    clean_lab: LabFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = clean_lab
    host = lab.host(NS_HOST)
    pids = daemon_pids(lab)
    own = {str(Path(f"/proc/{pid}/ns/mnt").readlink()) for pid in pids.values()}
    assert len(own) == 1 and own != {session_ns(lab, NS_HOST)}  # the lab host is what it says
    (theirs,) = own
    seed = lab.stick(host)
    assert wchan(seed.pid) in BLOCKED

    # facts: both daemons, their namespace and root; the runc they run is this session's file.
    facts = lab.facts(host)
    assert facts.dockerd is not None and facts.containerd is not None
    assert (facts.dockerd.pid, facts.containerd.pid) == (pids["dockerd"], pids["containerd"])
    for daemon in (facts.dockerd, facts.containerd):
        assert daemon.mount_ns == theirs
        assert daemon.root == f"/proc/{daemon.pid}/root"
        assert daemon.version is not None
    assert facts.dockerd.mount_ns == facts.containerd.mount_ns != session_ns(lab, NS_HOST)
    runc = facts.runc
    assert runc is not None and (runc.path, runc.version) == (RUNC, "1.0.0-rc93")
    assert runc.mount_ns == facts.containerd.mount_ns
    assert runc.seen_at == f"/proc/{pids['containerd']}/root{RUNC}"
    assert (runc.same_here, runc.writable_there, runc.target_problem) == (True, False, None)
    assert [p.pid for p in facts.stuck] == [seed.pid]
    # Another host's session sees none of it.
    light = lab.facts(lab.host(LIGHT_HOST))
    assert light.dockerd is None and light.containerd is None and light.runc_init == []

    # audit: the stuck runc init, and where the daemons run.
    capsys.readouterr()
    main(["audit", "-i", str(lab.inventory), "--format", "json", "--limit", NS_HOST])
    (audited,) = AuditReport.model_validate_json(capsys.readouterr().out).hosts
    assert audited.stuck_pids == [seed.pid]
    assert "stuck-runc-init" in [finding.id for finding in audited.findings]
    (namespace,) = [f for f in audited.findings if f.id == "daemon-mount-namespace"]
    assert namespace.severity == "low" and "`plan` swaps it here" in namespace.detail
    assert audited.daemon_namespaces == [
        f"dockerd PID {pids['dockerd']} in {facts.dockerd.mount_ns} "
        f"(its files seen through /proc/{pids['dockerd']}/root)",
        f"containerd PID {pids['containerd']} in {facts.containerd.mount_ns} "
        f"(its files seen through /proc/{pids['containerd']}/root)",
    ]

    # unstick: lists it, then frees it.
    inventory = str(lab.inventory)
    assert main(["unstick", "-i", inventory, "--limit", f"{NS_HOST}:{LIGHT_HOST}"]) == 0
    out = capsys.readouterr().out
    assert f"{NS_HOST}: 1 runc init processes, 1 hung the incident's way (dry run" in out
    assert f"{LIGHT_HOST}: 0 runc init processes" in out
    code = main(["unstick", "-i", inventory, "--limit", NS_HOST, "--yes", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    freed = {p["pid"]: p for p in report["hosts"][NS_HOST]["processes"]}[seed.pid]
    assert (freed["action"], freed["outcome"]) == ("drained", "exited")
    deadline = time.monotonic() + 5
    while state(seed.pid) not in ("gone", "Z") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state(seed.pid) in ("gone", "Z")
    inspect = ["docker", "inspect", "-f", "{{.State.Status}}", hostdef.STUCK_CONTAINER]
    assert lab.ssh(host, inspect).stdout == "created\n"


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_plan_swaps_the_daemons_runc_when_it_is_this_sessions_file(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, executor: str
) -> None:
    lab = clean_lab
    pids = daemon_pids(lab)
    theirs = f"/proc/{pids['containerd']}/root{RUNC}"  # the daemons' runc, as they see it
    before = sha256(theirs)
    plan = tmp_path / "plan.json"
    common = ["-i", str(lab.inventory), "--runc", str(artifact), "--sha256", sha256(artifact)]
    limit = ["--limit", NS_HOST, "--gather", "--format", "json", "-o", str(plan)]
    assert main(["plan", *common, *limit]) == 0
    (planned,) = [host for wave in json.loads(plan.read_text())["waves"] for host in wave["hosts"]]
    assert (planned["action"], planned["before"]["runc_path"]) == ("swap", RUNC)

    runs = tmp_path / "runs"
    argv = ["apply", str(plan), "--yes", "--executor", executor, "--runs-dir", str(runs)]
    assert main(argv) == ExitCode.OK
    (run_dir,) = runs.iterdir()
    state_json = json.loads((run_dir / "state.json").read_text())["hosts"][NS_HOST]
    assert state_json["status"] == "done"
    assert state_json["probe"]["outcome"] == "passed"  # a container through those daemons
    assert sha256(theirs) == sha256(artifact)
    assert daemon_pids(lab) == pids and all(Path(f"/proc/{p}").exists() for p in pids.values())

    assert main(["rollback", str(run_dir), "--yes", "--executor", executor]) == ExitCode.OK
    assert sha256(theirs) == before


def test_plan_refuses_a_runc_only_the_daemons_namespace_has(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As in a snap: the daemons' /usr/local/sbin is a read-only folder of their own, with a runc
    that this session's namespace does not have at that path."""
    lab = clean_lab
    pids = daemon_pids(lab)
    own = lab.state_dir / "hosts" / NS_HOST / "snap-bin"
    own.mkdir(exist_ok=True)
    shutil.copy(lab.state_dir / "runc-rc93", own / "runc")
    inside = f"{hostdef.LAB_MOUNT}/hosts/{NS_HOST}/snap-bin"
    enter = ["nsenter", "-t", str(pids["containerd"]), "-m", "--"]
    subprocess.run(
        [*enter, "mount", "--bind", "-o", "ro", inside, runtimes.DAEMON_NS_READONLY], check=True
    )
    try:
        facts = lab.facts(lab.host(NS_HOST))
        assert facts.runc is not None and facts.runc.same_here is False
        problem = facts.runc.target_problem
        assert problem is not None and "is on a read-only mount there" in problem

        plan = tmp_path / "plan.json"
        common = ["-i", str(lab.inventory), "--runc", str(artifact), "--sha256", sha256(artifact)]
        assert main(["plan", *common, "--gather", "--format", "json", "-o", str(plan)]) == 0
        body = json.loads(plan.read_text())
        planned = [host["name"] for wave in body["waves"] for host in wave["hosts"]]
        assert planned == [LIGHT_HOST]
        (skipped,) = body["skipped"]
        assert skipped["name"] == NS_HOST
        assert "in the daemons' mount namespace" in skipped["reason"]
        assert "is not this session's /usr/local/sbin/runc" in skipped["reason"]
        # That host alone: nothing to plan, and the error says why.
        capsys.readouterr()
        alone = ["--limit", NS_HOST, "--gather", "-o", str(tmp_path / "alone.json")]
        assert main(["plan", *common, *alone]) == ExitCode.BAD_INPUT
        error = capsys.readouterr().err
        assert "nothing to plan: of 1 selected hosts, 1 held back for what their facts" in error
        assert f"{NS_HOST}: /usr/local/sbin/runc in the daemons' mount namespace" in error
    finally:
        subprocess.run([*enter, "umount", runtimes.DAEMON_NS_READONLY], check=True)
        shutil.rmtree(own)
