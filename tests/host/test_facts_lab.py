"""Facts gathered over SSH from the lab fleet, checked against the lab's own files and processes."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from pathlib import Path

import pytest

from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.diagnose.facts_report import gather_fleet
from orchestrator.host.facts import facts_to_before, gather_facts
from orchestrator.host.session import HostUnreachable
from orchestrator.lab.records import LabHost
from orchestrator.models import HostFacts, SshTarget
from tests.conftest import LabFleet

RC93_COMMIT = "12644e614e25b05da6fd08a38ffa0cfe1903fdec"
DEBIAN_RUNC = Path("/usr/sbin/runc")


def host_file(lab: LabFleet, host: LabHost, name: str) -> Path:
    """A lab host's own file, as the machine sees it."""
    return lab.state_dir / "hosts" / host.name / name


def lab_process(lab: LabFleet, host: LabHost, what: str) -> tuple[int, int]:
    """PID and start time (clock ticks after boot) of a process the lab started on `host`."""
    record = json.loads((lab.state_dir / "lab.json").read_text())
    entry = next(h for h in record["hosts"] if h["name"] == host.name)
    return int(entry["procs"][what]["pid"]), int(entry["procs"][what]["start"])


def boot_time() -> int:
    line = next(line for line in Path("/proc/stat").read_text().splitlines() if "btime" in line)
    return int(line.split()[1])


def check_common(lab: LabFleet, host: LabHost, facts: HostFacts) -> None:
    runc_file = host_file(lab, host, "usr-local-sbin/runc")
    assert facts.host == host.name
    assert facts.runc is not None
    assert facts.runc.path == "/usr/local/sbin/runc"
    assert (facts.runc.version, facts.runc.commit) == ("1.0.0-rc93", RC93_COMMIT)
    assert facts.runc.sha256 == hashlib.sha256(runc_file.read_bytes()).hexdigest()
    assert facts.runc.size == runc_file.stat().st_size
    assert facts.runc.free_bytes is not None and facts.runc.free_bytes > 0
    assert facts.runc.package is None  # nothing installs into /usr/local
    # Debian's runc in /usr/sbin is on the PATH too, behind the lab's: shadowed.
    shadowed = {b.file: b for b in facts.shadowed}
    assert shadowed[str(DEBIAN_RUNC)].sha256 == hashlib.sha256(DEBIAN_RUNC.read_bytes()).hexdigest()
    assert shadowed[str(DEBIAN_RUNC)].package == "runc"
    assert facts.sysctl_runtime == 163840
    assert facts.sysctl_persistent is not None
    assert facts.sysctl_persistent.file == "/etc/sysctl.d/90-runc-incident.conf"
    assert facts.sysctl_persistent.value == "163840"
    assert facts.arch == os.uname().machine
    assert facts.uid == 0
    before = facts_to_before(facts)
    assert (before.runc_path, before.runc_version) == ("/usr/local/sbin/runc", "1.0.0-rc93")


def test_facts_of_a_full_host(lab: LabFleet) -> None:
    host = lab.full_hosts[0]
    facts = lab.facts(host)
    check_common(lab, host, facts)
    assert facts.path_source == "dockerd"
    assert facts.runc_source == "runc on dockerd's PATH"
    assert facts.runtime_path[0] == "/usr/local/sbin"
    for name, daemon in (("dockerd", facts.dockerd), ("containerd", facts.containerd)):
        assert daemon is not None, name
        assert (daemon.pid, daemon.start_ticks) == lab_process(lab, host, name)
        ticks = os.sysconf("SC_CLK_TCK")
        assert daemon.start_time == boot_time() + daemon.start_ticks / ticks
        assert daemon.version
    assert facts.warnings == []
    # Facts are comparable before and after: nothing restarted, nothing differs.
    again = lab.facts(host)
    assert again.dockerd == facts.dockerd and again.containerd == facts.containerd


def test_facts_of_a_light_host(lab: LabFleet) -> None:
    host = lab.light_hosts[0]
    facts = lab.facts(host)
    check_common(lab, host, facts)
    # Other lab hosts' daemons share this machine's PID space, yet are not this host's.
    assert (facts.dockerd, facts.containerd) == (None, None)
    assert facts.path_source == "default"
    assert facts.runc_init == []


