"""`unstick` on the lab: the real hung runc init of rc93 (`lab.stick`: the trigger hung container
lab-stuck's runc init writing its seccomp program into a 2-page pipe) beside decoys that match
only part of the signature. The dry run changes nothing; `--yes` frees the hung one and leaves
every decoy blocked and its pipes unread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.lab import hostdef
from tests.conftest import LabFleet
from tests.fakes import BLOCKED, kill, queued, start_fakes, state, syscall, wchan

MODES = ["decoy-64k", "decoy-stdout", "not-runc"]


def test_unstick_frees_the_hung_runc_init_and_nothing_else(
    lab: LabFleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, other = lab.full_hosts[0], lab.light_hosts[0]
    inventory = str(lab.inventory)
    seed = lab.stick(host)
    fakes = start_fakes(lambda script: lab.ssh(host, script), tmp_path, MODES)
    try:
        big, to_stdout, not_runc = fakes
        pipes = {(big.pid, 3): 65536, (to_stdout.pid, 1): 65536, (not_runc.pid, 3): 8192}
        blocked = {pid: syscall(pid) for pid in (seed.pid, *(fake.pid for fake in fakes))}

        def unchanged(pids_left: list[int]) -> None:
            for pid in pids_left:
                assert wchan(pid) in BLOCKED and syscall(pid) == blocked[pid], pid
            for (pid, fd), size in pipes.items():
                if pid in pids_left:
                    assert queued(pid, fd) == size, (pid, fd)

        # Dry run: lists, changes nothing; the other host does not see this host's processes.
        code = main(["unstick", "-i", inventory, "--limit", f"{host.name}:{other.name}"])
        out = capsys.readouterr().out
        assert code == ExitCode.OK
        assert f"{host.name}: 3 runc init processes, 1 hung the incident's way (dry run" in out
        assert f"PID {seed.pid} (runc:[2:INIT], S in anon_pipe_write): would drain fd " in out
        assert "8192 of 8192 bytes queued" in out
        assert (
            f"PID {big.pid} (runc:[2:INIT], S in anon_pipe_write): left alone: its pipe's "
            "capacity is 65536 bytes, not 8192" in out
        )
        assert (
            f"PID {to_stdout.pid} (runc:[2:INIT], S in anon_pipe_write): left alone: it does not "
            "hold the read end of the pipe it writes (fd 1)" in out
        )
        assert f"PID {not_runc.pid} " not in out
        assert f"{other.name}: 0 runc init processes" in out
        unchanged([seed.pid, *(fake.pid for fake in fakes)])

        # --yes: the hung one is drained and goes on. rc93 then reads back the rest of its
        # program, which lost its first 8 KiB, and fails: runc init exits, the container stays
        # "created" (docker start failed), as after workaround A's `cat /proc/PID/fd/N`.
        code = main(["unstick", "-i", inventory, "--limit", host.name, "--yes", "--json"])
        report = json.loads(capsys.readouterr().out)
        assert code == ExitCode.OK
        processes = {p["pid"]: p for p in report["hosts"][host.name]["processes"]}
        freed = processes[seed.pid]
        assert (freed["action"], freed["outcome"]) == ("drained", "exited")
        assert freed["capacity"] == 8192 and 8192 <= freed["drained_bytes"] <= 32768
        assert state(seed.pid) in ("gone", "Z")
        inspect = ["docker", "inspect", "-f", "{{.State.Status}}", hostdef.STUCK_CONTAINER]
        assert lab.ssh(host, inspect).stdout == "created\n"
        for fake in (big, to_stdout):
            assert processes[fake.pid]["action"] == "none"
        unchanged([big.pid, to_stdout.pid, not_runc.pid])
    finally:
        kill(fakes)
        lab.reset(host)
