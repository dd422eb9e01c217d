"""Start-up cost of the command line: whole-process CPU (user + system, from the kernel's
accounting of each child) of `runc-rollout --version`, `--help`, a command's `--help` and a few
small commands, beside `python -c pass` measured in the same run (the interpreter's own start,
which no command can go under).

Each command runs `--repeat` times, interleaved with the baseline so a moment of load on a
shared machine falls on both; the table shows the median CPU and wall time, the CPU ratio to the
baseline, and the target. Target: `--version` and `--help` under 0.25 s of CPU.

    python bench/startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_CPU = 0.25  # seconds, for --version and --help


def measure(argv: list[str]) -> tuple[float, float]:
    """CPU seconds (user + system) and wall seconds of one child process, which must exit 0."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{argv} failed: {stderr.strip()[-400:]}")
    if proc.stderr:
        proc.stderr.close()
    return usage.ru_utime + usage.ru_stime, wall


def small_plan(workdir: Path, command: str) -> tuple[list[str], list[str]]:
    """The arguments of `plan` on a 10-host inventory, and of `verify-plan` on its plan."""
    inventory = workdir / "hosts.ini"
    inventory.write_text(
        "[web]\n" + "".join(f"web{n} ansible_host=10.0.0.{n}\n" for n in range(1, 11))
    )
    artifact = workdir / "runc"
    artifact.write_text("#!/bin/sh\necho 'runc version 1.1.12'\n")
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    plan_file = workdir / "plan.json"
    plan = [command, "plan", "-i", str(inventory), "--runc", str(artifact), "--sha256", digest]
    plan += ["--runc-version", "1.1.12", "-o", str(plan_file), "--format", "json"]
    subprocess.run(plan, check=True, capture_output=True)
    return plan, [command, "verify-plan", str(plan_file)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="runs per command (the median)")
    args = parser.parse_args()
    command = str(Path(sys.executable).parent / "runc-rollout")
    if not Path(command).exists():
        command = shutil.which("runc-rollout") or sys.exit("runc-rollout is not installed")
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        plan, verify = small_plan(Path(tmp), command)
        cases: list[tuple[str, list[str], bool]] = [
            ("--version", [command, "--version"], True),
            ("--help", [command, "--help"], True),
            ("status --help", [command, "status", "--help"], False),
            ("plan --help", [command, "plan", "--help"], False),
            ("advisories", [command, "advisories"], False),
            ("verify-plan (10 hosts)", verify, False),
            ("plan (10 hosts)", plan, False),
        ]
        baseline_argv = [sys.executable, "-c", "pass"]
        baseline: list[tuple[float, float]] = []
        results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in cases}
        load = " ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"start: load {load}; {args.repeat} runs each, medians")
        for _ in range(args.repeat):
            for name, argv, _ in cases:
                baseline.append(measure(baseline_argv))
                results[name].append(measure(argv))
    base_cpu = statistics.median(cpu for cpu, _ in baseline)
    base_wall = statistics.median(wall for _, wall in baseline)
    print(f"{'command':<24} {'cpu s':>7} {'wall s':>7} {'x python -c pass':>17} {'target':>14}")
    print(f"{'python -c pass':<24} {base_cpu:>7.3f} {base_wall:>7.3f} {1.0:>16.1f}x {'':>14}")
    for name, _, targeted in cases:
        cpu = statistics.median(value for value, _ in results[name])
        wall = statistics.median(value for _, value in results[name])
        target = ""
        if targeted:
            target = f"< {TARGET_CPU:.2f} {'ok' if cpu < TARGET_CPU else 'MISSED'}"
        print(f"{name:<24} {cpu:>7.3f} {wall:>7.3f} {cpu / base_cpu:>16.1f}x {target:>14}")
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"end: load {load}")


if __name__ == "__main__":
    main()
