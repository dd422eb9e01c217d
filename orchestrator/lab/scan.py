"""Finding the lab's processes in /proc: those of its hosts' namespaces and cgroups, and the
`runc init` processes of a host's containers (hung ones among them); its cgroups removed."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from orchestrator.host.runcinfo import PIPE_WCHANS, is_runc_init
from orchestrator.lab.core import LabCore
from orchestrator.lab.procs import (
    alive,
    mount_ns,
    proc_start,
    proc_stat,
    read_proc_text,
    send_signal,
    wait_gone,
)
from orchestrator.lab.records import (
    HostRecord,
    ProcRef,
)


class LabScan(LabCore):
    """The lab's processes as /proc shows them."""

    def kill_runc_inits(self, host: HostRecord) -> None:
        """SIGKILL the host's `runc init` processes and wait (up to 5 s) until they are gone: a
        container whose runc init hangs cannot be removed otherwise."""
        inits = [ref for ref, _wchan in self.runc_inits(host)]
        for ref in inits:
            send_signal(ref, signal.SIGKILL)
        wait_gone(inits, 5.0)

    def runc_inits(self, host: HostRecord) -> list[tuple[ProcRef, str]]:
        """The `runc init` processes (as unstick sees them) in the host's containers, with
        their wchan."""
        marker = f"/{self.cgroup_root}/{host.name}/"
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            argv = [word for word in read_proc_text(pid, "cmdline").split("\0") if word]
            if not is_runc_init(read_proc_text(pid, "comm").strip(), argv):
                continue
            start = proc_start(pid)
            if start is not None and marker in read_proc_text(pid, "cgroup"):
                found.append((ProcRef(pid=pid, start=start), read_proc_text(pid, "wchan")))
        return found

    def hung_inits(self, host: HostRecord) -> list[int]:
        return [ref.pid for ref, wchan in self.runc_inits(host) if wchan in PIPE_WCHANS]

    # -- finding the lab's processes ------------------------------------------------------------

    def namespaces(self) -> set[int]:
        """The mount namespaces of the lab's hosts, as far as a recorded process still holds one."""
        recorded = [ref for host in self.record.hosts for ref in host.procs.values()]
        found = {ns for ref in recorded if alive(ref) and (ns := mount_ns(ref.pid)) is not None}
        found.discard(mount_ns(os.getpid()) or -1)
        return found

    def processes(self, namespaces: set[int] | None = None) -> list[ProcRef]:
        """Every live process of this lab: those recorded, those in a lab host's namespace, the
        supervisor's children, and those in the lab's cgroups (containers)."""
        recorded = [ref for host in self.record.hosts for ref in host.procs.values()]
        supervisor = self.record.supervisor
        if namespaces is None:
            namespaces = self.namespaces()
        supervisor_pid = supervisor.pid if alive(supervisor) and supervisor else None
        marker = f"/{self.cgroup_root}/"
        found: dict[int, ProcRef] = {ref.pid: ref for ref in recorded if alive(ref)}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid in found or pid == os.getpid() or pid == supervisor_pid:
                continue
            fields = proc_stat(pid)
            if fields is None or fields[0] in ("Z", "X"):
                continue
            ours = (
                mount_ns(pid) in namespaces
                or (supervisor_pid is not None and int(fields[1]) == supervisor_pid)
                or marker in read_proc_text(pid, "cgroup")
            )
            if ours:
                found[pid] = ProcRef(pid=pid, start=int(fields[19]))
        return list(found.values())

    def remove_cgroups(self) -> list[str]:
        """rmdir the lab's cgroup directories (deepest first) in every hierarchy. A cgroup stays
        busy until its last killed process is reaped, so busy ones are retried for a while."""
        tops = [Path("/sys/fs/cgroup") / self.cgroup_root]
        with contextlib.suppress(OSError):
            tops += [Path(e.path) / self.cgroup_root for e in os.scandir("/sys/fs/cgroup")]
        deadline = time.monotonic() + 10.0
        while True:
            leftovers = []
            for top in tops:
                if not top.is_dir():
                    continue
                for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(dirpath)
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        leftovers.append(f"cgroup {dirpath}: {exc.strerror}")
            if not leftovers or time.monotonic() >= deadline:
                return leftovers
            time.sleep(0.1)
