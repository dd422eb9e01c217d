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
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import io
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput, LabError
from orchestrator.host import trigger
from orchestrator.host.runcinfo import PIPE_WCHANS, is_runc_init
from orchestrator.lab import hostdef, packaged, rc93
from orchestrator.lab import runtimes as lab_runtimes
from orchestrator.lab.defaults import (
    DEFAULT_CONTAINERD,
    DEFAULT_FIRST_ADDRESS,
    DEFAULT_FULL,
    DEFAULT_HOSTS,
    DEFAULT_INVENTORY,
    FIRST_ADDRESS_ENV,
)
from orchestrator.lab.procs import (
    CTR,
    addresses_from,
    alive,
    check_requirements,
    copy_executable,
    default_state_dir,
    file_sha256,
    file_tail,
    http_answers,
    in_parallel,
    keygen,
    memory_of,
    mount_ns,
    nsenter_argv,
    port_in_use,
    proc_start,
    proc_stat,
    read_proc_text,
    send_signal,
    ssh_banner,
    stop_processes,
    unix_http_ok,
    wait_for,
    wait_gone,
    write_file,
)
from orchestrator.lab.records import (
    KINDS,
    HostKind,
    HostRecord,
    LabDownReport,
    LabHost,
    LabHostStatus,
    LabInfo,
    LabRecord,
    LabRuntime,
    ProcRef,
    StuckSeed,
    TriggerRun,
)
from orchestrator.lab.supervisor import SOCKET_NAME
from orchestrator.lab.text import kinds_text, next_commands

