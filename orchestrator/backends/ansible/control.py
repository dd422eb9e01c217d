"""A job's SSH master sockets (/tmp/rr-cp-*): one folder per job, stopped and removed when the
job ends, and the folders of a killed runc-rollout removed by the next job of any."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

# A job's SSH master sockets go in a folder of their own under the system's temporary folder:
# a socket's path must be short (108 bytes), and a run's folder can be anywhere. Its name says
# which process made it (pid and start time): a runc-rollout that was killed cannot remove its
# folder, so the next job of any runc-rollout of the same user removes those whose process is
# gone (stopping any master still running there first).
CONTROL_PREFIX = "rr-cp-"
_CONTROL_NAME = re.compile(re.escape(CONTROL_PREFIX) + r"([0-9]+)\.([0-9]+)-[A-Za-z0-9_]+")


def control_directory(base: Path | None = None) -> Path:
    """A new folder for one job's SSH master sockets (mode 0700), after removing those of
    processes that are gone."""
    base = Path(tempfile.gettempdir()) if base is None else base
    remove_stale_control_dirs(base)
    pid = os.getpid()
    owner = f"{pid}.{process_start(pid) or 0}"
    return Path(tempfile.mkdtemp(prefix=f"{CONTROL_PREFIX}{owner}-", dir=base))


def remove_stale_control_dirs(base: Path) -> list[Path]:
    """Remove this user's job socket folders in `base` whose process no longer runs (a killed
    runc-rollout's); the folders of running ones, and everything else, are left alone."""
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for path in entries:
        found = _CONTROL_NAME.fullmatch(path.name)
        if found is None:
            continue
        try:
            info = path.lstat()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        pid, started = int(found.group(1)), found.group(2)
        if _still_running(pid, started):
            continue
        close_masters(path)
        removed.append(path)
    return removed


def process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, /proc/PID/stat), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None  # field 22: starttime


def _still_running(pid: int, started: str) -> bool:
    if started != "0":
        return process_start(pid) == started
    try:  # made where /proc was not readable: the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def close_masters(control_dir: Path) -> None:
    """Stop the job's SSH master connections (they would linger for ControlPersist), then
    remove the folder."""
    try:
        sockets = list(control_dir.iterdir())
    except OSError:
        sockets = []
    for socket in sockets:
        subprocess.run(
            ["ssh", "-F", "/dev/null", "-o", f"ControlPath={socket}", "-O", "exit", "job"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    shutil.rmtree(control_dir, ignore_errors=True)
