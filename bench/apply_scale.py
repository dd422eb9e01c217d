"""Apply speed and the controller's cost per host: one wave over the light lab hosts, the SSH
and Ansible backends beside a floor, with each way the new runc can reach the hosts.

Brings up a lab (`--hosts 102 --docker 2` by default: 100 light hosts) in a temporary state
directory, plans one wave over its light hosts, and at each concurrency times, from the same
starting state (the light hosts are reset before every run):

- floor:   the best a careful hand-written script does per host: the SSH backend's five
           batches (the same host-side steps from host/commands.py, incident probe included,
           each batch through the same checked stdin launcher) and its one upload (the gzip,
           made once), over one OpenSSH ControlMaster connection per host, run `xargs -P
           CONCURRENCY` at a time; the ratios are against this one;
- floor-21: the old floor: one OpenSSH command per step as the SSH backend ran them before it
           batched them (21 commands and a `cat` of the runc as it is), same ControlMaster;
- ssh:     `runc-rollout apply PLAN --executor ssh --concurrency N` (the push: gzip);
- ssh+plain: the same with `--push plain` (the artifact as it is, by SFTP);
- ssh+url: a plan with `--artifact-url`: every host fetches the runc from an HTTP server on a
           loopback address (in this process: the mirror, not the controller);
- ansible, ansible+plain, ansible+url: the same three with `--executor ansible`;
- ssh+bastion, ansible+bastion: the same behind one bastion (`orchestrator.lab.bastion`: the
           hosts answer only through it), reached with ProxyJump from an ssh_config given by
           `-F` in the inventory's ssh arguments.
- ssh-tty: the ssh run on a pseudo-terminal (util-linux `script`), so with the live view.
- ansible+exec: the ansible run with two execution nodes, the full hosts lab-01 (zone-a) and
           lab-02 (zone-b), each running `ansible-runner worker` over ssh for its zone's light
           hosts (`--execution-node`, a plan with `--domain-key zone`). Controller CPU is this
           side only (apply, transmit/process, the ssh clients); the nodes' CPU (their workers
           and everything under them) is measured on the nodes and printed beside it.

Every run must leave every light host on the new runc. Prints, per run: wall time, the
controller's CPU (user+system of the command and everything under it: the hosts' own work is
not counted) in all and per host, its peak memory (largest resident process), the bytes it sent
each host (the journal's `sent_bytes`: scripts, records and the runc, not SSH's framing) and the
ratio to the floor. Targets: ssh at or under 0.8x the floor, ansible at or under 1.5x; at most
50 ms of controller CPU per host for ssh.

    python bench/apply_scale.py [--hosts 102] [--docker 2] [--concurrency 16,48]
        [--backends floor,floor-21,ssh,ssh+plain,ssh+url,ansible,ansible+plain,ansible+url,
                    ansible+exec,ssh-tty,ssh+bastion,ansible+bastion]
        [--rounds 1]
        [--first-address 127.0.210.11] [--keep]
        [--state-dir DIR --inventory FILE]  (reuse a lab that is already up)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import http.server
import json
import os
import platform
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator.backends.ssh.session import remote_command
from orchestrator.host import commands, probe
from orchestrator.host.facts import facts_command, facts_script
from orchestrator.host.procedure import probe_uids
from orchestrator.lab.bastion import Bastion, bastion_down, bastion_up
from orchestrator.lab.fleet import lab_down, lab_reset, lab_status, lab_up
from orchestrator.lab.records import LabInfo
from orchestrator.models import HostPhase, HostRecord, PlannedHost, SshTarget
from orchestrator.plan.artifact import packed_artifact
from orchestrator.run.engine import load_plan

INCIDENT_FILE = "/etc/sysctl.d/90-runc-incident.conf"
RUNC = "/usr/local/sbin/runc"
FLOOR_RUN = "floor"  # the floor scripts' run id (lock, staging name, probe uids)


@dataclass(frozen=True)
class Measured:
    wall: float
    cpu: float  # seconds, the command and everything under it
    peak_mib: float  # the largest resident set of the command or any process under it
    sent: float  # mean bytes the controller sent a host (0: not known, as for the floor)


def run(argv: list[str], stdin: str | None = None) -> Measured:
    """Run `argv` to its end; its wall time, CPU and peak memory (refused unless it exits 0)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, text=True
        )
        assert proc.stdin is not None
        if stdin:
            proc.stdin.write(stdin)
        proc.stdin.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            err.seek(0)
            said = err.read().decode(errors="replace").strip()[-600:]
            raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {said}")
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, 0.0)


