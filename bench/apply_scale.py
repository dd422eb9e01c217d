"""Apply speed: one wave over the light lab hosts, SSH and Ansible backends beside a floor.

Brings up a lab (`--hosts 50 --docker 2` by default) in a temporary state directory, plans one
wave over its light hosts, and at each concurrency times, from the same starting state (the light
hosts are reset before every run):

- floor:   a plain shell script per host doing, one command each, the steps the SSH backend
           did before it batched them, for a light host (the same host-side scripts, from
           host/commands.py, the incident probe, and the upload: 21 commands and a `cat` over
           OpenSSH with ControlMaster), run `xargs -P CONCURRENCY` at a time;
- ssh:     `runc-rollout apply PLAN --executor ssh --concurrency N`;
- ansible: `runc-rollout apply PLAN --executor ansible --concurrency N`;
- ssh+bastion, ansible+bastion: the same behind one bastion (`orchestrator.lab.bastion`: the
           hosts answer only through it), reached with ProxyJump from an ssh_config given by
           `-F` in the inventory's ssh arguments.
- ssh-tty: the ssh run on a pseudo-terminal (util-linux `script`), so with the live view.
- ansible+exec: the ansible run with two execution nodes, the full hosts lab-01 (zone-a) and
           lab-02 (zone-b), each running `ansible-runner worker` over ssh for its zone's light
           hosts (`--execution-node`, a plan with `--domain-key zone`). Controller CPU is this
           side only (apply, transmit/process, the ssh clients); the nodes' CPU (their workers
           and everything under them) is measured on the nodes and printed beside it.

Every run must leave every light host on the new runc. Prints wall time, the controller's CPU
(user+system of this process's children: the hosts' own work is not counted) and the ratios to
the floor. Targets: ssh at or under 0.8x the floor, ansible at or under 1.5x.

    python bench/apply_scale.py [--hosts 50] [--docker 2] [--concurrency 8,16,48]
        [--backends floor,ssh,ansible,ssh-tty,ssh+bastion,ansible+bastion,ansible+exec]
        [--rounds 1]
        [--first-address 127.0.210.11] [--keep]
        [--state-dir DIR --inventory FILE]  (reuse a lab that is already up)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from orchestrator.backends.ssh.executor import remote_command
from orchestrator.host import commands, probe
from orchestrator.host.facts import facts_script
from orchestrator.lab.bastion import Bastion, bastion_down, bastion_up
from orchestrator.lab.fleet import lab_down, lab_reset, lab_status, lab_up
from orchestrator.lab.records import LabInfo
from orchestrator.models import HostRecord, PlannedHost
from orchestrator.run.engine import load_plan

INCIDENT_FILE = "/etc/sysctl.d/90-runc-incident.conf"
RUNC = "/usr/local/sbin/runc"


def run(argv: list[str], stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({done.returncode}): {done.stderr.strip()[-600:]}")


def floor_script(host: PlannedHost, artifact: Path, sha: str, work: Path) -> Path:
    """The SSH backend's commands for one light host, as a plain shell script over OpenSSH."""
    name, target = host.name, host.ssh
    before = host.before.runc_sha256 if host.before else "0" * 64
    staged = commands.staging_path(RUNC, "floor")
    record = HostRecord(
        run_id="floor",
        plan_id="floor",
        phase="backed_up",
        runc_path=RUNC,
        before_sha256=before,
        target_sha256=sha,
        sysctl_target=16384,
        updated=time.time(),
    ).model_dump_json(indent=2)
    record_file = work / f"{name}.record.json"
    record_file.write_text(record)
    facts = facts_script("0123456789abcdef")
    spec = host.verify
    steps: list[tuple[commands.HostCommand | None, str]] = [
        (commands.HostCommand("facts", facts, 60), "/dev/null"),
        (commands.lock("floor"), "/dev/null"),
        (None, str(artifact)),  # the upload
        (commands.check_staged(staged, sha, 60), "/dev/null"),
        (commands.backup_binary(RUNC, before), "/dev/null"),
        (commands.write_record(record), str(record_file)),
        (commands.swap(staged, RUNC, sha), "/dev/null"),
        (commands.write_record(record), str(record_file)),
        (commands.runc_version(RUNC, 30), "/dev/null"),
        (commands.HostCommand("facts", facts, 60), "/dev/null"),
        (
            probe.probe(
                "bundle",
                RUNC,
                uid=spec.probe_uid,
                timeout=spec.probe_timeout_seconds,
                run_id="floor",
                holds_lock=True,
            ),
            "/dev/null",
        ),
        (commands.verify_runc_bundle(RUNC, "floor", 60), "/dev/null"),
        (commands.HostCommand("facts", facts, 60), "/dev/null"),
        (commands.write_record(record), str(record_file)),
        (commands.HostCommand("facts", facts, 60), "/dev/null"),
        (commands.set_sysctl(16384, [INCIDENT_FILE]), "/dev/null"),
        *[(commands.write_record(record), str(record_file))] * 3,
        (commands.unlock("floor"), "/dev/null"),
    ]
    ssh = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPath={work}/{name}.ctl",
        "-o",
        "ControlPersist=60",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={target.known_hosts_file}",
        "-i",
        str(target.private_key_file),
        f"{target.user or 'root'}@{target.address}",
    ]
    prefix = shlex.join(ssh)
    lines = ["#!/bin/sh", "set -e", f"exec 2>>{shlex.quote(str(work / (name + '.err')))}"]
    for command, stdin in steps:
        if command is None:
            remote = f"cat > {shlex.quote(staged)} && chmod 0700 {shlex.quote(staged)}"
        else:
            remote = remote_command(command.script, command.timeout, sudo=False)
        lines.append(f"{prefix} {shlex.quote(remote)} < {shlex.quote(stdin)} > /dev/null")
    lines.append(f"{prefix} -O exit 2>/dev/null || true")
    path = work / f"{name}.sh"
    path.write_text("\n".join(lines) + "\n")
    return path