RECORD_NAME = "lab.json"
SUPERVISOR_PY = Path(__file__).with_name("supervisor.py")
DAEMON_ENV = {"PATH": hostdef.SYSTEMD_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
HOLDER_PREFIX = "runc-rollout-lab-holder:"
KEEPALIVE_ARGS = ("--network", "none", hostdef.VERIFY_IMAGE, "sleep", "1000000")
PING = b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n"
RC93_COPY = "runc-rc93"  # the lab's copy of the rc93 build, installed from here on every host
TRIGGER_TIMEOUT = 30.0  # seconds for the trigger to pass or hang runc init
TRIGGER_UID_BASE = trigger.SEED_UID_BASE + 100  # `lab trigger`'s uids: 61100 + host index
DOCKER = "/usr/bin/docker"


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


class _Lab:
    def __init__(self, state_dir: Path, record: LabRecord) -> None:
        self.dir = state_dir
        self.record = record
        self.lock = threading.Lock()
        self.started: list[str] = []
        self.rc93_note = f"installed before, in {self.rc93_copy}"

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

    def note(self, host: HostRecord, what: str, pid: int, log: Path) -> None:
        """Record a process just started (its start time tells it from a later one's PID)."""
        start = proc_start(pid)
        if start is None:
            raise LabError(f"{host.name}: {what} exited at once: {file_tail(log)}")
        with self.lock:
            host.procs[what] = ProcRef(pid=pid, start=start)
            self.started.append(f"{host.name} {what}")
        self.save()

    # -- preparing files ----------------------------------------------------------------------

    def prepare_lab_files(self, full_hosts: bool) -> None:
        (self.dir / "ssh").mkdir(mode=0o700, exist_ok=True)
        (self.dir / "hosts").mkdir(mode=0o755, exist_ok=True)
        keygen(self.private_key, "runc-rollout-lab")
        self.install_rc93()
        if full_hosts:
            self.build_image()
        if any(host.packaged for host in self.record.hosts):
            packaged.build_debs(self.dir, self.rc93_copy, hostdef.LAB_MOUNT)
        if any(host.packaged and host.package_manager == "rpm" for host in self.record.hosts):
            packaged.build_rpms(self.dir, self.rc93_copy)

    def package_inside(self, version: str) -> str:
        """Where a lab host sees the lab's `runc` package of `version`."""
        return f"{hostdef.LAB_MOUNT}/{packaged.DEBS_DIR}/{packaged.deb_name(version)}"

    def ensure_package(self, host: HostRecord) -> None:
        """A packaged host's runc: the old package installed by dpkg in the host, unless its
        own dpkg database has the package already."""
        if not host.packaged:
            return
        if host.package_manager == "rpm":
            installed = (self.host_dir(host) / "var-lib-rpm" / "rpmdb.sqlite").exists()
        else:
            status = (self.host_dir(host) / "var-lib-dpkg" / "status").read_text()
            installed = f"Package: {packaged.PACKAGE}\n" in status
        if not installed:
            self.reset_package(host)
            self.started.append(f"{host.name} {host.package_manager} package {packaged.PACKAGE}")

    def reset_package(self, host: HostRecord) -> None:
        """No diversion or hold, the old package's own /usr/sbin/runc (dpkg or rpm installs it)."""
        if host.package_manager == "rpm":
            hdir = self.host_dir(host)
            packaged.init_dnf_dir(hdir / "etc-dnf")
            packaged.init_rpm_dir(hdir / "var-lib-rpm", hdir / "root")
            name = packaged.rpm_name(packaged.RPM_OLD_VERSION)
            inside = f"{hostdef.LAB_MOUNT}/{packaged.RPMS_DIR}/{name}"
            commands = packaged.rpm_reset_commands(inside)
        else:
            commands = packaged.reset_commands(self.package_inside(packaged.OLD_VERSION))
        for argv in commands:
            self.in_host(host, argv)

    def install_rc93(self) -> None:
        """The lab's copy of runc 1.0.0-rc93 (`rc93.py`), built and cached first when missing."""
        if self.rc93_copy.exists():
            return
        build = rc93.ensure_rc93_runc()
        how = f"built in {build.seconds:.1f}s" if build.built else "from the cache"
        self.rc93_note = f"{how}: {build.path}"
        copy_executable(build.path, self.rc93_copy)
        self.started.append(f"runc {rc93.VERSION} ({how})")

    def build_image(self) -> None:
        """A rootfs tarball of Debian's static busybox with a symlink per applet."""
        target = self.dir / "image" / "busybox.tar"
        if target.exists():
            return
        target.parent.mkdir(mode=0o755, exist_ok=True)
        listing = subprocess.run(
            ["/bin/busybox", "--list-full"], check=True, capture_output=True, text=True
        ).stdout.split()
        tmp = target.with_suffix(".tmp")
        with tarfile.open(tmp, "w") as tar:

            def add_dir(name: str, mode: int = 0o755) -> None:
                info = tarfile.TarInfo(name)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, int(time.time())
                tar.addfile(info)

            def add_file(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(data))

            dirs = {"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "var", "run"}
            dirs |= {"proc", "sys", "dev"}
            for name in sorted(dirs):
                add_dir(name, 0o700 if name == "root" else 0o755)
            add_dir("tmp", 0o1777)
            tar.add("/bin/busybox", arcname="bin/busybox")
            for applet in sorted(set(listing)):
                if applet == "bin/busybox":
                    continue
                info = tarfile.TarInfo(applet)
                info.type, info.linkname, info.mtime = tarfile.SYMTYPE, "/bin/busybox", 0
                tar.addfile(info)
            add_file(
                "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
            )
            add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
        os.replace(tmp, target)

    def prepare_host(self, host: HostRecord) -> None:
        """Create the host's own files, in the incident's state; never touches a prepared host."""
        hdir = self.host_dir(host)
        if (hdir / ".prepared").exists():
            return
        hdir.mkdir(mode=0o755, exist_ok=True)
        for name, mode in (
            ("usr-local-sbin", 0o755),
            ("usr-local-bin", 0o755),
            ("etc-sysctl.d", 0o755),
            ("etc-docker", 0o755),
            ("etc-containerd", 0o755),
            ("root", 0o700),
            ("root/.ssh", 0o700),
            ("var-log", 0o755),
            ("var-lib-runc-rollout", 0o700),
            *((("var-lib-dpkg", 0o755),) if host.packaged else ()),
            *((("var-lib-rpm", 0o755),) if host.package_manager == "rpm" else ()),
        ):
            (hdir / name).mkdir(mode=mode, exist_ok=True)
            os.chmod(hdir / name, mode)
        if host.packaged and host.package_manager == "rpm":
            packaged.init_dnf_dir(hdir / "etc-dnf")  # and an empty dpkg database
            packaged.init_rpm_dir(hdir / "var-lib-rpm", hdir / "root")
        elif host.packaged:
            packaged.init_dpkg_dir(hdir / "var-lib-dpkg")
        self.write_incident_state(host)
        public = (self.dir / "ssh" / "id_ed25519.pub").read_text()
        write_file(hdir / "root" / ".ssh" / "authorized_keys", public, 0o600)
        for name in ("wtmp", "btmp", "lastlog"):
            write_file(hdir / "var-log" / name, b"", 0o600 if name == "btmp" else 0o664)
        keygen(hdir / "ssh_host_ed25519_key", f"root@{host.name}")
        write_file(hdir / "sshd_config", hostdef.sshd_config(host.address, self.inside(host)))
        write_file(hdir / hostdef.NOT_A_PROGRAM, b"", 0o644)
        if host.busybox:
            passwd = hostdef.busybox_passwd(Path("/etc/passwd").read_text())
            write_file(hdir / hostdef.BUSYBOX_PASSWD, passwd, 0o644)
        if host.kind == "full":
            (hdir / "var-lib-docker").mkdir(mode=0o710, exist_ok=True)
            self.write_daemon_json(host, "overlay2")
        if host.runtime == "nvidia":
            bin_dir, config_dir = hdir / "usr-local-bin", hdir / "etc-nvidia-container-runtime"
            config_dir.mkdir(mode=0o755, exist_ok=True)
            write_file(config_dir / "config.toml", lab_runtimes.NVIDIA_CONFIG_TEXT)
            write_file(bin_dir / "nvidia-container-runtime", lab_runtimes.SHIM_TEXT, 0o755)
            write_file(bin_dir / "nvidia-container-runtime-hook", lab_runtimes.HOOK_TEXT, 0o755)
        if host.kind != "light":
            (hdir / "var-lib-containerd").mkdir(mode=0o711, exist_ok=True)
            cri = host.kind == "containerd" or host.runtime == "cri"
            binary = lab_runtimes.CRI_RUNC if host.runtime == "cri" else hostdef.HOST_RUNC
            config = hostdef.containerd_config(cri=cri, binary_name=binary)
            write_file(hdir / "etc-containerd" / "config.toml", config)
        write_file(hdir / ".prepared", "")

    def write_incident_state(self, host: HostRecord) -> None:
        """The old runc (the rc93 build), the raised sysctl (runtime and /etc/sysctl.d), the
        machine's other sysctl files, an empty /var/lib/runc-rollout: the state every lab host
        starts in.

        Files bound over a single file in the host (the sysctl value, /etc/sysctl.conf) are
        rewritten in place: a new file renamed over them would not be what the host sees."""
        hdir = self.host_dir(host)
        for name in ("usr-local-sbin", "etc-sysctl.d", "var-lib-runc-rollout"):
            for entry in os.scandir(hdir / name):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                elif host.packaged or not (name == "usr-local-sbin" and entry.name == "runc"):
                    os.unlink(entry.path)
        # Replaced in one rename, never removed first: the host's daemons run all along, and a
        # container started while it was missing would fail ("executable file not found").
        if not host.packaged:  # a packaged host's runc is its package's, in /usr/sbin
            copy_executable(self.rc93_copy, hdir / "usr-local-sbin" / "runc")
        for entry in os.scandir(hdir / "usr-local-bin"):  # what a swap there staged
            if entry.name.startswith(".runc-rollout-"):
                os.unlink(entry.path)
        if host.runtime == "cri":
            copy_executable(self.rc93_copy, hdir / "usr-local-bin" / "runc")
        sysctl_d = hdir / "etc-sysctl.d"
        if os.path.isdir("/etc/sysctl.d"):
            for entry in os.scandir("/etc/sysctl.d"):
                if entry.is_symlink():
                    os.symlink(os.readlink(entry.path), sysctl_d / entry.name)
                elif entry.is_file():
                    shutil.copy2(entry.path, sysctl_d / entry.name)
        write_file(sysctl_d / hostdef.INCIDENT_CONF_NAME, hostdef.incident_sysctl_conf())
        if os.path.isfile("/etc/sysctl.conf"):
            with open("/etc/sysctl.conf", "rb") as source, open(hdir / "sysctl.conf", "wb") as out:
                shutil.copyfileobj(source, out)
        with open(hdir / "pipe-user-pages-soft", "w") as handle:
            handle.write(f"{hostdef.INCIDENT_SYSCTL_VALUE}\n")

    def write_daemon_json(self, host: HostRecord, driver: str) -> None:
        parent = f"/{self.cgroup_root}/{host.name}"
        path = self.host_dir(host) / "etc-docker" / "daemon.json"
        write_file(path, hostdef.daemon_json(parent, driver, host.runtime))
        host.storage_driver = driver

    # -- starting -----------------------------------------------------------------------------

    def ensure_supervisor(self) -> None:
        if alive(self.record.supervisor):
            with contextlib.suppress(OSError):
                if _call(self.dir, {"op": "ping"}, timeout=5).get("pid"):
                    return
        self.record.supervisor = _start_supervisor(self.dir)
        self.started.append("supervisor")
        self.save()

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

    def ensure_holder(self, host: HostRecord) -> None:
        if self.holder_alive(host):
            return
        # The namespace is gone: whatever ran in it is stale. Start the host afresh.
        stop_processes([ref for ref in host.procs.values() if alive(ref)], 10.0)
        host.procs.clear()
        hdir = self.host_dir(host)
        ops = hostdef.holder_ops(
            state_dir=str(self.dir),
            host_dir=str(hdir),
            kind=host.kind,
            sysctl_conf_exists=(hdir / "sysctl.conf").exists(),
            hidden_programs=() if host.python and not host.busybox else python_programs(),
            runtime=host.runtime,
            packaged=host.packaged,
            rpm=host.package_manager == "rpm",
            busybox=busybox_binary() if host.busybox else None,
            busybox_programs=busybox_programs() if host.busybox else (),
            read_only_runc=host.read_only_runc,
        )
        log = hdir / "holder.log"
        request = {"op": "holder", "name": host.name, "ops": ops, "log": str(log)}
        reply = _call(self.dir, request)
        if "pid" not in reply:
            raise LabError(f"{host.name}: cannot set up its mount namespace: {reply.get('error')}")
        self.note(host, "holder", int(reply["pid"]), log)

    def daemon_nsenter(self, host: HostRecord) -> list[str]:
        """`nsenter` into the mount namespace the host's daemons run in: the host's own, or on a
        `mountns` host the daemons' namespace (`ensure_daemon_ns`), with the host's hostname."""
        if host.runtime != "mountns":
            return self.nsenter(host)
        return [
            "/usr/bin/nsenter",
            f"--mount=/proc/{host.procs['daemon-ns'].pid}/ns/mnt",
            f"--uts=/proc/{host.procs['holder'].pid}/ns/uts",
            "--",
        ]

    def ensure_daemon_ns(self, host: HostRecord) -> None:
        """On a `mountns` host, the daemons' own mount namespace, a child of the host's, held by
        a `sleep` (runtimes.DAEMON_NS_SCRIPT). A namespace gone takes its daemons' with it."""
        if host.runtime != "mountns" or alive(host.procs.get("daemon-ns")):
            return
        daemons = [host.procs.get("containerd"), host.procs.get("dockerd")]
        stop_processes([ref for ref in daemons if ref is not None and alive(ref)], 10.0)
        unshare = ["/usr/bin/unshare", "--mount", "--propagation", "private", "--"]
        argv = [*unshare, "/bin/sh", "-c", lab_runtimes.DAEMON_NS_SCRIPT]
        self.spawn(host, "daemon-ns", argv, "daemon-ns.log", enter=self.nsenter(host))
        ref = host.procs["daemon-ns"]
        if not wait_for(lambda: mount_ns(ref.pid) != mount_ns(host.procs["holder"].pid), ref, 10):
            raise LabError(f"{host.name}: the daemons' mount namespace did not come up")
        if not wait_for(lambda: "sleep" in read_proc_text(ref.pid, "comm"), ref, 10):
            log = self.host_dir(host) / "var-log" / "daemon-ns.log"
            raise LabError(f"{host.name}: the daemons' mount namespace failed: {file_tail(log)}")

    def spawn(
        self,
        host: HostRecord,
        what: str,
        argv: list[str],
        log: str,
        enter: list[str] | None = None,
    ) -> ProcRef:
        """Start `argv` in the host (`enter`: the nsenter command, default the daemons')."""
        log_path = self.host_dir(host) / "var-log" / log
        request = {
            "op": "spawn",
            "argv": [*(self.daemon_nsenter(host) if enter is None else enter), *argv],
            "env": DAEMON_ENV,
            "log": str(log_path),
        }
        reply = _call(self.dir, request)
        if "pid" not in reply:
            raise LabError(f"{host.name}: cannot start {what}: {reply.get('error')}")
        self.note(host, what, int(reply["pid"]), log_path)
        return host.procs[what]

    def ensure_sshd(self, host: HostRecord) -> None:
        if alive(host.procs.get("sshd")):
            return
        if port_in_use(host.address):
            raise LabError(f"{host.name}: {host.address}:22 is in use by another process")
        config = f"{self.inside(host)}/sshd_config"
        argv = ["/usr/sbin/sshd", "-D", "-f", config, "-E", "/var/log/sshd.log"]
        self.spawn(host, "sshd", argv, "sshd.log", enter=self.nsenter(host))

    def wait_sshd(self, host: HostRecord) -> None:
        ref = host.procs["sshd"]
        if not wait_for(lambda: ssh_banner(host.address), ref, 15.0):
            log = self.host_dir(host) / "var-log" / "sshd.log"
            raise LabError(
                f"{host.name}: sshd did not come up on {host.address}:22: {file_tail(log)}"
            )

    def sockets(self, host: HostRecord) -> tuple[str, str]:
        """containerd's and dockerd's sockets as the machine reaches them ("" without a holder)."""
        if "holder" not in host.procs:
            return "", ""
        root = f"/proc/{host.procs['holder'].pid}/root"
        return f"{root}/run/containerd/containerd.sock", f"{root}/run/docker.sock"

    def ensure_daemons(self, host: HostRecord) -> None:
        """containerd on full and containerd hosts; dockerd, the image and the keepalive
        container on full ones."""
        logs = self.host_dir(host) / "var-log"
        containerd_sock, docker_sock = self.sockets(host)
        daemons = [("containerd", containerd_sock, b"")]
        if host.kind == "full":
            daemons.append(("dockerd", docker_sock, PING))
        for what, sock, request in daemons:
            # A running daemon must answer (it may be starting); one shutting down is replaced.
            ref = host.procs.get(what)
            answered = ref is None or wait_for(http_answers(sock, request), ref, 30.0)
            if not answered and alive(ref):
                raise LabError(f"{host.name}: {what} (pid {ref and ref.pid}) does not answer")
        self.ensure_daemon_ns(host)
        if not alive(host.procs.get("containerd")):
            ref = self.spawn(host, "containerd", ["/usr/bin/containerd"], "containerd.log")
            if not wait_for(lambda: unix_http_ok(containerd_sock, b""), ref, 30.0):
                raise LabError(
                    f"{host.name}: containerd did not start: {file_tail(logs / 'containerd.log')}"
                )
        if host.kind != "full":
            self.save()
            return
        if not alive(host.procs.get("dockerd")):
            drivers = [host.storage_driver or "overlay2"]
            if drivers[0] != "vfs":
                drivers.append("vfs")
            for driver in drivers:
                self.write_daemon_json(host, driver)
                argv = ["/usr/sbin/dockerd", "--containerd=/run/containerd/containerd.sock"]
                ref = self.spawn(host, "dockerd", argv, "dockerd.log")
                if wait_for(lambda: unix_http_ok(docker_sock, PING), ref, 60.0):
                    break
                stop_processes([ref], 10.0)
            else:
                raise LabError(
                    f"{host.name}: dockerd did not start: {file_tail(logs / 'dockerd.log')}"
                )
        self.save()
        docker = ["/usr/bin/docker"]
        images = self.in_host(host, [*docker, "images", "-q", hostdef.VERIFY_IMAGE])
        if not images.strip():
            tarball = f"{hostdef.LAB_MOUNT}/image/busybox.tar"
            self.in_host(host, [*docker, "import", tarball, hostdef.VERIFY_IMAGE])
            self.started.append(f"{host.name} image {hostdef.VERIFY_IMAGE}")
        keepalive_filter = f"name=^{hostdef.KEEPALIVE_CONTAINER}$"
        state = self.in_host(
            host,
            [*docker, "ps", "-a", "--format", "{{.State}}", "--filter", keepalive_filter],
        ).strip()
        if state == "running":
            return
        if state:
            self.in_host(host, [*docker, "start", hostdef.KEEPALIVE_CONTAINER])
        else:
            self.in_host(
                host,
                [*docker, "run", "-d", "--name", hostdef.KEEPALIVE_CONTAINER, *KEEPALIVE_ARGS],
            )
        self.started.append(f"{host.name} container {hostdef.KEEPALIVE_CONTAINER}")

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

    def stick(self, host: HostRecord) -> StuckSeed:
        """Container `lab-stuck` on a full host, its runc init hung the incident's way for real:
        a pipe holder puts the seed's uid over the (machine's) soft limit, the trigger container
        runs as that uid, rc93 blocks exporting the profile's program into its 2-page pipe. The
        holder and the docker client are then let go; the pipe stays small, runc init stays
        blocked until `unstick` drains it or `lab down` kills it."""
        uid = trigger.SEED_UID_BASE + self.record.hosts.index(host) + 1
        hung = self.hung_inits(host)
        if hung:
            return StuckSeed(host.name, hostdef.STUCK_CONTAINER, hung[0], uid)
        with contextlib.suppress(LabError):  # a seed unstuck or killed before: start afresh
            self.in_host(host, [DOCKER, "rm", "-f", hostdef.STUCK_CONTAINER], timeout=30)
        options = ("-d", "--name", hostdef.STUCK_CONTAINER)
        with self.pipes_held(host, uid):
            client, began = self.start_trigger(host, uid, options), time.monotonic()
            try:
                pid = self.watch_trigger(host, client, set())
            finally:
                client.kill()  # it would wait for ever, deaf to SIGTERM
                client.wait()
        if pid is None:
            why = f"it passed (exit {client.returncode}) in {time.monotonic() - began:.1f}s"
            raise LabError(f"{host.name}: the trigger did not hang its runc: {why}; still rc93?")
        if pid not in self.hung_inits(host):
            raise LabError(f"{host.name}: runc init {pid} went on once the pipes were released")
        self.started.append(f"{host.name} container {hostdef.STUCK_CONTAINER} (runc init hung)")
        return StuckSeed(host.name, hostdef.STUCK_CONTAINER, pid, uid)

    def try_trigger(self, host: HostRecord) -> TriggerRun:
        """Run the trigger once on a full host (uid `TRIGGER_UID_BASE` + index): it passes, or
        its runc init hangs and is killed at once (the container removed)."""
        uid = TRIGGER_UID_BASE + self.record.hosts.index(host) + 1
        before = set(self.hung_inits(host))
        options = ("--rm", "--name", hostdef.TRIGGER_CONTAINER)
        with self.pipes_held(host, uid):
            client, began = self.start_trigger(host, uid, options), time.monotonic()
            try:
                pid = self.watch_trigger(host, client, before)
                seconds = time.monotonic() - began
            finally:
                client.kill()
                client.wait()
        if pid is None:
            outcome = "passed" if client.returncode == 0 else f"failed (exit {client.returncode})"
            return TriggerRun(host.name, uid, outcome, seconds, None)
        hung = [ref for ref, _wchan in self.runc_inits(host) if ref.pid not in before]
        for ref in hung:
            send_signal(ref, signal.SIGKILL)
        wait_gone(hung, 5.0)
        with contextlib.suppress(LabError):
            self.in_host(host, [DOCKER, "rm", "-f", hostdef.TRIGGER_CONTAINER], timeout=30)
        return TriggerRun(host.name, uid, "hung", seconds, pid)

    @contextlib.contextmanager
    def pipes_held(self, host: HostRecord, uid: int) -> Iterator[None]:
        """The trigger's pipe holder on the host (`trigger.holder_command`): `uid` is over the
        soft limit inside the block, released (its stdin closed) after it."""
        holder = subprocess.Popen(
            [*self.nsenter(host), "/bin/sh", "-c", trigger.holder_command(uid, max_seconds=120)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=DAEMON_ENV,
            text=True,
        )
        assert holder.stdin is not None and holder.stdout is not None
        try:
            ready, _, _ = select.select([holder.stdout], [], [], TRIGGER_TIMEOUT)
            line = holder.stdout.readline() if ready else ""
            if trigger.parse_holder_line(line) is None:
                raise LabError(f"{host.name}: the pipe holder failed: {line.strip() or 'no line'}")
            yield
        finally:
            holder.stdin.close()
            try:
                holder.wait(10)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()

    def start_trigger(
        self, host: HostRecord, uid: int, options: tuple[str, ...]
    ) -> subprocess.Popen[bytes]:
        """The trigger's docker client on the host, as `uid`, with the profile written first."""
        profile = trigger.seccomp_profile(trigger.architectures_for(os.uname().machine))
        write_file(self.host_dir(host) / hostdef.STUCK_PROFILE, json.dumps(profile, indent=1))
        inside = f"{self.inside(host)}/{hostdef.STUCK_PROFILE}"
        argv = trigger.docker_run_argv(hostdef.VERIFY_IMAGE, inside, uid, [DOCKER], options)
        return subprocess.Popen(
            [*self.nsenter(host), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=DAEMON_ENV,
            start_new_session=True,
        )

    def watch_trigger(
        self, host: HostRecord, client: subprocess.Popen[bytes], before: set[int]
    ) -> int | None:
        """The PID of a runc init (not in `before`) hung in a pipe write, or None once the
        client exited; LabError when neither happens within TRIGGER_TIMEOUT."""
        deadline = time.monotonic() + TRIGGER_TIMEOUT
        while time.monotonic() < deadline:
            hung = [pid for pid in self.hung_inits(host) if pid not in before]
            if hung:
                return hung[0]
            if client.poll() is not None:
                return None
            time.sleep(0.05)
        raise LabError(f"{host.name}: the trigger neither finished nor hung runc init")

    def remove_stuck(self, host: HostRecord) -> None:
        """Undo `stick`: kill the host's runc init processes and remove `lab-stuck`."""
        profile = self.host_dir(host) / hostdef.STUCK_PROFILE
        if not profile.exists():
            return
        self.kill_runc_inits(host)
        with contextlib.suppress(LabError):
            self.in_host(host, [DOCKER, "rm", "-f", hostdef.STUCK_CONTAINER], 30)
        profile.unlink()

    def write_client_files(self) -> None:
        lines = []
        for host in self.record.hosts:
            public = (self.host_dir(host) / "ssh_host_ed25519_key.pub").read_text()
            lines.append(hostdef.known_hosts_line(host.address, public))
        write_file(self.known_hosts, "".join(lines), 0o644)
        inventory = Path(self.record.inventory_path)
        self.record.created_dirs += _mkdirs(inventory.parent, 0o755)
        text = hostdef.inventory_yaml(
            hosts=[
                {
                    "name": h.name,
                    "address": h.address,
                    "zone": h.zone,
                    "kind": h.kind,
                    "python": "yes" if h.python else "no",
                    "busybox": "yes" if h.busybox else "no",
                    "read_only": "yes" if h.read_only_runc else "no",
                }
                for h in self.record.hosts
            ],
            private_key=str(self.private_key),
            known_hosts=str(self.known_hosts),
            state_dir=str(self.dir),
        )
        write_file(inventory, text, 0o644)
        self.save()

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

    # -- status ---------------------------------------------------------------------------------

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

    # -- stopping -------------------------------------------------------------------------------

    def stop_daemons(self, host: HostRecord) -> None:
        """A healthy host: remove every container through its daemon (so no shim, container or
        container cgroup outlives it), then stop dockerd before containerd. A broken one
        (namespace or a daemon gone): kill the daemons; the sweep that follows kills shims and
        containers."""
        dockerd, containerd = host.procs.get("dockerd"), host.procs.get("containerd")
        daemons = [ref for ref in (dockerd, containerd) if ref is not None]
        containerd_sock, docker_sock = self.sockets(host)
        healthy = (
            self.holder_alive(host)
            and alive(containerd)
            and (
                unix_http_ok(containerd_sock, b"")
                if host.kind == "containerd"
                else alive(dockerd) and unix_http_ok(docker_sock, PING)
            )
        )
        if not healthy:
            for ref in daemons:
                send_signal(ref, signal.SIGKILL)
            wait_gone(daemons, 5.0)
            return
        # A container whose runc init hangs cannot be removed through dockerd (it waits for
        # runc): kill its runc init first.
        self.kill_runc_inits(host)
        with contextlib.suppress(LabError):
            if host.kind == "containerd":
                self.remove_ctr_containers(host)
            else:
                ids = self.in_host(host, [DOCKER, "ps", "-aq"], timeout=30).split()
                if ids:
                    self.in_host(host, [DOCKER, "rm", "-f", *ids], timeout=60)
        for ref in daemons:
            stop_processes([ref], 15.0)

    def remove_ctr_containers(self, host: HostRecord) -> None:
        """Every task and container of every containerd namespace, through `ctr`."""
        for namespace in self.in_host(host, [CTR, "namespaces", "ls", "-q"], timeout=30).split():
            ctr = [CTR, "-n", namespace]
            for task in self.in_host(host, [*ctr, "tasks", "ls", "-q"], timeout=30).split():
                self.in_host(host, [*ctr, "tasks", "delete", "--force", task], timeout=30)
            ids = self.in_host(host, [*ctr, "containers", "ls", "-q"], timeout=30).split()
            if ids:
                self.in_host(host, [*ctr, "containers", "rm", *ids], timeout=30)

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


def python_programs() -> tuple[str, ...]:
    """The machine's Python interpreters (regular files, links resolved) in the directories of
    a host's PATH that it shares with the machine (its /usr/local ones are its own, empty): what
    a host without Python must not be able to run."""
    found = set()
    for directory in ("/usr/bin", "/bin"):
        for path in Path(directory).glob("python*"):
            real = Path(os.path.realpath(path))
            if re.fullmatch(r"python[0-9.]*", real.name) and real.is_file():
                found.add(str(real))
    return tuple(sorted(found))


def busybox_binary() -> str:
    """The machine's static busybox (Debian's busybox-static), links resolved."""
    found = shutil.which("busybox", path="/usr/bin:/bin")
    if found is None:
        raise LabError("a busybox lab host needs busybox: apt-get install -y busybox-static")
    return os.path.realpath(found)


# What a busybox host keeps of the machine's own programs although busybox has an applet of the
# name: util-linux's (the host requirements name it: setpriv --reuid for the pipe holder,
# unshare, nsenter, mount), and sleep (the lab's namespace holder execs /bin/sleep by a name of
# its own, which busybox would take for an applet; busybox sh runs its own sleep anyway).
UTIL_LINUX_PACKAGES = ("util-linux", "util-linux-extra", "mount", "bsdutils", "bsdextrautils")
BUSYBOX_KEEPS = frozenset({"sleep"})


@functools.cache
def busybox_programs() -> tuple[str, ...]:
    """The machine's programs in /usr/bin (and /bin) that a busybox host runs as busybox's
    applets: every one busybox has an applet for (links resolved: /usr/bin/sh is dash), but
    util-linux's and `BUSYBOX_KEEPS`."""
    listed = subprocess.run([busybox_binary(), "--list"], capture_output=True, text=True)
    applets = set(listed.stdout.split()) - BUSYBOX_KEEPS
    keep: set[str] = set()
    for package in UTIL_LINUX_PACKAGES:
        with contextlib.suppress(OSError):
            keep |= set(Path(f"/var/lib/dpkg/info/{package}.list").read_text().split("\n"))
    keep = {os.path.realpath(path) for path in keep if path}
    found = set()
    for directory in ("/usr/bin", "/bin"):
        for name in applets:
            path = os.path.join(directory, name)
            real = os.path.realpath(path)
            if os.path.isfile(real) and real not in keep and real != busybox_binary():
                found.add(real)
    return tuple(sorted(found))


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
) -> LabInfo:
    """Bring the lab up (or complete a running one): `hosts` hosts, the first `docker` of them
    full, the next `containerd` containerd-only; the first `no_python` of them with no Python
    (as a minimal CentOS 7, Flatcar or Fedora CoreOS node); the first `busybox` of them with a
    busybox userland (and no Python); the last `read_only` with their runc's folder mounted
    read-only (as Flatcar's and Fedora CoreOS's /usr). Without counts, a running lab keeps
    its size and a new one gets 4 hosts, 2 full, none containerd-only. `runtimes`: Docker's
    default runtime on the first full hosts, in order (`runtimes.py`; the others run plain runc).
    `stuck`: the first full host also gets the incident's hung container (`lab_stick`)."""
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
        if count > 250:
            raise BadInput("lab: at most 250 hosts")
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
    hosts = lab.record.hosts
    lab.save()
    lab.prepare_lab_files(any(h.kind == "full" for h in hosts))
    in_parallel(lab.prepare_host, hosts, workers=8)
    lab.ensure_supervisor()
    in_parallel(lab.ensure_holder, hosts, workers=8)
    in_parallel(lab.ensure_package, hosts, workers=4)
    in_parallel(lab.ensure_sshd, hosts, workers=8)
    in_parallel(lab.wait_sshd, hosts, workers=32)
    lab.write_client_files()
    in_parallel(lab.ensure_daemons, [h for h in hosts if h.kind != "light"], workers=4)
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


def lab_stick(state_dir: Path | None = None, host: str | None = None) -> StuckSeed:
    """Give a full host (default: the first) the incident's hung container, if it has no hung
    runc init yet (see `_Lab.stick`). For `lab up --stuck` and tests."""
    state_dir = (state_dir or default_state_dir()).absolute()
    record = load_record(state_dir) if state_dir.is_dir() else None
    if record is None:
        raise BadInput(f"no lab in {state_dir}")
    full = [h for h in record.hosts if h.kind == "full" and (host is None or h.name == host)]
    if not full:
        raise BadInput(f"no full lab host {host or ''} in {state_dir}".replace("  ", " "))
    lab = _Lab(state_dir, record)
    with _locked(state_dir):
        return lab.stick(full[0])


def lab_trigger(state_dir: Path | None = None, hosts: list[str] | None = None) -> list[TriggerRun]:
    """Run the rc93 trigger once on full hosts (default: all of them), one after the other."""
    state_dir = (state_dir or default_state_dir()).absolute()
    record = load_record(state_dir) if state_dir.is_dir() else None
    if record is None:
        raise BadInput(f"no lab in {state_dir}")
    full = {h.name: h for h in record.hosts if h.kind == "full"}
    unknown = sorted(set(hosts or ()) - set(full))
    if unknown:
        raise BadInput(f"no such full lab host: {', '.join(unknown)}")
    lab = _Lab(state_dir, record)
    with _locked(state_dir):
        return [lab.try_trigger(full[name]) for name in (hosts or list(full))]


def format_trigger(runs: list[TriggerRun]) -> str:
    lines = []
    for run in runs:
        if run.outcome == "hung":
            what = f"HUNG: runc init PID {run.pid} blocked in a pipe write after {run.seconds:.1f}s"
            lines.append(f"{run.host}: {what} (uid {run.uid}); killed, container removed")
        else:
            lines.append(f"{run.host}: {run.outcome} in {run.seconds:.2f}s (uid {run.uid})")
    return "\n".join(lines)


def lab_status(state_dir: Path | None = None) -> list[LabHostStatus]:
    """Every host of the lab in `state_dir` (empty when there is no lab)."""
    state_dir = (state_dir or default_state_dir()).absolute()
    record = load_record(state_dir) if state_dir.is_dir() else None
    if record is None:
        return []
    lab = _Lab(state_dir, record)
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
    lab = _Lab(state_dir, record)
    pids = [ref.pid for ref in lab.processes()]
    if alive(record.supervisor) and record.supervisor is not None:
        pids.append(record.supervisor.pid)
    return memory_of(pids)


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
        with _locked(state_dir):
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


def _mkdirs(path: Path, mode: int) -> list[str]:
    """mkdir -p; returns the directories it created, outermost first."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=mode, exist_ok=True)
    return [str(p) for p in reversed(missing)]


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
