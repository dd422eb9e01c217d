"""`runc-rollout plan`: inventory + artifact + wave options -> a plan file and its review."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.options import (
    WAVES_HELP,
    AskBecomePassOption,
    BecomeFromInventoryOption,
    ConcurrencyOption,
    Format,
    KnownHostsOption,
    ProbeTimeoutOption,
)
from orchestrator.cli.support import become_passwords, check_routes, ssh_executor, wave_options
from orchestrator.diagnose.facts_report import (
    before_from_report,
    facts_report,
    gather_fleet,
    read_facts_report,
)
from orchestrator.errors import BadInput
from orchestrator.inventory.read import load_inventory
from orchestrator.models import (
    PIPE_USER_PAGES_SOFT_DEFAULT,
    HostBefore,
)
from orchestrator.plan.artifact import inspect_artifact
from orchestrator.plan.planner import build_plan, hosts_to_plan
from orchestrator.plan.render import plan_json_chunks, plan_markdown, plan_table
from orchestrator.util.fsutil import write_atomic
from orchestrator.util.memory import gc_paused


def plan(
    inventory: Annotated[
        list[Path], typer.Option("-i", "--inventory", help="Ansible inventory file, dir or script.")
    ],
    runc: Annotated[Path, typer.Option("--runc", help="The runc binary to roll out.")],
    sha256: Annotated[str, typer.Option("--sha256", help="Its expected sha256 (required).")],
    runc_version: Annotated[
        str | None,
        typer.Option(
            "--runc-version",
            help="Its runc version (e.g. 1.1.12): each host refuses a staged file that reports "
            "another, and checks it after the swap. Else the version the staged file reports.",
        ),
    ] = None,
    artifact_url: Annotated[
        str | None,
        typer.Option(
            "--artifact-url",
            help="Where hosts fetch the runc themselves (an internal mirror, http or https; "
            "curl or wget on the host). Each host checks the sha256 before anything else and "
            "refuses another file; a host that cannot fetch it gets it pushed.",
        ),
    ] = None,
    run_artifact: Annotated[
        bool,
        typer.Option(
            "--run-artifact",
            help="Run the artifact's --version here, as you, to record its version (off: plan "
            "never executes the file it is given).",
        ),
    ] = False,
    waves: Annotated[str, typer.Option("--waves", help=WAVES_HELP)] = "1,10%,50%,100%",
    limit: Annotated[
        str | None, typer.Option("-l", "--limit", help="Ansible host pattern (a:b, a:&b, a:!b).")
    ] = None,
    domain_key: Annotated[
        str | None,
        typer.Option("--domain-key", help="Host variable naming the failure domain (zone, rack)."),
    ] = None,
    max_per_domain: Annotated[
        str | None,
        typer.Option(
            "--max-per-domain",
            help="At most N hosts, or P% of a domain's hosts (rounded down, at least 1), "
            "of one domain per wave.",
        ),
    ] = None,
    max_failures: Annotated[
        str,
        typer.Option(
            "--max-failures",
            help="Error budget per wave: N hosts or P% of the wave; more failed or unreachable "
            "hosts than that halts the rollout.",
        ),
    ] = "0",
    bake: Annotated[float, typer.Option("--bake", help="Seconds to wait between waves.")] = 0.0,
    pause_after: Annotated[
        int | None, typer.Option("--pause-after", help="Stop after wave N until `resume`.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Shuffle hosts within domains with this seed.")
    ] = None,
    sysctl_target: Annotated[
        int, typer.Option("--sysctl-target", help="Value to restore fs.pipe-user-pages-soft to.")
    ] = PIPE_USER_PAGES_SOFT_DEFAULT,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Where to write the plan file (JSON).")
    ] = Path("plan.json"),
    fmt: Annotated[Format, typer.Option("--format", help="What to print on stdout.")] = (
        Format.table
    ),
    gather: Annotated[
        bool,
        typer.Option(
            "--gather", help="Read each host's facts (read-only) to record its before state."
        ),
    ] = False,
    facts_file: Annotated[
        Path | None, typer.Option("--facts", help="Use facts saved by `facts --format json`.")
    ] = None,
    verify_image: Annotated[
        str | None,
        typer.Option("--verify-image", help="Image of the verification container."),
    ] = None,
    verify_command: Annotated[
        str | None, typer.Option("--verify-command", help="Its command (default: true).")
    ] = None,
    verify_timeout: Annotated[
        float, typer.Option("--verify-timeout", help="Hard timeout of each verification.")
    ] = 60.0,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe/--no-probe",
            help="After the swap, run the incident's own trigger (a no-new-privileges container "
            "as a probe uid over fs.pipe-user-pages-soft, with a seccomp program over 8 KiB): "
            "rc93 hangs, a fixed runc passes. --no-probe: for hosts where starting such a "
            "container is not allowed; the plan then says the fix is NOT proven.",
        ),
    ] = True,
    probe_timeout: ProbeTimeoutOption = 20.0,
    verify_exec_container: Annotated[
        str | None,
        typer.Option(
            "--verify-exec-container",
            help="The running container `docker exec` proves the new runc in (else each host's "
            "runc_rollout_verify_exec_container, else the first running one, named in the "
            "outcome).",
        ),
    ] = None,
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    become_from_inventory: BecomeFromInventoryOption = False,
    concurrency: ConcurrencyOption = 16,
) -> None:
    """Plan a rollout: waves over the inventory, written to a plan file. Changes no host."""
    options = wave_options(
        waves=tuple(part.strip() for part in waves.split(",")),
        domain_key=domain_key,
        max_per_domain=max_per_domain,
        max_failures=max_failures,
        bake_seconds=bake,
        pause_after=pause_after,
        seed=seed,
        limit=limit,
        sysctl_target=sysctl_target,
        verify_image=verify_image,
        verify_command=verify_command,
        verify_timeout=verify_timeout,
        probe=probe,
        probe_timeout=probe_timeout,
        verify_exec_container=verify_exec_container,
    )
    artifact = inspect_artifact(
        runc, sha256, run=run_artifact, version=runc_version, url=artifact_url
    )
    loaded = load_inventory(inventory)
    before: dict[str, HostBefore] = {}
    no_before: dict[str, str] = {}
    if gather or facts_file:
        targets = hosts_to_plan(loaded, limit)
        if facts_file is not None:
            report = read_facts_report(facts_file)
        else:
            check_routes(targets)
            become = become_passwords(ask_become_pass, become_from_inventory, targets, loaded)
            with ssh_executor(known_hosts, become) as executor:
                report = facts_report(gather_fleet(executor, targets, concurrency))
        before, no_before = before_from_report(report, targets)
    result = build_plan(loaded, artifact, options, before, no_before)
    del loaded  # at 100k hosts the inventory is as large as the plan: free it before writing
    check_routes({host.name: host.ssh for host in result.hosts})
    try:
        with gc_paused():
            write_atomic(output, plan_json_chunks(result))
    except OSError as error:
        raise BadInput(f"-o {output}: cannot write the plan: {error.strerror or error}") from None
    if fmt is Format.json:
        with output.open("rb") as written:  # the same bytes, without serializing them again
            shutil.copyfileobj(written, sys.stdout.buffer)
        sys.stdout.flush()
    else:
        sys.stdout.write(plan_markdown(result) if fmt is Format.markdown else plan_table(result))
    typer.echo(f"plan written to {output} ({result.plan_id})", err=True)
