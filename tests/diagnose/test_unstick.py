"""`unstick` without the lab: the controller's parser and report, and the host script under
dash, bash --posix and busybox sh in a mount namespace of this machine against the decoys of
`programs/decoys.sh` (real processes blocked writing real pipes)."""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from orchestrator.diagnose.unstick import (
    HostScan,
    failed_hosts,
    parse_scan,
    report_json,
    report_lines,
    report_markdown,
    unstick_script,
)
from orchestrator.errors import FactsError, HostUnreachable
from orchestrator.host.runcinfo import is_runc_init
from tests.fakes import BLOCKED, has_pid, kill, queued, start_fakes, state, syscall, wait_for, wchan

HEADER = "runc-rollout-unstick 2 uid=0 arch=x86_64 drain={drain} max_bytes=65536 max_cs=1000\n"
HUNG = """@proc 4242
start=98765
comm=runc:[2:INIT]
cmdline=runc init
state=S
wchan=pipe_write
syscall=1 0x4
write_fd=4
read_fd=3
pipe_inode=1234
write_bytes=14104
shared_with=
fail=
"""


def output(*records: str, drain: bool = False) -> str:
    return HEADER.format(drain=int(drain)) + "".join(records)


def record(text: str = HUNG, **changes: str) -> str:
    lines = dict(line.split("=", 1) for line in text.splitlines()[1:])
    lines.update(changes)
    return text.splitlines()[0] + "\n" + "".join(f"{k}={v}\n" for k, v in lines.items())


def test_unstick_script_header() -> None:
    script = unstick_script(drain=True, max_bytes=4096, max_seconds=2.5, deadline=60)
    header = script.split("\n# unstick:")[0] + "\n"
    for line in (
        "DRAIN=1",
        "MAX_BYTES=4096",
        "MAX_CS=250",
        "SETTLE_CS=100",
        "DEADLINE_CS=6000",
        "RUNC_COMMS='*runc* exe'",
        "PIPE_WCHANS='pipe_write anon_pipe_write pipe_wait'",
        "WRITE_CALLS='x86_64:1:20 aarch64:64:66'",
        "CAPACITY=8192",
        "MAX_PROGRAM=32768",
    ):
        assert f"\n{line}\n" in header, line
    assert "DRAIN=0" in unstick_script(drain=False, max_bytes=1, max_seconds=1, deadline=1)


def test_parse_scan() -> None:
    scan = parse_scan("n1", "motd noise\n" + output(record(action="would drain")))
    hung = scan.processes[0]
    assert (hung.pid, hung.start_ticks, hung.read_fd, hung.write_bytes) == (4242, 98765, 3, 14104)
    assert (hung.matched, hung.reason, hung.action, hung.shared_with) == (
        True,
        None,
        "would drain",
        [],
    )
    assert hung.cmdline == "runc init" and hung.syscall == "1 0x4"
    with pytest.raises(FactsError, match="needs root"):
        parse_scan("n1", output().replace("uid=0", "uid=1000"))
    with pytest.raises(FactsError, match="no report"):
        parse_scan("n1", "sh: 1: awk: not found\n")
    with pytest.raises(FactsError, match="unexpected output"):
        parse_scan("n1", output(record(read_fd="3; rm -rf /")))
    with pytest.raises(FactsError, match="unexpected output"):
        parse_scan("n1", output(record(action="drained", outcome="who knows")))
    with pytest.raises(FactsError, match="unexpected output"):
        parse_scan("n1", output().replace(" 2 ", " 1 "))


def test_what_a_host_says_is_bounded_and_made_safe() -> None:
    scan = parse_scan("n1", output(record(comm="runc:[\x1b[31m", cmdline="x" * 5000)))
    process = scan.processes[0]
    assert "\x1b" not in process.comm and "\\x1b" in process.comm
    assert len(process.cmdline) == 512


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"state": "R", "wchan": "0"}, "not blocked in pipe_write (state R, wchan 0)"),
        ({"fail": "arch"}, "cannot tell which fd it writes on x86_64"),
        ({"fail": "nosyscall"}, "cannot read /proc/4242/syscall (ptrace restrictions?)"),
        (
            {"syscall": "0 0x3", "fail": "notwrite"},
            "not inside write(2) (/proc/4242/syscall: 0 0x3)",
        ),
        ({"fail": "notpipe"}, "fd 4 it writes is not the write end of a pipe"),
        ({"fail": "noread"}, "it does not hold the read end of the pipe it writes (fd 4)"),
        ({"fail": "writev"}, "it writes with writev(2), whose length /proc does not show"),
        (
            {"write_bytes": "4096", "fail": "length"},
            "it writes 4096 bytes at once: not a seccomp program overflowing a 8192-byte pipe "
            "(a multiple of 8, 8193-32768 bytes)",
        ),
        ({"shared_with": "17 18 ", "fail": "shared"}, "its pipe is also held by PID 17 18"),
        ({"fail": "changed"}, "it moved on while it was examined"),
        ({"fail": "nonsense"}, "unknown check 'nonsense' failed"),
    ],
)
def test_reasons(changes: dict[str, str], reason: str) -> None:
    changes.setdefault("fail", "state")
    process = parse_scan("n1", output(record(**changes, action="none"))).processes[0]
    assert (process.matched, process.reason) == (False, reason)


