"""The Ansible backend's SSH socket folders (/tmp/rr-cp-*): a killed runc-rollout cannot remove
its own, so the next job removes those whose process is gone, and only those."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestrator.backends.ansible.control import (
    CONTROL_PREFIX,
    control_directory,
    process_start,
    remove_stale_control_dirs,
)


def test_a_killed_runs_folder_is_removed_by_the_next_job(tmp_path: Path) -> None:
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = process_start(killed.pid)
    assert started is not None
    killed.kill()
    killed.wait()
    stale = tmp_path / f"{CONTROL_PREFIX}{killed.pid}.{started}-abc123"
    stale.mkdir(mode=0o700)
    (stale / "0f782331b7").write_text("")  # a socket file its master left behind
    running = tmp_path / f"{CONTROL_PREFIX}{os.getpid()}.{process_start(os.getpid())}-def456"
    running.mkdir(mode=0o700)
    reused_pid = tmp_path / f"{CONTROL_PREFIX}{os.getpid()}.1-ghi789"  # same pid, earlier process
    reused_pid.mkdir(mode=0o700)
    others = [tmp_path / f"{CONTROL_PREFIX}x0v65g46z", tmp_path / "rr-cp-not-ours"]
    for other in others:
        other.mkdir()

    new = control_directory(tmp_path)

    assert not stale.exists() and not reused_pid.exists()
    assert running.is_dir() and all(other.is_dir() for other in others)
    assert new.parent == tmp_path and new.is_dir()
    assert new.name.startswith(f"{CONTROL_PREFIX}{os.getpid()}.{process_start(os.getpid())}-")
    assert remove_stale_control_dirs(tmp_path) == []  # this process's own folder stays
