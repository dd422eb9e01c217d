"""Planning speed and memory at 1k, 10k and 100k hosts, beside `ansible-inventory --list`.

Generates an INI inventory in 4 zones for each size, then runs `runc-rollout plan` and
`ansible-inventory --list` on the same file as separate processes and prints wall time, peak RSS
and the ratio of each. Targets (issue 2): at 100k hosts, plan takes at most 1/20 of
ansible-inventory's time and 1/4 of its memory.

    python bench/plan_scale.py [--sizes 1000,10000,100000] [--skip-ansible]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZONES = ("zone-a", "zone-b", "zone-c", "zone-d")


def write_inventory(directory: Path, hosts: int) -> Path:
    path = directory / f"fleet-{hosts}.ini"
    lines: list[str] = []
    per_zone = hosts // len(ZONES)
    for index, zone in enumerate(ZONES):
        group = zone.replace("-", "_")
        count = per_zone + (1 if index < hosts % len(ZONES) else 0)
        lines.append(f"[{group}]")
        lines += [
            f"node-{zone[-1]}{n:06d}.bench.invalid ansible_user=root rack=r{n % 40:02d}"
            for n in range(count)
        ]
        lines += ["", f"[{group}:vars]", f"zone={zone}", ""]
    lines += ["[workers:children]", *[zone.replace("-", "_") for zone in ZONES], ""]
    path.write_text("\n".join(lines))
    return path


def measure(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {stderr.strip()[-400:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--skip-ansible", action="store_true")
    args = parser.parse_args()
    runc = shutil.which("runc") or "/usr/sbin/runc"
    with tempfile.TemporaryDirectory(prefix="plan-scale-") as tmp:
        workdir = Path(tmp)
        artifact = workdir / "runc"
        shutil.copy(runc, artifact)
        digest = subprocess.run(
            ["sha256sum", str(artifact)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        header = (
            f"{'hosts':>7} {'plan s':>8} {'plan MiB':>9} {'ansible s':>10} {'ansible MiB':>12} "
            f"{'time ratio':>11} {'mem ratio':>10}"
        )
        print(header)
        for hosts in (int(size) for size in args.sizes.split(",")):
            inventory = write_inventory(workdir, hosts)
            plan_argv = [
                str(Path(sys.executable).parent / "runc-rollout"), "plan", "-i", str(inventory),
                "--runc", str(artifact), "--sha256", digest, "--domain-key", "zone",
                "--max-per-domain", "25%", "--waves", "1,1%,10%,25%",
                "-o", str(workdir / "plan.json"), "--format", "json",
            ]  # fmt: skip
            plan_s, plan_mib = measure(plan_argv)
            if args.skip_ansible:
                print(f"{hosts:>7} {plan_s:>8.2f} {plan_mib:>9.0f}")
                continue
            ansible = shutil.which("ansible-inventory")
            if ansible is None:
                raise SystemExit("ansible-inventory is not on PATH (pip install ansible-core)")
            ans_s, ans_mib = measure([ansible, "-i", str(inventory), "--list"])
            print(
                f"{hosts:>7} {plan_s:>8.2f} {plan_mib:>9.0f} {ans_s:>10.2f} {ans_mib:>12.0f} "
                f"{plan_s / ans_s:>10.3f}x {plan_mib / ans_mib:>9.3f}x"
            )


if __name__ == "__main__":
    main()
