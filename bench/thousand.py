"""A thousand real hosts in one run: the lab's light hosts (each its own sshd and mount
namespace on a loopback address) rolled by one `apply`, then `status`, the summary and a
`rollback` of a tenth of them, beside the OpenSSH-script floor at the same concurrency.

Brings up `--hosts` light hosts (`lab up --link-runc`: their rc93 is one hard-linked file), or
uses the lab of `--state-dir` brought up before; plans them (waves `1,10%,50%,100%`; `--gather`
reads every host's facts first), and measures each command as its own process: wall time, CPU
(user+system of it and everything under it), peak RSS; and, sampled every 0.2 s, its threads,
open file descriptors and sockets at their peak; for `apply` the bytes it sent (the journal's
`sent_bytes`). Every host must end on the new runc (read from the host's own file, not from the
journal), the rolled-back ones on rc93 again. Then every host is reset and the floor
(`apply_scale.floor_script`: the SSH backend's five batches and one gzip upload per host over
one OpenSSH ControlMaster connection, `xargs -P CONCURRENCY`) does the same in one wave. The
load average is printed at each step: the machine is shared.

Light hosts have no Docker or containerd: the incident probe runs through an OCI bundle (as on
a containerd-free host), and the verification container is a no-new-privileges bundle run by the
new runc itself. All lab hosts share this machine's kernel, so 200 probes at once would be 200
pipe holders of ~100 processes each; `--no-probe` plans without it (what each host then proves
is said in docs/benchmarks.md).

    python bench/thousand.py [--hosts 1000] [--concurrency 200] [--rollback 100] [--no-probe]
        [--no-floor] [--max-failures 0] [--first-address 127.0.236.11] [--keep]
        [--state-dir DIR --inventory FILE]  (a lab already up: `lab up --link-runc ...`)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.apply_scale import floor_script, sent_per_host
from orchestrator.lab.fleet import lab_down, lab_reset, lab_up
from orchestrator.lab.procs import file_sha256
from orchestrator.lab.records import LabInfo
from orchestrator.plan.artifact import packed_artifact
from orchestrator.run.engine import load_plan

RUNC = "/usr/local/sbin/runc"
SAMPLE_EVERY = 0.2  # seconds between samples of the measured process
HALTED = (0, 1, 3)  # exit codes of a run that completed, failed or halted: figures all the same


@dataclass
class Measured:
    what: str
    wall: float = 0.0
    cpu: float = 0.0  # seconds: the process and everything under it
    peak_rss_mib: float = 0.0  # its largest resident set (or a child's)
    threads: int = 0  # peaks, sampled
    fds: int = 0
    sockets: int = 0
    load: list[float] = field(default_factory=list)  # 1-minute load averages seen
    exit_code: int = 0
    stdout: str = ""


def _sample(pid: int, into: Measured) -> None:
    """Peaks of the process's threads, descriptors and sockets, until it exits."""
    while True:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, ProcessLookupError):
            return
        sockets = 0
        for fd in fds:
            with contextlib.suppress(OSError):
                sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        threads = next(
            int(line.split()[1]) for line in status.splitlines() if line[:8] == "Threads:"
        )
        into.threads = max(into.threads, threads)
        into.fds = max(into.fds, len(fds))
        into.sockets = max(into.sockets, sockets)
        into.load.append(os.getloadavg()[0])
        time.sleep(SAMPLE_EVERY)


