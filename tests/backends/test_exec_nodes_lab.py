"""Execution nodes on the lab: two lab hosts run `ansible-runner worker` for zone-a
and zone-b, reached over real ssh; a rollout over four other hosts goes through them.

Each worker runs in a mount namespace of its own where the test's controller directory (the
artifact, the runs and their private data dirs) is hidden under an empty tmpfs: whatever the job
reads came through the stream. The venv and the lab's key are the machine's, which lab hosts see.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.lab.records import LabHost
from orchestrator.run.journal import EVENTS_FILE, read_events
from tests.backends.test_ansible_lab import journal_view, snapshot
from tests.conftest import RUNC_ROLLOUT, LabFleet, running_lab
from tests.run.test_apply_lab import sha256

VENV_BIN = Path(sys.executable).parent
NODE_SECRET = "node-s3cr3t-" + os.urandom(6).hex()  # in each worker's environment
TARGETS = ("lab-03", "lab-04", "lab-05", "lab-06")

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    """Six light hosts: lab-01 (zone-a) and lab-02 (zone-b) are the execution nodes, lab-03..06
    (two per zone) the targets."""
    with running_lab(tmp_path_factory.mktemp("exec-lab"), 6, 0) as lab:
        yield lab


def node_command(lab: LabFleet, node: LabHost, hidden: Path, work: Path) -> str:
    """`ssh NODE 'unshare --mount ... ansible-runner worker'`: `hidden` is an empty tmpfs for the
    worker; its pid goes to work/NAME.pid and its temporary files under work/NAME (`work` short:
    the job's SSH sockets live there)."""
    tmp = work / node.name
    tmp.mkdir(parents=True, exist_ok=True)
    script = (
        f"mount -t tmpfs none {shlex.quote(str(hidden))} && "
        f"echo $$ > {shlex.quote(str(work / (node.name + '.pid')))} && "
        f"exec env PATH={VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin TMPDIR={tmp} "
        f'RUNC_ROLLOUT_NODE_TOKEN="$(cat {work / "token"})" {VENV_BIN}/ansible-runner worker'
    )
    remote = f"unshare --mount --propagation private sh -c {shlex.quote(script)}"
    return shlex.join([*lab.ssh_argv(node), remote])


def node_options(lab: LabFleet, hidden: Path, work: Path) -> list[str]:
    options = []
    for name in ("lab-01", "lab-02"):
        node = lab.host(name)
        options += ["--execution-node", f"{node.zone}={node_command(lab, node, hidden, work)}"]
    return options


@pytest.fixture
def work() -> Iterator[Path]:
    """The workers' pid files and TMPDIR: a short path (a Unix socket's is at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="rr-n-", dir="/tmp"))
    (path / "token").write_text(NODE_SECRET)  # each worker's environment gets it
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_plan(lab: LabFleet, artifact: Path, plan: Path, *extra: str) -> None:
    code = main(
        [
            "plan", "-i", str(lab.inventory), "--runc", str(artifact),
            "--sha256", sha256(artifact), "--gather", "--domain-key", "zone",
            "--limit", "all:!lab-01:!lab-02", "-o", str(plan), "--format", "json", *extra,
        ]
    )  # fmt: skip
    assert code == ExitCode.OK


@pytest.fixture
def controller(tmp_path: Path) -> Path:
    """The controller's own files (plan, artifact, runs), which no worker may read."""
    path = tmp_path / "controller"
    (path / "artifact").mkdir(parents=True)
    shutil.copy("/usr/sbin/runc", path / "artifact" / "runc")
    return path


def test_nodes_run_the_rollout_as_a_direct_run_would(
    fleet: LabFleet, controller: Path, work: Path
) -> None:
    lab = fleet
    artifact = controller / "artifact" / "runc"
    plan = controller / "plan.json"
    make_plan(lab, artifact, plan, "--waves", "1,100%")
    results: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    nodes = node_options(lab, controller, work)
    lab.reset()
    before = {name: snapshot(lab, name) for name in TARGETS}
    for mode, options in (("direct", []), ("nodes", nodes)):
        lab.reset()
        runs = controller / f"runs-{mode}"
        argv = ["apply", str(plan), "--yes", "--executor", "ansible", "--runs-dir", str(runs)]
        assert main([*argv, *options]) == ExitCode.OK, mode
        results[mode] = ({name: snapshot(lab, name) for name in TARGETS}, journal_view(runs))
    assert results["nodes"] == results["direct"]
    after, journal = results["nodes"]
    assert journal["status"] == "completed"
    for state in after.values():
        assert state["runc"] == sha256(artifact) and state["sysctl"] == "16384"
    (run_dir,) = (controller / "runs-nodes").iterdir()
    events, _ = read_events(run_dir / EVENTS_FILE)
    jobs = [(e.execution_node, sorted(e.hosts or [])) for e in events if e.type == "wave.job"]
    zones = {host.name: host.zone for host in lab.hosts}
    assert {host for _, hosts in jobs for host in hosts} == set(TARGETS)
    for node, hosts in jobs:  # each zone's hosts ran on that zone's node, and only there
        assert node is not None and {zones[host] for host in hosts} == {node}
    assert len(jobs) == 3  # wave 0: one host; wave 1: both zones
    # The workers' environment stayed on the nodes; the stream carried the artifact.
    files = [path for path in run_dir.rglob("*") if path.is_file()]
    assert any(path.name == "command" for path in files)
    for path in files:
        assert NODE_SECRET not in path.read_bytes().decode(errors="replace"), path
    shipped = list(run_dir.glob("ansible/job-*/project/runc-rollout-artifact"))
    assert len(shipped) == 3 and all(sha256(path) == sha256(artifact) for path in shipped)
    assert not any(work.glob("lab-0?/*")), "a worker left its private data dir"

    # Rollback goes through the nodes too.
    done = subprocess.run(
        [RUNC_ROLLOUT, "rollback", str(run_dir), "--yes", "--executor", "ansible", *nodes],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    assert "lab-03, lab-05 on execution node zone-a" in done.stderr
    for name in TARGETS:
        back = snapshot(lab, name)
        assert back["record"]["outcome"] == "rolled_back", name
        for key in ("runc", "sysctl", "incident_file", "lock", "sbin"):
            assert back[key] == before[name][key], (name, key)
    lab.reset()


def processes_of_node(pid: int, tmp: Path) -> list[int]:
    """A worker, everything under it, and the SSH masters its job left (`ssh: TMP/... [mux]`,
    daemons of their own): what dies with an execution node."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            commands[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found = {pid}
    while True:
        more = {child for child, parent in parents.items() if parent in found} - found
        if not more:
            break
        found |= more
    found |= {p for p, command in commands.items() if command.startswith(f"ssh: {tmp}/")}
    return sorted(found)


def test_a_node_killed_mid_wave_leaves_its_hosts_unreachable_and_resume_finishes(
    fleet: LabFleet, controller: Path, work: Path
) -> None:
    lab = fleet
    lab.reset()
    artifact = controller / "artifact" / "runc"
    plan = controller / "plan.json"
    make_plan(lab, artifact, plan, "--waves", "100%", "--max-failures", "2")
    options = node_options(lab, controller, work)
    runs = controller / "runs"
    proc = start_apply(plan, runs, options)
    zone_a = [name for name in TARGETS if lab.host(name).zone == "zone-a"]
    wait_for_phase(proc, runs, zone_a)
    pid = int((work / "lab-01.pid").read_text())
    for victim in processes_of_node(pid, work / "lab-01"):
        with contextlib.suppress(ProcessLookupError):  # one that ended meanwhile
            os.kill(victim, signal.SIGKILL)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == ExitCode.HOST_FAILED, err[-3000:]
    (run_dir,) = runs.iterdir()
    hosts = json.loads((run_dir / "state.json").read_text())["hosts"]
    for name in TARGETS:
        if name in zone_a:
            assert hosts[name]["status"] == "unreachable", (name, hosts[name])
            assert "execution node zone-a" in hosts[name]["message"]
            assert "lost" in hosts[name]["message"]
        else:
            assert hosts[name]["status"] == "done", (name, hosts[name])
    assert f"{', '.join(zone_a)} on execution node zone-a" in err

    argv = ["resume", str(run_dir), "--yes", "--executor", "ansible", *options]
    assert main(argv) == ExitCode.OK
    assert json.loads((run_dir / "state.json").read_text())["status"] == "completed"
    events, _ = read_events(run_dir / EVENTS_FILE)
    for name in TARGETS:
        state = snapshot(lab, name)
        assert state["runc"] == sha256(artifact) and state["sysctl"] == "16384", name
        assert state["lock"] == "free" and state["record"]["outcome"] == "done", name
        assert len([e for e in events if e.host == name and e.phase == "swapped"]) <= 1
    lab.reset()


def start_apply(plan: Path, runs: Path, options: list[str]) -> subprocess.Popen[str]:
    argv = ["apply", str(plan), "--yes", "--executor", "ansible", "--runs-dir", str(runs)]
    return subprocess.Popen(
        [RUNC_ROLLOUT, *argv, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_phase(proc: subprocess.Popen[str], runs: Path, hosts: list[str]) -> None:
    """Until the journal shows one of `hosts` at a phase (each part's job has begun)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        for path in runs.glob(f"*/{EVENTS_FILE}"):
            events, _ = read_events(path)
            if any(e.type == "host.phase" and e.host in hosts for e in events):
                return
        time.sleep(0.05)
    raise AssertionError(f"{hosts} never started")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_interrupted_or_killed_apply_stops_the_nodes_jobs_and_resume_finishes(
    fleet: LabFleet, controller: Path, work: Path, how: signal.Signals
) -> None:
    lab = fleet
    lab.reset()
    artifact = controller / "artifact" / "runc"
    plan = controller / "plan.json"
    make_plan(lab, artifact, plan, "--waves", "100%")
    options = node_options(lab, controller, work)
    runs = controller / "runs"
    proc = start_apply(plan, runs, options)
    for zone in ("zone-a", "zone-b"):  # both nodes' jobs have begun
        wait_for_phase(proc, runs, [name for name in TARGETS if lab.host(name).zone == zone])
    workers = [int((work / f"{name}.pid").read_text()) for name in ("lab-01", "lab-02")]
    proc.send_signal(how)
    _, err = proc.communicate(timeout=60)
    if how == signal.SIGINT:  # as without nodes: interrupted, the resume command said
        assert proc.returncode == ExitCode.INTERRUPTED, err[-3000:]
        assert "continue with: runc-rollout resume" in err
    # The nodes' jobs stop at their next event: nobody reads them any more.
    deadline = time.monotonic() + 60
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(alive, workers)), "a worker outlived its run"
    (run_dir,) = runs.iterdir()
    assert main(["resume", str(run_dir), "--yes", "--executor", "ansible", *options]) == 0
    events, _ = read_events(run_dir / EVENTS_FILE)
    for name in TARGETS:
        state = snapshot(lab, name)
        assert state["runc"] == sha256(artifact) and state["lock"] == "free", name
        assert state["record"]["outcome"] == "done", name
        assert len([e for e in events if e.host == name and e.phase == "swapped"]) <= 1
    lab.reset()


def test_bad_execution_nodes_are_refused_before_anything_runs(
    fleet: LabFleet, controller: Path
) -> None:
    lab = fleet
    plan = controller / "plan.json"
    make_plan(lab, controller / "artifact" / "runc", plan)
    runs = controller / "runs"
    base = ["apply", str(plan), "--yes", "--runs-dir", str(runs)]
    for options, says in (
        (["--executor", "ansible", "--execution-node", "zone-c=ssh x worker"], "zone-c"),
        (["--executor", "ansible", "--execution-node", "ssh x worker"], "DOMAIN=COMMAND"),
        (["--executor", "ansible", "--execution-node", "zone-a="], "no command"),
        (["--executor", "ansible", "--execution-node", "zone-a=ssh 'x"], "cannot be split"),
        (["--execution-node", "zone-a=ssh x worker"], "--executor ansible"),
    ):
        done = subprocess.run(
            [RUNC_ROLLOUT, *base, *options], capture_output=True, text=True, check=False
        )
        assert done.returncode == ExitCode.BAD_INPUT, (options, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0], (options, done.stderr)
        assert not runs.exists()
