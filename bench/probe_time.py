"""The incident probe's cost: its time per host on each path, and what it adds to apply.

Brings up a small lab (2 full hosts, 2 light) in a temporary state directory, then:

- per path (docker, containerd, bundle), `--repeat` probes of Debian's runc 1.1.5 (a pass), each
  timed end to end over SSH (the host script, the pipe holder, the container) and as the script
  itself reports the container's time; one probe of the lab's rc93 build per path (a hang: its
  time is the probe timeout by design);
- apply of Debian's runc over the whole lab (one wave) with the probe and with `--no-probe`,
  from the same state each time (hosts reset), `--repeat` times each: the difference per host.

    python bench/probe_time.py [--repeat 5] [--timeout 10] [--first-address 127.0.230.11]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.host.facts import gather_facts
from orchestrator.host.procedure import run_probe
from orchestrator.inventory.read import load_inventory
from orchestrator.lab.fleet import lab_down, lab_reset, lab_up
from orchestrator.lab.rc93 import ensure_rc93_runc
from orchestrator.models import VerifySpec, WaveOptions
from orchestrator.plan.planner import host_verify_spec, ssh_target

CLI = str(Path(sys.executable).parent / "runc-rollout")
PROBED_RUNC = "/usr/local/sbin/runc-probed"  # each host's copy of the runc under test
RUNTIME_RUNC = "/usr/local/sbin/runc"


def probe_times(
    inventory: Path, runc: Path, repeat: int, timeout: float
) -> dict[str, list[tuple[float, float | None, str]]]:
    """(wall seconds, reported seconds, outcome) of each probe, by path."""
    loaded = load_inventory([inventory])
    names = sorted(loaded.hosts)
    full = [n for n in names if loaded.hosts[n].vars.get("lab_kind") == "full"]
    light = [n for n in names if loaded.hosts[n].vars.get("lab_kind") == "light"]
    paths = {"docker": full[0], "containerd": full[1], "bundle": light[0]}
    results: dict[str, list[tuple[float, float | None, str]]] = {}
    with SshExecutor() as executor:
        for path, name in paths.items():
            host = loaded.hosts[name]
            session = executor.session(ssh_target(host), name=name)
            session.put(runc, PROBED_RUNC, mode=0o755)
            facts = gather_facts(session)
            if path == "containerd":
                facts = facts.model_copy(update={"dockerd": None})
            spec: VerifySpec = host_verify_spec(host, WaveOptions(probe_timeout=timeout))
            if path == "docker":  # dockerd runs the runtime's runc: the one under test goes there
                swap = f"cp {PROBED_RUNC} {RUNTIME_RUNC}.b && mv {RUNTIME_RUNC}.b {RUNTIME_RUNC}"
                session.run(swap, timeout=30)
            for _ in range(repeat):
                started = time.monotonic()
                result = run_probe(
                    session, facts, PROBED_RUNC, spec, run_id="bench", holds_lock=True
                )
                wall = time.monotonic() - started
                results.setdefault(path, []).append((wall, result.seconds, result.outcome))
            session.close()
    return results


def timed_apply(inventory: Path, artifact: Path, work: Path, *plan_options: str) -> float:
    plan = work / "plan.json"
    sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    argv = [CLI, "plan", "-i", str(inventory), "--runc", str(artifact), "--sha256", sha]
    argv += ["--gather", "--waves", "100%", "-o", str(plan), "--format", "json", *plan_options]
    subprocess.run(argv, check=True, capture_output=True)
    runs = work / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    started = time.monotonic()
    done = subprocess.run([CLI, "apply", str(plan), "--yes", "--runs-dir", str(runs)], check=False,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"apply failed: {done.stderr[-800:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--first-address", default="127.0.230.11")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="probe-bench-"))
    state, inventory = work / "state", work / "hosts.yml"
    try:
        lab_up(4, 2, state_dir=state, inventory_path=inventory, first_address=args.first_address)
        debian = work / "runc-debian"
        shutil.copy2("/usr/sbin/runc", debian)
        rc93 = work / "runc-rc93"
        shutil.copy2(ensure_rc93_runc().path, rc93)

        print("| path | runc | probes | wall per probe (median, max) | container (median) |")
        print("|---|---|---:|---:|---:|")
        for label, runc, repeat in (("1.1.5", debian, args.repeat), ("rc93 build", rc93, 1)):
            for path, rows in probe_times(inventory, runc, repeat, args.timeout).items():
                walls = [wall for wall, _, _ in rows]
                inner = [s for _, s, _ in rows if s is not None]
                outcomes = ",".join(sorted({outcome for _, _, outcome in rows}))
                print(
                    f"| {path} | {label} ({outcomes}) | {len(rows)} | "
                    f"{statistics.median(walls):.2f} s, {max(walls):.2f} s | "
                    f"{statistics.median(inner):.2f} s |"
                )
            lab_reset(state, None)

        with_probe, without = [], []
        for _ in range(args.repeat):
            lab_reset(state, None)
            with_probe.append(timed_apply(inventory, debian, work))
            lab_reset(state, None)
            without.append(timed_apply(inventory, debian, work, "--no-probe"))
        a, b = statistics.median(with_probe), statistics.median(without)
        print(f"\napply, 4 hosts in one wave (concurrency 16), median of {args.repeat}:")
        print(f"with the probe {a:.2f} s, --no-probe {b:.2f} s: the probe adds {a - b:.2f} s to "
              f"the wave (the hosts probe in parallel; ratio {a / b:.2f}x)")  # fmt: skip
    finally:
        lab_down(state, inventory)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
