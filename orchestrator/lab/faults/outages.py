"""The fault trials of a real fleet's outages: a host that reboots mid-run, a host whose disk
fills during the backup, the controller's disk filling while it writes the journal, a network
partition in the middle of a batch, and the controller's clock jumping during a bake.

Each ends judged by the same invariant as every other trial (`orchestrator.lab.invariant`):
every host on a working runc, old or new, the journal saying which, nothing left behind, the
sysctl consistent. What each simulates, and what it does not, is in docs/development.md."""

from __future__ import annotations

import contextlib
import errno
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from orchestrator.lab.faults.bench import (
    Bench,
    expect,
    expect_code,
    host_states,
    no_traceback,
    only_run,
)
from orchestrator.lab.faults.inject import (
    AtStep,
    SetupFailed,
    boot,
    cut_link,
    in_host,
    power_off,
    restore_link,
    store_tmpfs,
)
from orchestrator.lab.faults.trials import refused_before_swap
from orchestrator.lab.invariant import HostSnapshot, load_run
from orchestrator.lab.procs import proc_start, send_signal, wait_gone
from orchestrator.lab.records import ProcRef
from orchestrator.run.journal import EVENTS_FILE, read_events

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"  # Debian's `faketime`
STEPS = ("stage", "swap", "verify")


def _one_wave_and_a_victim(
    bench: Bench, rng: random.Random
) -> tuple[Path, dict[str, HostSnapshot], str, str]:
    """A one-wave plan over a full host and a light one (reset), the one the fault hits, and
    the step it hits: (plan, baseline, victim, step)."""
    hosts = [bench.full[0], rng.choice(bench.light)]
    plan_path = bench.plan(hosts, "--waves", "100%")
    baseline = bench.baseline(plan_path)
    bench.reset(hosts)
    return plan_path, baseline, rng.choice(hosts), rng.choice(STEPS)


def host_reboot(bench: Bench, rng: random.Random) -> list[str]:
    """A host loses power during a step (stage, swap or verify): it is reported unreachable
    and the run halts; once it has booted again (its daemons restarted, /run empty, the
    sysctl as its files say), `resume` finishes it or, on a host that had recorded its
    daemons' PIDs (after its backup), rolls it back, saying they restarted."""
    plan_path, baseline, victim, step = _one_wave_and_a_victim(bench, rng)
    fault = AtStep(victim, step, rng.uniform(0, 0.3), partial(power_off, bench.fleet, victim))
    problems: list[str] = []
    try:
        code, run_dir = bench.apply_with(plan_path, bench.scratch("reboot") / "runs", fault)
    finally:
        boot(bench.fleet, victim)
    expect(fault.fired.is_set(), f"the {step} step of {victim} never ran", problems)
    expect_code("apply", code, [3], problems)
    state = host_states(run_dir)[victim]
    expect(state.status == "unreachable", f"{victim} is {state.status}, not unreachable", problems)
    problems += bench.check([run_dir], baseline, settled=False)
    result = bench.cli("resume", run_dir, "--yes")
    no_traceback(result, problems)
    state = host_states(run_dir)[victim]
    if state.status == "done":
        expect_code("resume", result, [0], problems)
    else:  # verification saw dockerd and containerd with other PIDs than before the swap
        expect_code("resume", result, [1, 3], problems)
        expect(
            state.status == "failed" and "restarted" in (state.message or ""),
            f"{victim} after resume: {state.status}: {state.message!r}",
            problems,
        )
    return problems + bench.check([run_dir], baseline)


def link_cut(bench: Bench, rng: random.Random) -> list[str]:
    """A host's network link is cut during a step for a few seconds to half a minute, then
    restored: apply either finishes it once the link is back, or reports it unreachable and
    halts; never hangs past its timeouts, and a later `resume` finishes it."""
    plan_path, baseline, victim, step = _one_wave_and_a_victim(bench, rng)
    outage = rng.uniform(3, 30)
    stopped: list[ProcRef] = []

    def cut() -> None:
        stopped.extend(cut_link(bench.fleet, victim))
        threading.Timer(outage, restore_link, [stopped]).start()

    fault = AtStep(victim, step, rng.uniform(0, 0.3), cut)
    started = time.monotonic()
    try:
        code, run_dir = bench.apply_with(plan_path, bench.scratch("partition") / "runs", fault)
    finally:
        elapsed = time.monotonic() - started
        time.sleep(max(0.0, outage - elapsed) + 0.5)  # the link is back (the timer)
        restore_link(stopped)
    problems: list[str] = []
    expect(fault.fired.is_set(), f"the {step} step of {victim} never ran", problems)
    expect(bool(stopped), f"{victim}: no sshd process to stop", problems)
    expect(elapsed < outage + 300, f"apply took {elapsed:.0f}s for a {outage:.0f}s cut", problems)
    expect_code("apply", code, [0, 3], problems)
    state = host_states(run_dir)[victim]
    if code == 3:
        expect(state.status == "unreachable", f"{victim} is {state.status}", problems)
        problems += bench.check([run_dir], baseline, settled=False)
        result = bench.cli("resume", run_dir, "--yes")
        no_traceback(result, problems)
        expect_code("resume", result, [0], problems)
    expect(host_states(run_dir)[victim].status == "done", f"{victim} not done", problems)
    return problems + bench.check([run_dir], baseline)


