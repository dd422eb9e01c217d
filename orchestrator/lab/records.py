"""What the lab records about itself (`lab.json`) and what its API returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

HostKind = Literal["full", "containerd", "light"]
KINDS: tuple[HostKind, ...] = ("full", "containerd", "light")
# A full host's runtimes (orchestrator/lab/runtimes.py): plain runc, NVIDIA's shim in front of
# runc, or Debian's crun as Docker's default; or runc, with containerd's CRI running another file;
# or runc, with dockerd and containerd in a mount namespace of their own (`mountns`); or gVisor's
# runsc (Debian's) as Docker's default.
LabRuntime = Literal["runc", "nvidia", "crun", "cri", "mountns", "runsc"]
RUNTIMES: tuple[LabRuntime, ...] = ("runc", "nvidia", "crun", "cri", "mountns", "runsc")


# ---------------------------------------------------------------------------------------------
# The record (lab.json) and what the API returns


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProcRef(_Record):
    """A process the lab started: its PID and its start time (clock ticks after boot)."""

    pid: int
    start: int


class HostRecord(_Record):
    name: str
    address: str
    zone: str
    kind: HostKind
    python: bool = True  # False: no Python can run on the host (`lab up --no-python`)
    busybox: bool = False  # its userland is busybox's applets, and no Python (`lab up --busybox`)
    read_only_runc: bool = False  # its runc's folder is mounted read-only (`lab up --read-only`)
    runtime: LabRuntime = "runc"  # full hosts: Docker's default runtime
    packaged: bool = False  # its runc is /usr/sbin/runc of a package (`--packaged-runc`)
    package_manager: Literal["dpkg", "rpm"] = "dpkg"  # which one (`--rpm-runc`: rpm)
    storage_driver: str | None = None  # full hosts: the one dockerd runs with
    # holder, sshd, containerd (not light), dockerd (full), daemon-ns (runtime mountns)
    procs: dict[str, ProcRef] = {}


class LabRecord(_Record):
    schema_version: Literal[1] = 1
    lab_id: str
    state_dir: str
    inventory_path: str
    created_dirs: list[str] = []  # directories `lab up` created (and `lab down` removes if empty)
    first_address: str
    created: float
    supervisor: ProcRef | None = None
    hosts: list[HostRecord]
    # Light hosts' rc93 is a hard link to the lab's one copy, not a copy (`lab up --link-runc`)
    link_runc: bool = False


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    zone: str
    kind: HostKind
    python: bool = True
    runtime: LabRuntime = "runc"
    packaged: bool = False
    package_manager: Literal["dpkg", "rpm"] = "dpkg"
    busybox: bool = False
    read_only_runc: bool = False


@dataclass
class LabInfo:
    """What `lab up` did and how to reach the fleet."""

    state_dir: Path
    inventory_path: Path
    private_key: Path
    known_hosts: Path
    hosts: list[LabHost]
    already_running: bool
    started: list[str]  # "lab-01 sshd", ... what this call started
    seconds: float
    rss_bytes: int  # resident memory of every lab process, summed
    pss_bytes: int  # the same with shared pages divided among their users
    rc93: str  # where the hosts' runc 1.0.0-rc93 came from (built, cached, installed before)
    stuck: StuckSeed | None = None  # `--stuck`: the hung runc init
    next_commands: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TriggerRun:
    """`lab trigger` on one host: did the host's runc pass the rc93 trigger?"""

    host: str
    uid: int
    outcome: str  # "passed", "hung" (its runc init then killed), "failed (exit N)"
    seconds: float  # until the container finished or runc init was seen hung
    pid: int | None  # the hung runc init


@dataclass(frozen=True)
class StuckSeed:
    """The incident's stuck container on a full host: its runc init hung writing its pipe."""

    host: str
    container: str
    pid: int  # the hung runc init
    uid: int  # the trigger's uid (`trigger.SEED_UID_BASE` + the host's index)


@dataclass
class LabHostStatus:
    name: str
    address: str
    zone: str
    kind: HostKind
    holder: bool  # the host's namespace is alive
    sshd: bool
    containerd: bool | None  # None on light hosts
    dockerd: bool | None  # None unless full
    runc_version: str | None  # first line of /usr/local/sbin/runc --version on the host
    runc_sha256: str | None
    sysctl: int | None  # the host's fs.pipe-user-pages-soft
    hung: list[int] | None  # full hosts: PIDs of runc init blocked writing a pipe
    pids: dict[str, int]


@dataclass
class LabDownReport:
    state_dir: Path
    found: bool  # whether there was a lab to take down
    stopped: int  # processes stopped
    removed: list[str]  # paths removed
    seconds: float
    warnings: list[str] = field(default_factory=list)