def sent_per_host(runs: Path) -> float:
    """The mean `sent_bytes` of the run's hosts, from its state file."""
    (state_file,) = runs.glob("*/state.json")
    hosts = json.loads(state_file.read_text())["hosts"].values()
    return sum(int(host.get("sent_bytes") or 0) for host in hosts) / max(len(hosts), 1)


def not_upgraded(state_dir: Path, names: list[str], sha: str) -> list[str]:
    """The lab hosts of `names` whose runc is not the one with `sha` (read on the hosts)."""
    chosen = set(names)
    return [h.name for h in lab_status(state_dir) if h.name in chosen and h.runc_sha256 != sha]


class Mirror:
    """The artifact over HTTP on a loopback address, for the `+url` runs."""

    def __init__(self, directory: Path) -> None:
        def handler(*args: Any) -> http.server.SimpleHTTPRequestHandler:
            return _Quiet(*args, directory=str(directory))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/runc"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def openssh(target: SshTarget, control: Path) -> list[str]:
    """The OpenSSH command line a careful script uses for one host: strict host keys, its key,
    one ControlMaster connection (`control`) shared by every command it runs there."""
    return [
        "ssh", "-F", "/dev/null", "-o", "ControlMaster=auto", "-o", f"ControlPath={control}",
        "-o", "ControlPersist=60", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={target.known_hosts_file}", "-i", str(target.private_key_file),
        f"{target.user or 'root'}@{target.address}",
    ]  # fmt: skip


def floor_record(host: PlannedHost, sha: str, before: str | None = None) -> HostRecord:
    """The host-side record the floor writes (`before`: the old runc's sha256, else the plan's)."""
    before = before or (host.before.runc_sha256 if host.before else "0" * 64)
    return HostRecord(
        run_id=FLOOR_RUN,
        plan_id=FLOOR_RUN,
        phase="backed_up",
        runc_path=RUNC,
        before_sha256=before,
        target_sha256=sha,
        sysctl_target=16384,
        updated=time.time(),
    )


def floor_probe(host: PlannedHost) -> commands.HostCommand:
    """The incident probe a light host runs (through an OCI bundle: it has no daemons), as the
    uid the inventory gives the host (lab hosts share one kernel: each probes as its own)."""
    return probe.probe(
        "bundle",
        RUNC,
        uids=probe_uids(host.verify, FLOOR_RUN),
        timeout=host.verify.probe_timeout_seconds,
        run_id=FLOOR_RUN,
        holds_lock=True,
        machine=platform.machine(),
    )


