"""The facts parser on captured script output, and the script itself under dash, busybox and bash;
long because each fact has its captured cases beside it.

Captured outputs are abbreviated to what the parser reads; their format is exactly what
`facts_script` prints (checked by the shell tests at the end, which run it on this machine).
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.diagnose.facts_report import (
    before_from_report,
    facts_json,
    facts_markdown,
    facts_table,
    read_facts_report,
)
from orchestrator.errors import BadInput, FactsError
from orchestrator.host.facts import (
    SYSTEMD_DEFAULT_PATH,
    facts_script,
    facts_to_before,
    parse_facts,
    read_only_mount,
)
from orchestrator.host.runcinfo import is_runc_init
from orchestrator.host.session import HostKeyRejected, HostUnreachable
from orchestrator.models import FactsReport, HostFacts, SshTarget

NONCE = "0123456789abcdef"
RC93_SHA = "5c3b5a0e6bc6fa1d2fbd8ac4b2c7a1a1b2f0c6b1d9f6a6f1e0f7c4e7a3d2b1c0"
DEBIAN_SHA = "9a87d5bcdd630ec420ec56a6c21b70aa6960edcefe1cf4bb181cee290bdd6b98"
RC93_COMMIT = "12644e614e25b05da6fd08a38ffa0cfe1903fdec"
RC93_VERSION = f"""runc version 1.0.0-rc93
commit: {RC93_COMMIT}
spec: 1.0.2-dev
go: go1.13.15
libseccomp: 2.5.1"""
DEBIAN_VERSION = """runc version 1.1.5+ds1
commit: 1.1.5+ds1-1+deb12u1
spec: 1.0.2-dev
go: go1.19.8
libseccomp: 2.5.4"""

# This build machine (Debian bookworm, merged /usr, no daemon running), as the script saw it.
DEBIAN_HOST = f"""runc-rollout-facts 1 {NONCE}

@@{NONCE}@@ host
arch=x86_64
kernel=6.18.44-fc-v669
uid=0
now=1795833445
clk_tck=100
btime=1795832010

@@{NONCE}@@ file containerd /etc/containerd/config.toml
version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"

@@{NONCE}@@ runtime-path
source=default
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

@@{NONCE}@@ binary /usr/sbin/runc
real=/usr/sbin/runc
executable=1
trusted=1
version_exit=0
size=8752456
sha256={DEBIAN_SHA}
df=/dev/vda         264212084 23133576  83257336      22% /
package=runc
package_version=1.1.5+ds1-1+deb12u1

@@{NONCE}@@ version /usr/sbin/runc
{DEBIAN_VERSION}

@@{NONCE}@@ alias /usr/bin/runc
real=/usr/sbin/runc

@@{NONCE}@@ alias /sbin/runc
real=/usr/sbin/runc

@@{NONCE}@@ alias /bin/runc
real=/usr/sbin/runc

@@{NONCE}@@ sysctl-runtime
16384

@@{NONCE}@@ sysctl-files
/etc/sysctl.d/99-sysctl.conf\t/etc/sysctl.conf
/usr/lib/sysctl.d/50-pid-max.conf
/usr/lib/sysctl.d/99-protect-links.conf
/lib/sysctl.d/50-pid-max.conf
/lib/sysctl.d/99-protect-links.conf
/etc/sysctl.conf

@@{NONCE}@@ sysctl-lines

@@{NONCE}@@ end
"""


# A full lab host (its own dockerd and containerd, the stand-in rc93 runc in /usr/local/sbin),
# captured over SSH; /proc/PID/stat lines are cut after field 22, the last the parser reads.
LAB_FULL_HOST = """runc-rollout-facts 1 0123456789abcdef

@@0123456789abcdef@@ host
arch=x86_64
kernel=6.18.44-fc-v669
uid=0
now=1795834519
clk_tck=100
btime=1795832010

@@0123456789abcdef@@ proc 32181
comm=containerd
stat=32181 (containerd) S 32148 32181 32181 0 -1 4194560 3377 549 0 0 4 2 0 0 20 0 9 0 250758
cmdline=/usr/bin/containerd
exe=/usr/bin/containerd
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
version=containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3

@@0123456789abcdef@@ proc 32188
comm=dockerd
stat=32188 (dockerd) S 32148 32188 32188 0 -1 4194560 8160 13336 0 0 10 6 9 10 20 0 9 0 250765
cmdline=/usr/sbin/dockerd --containerd=/run/containerd/containerd.sock
exe=/usr/sbin/dockerd
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
version=Docker version 20.10.24+dfsg1, build 5d6db84

@@0123456789abcdef@@ file docker /etc/docker/daemon.json
{
  "bridge": "none",
  "iptables": false,
  "ip-masq": false,
  "ip-forward": false,
  "userland-proxy": false,
  "cgroup-parent": "/runc-rollout-lab-c6d5b456/lab-01",
  "exec-opts": [
    "native.cgroupdriver=cgroupfs"
  ],
  "storage-driver": "overlay2",
  "log-level": "warn"
}

