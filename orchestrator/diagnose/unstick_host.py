"""The program `unstick` runs on a host: standard library only, Python 3.6 or later (CentOS 7's
python3), sent on stdin as `python3 -I - ARGS` and never installed. Prints one JSON document.

It examines every `runc init` process of the host and checks the incident's signature part by
part, recording the first part that fails:

1. the process is `runc init` (`is_runc_init`: comm `runc:[...]`, or a runc-like comm and a
   command line `.../runc init`; audit's facts use the same function);
2. it sleeps (state S or D) in `pipe_write` or `anon_pipe_write` (its wchan);
3. /proc/PID/syscall shows it inside write(2) or writev(2) on some fd W;
4. fd W is a pipe opened write-only, and another fd R of the process is the same pipe (same
   inode) opened read-only (flags from /proc/PID/fdinfo): it holds both ends of that one pipe;
5. opened through /proc/PID/fd/R, read-only and non-blocking, the pipe has data queued and a
   capacity (F_GETPIPE_SZ) of exactly 8192 bytes: two pages.

Step 5 opens that one pipe and reads nothing from it; no other pipe of the process is opened.
With `--drain` the pipe of each matching process is then read (the bytes are discarded) through
the fd opened in step 5, only while the process is still blocked writing fd W, and at most
`--max-bytes` bytes and `--max-seconds` seconds; then it is watched for `--settle` seconds to
see whether it exited or moved on. The bytes drained are lost to the process: for runc rc93 they
are the start of the seccomp program it is exporting to read back.

Processes count as this host's as in the facts script: all of them when this program runs in the
machine's initial mount namespace, else those in its namespace and those whose parent is.
"""

import argparse
import errno
import fcntl
import fnmatch
import json
import os
import platform
import select
import stat
import struct
import sys
import termios
import time

SCHEMA = 1
F_GETPIPE_SZ = 1032  # fcntl.F_GETPIPE_SZ exists only from Python 3.10
STUCK_CAPACITY = 8192
PIPE_WCHANS = ("pipe_write", "anon_pipe_write")  # anon_pipe_write from Linux 6.x
# write(2) and writev(2) by architecture, as /proc/PID/syscall numbers them.
WRITE_SYSCALLS = {"x86_64": (1, 20), "aarch64": (64, 66)}
SAMPLE = 0.02  # seconds between looks at a process
QUIET_SAMPLES = 5  # looks in a row not blocked on the pipe: the write has returned


def read_text(path: str) -> "str | None":
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return None


def parse_stat(text: str) -> "tuple[str, int, int] | None":
    """State, parent PID and start time (clock ticks after boot) from /proc/PID/stat."""
    fields = text.rpartition(")")[2].split()
    if len(fields) < 20:
        return None
    return fields[0], int(fields[1]), int(fields[19])


def parse_syscall(text: str) -> "tuple[int, int] | None":
    """(syscall number, first argument) from /proc/PID/syscall; None when it is running or
    blocked outside a system call (-1)."""
    fields = text.split()
    if len(fields) < 2 or not fields[0].isdigit():
        return None
    return int(fields[0]), int(fields[1], 16)


def parse_flags(fdinfo: str) -> "int | None":
    """The open flags (octal in /proc/PID/fdinfo/N) of one fd."""
    for line in fdinfo.splitlines():
        key, _, value = line.partition(":")
        if key == "flags":
            return int(value.strip(), 8)
    return None


# comm of runc before its init renames itself: its binary's name, or `exe` when re-executed
# through /proc/self/exe (globs: facts.py renders them into the facts script's `case`).
RUNC_COMMS = ("*runc*", "exe")


def is_runc_init(comm: str, argv: "list[str]") -> bool:
    """What a `runc init` process is, for unstick and (facts.py imports this) for audit: comm
    `runc:[N:NAME]` once runc's init renamed itself; before that, a comm of RUNC_COMMS and the
    command line `.../NAMErunc init`."""
    if comm.startswith("runc:["):
        return True
    if not any(fnmatch.fnmatchcase(comm, glob) for glob in RUNC_COMMS):
        return False
    return len(argv) > 1 and argv[0].rsplit("/", 1)[-1].endswith("runc") and argv[1] == "init"


def mount_ns(pid: "int | str") -> "str | None":
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


