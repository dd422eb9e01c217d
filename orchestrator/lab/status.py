"""`lab status` and the lab's memory: what each host runs, its runc and sysctl."""

from __future__ import annotations

import contextlib
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab import hostdef
from orchestrator.lab.core import load_record
from orchestrator.lab.procs import (
    alive,
    default_state_dir,
    file_sha256,
    in_parallel,
    memory_of,
)
from orchestrator.lab.records import (
    HostRecord,
    LabHostStatus,
)
from orchestrator.lab.scan import LabScan


class LabStatus(LabScan):
    """What `lab status` says of each host."""

    def host_status(self, host: HostRecord) -> LabHostStatus:
        holder = self.holder_alive(host)
        full = host.kind == "full"
        version = sha = None
        sysctl: int | None = None
        if holder:
            root = f"/proc/{host.procs['holder'].pid}/root"
            sha = file_sha256(f"{root}{hostdef.HOST_RUNC}")
            with contextlib.suppress(LabError, OSError):
                output = self.in_host(host, [hostdef.HOST_RUNC, "--version"], timeout=15)
                version = output.splitlines()[0].strip() if output.strip() else None
            with contextlib.suppress(OSError, ValueError):
                sysctl = int(Path(f"{root}{hostdef.PIPE_SYSCTL}").read_text().split()[0])
        return LabHostStatus(
            name=host.name,
            address=host.address,
            zone=host.zone,
            kind=host.kind,
            holder=holder,
            sshd=alive(host.procs.get("sshd")),
            containerd=alive(host.procs.get("containerd")) if host.kind != "light" else None,
            dockerd=alive(host.procs.get("dockerd")) if full else None,
            runc_version=version,
            runc_sha256=sha,
            sysctl=sysctl,
            hung=self.hung_inits(host) if full else None,
            pids={what: ref.pid for what, ref in host.procs.items() if alive(ref)},
        )


def lab_status(state_dir: Path | None = None) -> list[LabHostStatus]:
    """Every host of the lab in `state_dir` (empty when there is no lab)."""
    state_dir = (state_dir or default_state_dir()).absolute()
    record = load_record(state_dir) if state_dir.is_dir() else None
    if record is None:
        return []
    lab = LabStatus(state_dir, record)
    results: dict[str, LabHostStatus] = {}

    def one(host: HostRecord) -> None:
        results[host.name] = lab.host_status(host)

    in_parallel(one, record.hosts, workers=16)
    return [results[host.name] for host in record.hosts]


def lab_memory(state_dir: Path | None = None) -> tuple[int, int]:
    """RSS and PSS, in bytes, of every process of the lab, the supervisor included."""
    state_dir = (state_dir or default_state_dir()).absolute()
    record = load_record(state_dir) if state_dir.is_dir() else None
    if record is None:
        return 0, 0
    lab = LabStatus(state_dir, record)
    pids = [ref.pid for ref in lab.processes()]
    if alive(record.supervisor) and record.supervisor is not None:
        pids.append(record.supervisor.pid)
    return memory_of(pids)