@@0123456789abcdef@@ file containerd /etc/containerd/config.toml
# runc-rollout lab host containerd (dockerd's; no CRI)
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "/run/containerd/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"

@@0123456789abcdef@@ runtime-path
source=dockerd
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

@@0123456789abcdef@@ binary /usr/local/sbin/runc
real=/usr/local/sbin/runc
executable=1
trusted=1
version_exit=0
size=409
sha256=4406539868bc4ad8b82d3bc1803aa0d049fc5a0f05c9e1a383e3459edd20b39c
df=/dev/vda         264212084 23184316  83206596      22% /usr/local/sbin

@@0123456789abcdef@@ version /usr/local/sbin/runc
runc version 1.0.0-rc93
commit: 12644e614e25b05da6fd08a38ffa0cfe1903fdec
spec: 1.0.2-dev
go: go1.13.15
libseccomp: 2.5.1

@@0123456789abcdef@@ binary /usr/sbin/runc
real=/usr/sbin/runc
executable=1
trusted=1
version_exit=0
size=8752456
sha256=9a87d5bcdd630ec420ec56a6c21b70aa6960edcefe1cf4bb181cee290bdd6b98
df=/dev/vda         264212084 23184316  83206596      22% /
package=runc
package_version=1.1.5+ds1-1+deb12u1

@@0123456789abcdef@@ version /usr/sbin/runc
runc version 1.1.5+ds1
commit: 1.1.5+ds1-1+deb12u1
spec: 1.0.2-dev
go: go1.19.8
libseccomp: 2.5.4

@@0123456789abcdef@@ alias /usr/bin/runc
real=/usr/sbin/runc

@@0123456789abcdef@@ alias /sbin/runc
real=/usr/sbin/runc

@@0123456789abcdef@@ alias /bin/runc
real=/usr/sbin/runc

@@0123456789abcdef@@ sysctl-runtime
163840

@@0123456789abcdef@@ sysctl-files
/etc/sysctl.d/90-runc-incident.conf
/etc/sysctl.d/99-sysctl.conf\t/etc/sysctl.conf
/usr/lib/sysctl.d/50-pid-max.conf
/usr/lib/sysctl.d/99-protect-links.conf
/lib/sysctl.d/50-pid-max.conf
/lib/sysctl.d/99-protect-links.conf
/etc/sysctl.conf

@@0123456789abcdef@@ sysctl-lines
/etc/sysctl.d/90-runc-incident.conf:2:fs.pipe-user-pages-soft = 163840