class Snapshot:
    """What /proc says about one process at one moment."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.comm = (read_text(f"/proc/{pid}/comm") or "").strip()
        raw = read_text(f"/proc/{pid}/cmdline") or ""
        self.argv = [word for word in raw.split("\0") if word]
        parsed = parse_stat(read_text(f"/proc/{pid}/stat") or "")
        self.alive = parsed is not None
        self.state, self.ppid, self.start = parsed if parsed else ("", 0, 0)
        self.wchan = (read_text(f"/proc/{pid}/wchan") or "").strip()
        self.syscall_text = (read_text(f"/proc/{pid}/syscall") or "").strip()
        self.syscall = parse_syscall(self.syscall_text)

    def same_process(self, start: int) -> bool:
        return self.alive and self.start == start and self.state not in ("Z", "X")

    def writing(self, fd: int, calls: "tuple[int, ...]") -> bool:
        """Asleep in a pipe write, inside write(2)/writev(2) on `fd`."""
        return (
            self.state in ("S", "D")
            and self.wchan in PIPE_WCHANS
            and self.syscall is not None
            and self.syscall[0] in calls
            and self.syscall[1] == fd
        )

    def describe(self) -> str:
        if not self.alive or self.state in ("Z", "X"):
            return "exited"
        call = self.syscall_text.split()[0] if self.syscall_text else "?"
        return f"{self.comm}, state {self.state}, wchan {self.wchan}, syscall {call}"


def pipe_inode(pid: int, fd: int) -> "int | None":
    try:
        link = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    if link.startswith("pipe:[") and link.endswith("]"):
        return int(link[6:-1])
    return None


def fd_access(pid: int, fd: int) -> "int | None":
    flags = parse_flags(read_text(f"/proc/{pid}/fdinfo/{fd}") or "")
    return None if flags is None else flags & os.O_ACCMODE


def read_end(pid: int, inode: int, write_fd: int) -> "int | None":
    """The lowest fd of the process, other than `write_fd`, reading pipe `inode`."""
    try:
        fds = sorted(int(name) for name in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    for fd in fds:
        if fd != write_fd and pipe_inode(pid, fd) == inode and fd_access(pid, fd) == os.O_RDONLY:
            return fd
    return None


def queued_bytes(fd: int) -> int:
    buffer = fcntl.ioctl(fd, termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", buffer)[0])


class Examined:
    """One runc init process and how far it matched the signature."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.write_fd: int | None = None
        self.read_fd: int | None = None
        self.inode: int | None = None
        self.capacity: int | None = None
        self.queued: int | None = None
        self.reason: str | None = None  # the first part of the signature that failed
        self.handle: int | None = None  # our read-only fd on the pipe, once matched
        self.action = "none"
        self.drained = 0
        self.stop: str | None = None
        self.outcome: str | None = None
        self.after: str | None = None

    def record(self) -> "dict[str, object]":
        snap = self.snap
        return {
            "pid": snap.pid,
            "start_ticks": snap.start,
            "comm": snap.comm,
            "cmdline": " ".join(snap.argv),
            "state": snap.state,
            "wchan": snap.wchan,
            "syscall": " ".join(snap.syscall_text.split()[:2]),
            "write_fd": self.write_fd,
            "read_fd": self.read_fd,
            "pipe_inode": self.inode,
            "capacity": self.capacity,
            "queued": self.queued,
            "matched": self.reason is None,
            "reason": self.reason,
            "action": self.action,
            "drained_bytes": self.drained,
            "drain_stop": self.stop,
            "outcome": self.outcome,
            "after": self.after,
        }


def examine(snap: Snapshot, calls: "tuple[int, ...]") -> Examined:
    """Check every part of the signature; on a match, keep the pipe open read-only."""
    found = Examined(snap)
    pid = snap.pid
    if snap.state not in ("S", "D") or snap.wchan not in PIPE_WCHANS:
        found.reason = f"not blocked in pipe_write (state {snap.state}, wchan {snap.wchan})"
        return found
    if not calls:
        found.reason = f"cannot tell which fd it writes on {platform.machine()}"
        return found
    if not snap.syscall_text:
        found.reason = f"cannot read /proc/{pid}/syscall (ptrace restrictions?)"
        return found
    if snap.syscall is None or snap.syscall[0] not in calls:
        found.reason = f"not inside write(2) (/proc/{pid}/syscall: {snap.syscall_text})"
        return found
    found.write_fd = snap.syscall[1]
    found.inode = pipe_inode(pid, found.write_fd)
    if found.inode is None or fd_access(pid, found.write_fd) != os.O_WRONLY:
        found.reason = f"fd {found.write_fd} it writes is not the write end of a pipe"
        return found
    found.read_fd = read_end(pid, found.inode, found.write_fd)
    if found.read_fd is None:
        found.reason = f"it does not hold the read end of the pipe it writes (fd {found.write_fd})"
        return found
    try:
        handle = os.open(
            f"/proc/{pid}/fd/{found.read_fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
        )
    except OSError as error:
        found.reason = f"cannot open its pipe: {error.strerror}"
        return found
    info = os.fstat(handle)
    if not stat.S_ISFIFO(info.st_mode) or info.st_ino != found.inode:
        os.close(handle)
        found.reason = f"fd {found.read_fd} changed while it was examined"
        return found
    found.capacity = fcntl.fcntl(handle, F_GETPIPE_SZ)
    found.queued = queued_bytes(handle)
    if found.capacity != STUCK_CAPACITY or not found.queued:
        os.close(handle)
        if found.capacity != STUCK_CAPACITY:
            found.reason = f"its pipe's capacity is {found.capacity} bytes, not {STUCK_CAPACITY}"
        else:
            found.reason = "its pipe is empty"
        return found
    found.handle = handle
    return found


