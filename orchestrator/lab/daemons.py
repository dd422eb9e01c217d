"""Starting and stopping a lab host's processes through the supervisor: its namespace holder,
sshd, containerd and dockerd (with the image and the keepalive container)."""

from __future__ import annotations

import contextlib
import signal

from orchestrator.errors import LabError
from orchestrator.lab import hostdef
from orchestrator.lab import runtimes as lab_runtimes
from orchestrator.lab.core import (
    DAEMON_ENV,
    DOCKER,
    PING,
    _call,
    _start_supervisor,
)
from orchestrator.lab.files import busybox_binary, busybox_programs, python_programs
from orchestrator.lab.procs import (
    CTR,
    alive,
    file_tail,
    http_answers,
    mount_ns,
    port_in_use,
    read_proc_text,
    send_signal,
    ssh_banner,
    stop_processes,
    unix_http_ok,
    wait_for,
    wait_gone,
)
from orchestrator.lab.records import (
    HostRecord,
    ProcRef,
)
from orchestrator.lab.scan import LabScan

KEEPALIVE_ARGS = ("--network", "none", hostdef.VERIFY_IMAGE, "sleep", "1000000")


class LabDaemons(LabScan):
    """Each host's processes, started by the supervisor, and stopped."""

    # -- starting -----------------------------------------------------------------------------

    def ensure_supervisor(self) -> None:
        if alive(self.record.supervisor):
            with contextlib.suppress(OSError):
                if _call(self.dir, {"op": "ping"}, timeout=5).get("pid"):
                    return
        self.record.supervisor = _start_supervisor(self.dir)
        self.started.append("supervisor")
        self.save()

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