@@0123456789abcdef@@ end
"""


def stat(pid: int, comm: str, state: str, ppid: int, start_ticks: int) -> str:
    """A /proc/PID/stat line: field 22 is the start time in clock ticks after boot."""
    fields = [state, str(ppid)] + ["0"] * 17 + [str(start_ticks)] + ["0"] * 30
    return f"{pid} ({comm}) {' '.join(fields)}"


def output(*sections: tuple[str, str]) -> str:
    """Script output with `sections` (header, body) between the host section and the end."""
    text = f"runc-rollout-facts 1 {NONCE}\n"
    host = "arch=x86_64\nkernel=5.4.0\nuid=0\nnow=1700000500\nclk_tck=100\nbtime=1700000000\n"
    for header, body in (("host", host), *sections, ("end", "")):
        text += f"\n@@{NONCE}@@ {header}\n{body}"
    return text


def binary(
    path: str, sha256: str, version_output: str, real: str | None = None
) -> list[tuple[str, str]]:
    body = (
        f"real={real or path}\nexecutable=1\ntrusted=1\nversion_exit=0\nsize=9000000\n"
        f"sha256={sha256}\n"
        "df=/dev/sda1 1000 500 400 56% /\n"
    )
    return [(f"binary {path}", body), (f"version {path}", version_output + "\n")]


DOCKERD_PATH = SYSTEMD_DEFAULT_PATH
# A "full" host of the incident: dockerd and containerd, rc93 in /usr/local/sbin shadowing the
# distribution's runc, the raised sysctl, a stuck runc init, a record of an earlier rollout.
FULL_HOST = output(
    (
        "proc 812",
        f"comm=containerd\nstat={stat(812, 'containerd', 'S', 1, 1500)}\n"
        "cmdline=/usr/bin/containerd\nexe=/usr/bin/containerd\n"
        f"path={DOCKERD_PATH}\n"
        "version=containerd github.com/containerd/containerd 1.4.4 05f951a3781f4f2c1911b05e61c16\n",
    ),
    (
        "proc 977",
        f"comm=dockerd\nstat={stat(977, 'dockerd', 'S', 1, 2300)}\n"
        "cmdline=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock\n"
        f"exe=/usr/bin/dockerd\npath={DOCKERD_PATH}\n"
        "version=Docker version 20.10.6, build 370c289\n",
    ),
    (
        "proc 4242",
        f"comm=runc:[2:INIT]\nstat={stat(4242, 'runc:[2:INIT]', 'S', 4230, 50000)}\n"
        "cmdline=runc init\nwchan=pipe_write\n",
    ),
    (
        "proc 4300",
        f"comm=runc:[2:INIT]\nstat={stat(4300, 'runc:[2:INIT]', 'R', 4290, 51000)}\n"
        "cmdline=runc init\nwchan=0\n",
    ),
    ("file docker /etc/docker/daemon.json", '{"log-driver": "journald"}\n'),
    ("runtime-path", f"source=dockerd\npath={DOCKERD_PATH}\n"),
    *binary("/usr/local/sbin/runc", RC93_SHA, RC93_VERSION),
    *binary("/usr/sbin/runc", DEBIAN_SHA, DEBIAN_VERSION),
    ("alias /usr/bin/runc", "real=/usr/sbin/runc\n"),
    ("sysctl-runtime", "163840\n"),
    (
        "sysctl-files",
        "/etc/sysctl.d/90-runc-incident.conf\n/etc/sysctl.d/99-sysctl.conf\t/etc/sysctl.conf\n"
        "/usr/lib/sysctl.d/50-default.conf\n/etc/sysctl.conf\n",
    ),
    (
        "sysctl-lines",
        "/etc/sysctl.d/90-runc-incident.conf:3:fs.pipe-user-pages-soft = 163840\n",
    ),
    ("record", '{"schema_version": 1, "phase": "finished"}'),
)


def test_debian_build_host_capture() -> None:
    facts = parse_facts("build", DEBIAN_HOST)
    assert facts.runc is not None
    assert facts.runc.path == "/usr/sbin/runc"
    assert (facts.runc.version, facts.runc.commit) == ("1.1.5+ds1", "1.1.5+ds1-1+deb12u1")
    assert facts.runc.sha256 == DEBIAN_SHA
    assert (facts.runc.package, facts.runc.package_version) == ("runc", "1.1.5+ds1-1+deb12u1")
    assert facts.runc.free_bytes == 83257336 * 1024
    assert facts.path_source == "default"
    assert facts.runtime_path == SYSTEMD_DEFAULT_PATH.split(":")
    assert "systemd's default PATH" in facts.runc_source
    assert facts.shadowed == []  # /usr/bin/runc, /sbin/runc, /bin/runc are the same file
    assert facts.containerd_runtimes == {}
    assert (facts.dockerd, facts.containerd) == (None, None)
    assert facts.sysctl_runtime == 16384
    assert (facts.sysctl_settings, facts.sysctl_persistent) == ([], None)
    assert (facts.arch, facts.boot_time, facts.uid) == ("x86_64", 1795832010, 0)
    assert facts.record_json is None
    assert facts.warnings == []


def test_lab_full_host_capture() -> None:
    facts = parse_facts("lab-01", LAB_FULL_HOST)
    assert facts.runc is not None and facts.runc.path == "/usr/local/sbin/runc"
    assert (facts.runc.version, facts.runc.commit) == ("1.0.0-rc93", RC93_COMMIT)
    assert facts.runc.free_bytes == 83206596 * 1024
    assert [(b.path, b.version, b.package) for b in facts.shadowed] == [
        ("/usr/sbin/runc", "1.1.5+ds1", "runc")
    ]
    assert facts.path_source == "dockerd" and facts.runtime_path[0] == "/usr/local/sbin"
    assert facts.dockerd is not None and facts.containerd is not None
    assert (facts.dockerd.pid, facts.dockerd.start_ticks) == (32188, 250765)
    assert facts.dockerd.start_time == 1795832010 + 2507.65
    assert (facts.dockerd.version, facts.containerd.version) == ("20.10.24+dfsg1", "1.6.20~ds1")
    assert facts.docker_runtimes == {} and facts.containerd_runtimes == {}
    assert facts.sysctl_runtime == 163840
    assert facts.sysctl_persistent is not None
    assert facts.sysctl_persistent.file == "/etc/sysctl.d/90-runc-incident.conf"
    assert [s.file for s in facts.sysctl_settings] == ["/etc/sysctl.d/90-runc-incident.conf"]
    assert facts.warnings == []


def test_full_host_of_the_incident() -> None:
    facts = parse_facts("node-a1", FULL_HOST)
    assert facts.runc is not None
    assert facts.runc.path == "/usr/local/sbin/runc"
    assert (facts.runc.version, facts.runc.commit) == (
        "1.0.0-rc93",
        "12644e614e25b05da6fd08a38ffa0cfe1903fdec",
    )
    assert facts.runc.package is None
    assert facts.runc_source == "runc on dockerd's PATH"
    assert [b.path for b in facts.shadowed] == ["/usr/sbin/runc"]
    assert facts.shadowed[0].version == "1.1.5+ds1"

    assert facts.dockerd is not None and facts.containerd is not None
    assert (facts.dockerd.pid, facts.dockerd.start_ticks) == (977, 2300)
    assert facts.dockerd.start_time == 1700000023.0  # boot time + 2300 ticks at 100 Hz
    assert facts.dockerd.version == "20.10.6"
    assert (facts.containerd.pid, facts.containerd.version) == (812, "1.4.4")

    assert [(p.pid, p.stuck) for p in facts.runc_init] == [(4242, True), (4300, False)]
    assert [p.pid for p in facts.stuck] == [4242]
    assert facts.runc_init[0].start_time == 1700000500.0

    assert facts.sysctl_runtime == 163840
    assert facts.sysctl_persistent is not None
    assert facts.sysctl_persistent.file == "/etc/sysctl.d/90-runc-incident.conf"
    assert (facts.sysctl_persistent.line, facts.sysctl_persistent.value) == (3, "163840")
    assert facts.record_json == '{"schema_version": 1, "phase": "finished"}'
    assert facts.warnings == []


def test_facts_to_before() -> None:
    before = facts_to_before(parse_facts("node-a1", FULL_HOST))
    assert before.runc_path == "/usr/local/sbin/runc"
    assert before.runc_sha256 == RC93_SHA
    assert (before.runc_version, before.sysctl_runtime) == ("1.0.0-rc93", 163840)


def test_before_names_the_file_behind_a_symlink() -> None:
    text = output(
        ("runtime-path", f"source=default\npath={SYSTEMD_DEFAULT_PATH}\n"),
        *binary("/usr/local/bin/runc", RC93_SHA, RC93_VERSION, real="/opt/runc/bin/runc"),
    )
    facts = parse_facts("h", text)
    assert facts.runc is not None and facts.runc.real_path == "/opt/runc/bin/runc"
    assert facts_to_before(facts).runc_path == "/opt/runc/bin/runc"


def test_no_runc_is_a_warning_and_no_before() -> None:
    facts = parse_facts("h", output(("runtime-path", "source=default\npath=/usr/bin:/bin\n")))
    assert facts.runc is None
    assert any("no runc found" in warning for warning in facts.warnings)
    with pytest.raises(FactsError, match="h: no runc binary"):
        facts_to_before(facts)


def test_docker_default_runtime_with_a_path() -> None:
    daemon_json = (
        '{"default-runtime": "docker-runc",\n'
        ' "runtimes": {"docker-runc": {"path": "/usr/sbin/docker-runc"}}}\n'
    )
    text = output(
        ("file docker /etc/docker/daemon.json", daemon_json),
        ("runtime-path", f"source=default\npath={SYSTEMD_DEFAULT_PATH}\n"),
        *binary("/usr/sbin/runc", DEBIAN_SHA, DEBIAN_VERSION),
        *binary("/usr/sbin/docker-runc", RC93_SHA, RC93_VERSION),
    )
    facts = parse_facts("suse", text)
    assert facts.runc is not None and facts.runc.path == "/usr/sbin/docker-runc"
    assert facts.docker_default_runtime == "docker-runc"
    assert facts.docker_runtimes == {"docker-runc": "/usr/sbin/docker-runc"}
    assert facts.runc_source == "Docker default runtime 'docker-runc'"
    assert [b.path for b in facts.shadowed] == ["/usr/sbin/runc"]


def test_dockerd_flags_override_daemon_json() -> None:
    cmdline = "/usr/bin/dockerd --add-runtime=custom=/opt/bin/runc --default-runtime custom "
    text = output(
        (
            "proc 10",
            f"comm=dockerd\nstat={stat(10, 'dockerd', 'S', 1, 100)}\ncmdline={cmdline}\n"
            "exe=/usr/bin/dockerd\npath=/usr/bin:/bin\nversion=Docker version 24.0.5, build x\n",
        ),
        ("file docker /etc/docker/daemon.json", '{"default-runtime": "runc"}'),
        ("runtime-path", "source=dockerd\npath=/usr/bin:/bin\n"),
        *binary("/opt/bin/runc", RC93_SHA, RC93_VERSION),
    )
    facts = parse_facts("h", text)
    assert facts.docker_default_runtime == "custom"
    assert facts.runc is not None and facts.runc.path == "/opt/bin/runc"
    assert facts.dockerd is not None and facts.dockerd.path == "/usr/bin:/bin"


def containerd_host(config: str) -> str:
    """A Kubernetes node's facts: containerd alone with `config`, Debian's runc on PATH and
    rc93 in /usr/local/bin."""
    return output(
        (
            "proc 500",
            f"comm=containerd\nstat={stat(500, 'containerd', 'S', 1, 100)}\n"
            "cmdline=/usr/local/bin/containerd\nexe=/usr/local/bin/containerd\n"
            "path=/usr/sbin:/usr/bin\nversion=containerd containerd.io 1.6.21 3dce8eb\n",
        ),
        ("file containerd /etc/containerd/config.toml", config),
        ("runtime-path", "source=containerd\npath=/usr/sbin:/usr/bin\n"),
        *binary("/usr/sbin/runc", DEBIAN_SHA, DEBIAN_VERSION),
        *binary("/usr/local/bin/runc", RC93_SHA, RC93_VERSION),
    )


def test_containerd_cri_binary_name_without_docker() -> None:
    config = """version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "/usr/local/bin/runc"
