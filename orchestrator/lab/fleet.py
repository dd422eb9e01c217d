"""`runc-rollout lab up|down|status`: a fleet of real hosts on one Linux machine.

Each lab host is a mount namespace (see `hostdef` for its mounts) with a real OpenSSH sshd on its
own loopback address; "full" hosts also run their own containerd and dockerd, "containerd" hosts
their own containerd alone (a Kubernetes 1.24+ node: CRI, no dockershim). All of them are
children of one lab supervisor (`supervisor.py`), which reaps them. `lab.json` in the state
directory records every process the lab started (PID and start time, so a recycled PID is never
taken for a lab process); `lab down` stops exactly those, plus anything still running inside a lab
host's namespace or the lab's cgroups, and removes the state directory and the inventory.

Nothing here changes the machine itself: no mount is made outside the lab hosts' namespaces, no
file is written outside the state directory and the inventory, and a lab host's /proc/sys is
read-only except its own `fs.pipe-user-pages-soft`, which is a plain file.

Here: bringing a lab up, resetting and taking it down. The parts: `core` (record, paths, the
supervisor's socket, the lock), `files` (keys, rc93, image, each host's files), `daemons` (each
host's processes), `scan` (finding the lab's processes), `stuck` (the trigger, the hung seed),
`status` (`lab status`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from orchestrator.errors import BadInput, LabError
from orchestrator.lab import hostdef
from orchestrator.lab import runtimes as lab_runtimes
from orchestrator.lab.core import (
    HOLDER_PREFIX,
    RECORD_NAME,
    _call,
    _lab_id,
    _locked,
    _mkdirs,
    _reap_own,
    load_record,
)
from orchestrator.lab.daemons import LabDaemons
from orchestrator.lab.defaults import (
    DEFAULT_CONTAINERD,
    DEFAULT_FIRST_ADDRESS,
    DEFAULT_FULL,
    DEFAULT_HOSTS,
    DEFAULT_INVENTORY,
    FIRST_ADDRESS_ENV,
)
from orchestrator.lab.files import LabFiles
from orchestrator.lab.procs import (
    addresses_from,
    alive,
    check_requirements,
    default_state_dir,
    in_parallel,
    mount_ns,
    port_in_use,
    send_signal,
    stop_processes,
    wait_gone,
)
from orchestrator.lab.records import (
    KINDS,
    HostKind,
    HostRecord,
    LabDownReport,
    LabHost,
    LabInfo,
    LabRecord,
    LabRuntime,
    ProcRef,
)
from orchestrator.lab.status import LabStatus, lab_memory, lab_status
from orchestrator.lab.stuck import LabTrigger, format_trigger, lab_stick, lab_trigger
from orchestrator.lab.supervisor import SOCKET_NAME
from orchestrator.lab.text import kinds_text, next_commands

__all__ = [
    "HOLDER_PREFIX",
    "format_trigger",
    "lab_down",
    "lab_memory",
    "lab_reset",
    "lab_status",
    "lab_stick",
    "lab_trigger",
    "lab_up",
    "load_record",
]


MAX_HOSTS = 2000  # two processes each at rest (namespace holder, sshd): ~4,000 of the PIDs


class _Lab(LabFiles, LabDaemons, LabTrigger, LabStatus):
    """A whole lab: its files, daemons, trigger and status together."""


def _plan_hosts(
    count: int, full: int, containerd: int, first: str, runtimes: Sequence[LabRuntime] = ()
) -> list[HostRecord]:
    """`count` hosts: `full` full ones first (the first ones with Docker default `runtimes`),
    then `containerd` containerd-only ones."""
    addresses = addresses_from(first, count)
    width = max(2, len(str(count)))
    counts: tuple[tuple[HostKind, int], ...] = (
        ("full", full),
        ("containerd", containerd),
        ("light", count - full - containerd),
    )
    kinds = [kind for kind, number in counts for _ in range(number)]
    return [
        HostRecord(
            name=f"lab-{i + 1:0{width}d}",
            address=addresses[i],
            zone="zone-a" if i % 2 == 0 else "zone-b",
            kind=kinds[i],
            runtime=runtimes[i] if i < len(runtimes) else "runc",
        )
        for i in range(count)
    ]


def _count(hosts: list[HostRecord], kind: HostKind) -> int:
    return sum(host.kind == kind for host in hosts)


# ---------------------------------------------------------------------------------------------
# The API


def lab_up(
    hosts: int | None = None,
    docker: int | None = None,
    containerd: int | None = None,
    *,
    state_dir: Path | None = None,
    inventory_path: Path | None = None,
    first_address: str | None = None,
    stuck: bool = False,
    no_python: int = 0,
    runtimes: Sequence[LabRuntime] = (),
    packaged_runc: int = 0,
    rpm_runc: int = 0,
    busybox: int = 0,
    read_only: int = 0,
    link_runc: bool = False,
) -> LabInfo:
    """Bring the lab up (or complete a running one): `hosts` hosts, the first `docker` of them
    full, the next `containerd` containerd-only; the first `no_python` of them with no Python
    (as a minimal CentOS 7, Flatcar or Fedora CoreOS node); the first `busybox` of them with a
    busybox userland (and no Python); the last `read_only` with their runc's folder mounted
    read-only (as Flatcar's and Fedora CoreOS's /usr). Without counts, a running lab keeps
    its size and a new one gets 4 hosts, 2 full, none containerd-only. `runtimes`: Docker's
    default runtime on the first full hosts, in order (`runtimes.py`; the others run plain runc).
    `stuck`: the first full host also gets the incident's hung container (`lab_stick`).
    `link_runc`: light hosts' rc93 is a hard link to the lab's copy (13 MB less each, for
    large labs; a new lab only)."""
    began = time.monotonic()
    state_dir = (state_dir or default_state_dir()).absolute()
    record = load_record(state_dir) if state_dir.is_dir() else None
    if record is not None:
        have_full, have_ctr = _count(record.hosts, "full"), _count(record.hosts, "containerd")
        if (
            (hosts is not None and hosts != len(record.hosts))
            or (docker is not None and docker != have_full)
            or (containerd is not None and containerd != have_ctr)
            or (runtimes and list(runtimes) != [h.runtime for h in record.hosts[: len(runtimes)]])
        ):
            raise BadInput(
                f"a lab of {len(record.hosts)} hosts ({kinds_text(record.hosts)}) is in "
                f"{state_dir}; run `runc-rollout lab down` first to change its size"
            )
        if inventory_path is not None and inventory_path.absolute() != Path(record.inventory_path):
            raise BadInput(
                f"the lab in {state_dir} writes its inventory to {record.inventory_path}; "
                "run `runc-rollout lab down` first to move it"
            )
        if first_address is not None and first_address != record.first_address:
            raise BadInput(f"the lab in {state_dir} starts at {record.first_address}")
    if record is not None:
        count, full = len(record.hosts), _count(record.hosts, "full")
        ctr_only = _count(record.hosts, "containerd")
    else:
        count = DEFAULT_HOSTS if hosts is None else hosts
        full = min(DEFAULT_FULL, count) if docker is None else docker
        ctr_only = DEFAULT_CONTAINERD if containerd is None else containerd
    if record is None:
        if count < 1 or full < 0 or ctr_only < 0 or full + ctr_only > count:
            raise BadInput(
                "lab: need 1 or more hosts, of which 0..hosts full and containerd-only ones "
                f"together (got {count}, {full} full, {ctr_only} containerd-only)"
            )
        if count > MAX_HOSTS:
            raise BadInput(f"lab: at most {MAX_HOSTS} hosts")
    kinds = {"full": full, "containerd": ctr_only, "light": count - full - ctr_only}
    check_requirements(tuple(kind for kind in KINDS if kinds[kind]))
    if len(runtimes) > full:
        raise BadInput(f"lab: {len(runtimes)} --runtime given for {full} full hosts")
    if "crun" in runtimes and not os.access(lab_runtimes.CRUN, os.X_OK):
        raise BadInput(
            "runc-rollout lab needs Debian's crun for --runtime crun: apt-get install -y crun"
        )
    if "runsc" in runtimes and not os.access(lab_runtimes.RUNSC, os.X_OK):
        raise BadInput(
            "runc-rollout lab needs Debian's runsc for --runtime runsc: apt-get install -y runsc"
        )
    if stuck and not full:
        raise BadInput("lab up --stuck needs a full host (--docker 1 or more)")
    if record is None:
        if state_dir.exists() and any(state_dir.iterdir()):
            raise BadInput(f"{state_dir} exists, is not empty and holds no lab (no {RECORD_NAME})")
        first = first_address or os.environ.get(FIRST_ADDRESS_ENV) or DEFAULT_FIRST_ADDRESS
        for option, number in (("--no-python", no_python), ("--busybox", busybox),
                               ("--read-only", read_only)):  # fmt: skip
            if not 0 <= number <= count:
                raise BadInput(f"lab: {option} {number}: between 0 and the {count} hosts")
        planned = _plan_hosts(count, full, ctr_only, first, runtimes)
        for host in planned[:no_python]:
            host.python = False
        if not 0 <= packaged_runc <= count:
            raise BadInput(f"lab: --packaged-runc {packaged_runc}: between 0 and the {count} hosts")
        if not 0 <= rpm_runc <= count - packaged_runc:
            raise BadInput(
                f"lab: --rpm-runc {rpm_runc}: between 0 and the hosts after the dpkg ones"
            )
        if rpm_runc and not shutil.which("rpmbuild"):
            raise BadInput("runc-rollout lab needs rpm for --rpm-runc: apt-get install -y rpm")
        for host in planned[:packaged_runc]:
            host.packaged = True
        for host in planned[packaged_runc : packaged_runc + rpm_runc]:
            host.packaged, host.package_manager = True, "rpm"
        for host in planned[:busybox]:
            host.busybox, host.python = True, False
        for host in planned[count - read_only :]:
            host.read_only_runc = True
        busy = [h.address for h in planned if port_in_use(h.address)]
        if busy:
            raise BadInput(
                f"lab: {', '.join(busy[:5])} port 22 already in use; pick other addresses "
                f"with {FIRST_ADDRESS_ENV} or --first-address"
            )
        if len(str(state_dir / SOCKET_NAME)) > 100:
            raise BadInput(f"lab: state directory path too long for a unix socket: {state_dir}")
        created = _mkdirs(state_dir, 0o700)
        os.chmod(state_dir, 0o700)
        record = LabRecord(
            created_dirs=created[:-1],  # the state directory itself goes anyway
            lab_id=_lab_id(state_dir),
            state_dir=str(state_dir),
            inventory_path=str((inventory_path or DEFAULT_INVENTORY).absolute()),
            first_address=first,
            created=time.time(),
            hosts=planned,
            link_runc=link_runc,
        )
        already = False
    else:
        already = True
    lab = _Lab(state_dir, record)
    seed = None
    try:
        with _locked(state_dir):
            _bring_up(lab)
            if stuck:
                seed = lab.stick(next(h for h in record.hosts if h.kind == "full"))
    except LabError as exc:
        raise LabError(f"{exc} (`runc-rollout lab down` removes what was started)") from exc
    memory = lab_memory(state_dir)
    info = LabInfo(
        state_dir=state_dir,
        inventory_path=Path(record.inventory_path),
        private_key=lab.private_key,
        known_hosts=lab.known_hosts,
        hosts=[
            LabHost(
                h.name,
                h.address,
                h.zone,
                h.kind,
                python=h.python,
                runtime=h.runtime,
                packaged=h.packaged,
                package_manager=h.package_manager,
                busybox=h.busybox,
                read_only_runc=h.read_only_runc,
            )
            for h in record.hosts
        ],
        already_running=already and not lab.started,
        started=lab.started,
        seconds=time.monotonic() - began,
        rss_bytes=memory[0],
        pss_bytes=memory[1],
        rc93=lab.rc93_note,
        stuck=seed,
    )
    info.next_commands = next_commands(info)
    return info


def _bring_up(lab: _Lab) -> None:
    """Every host's files, namespace, sshd and daemons, each phase over all hosts at once;
    lab.json is written after each phase (and whatever happens: `note` saves only now and then)."""
    hosts = lab.record.hosts
    lab.save()
    try:
        lab.prepare_lab_files(any(h.kind == "full" for h in hosts))
        in_parallel(lab.prepare_host, hosts, workers=8)
        lab.ensure_supervisor()
        in_parallel(lab.ensure_holder, hosts, workers=8)
        lab.save()
        in_parallel(lab.ensure_package, hosts, workers=4)
        in_parallel(lab.ensure_sshd, hosts, workers=8)
        lab.save()
        in_parallel(lab.wait_sshd, hosts, workers=32)
        lab.write_client_files()
        in_parallel(lab.ensure_daemons, [h for h in hosts if h.kind != "light"], workers=4)
    finally:
        lab.save()


def lab_reset(state_dir: Path | None = None, hosts: list[str] | None = None) -> list[str]:
    """Put lab hosts (default: all) back in the incident's state without restarting anything:
    the rc93 runc, fs.pipe-user-pages-soft 163840 at runtime and in /etc/sysctl.d, an empty
    /var/lib/runc-rollout, no stuck container (`lab_stick`). For tests that share one lab.
    Returns the hosts reset."""
    state_dir = (state_dir or default_state_dir()).absolute()
    record = load_record(state_dir) if state_dir.is_dir() else None
    if record is None:
        raise BadInput(f"no lab in {state_dir}")
    known = {host.name: host for host in record.hosts}
    unknown = sorted(set(hosts or ()) - set(known))
    if unknown:
        raise BadInput(f"no such lab host: {', '.join(unknown)}")
    lab = _Lab(state_dir, record)
    chosen = [known[name] for name in hosts] if hosts else record.hosts
    with _locked(state_dir):
        for host in chosen:
            if host.kind == "full":
                lab.remove_stuck(host)
            lab.write_incident_state(host)
            if host.packaged:
                lab.reset_package(host)
    return [host.name for host in chosen]


@contextlib.contextmanager
def _pinned(refs: list[ProcRef]) -> Iterator[None]:
    """The mount namespaces of `refs` held open until the block ends. A lab host's namespace
    freed while `lab down` still looks for its processes gives its number to the next one made
    on the machine (the kernel hands out the lowest free), and that one's processes, no lab's,
    would be killed: a test's `unshare --mount` beside a lab going down was."""
    fds = []
    try:
        for ref in refs:
            with contextlib.suppress(OSError):
                fds.append(os.open(f"/proc/{ref.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC))
        yield
    finally:
        for fd in fds:
            os.close(fd)


def lab_down(state_dir: Path | None = None, inventory_path: Path | None = None) -> LabDownReport:
    """Stop every process of the lab (hung runc init included), remove its cgroups, state
    directory and inventory.
    Safe to run twice; with no lab there, it only removes an inventory it generated."""
    began = time.monotonic()
    state_dir = (state_dir or default_state_dir()).absolute()
    record = load_record(state_dir) if state_dir.is_dir() else None
    report = LabDownReport(state_dir, record is not None, 0, [], 0.0)
    inventories = [inventory_path.absolute()] if inventory_path else []
    if record is None:
        if state_dir.is_dir() and not any(state_dir.iterdir()):
            state_dir.rmdir()
            report.removed.append(str(state_dir))
    else:
        if os.geteuid() != 0:
            raise BadInput("runc-rollout lab down needs root: use sudo")
        lab = _Lab(state_dir, record)
        own_ns = mount_ns(os.getpid())
        recorded = [ref for host in record.hosts for ref in host.procs.values() if alive(ref)]
        if any(mount_ns(ref.pid) == own_ns for ref in recorded):
            raise BadInput("run `runc-rollout lab down` on the machine, not inside a lab host")
        with _locked(state_dir), _pinned(recorded):
            namespaces = lab.namespaces()  # before anything stops: the holders hold them
            stopped = {ref.pid for ref in lab.processes(namespaces)}
            daemons = [h for h in record.hosts if h.kind != "light"]
            in_parallel(lab.stop_daemons, daemons, workers=8)
            for _round in range(5):
                procs = lab.processes(namespaces)
                if not procs:
                    break
                for ref in procs:
                    send_signal(ref, signal.SIGKILL)
                stopped |= {ref.pid for ref in procs}
                left = wait_gone(procs, 10.0)
                if left:
                    report.warnings.append(f"still alive after SIGKILL: {[r.pid for r in left]}")
            supervisor = record.supervisor
            if alive(supervisor) and supervisor is not None:
                with contextlib.suppress(OSError, ValueError):
                    _call(state_dir, {"op": "shutdown"}, timeout=5)
                if wait_gone([supervisor], 5.0):
                    stop_processes([supervisor], 1.0)
                _reap_own(supervisor.pid, 5.0)
                stopped.add(supervisor.pid)
            report.stopped = len(stopped)
            report.warnings += lab.remove_cgroups()
        inventories.append(Path(record.inventory_path))
        mounts = _mounts_under(state_dir)
        if mounts:
            raise LabError(
                f"lab down: {len(mounts)} mounts remain under {state_dir} (e.g. {mounts[0]}); "
                "not removing it"
            )
        shutil.rmtree(state_dir)
        report.removed.append(str(state_dir))
        for path in inventories:
            if _is_lab_inventory(path):
                path.unlink()
                report.removed.append(str(path))
        for directory in sorted(record.created_dirs, key=len, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
                report.removed.append(directory)
    for path in inventories if record is None else []:
        if _is_lab_inventory(path):
            path.unlink()
            report.removed.append(str(path))
    report.seconds = time.monotonic() - began
    return report


def _is_lab_inventory(path: Path) -> bool:
    try:
        with open(path) as handle:
            return handle.readline().startswith(hostdef.INVENTORY_MARKER)
    except OSError:
        return False


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if point == str(path) or point.startswith(prefix):
                found.append(point)
    return found
