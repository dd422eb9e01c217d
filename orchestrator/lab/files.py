"""A lab's files: its keys, rc93 copy and image; each host's directories in the incident's
state; the client's known_hosts and inventory."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab import hostdef, packaged, rc93
from orchestrator.lab import runtimes as lab_runtimes
from orchestrator.lab.core import LabCore, _mkdirs
from orchestrator.lab.procs import (
    copy_executable,
    keygen,
    link_executable,
    write_file,
)
from orchestrator.lab.records import (
    HostRecord,
)


class LabFiles(LabCore):
    """The lab's files and each host's, written from the machine's side."""

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
            install = copy_executable
            if self.record.link_runc and host.kind == "light":
                install = link_executable  # safe: runc-rollout never writes into a runc
            install(self.rc93_copy, hdir / "usr-local-sbin" / "runc")
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
