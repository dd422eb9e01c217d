"""Faults put into lab hosts and into the controller's view of them: commands inside a host's
mount namespace, its sshd's connections cut or stopped, a tiny or read-only file system under
its runc, and executors whose sessions misbehave on purpose (a cut mid-step, a corrupted
upload, a disk filled just before the upload).

Everything acts only in a lab host's own mount namespace (`procs.nsenter_argv`) and only on
processes the lab itself started (killed by PID and start time, `procs.send_signal`)."""

from __future__ import annotations

import contextlib
import gzip
import os
import random
import signal
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from orchestrator.choices import PIPE_USER_PAGES_SOFT_DEFAULT
from orchestrator.host.constants import STATE_DIR, SYSCTL_PROC
from orchestrator.host.session import CommandResult, Executor, HostSession
from orchestrator.lab.fleet import lab_up, load_record
from orchestrator.lab.handle import LabFleet
from orchestrator.lab.procs import (
    mount_ns,
    nsenter_argv,
    proc_start,
    proc_stat,
    read_proc_text,
    send_signal,
    wait_gone,
)
from orchestrator.lab.records import HostRecord, ProcRef
from orchestrator.models import SshTarget

RUNC_DIR = "/usr/local/sbin"
FAILING_RUNC = """#!/bin/sh
# A candidate runc that reports a version but fails to create any container.
case "$1" in --version|-v) printf 'runc version 1.1.5+broken\\ncommit: broken\\n'; exit 0;; esac
for arg in "$@"; do
    case "$arg" in create|run) echo "runc: broken candidate" >&2; exit 1;; esac
done
exec /usr/sbin/runc "$@"
"""
STUB_BODY = b"""
case "$1" in --version|-v) printf 'runc version 1.1.5+stub\\ncommit: stub\\n'; exit 0;; esac
exec /usr/sbin/runc "$@"
"""


class SetupFailed(Exception):
    """The trial could not set up its scenario (not a finding about runc-rollout)."""


# ---------------------------------------------------------------------------------------------
# The lab, from outside


def host_record(fleet: LabFleet, host: str) -> HostRecord:
    """The lab's record of `host` (its processes as the lab started them)."""
    record = load_record(fleet.state_dir)
    found = [h for h in record.hosts if h.name == host] if record else []
    if not found:
        raise SetupFailed(f"no lab host {host} in {fleet.state_dir}")
    return found[0]