def test_report_and_verdict() -> None:
    decoy = record(pid="5", shared_with="6 ", fail="shared", action="none").replace(
        "@proc 4242", "@proc 5"
    )
    freed = record(
        action="drained", drained_bytes="14104", drain_stop="unblocked", outcome="exited"
    )
    hung = record(
        action="drained",
        drained_bytes="65536",
        drain_stop="bytes",
        outcome="still blocked",
        after="state S, wchan pipe_write, syscall 1",
    )
    late = record(action="skipped", drain_stop="budget")
    results: dict[str, HostScan | Exception] = {
        "dry": parse_scan("dry", output(record(action="would drain"), decoy)),
        "freed": parse_scan("freed", output(freed, decoy, drain=True)),
        "hung": parse_scan("hung", output(hung, drain=True)),
        "late": parse_scan("late", output(late, drain=True)),
        "gone": HostUnreachable("gone", "10.0.0.9", "connection refused"),
    }
    lines = report_lines(results)
    assert lines[:3] == [
        "dry: 2 runc init processes, 1 hung the incident's way (dry run: nothing changed)",
        "  PID 4242 (runc:[2:INIT], S in pipe_write): would drain fd 3 (pipe 1234; it is "
        "blocked writing 14104 bytes to fd 4; no other process holds the pipe; capacity not "
        "measurable here)",
        "  PID 5 (runc:[2:INIT], S in pipe_write): left alone: its pipe is also held by PID 6",
    ]
    assert (
        "  PID 4242 (runc:[2:INIT], S in pipe_write): drained 14104 bytes from fd 3 (pipe 1234; "
        "stopped: writer unblocked); then exited" in lines
    )
    assert any(
        "stopped: byte limit (65536) reached); then still blocked: state S" in line
        for line in lines
    )
    assert (
        "  PID 4242 (runc:[2:INIT], S in pipe_write): matches, not drained: this run's time "
        "budget is spent" in lines
    )
    assert "gone: FAILED: gone (10.0.0.9): connection refused" in lines
    assert failed_hosts(results) == ["hung", "late", "gone"]
    markdown = report_markdown(results).splitlines()
    assert markdown[:3] == [
        "### runc-rollout unstick: 5 hosts",
        "",
        "- dry: 2 runc init processes, 1 hung the incident's way \\(dry run: nothing changed\\)",
    ]
    assert markdown[3].startswith("  - PID 4242 \\(runc:\\[2:INIT\\], S in pipe\\_write\\)")
    assert len(markdown) == len(lines) + 2
    data = report_json(results)
    assert '"outcome": "exited"' in data and '"gone": "gone (10.0.0.9): connection refused"' in data


# ---------------------------------------------------------------------------------------------
# The host script in a mount namespace of this machine: it sees the decoys started there and
# nothing else (no other engineer's runc init).

SHELLS = ["dash", "bash --posix", "busybox sh"]


def namespace_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    tools = ("unshare", "nsenter", "setsid", "dash", "bash", "busybox")
    missing = [tool for tool in tools if not shutil.which(tool)]
    return f"missing {', '.join(missing)}" if missing else None


