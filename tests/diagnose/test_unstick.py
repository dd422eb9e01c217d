"""`unstick` without the lab: the host-side program's parsers, the report, and the program itself
run under Python 3.6 (CentOS 7's python3) in a mount namespace of this machine, against the fake
hung `runc init` and its decoys."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.diagnose.unstick import (
    HostScan,
    failed_hosts,
    helper_command,
    helper_source,
    parse_scan,
    report_json,
    report_lines,
)
from orchestrator.diagnose.unstick_host import (
    is_runc_init,
    parse_flags,
    parse_stat,
    parse_syscall,
)
from orchestrator.errors import FactsError, HostUnreachable
from tests.fakes import Fake, kill, queued, start_fakes, state, syscall, wchan

PYTHON36 = Path("/root/.pyenv/versions/3.6.15/bin/python3.6")


def test_parsers() -> None:
    stat = "4242 (runc:[2:INIT]) S 4200 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1"
    assert parse_stat(stat) == ("S", 4200, 98765)
    assert parse_stat("4242 (x) S 1") is None
    assert parse_syscall("1 0x4 0x7f00 0x5000 0x0 0x0 0x0 0x7ffd 0x7f12") == (1, 4)
    assert parse_syscall("running") is None
    assert parse_syscall("-1 0x7ffd 0x7f12") is None  # blocked, but not in a system call
    assert parse_flags("pos:\t0\nflags:\t01\nmnt_id:\t15\nino:\t1234\n") == os.O_WRONLY
    assert parse_flags("pos:\t0\nflags:\t02000000\n") == os.O_CLOEXEC | os.O_RDONLY
    assert parse_flags("") is None


@pytest.mark.parametrize(
    ("comm", "argv", "expected"),
    [
        ("runc:[2:INIT]", ["runc", "init"], True),
        ("runc:[1:CHILD]", ["/usr/bin/runc", "init"], True),
        ("runc", ["/usr/local/sbin/runc", "init"], True),
        ("exe", ["docker-runc", "init"], True),
        ("runc", ["runc", "run", "x"], False),
        ("python3", ["python3", "init"], False),
        ("python3", ["runc", "init"], False),  # `exec -a runc` alone does not make one
        ("bash", [], False),
    ],
)
def test_what_counts_as_runc_init(comm: str, argv: list[str], expected: bool) -> None:
    assert is_runc_init(comm, argv) is expected


def test_helper_command() -> None:
    dry = helper_command(drain=False, max_bytes=4096, max_seconds=2, deadline=60)
    assert "--drain" not in dry and "--max-bytes 4096" in dry
    assert dry.startswith("command -v python3")
    assert "exec python3 -I - --drain" in helper_command(
        drain=True, max_bytes=1, max_seconds=1, deadline=1
    )
    assert helper_source().startswith(b'"""The program `unstick` runs on a host')


def process(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "pid": 4242,
        "start_ticks": 98765,
        "comm": "runc:[2:INIT]",
        "cmdline": "runc init",
        "state": "S",
        "wchan": "pipe_write",
        "syscall": "1 0x4",
        "write_fd": 4,
        "read_fd": 3,
        "pipe_inode": 1234,
        "capacity": 8192,
        "queued": 8192,
        "matched": True,
        "reason": None,
        "action": "would drain",
        "drained_bytes": 0,
        "drain_stop": None,
        "outcome": None,
        "after": None,
    }
    values.update(changes)
    return values


def scan(*processes: dict[str, Any], drain: bool = False, uid: int = 0) -> str:
    document = {"schema_version": 1, "uid": uid, "arch": "x86_64", "drain": drain}
    return json.dumps({**document, "processes": list(processes)}) + "\n"


def test_parse_scan() -> None:
    parsed = parse_scan("n1", "motd noise\n" + scan(process()))
    assert parsed.processes[0].read_fd == 3
    with pytest.raises(FactsError, match="needs root"):
        parse_scan("n1", scan(uid=1000))
    with pytest.raises(FactsError, match="unexpected output"):
        parse_scan("n1", "Traceback (most recent call last):\n")


