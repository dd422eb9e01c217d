"""The lab fleet is real and isolated: each host has its own runc, sysctl, sshd host key and (on
full hosts) dockerd, and nothing a lab host does reaches the machine or another host.

Tests that use the `lab` fixture are marked `lab` by conftest; the others that need root are
marked here; the first few need nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from orchestrator.errors import BadInput, LabError
from orchestrator.inventory.read import load_inventory
from orchestrator.lab import hostdef, rc93, runtimes
from orchestrator.lab.fleet import (
    HOLDER_PREFIX,
    MAX_HOSTS,
    _Lab,
    _plan_hosts,
    lab_down,
    lab_reset,
    lab_status,
    lab_up,
    load_record,
)
from orchestrator.lab.handle import LabFleet, free_first_address, lab_unavailable, start_lab
from orchestrator.lab.procs import check_requirements, port_in_use, proc_start
from orchestrator.lab.records import LabRuntime, ProcRef

MACHINE_SYSCTL = Path("/proc/sys/fs/pipe-user-pages-soft")
RUNC_VERSION = "runc --version"
READ_SYSCTL = "cat /proc/sys/fs/pipe-user-pages-soft"
RC93_HEAD = f"runc version {rc93.VERSION}\ncommit: {rc93.COMMIT}\n"


# ---------------------------------------------------------------------------------------------
# Without a lab


def test_rc93_recipe_puts_the_read_after_the_export() -> None:
    source = (rc93.GOPATH_SHARED / "src" / rc93.IMPORT_PATH / rc93.PATCHED_FILE).read_text()
    patched = rc93.rc93_source(source)
    body = patched[patched.index("func disassembleFilter") :]
    body = body[: body.index("\n}\n")]
    assert "go func()" not in body
    assert body.index("filter.ExportBPF(wtr)") < body.index("io.Copy(readerBuffer, rdr)")
    with pytest.raises(LabError, match="recipe needs updating"):
        rc93.rc93_source(patched)


def test_rc93_cache_key_follows_every_input() -> None:
    inputs = rc93.BuildInputs("pkg", "1.1.5+ds1-1", rc93.recipe_sha256(), "go version go1.19.8")
    others = [
        dataclasses.replace(inputs, source_version="1.1.5+ds1-2"),
        dataclasses.replace(inputs, recipe_sha256="0" * 64),
        dataclasses.replace(inputs, go_version="go version go1.21.0"),
    ]
    assert len({inputs.key(), *(other.key() for other in others)}) == 4
    assert inputs.key() == rc93.BuildInputs(**dataclasses.asdict(inputs)).key()


def test_inventory_has_zones_kinds_and_strict_ssh(tmp_path: Path) -> None:
    hosts = [
        {"name": f"lab-0{i}", "address": f"127.0.0.{10 + i}", "zone": zone, "kind": kind}
        for i, zone, kind in (
            (1, "zone-a", "full"),
            (2, "zone-b", "containerd"),
            (3, "zone-a", "light"),
        )
    ]
    path = tmp_path / "hosts.yml"
    path.write_text(
        hostdef.inventory_yaml(
            hosts=hosts, private_key="/k/id", known_hosts="/k/known", state_dir="/s"
        )
    )
    assert path.read_text().startswith(hostdef.INVENTORY_MARKER)
    inventory = load_inventory([path])
    assert list(inventory.hosts) == ["lab-01", "lab-02", "lab-03"]
    one = inventory.hosts["lab-01"]
    assert set(one.groups) >= {"lab", "zone_a", "lab_full"}
    assert one.vars["ansible_ssh_common_args"] == (
        "-o UserKnownHostsFile=/k/known -o StrictHostKeyChecking=yes"
    )
    assert one.vars["runc_rollout_verify_command"] == "true"
    for name in ("lab-02", "lab-03"):  # no docker there: the probe needs no image
        assert "runc_rollout_verify_image" not in inventory.hosts[name].vars
    assert inventory.hosts["lab-02"].vars["zone"] == "zone-b"
    assert inventory.hosts["lab-02"].vars["lab_kind"] == "containerd"
    assert "lab_containerd" in inventory.hosts["lab-02"].groups


def test_containerd_only_hosts_come_after_the_full_ones() -> None:
    hosts = _plan_hosts(5, 2, 1, "127.0.0.11")
    assert [h.kind for h in hosts] == ["full", "full", "containerd", "light", "light"]
    ops = hostdef.holder_ops(
        state_dir="/s", host_dir="/s/h", kind="containerd", sysctl_conf_exists=False
    )
    targets = {op.get("target") for op in ops}
    assert "/var/lib/containerd" in targets and "/var/lib/docker" not in targets


def test_containerd_only_hosts_pin_runc_through_cri_and_full_hosts_have_no_cri() -> None:
    node = tomllib.loads(hostdef.containerd_config(cri=True))
    cri = node["plugins"]["io.containerd.grpc.v1.cri"]
    assert "disabled_plugins" not in node
    assert cri["containerd"]["default_runtime_name"] == "runc"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["BinaryName"] == hostdef.HOST_RUNC
    assert cri["cni"]["conf_dir"].startswith("/etc/containerd/")  # the host's own directory
    full = tomllib.loads(hostdef.containerd_config(cri=False))
    assert full["disabled_plugins"] == ["io.containerd.grpc.v1.cri"]


def test_holder_mounts_keep_the_machines_kernel_settings_out_of_reach() -> None:
    ops = hostdef.holder_ops(
        state_dir="/s", host_dir="/s/hosts/h", kind="full", sysctl_conf_exists=True
    )
    kinds = [(op["op"], op.get("target") or op.get("path")) for op in ops]
    assert kinds[0] == ("tmpfs", "/run")
    readonly = kinds.index(("readonly", "/proc/sys"))
    assert kinds.index(("bind", hostdef.PIPE_SYSCTL)) > readonly
    assert ("bind", "/usr/local/sbin") in kinds  # the directory, so runc can be renamed over
    assert not any(target == hostdef.HOST_RUNC for _, target in kinds)
    binds = [op for op in ops if op["op"] == "bind"]
    assert all(op["source"].startswith("/s") for op in binds)


def test_busybox_and_read_only_hosts_mounts() -> None:
    """A busybox host: busybox bound over each program given, root's shell /bin/sh in its own
    passwd; a read-only host: its runc's folder read-only but executable, after its bind."""
    ops = hostdef.holder_ops(
        state_dir="/s", host_dir="/s/h", kind="light", sysctl_conf_exists=False,
        busybox="/usr/bin/busybox", busybox_programs=("/usr/bin/cat", "/usr/bin/dash"),
        read_only_runc=True,
    )  # fmt: skip
    kinds = [(op["op"], op.get("source"), op.get("target") or op.get("path")) for op in ops]
    assert ("bind", "/usr/bin/busybox", "/usr/bin/dash") in kinds
    assert ("bind", "/usr/bin/busybox", "/usr/bin/cat") in kinds
    assert ("bind", f"/s/h/{hostdef.BUSYBOX_PASSWD}", "/etc/passwd") in kinds
    read_only = next(op for op in ops if op.get("path") == "/usr/local/sbin")
    assert read_only == {"op": "readonly", "path": "/usr/local/sbin", "exec": True}
    assert ops.index(read_only) > kinds.index(("bind", "/s/h/usr-local-sbin", "/usr/local/sbin"))
    plain = hostdef.holder_ops(
        state_dir="/s", host_dir="/s/h", kind="light", sysctl_conf_exists=False
    )
    assert all(
        op.get("target") != "/etc/passwd" and op.get("path") != "/usr/local/sbin" for op in plain
    )
    passwd = "root:x:0:0:root:/root:/bin/bash\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\n"
    assert hostdef.busybox_passwd(passwd) == (
        "root:x:0:0:root:/root:/bin/sh\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\n"
    )


