"""The pipe holder of the rc93 trigger (orchestrator/host/trigger.py): standard library only, Python
3.6 or later, run as root on a host (`python3 -I -c TEXT ARGS` or as a file; not `python3 -`
when `--stdin` is given, since that reads stdin to its end).

It drops to `--uid`/`--gid` and creates pipes as that uid until the uid is over
`fs.pipe-user-pages-soft`: the kernel charges a new pipe 16 pages while its uid is under the soft
limit and 2 pages (8192 bytes, F_GETPIPE_SZ) once it is over, for a process without
CAP_SYS_RESOURCE. A fresh pipe of 8192 bytes proves it. It then prints one line

    held=N soft=S hard=H pagesize=P capacity=8192 uid=U pid=PID

and holds the pipes (one read end each) until stdin reaches EOF (with `--stdin`), SIGTERM or
SIGHUP, or `--max-seconds`; then exits 0. It refuses, with a line `refused=REASON ...` and a
message on stderr, when the soft limit is 0 (exit 3: pipes never shrink, nothing to decide) or
`fs.pipe-user-pages-hard` is set and would be reached (exit 4). Exit 5: still not over after
soft/16 + 64 pipes (a privileged uid?); 1: any other error. The limits are read as the host
shows them; the capacity is what the kernel really does.
"""

import argparse
import fcntl
import os
import resource
import select
import signal
import sys
import time

F_GETPIPE_SZ = 1032  # fcntl.F_GETPIPE_SZ exists only from Python 3.10
PAGES_PER_PIPE = 16
SHRUNK_PAGES = 2  # what a pipe of a uid over the soft limit gets: 8192 bytes with 4 KiB pages
EXTRA = 8  # pipes created beyond the first shrunk one
SPARE = 64  # pipes beyond soft/16 after which it gives up
HARD_HEADROOM = 1024  # pages the uid must still be able to charge (the container's own pipes)

EXIT_ERROR = 1
EXIT_SOFT_ZERO = 3
EXIT_HARD_LIMIT = 4
EXIT_NOT_OVER = 5


def read_limit(name: str) -> int:
    with open("/proc/sys/fs/" + name) as handle:
        return int(handle.read().split()[0])


def refuse(reason: str, code: int, message: str, soft: int, hard: int) -> int:
    print(f"refused={reason} soft={soft} hard={hard}", flush=True)
    print("pipe_holder: " + message, file=sys.stderr, flush=True)
    return code


def new_pipe() -> "tuple[int, int]":
    """A pipe's read end (the write end closed: the pipe lives, charged, as long as it is open)
    and its capacity."""
    reader, writer = os.pipe()
    os.close(writer)
    return reader, fcntl.fcntl(reader, F_GETPIPE_SZ)


def hold(until_eof: bool, max_seconds: float) -> None:
    deadline = time.monotonic() + max_seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if not until_eof:
            time.sleep(min(left, 1.0))
            continue
        ready, _, _ = select.select([sys.stdin.fileno()], [], [], min(left, 1.0))
        if ready and not os.read(sys.stdin.fileno(), 4096):
            return


def main() -> int:
    parser = argparse.ArgumentParser(prog="pipe_holder")
    parser.add_argument("--uid", type=int, required=True)
    parser.add_argument("--gid", type=int, required=True)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--stdin", action="store_true", help="also release at EOF on stdin")
    args = parser.parse_args()

    def release(signum: int, frame: object) -> None:
        sys.exit(0)

    signal.signal(signal.SIGTERM, release)
    signal.signal(signal.SIGHUP, release)
    soft = read_limit("pipe-user-pages-soft")
    hard = read_limit("pipe-user-pages-hard")
    if soft == 0:
        return refuse("soft-zero", EXIT_SOFT_ZERO, "fs.pipe-user-pages-soft is 0", soft, hard)
    if hard and hard < soft + PAGES_PER_PIPE + 2 * EXTRA + HARD_HEADROOM:
        message = f"fs.pipe-user-pages-hard={hard} would be reached over soft={soft}"
        return refuse("hard-limit", EXIT_HARD_LIMIT, message, soft, hard)
    most = soft // PAGES_PER_PIPE + SPARE
    try:
        wanted = most + EXTRA + 64
        _, fd_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        limit = max(wanted, fd_hard) if fd_hard != resource.RLIM_INFINITY else fd_hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, limit))
        os.setgroups([])
        os.setgid(args.gid)
        os.setuid(args.uid)
    except (OSError, ValueError) as error:
        print(f"pipe_holder: cannot become {args.uid}:{args.gid}: {error}", file=sys.stderr)
        return EXIT_ERROR
    shrunk = SHRUNK_PAGES * os.sysconf("SC_PAGE_SIZE")
    held = []  # type: list[int]
    try:
        while len(held) < most:
            fd, capacity = new_pipe()
            held.append(fd)
            if capacity == shrunk:
                break
        else:
            message = f"pipes of uid {args.uid} never shrank"
            return refuse("not-over", EXIT_NOT_OVER, message, soft, hard)
        for _ in range(EXTRA):
            held.append(new_pipe()[0])
        fd, capacity = new_pipe()
        os.close(fd)
    except OSError as error:
        print(f"pipe_holder: after {len(held)} pipes: {error}", file=sys.stderr)
        return EXIT_ERROR
    pagesize = os.sysconf("SC_PAGE_SIZE")
    line = f"held={len(held)} soft={soft} hard={hard} pagesize={pagesize} capacity={capacity}"
    print(f"{line} uid={args.uid} pid={os.getpid()}", flush=True)
    hold(args.stdin, args.max_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
