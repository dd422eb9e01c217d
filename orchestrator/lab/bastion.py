"""A bastion in front of lab hosts: the hosts answer SSH only from behind it.

The hosts get a second sshd each (their own files, host key and config) inside a network
namespace of the bastion's, on an "inner" address 127.1.K.N that nothing on the machine's own
network answers. The bastion's sshd runs in that namespace too; a small listener on the machine's
loopback hands it each connection (`sshd -i`, inetd style). So the only way to an inner host is
through the bastion (`ProxyJump`, or `ProxyCommand ssh -W %h:%p bastion`), exactly as on a fleet
behind a jump host. Every process started here is recorded by PID and stopped by `down`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab import fleet, hostdef
from orchestrator.lab.procs import ssh_banner
from orchestrator.lab.records import LabHost, LabInfo, LabRecord

LISTENER = """
import os, signal, socket, subprocess, sys
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
server = socket.create_server((sys.argv[1], 22), backlog=128)
while True:
    conn, _ = server.accept()
    subprocess.Popen(sys.argv[2:], stdin=conn.fileno(), stdout=conn.fileno(),
                     stderr=subprocess.DEVNULL, close_fds=True)
    conn.close()
"""
HOLDER = "ip link set lo up && mount -t tmpfs -o mode=0755 rr-bastion /run && mkdir /run/sshd && "


@dataclass
class Bastion:
    """A running bastion: its address, its known_hosts line, the inner address of each host."""

    address: str
    directory: Path
    private_key: Path  # the lab's client key, authorized on the bastion too
    known_hosts: Path  # the bastion's key and each host's key under its inner address
    inner: dict[str, str]  # host name -> inner address
    pids: list[int] = field(default_factory=list)


def bastion_up(info: LabInfo, hosts: list[LabHost], address: str, directory: Path) -> Bastion:
    """A bastion on `address`:22 in front of `hosts` of the lab `info`."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    record = fleet.load_record(info.state_dir)
    if record is None:
        raise LabError(f"{info.state_dir}: no lab")
    third = address.split(".")[2]
    bastion = Bastion(
        address=address,
        directory=directory,
        private_key=info.private_key,
        known_hosts=directory / "known_hosts",
        inner={host.name: f"127.1.{third}.{host.address.split('.')[3]}" for host in hosts},
    )
    try:
        _start(bastion, info, record, hosts)
    except BaseException:
        bastion_down(bastion)
        raise
    return bastion


def _start(bastion: Bastion, info: LabInfo, record: LabRecord, hosts: list[LabHost]) -> None:
    directory = bastion.directory
    key = directory / "bastion_host_key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    shutil.copy(f"{info.private_key}.pub", directory / "authorized_keys")
    holder = subprocess.Popen(
        [
            "unshare",
            "--net",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            HOLDER + "exec sleep infinity",
        ],
        stdin=subprocess.DEVNULL,
    )
    bastion.pids.append(holder.pid)
    netns = f"/proc/{holder.pid}/ns/net"
    _wait(lambda: _has_run_sshd(holder.pid), f"bastion namespace {holder.pid}")
    kind, blob = (directory / "bastion_host_key.pub").read_text().split()[:2]
    lines = [f"{bastion.address} {kind} {blob}"]
    by_name = {host.name: host for host in record.hosts}
    for host in hosts:
        lab_host = by_name[host.name]
        mount = f"/proc/{lab_host.procs['holder'].pid}/ns/mnt"
        inner = bastion.inner[host.name]
        config = f"{hostdef.LAB_MOUNT}/hosts/{host.name}/sshd_config"
        sshd = subprocess.Popen(
            [
                "nsenter",
                f"--net={netns}",
                f"--mount={mount}",
                f"--uts={mount[:-3]}uts",
                "--",
                "/usr/sbin/sshd",
                "-D",
                "-f",
                config,
                "-o",
                f"ListenAddress={inner}:22",
                "-o",
                "PidFile=none",
                "-E",
                "/var/log/sshd-bastion.log",
            ],
            stdin=subprocess.DEVNULL,
        )
        bastion.pids.append(sshd.pid)
        host_key = info.state_dir / "hosts" / host.name / "ssh_host_ed25519_key.pub"
        kind, blob = host_key.read_text().split()[:2]
        lines.append(f"{inner} {kind} {blob}")
    bastion.known_hosts.write_text("\n".join(lines) + "\n")
    sshd_i = [
        "nsenter",
        f"--net={netns}",
        f"--mount=/proc/{holder.pid}/ns/mnt",
        "--",
        "/usr/sbin/sshd",
        "-i",
        "-f",
        "/dev/null",
        "-o",
        f"HostKey={key}",
        "-o",
        f"AuthorizedKeysFile={directory / 'authorized_keys'}",
        "-o",
        "PidFile=none",
        "-o",
        "UsePAM=no",
        "-o",
        "StrictModes=no",
        "-o",
        "PermitRootLogin=prohibit-password",
        "-o",
        "PasswordAuthentication=no",
        "-o",
        "AllowTcpForwarding=yes",
        "-o",
        "MaxSessions=256",
    ]
    listener = subprocess.Popen(
        [sys.executable, "-c", LISTENER, bastion.address, *sshd_i], stdin=subprocess.DEVNULL
    )
    bastion.pids.append(listener.pid)
    _wait(lambda: ssh_banner(bastion.address), f"bastion on {bastion.address}:22")


def _has_run_sshd(pid: int) -> bool:
    return os.path.isdir(f"/proc/{pid}/root/run/sshd")


def _wait(ready: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise LabError(f"{what} did not come up")
        time.sleep(0.05)


def bastion_down(bastion: Bastion) -> None:
    """Stop what `bastion_up` started (by PID, listener first) and remove its directory."""
    for pid in reversed(bastion.pids):
        try:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            continue
    shutil.rmtree(bastion.directory, ignore_errors=True)