def bastion_inventory(inventory: Path, bastion: Bastion, work: Path) -> Path:
    """The lab's inventory with every host on its inner address, through the bastion."""
    config = work / "bastion_ssh_config"
    config.write_text(
        f"Host bastion\n  HostName {bastion.address}\n  User root\n"
        f"  IdentityFile {bastion.private_key}\n  UserKnownHostsFile {bastion.known_hosts}\n"
    )
    document = yaml.safe_load(inventory.read_text())
    for group in document["all"]["children"].values():
        for name, variables in (group.get("hosts") or {}).items():
            if name in bastion.inner and isinstance(variables, dict):
                variables["ansible_host"] = bastion.inner[name]
                variables["ansible_ssh_common_args"] = (
                    f"-F {config} -J bastion -o UserKnownHostsFile={bastion.known_hosts}"
                )
    path = work / "hosts-bastion.yml"
    path.write_text(yaml.safe_dump(document))
    return path


# Runs the worker, then adds the CPU it and its children used to the file named first.
NODE_CPU = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[2:], check=False)\n"
    "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1], 'a').write(f'{usage.ru_utime + usage.ru_stime}\\n')\n"
)


def node_options(info: LabInfo, work: Path) -> list[str]:
    """`--execution-node` for zone-a and zone-b: the first full host of each, over ssh."""
    options = []
    venv = Path(sys.executable).parent
    for zone in ("zone-a", "zone-b"):
        node = next(h for h in info.hosts if h.kind == "full" and h.zone == zone)
        worker = [
            "env", f"PATH={venv}:/usr/sbin:/usr/bin:/sbin:/bin", sys.executable, "-c", NODE_CPU,
            str(work / "node-cpu"), str(venv / "ansible-runner"), "worker",
        ]  # fmt: skip
        ssh = [
            "ssh", "-i", str(info.private_key), "-o", f"UserKnownHostsFile={info.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-F", "/dev/null",
            f"root@{node.address}", shlex.join(worker),
        ]  # fmt: skip
        options += ["--execution-node", f"{zone}={shlex.join(ssh)}"]
    return options