"""
    text = containerd_host(config)
    facts = parse_facts("k8s", text)
    assert facts.path_source == "containerd"
    assert facts.containerd_runtimes == {"runc": "/usr/local/bin/runc"}
    assert facts.runc is not None and facts.runc.path == "/usr/local/bin/runc"
    assert facts.runc_source == "containerd CRI BinaryName"
    assert facts.containerd is not None and facts.containerd.version == "1.6.21"


@pytest.mark.parametrize("disabled", ['"cri"', '"io.containerd.grpc.v1.cri"'])
def test_a_disabled_cri_plugin_names_no_runtime(disabled: str) -> None:
    """containerd with CRI disabled (a Docker host's default config) never runs its runtimes:
    its BinaryName does not choose the runc; PATH does."""
    config = f"""version = 2
disabled_plugins = [{disabled}]
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  BinaryName = "/usr/local/bin/runc"
"""
    text = containerd_host(config)
    facts = parse_facts("docker-host", text)
    assert facts.containerd_runtimes == {}
    assert facts.runc is not None and facts.runc.path == "/usr/sbin/runc"


def test_containerd_config_version_3() -> None:
    config = """version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = '/usr/bin/runc'
"""
    text = output(
        ("file containerd /etc/containerd/config.toml", config),
        ("runtime-path", "source=default\npath=/usr/bin\n"),
        *binary("/usr/bin/runc", DEBIAN_SHA, DEBIAN_VERSION),
    )
    facts = parse_facts("h", text)
    assert facts.containerd_runtimes == {"runc": "/usr/bin/runc"}


def test_sysctl_order_and_precedence() -> None:
    files = "\n".join(
        [
            "/etc/sysctl.d/10-local.conf",
            "/etc/sysctl.d/60-hide.conf",
            "/etc/sysctl.d/99-sysctl.conf\t/etc/sysctl.conf",
            "/run/sysctl.d/70-runtime.conf",
            "/usr/lib/sysctl.d/50-vendor.conf",
            "/usr/lib/sysctl.d/60-hide.conf",
            "/etc/sysctl.conf",
        ]
    )
    lines = "\n".join(
        [
            "/etc/sysctl.d/10-local.conf:1:fs.pipe-user-pages-soft=1000",
            "/run/sysctl.d/70-runtime.conf:2: fs/pipe-user-pages-soft = 7000",
            "/usr/lib/sysctl.d/50-vendor.conf:4:-fs.pipe-user-pages-soft = 5000",
            "/usr/lib/sysctl.d/60-hide.conf:1:fs.pipe-user-pages-soft = 6000",
        ]
    )
    text = output(("sysctl-files", files + "\n"), ("sysctl-lines", lines + "\n"))
    facts = parse_facts("h", text)
    order = [(s.file, s.value, s.applied) for s in facts.sysctl_settings]
    assert order == [
        ("/etc/sysctl.d/10-local.conf", "1000", True),
        ("/usr/lib/sysctl.d/50-vendor.conf", "5000", True),
        ("/run/sysctl.d/70-runtime.conf", "7000", True),
        ("/usr/lib/sysctl.d/60-hide.conf", "6000", False),  # /etc/sysctl.d/60-hide.conf wins
    ]
    assert facts.sysctl_persistent is not None
    assert facts.sysctl_persistent.file == "/run/sysctl.d/70-runtime.conf"


def test_sysctl_conf_applies_last_and_symlinks_are_resolved() -> None:
    files = "/etc/sysctl.d/99-sysctl.conf\t/etc/sysctl.conf\n/etc/sysctl.d/zz.conf\n"
    files += "/etc/sysctl.conf\n"
    lines = (
        "/etc/sysctl.d/99-sysctl.conf:7:fs.pipe-user-pages-soft = 163840\n"
        "/etc/sysctl.d/zz.conf:1:fs.pipe-user-pages-soft = 20000\n"
        "/etc/sysctl.conf:7:fs.pipe-user-pages-soft = 163840\n"
    )
    facts = parse_facts("h", output(("sysctl-files", files), ("sysctl-lines", lines)))
    assert [s.file for s in facts.sysctl_settings] == [
        "/etc/sysctl.d/99-sysctl.conf",
        "/etc/sysctl.d/zz.conf",
        "/etc/sysctl.conf",
    ]
    assert facts.sysctl_settings[0].real_file == "/etc/sysctl.conf"
    assert facts.sysctl_persistent is not None
    assert facts.sysctl_persistent.file == "/etc/sysctl.conf"


def test_process_names_with_spaces_and_parentheses() -> None:
    odd = stat(77, "dockerd) (x", "S", 1, 4200)
    text = output(
        (
            "proc 77",
            f"comm=dockerd\nstat={odd}\ncmdline=dockerd\nexe=/usr/bin/dockerd\npath=/bin\n"
            "version=\n",
        ),
        ("runtime-path", "source=dockerd\npath=/bin\n"),
    )
    facts = parse_facts("h", text)
    assert facts.dockerd is not None and facts.dockerd.start_ticks == 4200
    assert facts.dockerd.version is None


def test_several_daemons_and_differing_paths_are_warned_about() -> None:
    def daemon(pid: int, name: str, path: str) -> tuple[str, str]:
        return (
            f"proc {pid}",
            f"comm={name}\nstat={stat(pid, name, 'S', 1, pid)}\ncmdline={name}\n"
            f"exe=/usr/bin/{name}\npath={path}\nversion=\n",
        )

    text = output(
        daemon(300, "dockerd", "/usr/bin"),
        daemon(200, "dockerd", "/usr/bin"),
        daemon(100, "containerd", "/usr/local/bin:/usr/bin"),
        ("runtime-path", "source=dockerd\npath=/usr/bin\n"),
    )
    facts = parse_facts("h", text)
    assert facts.dockerd is not None and facts.dockerd.pid == 200
    assert any("several dockerd processes: using PID 200, not 300" in w for w in facts.warnings)
    assert any("differs from containerd's" in w for w in facts.warnings)


def test_stuck_signature_on_older_kernels() -> None:
    """Kernel 5.4 blocks a pipe writer in pipe_wait; a sleeping process there counts."""
    text = output(
        (
            "proc 9",
            f"comm=runc:[2:INIT]\nstat={stat(9, 'runc:[2:INIT]', 'S', 8, 1)}\n"
            "cmdline=runc init\nwchan=pipe_wait\n",
        ),
        (
            "proc 10",
            f"comm=runc\nstat={stat(10, 'runc', 'S', 1, 1)}\ncmdline=runc --root /x create c\n"
            "wchan=do_wait\n",
        ),
    )
    facts = parse_facts("h", text)
    assert [(p.pid, p.stuck) for p in facts.runc_init] == [(9, True)]


@pytest.mark.parametrize(
    ("comm", "cmdline"),
    [
        ("runc:[2:INIT]", "runc init"),
        ("exe", "runc init"),
        ("runc", "/usr/local/sbin/runc init"),
        ("docker-runc", "docker-runc init"),
        ("python3", "runc init"),
        ("runc", "runc run x"),
        ("exe", "/proc/self/exe init"),
    ],
)
def test_audit_and_unstick_agree_on_what_a_runc_init_is(comm: str, cmdline: str) -> None:
    """One definition (runcinfo.is_runc_init): the facts script's `case` keeps every comm
    it can accept, and the parser applies it."""
    case = next(line for line in facts_script(NONCE).splitlines() if "kind=runc" in line)
    globs = case.split(")")[0].strip().split("|")
    gathered = any(fnmatch.fnmatchcase(comm, glob) for glob in globs)
    section = ("proc 9", f"comm={comm}\nstat={stat(9, comm, 'S', 8, 1)}\ncmdline={cmdline}\n")
    found = parse_facts("h", output(section)).runc_init if gathered else []
    assert bool(found) is is_runc_init(comm, cmdline.split())


def test_a_config_file_cannot_forge_a_section() -> None:
    """Sections are delimited by a random nonce, which a file's content cannot know."""
    forged = "{}\n@@ffffffffffffffff@@ sysctl-runtime\n1\n@@ffffffffffffffff@@ end\n"
    text = output(("file docker /etc/docker/daemon.json", forged), ("sysctl-runtime", "16384\n"))
    facts = parse_facts("h", text)
    assert facts.sysctl_runtime == 16384
    assert any("daemon.json is not valid JSON" in warning for warning in facts.warnings)


def test_incomplete_or_foreign_output_is_an_error() -> None:
    with pytest.raises(FactsError, match="incomplete"):
        parse_facts("h", FULL_HOST.rsplit(f"@@{NONCE}@@ end", 1)[0])
    with pytest.raises(FactsError, match="not facts output"):
        parse_facts("h", "sh: 1: syntax error\n")


def test_login_noise_before_the_output_is_ignored() -> None:
    facts = parse_facts("h", "Welcome to node-a1!\n" + FULL_HOST)
    assert facts.runc is not None and facts.runc.version == "1.0.0-rc93"


def test_facts_round_trip_through_json() -> None:
    facts = parse_facts("node-a1", FULL_HOST)
    assert HostFacts.model_validate_json(facts.model_dump_json()) == facts


def test_script_rejects_a_bad_nonce() -> None:
    with pytest.raises(ValueError, match="nonce"):
        facts_script("@@; rm -rf /")


@pytest.mark.parametrize("shell", [["dash"], ["busybox", "sh"], ["bash", "--posix"]])
def test_script_runs_under_posix_shells(shell: list[str]) -> None:
    """The script only reads; run it here and check that its output parses."""
    if shutil.which(shell[0]) is None:
        pytest.skip(f"{shell[0]} is not installed")
    result = subprocess.run(
        [*shell, "-c", facts_script(NONCE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    facts = parse_facts("here", result.stdout)
    assert facts.arch and facts.boot_time > 0
    assert facts.sysctl_runtime is not None
    # Debian's runc as installed: dpkg's own md5sum of it matches.
    packaged = [b for b in [facts.runc, *facts.shadowed] if b is not None and b.package]
    assert all(binary.package_intact is True for binary in packaged)


def test_report_keeps_facts_and_classifies_errors() -> None:
    results: dict[str, HostFacts | Exception] = {
        "node-a1": parse_facts("node-a1", FULL_HOST),
        "gone": HostUnreachable("gone", "10.0.0.9:22", "cannot connect after 5 attempts"),
        "moved": HostKeyRejected("moved", "10.0.0.8:22", "HOST KEY CHANGED"),
        "odd": FactsError("odd", "facts output is incomplete (no end marker)"),
    }
    report = FactsReport.model_validate_json(facts_json(results))
    assert report.hosts["node-a1"] == results["node-a1"]
    assert {name: error.kind for name, error in report.errors.items()} == {
        "gone": "unreachable",
        "moved": "host_key",
        "odd": "facts",
    }
    table = facts_table(results)
    assert "1.0.0-rc93 12644e6" in table and "HOST_KEY" in table
    assert "gone (10.0.0.9:22): cannot connect after 5 attempts" in table
    markdown = facts_markdown(results).splitlines()
    assert markdown[0] == "### runc-rollout facts: 4 hosts"
    assert markdown[2].startswith("| host | runc | version |")
    assert any(line.startswith("| node-a1 | /usr/local/sbin/runc | 1.0.0-rc93 12644e6 |")
               for line in markdown), markdown  # fmt: skip
    assert "| moved | **HOST_KEY** |" in "\n".join(markdown)
    assert "- gone: gone \\(10.0.0.9:22\\): cannot connect after 5 attempts" in markdown


def test_before_from_a_saved_report(tmp_path: Path) -> None:
    no_runc = output(("runtime-path", "source=default\npath=/usr/bin\n"))
    results: dict[str, HostFacts | Exception] = {
        "node-a1": parse_facts("node-a1", FULL_HOST),
        "bare": parse_facts("bare", no_runc),
        "gone": HostUnreachable("gone", "10.0.0.9:22", "cannot connect after 5 attempts"),
    }
    saved = tmp_path / "facts.json"
    saved.write_text(facts_json(results))
    report = read_facts_report(saved)
    targets = {name: SshTarget(address=name) for name in ("node-a1", "bare", "gone", "new")}
    before, missing, held = before_from_report(report, targets)
    assert before == {"node-a1": facts_to_before(results["node-a1"])}  # type: ignore[arg-type]
    assert missing == {  # could not be reached: the plan fails unless --allow-unreachable
        "gone": "gone (10.0.0.9:22): cannot connect after 5 attempts",
        "new": "no facts for this host in the report",
    }
    assert held == {  # reached, and its facts rule it out: held back with the reason
        "bare": "no runc binary found (runc on systemd's default PATH (no dockerd or containerd "
        "running))",
    }


def test_a_bad_facts_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such facts file"):
        read_facts_report(tmp_path / "missing.json")
    (tmp_path / "plan.json").write_text('{"plan_id": "x"}')
    with pytest.raises(BadInput, match=r"is not a facts report: (plan_id: Extra|hosts: Field)"):
        read_facts_report(tmp_path / "plan.json")


def test_foreign_daemons_and_untrusted_binaries_are_reported_not_used() -> None:
    text = output(
        ("foreign 4242", "comm=dockerd\nwhy=owner uid 1000, not root\n"),
        ("runtime-path", "source=default\npath=/tmp/x:/usr/sbin\n"),
        (
            "binary /tmp/x/runc",
            "real=/tmp/x/runc\nexecutable=1\nuntrusted=/tmp/x is writable by others\n"
            f"version_exit=\nsize=10\nsha256={RC93_SHA}\n",
        ),
        ("version /tmp/x/runc", "not run: /tmp/x is writable by others\n"),
    )
    facts = parse_facts("h", text)
    assert facts.dockerd is None
    assert "ignored dockerd PID 4242: owner uid 1000, not root" in facts.warnings
    assert facts.runc is not None and facts.runc.version is None
    assert facts.runc.target_problem == "/tmp/x/runc is not trusted (/tmp/x is writable by others)"
    with pytest.raises(FactsError, match="is not trusted"):
        facts_to_before(facts)


def test_a_runc_on_a_read_only_file_system_is_held_back_with_what_to_do_instead() -> None:
    """Flatcar, Fedora CoreOS: /usr is mounted read-only. The facts say so (`mount=ro ...`), and
    the host is held back (never planned, so never a failed half-step), told to update its OS
    image; a runc on a writable mount, or one the facts said nothing about, is swapped."""
    sections = binary("/usr/bin/runc", RC93_SHA, RC93_VERSION)
    path = ("runtime-path", "source=default\npath=/usr/bin\n")
    read_only = [(sections[0][0], sections[0][1] + "mount=ro /usr\n"), sections[1]]
    writable = [(sections[0][0], sections[0][1] + "mount=rw /\n"), sections[1]]
    facts = parse_facts("flatcar-1", output(path, *read_only))
    assert facts.runc is not None and facts.runc.read_only_mount == "/usr"
    with pytest.raises(FactsError, match=r"/usr/bin/runc is on a read-only file system \(/usr is"):
        facts_to_before(facts)
    assert facts_to_before(parse_facts("h", output(path, *writable))).runc_path == "/usr/bin/runc"
    assert facts_to_before(parse_facts("h", output(path, *sections))).runc_path == "/usr/bin/runc"

    report = read_facts_report_text(facts_json({"flatcar-1": facts}))
    _, missing, held = before_from_report(report, {"flatcar-1": SshTarget(address="flatcar-1")})
    assert not missing and "update the OS image" in held["flatcar-1"]


@pytest.mark.parametrize(
    ("mount", "write_access", "held"),
    [
        ("ro /usr", "ok", "/usr"),  # the mount table decides
        ("rw /", "ok", None),
        ("rw /usr/local/sbin", "mktemp: (null): Read-only file system", "/usr/local/sbin"),
        ("rw /x", "mktemp: failed to create file via template 'x': Read-only file system", "/x"),
        ("rw /", "mktemp: (null): No space left on device", None),  # full, not read-only
        ("rw /", "mktemp: (null): Permission denied", None),
        ("", "", None),  # an older facts script said nothing
        ("", "mktemp: (null): Read-only file system", "?"),
    ],
)
def test_a_failed_write_holds_back_what_the_mount_table_calls_writable(
    mount: str, write_access: str, held: str | None
) -> None:
    """An overlay whose upper layer went read-only, an NFS export the server made read-only:
    the mount table says rw, a write says EROFS; the write decides."""
    assert read_only_mount(mount, write_access) == held


def test_the_write_access_sees_what_the_mount_table_misses(tmp_path: Path) -> None:
    """`write_access` of the facts script on an overlay whose upper layer's tmpfs was remounted
    read-only: its mount table line says rw, access(2) says read-only (under dash), and nothing is
    written anywhere. busybox's `test -w` says yes to root whatever the mount: there the mount
    table alone decides (this overlay is then not seen)."""
    if shutil.which("unshare") is None or shutil.which("busybox") is None:
        pytest.skip("needs util-linux's unshare and busybox")
    text = facts_script(NONCE)
    functions = "\n".join(
        text[text.index(f"{name}() {{") : text.index("\n}\n", text.index(f"{name}() {{"))] + "\n}"
        for name in ("mount_of", "write_access")
    )
    for folder in ("upper", "lower", "merged", "plain"):
        (tmp_path / folder).mkdir()
    script = (
        f"{functions}\n"
        'mount --make-rprivate / && mount -t tmpfs tmpfs "$1/upper" && mkdir "$1/upper/u" '
        '"$1/upper/w" && mount -t overlay overlay -o "lowerdir=$1/lower,upperdir=$1/upper/u,'
        'workdir=$1/upper/w" "$1/merged" && mount -o remount,ro "$1/upper" || exit 9\n'
        'mount_of "$1/merged"; write_access "$1/merged"; write_access "$1/plain"\n'
        'ls -A "$1/plain"\n'
    )
    for shell, sees in ((["dash"], True), (["busybox", "sh"], False)):
        done = subprocess.run(
            ["unshare", "--mount", *shell, "-c", script, "sh", str(tmp_path)],
            capture_output=True,
            text=True,
        )
        if done.returncode == 9:
            pytest.skip(f"cannot mount an overlay here: {done.stderr.strip()}")
        mount, merged, plain, *left = done.stdout.splitlines()
        assert mount == f"rw {tmp_path}/merged", (shell, done.stdout, done.stderr)
        assert plain == "ok" and left == [], shell
        assert ("Read-only file system" in merged) is sees, (shell, merged)
        held = f"{tmp_path}/merged" if sees else None
        assert read_only_mount(mount, merged) == held


def read_facts_report_text(text: str) -> FactsReport:
    return FactsReport.model_validate_json(text)


def test_the_script_finds_a_read_only_mount(tmp_path: Path) -> None:
    """`mount_of` of the facts script, in a mount namespace where a folder is bound read-only
    over itself: `ro` and that folder for it and what is below it, `rw` elsewhere."""
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare")
    text = facts_script(NONCE)
    function = text[text.index("mount_of() {") : text.index("\n}\n", text.index("mount_of() {"))]
    folder = tmp_path / "sbin dir"
    (folder / "below").mkdir(parents=True)
    script = (
        f"{function}\n}}\n"
        'mount --make-rprivate / && mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" '
        '|| exit 9\nmount_of "$1"; mount_of "$1/below"; mount_of "$2"\n'
    )
    done = subprocess.run(
        ["unshare", "--mount", "dash", "-c", script, "sh", str(folder), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    if done.returncode == 9:
        pytest.skip(f"cannot bind mounts here: {done.stderr.strip()}")
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"ro {folder}", f"ro {folder}"], done.stderr
    assert lines[2].startswith("rw ") and not lines[2].endswith("sbin dir")
