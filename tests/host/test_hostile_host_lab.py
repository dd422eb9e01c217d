"""A lab host that plays a compromised node: processes named like the daemons that are not the
host's own, binaries anyone could have placed, a daemon.json pointing at something that is not
runc. Facts must run none of them, and nothing may be swapped over them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode, FactsError
from orchestrator.host.facts import facts_to_before
from orchestrator.lab.records import LabHost
from tests.conftest import LabFleet

# A stand-in daemon: `--version` leaves a mark (that is what must never happen), else it sleeps.
FAKE_DAEMON = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        FILE *mark = fopen(MARK, "w");
        if (mark) fclose(mark);
        puts("Docker version 99.0.0, build evil");
        return 0;
    }
    sleep(300);
    return 0;
}
"""


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A world-writable directory in /tmp (which the lab hosts share with this machine)."""
    directory = Path(tempfile.mkdtemp(prefix="rr-hostile-"))
    directory.chmod(0o1777)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def fake_daemon(open_dir: Path) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler for the stand-in daemon")
    source = open_dir / "fake.c"
    source.write_text(FAKE_DAEMON)
    binary = open_dir / "dockerd"
    mark = open_dir / "dockerd-ran"
    subprocess.run(
        ["cc", f'-DMARK="{mark}"', "-o", str(binary), str(source)], check=True, timeout=60
    )
    binary.chmod(0o755)
    return binary


def start(lab: LabFleet, host: LabHost, command: str, binary: Path) -> int:
    """Start `command` (which execs `binary`) in the background on `host`; its PID."""
    script = f"({command}) </dev/null >/dev/null 2>&1 & echo $!"
    pid = int(lab.ssh(host, f"sh -c {shlex.quote(script)}").stdout.split()[-1])
    for _ in range(100):
        try:
            if os.readlink(f"/proc/{pid}/exe") == str(binary):
                return pid
        except OSError:
            pass
        time.sleep(0.05)
    kill(pid)
    raise AssertionError(f"{binary} did not start")


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)  # started by this test, killed by its PID


@pytest.mark.parametrize(
    ("how", "why"),
    [
        ("setpriv --reuid=65534 --regid=65534 --clear-groups", "owner uid 65534, not root"),
        # A container's (mount and UTS namespaces of its own): skipped silently.
        ("unshare --mount --uts --propagation private", None),
    ],
)
def test_a_daemon_that_is_not_the_hosts_own_is_ignored_and_never_run(
    lab: LabFleet, fake_daemon: Path, open_dir: Path, how: str, why: str | None
) -> None:
    """An unprivileged user's process, or one in a container's namespaces, named dockerd: its
    binary, its PATH and its runc are never run."""
    host = lab.light_hosts[0]
    evil_runc = open_dir / "runc"
    evil_runc.write_text(f"#!/bin/sh\ntouch {open_dir}/runc-ran\necho 'runc version 9.9.9'\n")
    evil_runc.chmod(0o755)
    env = f"env PATH={open_dir}:/usr/bin:/bin"
    pid = start(lab, host, f"exec {how} {env} {fake_daemon} 300", fake_daemon)
    try:
        facts = lab.facts(host)
    finally:
        kill(pid)
    assert not (open_dir / "dockerd-ran").exists()
    assert not (open_dir / "runc-ran").exists()
    assert facts.dockerd is None
    if why is not None:
        assert f"ignored dockerd PID {pid}: {why}" in facts.warnings
    assert not any(str(pid) in warning for warning in facts.warnings if why is None)
    assert facts.runc is not None and facts.runc.path == "/usr/local/sbin/runc"
    assert facts.runtime_path[0] == "/usr/local/sbin"


def test_a_root_daemon_in_a_mount_namespace_of_its_own_is_judged_by_the_same_rules(
    lab: LabFleet, fake_daemon: Path, open_dir: Path
) -> None:
    """A root dockerd in a mount namespace of its own but the host's UTS namespace (as a snap's
    or a ProtectSystem= unit's): reported with its namespace, its files read through
    /proc/PID/root; from a world-writable folder, neither it nor the runc on its PATH is run,
    and the host gets no "before"."""
    host = lab.light_hosts[0]
    evil_runc = open_dir / "runc"
    evil_runc.write_text(f"#!/bin/sh\ntouch {open_dir}/runc-ran\necho 'runc version 9.9.9'\n")
    evil_runc.chmod(0o755)
    how = "unshare --mount --propagation private"
    env = f"env PATH={open_dir}:/usr/bin:/bin"
    pid = start(lab, host, f"exec {how} {env} {fake_daemon} 300", fake_daemon)
    try:
        its_own = str(Path(f"/proc/{pid}/ns/mnt").readlink())
        facts = lab.facts(host)
    finally:
        kill(pid)
    assert not (open_dir / "dockerd-ran").exists()
    assert not (open_dir / "runc-ran").exists()
    assert facts.dockerd is not None and facts.dockerd.pid == pid
    assert facts.dockerd.mount_ns == its_own
    assert facts.dockerd.root == f"/proc/{pid}/root" and facts.dockerd.version is None
    assert facts.runc is not None and facts.runc.path == f"{open_dir}/runc"
    assert facts.runc.untrusted == f"{open_dir} is writable by others"
    with pytest.raises(FactsError, match="is not trusted"):
        facts_to_before(facts)


def test_binaries_anyone_could_have_placed_are_never_run_nor_swapped(
    lab: LabFleet, fake_daemon: Path, open_dir: Path
) -> None:
    """A root dockerd running from a world-writable directory, with that directory first on its
    PATH: the daemon counts (root, this namespace), but neither its binary nor the runc found in
    that directory is run, and the host gets no "before" (never a swap target)."""
    host = lab.light_hosts[0]
    evil_runc = open_dir / "runc"
    evil_runc.write_text(f"#!/bin/sh\ntouch {open_dir}/runc-ran\necho 'runc version 9.9.9'\n")
    evil_runc.chmod(0o755)
    pid = start(lab, host, f"exec env PATH={open_dir}:/usr/bin:/bin {fake_daemon} 300", fake_daemon)
    try:
        facts = lab.facts(host)
    finally:
        kill(pid)
    assert not (open_dir / "dockerd-ran").exists()
    assert not (open_dir / "runc-ran").exists()
    assert facts.dockerd is not None and facts.dockerd.version is None
    assert facts.runc is not None and facts.runc.path == f"{open_dir}/runc"
    assert facts.runc.untrusted == f"{open_dir} is writable by others"
    assert facts.runc.version is None and "not run" in facts.runc.version_output
    with pytest.raises(FactsError, match="is not trusted"):
        facts_to_before(facts)


@pytest.fixture
def impostor(clean_lab: LabFleet) -> Iterator[Path]:
    """A light host whose daemon.json names a root-owned binary that is not runc (a copy of
    `timeout`, in the host's own /usr/local/sbin); both removed afterwards (a reset keeps them)."""
    host_dir = clean_lab.state_dir / "hosts" / clean_lab.light_hosts[0].name
    binary = host_dir / "usr-local-sbin" / "timeout"
    shutil.copy("/usr/bin/timeout", binary)
    config = host_dir / "etc-docker" / "daemon.json"
    config.parent.mkdir(exist_ok=True)
    config.write_text(
        '{"default-runtime": "evil", "runtimes": {"evil": {"path": "/usr/local/sbin/timeout"}}}'
    )
    try:
        yield binary
    finally:
        config.unlink()
        binary.unlink()


def test_a_runtime_path_that_is_not_runc_is_never_a_target(
    clean_lab: LabFleet, impostor: Path
) -> None:
    """Facts say the configured runtime is not runc, and no "before" is made of it."""
    lab = clean_lab
    host = lab.light_hosts[0]
    facts = lab.facts(host)
    assert facts.runc is None
    assert facts.runc_unused == "default runtime timeout: runc not used by default"
    assert facts.runc_source == "Docker default runtime 'evil'"
    with pytest.raises(FactsError, match="default runtime timeout: runc not used by default"):
        facts_to_before(facts)


def test_apply_without_gather_leaves_a_runtime_that_is_not_runc_alone(
    clean_lab: LabFleet, impostor: Path, artifact: Path, tmp_path: Path
) -> None:
    lab = clean_lab
    host = lab.light_hosts[0]
    before = impostor.read_bytes()
    plan = tmp_path / "plan.json"
    sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    common = ["-i", str(lab.inventory), "--limit", host.name, "--runc", str(artifact)]
    assert main(["plan", *common, "--sha256", sha, "-o", str(plan)]) == 0
    runs = tmp_path / "runs"
    assert main(["apply", str(plan), "--yes", "--runs-dir", str(runs)]) == ExitCode.OK
    assert impostor.read_bytes() == before
    state = json.loads(next(runs.glob("*/state.json")).read_text())
    assert state["hosts"][host.name]["status"] == "noop"
    message = state["hosts"][host.name]["message"]
    assert message == "default runtime timeout: runc not used by default; not touched"