def node_cpu(work: Path) -> float:
    """The nodes' CPU since the last call (their workers append to work/node-cpu)."""
    path = work / "node-cpu"
    if not path.exists():
        return 0.0
    total = sum(float(line) for line in path.read_text().split())
    path.unlink()
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--docker", type=int, default=2)
    parser.add_argument("--concurrency", default="8,16,48")
    parser.add_argument("--backends", default="floor,ssh,ansible")
    parser.add_argument("--rounds", type=int, default=1, help="Runs of each; the median counts.")
    parser.add_argument("--first-address", default="127.0.210.11")
    parser.add_argument("--keep", action="store_true", help="Leave the lab up afterwards.")
    parser.add_argument("--state-dir", type=Path, help="Lab state (default: a temporary one).")
    parser.add_argument("--inventory", type=Path, help="The lab's inventory (default: beside).")
    args = parser.parse_args()
    backends = args.backends.split(",")
    work = Path(tempfile.mkdtemp(prefix="runc-rollout-bench-"))
    state_dir = args.state_dir or work / "lab"
    inventory = args.inventory or work / "hosts.yml"
    info = lab_up(
        args.hosts,
        args.docker,
        state_dir=state_dir,
        inventory_path=inventory,
        first_address=args.first_address,
    )
    bastion: Bastion | None = None
    try:
        light = [host.name for host in info.hosts if host.kind == "light"]
        artifact = work / "runc"
        shutil.copy("/usr/sbin/runc", artifact)
        sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
        lab_reset(state_dir, light)
        cli = [str(Path(sys.executable).parent / "runc-rollout")]
        plans = {
            "direct": work / "plan.json",
            "bastion": work / "plan-bastion.json",
            "exec": work / "plan-exec.json",
        }
        sources = {"direct": inventory}
        if "ansible+exec" in backends:
            sources["exec"] = inventory
        if any(backend.endswith("+bastion") for backend in backends):
            address = args.first_address.rsplit(".", 1)[0] + ".10"
            hosts = [host for host in info.hosts if host.kind == "light"]
            bastion = bastion_up(info, hosts, address, work / "bastion")
            sources["bastion"] = bastion_inventory(inventory, bastion, work)
        for route, source in sources.items():
            zones = ["--domain-key", "zone"] if route == "exec" else []  # the nodes' split
            run(
                [*cli, "plan", "-i", str(source), "--limit", "lab_light", "--runc", str(artifact),
                 "--sha256", sha, "--gather", "--waves", "100%", "-o", str(plans[route]), *zones]
            )  # fmt: skip
        print(f"{len(light)} light hosts, one wave; {os.cpu_count()} CPUs", flush=True)
        results: dict[tuple[str, int], tuple[float, float]] = {}
        runs_of: dict[tuple[str, int], list[tuple[float, float]]] = {}
        rounds = [(c, r) for c in map(int, args.concurrency.split(",")) for r in range(args.rounds)]
        for concurrency, round_ in rounds:
            for backend in backends:
                lab_reset(state_dir, light)
                runs = work / f"runs-{backend}-{concurrency}-{round_}"
                scripts = work / f"floor-{concurrency}-{round_}"
                route = backend.partition("+")[2] if "+" in backend else "direct"
                plan = plans[route]
                if backend == "floor":
                    scripts.mkdir()
                    for host in load_plan(plan).hosts:
                        floor_script(host, artifact, sha, scripts)
                cpu, started = children_cpu(), time.perf_counter()
                if backend == "floor":
                    listing = "\n".join(str(p) for p in sorted(scripts.glob("*.sh"))) + "\n"
                    run(["xargs", "-P", str(concurrency), "-n", "1", "sh"], listing)
                else:
                    executor = backend.partition("+")[0].removesuffix("-tty")
                    apply = [*cli, "apply", str(plan), "--yes", "--executor", executor]
                    apply += ["--concurrency", str(concurrency), "--runs-dir", str(runs)]
                    if backend == "ansible+exec":
                        apply += node_options(info, work)
                    if backend.endswith("-tty"):  # stderr a terminal: the live view
                        apply = ["script", "-qfec", shlex.join(apply), "/dev/null"]
                    run(apply)
                wall, cpu = time.perf_counter() - started, children_cpu() - cpu
                nodes = node_cpu(work)
                status = lab_status(state_dir)
                wrong = [h.name for h in status if h.name in light and h.runc_sha256 != sha]
                if wrong:
                    raise SystemExit(f"{backend} at {concurrency}: not upgraded: {wrong}")
                runs_of.setdefault((backend, concurrency), []).append((wall, cpu))
                print(f"  {backend:8} concurrency {concurrency:3}: {wall:6.1f} s wall, "
                      f"{cpu:6.1f} s controller CPU"
                      + (f", {nodes:.1f} s on the nodes" if nodes else ""), flush=True)  # fmt: skip
        for key, measured in runs_of.items():
            results[key] = sorted(measured)[len(measured) // 2]
        print_table(results, backends)
    finally:
        if bastion is not None:
            bastion_down(bastion)
        lab_reset(state_dir, None)
        if not args.keep:
            lab_down(state_dir, inventory)
            shutil.rmtree(work, ignore_errors=True)


def print_table(results: dict[tuple[str, int], tuple[float, float]], backends: list[str]) -> None:
    concurrencies = sorted({concurrency for _, concurrency in results})
    header = "| concurrency | " + " | ".join(f"{b} wall (CPU)" for b in backends)
    others = [b for b in backends if b != "floor"]  # each beside the floor
    if "floor" in backends:
        header += " | " + " | ".join(f"{b} / floor" for b in others)
    print("\n" + header + " |")
    print("|" + "---|" * (1 + len(backends) + (len(others) if "floor" in backends else 0)))
    for concurrency in concurrencies:
        cells = [f"{results[(b, concurrency)][0]:.1f} s ({results[(b, concurrency)][1]:.0f} s)"
                 for b in backends]  # fmt: skip
        if "floor" in backends:
            floor = results[("floor", concurrency)][0]
            cells += [f"{results[(b, concurrency)][0] / floor:.1f}x" for b in others]
        print(f"| {concurrency} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
