"""The rc93 trigger on a full lab host: `lab trigger` (pass, or hang and clean up) and the
incident's hung container (`lab up --stuck`, `lab_stick`)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from orchestrator.errors import BadInput, LabError
from orchestrator.host import trigger
from orchestrator.lab import hostdef
from orchestrator.lab.core import DAEMON_ENV, DOCKER, _locked, load_record
from orchestrator.lab.procs import (
    default_state_dir,
    send_signal,
    wait_gone,
    write_file,
)
from orchestrator.lab.records import (
    HostRecord,
    StuckSeed,
    TriggerRun,
)
from orchestrator.lab.scan import LabScan

TRIGGER_TIMEOUT = 30.0  # seconds for the trigger to pass or hang runc init
TRIGGER_UID_BASE = trigger.SEED_UID_BASE + 100  # `lab trigger`'s uids: 61100 + host index


class LabTrigger(LabScan):
    """The trigger run on a full host, once or to leave its runc init hung."""

    def stick(self, host: HostRecord) -> StuckSeed:
        """Container `lab-stuck` on a full host, its runc init hung the incident's way for real:
        a pipe holder puts the seed's uid over the (machine's) soft limit, the trigger container
        runs as that uid, rc93 blocks exporting the profile's program into its 2-page pipe. The
        holder and the docker client are then let go; the pipe stays small, runc init stays
        blocked until `unstick` drains it or `lab down` kills it."""
        uid = trigger.SEED_UID_BASE + self.record.hosts.index(host) + 1
        hung = self.hung_inits(host)
        if hung:
            return StuckSeed(host.name, hostdef.STUCK_CONTAINER, hung[0], uid)
        with contextlib.suppress(LabError):  # a seed unstuck or killed before: start afresh
            self.in_host(host, [DOCKER, "rm", "-f", hostdef.STUCK_CONTAINER], timeout=30)
        options = ("-d", "--name", hostdef.STUCK_CONTAINER)
        with self.pipes_held(host, uid):
            client, began = self.start_trigger(host, uid, options), time.monotonic()
            try:
                pid = self.watch_trigger(host, client, set())
            finally:
                client.kill()  # it would wait for ever, deaf to SIGTERM
                client.wait()
        if pid is None:
            why = f"it passed (exit {client.returncode}) in {time.monotonic() - began:.1f}s"
            raise LabError(f"{host.name}: the trigger did not hang its runc: {why}; still rc93?")
        if pid not in self.hung_inits(host):
            raise LabError(f"{host.name}: runc init {pid} went on once the pipes were released")
        self.started.append(f"{host.name} container {hostdef.STUCK_CONTAINER} (runc init hung)")
        return StuckSeed(host.name, hostdef.STUCK_CONTAINER, pid, uid)

    def try_trigger(self, host: HostRecord) -> TriggerRun:
        """Run the trigger once on a full host (uid `TRIGGER_UID_BASE` + index): it passes, or
        its runc init hangs and is killed at once (the container removed)."""
        uid = TRIGGER_UID_BASE + self.record.hosts.index(host) + 1
        before = set(self.hung_inits(host))
        options = ("--rm", "--name", hostdef.TRIGGER_CONTAINER)
        with self.pipes_held(host, uid):
            client, began = self.start_trigger(host, uid, options), time.monotonic()
            try:
                pid = self.watch_trigger(host, client, before)
                seconds = time.monotonic() - began
            finally:
                client.kill()
                client.wait()
        if pid is None:
            outcome = "passed" if client.returncode == 0 else f"failed (exit {client.returncode})"
            return TriggerRun(host.name, uid, outcome, seconds, None)
        hung = [ref for ref, _wchan in self.runc_inits(host) if ref.pid not in before]
        for ref in hung:
            send_signal(ref, signal.SIGKILL)
        wait_gone(hung, 5.0)
        with contextlib.suppress(LabError):
            self.in_host(host, [DOCKER, "rm", "-f", hostdef.TRIGGER_CONTAINER], timeout=30)
        return TriggerRun(host.name, uid, "hung", seconds, pid)

    @contextlib.contextmanager
    def pipes_held(self, host: HostRecord, uid: int) -> Iterator[None]:
        """The trigger's pipe holder on the host (`trigger.holder_command`): `uid` is over the
        soft limit inside the block, released (its stdin closed) after it."""
        holder = subprocess.Popen(
            [*self.nsenter(host), "/bin/sh", "-c", trigger.holder_command(uid, max_seconds=120)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=DAEMON_ENV,
            text=True,
        )
        assert holder.stdin is not None and holder.stdout is not None
        try:
            ready, _, _ = select.select([holder.stdout], [], [], TRIGGER_TIMEOUT)
            line = holder.stdout.readline() if ready else ""
            if trigger.parse_holder_line(line) is None:
                raise LabError(f"{host.name}: the pipe holder failed: {line.strip() or 'no line'}")
            yield
        finally:
            holder.stdin.close()
            try:
                holder.wait(10)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()

    def start_trigger(
        self, host: HostRecord, uid: int, options: tuple[str, ...]
    ) -> subprocess.Popen[bytes]:
        """The trigger's docker client on the host, as `uid`, with the profile written first."""
        profile = trigger.seccomp_profile(trigger.architectures_for(os.uname().machine))
        write_file(self.host_dir(host) / hostdef.STUCK_PROFILE, json.dumps(profile, indent=1))
        inside = f"{self.inside(host)}/{hostdef.STUCK_PROFILE}"
        argv = trigger.docker_run_argv(hostdef.VERIFY_IMAGE, inside, uid, [DOCKER], options)
        return subprocess.Popen(
            [*self.nsenter(host), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=DAEMON_ENV,
            start_new_session=True,
        )

    def watch_trigger(
        self, host: HostRecord, client: subprocess.Popen[bytes], before: set[int]
    ) -> int | None:
        """The PID of a runc init (not in `before`) hung in a pipe write, or None once the
        client exited; LabError when neither happens within TRIGGER_TIMEOUT."""
        deadline = time.monotonic() + TRIGGER_TIMEOUT
        while time.monotonic() < deadline:
            hung = [pid for pid in self.hung_inits(host) if pid not in before]
            if hung:
                return hung[0]
            if client.poll() is not None:
                return None
            time.sleep(0.05)
        raise LabError(f"{host.name}: the trigger neither finished nor hung runc init")

    def remove_stuck(self, host: HostRecord) -> None:
        """Undo `stick`: kill the host's runc init processes and remove `lab-stuck`."""
        profile = self.host_dir(host) / hostdef.STUCK_PROFILE
        if not profile.exists():
            return
        self.kill_runc_inits(host)
        with contextlib.suppress(LabError):
            self.in_host(host, [DOCKER, "rm", "-f", hostdef.STUCK_CONTAINER], 30)
        profile.unlink()


def lab_stick(state_dir: Path | None = None, host: str | None = None) -> StuckSeed:
    """Give a full host (default: the first) the incident's hung container, if it has no hung
    runc init yet (see `LabTrigger.stick`). For `lab up --stuck` and tests."""
    state_dir = (state_dir or default_state_dir()).absolute()
    record = load_record(state_dir) if state_dir.is_dir() else None
    if record is None:
        raise BadInput(f"no lab in {state_dir}")
    full = [h for h in record.hosts if h.kind == "full" and (host is None or h.name == host)]
    if not full:
        raise BadInput(f"no full lab host {host or ''} in {state_dir}".replace("  ", " "))
    lab = LabTrigger(state_dir, record)
    with _locked(state_dir):
        return lab.stick(full[0])


def lab_trigger(state_dir: Path | None = None, hosts: list[str] | None = None) -> list[TriggerRun]:
    """Run the rc93 trigger once on full hosts (default: all of them), one after the other."""
    state_dir = (state_dir or default_state_dir()).absolute()
    record = load_record(state_dir) if state_dir.is_dir() else None
    if record is None:
        raise BadInput(f"no lab in {state_dir}")
    full = {h.name: h for h in record.hosts if h.kind == "full"}
    unknown = sorted(set(hosts or ()) - set(full))
    if unknown:
        raise BadInput(f"no such full lab host: {', '.join(unknown)}")
    lab = LabTrigger(state_dir, record)
    with _locked(state_dir):
        return [lab.try_trigger(full[name]) for name in (hosts or list(full))]


def format_trigger(runs: list[TriggerRun]) -> str:
    lines = []
    for run in runs:
        if run.outcome == "hung":
            what = f"HUNG: runc init PID {run.pid} blocked in a pipe write after {run.seconds:.1f}s"
            lines.append(f"{run.host}: {what} (uid {run.uid}); killed, container removed")
        else:
            lines.append(f"{run.host}: {run.outcome} in {run.seconds:.2f}s (uid {run.uid})")
    return "\n".join(lines)