def drain(found: Examined, calls: "tuple[int, ...]", max_bytes: int, max_seconds: float) -> None:
    """Read the matched pipe while its process is blocked writing it, within the bounds."""
    assert found.handle is not None and found.write_fd is not None
    pid, start, handle = found.snap.pid, found.snap.start, found.handle
    began = time.monotonic()
    quiet = 0
    while True:
        now = Snapshot(pid)
        if not now.same_process(start):
            found.stop = "process exited"
            return
        if not now.writing(found.write_fd, calls):
            quiet += 1
            if quiet >= QUIET_SAMPLES:
                found.stop = "writer unblocked"
                return
            time.sleep(SAMPLE)
            continue
        quiet = 0
        if found.drained >= max_bytes:
            found.stop = f"byte limit ({max_bytes}) reached"
            return
        if time.monotonic() - began >= max_seconds:
            found.stop = f"time limit ({max_seconds:g}s) reached"
            return
        readable, _, _ = select.select([handle], [], [], SAMPLE)
        if not readable:
            continue
        try:
            chunk = os.read(handle, min(65536, max_bytes - found.drained))
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EINTR):
                continue
            raise
        if not chunk:
            found.stop = "pipe closed"
            return
        found.drained += len(chunk)


def settle(found: Examined, calls: "tuple[int, ...]", seconds: float) -> None:
    """Whether the process exited, moved on, or is blocked writing its pipe again."""
    assert found.write_fd is not None
    deadline = time.monotonic() + seconds
    while True:
        now = Snapshot(found.snap.pid)
        if not now.same_process(found.snap.start):
            found.outcome, found.after = "exited", "exited"
            return
        if time.monotonic() >= deadline:
            blocked = now.writing(found.write_fd, calls)
            found.outcome = "still blocked" if blocked else "moved on"
            found.after = now.describe()
            return
        time.sleep(SAMPLE)


def ours() -> "list[int]":
    """PIDs of this host's processes (see the module docstring)."""
    self_ns, init_ns = mount_ns("self"), mount_ns(1)
    pids = sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
    if self_ns == init_ns:
        return pids
    selected = []
    for pid in pids:
        if mount_ns(pid) == self_ns:
            selected.append(pid)
            continue
        parsed = parse_stat(read_text(f"/proc/{pid}/stat") or "")
        if parsed is not None and mount_ns(parsed[1]) == self_ns:
            selected.append(pid)
    return selected


def main(argv: "list[str]") -> int:
    parser = argparse.ArgumentParser(prog="unstick_host")
    parser.add_argument("--drain", action="store_true")
    parser.add_argument("--max-bytes", type=int, default=65536)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--deadline", type=float, default=240.0)
    args = parser.parse_args(argv)
    began = time.monotonic()
    calls = WRITE_SYSCALLS.get(platform.machine(), ())
    examined = []
    for pid in ours():
        if pid == os.getpid():
            continue
        snap = Snapshot(pid)
        if snap.alive and is_runc_init(snap.comm, snap.argv):
            examined.append(examine(snap, calls))
    for found in examined:
        if found.handle is None:
            continue
        if not args.drain:
            found.action = "would drain"
        elif time.monotonic() - began + args.max_seconds + args.settle > args.deadline:
            found.action = "skipped"
            found.stop = "not drained: this run's time budget is spent"
        else:
            found.action = "drained"
            drain(found, calls, args.max_bytes, args.max_seconds)
            settle(found, calls, args.settle)
        os.close(found.handle)
    report = {
        "schema_version": SCHEMA,
        "uid": os.geteuid(),
        "arch": platform.machine(),
        "drain": args.drain,
        "processes": [found.record() for found in examined],
    }
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
