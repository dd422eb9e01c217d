"""`unstick` on the lab: a real process hung the incident's way (a pipe of its own shrunk to two
pages, written past its capacity) beside decoys that match only part of the signature. The dry
run changes nothing; `--yes` frees the hung one and leaves every decoy blocked and its pipes
unread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import ExitCode
from tests.conftest import LabFleet
from tests.fakes import BLOCKED, kill, queued, start_fakes, state, syscall, wchan

MODES = ["stuck", "decoy-64k", "decoy-stdout", "not-runc"]


def test_unstick_frees_the_hung_runc_init_and_nothing_else(
    lab: LabFleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    host, other = lab.light_hosts[0], lab.full_hosts[0]
    inventory = str(lab.inventory)
    fakes = start_fakes(lambda script: lab.ssh(host, script), tmp_path, MODES)
    try:
        stuck, big, to_stdout, not_runc = fakes
        pipes = {  # (pid, fd) of each pipe and the bytes it holds
            (stuck.pid, 3): 8192,
            (big.pid, 3): 65536,
            (to_stdout.pid, 1): 65536,
            (not_runc.pid, 3): 8192,
        }
        blocked = {fake.pid: syscall(fake.pid) for fake in fakes}

        def unchanged(fakes_left: list[int]) -> None:
            for pid in fakes_left:
                assert wchan(pid) in BLOCKED and syscall(pid) == blocked[pid], pid
            for (pid, fd), size in pipes.items():
                if pid in fakes_left:
                    assert queued(pid, fd) == size, (pid, fd)

        # Dry run: lists, changes nothing; the other host does not see this host's processes.
        code = main(["unstick", "-i", inventory, "--limit", f"{host.name}:{other.name}"])
        out = capsys.readouterr().out
        assert code == ExitCode.OK
        assert f"{host.name}: 4 runc init processes, 1 hung the incident's way (dry run" in out
        assert f"PID {stuck.pid} (runc:[2:INIT], S in anon_pipe_write): would drain fd 3" in out
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
        unchanged([fake.pid for fake in fakes])
        assert not stuck.marker.exists()

        # --yes: the hung one is drained and goes on (here: finishes its write, exits).
        code = main(["unstick", "-i", inventory, "--limit", host.name, "--yes", "--json"])
        report = json.loads(capsys.readouterr().out)
        assert code == ExitCode.OK
        processes = {p["pid"]: p for p in report["hosts"][host.name]["processes"]}
        freed = processes[stuck.pid]
        assert (freed["action"], freed["outcome"]) == ("drained", "exited")
        assert freed["read_fd"] == 3 and freed["write_fd"] == 4 and freed["capacity"] == 8192
        assert 8192 <= freed["drained_bytes"] <= 3 * 8192 + 1000
        done = json.loads(stuck.marker.read_text())
        assert done["written"] == 3 * 8192 + 1000
        assert freed["drained_bytes"] + done["read_back"] == done["written"]
        assert state(stuck.pid) in ("gone", "Z")
        for fake in (big, to_stdout):
            assert processes[fake.pid]["action"] == "none"
        unchanged([big.pid, to_stdout.pid, not_runc.pid])
    finally:
        kill(fakes)
