"""Daemons in a mount namespace of their own: what the facts parser makes of them (captured
output's format, as the lab's `mountns` host prints it), and the facts script's own helpers
that read another namespace's files (`inroot`, `untrusted` with a root), run by dash, busybox sh
and bash --posix on directory trees built here.

The lab test (tests/diagnose/test_mountns_lab.py) shows the same on a real host."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.diagnose.audit import audit_host
from orchestrator.errors import FactsError
from orchestrator.host.facts import SYSTEMD_DEFAULT_PATH, facts_script, facts_to_before, parse_facts
from tests.host.test_facts_parse import NONCE, RC93_SHA, RC93_VERSION, binary, output, stat

NS = "mnt:[4026532176]"
SNAP_RUNC = "/snap/docker/2904/bin/runc"


def daemon(pid: int, comm: str, exe: str, path: str = SYSTEMD_DEFAULT_PATH) -> tuple[str, str]:
    return (
        f"proc {pid}",
        f"comm={comm}\nstat={stat(pid, comm, 'S', 1, 2000 + pid)}\n"
        f"mntns={NS}\nroot=/proc/{pid}/root\ncmdline={exe}\nexe={exe}\npath={path}\n",
    )


def seen(pid: int, path: str, fstype: str, writable: str, same: str) -> str:
    return (
        f"mntns={NS}\nseen_at=/proc/{pid}/root{path}\nfstype={fstype}\n"
        f"writable_there={writable}\nsame_here={same}\n"
    )


def namespaced_host(path: str, fstype: str, writable: str, same: str) -> str:
    """dockerd and containerd in namespace NS; the runc they execute, as seen there."""
    search = f"{path.rsplit('/', 1)[0]}:{SYSTEMD_DEFAULT_PATH}"
    header, body = binary(path, RC93_SHA, RC93_VERSION)[0]
    return output(
        daemon(700, "containerd", "/usr/bin/containerd", search),
        daemon(710, "dockerd", "/usr/sbin/dockerd", search),
        ("runtime-path", f"source=dockerd\npath={search}\n"),
        (header, body + seen(700, path, fstype, writable, same)),
        binary(path, RC93_SHA, RC93_VERSION)[1],
    )


def test_the_daemons_namespace_is_reported() -> None:
    facts = parse_facts("h", namespaced_host("/usr/local/sbin/runc", "ext2/ext3", "0", "1"))
    assert facts.dockerd is not None and facts.containerd is not None
    assert (facts.dockerd.mount_ns, facts.dockerd.root) == (NS, "/proc/710/root")
    assert any("dockerd PID 710 runs in a mount namespace of its own" in w for w in facts.warnings)
    runc = facts.runc
    assert runc is not None and runc.mount_ns == NS and runc.same_here is True
    assert runc.seen_at == "/proc/700/root/usr/local/sbin/runc"
    assert runc.target_problem is None  # the session's own file: swapped here
    assert facts_to_before(facts).runc_path == "/usr/local/sbin/runc"


@pytest.mark.parametrize(
    ("path", "fstype", "writable", "why"),
    [
        (SNAP_RUNC, "squashfs", "0", "is on a read-only squashfs (a snap's): upgrade the snap"),
        ("/usr/local/sbin/runc", "ext2/ext3", "0", "is on a read-only mount there and is not"),
        ("/usr/local/sbin/runc", "tmpfs", "1", "would not outlive the daemons' next start"),
    ],
)
def test_a_runc_only_the_daemons_namespace_has_is_refused(
    path: str, fstype: str, writable: str, why: str
) -> None:
    facts = parse_facts("h", namespaced_host(path, fstype, writable, "0"))
    runc = facts.runc
    assert runc is not None and runc.version == "1.0.0-rc93" and runc.same_here is False
    problem = runc.target_problem
    assert problem is not None and why in problem
    assert f"in the daemons' mount namespace {NS} (/proc/700/root{path})" in problem
    with pytest.raises(FactsError, match="not swapped"):
        facts_to_before(facts)
    audit = audit_host(facts, "a", ())
    (finding,) = [f for f in audit.findings if f.id == "daemon-mount-namespace"]
    assert finding.severity == "medium" and why in finding.detail
    assert "`plan` holds the host back" in finding.detail
    assert audit.daemon_namespaces[0].startswith(f"dockerd PID 710 in {NS}")


def test_daemons_in_the_sessions_namespace_are_not_flagged() -> None:
    plain = output(
        ("proc 5", f"comm=dockerd\nstat={stat(5, 'dockerd', 'S', 1, 9)}\nexe=/usr/sbin/dockerd\n"),
        ("runtime-path", f"source=dockerd\npath={SYSTEMD_DEFAULT_PATH}\n"),
        *binary("/usr/local/sbin/runc", RC93_SHA, RC93_VERSION),
    )
    facts = parse_facts("h", plain)
    assert facts.dockerd is not None and facts.dockerd.mount_ns is None
    assert facts.runc is not None and facts.runc.mount_ns is None
    assert "daemon-mount-namespace" not in [f.id for f in audit_host(facts, "a", ()).findings]


# ---------------------------------------------------------------------------------------------
# The script's helpers for another namespace's files

SHELLS = [["dash"], ["busybox", "sh"], ["bash", "--posix"]]


def helpers() -> str:
    """The facts script's definitions, without its body (everything before `sec host`)."""
    script = facts_script(NONCE)
    return script[: script.index("\nsec host")]