def test_report_and_verdict() -> None:
    decoy = process(
        pid=5,
        capacity=65536,
        queued=65536,
        matched=False,
        reason="its pipe's capacity is 65536 bytes, not 8192",
        action="none",
    )
    freed = process(
        action="drained", drained_bytes=24576, drain_stop="writer unblocked", outcome="exited"
    )
    hung = process(
        pid=7,
        action="drained",
        drained_bytes=65536,
        drain_stop="byte limit (65536) reached",
        outcome="still blocked",
        after="runc:[2:INIT], state S, wchan pipe_write, syscall 1",
    )
    results: dict[str, HostScan | Exception] = {
        "dry": parse_scan("dry", scan(process(), decoy)),
        "freed": parse_scan("freed", scan(freed, decoy, drain=True)),
        "hung": parse_scan("hung", scan(hung, drain=True)),
        "gone": HostUnreachable("gone", "10.0.0.9", "connection refused"),
    }
    lines = report_lines(results)
    assert lines[0] == (
        "dry: 2 runc init processes, 1 hung the incident's way (dry run: nothing changed)"
    )
    assert "PID 4242 (runc:[2:INIT], S in pipe_write): would drain fd 3" in lines[1]
    assert lines[2].endswith("left alone: its pipe's capacity is 65536 bytes, not 8192")
    assert any("drained 24576 bytes from fd 3" in line and "then exited" in line for line in lines)
    assert "gone: FAILED: gone (10.0.0.9): connection refused" in lines
    assert failed_hosts(results) == ["hung", "gone"]
    data = json.loads(report_json(results))
    assert data["errors"] == {"gone": "gone (10.0.0.9): connection refused"}
    assert data["hosts"]["freed"]["processes"][0]["outcome"] == "exited"


# ---------------------------------------------------------------------------------------------
# The host-side program under Python 3.6, in a mount namespace of this machine


def namespace_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not PYTHON36.exists():
        return f"no {PYTHON36}"
    missing = [tool for tool in ("unshare", "nsenter", "setsid") if not shutil.which(tool)]
    return f"missing {', '.join(missing)}" if missing else None


def run_helper(fake: Fake, *args: str) -> dict[str, Any]:
    """The helper inside the fakes' mount namespace, where it sees them and nothing else."""
    done = subprocess.run(
        ["nsenter", f"--mount=/proc/{fake.pid}/ns/mnt", "--", str(PYTHON36), "-I", "-", *args],
        input=helper_source(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(namespace_unavailable() is not None, reason=str(namespace_unavailable()))
def test_helper_on_python36(tmp_path: Path) -> None:
    def in_new_namespace(script: str) -> None:
        subprocess.run(["unshare", "--mount", "sh", "-c", script], check=True, timeout=30)

    fakes = start_fakes(in_new_namespace, tmp_path, ["stuck", "decoy-64k", "decoy-stdout"])
    try:
        stuck, big, stdout = fakes
        dry = {p["pid"]: p for p in run_helper(stuck)["processes"]}
        # The decoy's forked pipe-reader has the command line `runc init` but renamed itself
        # `pipe-reader`: not a runc init (for audit neither).
        assert set(dry) == {stuck.pid, big.pid, stdout.pid}
        assert [p["pid"] for p in dry.values() if p["matched"]] == [stuck.pid]
        assert dry[stuck.pid]["action"] == "would drain"
        assert queued(stuck.pid, dry[stuck.pid]["read_fd"]) == 8192
        drained = {p["pid"]: p for p in run_helper(stuck, "--drain")["processes"]}
        assert drained[stuck.pid]["outcome"] == "exited"
        assert json.loads(stuck.marker.read_text())["written"] == 3 * 8192 + 1000
        assert state(stuck.pid) in ("gone", "Z")
        for fake in (big, stdout):
            assert drained[fake.pid]["action"] == "none"
            assert wchan(fake.pid) in ("pipe_write", "anon_pipe_write")
        assert queued(big.pid, 3) == 65536 and syscall(big.pid) == "1 0x4"
        assert queued(stdout.pid, 1) == 65536 and syscall(stdout.pid) == "1 0x1"
    finally:
        kill(fakes)
