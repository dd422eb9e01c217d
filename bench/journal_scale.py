"""What `apply` costs the controller per host at 1k, 10k and 100k hosts: the journal, the state,
the events, the view and the summary, with no hosts at all.

Each size runs in a child process of its own: a plan of N hosts in 4 zones is made by the
planner in memory, then `apply` itself (`orchestrator.api.apply`: the approval and artifact
checks, the real journal in a temporary run directory with the plan's copy, the engine, the
plain-lines view, the summary) carries it out over a
fake backend whose workers (`run_on_hosts`, as the SSH backend's) report what a real host does:
6 `host.phase` events and one `host.finished` with a probe result. Printed per size: the run's
controller CPU per host, its wall time, the child's peak RSS beside its RSS before the run (the
plan in memory: the baseline), the bytes the run wrote to files, and the floor measured in the
same child: as many event lines appended and fsync'd one by one with nothing else, the cost
no journal keeping "every event fsync'd" can go under.

    python bench/journal_scale.py [--sizes 1000,10000,100000] [--concurrency 8] [--dir /var/tmp]

The run directory is on `--dir`'s file system (the default temporary directory): fsync costs
what that disk makes it cost.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from orchestrator import api
from orchestrator.backends.base import WaveContext
from orchestrator.backends.group import run_on_hosts
from orchestrator.host.procedure import HostOutcome, PhaseListener, phase_at_least
from orchestrator.models import (
    Artifact,
    HostBefore,
    HostPhase,
    Inventory,
    InventoryGroup,
    InventoryHost,
    PlannedHost,
    ProbeResult,
    SshTarget,
    WaveOptions,
)
from orchestrator.plan.planner import build_plan
from orchestrator.run.journal import EVENTS_FILE
from orchestrator.view import Screen

ZONES = ("zone-a", "zone-b", "zone-c", "zone-d")
RUNC = b"a stand-in runc: the bench's backend never sends it\n"
TARGET = hashlib.sha256(RUNC).hexdigest()
OLD = "c" * 64
PHASES: tuple[HostPhase, ...] = (
    "locked", "staged", "backed_up", "swapped", "verified", "sysctl_restored",
)  # fmt: skip
PROBE = ProbeResult(
    outcome="passed", method="docker", seconds=0.38,
    holder="held 1025 pipes as uid 2147000000: soft 16384 hard 0, new pipe 8192 bytes",
)  # fmt: skip


class FakeFleet:
    """A backend without hosts: each host reports its phases and a done outcome at once."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency

    def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None:
        def one(name: str, planned: PlannedHost) -> None:
            for phase in PHASES:
                sha = TARGET if phase_at_least(phase, "swapped") else None
                context.on_phase(name, phase, sha)
            message = "docker exec checked in container lab-keepalive"
            context.on_outcome(name, HostOutcome("done", "finished", TARGET, message, PROBE))

        run_on_hosts(hosts, one, concurrency=self.concurrency)

    def rollback(
        self, targets: Mapping[str, SshTarget], *, run_id: str | None, on_phase: PhaseListener
    ) -> dict[str, HostOutcome | Exception]:
        raise NotImplementedError("the bench only applies")


class Discard(io.StringIO):
    """stdout and stderr of the run: written to (as apply writes them), kept nowhere, and
    never a write(2), so the process's `wchar` counts only what went to files."""

    def write(self, text: str) -> int:
        return len(text)

    def isatty(self) -> bool:
        return False


def fleet_plan(
    hosts: int, runc: Path
) -> tuple[Inventory, Artifact, WaveOptions, dict[str, HostBefore]]:
    zones = {f"node-{n:06d}.bench.invalid": ZONES[n % len(ZONES)] for n in range(hosts)}
    inventory = Inventory(
        sources=("bench",),
        hosts={name: InventoryHost(name, vars={"zone": zone}) for name, zone in zones.items()},
        groups={"all": InventoryGroup(name="all", hosts=tuple(zones))},
    )
    artifact = Artifact(path=str(runc), sha256=TARGET, size=len(RUNC), version="1.1.5")
    options = WaveOptions(
        waves=("1", "1%", "10%", "25%"), domain_key="zone", max_per_domain="25%", max_failures="1%"
    )
    before = HostBefore(
        runc_path="/usr/local/sbin/runc", runc_sha256=OLD, runc_version="1.0.0-rc93"
    )
    return inventory, artifact, options, dict.fromkeys(zones, before)


def written() -> int:
    """Bytes this process has passed to write(2) so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def floor(path: Path, lines: int, size: int) -> tuple[float, float]:
    """CPU and wall seconds of appending `lines` lines of `size` bytes, one fsync each."""
    line = b"x" * (size - 1) + b"\n"
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(lines):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.process_time() - cpu, time.perf_counter() - wall


def child(hosts: int, directory: Path, concurrency: int) -> None:
    """One size: plan, run, measure; one JSON line on stdout."""
    with tempfile.TemporaryDirectory(prefix="journal-scale-", dir=directory) as tmp:
        runc = Path(tmp) / "runc"
        runc.write_bytes(RUNC)
        plan = build_plan(*fleet_plan(hosts, runc))
        screen = Screen(stdout=Discard(), stderr=Discard(), terminal=False)
        rss_before, wrote_before = rss_mib(), written()
        cpu, wall = time.process_time(), time.perf_counter()
        ran = api.apply(plan, runs_dir=Path(tmp), backend=FakeFleet(concurrency), screen=screen)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        wrote = written() - wrote_before
        code = ran.exit_code
        events_file = ran.run_dir / EVENTS_FILE
        events = ran.journal.state.last_seq
        line_size = events_file.stat().st_size // max(events, 1)
        floor_cpu, floor_wall = floor(Path(tmp) / "floor", events, line_size)
    result = {
        "code": int(code), "events": events, "cpu": cpu, "wall": wall, "wrote": wrote,
        "rss_before": rss_before, "floor_cpu": floor_cpu, "floor_wall": floor_wall,
    }  # fmt: skip
    print(json.dumps(result))


def measure(hosts: int, directory: Path, concurrency: int) -> dict[str, float]:
    argv = [sys.executable, __file__, "--child", str(hosts), "--dir", str(directory)]
    argv += ["--concurrency", str(concurrency)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{hosts} hosts: the child failed: {err.decode().strip()[-800:]}")
    result: dict[str, float] = json.loads(out)
    result["peak"] = usage.ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.dir, args.concurrency)
        return
    print(f"run directory on {args.dir}; load " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print(
        f"{'hosts':>7} {'events':>8} {'ms cpu/host':>11} {'floor':>6} {'ratio':>6} "
        f"{'wall s':>7} {'floor s':>7} {'MiB before':>10} {'peak MiB':>9} {'MB written':>10} "
        f"{'KB/host':>8}"
    )
    for hosts in (int(size) for size in args.sizes.split(",")):
        r = measure(hosts, args.dir, args.concurrency)
        print(
            f"{hosts:>7} {int(r['events']):>8} {r['cpu'] / hosts * 1e3:>11.3f} "
            f"{r['floor_cpu'] / hosts * 1e3:>6.3f} {r['cpu'] / r['floor_cpu']:>5.1f}x "
            f"{r['wall']:>7.1f} {r['floor_wall']:>7.1f} {r['rss_before']:>10.0f} "
            f"{r['peak']:>9.0f} {r['wrote'] / 1e6:>10.1f} {r['wrote'] / hosts / 1e3:>8.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