def floor_script(
    host: PlannedHost, packed: Path, size: int, sha: str, work: Path, before: str | None = None
) -> Path:
    """The best a careful hand-written script does for one light host: the SSH backend's five
    batches and its one upload (the gzip, made once for all hosts), each batch the same steps
    and the same checked launcher, over one OpenSSH ControlMaster connection; a batch whose
    steps did not all pass ends the script (exit 1)."""
    name = host.name
    staged = commands.staging_path(RUNC, FLOOR_RUN)
    record = floor_record(host, sha, before)

    def write(phase: HostPhase, step: str) -> commands.HostCommand:
        json_text = record.model_copy(update={"phase": phase}).model_dump_json(indent=2)
        return dataclasses.replace(commands.write_record(json_text), name=step)

    spec = host.verify
    batches: list[list[commands.HostCommand]] = [
        [facts_command()],
        [
            commands.lock(FLOOR_RUN),
            commands.check_staged(staged, sha, spec.timeout_seconds),
            commands.backup_binary(RUNC, record.before_sha256),
            commands.backup_files([INCIDENT_FILE]),
        ],
        [
            write("backed_up", "record-backed-up"),
            commands.swap(staged, RUNC, sha),
            write("swapped", "record-swapped"),
            commands.runc_version(RUNC, 30),
            *([floor_probe(host)] if spec.probe else []),  # as the plan says: `--no-probe` has none
            commands.verify_runc_bundle(RUNC, FLOOR_RUN, spec.timeout_seconds),
            facts_command(),
        ],
        [write("verified", "record-verified"), commands.set_sysctl(16384, [INCIDENT_FILE])],
        [write("finished", "record"), commands.unlock(FLOOR_RUN)],
    ]
    prefix = shlex.join(openssh(host.ssh, work / f"{name}.ctl"))
    out = shlex.quote(str(work / f"{name}.out"))
    err = shlex.quote(str(work / f"{name}.err"))
    lines = ["#!/bin/sh", "set -e", f"exec 3>&2 2>>{err}", connect(prefix)]
    for index, steps in enumerate(batches):
        nonce = secrets.token_hex(8)
        script = commands.batch(steps, nonce).script.encode()
        batch_file = work / f"{name}.batch{index}"
        batch_file.write_bytes(script)
        launcher = remote_command(commands.stdin_launcher(script), 600, sudo=False)
        lines.append(f"{prefix} {shlex.quote(launcher)} < {shlex.quote(str(batch_file))} > {out}")
        passed = f"$(grep -c '^@@{nonce} rc 0$' {out})"
        said = f"$(tail -c 400 {out} | tr -c '[:print:]' ' ')"
        failed = f'echo "{name}: batch {index} failed: {said}" >&3; exit 1'
        lines.append(f'[ "{passed}" -eq {len(steps)} ] || {{ {failed}; }}')
        if index == 0:  # the upload, once the host is known
            push = commands.push_gzip(staged, packed.stat().st_size, size)
            remote = remote_command(push.script, push.timeout, sudo=False)
            lines.append(f"{prefix} {shlex.quote(remote)} < {shlex.quote(str(packed))} > /dev/null")
    return write_script(work / f"{name}.sh", lines, prefix)


def connect(prefix: str, attempts: int = 5) -> str:
    """The script's line that opens the host's master connection, up to `attempts` tries two
    seconds apart, as the SSH backend tries a connection (a careful script retries too)."""
    return (
        f"for try in $(seq {attempts}); do {prefix} true && break; "
        f'[ "$try" -lt {attempts} ] || exit 1; sleep 2; done'
    )


def write_script(path: Path, lines: list[str], prefix: str) -> Path:
    """A floor script: `lines`, then the host's master connection closed."""
    path.write_text("\n".join([*lines, f"{prefix} -O exit 2>/dev/null || true"]) + "\n")
    return path


