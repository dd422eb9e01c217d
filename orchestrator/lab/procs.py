"""Lab processes (identified by PID and start time, so a recycled PID is never taken for one),
the machine's requirements, and small file and network helpers."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import ipaddress
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from orchestrator.errors import BadInput
from orchestrator.lab import hostdef
from orchestrator.lab.defaults import (
    DEFAULT_STATE_DIR,
    STATE_DIR_ENV,
)
from orchestrator.lab.records import KINDS, HostKind, ProcRef

T = TypeVar("T")
CTR = "/usr/bin/ctr"


# ---------------------------------------------------------------------------------------------
# Requirements

# (path, Debian package, the kinds of host that need it)
REQUIRED_FILES: tuple[tuple[str, str, tuple[HostKind, ...]], ...] = (
    ("/usr/bin/nsenter", "util-linux", KINDS),
    ("/usr/sbin/sshd", "openssh-server", KINDS),
    ("/usr/bin/ssh-keygen", "openssh-client", KINDS),
    (hostdef.DEBIAN_RUNC, "runc", KINDS),
    ("/usr/bin/containerd", "containerd", ("full", "containerd")),
    ("/usr/bin/containerd-shim-runc-v2", "containerd", ("full", "containerd")),
    (CTR, "containerd", ("full", "containerd")),
    ("/usr/sbin/dockerd", "docker.io", ("full",)),
    ("/usr/bin/docker", "docker.io", ("full",)),
    ("/bin/busybox", "busybox-static", ("full",)),
)


def _elf_is_static(path: str) -> bool:
    """True for a 64-bit ELF executable without an interpreter (PT_INTERP)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
            if header[:4] != b"\x7fELF" or header[4] != 2:
                return False
            endian = "<" if header[5] == 1 else ">"
            phoff = struct.unpack_from(endian + "Q", header, 32)[0]
            phentsize, phnum = struct.unpack_from(endian + "HH", header, 54)
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
    except OSError:
        return False
    return all(struct.unpack_from(endian + "I", table, i * phentsize)[0] != 3 for i in range(phnum))


def check_requirements(kinds: tuple[HostKind, ...] = KINDS) -> None:
    """Raise BadInput (one line) unless this is Linux, we are root and the packages hosts of
    `kinds` need are there."""
    if not sys.platform.startswith("linux"):
        raise BadInput(f"runc-rollout lab needs Linux (mount namespaces); this is {sys.platform}")
    if os.geteuid() != 0:
        raise BadInput("runc-rollout lab needs root (mount namespaces, sshd on port 22): use sudo")
    missing: list[str] = []
    for path, package, needed_by in REQUIRED_FILES:
        if not set(needed_by) & set(kinds):
            continue
        present = os.access(path, os.X_OK)
        if present and package == "busybox-static":
            present = _elf_is_static(path)
        if not present and package not in missing:
            missing.append(package)
    if missing:
        raise BadInput(
            f"runc-rollout lab needs Debian packages that are missing: "
            f"apt-get install -y {' '.join(missing)}"
        )


# ---------------------------------------------------------------------------------------------
# Processes


def proc_stat(pid: int) -> list[str] | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data[data.rindex(")") + 2 :].split()  # [0] is field 3 (state), [19] field 22


def proc_start(pid: int) -> int | None:
    """A live (not zombie) process's start time, or None."""
    fields = proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(ref: ProcRef | None) -> bool:
    return ref is not None and proc_start(ref.pid) == ref.start


def mount_ns(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        return None


def nsenter_argv(holder_pid: int) -> list[str]:
    """`nsenter` into a lab host: the mount and UTS namespaces its holder process keeps."""
    return [
        "/usr/bin/nsenter",
        f"--mount=/proc/{holder_pid}/ns/mnt",
        f"--uts=/proc/{holder_pid}/ns/uts",
        "--",
    ]


def send_signal(ref: ProcRef, sig: int) -> bool:
    if not alive(ref):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(ref.pid, sig)
    return True


def wait_gone(refs: list[ProcRef], timeout: float) -> list[ProcRef]:
    """Wait until none of `refs` is alive; reap our own children. Returns those still alive."""
    deadline = time.monotonic() + timeout
    while True:
        for ref in refs:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(ref.pid, os.WNOHANG)
        left = [ref for ref in refs if alive(ref)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def stop_processes(refs: list[ProcRef], timeout: float) -> int:
    """SIGTERM, then SIGKILL after `timeout`. Returns how many were alive."""
    live = [ref for ref in refs if send_signal(ref, signal.SIGTERM)]
    left = wait_gone(live, timeout)
    for ref in left:
        send_signal(ref, signal.SIGKILL)
    wait_gone(left, 5.0)
    return len(live)


def read_proc_text(pid: int, name: str) -> str:
    try:
        return Path(f"/proc/{pid}/{name}").read_text(errors="replace")
    except OSError:
        return ""


def memory_of(pids: list[int]) -> tuple[int, int]:
    """Summed RSS and PSS (shared pages divided among their users) of `pids`, in bytes."""
    rss = pss = 0
    for pid in pids:
        for line in read_proc_text(pid, "smaps_rollup").splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss += int(line.split()[1]) * 1024
    return rss, pss


# ---------------------------------------------------------------------------------------------
# Small helpers


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


def write_file(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write via a temporary file and rename (no fsync: the lab is disposable)."""
    payload = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(payload)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def copy_executable(source: Path, target: Path) -> None:
    """Copy a binary via a temporary file and rename: never a write into a file in use."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


def link_executable(source: Path, target: Path) -> None:
    """Make `target` a hard link to `source` via a temporary name and rename (as
    `copy_executable`, without the copy): the two are then one file."""
    tmp = target.with_name(f".{target.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    os.link(source, tmp)
    os.replace(tmp, target)


def file_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def in_parallel(func: Callable[[T], None], items: list[T], workers: int = 16) -> None:
    """Run `func` over items in threads; re-raise the first error after all have finished."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [pool.submit(func, item) for item in items]
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error


def file_sha256(path: str | Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def addresses_from(first: str, count: int) -> list[str]:
    try:
        start = ipaddress.IPv4Address(first)
    except ValueError as exc:
        raise BadInput(f"lab: bad first address {first!r}: {exc}") from None
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    last = start + (count - 1) if count else start
    if start not in loopback or last not in loopback or last == loopback.broadcast_address:
        raise BadInput(f"lab: {count} hosts from {first} leave 127.0.0.0/8; lab hosts use loopback")
    return [str(start + i) for i in range(count)]


def port_in_use(address: str, port: int = 22) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def ssh_banner(address: str, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def unix_http_ok(path: str, request: bytes, timeout: float = 2.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            if not request:
                return True
            sock.sendall(request)
            return sock.recv(64).split(b" ", 2)[1:2] == [b"200"]
    except (OSError, IndexError):
        return False


def http_answers(path: str, request: bytes) -> Callable[[], bool]:
    return lambda: unix_http_ok(path, request)


def wait_for(check: Callable[[], bool], process: ProcRef, timeout: float) -> bool:
    """Poll `check` until it holds; give up early when `process` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if not alive(process):
            return False
        time.sleep(0.05)
    return check()


def keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