def test_a_stuck_runc_init_is_seen_on_its_host_only(lab: LabFleet, tmp_path: Path) -> None:
    """A process named like runc init (comm runc:[2:INIT], command line `runc init`) that blocks
    writing a pipe it also holds."""
    host, other = lab.light_hosts[0], lab.hosts[0]
    program = (
        "import fcntl, os\n"
        "open('/proc/self/comm', 'w').write('runc:[2:INIT]')\n"
        "r, w = os.pipe()\n"
        "fcntl.fcntl(w, 1031, 4096)  # F_SETPIPE_SZ: one page\n"
        "os.write(w, b'x' * 65536)  # blocks in pipe_write, nobody reads\n"
    )
    (tmp_path / "init").write_text(program)  # /tmp is shared by the machine and lab hosts
    script = (
        f"cd {tmp_path} && (exec -a runc python3 init </dev/null >/dev/null 2>&1 &) && "
        "sleep 0.5 && for p in /proc/[0-9]*; do "
        '[ "$(tr "\\0" " " < $p/cmdline 2>/dev/null)" = "runc init " ] && '
        f'[ "$(readlink $p/cwd)" = "{tmp_path}" ] && echo ${{p#/proc/}}; '
        "done"
    )
    with SshExecutor() as executor:
        session = executor.session(lab.target(host), name=host.name)
        started = session.run(f"bash -c {shlex.quote(script)}", timeout=20)
        pids = [int(pid) for pid in started.stdout.split()]
        try:
            assert pids
            facts = gather_facts(session)
            other_facts = gather_facts(executor.session(lab.target(other), name=other.name))
        finally:
            for pid in pids:
                os.kill(pid, 9)  # started by this test, killed by its PID
    stuck = {process.pid: process for process in facts.stuck}
    assert set(pids) <= set(stuck)
    process = stuck[pids[0]]
    assert (process.state, process.cmdline) == ("S", "runc init")
    assert "pipe_write" in process.wchan  # anon_pipe_write since Linux 6.x
    assert process.start_time is not None and abs(process.start_time - time.time()) < 60
    assert not set(pids) & {p.pid for p in other_facts.runc_init}


def test_host_record_is_read(lab: LabFleet) -> None:
    host = lab.light_hosts[-1]
    record = host_file(lab, host, "var-lib-runc-rollout/record.json")
    assert not record.exists()
    record.write_text('{"schema_version": 1, "phase": "swapped"}\n')
    try:
        facts = lab.facts(host)
    finally:
        record.unlink()
    assert facts.record_json == '{"schema_version": 1, "phase": "swapped"}\n'


def test_gather_fleet(lab: LabFleet) -> None:
    targets = {host.name: lab.target(host) for host in lab.hosts}
    targets["gone"] = SshTarget(address="127.0.0.2", port=1, known_hosts_file=str(lab.known_hosts))
    began = time.monotonic()
    with SshExecutor(connect_attempts=2, backoff=0.1) as executor:
        results = gather_fleet(executor, targets, concurrency=8)
        # Each host's connection is closed once its facts are in, not at the end: a big fleet
        # would otherwise hold a socket and a thread per host.
        assert not executor._sessions
    elapsed = time.monotonic() - began
    assert list(results) == list(targets)
    assert isinstance(results["gone"], HostUnreachable)
    facts = {name: r for name, r in results.items() if isinstance(r, HostFacts)}
    assert set(facts) == {host.name for host in lab.hosts}
    assert {f.runc.version for f in facts.values() if f.runc} == {"1.0.0-rc93"}
    full = {host.name for host in lab.full_hosts}
    assert {name for name, f in facts.items() if f.dockerd is not None} == full
    assert elapsed < 10


@pytest.mark.parametrize("round_trips", [5])
def test_facts_round_trip_time(lab: LabFleet, round_trips: int) -> None:
    """One round trip per host; prints how long it takes (full hosts run two daemons' --version)."""
    with SshExecutor() as executor:
        for host in (lab.full_hosts[0], lab.light_hosts[0]):
            session = executor.session(lab.target(host), name=host.name)
            gather_facts(session)
            began = time.monotonic()
            for _ in range(round_trips):
                gather_facts(session)
            per_call = (time.monotonic() - began) / round_trips
            print(f"facts round trip {host.name} ({host.kind}): {per_call * 1000:.0f} ms")
            assert per_call < 5