def unbatched_floor_script(host: PlannedHost, artifact: Path, sha: str, work: Path) -> Path:
    """The old floor (`floor-21`): one OpenSSH command per step, as the SSH backend ran them
    before it batched them (21 commands and a `cat` of the runc as it is)."""
    name = host.name
    staged = commands.staging_path(RUNC, FLOOR_RUN)
    record = floor_record(host, sha).model_dump_json(indent=2)
    record_file = work / f"{name}.record.json"
    record_file.write_text(record)
    facts = facts_script("0123456789abcdef")
    steps: list[tuple[commands.HostCommand | None, str]] = [
        (commands.HostCommand("facts", facts, 60), "/dev/null"),
        (commands.lock(FLOOR_RUN), "/dev/null"),
        (None, str(artifact)),  # the upload
        (commands.check_staged(staged, sha, 60), "/dev/null"),
        (commands.backup_binary(RUNC, floor_record(host, sha).before_sha256), "/dev/null"),
        (commands.write_record(record), str(record_file)),
        (commands.swap(staged, RUNC, sha), "/dev/null"),
        (commands.write_record(record), str(record_file)),
        (commands.runc_version(RUNC, 30), "/dev/null"),
        (commands.HostCommand("facts", facts, 60), "/dev/null"),
        *([(floor_probe(host), "/dev/null")] if host.verify.probe else []),
        (commands.verify_runc_bundle(RUNC, FLOOR_RUN, 60), "/dev/null"),
        (commands.HostCommand("facts", facts, 60), "/dev/null"),
        (commands.write_record(record), str(record_file)),
        (commands.HostCommand("facts", facts, 60), "/dev/null"),
        (commands.set_sysctl(16384, [INCIDENT_FILE]), "/dev/null"),
        *[(commands.write_record(record), str(record_file))] * 3,
        (commands.unlock(FLOOR_RUN), "/dev/null"),
    ]
    prefix = shlex.join(openssh(host.ssh, work / f"{name}.ctl"))
    lines = ["#!/bin/sh", "set -e", f"exec 2>>{shlex.quote(str(work / (name + '.err')))}"]
    lines.append(connect(prefix))
    for command, stdin in steps:
        if command is None:
            remote = f"cat > {shlex.quote(staged)} && chmod 0700 {shlex.quote(staged)}"
        else:
            remote = remote_command(command.script, command.timeout, sudo=False)
        lines.append(f"{prefix} {shlex.quote(remote)} < {shlex.quote(stdin)} > /dev/null")
    return write_script(work / f"{name}.sh", lines, prefix)


