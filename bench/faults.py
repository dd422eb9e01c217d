"""Fault injection on a lab: every trial of `orchestrator/lab/faults/`, repeated and tabulated.

Starts its own lab (20 hosts: 2 full, 1 containerd-only; on free loopback addresses, in a
temporary directory) unless `--lab-dir` names a running one, runs each trial with seeds 0..N-1,
and prints

    trial | tried | ended safely | %

with the problems of every trial that did not end safely below the table. `--quick` runs the CI
subset (one repetition of most trials: a couple of minutes). Needs root (the lab).

    python bench/faults.py [--quick] [--only TEXT] [--seeds N] [--lab-dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.lab.faults.bench import Bench
from orchestrator.lab.faults.table import TRIALS, Trial, run_trial
from orchestrator.lab.fleet import lab_down
from orchestrator.lab.handle import LabFleet, attach_lab, lab_unavailable, start_lab

LAB_HOSTS = 20
LAB_FULL = 2
LAB_CONTAINERD = 1


@dataclass
class Row:
    trial: Trial
    tried: int = 0
    safe: int = 0
    seconds: float = 0.0
    failures: list[tuple[int, list[str]]] = field(default_factory=list)


def run_rows(bench: Bench, trials: list[Trial], quick: bool, seeds: int | None) -> list[Row]:
    rows = []
    for trial in trials:
        row = Row(trial)
        count = seeds if seeds is not None else (trial.quick if quick else trial.full)
        for seed in range(count):
            started = time.monotonic()
            problems = run_trial(trial, bench, seed)
            row.seconds += time.monotonic() - started
            row.tried += 1
            if problems:
                row.failures.append((seed, problems))
            else:
                row.safe += 1
            verdict = "safe" if not problems else f"NOT SAFE: {problems[0][:160]}"
            print(f"  {trial.name} [seed {seed}]: {verdict}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def table(rows: list[Row]) -> str:
    header = ("trial", "tried", "ended safely", "%", "seconds")
    body = [
        (
            row.trial.name,
            str(row.tried),
            str(row.safe),
            f"{100 * row.safe / row.tried:.0f}" if row.tried else "-",
            f"{row.seconds:.0f}",
        )
        for row in rows
    ]
    tried = sum(row.tried for row in rows)
    safe = sum(row.safe for row in rows)
    seconds = sum(row.seconds for row in rows)
    total = ("total", str(tried), str(safe), f"{100 * safe / tried:.0f}" if tried else "-")
    body.append((*total, f"{seconds:.0f}"))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), rule, *map(fmt, body)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI subset")
    parser.add_argument("--only", help="only trials whose name contains this text")
    parser.add_argument("--seeds", type=int, help="repetitions of every trial (overrides)")
    parser.add_argument("--lab-dir", type=Path, help="use the running lab in this state dir")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    trials = [t for t in TRIALS if not args.only or args.only in t.name]
    if args.quick and args.seeds is None:
        trials = [t for t in trials if t.quick]
    if args.lab_dir is None:
        reason = lab_unavailable()
        if reason:
            print(f"faults: lab unavailable: {reason}", file=sys.stderr)
            return 2
    base = Path(tempfile.mkdtemp(prefix="runc-rollout-faults-"))
    started = time.monotonic()
    fleet: LabFleet | None = None
    try:
        if args.lab_dir is not None:
            fleet = attach_lab(args.lab_dir)
        else:
            inventory = base / "inventory" / "hosts.yml"
            fleet = start_lab(
                base / "lab", inventory, LAB_HOSTS, LAB_FULL, containerd=LAB_CONTAINERD
            )
        bench = Bench(fleet, base / "work")
        mode = "quick" if args.quick else "full"
        print(f"faults ({mode}): {len(trials)} trials on {len(fleet.hosts)} lab hosts", flush=True)
        rows = run_rows(bench, trials, args.quick, args.seeds)
    finally:
        if fleet is not None and args.lab_dir is None:
            lab_down(fleet.state_dir, fleet.inventory)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(table(rows))
    print(f"wall time {time.monotonic() - started:.0f}s")
    for row in rows:
        for seed, problems in row.failures:
            print(f"\n{row.trial.name} [seed {seed}]:")
            for problem in problems:
                print(f"  - {problem}")
    return 0 if all(row.safe == row.tried for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
