"""Start and inspect the decoy `runc init` processes of `programs/decoys.sh`.

They run on a lab host, which shares this machine's PIDs and /tmp, so a test sees their /proc
entries, measures their pipes from here (never reading them) and kills them by PID.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shlex
import shutil
import signal
import struct
import termios
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

PROGRAM = Path(__file__).parent / "programs" / "decoys.sh"
READERS = ("shared", "stdout")  # modes with a reader process beside the writer
BLOCKED = ("pipe_write", "anon_pipe_write")
F_GETPIPE_SZ = 1032


@dataclass
class Fake:
    mode: str
    pids: list[int]  # the writer, then its reader if it has one
    starts: list[int]  # their start times (clock ticks after boot): a reused PID is not theirs

    @property
    def pid(self) -> int:
        return self.pids[0]


def start_fakes(run: Callable[[str], object], directory: Path, modes: Iterable[str]) -> list[Fake]:
    """Start one decoy per mode with `run` (a shell on the host) and wait until all block.

    `directory` must be visible to the host at the same path (/tmp is)."""
    shutil.copy(PROGRAM, directory / "decoys.sh")
    modes = list(modes)
    lines = [f"cd {shlex.quote(str(directory))}", "for name in 'runc:[2:INIT]' writer; do"]
    lines += ['    cp "$(command -v dd)" "$name" || exit 1', "done"]
    lines += [f"(setsid sh decoys.sh . {mode} </dev/null >/dev/null 2>&1 &)" for mode in modes]
    run("\n".join(lines))
    fakes: list[Fake] = []
    try:
        for mode in modes:
            files = [directory / f"{mode}.w"]
            if mode in READERS:
                files.append(directory / f"{mode}.r")
            for file in files:
                wait_for(functools.partial(has_pid, file), f"{mode} did not start")
            pids = [int(file.read_text()) for file in files]
            fakes.append(Fake(mode, pids, [start_ticks(pid) for pid in pids]))
            wait_for(functools.partial(blocked, pids[0]), f"{mode} did not block")
    except BaseException:
        kill(fakes)
        raise
    return fakes


def has_pid(file: Path) -> bool:
    return file.exists() and file.read_text().strip() != ""


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


def queued(pid: int, fd: int) -> tuple[int, int]:
    """Bytes waiting in the pipe behind `pid`'s `fd`, and its capacity, without reading any."""
    handle = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK)
    try:
        buffer = fcntl.ioctl(handle, termios.FIONREAD, struct.pack("i", 0))
        return int(struct.unpack("i", buffer)[0]), fcntl.fcntl(handle, F_GETPIPE_SZ)
    finally:
        os.close(handle)


def kill(fakes: Iterable[Fake]) -> None:
    """SIGKILL every process the fakes started that still runs, by PID."""
    for fake in fakes:
        for pid, start in zip(fake.pids, fake.starts, strict=True):
            if start_ticks(pid) == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