def run(shell: list[str], commands: str) -> str:
    if shutil.which(shell[0]) is None:
        pytest.skip(f"{shell[0]} is not installed")
    done = subprocess.run(
        [*shell, "-c", f"{helpers()}\n{commands}"], capture_output=True, text=True, timeout=30
    )
    return done.stdout.split("\n", 1)[1]  # after the script's first line


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A namespace's root as /proc/PID/root shows it: absolute links lead inside it."""
    base = tmp_path / "root"
    for folder in ("usr/bin", "usr/local/sbin", "sbin", "snap/docker/2904/bin"):
        (base / folder).mkdir(parents=True)
    (base / "snap/docker/2904/bin/runc").write_text("#!/bin/sh\n")
    (base / "usr/bin/runc").write_text("#!/bin/sh\n")
    (base / "usr/local/sbin/runc").symlink_to("/snap/docker/current/bin/runc")
    (base / "snap/docker/current").symlink_to("2904")
    (base / "sbin/runc").symlink_to("../usr/bin/runc")
    (base / "sbin/loop").symlink_to("loop")
    for path in [tmp_path, base, *base.rglob("*")]:
        if not path.is_symlink():
            os.chmod(path, 0o755)
    return base


@pytest.mark.parametrize("shell", SHELLS, ids=lambda shell: shell[0])
def test_links_are_resolved_inside_the_namespace(root: Path, shell: list[str]) -> None:
    """readlink -f would follow /snap/docker/current/bin/runc in this namespace instead."""
    out = run(
        shell,
        f"inroot {root} /usr/local/sbin/runc; inroot {root} /sbin/runc; "
        f"inroot {root} /sbin/loop || echo loop refused",
    )
    assert out.splitlines() == [SNAP_RUNC, "/usr/bin/runc", "loop refused"]


@pytest.mark.parametrize("shell", SHELLS, ids=lambda shell: shell[0])
def test_trust_is_judged_on_the_namespaces_own_folders(root: Path, shell: list[str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (files owned by root)")
    assert run(shell, f"untrusted /usr/local/sbin/runc {root} || echo trusted") == "trusted\n"
    os.chmod(root / "snap/docker", 0o777)  # inside the namespace: /snap/docker
    said = run(shell, f"untrusted /usr/local/sbin/runc {root} || echo trusted")
    assert said == "/snap/docker is writable by others\n"
    os.chmod(root / "snap/docker", 0o755)
    os.chown(root / "usr/bin/runc", 1000, 1000)
    said = run(shell, f"untrusted /sbin/runc {root} || echo trusted")
    assert said == "/usr/bin/runc is not owned by root\n"
