"""What runc says about itself, and what a `runc init` process is: pure definitions shared by
the controller and the host scripts rendered from them (facts, unstick)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

# comm of runc before its init renames itself: its binary's name, or `exe` when re-executed
# through /proc/self/exe (globs: rendered into the facts and unstick scripts' `case`).
RUNC_COMMS = ("*runc*", "exe")
# wchan of a process asleep writing a pipe (anon_pipe_write from Linux 6.x).
PIPE_WCHANS = ("pipe_write", "anon_pipe_write")


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


def parse_runc_version(output: str) -> RuncVersion:
    """Parse `runc --version`, e.g. 'runc version 1.1.5+ds1' and 'commit: 1.1.5+ds1-1+deb12u1'."""
    version = commit = None
    for line in output.splitlines():
        key, _, value = line.strip().partition(" version ")
        if key == "runc" and value and version is None:
            version = value.strip()
        elif line.strip().startswith("commit:") and commit is None:
            commit = line.split(":", 1)[1].strip() or None
    return RuncVersion(version, commit)
