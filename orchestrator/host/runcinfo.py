"""What a binary says about itself, and what a `runc init` process is: pure definitions shared
by the controller and the host scripts rendered from them (facts, unstick).

A binary is runc only when its `--version` output starts with runc's own block ("runc version
X", then "commit: ..." and the rest up to a blank line). NVIDIA's Container Runtime prints its
own banner and then the whole block of the runc it wraps; crun prints a `commit:` line of its
own: neither is runc, whatever their output contains further down.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

BANNER_MAX = 120  # characters of a banner kept (a host's output is data, and bounded)

# comm of runc before its init renames itself: its binary's name, or `exe` when re-executed
# through /proc/self/exe (globs: rendered into the facts and unstick scripts' `case`).
RUNC_COMMS = ("*runc*", "exe")
# wchan of a process asleep writing a pipe: pipe_write, anon_pipe_write from Linux 6.x, and
# pipe_wait before 5.8 (the incident's 5.4 and CentOS 7's 3.10 put a blocked writer to sleep
# there; readers too, so a check that it is inside write(2) goes with it).
PIPE_WCHANS = ("pipe_write", "anon_pipe_write", "pipe_wait")


def is_runc_init(comm: str, argv: list[str]) -> bool:
    """What a `runc init` process is, for unstick and audit: comm `runc:[N:NAME]` once runc's
    init renamed itself; before that, a comm of RUNC_COMMS and the command line
    `.../NAMErunc init`."""
    if comm.startswith("runc:["):
        return True
    if not any(fnmatch.fnmatchcase(comm, glob) for glob in RUNC_COMMS):
        return False
    return len(argv) > 1 and argv[0].rsplit("/", 1)[-1].endswith("runc") and argv[1] == "init"


@dataclass(frozen=True)
class RuncVersion:
    version: str | None
    commit: str | None


def _own_block(output: str) -> list[str]:
    """The first block of `output`: its lines from the first non-blank one to the next blank."""
    block: list[str] = []
    for line in output.splitlines():
        if line.strip():
            block.append(line.strip())
        elif block:
            break
    return block


def parse_runc_version(output: str) -> RuncVersion:
    """Parse `runc --version`, e.g. 'runc version 1.1.5+ds1' and 'commit: 1.1.5+ds1-1+deb12u1';
    (None, None) unless the output starts with runc's own block."""
    block = _own_block(output)
    key, _, value = block[0].partition(" version ") if block else ("", "", "")
    if key != "runc" or not value.strip():
        return RuncVersion(None, None)
    commits = (line.split(":", 1)[1].strip() for line in block if line.startswith("commit:"))
    commit = next(commits, "")
    return RuncVersion(value.strip(), commit or None)


def runtime_banner(output: str) -> str | None:
    """The first line a binary printed for `--version` (what it says it is), bounded."""
    block = _own_block(output)
    return block[0][:BANNER_MAX] if block else None
