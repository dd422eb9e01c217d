"""The controller's CPU per host as a user measures it: `/usr/bin/time` around a whole `apply`
process (start-up, planning read, the gzip made once, every host, the journal), at 24 hosts and
at 100, and from the two the marginal cost of one more host and the fixed part.

Brings up a lab of `--hosts` light hosts (no Docker: the verification runs through an OCI
bundle), plans one wave over the first 24 and over all of them (`--sizes`), and runs
`apply --concurrency 24` (the gzip push, the SSH backend, the default) on each, interleaved
`--rounds` times, every light host reset before every run; each run must leave its hosts on the
new runc. Prints each run, then the medians:

    hosts | controller CPU s | per host ms | wall s

and marginal = (CPU at 100 - CPU at 24) / 76, fixed = CPU at 24 - 24 x marginal, beside
`runc-rollout --version` measured in the same run (the start-up no command goes under).
Targets: marginal at most 50 ms per host; the whole process at 24 hosts at most 80 ms per host.

The plans have no incident probe unless `--probe`: lab hosts share the controller's 2 cores and
kernel, and each probe's pipe holder starts ~1,000 processes, so 24 probes at once put the load
average in the hundreds and inflate the controller's own CPU; on a fleet each host probes on its
own CPU, and the probe's cost to the controller is one more step's text and output.

    python bench/host_cost.py [--hosts 100] [--sizes 24,100] [--rounds 3] [--concurrency 24]
        [--probe] [--first-address 127.0.212.11] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.apply_scale import Measured, not_upgraded, run
from orchestrator.lab.fleet import lab_down, lab_reset, lab_up

MARGINAL_TARGET_MS = 50.0
WHOLE_AT_24_TARGET_MS = 80.0


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100, help="light hosts in the lab")
    parser.add_argument("--sizes", default="24,100", help="hosts per apply: the two sizes")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each size (the median)")
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--first-address", default="127.0.212.11")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--probe", action="store_true", help="plan with the incident probe")
    args = parser.parse_args()
    small, large = sorted(int(size) for size in args.sizes.split(","))
    if large > args.hosts:
        raise SystemExit(f"--sizes: {large} hosts asked of a lab of {args.hosts}")
    work = Path(tempfile.mkdtemp(prefix="runc-rollout-cost-"))
    state_dir, inventory = work / "lab", work / "hosts.yml"
    cli = str(Path(sys.executable).parent / "runc-rollout")
    info = lab_up(
        args.hosts,
        0,
        state_dir=state_dir,
        inventory_path=inventory,
        first_address=args.first_address,
    )
    try:
        light = [host.name for host in info.hosts if host.kind == "light"][:large]
        artifact = work / "runc"
        shutil.copy("/usr/sbin/runc", artifact)
        sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
        plans: dict[int, Path] = {}
        for size in (small, large):
            plans[size] = work / f"plan-{size}.json"
            run(
                [cli, "plan", "-i", str(inventory), "--limit", ",".join(light[:size]),
                 "--runc", str(artifact), "--sha256", sha, "--waves", "100%",
                 "-o", str(plans[size]), *([] if args.probe else ["--no-probe"])]
            )  # fmt: skip
        print(f"{len(light)} light hosts, concurrency {args.concurrency}, "
              f"{os.cpu_count()} CPUs, load {load()}", flush=True)  # fmt: skip
        runs: dict[int, list[Measured]] = {small: [], large: []}
        version: list[float] = []
        for round_ in range(args.rounds):
            for size in (small, large):
                lab_reset(state_dir, light)
                version.append(run([cli, "--version"]).cpu)
                runs_dir = work / f"runs-{size}-{round_}"
                measured = run(
                    [cli, "apply", str(plans[size]), "--yes", "--concurrency",
                     str(args.concurrency), "--runs-dir", str(runs_dir)]
                )  # fmt: skip
                wrong = not_upgraded(state_dir, light[:size], sha)
                if wrong:
                    raise SystemExit(f"apply of {size} hosts: not upgraded: {wrong}")
                runs[size].append(measured)
                print(f"  {size:4} hosts: {measured.wall:6.1f} s wall, {measured.cpu:6.2f} s "
                      f"CPU ({measured.cpu / size * 1000:.0f} ms/host), load {load()}",
                      flush=True)  # fmt: skip
    finally:
        lab_reset(state_dir, None)
        if not args.keep:
            lab_down(state_dir, inventory)
            shutil.rmtree(work, ignore_errors=True)
    cpu = {size: statistics.median(m.cpu for m in measured) for size, measured in runs.items()}
    wall = {size: statistics.median(m.wall for m in measured) for size, measured in runs.items()}
    marginal = (cpu[large] - cpu[small]) / (large - small)
    fixed = cpu[small] - small * marginal
    print("\n| hosts | controller CPU s | per host ms | wall s |")
    print("|---:|---:|---:|---:|")
    for size in (small, large):
        print(f"| {size} | {cpu[size]:.2f} | {cpu[size] / size * 1000:.0f} | {wall[size]:.1f} |")
    whole_small = cpu[small] / small * 1000
    print(f"\nmarginal {marginal * 1000:.0f} ms per host (target <= {MARGINAL_TARGET_MS:.0f}: "
          f"{'ok' if marginal * 1000 <= MARGINAL_TARGET_MS else 'MISSED'}); "
          f"fixed {fixed:.2f} s; `--version` {statistics.median(version):.2f} s")  # fmt: skip
    print(
        f"whole process at {small} hosts {whole_small:.0f} ms per host (target <= "
        f"{WHOLE_AT_24_TARGET_MS:.0f}: "
        f"{'ok' if whole_small <= WHOLE_AT_24_TARGET_MS else 'MISSED'}); load {load()}"
    )


if __name__ == "__main__":
    main()