def run_floor(scripts: list[Path], concurrency: int) -> Measured:
    """The floor's scripts, `xargs -P CONCURRENCY` at a time."""
    listing = "".join(f"{path}\n" for path in sorted(scripts))
    return run(["xargs", "-P", str(concurrency), "-n", "1", "sh"], listing)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=102)
    parser.add_argument("--docker", type=int, default=2)
    parser.add_argument("--concurrency", default="16,48")
    parser.add_argument("--backends", default="floor,ssh,ssh+plain,ssh+url,ansible,ansible+url")
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
    mirror: Mirror | None = None
    try:
        light = [host.name for host in info.hosts if host.kind == "light"]
        artifact = work / "runc"
        shutil.copy("/usr/sbin/runc", artifact)
        sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
        lab_reset(state_dir, light)
        cli = [str(Path(sys.executable).parent / "runc-rollout")]
        routes = {backend.partition("+")[2] for backend in backends} - {"plain"}
        sources: dict[str, tuple[Path, list[str]]] = {"": (inventory, [])}
        if "exec" in routes:  # the nodes' split
            sources["exec"] = (inventory, ["--domain-key", "zone"])
        if "url" in routes:
            mirror = Mirror(work)  # serves work/runc
            sources["url"] = (inventory, ["--artifact-url", mirror.url])
        if "bastion" in routes:
            address = args.first_address.rsplit(".", 1)[0] + ".10"
            hosts = [host for host in info.hosts if host.kind == "light"]
            bastion = bastion_up(info, hosts, address, work / "bastion")
            sources["bastion"] = (bastion_inventory(inventory, bastion, work), [])
        plans = {route: work / f"plan-{route or 'direct'}.json" for route in sources}
        for route, (source, extra) in sources.items():
            run(
                [*cli, "plan", "-i", str(source), "--limit", "lab_light", "--runc", str(artifact),
                 "--sha256", sha, "--gather", "--waves", "100%", "-o", str(plans[route]), *extra]
            )  # fmt: skip
        print(f"{len(light)} light hosts, one wave; {os.cpu_count()} CPUs", flush=True)
        runs_of: dict[tuple[str, int], list[Measured]] = {}
        rounds = [(c, r) for c in map(int, args.concurrency.split(",")) for r in range(args.rounds)]
        for concurrency, round_ in rounds:
            for backend in backends:
                lab_reset(state_dir, light)
                runs = work / f"runs-{backend}-{concurrency}-{round_}"
                scripts = work / f"{backend}-{concurrency}-{round_}"
                executor, _, variant = backend.partition("+")
                plan = plans["" if variant == "plain" else variant]
                if backend == "floor":
                    scripts.mkdir()
                    packed = work / "runc.gz"
                    packed.write_bytes(packed_artifact(artifact, sha))
                    size = artifact.stat().st_size
                    made = [
                        floor_script(host, packed, size, sha, scripts)
                        for host in load_plan(plan).hosts
                    ]
                    measured = run_floor(made, concurrency)
                elif backend == "floor-21":
                    scripts.mkdir()
                    made = [
                        unbatched_floor_script(host, artifact, sha, scripts)
                        for host in load_plan(plan).hosts
                    ]
                    measured = run_floor(made, concurrency)
                else:
                    apply = [*cli, "apply", str(plan), "--yes"]
                    apply += ["--executor", executor.removesuffix("-tty")]
                    apply += ["--concurrency", str(concurrency), "--runs-dir", str(runs)]
                    if variant == "plain":
                        apply += ["--push", "plain"]
                    if variant == "exec":
                        apply += node_options(info, work)
                    if executor.endswith("-tty"):  # stderr a terminal: the live view
                        apply = ["script", "-qfec", shlex.join(apply), "/dev/null"]
                    measured = run(apply)
                    measured = dataclasses.replace(measured, sent=sent_per_host(runs))
                nodes = node_cpu(work)
                wrong = not_upgraded(state_dir, light, sha)
                if wrong:
                    raise SystemExit(f"{backend} at {concurrency}: not upgraded: {wrong}")
                runs_of.setdefault((backend, concurrency), []).append(measured)
                per_host = measured.cpu / len(light) * 1000
                print(f"  {backend:15} concurrency {concurrency:3}: {measured.wall:6.1f} s wall, "
                      f"{measured.cpu:6.1f} s controller CPU ({per_host:.0f} ms/host), "
                      f"{measured.peak_mib:.0f} MiB, {measured.sent / 1e6:.2f} MB/host"
                      + (f", {nodes:.1f} s on the nodes" if nodes else ""), flush=True)  # fmt: skip
        results = {key: sorted(m, key=lambda x: x.wall)[len(m) // 2] for key, m in runs_of.items()}
        print_table(results, len(light))
    finally:
        if mirror is not None:
            mirror.close()
        if bastion is not None:
            bastion_down(bastion)
        lab_reset(state_dir, None)
        if not args.keep:
            lab_down(state_dir, inventory)
            shutil.rmtree(work, ignore_errors=True)


def print_table(results: dict[tuple[str, int], Measured], hosts: int) -> None:
    """One row per backend and concurrency, each beside the floor at that concurrency."""
    print(
        "\n| backend | concurrency | wall s | controller CPU s | CPU ms/host | peak MiB "
        "| sent MB/host | wall / floor |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (backend, concurrency), m in sorted(results.items(), key=lambda item: item[0][1]):
        floor = results.get(("floor", concurrency))
        ratio = f"{m.wall / floor.wall:.2f}x" if floor else "-"
        sent = f"{m.sent / 1e6:.2f}" if m.sent else "-"
        print(
            f"| {backend} | {concurrency} | {m.wall:.1f} | {m.cpu:.1f} | "
            f"{m.cpu / hosts * 1000:.0f} | {m.peak_mib:.0f} | {sent} | {ratio} |"
        )


if __name__ == "__main__":
    main()