def measure(what: str, argv: list[str], *, allowed: tuple[int, ...] = (0,)) -> Measured:
    """Run `argv` to its end, sampled; refused unless its exit code is in `allowed`."""
    result = Measured(what, load=[os.getloadavg()[0]])
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        sampler = threading.Thread(target=_sample, args=(proc.pid, result), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        result.wall = time.perf_counter() - started
        sampler.join()
        out.seek(0)
        result.stdout = out.read().decode(errors="replace")
        if proc.returncode not in allowed:
            err.seek(0)
            said = err.read().decode(errors="replace").strip()[-800:]
            raise SystemExit(f"{what}: {argv[:3]} exited {proc.returncode}: {said}")
    result.exit_code = proc.returncode
    result.cpu = usage.ru_utime + usage.ru_stime
    result.peak_rss_mib = usage.ru_maxrss / 1024
    result.load.append(os.getloadavg()[0])
    return result


def host_runcs(info: LabInfo, names: list[str]) -> dict[str, str | None]:
    """Each host's runc sha256, read through its namespace holder's root (the host's own file)."""
    record = json.loads((info.state_dir / "lab.json").read_text())
    holders = {host["name"]: host["procs"]["holder"]["pid"] for host in record["hosts"]}
    return {name: file_sha256(f"/proc/{holders[name]}/root{RUNC}") for name in names}


def hosts_done(run_dir: Path) -> list[str]:
    """The hosts the run's journal says are done, in the order they finished."""
    done = []
    with open(run_dir / "events.jsonl") as events:
        for line in events:
            event = json.loads(line)
            if event.get("type") == "host.finished" and event.get("status") == "done":
                done.append(str(event["host"]))
    return done


def check_runcs(info: LabInfo, expected: dict[str, str], when: str) -> None:
    seen = host_runcs(info, list(expected))
    wrong = sorted(name for name, sha in expected.items() if seen[name] != sha)
    if wrong:
        raise SystemExit(f"{when}: {len(wrong)} hosts on the wrong runc: {wrong[:10]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--waves", default="1,10%,50%,100%")
    parser.add_argument("--rollback", type=int, default=100, help="Hosts to roll back after.")
    parser.add_argument("--no-probe", action="store_true", help="Plan without the probe.")
    parser.add_argument("--gather", action="store_true", help="Plan with --gather.")
    parser.add_argument("--max-failures", default="0", help="The plan's budget per wave.")
    parser.add_argument("--no-floor", action="store_true", help="Skip the floor.")
    parser.add_argument("--first-address", default="127.0.236.11")
    parser.add_argument("--keep", action="store_true", help="Leave the lab up afterwards.")
    parser.add_argument("--state-dir", type=Path, help="Use this lab (kept afterwards).")
    parser.add_argument("--inventory", type=Path, help="Its inventory (with --state-dir).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="runc-rollout-thousand-"))
    state_dir = args.state_dir or work / "lab"
    inventory = args.inventory or state_dir.parent / "hosts.yml"
    keep = args.keep or args.state_dir is not None
    cli = [str(Path(sys.executable).parent / "runc-rollout")]
    results: list[Measured] = []

    def note(m: Measured) -> Measured:
        results.append(m)
        load = f"load {m.load[0]:.0f}-{max(m.load):.0f}"
        print(
            f"  {m.what:12} {m.wall:7.1f} s wall, {m.cpu:6.1f} s CPU, {m.peak_rss_mib:5.0f} MiB, "
            f"{m.threads} threads, {m.fds} fds ({m.sockets} sockets), {load}",
            flush=True,
        )
        return m

    print(
        f"{args.hosts} light hosts, concurrency {args.concurrency}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    began = time.perf_counter()
    info = lab_up(
        args.hosts,
        0,
        state_dir=state_dir,
        inventory_path=inventory,
        first_address=None if args.state_dir else args.first_address,
        link_runc=True,
    )
    print(
        f"  lab up       {time.perf_counter() - began:7.1f} s, lab RSS {info.rss_bytes >> 20} "
        f"MiB (PSS {info.pss_bytes >> 20} MiB), load {os.getloadavg()[0]:.0f}",
        flush=True,
    )
    try:
        names = [host.name for host in info.hosts]
        artifact = work / "runc"
        shutil.copy("/usr/sbin/runc", artifact)
        sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
        old = file_sha256(str(state_dir / "runc-rc93")) or ""
        plan, runs = work / "plan.json", work / "runs"
        concurrency = ["--concurrency", str(args.concurrency)]
        note(
            measure(
                "plan",
                [
                    *cli,
                    "plan",
                    "-i",
                    str(inventory),
                    "--runc",
                    str(artifact),
                    "--sha256",
                    sha,
                    *(["--gather"] if args.gather else []),
                    "--waves",
                    args.waves,
                    "-o",
                    str(plan),
                    *concurrency,
                    *(["--no-probe"] if args.no_probe else []),
                    "--max-failures",
                    args.max_failures,
                ],
            )
        )
        apply = note(
            measure(
                "apply",
                [
                    *cli,
                    "apply",
                    str(plan),
                    "--yes",
                    "--executor",
                    "ssh",
                    "--runs-dir",
                    str(runs),
                    *concurrency,
                ],
                allowed=HALTED,
            )
        )
        (run_dir,) = runs.iterdir()
        upgraded = hosts_done(run_dir)  # all of them, unless the run halted (exit 1 or 3)
        print(f"  apply exit {apply.exit_code}: {len(upgraded)} of {len(names)} hosts done")
        check_runcs(info, dict.fromkeys(upgraded, sha), "after apply")
        sent = sent_per_host(runs)
        note(measure("status", [*cli, "status", str(run_dir)], allowed=HALTED))
        summary = note(
            measure(
                "summary", [*cli, "status", str(run_dir), "--format", "markdown"], allowed=HALTED
            )
        )
        note(
            measure(
                "status json", [*cli, "status", str(run_dir), "--format", "json"], allowed=HALTED
            )
        )
        step = max(len(names) // max(args.rollback, 1), 1)
        back = upgraded[::step][: args.rollback]
        hosts = [word for name in back for word in ("--host", name)]
        note(
            measure(
                "rollback",
                [
                    *cli,
                    "rollback",
                    str(run_dir),
                    "--yes",
                    "--runs-dir",
                    str(runs),
                    *concurrency,
                    *hosts,
                ],
            )
        )
        check_runcs(info, {n: old if n in back else sha for n in upgraded}, "after rollback")
        floor: Measured | None = None
        floor_done = 0
        if not args.no_floor:
            lab_reset(state_dir, None)
            scripts = work / "floor"
            scripts.mkdir()
            packed = work / "runc.gz"
            packed.write_bytes(packed_artifact(artifact, sha))
            size = artifact.stat().st_size
            made = [floor_script(h, packed, size, sha, scripts, old) for h in load_plan(plan).hosts]
            listing = "".join(f"{path}\n" for path in sorted(made))
            (scripts / "all").write_text(listing)
            # A host's script that fails exits 1 (ssh's 255 would make xargs stop every other):
            # the floor goes on, as apply with a budget does, and its failed hosts are counted.
            each = shlex.quote('sh "$0" || exit 1')
            xargs = f"xargs -P {args.concurrency} -n 1 sh -c {each} < {scripts / 'all'}"
            floor = note(
                measure("floor", ["sh", "-c", xargs], allowed=(0, 123))  # 123: a script failed
            )
            seen = host_runcs(info, names)
            floor_done = sum(seen[name] == sha for name in names)
            print(f"  floor exit {floor.exit_code}: {floor_done} of {len(names)} hosts done")
        hosts_n = len(names)
        print(
            f"\nsummary: {len(summary.stdout.splitlines())} lines; sent {sent / 1e6:.2f} MB per "
            f"host, {sent * hosts_n / 1e9:.2f} GB in all\n"
        )
        print(
            "| step | wall s | CPU s | CPU ms/host | peak RSS MiB | threads | fds (sockets) "
            "| load |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for m in results:
            per = m.cpu / (args.rollback if m.what == "rollback" else hosts_n) * 1000
            print(
                f"| {m.what} | {m.wall:.1f} | {m.cpu:.1f} | {per:.1f} | {m.peak_rss_mib:.0f} | "
                f"{m.threads} | {m.fds} ({m.sockets}) | {m.load[0]:.0f}-{max(m.load):.0f} |"
            )
        if floor is not None:
            print(
                f"\napply / floor: {apply.wall / floor.wall:.2f}x wall, "
                f"{apply.cpu / floor.cpu:.2f}x CPU (hosts done: apply {len(upgraded)}, "
                f"floor {floor_done}, of {hosts_n})"
            )
    finally:
        if not keep:
            began = time.perf_counter()
            report = lab_down(state_dir, inventory)
            print(f"lab down: {report.stopped} processes in {time.perf_counter() - began:.1f} s")
            shutil.rmtree(work, ignore_errors=True)
        else:
            lab_reset(state_dir, None)
            print(
                f"kept: {state_dir} (runc-rollout lab down --state-dir {state_dir} "
                f"--inventory {inventory})"
            )


if __name__ == "__main__":
    main()