def in_host(fleet: LabFleet, host: str, script: str, *, check: bool = True) -> str:
    """Run a shell script as root inside a lab host (its mounts; not over ssh)."""
    holder = host_record(fleet, host).procs["holder"].pid
    done = subprocess.run(
        [*nsenter_argv(holder), "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise SetupFailed(f"{host}: {script!r} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _live(pid: int) -> ProcRef | None:
    start = proc_start(pid)
    return ProcRef(pid=pid, start=start) if start is not None else None


def sshd_processes(fleet: LabFleet, host: str) -> tuple[ProcRef | None, list[ProcRef]]:
    """The host's listening sshd (if alive) and its per-connection sshd processes."""
    record = host_record(fleet, host)
    recorded = record.procs.get("sshd")
    listener = recorded if recorded is not None and _live(recorded.pid) == recorded else None
    namespace = mount_ns(record.procs["holder"].pid)
    sessions = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or (listener and int(entry.name) == listener.pid):
            continue
        pid = int(entry.name)
        if read_proc_text(pid, "comm").strip() == "sshd" and mount_ns(pid) == namespace:
            ref = _live(pid)
            if ref is not None:
                sessions.append(ref)
    return listener, sessions


def cut_connections(fleet: LabFleet, host: str) -> int:
    """SIGKILL every sshd session process of `host` (its connections drop); the listener stays."""
    _, sessions = sshd_processes(fleet, host)
    for ref in sessions:
        send_signal(ref, signal.SIGKILL)
    return len(sessions)


def stop_sshd(fleet: LabFleet, host: str) -> None:
    """SIGKILL the host's sshd and its sessions: the host is down for ssh until `start_sshd`."""
    listener, sessions = sshd_processes(fleet, host)
    for ref in [*([listener] if listener else []), *sessions]:
        send_signal(ref, signal.SIGKILL)


def start_sshd(fleet: LabFleet) -> None:
    """`lab up` on the running lab restarts what died (here: a stopped sshd)."""
    lab_up(state_dir=fleet.state_dir)


def host_processes(fleet: LabFleet, host: str) -> list[ProcRef]:
    """Every live process of `host`: those in its mount namespace (its holder, sshd and
    sessions, daemons, shims, host-side scripts), their descendants (containers, in mount
    namespaces of their own), and what the lab recorded for it; never this process."""
    record = host_record(fleet, host)
    namespace = mount_ns(record.procs["holder"].pid)
    if namespace is None:
        raise SetupFailed(f"{host}: its namespace holder is gone")
    parents: dict[int, int] = {}
    others: dict[int, ProcRef] = {}
    found: dict[int, ProcRef] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        fields = proc_stat(pid)
        if fields is None or fields[0] in ("Z", "X"):
            continue
        parents[pid] = int(fields[1])
        ref = ProcRef(pid=pid, start=int(fields[19]))
        (found if mount_ns(pid) == namespace else others)[pid] = ref
    grew = True
    while grew:  # descendants, however deep
        children = [pid for pid in others if parents[pid] in found]
        found.update({pid: others.pop(pid) for pid in children})
        grew = bool(children)
    for ref in record.procs.values():
        if proc_start(ref.pid) == ref.start:
            found.setdefault(ref.pid, ref)
    return list(found.values())


def power_off(fleet: LabFleet, host: str) -> int:
    """The host loses power: SIGKILL every process of it (by PID and start time). Its mount
    namespace goes with its holder, and with it the host's /run (a tmpfs of the namespace);
    its disk (the lab's files bound into it) stays. Returns how many processes were killed."""
    refs = host_processes(fleet, host)
    for ref in refs:
        send_signal(ref, signal.SIGKILL)
    left = wait_gone(refs, 15.0)
    if left:
        raise SetupFailed(f"{host}: still alive after SIGKILL: {[ref.pid for ref in left]}")
    return len(refs)


def boot(fleet: LabFleet, host: str) -> None:
    """The host boots: the lab starts it afresh (a new namespace with an empty /run, sshd,
    containerd and dockerd, the keepalive container), and the sysctl's runtime value becomes
    what its files say, as systemd-sysctl sets it at boot (the kernel's default if none does)."""
    lab_up(state_dir=fleet.state_dir)
    facts = fleet.facts(fleet.host(host))
    setting = facts.sysctl_persistent
    value = setting.value if setting is not None else str(PIPE_USER_PAGES_SOFT_DEFAULT)
    if not value.isdigit():
        raise SetupFailed(f"{host}: its sysctl files set {value!r}")
    in_host(fleet, host, f"printf '%s\\n' {value} > {SYSCTL_PROC}")


def cut_link(fleet: LabFleet, host: str) -> list[ProcRef]:
    """A network partition, as the controller sees one: SIGSTOP the host's sshd and every
    session process of it, so its TCP connections stay open but nothing answers (no reset, no
    end of file) and a new connection gets no banner. Returns what `restore_link` wakes."""
    listener, sessions = sshd_processes(fleet, host)
    stopped = [ref for ref in [*([listener] if listener else []), *sessions]]
    for ref in stopped:
        send_signal(ref, signal.SIGSTOP)
    return stopped


def restore_link(stopped: list[ProcRef]) -> None:
    for ref in stopped:
        send_signal(ref, signal.SIGCONT)


@contextlib.contextmanager
def mounted(fleet: LabFleet, host: str, mount: str, unmount: str) -> Iterator[None]:
    in_host(fleet, host, mount)
    try:
        yield
    finally:
        in_host(fleet, host, unmount)


def tiny_tmpfs(fleet: LabFleet, host: str, room: int) -> contextlib.AbstractContextManager[None]:
    """A tmpfs over the host's runc directory holding a copy of its runc (the lab's rc93 is
    13 MB) and `room` bytes more; unmounted again if the copy does not fit."""
    mount = (
        f"cp -p {RUNC_DIR}/runc /run/runc.keep && "
        f"size=$(( $(stat -c %s /run/runc.keep) + {room} )) && "
        f"mount -t tmpfs -o size=$size,mode=0755 runc-rollout-fault {RUNC_DIR} && "
        f"{{ cp -p /run/runc.keep {RUNC_DIR}/runc || {{ umount {RUNC_DIR}; false; }}; }} && "
        "rm -f /run/runc.keep"
    )
    return mounted(fleet, host, mount, f"umount {RUNC_DIR}")


def store_tmpfs(fleet: LabFleet, host: str, room: int) -> contextlib.AbstractContextManager[None]:
    """A tmpfs of `room` bytes over the host's store (/var/lib/runc-rollout: lock, record,
    backups): a disk that fills during the backup."""
    mount = f"mount -t tmpfs -o size={room},mode=0700 runc-rollout-fault {STATE_DIR}"
    return mounted(fleet, host, mount, f"umount {STATE_DIR}")


def read_only_dir(fleet: LabFleet, host: str) -> contextlib.AbstractContextManager[None]:
    mount = f"mount --bind {RUNC_DIR} {RUNC_DIR} && mount -o remount,bind,ro {RUNC_DIR}"
    return mounted(fleet, host, mount, f"umount {RUNC_DIR}")


def foreign_elf_stub(path: Path, machine: int = 183) -> None:
    """A shell stub behind an ELF header for another machine (183: aarch64). The kernel refuses
    it (ENOEXEC), but a shell or execvp() falls back to running it as a script, which then
    reports a runc version: a check that only runs `--version` would take it."""
    header = bytearray(64)
    header[0:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<HHI", header, 16, 2, machine, 1)
    path.write_bytes(bytes(header) + STUB_BODY)
    path.chmod(0o755)


# ---------------------------------------------------------------------------------------------
# Executors that misbehave on purpose


class Fault:
    """Hooks into every host step; the default does nothing."""

    def before_run(self, host: str, script: str) -> None:
        """Called before a command is sent."""

    def put_source(self, host: str, local: Path) -> Path:
        """The file actually uploaded instead of `local`."""
        return local

    def push_source(self, host: str, packed: bytes) -> bytes:
        """The gzip actually pushed instead of `packed`."""
        return packed

    def after_step(self, host: str) -> None:
        """Called when a command or upload has returned."""


class FaultySession:
    """A `HostSession` that lets a `Fault` act before each step."""

    def __init__(self, inner: HostSession, fault: Fault) -> None:
        self._inner = inner
        self._fault = fault

    @property
    def host(self) -> str:
        return self._inner.host

    def run(self, command: str, *, timeout: float, stdin: bytes | None = None) -> CommandResult:
        # A batch of steps travels on stdin: the fault sees the script the host will run.
        if stdin is not None and STEP_MARKERS["push"] in command:  # the runc, as gzip
            stdin = self._fault.push_source(self.host, stdin)
            sent = ""
        else:
            sent = stdin.decode("utf-8", "replace") if isinstance(stdin, bytes) else ""
        self._fault.before_run(self.host, command + "\n" + sent)
        try:
            return self._inner.run(command, timeout=timeout, stdin=stdin)
        finally:
            self._fault.after_step(self.host)

    def put(self, local: Path, remote: str, *, mode: int) -> None:
        try:
            self._inner.put(self._fault.put_source(self.host, local), remote, mode=mode)
        finally:
            self._fault.after_step(self.host)

    def close(self) -> None:
        self._inner.close()


class FaultyExecutor:
    """An `Executor` whose sessions carry a `Fault`."""

    def __init__(self, inner: Executor, fault: Fault) -> None:
        self._inner = inner
        self._fault = fault

    def session(self, target: SshTarget, *, name: str | None = None) -> FaultySession:
        return FaultySession(self._inner.session(target, name=name), self._fault)

    def release(self, target: SshTarget, *, name: str | None = None) -> None:
        self._inner.release(target, name=name)

    def close(self) -> None:
        self._inner.close()


# Text that identifies a host step's script (see orchestrator.host.commands).
STEP_MARKERS = {
    "stage": 'actual=$(sha256sum "$STAGED"',
    "swap": 'mv -f "$STAGED" "$TARGET"',
    "verify": "--security-opt no-new-privileges",
    "verify-runc": 'run --bundle "$bundle"',
    "push": "echo pushed=gzip",
}


class AtStep(Fault):
    """Do `action` (cut `host`'s connections, stop its sshd, power it off, cut its link)
    `delay` seconds after the batch holding `step` starts (once). A batch that returns before
    that waits for the action, so it always happens before the next round trip: during the
    batch, or between it and the next."""

    def __init__(self, host: str, step: str, delay: float, action: Callable[[], object]) -> None:
        self.host = host
        self.step = step
        self.delay = delay
        self.action = action
        self.fired = threading.Event()  # the step started
        self.cut = threading.Event()  # the action is done

    def _fire_later(self) -> None:
        if self.fired.is_set():
            return
        self.fired.set()
        threading.Timer(self.delay, self._cut).start()

    def _cut(self) -> None:
        try:
            self.action()
        finally:
            self.cut.set()

    def before_run(self, host: str, script: str) -> None:
        markers = [STEP_MARKERS[self.step]]
        if self.step == "verify":
            markers.append(STEP_MARKERS["verify-runc"])
        if host == self.host and any(marker in script for marker in markers):
            self._fire_later()

    def put_source(self, host: str, local: Path) -> Path:
        if host == self.host and self.step == "stage":
            self._fire_later()
        return local

    def push_source(self, host: str, packed: bytes) -> bytes:
        if host == self.host and self.step == "stage":
            self._fire_later()
        return packed

    def after_step(self, host: str) -> None:
        if host == self.host and self.fired.is_set():
            self.cut.wait(10)


class CorruptUpload(Fault):
    """Upload a copy of the artifact with one byte flipped (in the push, the gzip of one: it
    decompresses, so the host's sha256 check is what must catch it)."""

    def __init__(self, scratch: Path, rng: random.Random) -> None:
        self.scratch = scratch
        self.rng = rng

    def put_source(self, host: str, local: Path) -> Path:
        data = bytearray(local.read_bytes())
        offset = self.rng.randrange(len(data))
        data[offset] ^= 0xFF
        corrupted = self.scratch / f"corrupted-{host}"
        corrupted.write_bytes(bytes(data))
        return corrupted

    def push_source(self, host: str, packed: bytes) -> bytes:
        data = bytearray(gzip.decompress(packed))
        data[self.rng.randrange(len(data))] ^= 0xFF
        return gzip.compress(bytes(data))


class FillDiskBeforeUpload(Fault):
    """Fill the binary's file system just before the upload (after the free-space check)."""

    def __init__(self, fleet: LabFleet) -> None:
        self.fleet = fleet

    def put_source(self, host: str, local: Path) -> Path:
        self._fill(host)
        return local

    def push_source(self, host: str, packed: bytes) -> bytes:
        self._fill(host)
        return packed

    def _fill(self, host: str) -> None:
        in_host(self.fleet, host, f"cat /dev/zero > {RUNC_DIR}/.fill 2>/dev/null", check=False)