@pytest.mark.skipif(namespace_unavailable() is not None, reason=str(namespace_unavailable()))
@pytest.mark.parametrize("shell", SHELLS)
def test_host_script_in_a_namespace(tmp_path: Path, shell: str) -> None:
    def in_new_namespace(script: str) -> None:
        subprocess.run(["unshare", "--mount", "sh", "-c", script], check=True, timeout=30)

    modes = ["deadlock", "big", "shared", "stdout", "not-runc"]
    fakes = start_fakes(in_new_namespace, tmp_path, modes)
    deadlock, big, shared, to_stdout, not_runc = fakes
    blocked = {fake.pid: syscall(fake.pid) for fake in fakes}

    def run(drain: bool, max_bytes: int, max_seconds: float) -> HostScan:
        script = tmp_path / "unstick.sh"
        text = unstick_script(
            drain=drain, max_bytes=max_bytes, max_seconds=max_seconds, deadline=60
        )
        script.write_text(text)
        command = ["nsenter", f"--mount=/proc/{deadlock.pid}/ns/mnt", "--", *shlex.split(shell)]
        done = subprocess.run(
            [*command, str(script)], capture_output=True, text=True, timeout=60, check=True
        )
        assert done.stderr == ""
        return parse_scan("here", done.stdout)

    try:
        dry = {p.pid: p for p in run(False, 65536, 10).processes}
        assert set(dry) == {deadlock.pid, big.pid, shared.pid, to_stdout.pid}
        assert dry[deadlock.pid].action == "would drain"
        assert dry[deadlock.pid].write_bytes == 16384
        assert "100000 bytes" in str(dry[big.pid].reason)
        assert dry[shared.pid].shared_with == [shared.pids[1]]
        assert "read end" in str(dry[to_stdout.pid].reason)
        for fake in fakes:
            assert queued(fake.pid, 1) == (65536, 65536), fake.mode
        # A 64 KiB pipe filled before a 16 KiB write is, to sh, the incident's shape: drained
        # within the bounds; it writes on, so it is reported still blocked.
        drained = {p.pid: p for p in run(True, 12288, 10).processes}
        stuck = drained[deadlock.pid]
        assert (stuck.action, stuck.drained_bytes, stuck.outcome) == (
            "drained",
            12288,
            "still blocked",
        )
        assert stuck.drain_stop == "byte limit (12288) reached"
        drained = {p.pid: p for p in run(True, 1 << 30, 0.3).processes}
        assert drained[deadlock.pid].drain_stop == "time limit (0.3s) reached"
        assert not_runc.pid not in drained
        for fake in (big, shared, to_stdout, not_runc):
            assert fake is not_runc or drained[fake.pid].action == "none"
            assert wchan(fake.pid) in BLOCKED and syscall(fake.pid) == blocked[fake.pid]
            assert queued(fake.pid, 1) == (65536, 65536), fake.mode
        assert state(deadlock.pid) != "gone"
    finally:
        kill(fakes)


# Processes with a runc-like comm or command line, blocked opening a FIFO: (comm, how started).
NAMED = [
    ("runc", "exec ./runc init"),  # runc before its init renamed itself
    ("runc", "exec ./runc run"),
    ("exe", "exec ./exe init"),
    ("exe", "exec bash -c 'exec -a /usr/bin/runc ./exe init'"),  # re-executed /proc/self/exe
    ("exe", "exec bash -c 'exec -a docker-runc ./exe init'"),
    ("notit", "exec bash -c 'exec -a runc ./notit init'"),  # `exec -a runc` alone
]


def comm_is(pid: int, comm: str) -> bool:
    return Path(f"/proc/{pid}/comm").read_text().strip() == comm


@pytest.mark.skipif(namespace_unavailable() is not None, reason=str(namespace_unavailable()))
@pytest.mark.parametrize("shell", SHELLS)
def test_the_script_and_is_runc_init_agree(tmp_path: Path, shell: str) -> None:
    """The script lists exactly the processes `is_runc_init` calls runc init."""
    lines = [
        "mkfifo init run",
        *(f'cp "$(command -v cat)" {comm}' for comm in ("runc", "exe", "notit")),
    ]
    for index, (_, how) in enumerate(NAMED):
        lines.append(
            f"sh -c {shlex.quote(f'echo $$ >{index}.pid; {how}')} </dev/null >/dev/null 2>&1 &"
        )
    subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"cd {shlex.quote(str(tmp_path))}\n" + "\n".join(lines)],
        check=True,
        timeout=30,
    )
    pidfiles = [tmp_path / f"{index}.pid" for index in range(len(NAMED))]
    try:
        for pidfile in pidfiles:
            wait_for(functools.partial(has_pid, pidfile), f"{pidfile.name} did not start")
        pids = [int(pidfile.read_text()) for pidfile in pidfiles]
        for pid, (comm, _) in zip(pids, NAMED, strict=True):
            wait_for(functools.partial(comm_is, pid, comm), f"{comm} did not start")
        script = tmp_path / "unstick.sh"
        script.write_text(unstick_script(drain=False, max_bytes=1, max_seconds=1, deadline=60))
        command = ["nsenter", f"--mount=/proc/{pids[0]}/ns/mnt", "--", *shlex.split(shell)]
        done = subprocess.run(
            [*command, str(script)], capture_output=True, text=True, timeout=60, check=True
        )
        listed = {process.pid for process in parse_scan("here", done.stdout).processes}
        expected = set()
        for pid in pids:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
            if is_runc_init(comm, [word for word in argv if word]):
                expected.add(pid)
        assert len(expected) == 3
        assert listed == expected
    finally:
        for pidfile in pidfiles:
            if has_pid(pidfile):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pidfile.read_text()), signal.SIGKILL)
