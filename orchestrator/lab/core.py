"""The lab's core: its record and paths, the supervisor's socket, the lock, and running a
command inside a host. Every part of the lab (`files`, `scan`, `daemons`, `stuck`, `status`,
`fleet`) builds on `LabCore`."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput, LabError
from orchestrator.lab import hostdef
from orchestrator.lab.procs import (
    alive,
    file_tail,
    nsenter_argv,
    proc_start,
    read_proc_text,
    write_file,
)
from orchestrator.lab.records import (
    HostRecord,
    LabRecord,
    ProcRef,
)
from orchestrator.lab.supervisor import SOCKET_NAME

RECORD_NAME = "lab.json"
SUPERVISOR_PY = Path(__file__).with_name("supervisor.py")
DAEMON_ENV = {"PATH": hostdef.SYSTEMD_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
HOLDER_PREFIX = "runc-rollout-lab-holder:"
PING = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"
RC93_COPY = "runc-rc93"  # the lab's copy of the rc93 build, installed from here on every host
DOCKER = "/usr/bin/docker"
# How often, at most, `note` rewrites lab.json (whose size grows with the hosts: rewritten after
# every process it was quadratic in a big lab); bring-up saves after each of its phases anyway,
# and `lab down` also finds a process not recorded yet as a child of the supervisor.
SAVE_EVERY = 1.0


# ---------------------------------------------------------------------------------------------
# The supervisor

_OWN_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # supervisors started by this process


def _call(state_dir: Path, request: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(state_dir / SOCKET_NAME))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    reply = json.loads(data) if data else {"error": "the lab supervisor closed the connection"}
    if not isinstance(reply, dict):
        raise LabError(f"the lab supervisor answered {reply!r}")
    return reply


def _start_supervisor(state_dir: Path) -> ProcRef:
    log = open(state_dir / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", str(SUPERVISOR_PY), str(state_dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",
            env=DAEMON_ENV,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        log.close()
    _OWN_CHILDREN[child.pid] = child
    start = proc_start(child.pid)
    ref = ProcRef(pid=child.pid, start=start if start is not None else -1)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if child.poll() is not None:
            break
        with contextlib.suppress(OSError):
            if _call(state_dir, {"op": "ping"}, timeout=2).get("pid") == child.pid:
                return ref
        time.sleep(0.05)
    raise LabError(f"the lab supervisor did not start: {file_tail(state_dir / 'supervisor.log')}")


def _reap_own(pid: int, timeout: float) -> None:
    child = _OWN_CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout)


# ---------------------------------------------------------------------------------------------
# The lab


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    with open(state_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadInput(
                f"another `runc-rollout lab` command is working on {state_dir}"
            ) from None
        yield


class LabCore:
    """One lab: its state directory and record, and what every part of it needs."""

    def __init__(self, state_dir: Path, record: LabRecord) -> None:
        self.dir = state_dir
        self.record = record
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.rc93_note = f"installed before, in {self.rc93_copy}"
        self.saved = 0.0  # when lab.json was last written (time.monotonic)

    # -- paths --------------------------------------------------------------------------------

    def host_dir(self, host: HostRecord) -> Path:
        return self.dir / "hosts" / host.name

    def inside(self, host: HostRecord) -> str:
        return f"{hostdef.LAB_MOUNT}/hosts/{host.name}"

    @property
    def rc93_copy(self) -> Path:
        return self.dir / RC93_COPY

    @property
    def private_key(self) -> Path:
        return self.dir / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "ssh" / "known_hosts"

    @property
    def cgroup_root(self) -> str:
        return f"runc-rollout-lab-{self.record.lab_id}"

    def save(self) -> None:
        with self.lock:
            write_file(self.dir / RECORD_NAME, self.record.model_dump_json(indent=1), 0o600)
            self.saved = time.monotonic()

    def note(self, host: HostRecord, what: str, pid: int, log: Path) -> None:
        """Record a process just started (its start time tells it from a later one's PID)."""
        start = proc_start(pid)
        if start is None:
            raise LabError(f"{host.name}: {what} exited at once: {file_tail(log)}")
        with self.lock:
            host.procs[what] = ProcRef(pid=pid, start=start)
            self.started.append(f"{host.name} {what}")
            due = time.monotonic() - self.saved >= SAVE_EVERY
        if due:
            self.save()

    def write_daemon_json(self, host: HostRecord, driver: str) -> None:
        parent = f"/{self.cgroup_root}/{host.name}"
        path = self.host_dir(host) / "etc-docker" / "daemon.json"
        write_file(path, hostdef.daemon_json(parent, driver, host.runtime))
        host.storage_driver = driver

    def holder_alive(self, host: HostRecord) -> bool:
        ref = host.procs.get("holder")
        if not alive(ref) or ref is None:
            return False
        return read_proc_text(ref.pid, "cmdline").startswith(HOLDER_PREFIX + host.name)

    def nsenter(self, host: HostRecord) -> list[str]:
        return nsenter_argv(host.procs["holder"].pid)

    def in_host(self, host: HostRecord, argv: list[str], timeout: float = 120) -> str:
        """Run a command inside a host (its mounts, the machine's everything else)."""
        try:
            done = subprocess.run(
                [*self.nsenter(host), *argv],
                capture_output=True,
                text=True,
                timeout=timeout,
                env=DAEMON_ENV,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise LabError(
                f"{host.name}: `{' '.join(argv)}` timed out after {timeout:.0f}s"
            ) from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            why = detail[-1] if detail else f"exit {done.returncode}"
            raise LabError(f"{host.name}: `{' '.join(argv[:3])}` failed: {why}")
        return done.stdout


def load_record(state_dir: Path) -> LabRecord | None:
    path = state_dir / RECORD_NAME
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return LabRecord.model_validate_json(text)
    except ValueError as exc:
        raise BadInput(f"{path} is not a lab record this version can read: {exc}") from None


def _lab_id(state_dir: Path) -> str:
    return hashlib.sha256(str(state_dir).encode()).hexdigest()[:8]


def _mkdirs(path: Path, mode: int) -> list[str]:
    """mkdir -p; returns the directories it created, outermost first."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=mode, exist_ok=True)
    return [str(p) for p in reversed(missing)]