def test_runtime_hosts_mounts() -> None:
    """A GPU host's /etc/nvidia-container-runtime is its own, bound before the other /etc binds
    (its mount point is made by shadowing /etc); a crun host hides the cgroup2 mount and keeps
    only /proc/sys/net writable, after /proc/sys is made read-only."""
    hosts = _plan_hosts(3, 2, 0, "127.0.0.11", ["nvidia", "crun"])
    assert [h.runtime for h in hosts] == ["nvidia", "crun", "runc"]

    def targets(runtime: LabRuntime) -> list[tuple[str, str]]:
        ops = hostdef.holder_ops(
            state_dir="/s", host_dir="/s/h", kind="full", sysctl_conf_exists=True, runtime=runtime
        )
        return [(op["op"], op.get("target") or op["path"]) for op in ops]

    gpu = targets("nvidia")
    nvidia = gpu.index(("bind", runtimes.NVIDIA_CONFIG_DIR))
    assert nvidia < min(i for i, (_, t) in enumerate(gpu) if t.startswith("/etc/") and i != nvidia)
    crun = targets("crun")
    assert ("tmpfs", runtimes.CGROUP2_MOUNT) in crun
    assert crun.index(("bind", runtimes.NET_SYSCTLS)) > crun.index(("readonly", "/proc/sys"))
    assert runtimes.NET_SYSCTLS not in dict(targets("runc")).values()
    config = json.loads(hostdef.daemon_json("/p", "vfs", "nvidia"))
    assert config["default-runtime"] == "nvidia"
    assert config["runtimes"] == {"nvidia": {"path": runtimes.SHIM}}