def clock_jump(bench: Bench, rng: random.Random) -> list[str]:
    """The controller's clock jumps during the bake between two waves (forward, back, or
    forward then back, by an hour to two days): the bake lasts what the plan says, no less and
    not much more, and the run ends as any other. The apply runs under libfaketime, whose
    offset the trial changes mid-bake."""
    if not Path(FAKETIME_LIB).exists():
        raise SetupFailed(f"{FAKETIME_LIB} missing: apt-get install faketime")
    hosts = [bench.light[0], rng.choice(bench.light[1:])]
    bake = 8.0
    plan_path = bench.plan(hosts, "--waves", "1,100%", "--bake", str(bake))
    baseline = bench.baseline(plan_path)
    bench.reset(hosts)
    scratch = bench.scratch("clock")
    offsets = rng.choice([["+{}"], ["-{}"], ["+{}", "+0"], ["+{}", "-{}"]])
    jump = rng.choice(["3600", "86400", "2d"])
    clock = scratch / "faketime"
    clock.write_text("+0\n")
    env = {
        "LD_PRELOAD": FAKETIME_LIB,
        "FAKETIME_TIMESTAMP_FILE": str(clock),
        "FAKETIME_NO_CACHE": "1",
    }
    runs = scratch / "runs"
    proc = bench.spawn(
        "apply", plan_path, "--yes", "--runs-dir", runs, log=scratch / "log", env=env
    )
    problems: list[str] = []
    baked: float | None = None
    try:
        finished = _wait_for_event(proc, runs, '"type":"wave.finished","wave":0', 300)
        if finished is None:
            raise SetupFailed(f"wave 0 never finished: {(scratch / 'log').read_text()[-300:]}")
        for offset in offsets:
            time.sleep(rng.uniform(0.5, 2.5))
            clock.write_text(offset.format(jump) + "\n")
        started = _wait_for_event(proc, runs, '"type":"wave.started","wave":1', 300)
        baked = started - finished if started is not None else None
        code = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    log = (scratch / "log").read_text(errors="replace")
    expect("Traceback" not in log, f"apply: traceback: {log[-300:]}", problems)
    expect(baked is not None, "wave 1 never started", problems)
    if baked is not None:
        jumps = " then ".join(offset.format(jump) for offset in offsets)
        expect(
            baked >= bake - 0.2, f"a {bake:.0f}s bake ended after {baked:.1f}s ({jumps})", problems
        )
        expect(baked < bake + 15, f"a {bake:.0f}s bake lasted {baked:.1f}s ({jumps})", problems)
    expect_code("apply", code, [0], problems)
    run_dir = only_run(runs)
    status = bench.cli("status", run_dir)
    no_traceback(status, problems)
    expect_code("status", status, [0], problems)
    return problems + bench.check([run_dir], baseline)


