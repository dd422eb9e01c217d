"""Decoys resembling the incident's hung `runc init` in part, and a stand-in for the hung one.

The lab tests meet the real hung runc init (rc93 under the trigger, `lab.stick`) beside these
decoys; the stand-in (`stuck`) serves only tests without a lab, such as the helper under
Python 3.6 in a mount namespace of this machine.

Run as `exec -a runc python3 init` from a copy named `init`, so that its command line reads
`runc init`; it renames itself `runc:[2:INIT]` as runc's init does. FAKE_MODE says what it does:

- stuck (stand-in, no lab): creates a pipe, shrinks it to two pages (8192 bytes), keeps both
  ends and writes more than it holds: it blocks in pipe_write. Once the write returns it reads
  back what is left of it, records both in FAKE_MARKER and exits.
- decoy-64k: the same with a 64 KiB pipe.
- decoy-stdout: keeps an empty 8192-byte self-pipe, but blocks writing its stdout, a pipe whose
  read end only a child process (comm `pipe-reader`) holds: container output, not its own pipe.
- not-runc: like stuck, but keeps its own name (run it without `exec -a runc`).

Before it blocks it writes its PID (and the child's) to FAKE_PIDFILE.
"""

from __future__ import annotations

import fcntl
import json
import os
import time

F_SETPIPE_SZ = 1031
MODE = os.environ["FAKE_MODE"]


def rename(name: str) -> None:
    with open("/proc/self/comm", "w") as comm:
        comm.write(name)


def self_pipe(size: int) -> tuple[int, int]:
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, size)
    return read_end, write_end


def record_pids(*pids: int) -> None:
    path = os.environ["FAKE_PIDFILE"]
    with open(path + ".tmp", "w") as handle:
        handle.write(" ".join(str(pid) for pid in pids))
    os.rename(path + ".tmp", path)


def main() -> None:
    if MODE != "not-runc":
        rename("runc:[2:INIT]")
    if MODE == "decoy-stdout":
        self_pipe(8192)  # both ends held, empty: not the pipe it is blocked on
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(writer)
            rename("pipe-reader")
            time.sleep(3600)
            os._exit(0)
        os.close(reader)
        os.dup2(writer, 1)
        record_pids(os.getpid(), child)
        os.write(1, b"o" * 200_000)
        return
    size = 65536 if MODE == "decoy-64k" else 8192
    read_end, write_end = self_pipe(size)
    record_pids(os.getpid())
    written = os.write(write_end, b"x" * (3 * size + 1000))
    os.set_blocking(read_end, False)
    left = 0
    try:
        while chunk := os.read(read_end, 65536):
            left += len(chunk)
    except BlockingIOError:
        pass
    with open(os.environ["FAKE_MARKER"], "w") as marker:
        json.dump({"written": written, "read_back": left}, marker)


if __name__ == "__main__":
    main()
