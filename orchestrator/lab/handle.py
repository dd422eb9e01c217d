"""The lab as a harness sees it: `LabFleet`, a handle on a running lab (its hosts, how to reach
them, facts, reset), `start_lab` on free loopback addresses, and the stand-in candidates the
fault trials and tests roll out. Used by the tests, `bench/` and the fault trials
(`orchestrator/lab/faults/`); never by the product's run path."""

from __future__ import annotations

import os
import random
import shlex
import subprocess
import sys
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.errors import BadInput
from orchestrator.host.facts import gather_facts
from orchestrator.lab.fleet import lab_down, lab_reset, lab_stick, lab_up
from orchestrator.lab.hostdef import probe_uid
from orchestrator.lab.procs import check_requirements, port_in_use
from orchestrator.lab.records import LabHost, LabInfo, LabRuntime, StuckSeed
from orchestrator.models import HostFacts, SshTarget

RUNC_ROLLOUT = str(Path(sys.executable).parent / "runc-rollout")  # the installed console script
TEST_ADDRESS_ENV = "RUNC_ROLLOUT_LAB_TEST_FIRST_ADDRESS"
HANGING_RUNC = """#!/bin/sh
# A candidate runc that reports a version but never finishes creating a container.
case "$1" in --version|-v) printf 'runc version 1.1.5+hang\\ncommit: hang\\n'; exit 0;; esac
for arg in "$@"; do
    case "$arg" in create|run) sleep 120; exit 1;; esac
done
exec /usr/sbin/runc "$@"
"""


class NoFreeAddresses(BadInput):
    """No loopback range has port 22 free for a new lab."""


def lab_unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    try:
        check_requirements()
    except BadInput as exc:
        return str(exc)
    return None


def free_first_address(count: int) -> str:
    """A first address such that `count` consecutive loopback addresses have port 22 free.

    Random 127.0.K.11 ranges (K in 100..199), so that sessions running side by side on one
    machine (or a lab someone left up on 127.0.0.11) do not collide. Under pytest-xdist each
    worker draws from its own share of K (K mod workers = its number), so two workers checking
    the same free range at the same moment cannot both take it.
    """
    if os.environ.get(TEST_ADDRESS_ENV):
        return os.environ[TEST_ADDRESS_ENV]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    candidates = [third for third in range(100, 200) if third % workers == int(worker) % workers]
    random.shuffle(candidates)
    for third in candidates:
        addresses = [f"127.0.{third}.{11 + i}" for i in range(count)]
        if not any(port_in_use(address) for address in addresses):
            return addresses[0]
    raise NoFreeAddresses(
        "lab unavailable: port 22 is taken on every loopback range tried (sshd on *:22?)"
    )


@dataclass
class LabFleet:
    """A running lab, as the tests see it."""

    info: LabInfo
    state_dir: Path
    inventory: Path
    private_key: Path
    known_hosts: Path
    hosts: list[LabHost]

    @classmethod
    def from_info(cls, info: LabInfo) -> LabFleet:
        return cls(
            info=info,
            state_dir=info.state_dir,
            inventory=info.inventory_path,
            private_key=info.private_key,
            known_hosts=info.known_hosts,
            hosts=info.hosts,
        )

    @property
    def full_hosts(self) -> list[LabHost]:
        return [host for host in self.hosts if host.kind == "full"]

    @property
    def containerd_hosts(self) -> list[LabHost]:
        """containerd-only hosts (no dockerd)."""
        return [host for host in self.hosts if host.kind == "containerd"]

    @property
    def light_hosts(self) -> list[LabHost]:
        return [host for host in self.hosts if host.kind == "light"]

    def host(self, name: str) -> LabHost:
        return next(host for host in self.hosts if host.name == name)

    def target(self, host: LabHost) -> SshTarget:
        """How the SSH backend reaches a lab host, with the lab's key and known_hosts."""
        return SshTarget(
            address=host.address,
            user="root",
            private_key_file=str(self.private_key),
            known_hosts_file=str(self.known_hosts),
        )

    def facts(self, host: LabHost) -> HostFacts:
        with SshExecutor() as executor:
            return gather_facts(executor.session(self.target(host), name=host.name))

    def probe_processes(self) -> list[int]:
        """PIDs of every process running as one of this lab's probe uids (a pipe holder, a hung
        runc init): none may be left once a probe has ended."""
        uids = {str(probe_uid(host.address)) for host in self.hosts}
        found = []
        for status in Path("/proc").glob("[0-9]*/status"):
            with suppress(OSError):
                rows = dict(r.split(":", 1) for r in status.read_text().splitlines() if ":" in r)
                dead = rows.get("State", "").split()[:1] == ["Z"]  # exited, not yet reaped
                if not dead and uids & set(rows.get("Uid", "").split()[:3]):
                    found.append(int(status.parent.name))
        return found

    def reset(self, *hosts: LabHost) -> None:
        """Put hosts (default: all) back in the incident's state: rc93 runc, sysctl 163840 at
        runtime and in /etc/sysctl.d, empty /var/lib/runc-rollout, no stuck container. Tests
        that change a host of the shared lab call this when they finish."""
        lab_reset(self.state_dir, [host.name for host in hosts] or None)

    def stick(self, host: LabHost) -> StuckSeed:
        """The incident's hung container on a full host, for real (`lab up --stuck`); `reset`
        removes it."""
        return lab_stick(self.state_dir, host.name)

    def ssh_argv(self, host: LabHost, known_hosts: Path | None = None) -> list[str]:
        return [
            "ssh",
            "-i",
            str(self.private_key),
            "-o",
            f"UserKnownHostsFile={known_hosts or self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-F",
            "/dev/null",
            f"root@{host.address}",
        ]

    def ssh(
        self,
        host: LabHost,
        command: str | Sequence[str],
        *,
        known_hosts: Path | None = None,
        check: bool = True,
        timeout: float = 90,
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` on a lab host over real ssh with strict host key checking."""
        remote = command if isinstance(command, str) else shlex.join(command)
        done = subprocess.run(
            [*self.ssh_argv(host, known_hosts), remote],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"ssh {host.name} {remote!r} exited {done.returncode}: {done.stderr.strip()}"
            )
        return done


def start_lab(
    state_dir: Path,
    inventory: Path,
    hosts: int,
    full: int,
    *,
    containerd: int = 0,
    stuck: bool = False,
    no_python: int = 0,
    runtimes: Sequence[LabRuntime] = (),
    packaged_runc: int = 0,
    rpm_runc: int = 0,
    busybox: int = 0,
    read_only: int = 0,
) -> LabFleet:
    try:
        info = lab_up(
            hosts,
            full,
            containerd,
            state_dir=state_dir,
            inventory_path=inventory,
            first_address=free_first_address(hosts),
            stuck=stuck,
            no_python=no_python,
            runtimes=runtimes,
            packaged_runc=packaged_runc,
            rpm_runc=rpm_runc,
            busybox=busybox,
            read_only=read_only,
        )
    except BaseException:
        lab_down(state_dir, inventory)
        raise
    return LabFleet.from_info(info)


def attach_lab(state_dir: Path) -> LabFleet:
    """The running lab in `state_dir` (restarting whatever of it died)."""
    return LabFleet.from_info(lab_up(state_dir=state_dir))
