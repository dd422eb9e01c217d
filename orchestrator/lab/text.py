"""The lab's command-line text: `lab up`, `lab status` and `lab down` reports."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

from orchestrator.lab import hostdef, rc93
from orchestrator.lab.procs import file_sha256
from orchestrator.lab.records import HostRecord, LabDownReport, LabHost, LabHostStatus, LabInfo
from orchestrator.util.textsafe import markdown_text, terminal_safe

# ---------------------------------------------------------------------------------------------
# Text for the command line


def next_commands(info: LabInfo) -> list[str]:
    first = info.hosts[0]
    inventory = info.inventory_path
    with contextlib.suppress(ValueError):
        inventory = inventory.relative_to(Path.cwd())
    ssh = (
        f"ssh -i {info.private_key} -o UserKnownHostsFile={info.known_hosts} "
        f"-o StrictHostKeyChecking=yes root@{first.address}"
    )
    commands = [
        f"{ssh} runc --version",
        "runc-rollout lab status",
        f"ansible -i {inventory} all -m ping",
    ]
    if any(h.kind == "full" for h in info.hosts):
        full = next(h for h in info.hosts if h.kind == "full")
        commands.append(
            f"{ssh.replace(first.address, full.address)} docker run --rm --network none "
            f"--security-opt no-new-privileges {hostdef.VERIFY_IMAGE} {hostdef.VERIFY_COMMAND}"
        )
    sha = file_sha256(hostdef.DEBIAN_RUNC) or "SHA256"
    commands += [
        f"mkdir -p artifacts && cp {hostdef.DEBIAN_RUNC} artifacts/runc",
        f"runc-rollout plan -i {inventory} --runc artifacts/runc --sha256 {sha} "
        "--domain-key zone --max-per-domain 1",
        "runc-rollout lab down",
    ]
    return commands


def kinds_text(hosts: list[HostRecord] | list[LabHost]) -> str:
    """'2 full' or '2 full, 1 containerd-only' (', 1 busybox, 1 with a read-only runc')."""
    text = f"{sum(h.kind == 'full' for h in hosts)} full"
    ctr_only = sum(h.kind == "containerd" for h in hosts)
    text = f"{text}, {ctr_only} containerd-only" if ctr_only else text
    busybox, read_only = sum(h.busybox for h in hosts), sum(h.read_only_runc for h in hosts)
    text += f", {busybox} busybox" if busybox else ""
    return text + (f", {read_only} with a read-only runc" if read_only else "")


def format_up(info: LabInfo) -> str:
    kinds = kinds_text(info.hosts)
    head = (
        f"lab already running: {len(info.hosts)} hosts ({kinds})"
        if info.already_running
        else f"lab up: {len(info.hosts)} hosts ({kinds}) in {info.seconds:.1f}s, "
        f"{info.rss_bytes / 2**20:.0f} MiB RSS ({info.pss_bytes / 2**20:.0f} MiB PSS)"
    )
    first, last = info.hosts[0].address, info.hosts[-1].address
    lines = [
        head,
        f"hosts:       lab-* on {first}..{last} port 22 (zone-a, zone-b)",
        f"inventory:   {info.inventory_path}",
        f"ssh key:     {info.private_key}",
        f"known_hosts: {info.known_hosts}",
        f"state:       {info.state_dir}",
        f"runc:        {rc93.VERSION} (Debian's 1.1.5 source, rc93's pipe hang) {info.rc93}",
    ]
    if info.stuck is not None:
        seed = info.stuck
        lines.append(
            f"stuck:       {seed.host} container {seed.container}: runc init PID {seed.pid} hung "
            f"writing its seccomp pipe (trigger uid {seed.uid}); `runc-rollout unstick` frees it"
        )
    lines += [
        "next:",
        *(f"  {command}" for command in info.next_commands),
    ]
    return "\n".join(lines)


STATUS_HEADER = ["HOST", "ADDRESS", "ZONE", "KIND", "SSHD", "CONTAINERD", "DOCKERD", "SYSCTL"]
STATUS_HEADER += ["RUNC", "SHA256", "HUNG"]


def status_cells(row: LabHostStatus) -> list[str]:
    """A host's row of `lab status` (the runc version as the host reports it: data)."""

    def flag(value: bool | None) -> str:
        return "-" if value is None else ("up" if value else "DOWN")

    version = row.runc_version or ("?" if row.holder else "(host down)")
    return [
        row.name,
        row.address,
        row.zone,
        row.kind,
        flag(row.sshd),
        flag(row.containerd),
        flag(row.dockerd),
        "?" if row.sysctl is None else str(row.sysctl),
        terminal_safe(version.removeprefix("runc version ")),
        (row.runc_sha256 or "?")[:12],
        "-" if row.hung is None else (",".join(map(str, row.hung)) or "0"),
    ]


def format_status(rows: list[LabHostStatus]) -> str:
    if not rows:
        return "no lab running"
    table = [STATUS_HEADER, *map(status_cells, rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(STATUS_HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def status_markdown(rows: list[LabHostStatus]) -> str:
    if not rows:
        return "No lab running."
    lines = ["| " + " | ".join(STATUS_HEADER).lower() + " |", "|---" * len(STATUS_HEADER) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(map(markdown_text, status_cells(row))) + " |")
    return "\n".join(lines)


def status_json(rows: list[LabHostStatus]) -> str:
    """Every host's status as the lab measured it (an empty list: no lab)."""
    return json.dumps([dataclasses.asdict(row) for row in rows], indent=2)


def format_down(report: LabDownReport) -> str:
    if not report.found:
        removed = f"; removed {', '.join(report.removed)}" if report.removed else ""
        return f"no lab in {report.state_dir}{removed}"
    lines = [
        f"lab down: stopped {report.stopped} processes in {report.seconds:.1f}s; "
        f"removed {', '.join(report.removed)}"
    ]
    lines += [f"warning: {warning}" for warning in report.warnings]
    return "\n".join(lines)
