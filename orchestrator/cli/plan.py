"""`runc-rollout plan`: inventory + artifact + wave options -> a plan file and its review."""

import shutil
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.choices import (
    DEFAULT_CONCURRENCY,
    GATE_TIMEOUT,
    HOST_CHECK_TIMEOUT,
    PIPE_USER_PAGES_SOFT_DEFAULT,
)
from orchestrator.cli.advisories import AdvisoriesOption
from orchestrator.cli.options import (
    WAVES_HELP,
    AskBecomePassOption,
    BecomeFromInventoryOption,
    ConcurrencyOption,
    Format,
    InventoryOption,
    KnownHostsOption,
    LimitOption,
    ProbeTimeoutOption,
    format_option,
)
from orchestrator.cli.support import become_prompt, wave_options


class PackagePolicyChoice(StrEnum):
    divert = "divert"
    hold = "hold"
    leave = "leave"


def plan(
    inventory: InventoryOption,
    runc: Annotated[Path, typer.Option("--runc", help="The runc binary to roll out.")],
    sha256: Annotated[
        str | None,
        typer.Option("--sha256", help="Its expected sha256 (this or --sha256-file is required)."),
    ] = None,
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
    limit: LimitOption = None,
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
    fmt: Annotated[
        Format,
        format_option(
            "What to print on stdout: text (the review as a table), markdown (the review "
            "document) or json (the plan file's bytes)"
        ),
    ] = Format.text,
    gather: Annotated[
        bool,
        typer.Option(
            "--gather", help="Read each host's facts (read-only) to record its before state."
        ),
    ] = False,
    facts_file: Annotated[
        Path | None, typer.Option("--facts", help="Use facts saved by `facts --format json`.")
    ] = None,
    allow_unreachable: Annotated[
        bool,
        typer.Option(
            "--allow-unreachable",
            help="With --gather or --facts: plan without the selected hosts whose facts could "
            "not be gathered (listed apart in the plan). Without it such a host fails the plan "
            "(exit 1, no plan written).",
        ),
    ] = False,
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
    package_policy: Annotated[
        PackagePolicyChoice | None,
        typer.Option(
            "--package-policy",
            help="For a runc a package owns: divert (dpkg: a local diversion, so the package's "
            "next install or upgrade puts its runc beside the rolled-out one), hold (rpm: an "
            "exclude= of the package in the dnf/yum configuration) or leave (the plan warns "
            "that the package manager will undo the swap). Else each host's "
            "runc_rollout_package_policy, else divert for dpkg and hold for rpm.",
        ),
    ] = None,
    ticket: Annotated[
        str | None,
        typer.Option("--ticket", help="The change ticket this rollout belongs to (e.g. CHG-1234)."),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why: one line, shown first to the reviewer.")
    ] = None,
    canary: Annotated[
        str | None,
        typer.Option(
            "--canary",
            help="Ansible host pattern: its hosts fill wave 0 (and the next waves, in order) "
            "before any other host.",
        ),
    ] = None,
    last: Annotated[
        str | None,
        typer.Option(
            "--last",
            help="Ansible host pattern: its hosts go in the final waves of their own (e.g. "
            "control-plane nodes last).",
        ),
    ] = None,
    host_check: Annotated[
        str | None,
        typer.Option(
            "--host-check",
            help="A shell command each host runs after the tool's own verification (else its "
            "runc_rollout_host_check), e.g. 'curl -sf http://127.0.0.1:10248/healthz': a "
            "non-zero exit fails the host, which is rolled back; its output is the reason. "
            "RUNC_ROLLOUT_HOST and RUNC_ROLLOUT_RUNC are set for it.",
        ),
    ] = None,
    host_check_timeout: Annotated[
        float, typer.Option("--host-check-timeout", help="Hard timeout of the host check.")
    ] = HOST_CHECK_TIMEOUT,
    pre_gate: Annotated[
        str | None,
        typer.Option(
            "--pre-gate",
            help="A shell command run here before the first wave (and at every resume): a "
            "non-zero exit halts the run (exit 3) before any host is touched.",
        ),
    ] = None,
    wave_gate: Annotated[
        str | None,
        typer.Option(
            "--wave-gate",
            help="A shell command run here after each wave (after --bake), the wave's hosts "
            "and outcomes as JSON on stdin and in RUNC_ROLLOUT_* variables: a non-zero exit "
            "halts the run (exit 3) with its output as the reason; `resume` runs it again.",
        ),
    ] = None,
    gate_timeout: Annotated[
        float, typer.Option("--gate-timeout", help="Hard timeout of each gate, in seconds.")
    ] = GATE_TIMEOUT,
    window: Annotated[
        list[str] | None,
        typer.Option(
            "--window",
            help="A maintenance window, 'DAYS HH:MM-HH:MM [ZONE]' (e.g. 'Mon-Fri 22:00-06:00 "
            "Europe/Berlin'; IANA zones, UTC if none; repeatable): a wave starts only inside "
            "one; a wave that started finishes.",
        ),
    ] = None,
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    become_from_inventory: BecomeFromInventoryOption = False,
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    accept_advisory: Annotated[
        list[str] | None,
        typer.Option(
            "--accept-advisory",
            help="Roll out a target with this advisory knowingly (repeatable; recorded in the "
            "plan and its hash). The rc93 pipe hang (runc-rc93-pipe-hang) is refused without it.",
        ),
    ] = None,
    refuse_severity: Annotated[
        str | None,
        typer.Option(
            "--refuse-severity",
            help="Refuse a target with any advisory of this severity or above (low, medium, "
            "high; also the inventory variable runc_rollout_refuse_severity). Default: list "
            "them for the reviewer, refuse only the rc93 pipe hang.",
        ),
    ] = None,
    sha256_file: Annotated[
        Path | None,
        typer.Option(
            "--sha256-file",
            help="A sha256sum-format file (upstream's runc.sha256sum): the line for the --runc "
            "file's name gives the expected sha256.",
        ),
    ] = None,
    sha256_name: Annotated[
        str | None,
        typer.Option("--sha256-name", help="The name of that line, if not the --runc file's."),
    ] = None,
    signature: Annotated[
        Path | None,
        typer.Option(
            "--signature",
            help="A detached OpenPGP signature of the --runc file (upstream's runc.amd64.asc), "
            "checked with gpgv against --keyring before anything else.",
        ),
    ] = None,
    keyring: Annotated[
        Path | None,
        typer.Option("--keyring", help="The keys it must be signed by (runc.keyring)."),
    ] = None,
    advisories_file: AdvisoriesOption = None,
) -> None:
    """Plan a rollout: waves over the inventory, written to a plan file. Changes no host."""
    from orchestrator import api
    from orchestrator.plan.approval import default_signatures
    from orchestrator.plan.render import plan_markdown, plan_table

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
        ticket=ticket,
        reason=reason,
        canary=canary,
        last=last,
        host_check=host_check,
        host_check_timeout=host_check_timeout,
        pre_gate=pre_gate,
        wave_gate=wave_gate,
        gate_timeout=gate_timeout,
        windows=tuple(window or ()),
        package_policy=package_policy.value if package_policy is not None else None,
    )
    result = api.plan(
        inventory,
        runc=runc,
        sha256=sha256,
        sha256_file=sha256_file,
        sha256_name=sha256_name,
        signature=signature,
        keyring=keyring,
        runc_version=runc_version,
        artifact_url=artifact_url,
        run_artifact=run_artifact,
        options=options,
        output=output,
        gather=gather,
        facts_file=facts_file,
        allow_unreachable=allow_unreachable,
        accept_advisories=accept_advisory or (),
        refuse_severity=refuse_severity,
        advisories_file=advisories_file,
        known_hosts=known_hosts,
        become_password=become_prompt(ask_become_pass),
        become_from_inventory=become_from_inventory,
        concurrency=concurrency,
    )
    if result.stale_signatures is not None:
        typer.echo(
            f"{default_signatures(output)} signed an earlier plan written to "
            f"{output}: moved to {result.stale_signatures}; this plan needs its own signatures "
            "(runc-rollout sign)",
            err=True,
        )
    if fmt is Format.json:
        with output.open("rb") as written:  # the same bytes, without serializing them again
            shutil.copyfileobj(written, sys.stdout.buffer)
        sys.stdout.flush()
    else:
        now = time.time()  # for the next opening times of the maintenance windows
        view = plan_markdown if fmt is Format.markdown else plan_table
        sys.stdout.write(view(result.plan, now=now))
    typer.echo(f"plan written to {output} ({result.plan.plan_id})", err=True)
