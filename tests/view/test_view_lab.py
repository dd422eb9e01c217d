"""The operator's view on real lab hosts: apply under a pseudo-terminal shows the live
view, the failed host's reason and the summary; `status --watch` follows the same run from
another process; Ctrl-C leaves the terminal clean and says how to resume."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import signal
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path

import yaml

from orchestrator.run.journal import EVENTS_FILE
from tests.conftest import RUNC_ROLLOUT, LabFleet

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SHOW_CURSOR, HIDE_CURSOR = "\x1b[?25h", "\x1b[?25l"


class Terminal:
    """A process on a pseudo-terminal of 100 columns: stdout and stderr both go to it, read as
    it comes (a terminal nobody reads fills up and blocks the writer)."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        self.proc = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=cwd,
            start_new_session=True,
            env=terminal_environment(),
        )
        os.close(slave)
        self.master = master
        self.output = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the other side is closed
                return
            if not chunk:
                return
            self.output += chunk

    def read_until_exit(self, timeout: float = 240) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=30)
        os.close(self.master)
        return code, self.output.decode(errors="replace")


def terminal_environment() -> dict[str, str]:
    """Ours, as a capable terminal's: the caller's TERM (`dumb` in some CI systems and editor
    shells) and its colour and size settings would change what is drawn."""
    overridden = {"TERM", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TTY_COMPATIBLE"}
    kept = {key: value for key, value in os.environ.items() if key not in overridden}
    return kept | {"TERM": "xterm-256color"}


def plain(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "\n")


def plan_with_a_dead_host(lab: LabFleet, artifact: Path, tmp_path: Path) -> Path:
    """A plan over the lab plus `lab-dead` (the first host's address, a port nobody listens
    on): it is unreachable, and a budget of 1 lets the run go on."""
    inventory = yaml.safe_load(lab.inventory.read_text())
    hosts = inventory["all"]["children"]["lab"]["hosts"]
    first = next(iter(hosts.values()))
    hosts["lab-dead"] = {**first, "ansible_port": 1, "lab_kind": "light"}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    plan = tmp_path / "plan.json"
    sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    subprocess.run(
        [RUNC_ROLLOUT, "plan", "-i", str(path), "--runc", str(artifact), "--sha256", sha,
         "--waves", "2,100%", "--max-failures", "1", "-o", str(plan), "--format", "json"],
        check=True, capture_output=True,
    )  # fmt: skip
    return plan


def wait_for_run(runs: Path, text: str, timeout: float = 120) -> Path:
    """The run directory, once its journal contains `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for events in runs.glob(f"*/{EVENTS_FILE}") if runs.exists() else []:
            if text in events.read_text():
                return events.parent
        time.sleep(0.05)
    raise AssertionError(f"no run with {text!r} in its journal")


def test_live_view_summary_and_watch_on_a_terminal(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    plan = plan_with_a_dead_host(clean_lab, artifact, tmp_path)
    runs = tmp_path / "runs"
    argv = [RUNC_ROLLOUT, "apply", str(plan), "--yes", "--runs-dir", str(runs)]
    terminal = Terminal(argv, tmp_path)
    run_dir = wait_for_run(runs, '"run.started"')
    watch = subprocess.run(  # from another "terminal" (a pipe here: plain lines)
        [RUNC_ROLLOUT, "status", str(run_dir), "--watch", "--interval", "0.2"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    code, raw = terminal.read_until_exit()
    text = plain(raw)
    assert code == 1, text  # a host was unreachable
    assert "━" in text and re.search(r"wave 1/2 .*hosts", text), text  # the live bar
    assert re.search(r"done \d+  failed 0  unreachable \d+  in flight \d+  noop 0", text), text
    assert re.search(r"FAILED lab-dead: unreachable: .*(refused|connect)", text), text
    assert "lab-01: locked" not in text, text  # phases only with -v
    assert "apply " in text and "outcomes: 4 done, 1 unreachable" in text, text
    assert "did: left on old runc: needs resume" in text, text
    assert "probe (docker): passed" in text and "probe (bundle): passed" in text, text
    assert raw.rfind(SHOW_CURSOR) > raw.rfind(HIDE_CURSOR), text  # the terminal is left clean
    assert watch.returncode == 0, watch.stderr
    assert re.search(r"lab-dead: unreachable: .*(refused|connect)", watch.stderr), watch.stderr
    assert "outcomes: 4 done, 1 unreachable" in watch.stdout, watch.stdout


def test_ctrl_c_leaves_the_terminal_clean_and_says_how_to_resume(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    plan = plan_with_a_dead_host(clean_lab, artifact, tmp_path)
    runs = tmp_path / "runs"
    terminal = Terminal([RUNC_ROLLOUT, "apply", str(plan), "--yes", "--runs-dir", str(runs)],
                        tmp_path)  # fmt: skip
    wait_for_run(runs, '"host.phase"')
    terminal.proc.send_signal(signal.SIGINT)
    code, raw = terminal.read_until_exit()
    text = plain(raw)
    assert code == 130, text
    assert "continue with: runc-rollout resume" in text
    assert raw.rfind(SHOW_CURSOR) > raw.rfind(HIDE_CURSOR)
    assert "Traceback" not in text