def _wait_for_event(
    proc: subprocess.Popen[bytes], runs: Path, text: str, timeout: float
) -> float | None:
    """When (time.monotonic) an event containing `text` was first seen in the run's journal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(runs.glob(f"*/{EVENTS_FILE}")) if runs.is_dir() else []
        if found and text in found[0].read_text(errors="replace"):
            return time.monotonic()
        if proc.poll() is not None:
            return None
        time.sleep(0.01)
    return None


@contextlib.contextmanager
def private_tmpfs(where: Path, size: int) -> Iterator[ProcRef]:
    """A tmpfs of `size` bytes over `where`, in a mount namespace of its own that a `sleep`
    holds open (never a mount in this machine's namespace); yields the holder, whose
    /proc/PID/root shows the tmpfs. The namespace, tmpfs and all, goes when it is killed."""
    where.mkdir(parents=True, exist_ok=True)
    script = f"mount -t tmpfs -o size={size},mode=0700 runc-rollout-fault {where} && exec sleep 900"
    child = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    start = proc_start(child.pid)
    ref = ProcRef(pid=child.pid, start=start if start is not None else -1)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{child.pid}/root{where}").is_mount() or not _is_tmpfs(ref, where):
            if child.poll() is not None or time.monotonic() > deadline:
                raise SetupFailed(f"private tmpfs: {child.stderr.read() if child.stderr else ''!r}")
            time.sleep(0.02)
        yield ref
    finally:
        send_signal(ref, signal.SIGKILL)
        child.wait(10)
        wait_gone([ref], 5)


def _is_tmpfs(ref: ProcRef, where: Path) -> bool:
    try:
        mounts = Path(f"/proc/{ref.pid}/mountinfo").read_text()
    except OSError:
        return False
    return any(
        line.split()[4] == str(where) and " - tmpfs " in line for line in mounts.splitlines()
    )


def fill(path: Path) -> int:
    """Write zeros to `path` until the file system is full; returns the bytes written."""
    written = 0
    chunk = bytes(65536)
    with path.open("wb", buffering=0) as handle:
        while True:
            try:
                count = handle.write(chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
            written += count or 0
            if not count:
                break
    return written


def controller_disk_full(bench: Bench, rng: random.Random) -> list[str]:
    """The controller's disk fills while apply writes the journal (its runs folder is a small
    tmpfs, filled to the last byte at a random event): apply stops with a one-line error and
    exit 1, its journal whole up to the event that did not fit; once space is back, `resume`
    finishes the run, and the journals and hosts agree."""
    hosts = [bench.light[0], rng.choice(bench.light[1:])]
    plan_path = bench.plan(hosts, "--waves", "1,100%")
    baseline = bench.baseline(plan_path)
    bench.reset(hosts)
    scratch = bench.scratch("controller-disk")
    runs = scratch / "runs"
    fill_at = rng.randint(2, 2 + 8 * len(hosts))
    problems: list[str] = []
    with private_tmpfs(runs, 8 << 20) as holder:
        inside = Path(f"/proc/{holder.pid}/root{runs}")
        enter = ["/usr/bin/nsenter", f"--mount=/proc/{holder.pid}/ns/mnt", "--"]
        log = scratch / "apply.log"
        proc = bench.spawn("apply", plan_path, "--yes", "--runs-dir", runs, log=log, enter=enter)
        filler = inside / ".fill"
        try:
            deadline = time.monotonic() + 300
            while proc.poll() is None and time.monotonic() < deadline:
                found = list(inside.glob(f"*/{EVENTS_FILE}"))
                if found and found[0].read_bytes().count(b"\n") >= fill_at:
                    fill(filler)
                    break
                time.sleep(0.002)
            code = proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        output = log.read_text(errors="replace")
        if not filler.exists():
            raise SetupFailed(f"apply ended before event {fill_at}: {output[-300:]}")
        expect("Traceback" not in output, f"apply: traceback: {output[-300:]}", problems)
        expect_code("apply with the disk full", code, [0, 1], problems)
        if code == 1:
            expect("No space left" in output, f"apply said {output.strip()[-200:]!r}", problems)
        # No check here: as after a SIGKILL, a host may be a step ahead of the journal (its own
        # record says where it is) until `resume` reads it.
        run_dir = only_run(inside)
        _, unreadable = read_events(run_dir / EVENTS_FILE)
        expect(not unreadable, f"the journal kept a half event: {unreadable}", problems)
        filler.unlink()
        log = scratch / "resume.log"
        proc = bench.spawn("resume", runs / run_dir.name, "--yes", log=log, enter=enter)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=300)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        output = log.read_text(errors="replace")
        expect("Traceback" not in output, f"resume: traceback: {output[-300:]}", problems)
        expect_code("resume once space is back", proc.wait(), [0], problems)
        copy = scratch / "copy" / run_dir.name  # the run id is its folder's name
        shutil.copytree(run_dir, copy)
    states = load_run(copy).state.hosts
    undone = sorted(name for name, state in states.items() if state.status != "done")
    expect(not undone, f"not done after resume: {undone}", problems)
    return problems + bench.check([copy], baseline)


def backup_full(bench: Bench, rng: random.Random, *, of: str) -> list[str]:
    """A host's store (/var/lib/runc-rollout) fills during the backup: of its runc (room for
    part of it), or of its sysctl files (room for its runc and no more)."""
    host = rng.choice(bench.light)
    size = int(in_host(bench.fleet, host, "stat -c %s /usr/local/sbin/runc").strip())
    page = 4096
    if of == "runc":
        room = rng.randrange(16, size // page) * page
        words = ["could not back up"]
    else:
        room = (-(-size // page) + 1) * page  # the runc's backup, and the lock's owner file
        words = ["backing up the sysctl files failed"]
    return refused_before_swap(
        bench,
        rng,
        name=f"store-full-{of}",
        words=words,
        around=lambda name: store_tmpfs(bench.fleet, name, room),
        host=host,
    )
