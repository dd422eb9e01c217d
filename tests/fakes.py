"""Start and inspect the fake hung `runc init` processes of `programs/fake_runc_init.py`.

They run on a lab host (or in a mount namespace of this machine), which shares this machine's
PIDs and /tmp, so a test sees their /proc entries and kills them by PID.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shlex
import signal
import struct
import termios
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

PROGRAM = Path(__file__).parent / "programs" / "fake_runc_init.py"
PYTHON = "/usr/bin/python3"  # not a wrapper that re-executes: `exec -a` must stick
BLOCKED = ("pipe_write", "anon_pipe_write")


@dataclass
class Fake:
    mode: str
    pids: list[int]  # the process, then its pipe-reader child (decoy-stdout)
    starts: list[int]  # their start times (clock ticks after boot): a reused PID is not theirs
    marker: Path  # written by `stuck` once its write returned

    @property
    def pid(self) -> int:
        return self.pids[0]


def start_fakes(run: Callable[[str], object], directory: Path, modes: Iterable[str]) -> list[Fake]:
    """Start one fake per mode with `run` (a shell on the host) and wait until all block.

    `directory` must be visible to the host at the same path (/tmp is)."""
    (directory / "init").write_text(PROGRAM.read_text())
    modes = list(modes)
    lines = [f"cd {shlex.quote(str(directory))}"]
    for mode in modes:
        argv0 = PYTHON if mode == "not-runc" else "runc"
        env = f"FAKE_MODE={mode} FAKE_PIDFILE={mode}.pid FAKE_MARKER={mode}.done"
        command = f"exec -a {argv0} {PYTHON} init"
        lines.append(f"({env} setsid bash -c {shlex.quote(command)} </dev/null >/dev/null 2>&1 &)")
    run("\n".join(lines))
    fakes: list[Fake] = []
    try:
        for mode in modes:
            pidfile = directory / f"{mode}.pid"
            wait_for(pidfile.exists, f"{mode} did not start")
            pids = [int(word) for word in pidfile.read_text().split()]
            starts = [start_ticks(pid) for pid in pids]
            fakes.append(Fake(mode, pids, starts, directory / f"{mode}.done"))
            wait_for(functools.partial(blocked, pids[0]), f"{mode} did not block")
    except BaseException:
        kill(fakes)
        raise
    return fakes


def wait_for(condition: Callable[[], bool], message: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.02)


def blocked(pid: int) -> bool:
    return wchan(pid) in BLOCKED


def wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def state(pid: int) -> str:
    """The process state letter, or "gone"."""
    fields = _stat(pid)
    return fields[0] if fields else "gone"


def start_ticks(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[19]) if fields else -1


def syscall(pid: int) -> str:
    return " ".join(Path(f"/proc/{pid}/syscall").read_text().split()[:2])


def queued(pid: int, fd: int) -> int:
    """Bytes waiting in the pipe behind `pid`'s `fd`, without reading any."""
    handle = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)
    try:
        buffer = fcntl.ioctl(handle, termios.FIONREAD, struct.pack("i", 0))
        return int(struct.unpack("i", buffer)[0])
    finally:
        os.close(handle)


def kill(fakes: Iterable[Fake]) -> None:
    """SIGKILL every process the fakes started that still runs, by PID."""
    for fake in fakes:
        for pid, start in zip(fake.pids, fake.starts, strict=True):
            if start_ticks(pid) == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
