"""`unstick` on lab hosts without Python (conftest's `no_python_lab`, as a minimal CentOS 7,
Flatcar or CoreOS node): the real hung runc init of rc93 (`lab.stick`: the trigger hung container
lab-stuck's runc init writing its seccomp program into a 2-page pipe) beside decoys that match
only part of the signature. The dry run opens no pipe; `--yes` frees the hung one and leaves every
decoy blocked and its pipes unread. The host script does the same under dash (the hosts' sh),
bash --posix and busybox sh."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.diagnose.unstick import DEADLINE, parse_scan, unstick_script
from orchestrator.errors import ExitCode
from orchestrator.lab import hostdef
from tests.conftest import LabFleet
from tests.fakes import BLOCKED, Fake, kill, queued, start_fakes, state, syscall, wchan

pytestmark = pytest.mark.lab

MODES = ["big", "shared", "stdout", "not-runc"]
# The pipe each decoy writes (its fd 1), and what it holds: 64 KiB, full.
FULL = (65536, 65536)


def unchanged(fakes: list[Fake], blocked: dict[int, str]) -> None:
    """Every decoy still blocked in the same write, its pipe full and unread."""
    for fake in fakes:
        assert wchan(fake.pid) in BLOCKED and syscall(fake.pid) == blocked[fake.pid], fake.mode
        assert queued(fake.pid, 1) == FULL, fake.mode


def test_unstick_frees_the_hung_runc_init_and_nothing_else(
    clean_no_python_lab: LabFleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = clean_no_python_lab
    host, other = lab.full_hosts[0], lab.light_hosts[0]
    inventory = str(lab.inventory)
    seed = lab.stick(host)
    fakes = start_fakes(lambda script: lab.ssh(host, script), tmp_path, MODES)
    try:
        big, shared, to_stdout, not_runc = fakes
        blocked = {fake.pid: syscall(fake.pid) for fake in fakes}

        # Dry run: lists, opens no pipe; the other host does not see this host's processes.
        began = time.monotonic()
        code = main(["unstick", "-i", inventory, "--limit", f"{host.name}:{other.name}"])
        dry_seconds = time.monotonic() - began
        out = capsys.readouterr().out
        assert code == ExitCode.OK, out
        assert f"{host.name}: 4 runc init processes, 1 hung the incident's way (dry run" in out
        where = "(runc:[2:INIT], S in anon_pipe_write)"
        assert f"PID {seed.pid} {where}: would drain fd " in out
        assert "no other process holds the pipe; capacity not measurable here)" in out
        assert (
            f"PID {big.pid} {where}: left alone: it writes 100000 bytes at once: not a seccomp "
            "program overflowing a 8192-byte pipe (a multiple of 8, 8193-32768 bytes)" in out
        )
        assert (
            f"PID {shared.pid} {where}: left alone: its pipe is also held by PID "
            f"{shared.pids[1]}" in out
        )
        assert (
            f"PID {to_stdout.pid} {where}: left alone: it does not hold the read end of the "
            "pipe it writes (fd 1)" in out
        )
        assert f"PID {not_runc.pid} " not in out
        assert f"{other.name}: 0 runc init processes" in out
        unchanged(fakes, blocked)

        # What the script found, checked from here: the incident's 2-page pipe, full, unread.
        code = main(["unstick", "-i", inventory, "--limit", host.name, "--json"])
        found = json.loads(capsys.readouterr().out)["hosts"][host.name]["processes"]
        hung = next(p for p in found if p["pid"] == seed.pid)
        assert hung["matched"] and hung["action"] == "would drain"
        assert hung["write_bytes"] % 8 == 0 and 8192 < hung["write_bytes"] <= 32768
        assert hung["shared_with"] == []
        assert queued(seed.pid, hung["read_fd"]) == (8192, 8192)
        assert wchan(seed.pid) in BLOCKED

        # --yes: the hung one is drained and goes on. rc93 then reads back the rest of its
        # program, which lost its first 8 KiB, and fails: runc init exits, the container stays
        # "created" (docker start failed), as after workaround A's `cat /proc/PID/fd/N`.
        began = time.monotonic()
        code = main(["unstick", "-i", inventory, "--limit", host.name, "--yes", "--json"])
        yes_seconds = time.monotonic() - began
        report = json.loads(capsys.readouterr().out)
        assert code == ExitCode.OK
        processes = {p["pid"]: p for p in report["hosts"][host.name]["processes"]}
        freed = processes[seed.pid]
        assert (freed["action"], freed["outcome"]) == ("drained", "exited")
        assert 8192 <= freed["drained_bytes"] <= freed["write_bytes"]
        assert state(seed.pid) in ("gone", "Z")
        inspect = ["docker", "inspect", "-f", "{{.State.Status}}", hostdef.STUCK_CONTAINER]
        assert lab.ssh(host, inspect).stdout == "created\n"
        for fake in (big, shared, to_stdout):
            assert processes[fake.pid]["action"] == "none"
        unchanged(fakes, blocked)
        print(f"unstick on {host.name}: dry run {dry_seconds:.2f}s, --yes {yes_seconds:.2f}s")
    finally:
        kill(fakes)
        lab.reset(host)


@pytest.mark.parametrize("shell", ["bash --posix", "busybox sh"])
def test_the_host_script_under_other_shells(
    clean_no_python_lab: LabFleet, tmp_path: Path, shell: str
) -> None:
    """The same decisions and the same drain under bash --posix and busybox sh."""
    lab = clean_no_python_lab
    host = lab.full_hosts[0]
    seed = lab.stick(host)
    fakes = start_fakes(lambda script: lab.ssh(host, script), tmp_path, MODES[:2])
    try:
        blocked = {fake.pid: syscall(fake.pid) for fake in fakes}
        scans = {}
        for drain in (False, True):
            script = tmp_path / f"unstick-{drain}.sh"
            text = unstick_script(drain=drain, max_bytes=65536, max_seconds=10, deadline=DEADLINE)
            script.write_text(text)
            scans[drain] = parse_scan(host.name, lab.ssh(host, f"{shell} {script}").stdout)
            if not drain:
                unchanged(fakes, blocked)
        dry = {p.pid: p for p in scans[False].processes}
        assert [pid for pid, p in dry.items() if p.matched] == [seed.pid]
        assert {str(dry[fake.pid].reason).split(":")[0] for fake in fakes} == {
            "it writes 100000 bytes at once",
            "its pipe is also held by PID " + str(fakes[1].pids[1]),
        }
        freed = next(p for p in scans[True].processes if p.pid == seed.pid)
        assert (freed.action, freed.outcome) == ("drained", "exited")
        assert state(seed.pid) in ("gone", "Z")
        unchanged(fakes, blocked)
    finally:
        kill(fakes)
        lab.reset(host)
