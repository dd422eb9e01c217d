"""Fault injection on a lab: every trial of `orchestrator/lab/faults/`, repeated and tabulated.

Starts its own lab (20 hosts: 2 full, 1 containerd-only; on free loopback addresses, in a
temporary directory) unless `--lab-dir` names a running one, runs each trial with seeds 0..N-1,
and prints

    trial | tried | ended safely | %

and the same by class of fault, with the problems of every trial that did not end safely below.
`--quick` runs the CI subset: one trial of each class, drawn with `--quick-seed` (the test
suite's is RUNC_ROLLOUT_FAULT_SEED). `--only` keeps trials whose "class: name" contains TEXT.
Needs root (the lab).

    python bench/faults.py [--quick [--quick-seed N]] [--only TEXT] [--seeds N] [--lab-dir DIR]
                           [--keep]
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
from orchestrator.lab.faults.table import TRIALS, Trial, quick_subset, run_trial
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
        count = seeds if seeds is not None else (1 if quick else trial.full)
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


def table(rows: list[Row], by_class: bool = False) -> str:
    """One line per trial, or per class of fault (`by_class`), and the total."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.trial.kind if by_class else row.trial.name, []).append(row)
    header = ("class" if by_class else "trial", "tried", "ended safely", "%", "seconds")
    body = [_line(name, group) for name, group in groups.items()]
    body.append(_line("total", rows))
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), rule, *map(fmt, body)])


def _line(name: str, rows: list[Row]) -> tuple[str, ...]:
    tried = sum(row.tried for row in rows)
    safe = sum(row.safe for row in rows)
    percent = f"{100 * safe / tried:.0f}" if tried else "-"
    return (name, str(tried), str(safe), percent, f"{sum(row.seconds for row in rows):.0f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI subset")
    parser.add_argument("--quick-seed", type=int, default=0, help="which CI subset (0)")
    parser.add_argument("--only", help="only trials whose name contains this text")
    parser.add_argument("--seeds", type=int, help="repetitions of every trial (overrides)")
    parser.add_argument("--lab-dir", type=Path, help="use the running lab in this state dir")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    trials = quick_subset(args.quick_seed) if args.quick else list(TRIALS)
    trials = [t for t in trials if not args.only or args.only in f"{t.kind}: {t.name}"]
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
    print()
    print(table(rows, by_class=True))
    print(f"wall time {time.monotonic() - started:.0f}s")
    for row in rows:
        for seed, problems in row.failures:
            print(f"\n{row.trial.name} [seed {seed}]:")
            for problem in problems:
                print(f"  - {problem}")
    return 0 if all(row.safe == row.tried for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
