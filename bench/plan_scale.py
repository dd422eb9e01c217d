"""Planning speed and memory at 1k, 10k and 100k hosts, beside `ansible-inventory --list`.

Generates the same inventory in 4 zones as INI and as YAML for each size, in two shapes:
`shared`, where hosts carry a user and one of 40 racks (40 distinct variable sets), and
`per-host`, where every host has variables of its own (its `ansible_host` address, its rack,
its serial number), as nearly every real inventory does. Then it runs `runc-rollout plan`
(3 times: the median) and `ansible-inventory --list` (once) on the same file as separate
processes, and prints wall time, CPU time, peak RSS and the ratios (time ratios of wall time
and of CPU time; on a shared machine the CPU ratio is the steadier one), with the load
average before and after. Targets: at 100k hosts, plan takes at most 1/20
of ansible-inventory's time and 1/4 of its memory, on either format and either shape.

    python bench/plan_scale.py [--sizes 1000,10000,100000] [--formats ini,yaml]
                               [--shapes shared,per-host] [--skip-ansible]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZONES = ("zone-a", "zone-b", "zone-c", "zone-d")


def host_vars(zone: str, n: int, shape: str) -> dict[str, str]:
    """A host's own variables: `shared`, a user and one of 40 racks; `per-host`, also an
    address, a rack of 40 hosts and a serial number that no other host has."""
    if shape == "shared":
        return {"ansible_user": "root", "rack": f"r{n % 40:02d}"}
    zone_index = ZONES.index(zone)
    return {
        "ansible_host": f"10.{zone_index * 64 + n // 65536}.{n // 256 % 256}.{n % 256}",
        "ansible_user": "root",
        "rack": f"{zone}-r{n // 40:04d}",
        # (not `serial`: Ansible warns of that reserved name, once per host)
        "serial_number": f"SN{(n * 2654435761 + zone_index) % 10**10:010d}",
    }


def write_inventory(directory: Path, hosts: int, fmt: str, shape: str = "shared") -> Path:
    """`hosts` hosts in 4 zone groups under `workers`, each with the variables of `shape`."""
    per_zone = hosts // len(ZONES)
    zones = [
        (zone, zone.replace("-", "_"), per_zone + (1 if index < hosts % len(ZONES) else 0))
        for index, zone in enumerate(ZONES)
    ]
    lines: list[str] = []
    if fmt == "ini":
        for zone, group, count in zones:
            lines.append(f"[{group}]")
            for n in range(count):
                variables = " ".join(f"{k}={v}" for k, v in host_vars(zone, n, shape).items())
                lines.append(f"node-{zone[-1]}{n:06d}.bench.invalid {variables}")
            lines += ["", f"[{group}:vars]", f"zone={zone}", ""]
        lines += ["[workers:children]", *[group for _, group, _ in zones], ""]
    else:
        lines += ["all:", "  children:", "    workers:", "      children:"]
        for zone, group, count in zones:
            lines += [f"        {group}:", "          hosts:"]
            for n in range(count):
                lines.append(f"            node-{zone[-1]}{n:06d}.bench.invalid:")
                lines += [f"              {k}: {v}" for k, v in host_vars(zone, n, shape).items()]
            lines += ["          vars:", f"            zone: {zone}"]
        lines.append("")
    path = directory / f"fleet-{shape}-{hosts}.{'ini' if fmt == 'ini' else 'yml'}"
    path.write_text("\n".join(lines))
    return path


def measure(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds (user + system) of one child process."""
    # stderr to a file, not a pipe: a child warning once per host would fill a pipe nobody
    # reads until it exits, and block for ever.
    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            stderr.seek(0)
            text = stderr.read().decode(errors="replace")
            raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {text.strip()[-400:]}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def measure_plan(argv: list[str], runs: int) -> tuple[float, float, float]:
    """The median wall and CPU time of `runs` plans (a few seconds each, so a moment of load
    on a shared machine does not decide the ratio) and the largest peak RSS."""
    results = [measure(argv) for _ in range(runs)]
    return (
        statistics.median(wall for wall, _, _ in results),
        max(mib for _, mib, _ in results),
        statistics.median(cpu for _, _, cpu in results),
    )


def load() -> str:
    return "load " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--formats", default="ini,yaml")
    parser.add_argument("--shapes", default="shared,per-host", help="variables: shared, per-host")
    parser.add_argument("--skip-ansible", action="store_true")
    parser.add_argument("--plan-runs", type=int, default=3, help="plans per row (median)")
    args = parser.parse_args()
    runc = shutil.which("runc") or "/usr/sbin/runc"
    ansible = shutil.which("ansible-inventory")
    if ansible is None and not args.skip_ansible:
        raise SystemExit("ansible-inventory is not on PATH (pip install ansible-core)")
    with tempfile.TemporaryDirectory(prefix="plan-scale-") as tmp:
        workdir = Path(tmp)
        artifact = workdir / "runc"
        shutil.copy(runc, artifact)
        digest = subprocess.run(
            ["sha256sum", str(artifact)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        print(f"start: {load()}")
        header = (
            f"{'format':>6} {'vars':>8} {'hosts':>7} {'plan s (cpu)':>13} {'plan MiB':>9} "
            f"{'ansible s (cpu)':>16} {'ansible MiB':>12} {'time ratio':>11} {'cpu ratio':>10} "
            f"{'mem ratio':>10}"
        )
        print(header)
        cases = [
            (fmt, shape, int(size))
            for shape in args.shapes.split(",")
            for fmt in args.formats.split(",")
            for size in args.sizes.split(",")
        ]
        for fmt, shape, hosts in cases:
            inventory = write_inventory(workdir, hosts, fmt, shape)
            plan_argv = [
                str(Path(sys.executable).parent / "runc-rollout"), "plan", "-i",
                str(inventory), "--runc", str(artifact), "--sha256", digest,
                "--domain-key", "zone", "--max-per-domain", "25%", "--waves", "1,1%,10%,25%",
                "-o", str(workdir / "plan.json"), "--format", "json",
            ]  # fmt: skip
            plan_s, plan_mib, plan_cpu = measure_plan(plan_argv, args.plan_runs)
            row = (
                f"{fmt:>6} {shape:>8} {hosts:>7} {plan_s:>6.2f} ({plan_cpu:>4.2f}) {plan_mib:>9.0f}"
            )
            if ansible is None or args.skip_ansible:
                print(row, flush=True)
            else:
                ans_s, ans_mib, ans_cpu = measure([ansible, "-i", str(inventory), "--list"])
                print(
                    f"{row} {ans_s:>7.2f} ({ans_cpu:>6.2f}) {ans_mib:>12.0f} "
                    f"{plan_s / ans_s:>10.3f}x {plan_cpu / ans_cpu:>9.3f}x "
                    f"{plan_mib / ans_mib:>9.3f}x",
                    flush=True,
                )
            inventory.unlink()  # (a 100k-host file is tens of MB)
        print(f"end: {load()}")


if __name__ == "__main__":
    main()