def test_requirements_name_the_missing_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(BadInput, match="needs root"):
        check_requirements()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    gone = {"/usr/sbin/dockerd", "/usr/bin/containerd", "/bin/busybox"}
    monkeypatch.setattr(os, "access", lambda path, mode: path not in gone)
    with pytest.raises(BadInput) as caught:
        check_requirements()
    assert str(caught.value).endswith("apt-get install -y containerd docker.io busybox-static")
    check_requirements(("light",))  # light hosts need none of those
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(BadInput, match="needs Linux"):
        check_requirements()


# ---------------------------------------------------------------------------------------------
# On the session's lab


def test_every_host_starts_in_the_incident_state(lab: LabFleet) -> None:
    for host in lab.hosts:
        out = lab.ssh(host, f"{RUNC_VERSION}; {READ_SYSCTL}; cat /etc/sysctl.d/*incident*").stdout
        assert lab.ssh(host, "hostname").stdout == f"{host.name}\n"
        assert out.startswith(RC93_HEAD), host.name
        assert "\n163840\n" in out
        assert "fs.pipe-user-pages-soft = 163840" in out


def test_inventory_reaches_every_host_with_strict_host_keys(lab: LabFleet) -> None:
    inventory = load_inventory([lab.inventory])
    assert list(inventory.hosts) == [host.name for host in lab.hosts]
    zones = {host.vars["zone"] for host in inventory.hosts.values()}
    assert zones == {"zone-a", "zone-b"}
    assert {inventory.hosts[h.name].vars["zone"] for h in lab.full_hosts} == zones
    for host in lab.hosts:
        hostvars = inventory.hosts[host.name].vars
        assert hostvars["ansible_host"] == host.address
        assert hostvars["ansible_user"] == "root"
        assert hostvars["lab_kind"] == host.kind
        assert hostvars["ansible_ssh_private_key_file"] == str(lab.private_key)
        assert hostvars["ansible_ssh_common_args"] == (
            f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes"
        )
        if host.kind == "full":
            assert hostvars["runc_rollout_verify_image"] == hostdef.VERIFY_IMAGE
    # Exactly what the inventory says, as plain ssh would be told it by ansible.
    first = inventory.hosts[lab.hosts[0].name].vars
    argv = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-i"]
    argv += [first["ansible_ssh_private_key_file"], *first["ansible_ssh_common_args"].split()]
    done = subprocess.run(
        [*argv, f"root@{first['ansible_host']}", "echo reached"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "reached\n"


def test_ssh_fails_without_the_written_known_hosts(lab: LabFleet, tmp_path: Path) -> None:
    host = lab.hosts[0]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    done = lab.ssh(host, "true", known_hosts=empty, check=False)
    assert done.returncode == 255
    assert "Host key verification failed" in done.stderr
    # Another host's key under this address is refused too: every host has its own key.
    lines = lab.known_hosts.read_text().splitlines()
    keys = {line.split()[2] for line in lines}
    assert len(keys) == len(lab.hosts)
    other = lines[1].split()
    empty.write_text(f"{host.address} {other[1]} {other[2]}\n")
    done = lab.ssh(host, "true", known_hosts=empty, check=False)
    assert done.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in done.stderr


def test_swapping_runc_on_one_host_leaves_the_others(lab: LabFleet) -> None:
    target, *others = lab.light_hosts + lab.full_hosts
    machine_sbin = sorted(os.listdir("/usr/local/sbin"))
    try:
        # What a rollout does: stage beside it, rename over it (works: the directory is bound).
        lab.ssh(
            target,
            "cp /usr/sbin/runc /usr/local/sbin/.runc.new && "
            "mv /usr/local/sbin/.runc.new /usr/local/sbin/runc",
        )
        assert lab.ssh(target, RUNC_VERSION).stdout.startswith("runc version 1.1.5")
        for host in others:
            assert lab.ssh(host, RUNC_VERSION).stdout.startswith("runc version 1.0.0-rc93")
        rows = {row.name: row for row in lab_status(lab.state_dir)}
        debian = hashlib.sha256(Path(hostdef.DEBIAN_RUNC).read_bytes()).hexdigest()
        assert rows[target.name].runc_sha256 == debian
        assert str(rows[target.name].runc_version).startswith("runc version 1.1.5")
        assert all(rows[h.name].runc_sha256 not in (None, debian) for h in others)
        assert sorted(os.listdir("/usr/local/sbin")) == machine_sbin
    finally:
        lab.reset(target)
    assert lab.ssh(target, RUNC_VERSION).stdout.startswith("runc version 1.0.0-rc93")


def test_sysctl_on_one_host_leaves_the_others_and_the_machine(lab: LabFleet) -> None:
    machine_before = MACHINE_SYSCTL.read_text()
    target, *others = lab.hosts
    try:
        out = lab.ssh(
            target, "sysctl -w fs.pipe-user-pages-soft=16384 && sysctl -n fs.pipe-user-pages-soft"
        )
        assert out.stdout.split()[-1] == "16384"
        for host in others:
            assert lab.ssh(host, READ_SYSCTL).stdout.strip() == "163840"
        assert MACHINE_SYSCTL.read_text() == machine_before
        rows = {row.name: row for row in lab_status(lab.state_dir)}
        assert rows[target.name].sysctl == 16384
        assert {rows[h.name].sysctl for h in others} == {163840}
    finally:
        lab.reset(target)
    assert lab.ssh(target, READ_SYSCTL).stdout == "163840\n"
    assert MACHINE_SYSCTL.read_text() == machine_before


def test_reset_puts_a_host_back_in_the_incident_state(lab: LabFleet) -> None:
    host = lab.hosts[-1]
    lab.ssh(
        host,
        "cp /usr/sbin/runc /usr/local/sbin/.new && mv /usr/local/sbin/.new /usr/local/sbin/runc"
        " && sysctl -q -w fs.pipe-user-pages-soft=16384"
        " && rm /etc/sysctl.d/90-runc-incident.conf && mkdir /var/lib/runc-rollout/backup",
    )
    lab.reset(host)
    out = lab.ssh(
        host, f"{RUNC_VERSION}; {READ_SYSCTL}; ls /etc/sysctl.d /var/lib/runc-rollout"
    ).stdout
    assert out.startswith(RC93_HEAD) and "\n163840\n" in out
    assert "90-runc-incident.conf" in out and "backup" not in out


def test_a_lab_host_cannot_change_the_machines_kernel_settings(lab: LabFleet) -> None:
    # Writing back the current value would be harmless even if it got through; it must not.
    done = lab.ssh(
        lab.hosts[0], "cat /proc/sys/fs/pipe-max-size > /proc/sys/fs/pipe-max-size", check=False
    )
    assert done.returncode != 0
    assert "Read-only file system" in done.stderr


@pytest.mark.lab
def test_missing_mount_points_are_made_without_touching_the_machine(tmp_path: Path) -> None:
    """A bind target that does not exist is created in a tmpfs shadowing its parent (whose
    entries are bound back), never on the machine's own file system."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"lab unavailable: {reason}")
    source = tmp_path / "source"
    source.mkdir()
    (source / "file").write_text("from the lab\n")
    target = "/var/lib/runc-rollout-lab-test/deeper"
    script = (
        "from orchestrator.lab.supervisor import MS_PRIVATE, MS_REC, _Mounter, _mount\n"
        "import os, sys\n"
        "_mount(None, '/', None, MS_REC | MS_PRIVATE, None)\n"
        f"_Mounter().apply([{{'op': 'bind', 'source': {str(source)!r}, 'target': {target!r}}}])\n"
        f"print(open({target!r} + '/file').read(), end='')\n"
        "print(sorted(os.listdir('/var/lib')) == sorted(sys.argv[1:]))\n"
    )
    machine = os.listdir("/var/lib")
    done = subprocess.run(
        ["unshare", "--mount", sys.executable, "-c", script, *machine, "runc-rollout-lab-test"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "from the lab\nTrue\n"
    assert not Path(target).parent.exists()
    assert sorted(os.listdir("/var/lib")) == sorted(machine)


def test_no_new_privileges_container_runs_on_full_hosts(lab: LabFleet) -> None:
    for host in lab.full_hosts:
        done = lab.ssh(
            host,
            "timeout -s KILL 60 docker run --rm --network none "
            "--security-opt no-new-privileges lab/busybox:latest true",
        )
        assert done.returncode == 0
        # The container started before any rollout answers `docker exec`.
        assert lab.ssh(host, "docker exec lab-keepalive echo alive").stdout == "alive\n"
        info = lab.ssh(host, "docker info --format '{{.RuncCommit.ID}} {{.Driver}}'").stdout
        assert info.split()[0] == "12644e614e25b05da6fd08a38ffa0cfe1903fdec"


def test_full_hosts_have_their_own_dockerd(lab: LabFleet) -> None:
    ids = [lab.ssh(host, "docker ps -q --no-trunc").stdout.split() for host in lab.full_hosts]
    assert all(len(found) == 1 for found in ids)
    assert ids[0] != ids[1]
    for host in lab.light_hosts:
        assert lab.ssh(host, "test -e /run/docker.sock", check=False).returncode == 1
    rows = lab_status(lab.state_dir)
    assert all(row.sshd for row in rows)
    assert all(row.dockerd and row.containerd for row in rows if row.kind == "full")
    assert all(row.dockerd is None for row in rows if row.kind == "light")


def test_up_again_starts_nothing_and_keeps_every_process(lab: LabFleet) -> None:
    before = {row.name: row.pids for row in lab_status(lab.state_dir)}
    info = lab_up(state_dir=lab.state_dir)
    assert info.already_running and info.started == []
    assert {row.name: row.pids for row in lab_status(lab.state_dir)} == before


def _ctr_sleeper(fleet: LabFleet, rootfs: Path, cgroup: str) -> ProcRef:
    """A container that `ctr` alone starts on the containerd-only host, in `cgroup`."""
    (rootfs / "bin").mkdir(parents=True)
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    host = fleet.containerd_hosts[0]
    fleet.ssh(
        host, f"ctr run -d --cgroup {cgroup} --rootfs {rootfs} sleeper /bin/busybox sleep 600"
    )
    tasks = fleet.ssh(host, "ctr tasks ls").stdout.splitlines()
    (pid,) = [int(line.split()[1]) for line in tasks if line.startswith("sleeper ")]
    start = proc_start(pid)
    assert start is not None
    return ProcRef(pid=pid, start=start)


@pytest.mark.lab
def test_down_leaves_nothing_behind(tmp_path: Path) -> None:
    """Even with the incident's hung container (`--stuck`): its runc init dockerd cannot stop;
    and a container `ctr` started on a containerd-only host, in a cgroup outside the lab's."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"lab unavailable: {reason}")
    inventory = tmp_path / "inventory" / "hosts.yml"
    fleet = start_lab(tmp_path / "state", inventory, 3, 1, containerd=1, stuck=True)
    seed = fleet.info.stuck
    assert seed is not None and seed.host == fleet.full_hosts[0].name
    record = load_record(fleet.state_dir)
    assert record is not None
    lab = _Lab(fleet.state_dir, record)
    processes = lab.processes()
    assert seed.pid in {ref.pid for ref in processes}
    assert Path(f"/proc/{seed.pid}/wchan").read_text() in ("pipe_write", "anon_pipe_write")
    assert record.supervisor is not None
    supervisor = record.supervisor.pid
    namespaces = {os.stat(f"/proc/{ref.pid}/ns/mnt").st_ino for ref in processes}
    holders = [
        r for r in processes if Path(f"/proc/{r.pid}/cmdline").read_text().startswith(HOLDER_PREFIX)
    ]
    assert len(holders) == 3 and len(processes) >= 3 + 3 + 3 + 1  # + sshd, daemons, container
    fleet.ssh(fleet.full_hosts[0], "docker run -d --network none lab/busybox:latest sleep 600")
    cgroup = f"runc-rollout-lab-{record.lab_id}"
    rows = {row.kind: row for row in lab_status(fleet.state_dir)}
    assert (rows["containerd"].containerd, rows["containerd"].dockerd) == (True, None)
    try:
        sleeper = _ctr_sleeper(fleet, tmp_path / "rootfs", f"/{cgroup}-ctr")
    except BaseException:
        lab_down(fleet.state_dir, inventory)
        raise

    report = lab_down(fleet.state_dir, inventory)
    assert report.found and not report.warnings

    for ref in processes:
        assert proc_start(ref.pid) != ref.start, f"process {ref.pid} survived"
    assert proc_start(sleeper.pid) != sleeper.start, "the ctr container survived"
    assert not Path(f"/proc/{supervisor}").exists()  # stopped and reaped
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ns = os.stat(f"/proc/{entry.name}/ns/mnt").st_ino
                cgroups = Path(f"/proc/{entry.name}/cgroup").read_text()
            except OSError:
                continue
            assert ns not in namespaces, f"process {entry.name} still in a lab namespace"
            assert cgroup not in cgroups, f"process {entry.name} still in the lab's cgroup"
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{cgroup}*"))
    assert not fleet.state_dir.exists() and not inventory.exists()
    assert not inventory.parent.exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert "runc-rollout" not in mounts and str(tmp_path) not in mounts
    assert not any(port_in_use(host.address) for host in fleet.hosts)
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):
            assert not entry.name.isdigit() or entry.stat().st_uid != seed.uid, "a pipe holder"

    again = lab_down(fleet.state_dir, inventory)
    assert not again.found and again.removed == []


def test_a_lab_is_at_most_max_hosts(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=f"at most {MAX_HOSTS} hosts"):
        lab_up(MAX_HOSTS + 1, 0, state_dir=tmp_path / "state", inventory_path=tmp_path / "h.yml")
    assert not (tmp_path / "state").exists()


def test_linked_runcs_stay_apart_when_a_host_swaps_its_own(tmp_path: Path) -> None:
    """`--link-runc`: light hosts' rc93 is one file; a swap by rename (as every rollout does)
    changes that host alone, and a reset links it again."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"lab unavailable: {reason}")
    state, inventory = tmp_path / "state", tmp_path / "hosts.yml"
    info = lab_up(
        3, 1, state_dir=state, inventory_path=inventory,
        first_address=free_first_address(3), link_runc=True,
    )  # fmt: skip
    try:
        fleet = LabFleet.from_info(info)
        copy = os.stat(state / "runc-rc93")

        def inode(host: str) -> int:
            return os.stat(state / "hosts" / host / "usr-local-sbin" / "runc").st_ino

        light = [host.name for host in fleet.light_hosts]
        assert [inode(name) for name in light] == [copy.st_ino] * 2
        assert inode(fleet.full_hosts[0].name) != copy.st_ino  # full hosts keep their own copy
        fleet.ssh(
            fleet.light_hosts[0],
            "cp /usr/sbin/runc /usr/local/sbin/.runc.new && "
            "mv /usr/local/sbin/.runc.new /usr/local/sbin/runc",
        )
        assert fleet.ssh(fleet.light_hosts[0], RUNC_VERSION).stdout.startswith("runc version 1.1.5")
        assert fleet.ssh(fleet.light_hosts[1], RUNC_VERSION).stdout.startswith(RC93_HEAD[:30])
        assert os.stat(state / "runc-rc93").st_size == copy.st_size
        lab_reset(state, [light[0]])
        assert inode(light[0]) == copy.st_ino
    finally:
        lab_down(state, inventory)
