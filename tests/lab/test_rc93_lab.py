"""The lab's runc 1.0.0-rc93 has the real pipe hang: the trigger (a pipe holder putting a uid over
fs.pipe-user-pages-soft, a no-new-privileges container as that uid with a seccomp program over
8 KiB) hangs its runc init in pipe_write, and Debian's runc 1.1.5 passes the same trigger in
about half a second. Without the trigger rc93 runs containers and `docker exec` as any runc."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.host import trigger
from orchestrator.lab import hostdef, rc93
from orchestrator.lab.fleet import lab_trigger
from orchestrator.lab.records import LabHost
from tests.conftest import LabFleet
from tests.fakes import BLOCKED, state, wchan

HANG_WAIT = 20.0  # seconds the trigger may take to hang rc93 (measured: under 1 s)
PASS_WAIT = 10.0  # seconds a passing trigger container may take (measured: ~0.4-0.6 s)
# uids of these tests' own pipe holders: no lab seed or probe uses them (trigger.py's uids).
TEST_UID = trigger.SEED_UID_BASE + 900


@contextmanager
def pipes_held(lab: LabFleet, host: LabHost, uid: int) -> Iterator[trigger.HolderReport]:
    """The holder on `host` over real ssh (`holder_command`), released when the session ends."""
    holder = subprocess.Popen(
        [*lab.ssh_argv(host), trigger.holder_command(uid, max_seconds=120)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        report = trigger.parse_holder_line(holder.stdout.readline())
        assert report is not None and report.capacity == 8192 and report.uid == uid
        yield report
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def trigger_run(
    lab: LabFleet, host: LabHost, profile: Path | None, uid: int
) -> tuple[subprocess.CompletedProcess[str], float]:
    """The trigger's container (`profile` None: Docker's default profile) and its wall time."""
    argv = trigger.docker_run_argv(hostdef.VERIFY_IMAGE, str(profile), uid)
    if profile is None:
        option = argv.index("seccomp=None")
        del argv[option - 1 : option + 1]  # `--security-opt seccomp=...`; no-new-privileges stays
    began = time.monotonic()
    done = lab.ssh(host, ["timeout", "-s", "KILL", str(PASS_WAIT), *argv], check=False)
    return done, time.monotonic() - began


def write_profile(tmp_path: Path) -> Path:
    path = tmp_path / "trigger-seccomp.json"  # /tmp is shared with the lab hosts
    path.write_text(json.dumps(trigger.seccomp_profile(trigger.architectures_for("x86_64"))))
    return path


def test_rc93_hangs_under_the_trigger_and_debians_runc_passes_it(
    lab: LabFleet, tmp_path: Path
) -> None:
    host = lab.full_hosts[-1]
    profile = write_profile(tmp_path)
    try:
        began = time.monotonic()
        seed = lab.stick(host)  # returns once runc init is blocked, the holder released
        assert time.monotonic() - began < HANG_WAIT
        time.sleep(1.0)
        assert wchan(seed.pid) in BLOCKED, "rc93's runc init went on"
        status = Path(f"/proc/{seed.pid}/status").read_text()
        assert f"Uid:\t{seed.uid}\t" in status and "NoNewPrivs:\t1" in status
        (again,) = lab_trigger(lab.state_dir, [host.name])  # another one hangs; it is killed
        assert again.outcome == "hung" and again.pid != seed.pid and again.seconds < HANG_WAIT
        assert wchan(seed.pid) in BLOCKED and state(again.pid or 0) in ("gone", "Z")

        lab.ssh(
            host,
            f"cp {hostdef.DEBIAN_RUNC} /usr/local/sbin/.runc && mv /usr/local/sbin/.runc"
            " /usr/local/sbin/runc",
        )
        with pipes_held(lab, host, seed.uid):
            done, seconds = trigger_run(lab, host, profile, seed.uid)
        assert done.returncode == 0, done.stderr
        assert seconds < PASS_WAIT / 2
        assert [run.outcome for run in lab_trigger(lab.state_dir, [host.name])] == ["passed"]
    finally:
        lab.reset(host)


def test_rc93_runs_containers_and_exec_without_the_trigger(lab: LabFleet, tmp_path: Path) -> None:
    host = lab.full_hosts[-1]
    version = lab.ssh(host, "runc --version").stdout
    assert version.startswith(f"runc version {rc93.VERSION}\ncommit: {rc93.COMMIT}\n")
    profile = write_profile(tmp_path)
    uid = TEST_UID + lab.hosts.index(host)
    try:
        # The trigger's profile without the pipes held, Docker's default profile with them.
        done, _ = trigger_run(lab, host, profile, uid + 10)
        assert done.returncode == 0, done.stderr
        with pipes_held(lab, host, uid):
            done, _ = trigger_run(lab, host, None, uid)
        assert done.returncode == 0, done.stderr
        out = lab.ssh(host, ["docker", "exec", hostdef.KEEPALIVE_CONTAINER, "echo", "in"]).stdout
        assert out == "in\n"
    finally:
        lab.reset(host)
