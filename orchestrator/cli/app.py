"""The `runc-rollout` command line: parse options, call the library, map errors to exit codes.

The backends (paramiko, ansible-runner, the lab, the apply engine) are imported inside the
commands that use them, so `plan` and `status` start without their import cost."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from orchestrator import __version__
from orchestrator.errors import BadInput, ExitCode, RolloutError
from orchestrator.host.facts import (
    before_from_report,
    facts_json,
    facts_report,
    facts_table,
    gather_fleet,
    read_facts_report,
)
from orchestrator.host.session import Executor
from orchestrator.inventory.read import load_inventory
from orchestrator.lab.defaults import DEFAULT_INVENTORY, DEFAULT_STATE_DIR, FIRST_ADDRESS_ENV
from orchestrator.lab.defaults import STATE_DIR_ENV as LAB_STATE_DIR_ENV
from orchestrator.models import (
    PIPE_USER_PAGES_SOFT_DEFAULT,
    FailOn,
    HostBefore,
    HostPhase,
    RunApproval,
    SshTarget,
    WaveOptions,
)
from orchestrator.plan.approval import SIGNATURES_LIMIT
from orchestrator.plan.artifact import inspect_artifact
from orchestrator.plan.planner import build_plan, hosts_to_plan
from orchestrator.plan.render import plan_json, plan_markdown, plan_table
from orchestrator.run.journal import Journal
from orchestrator.util.fsutil import write_atomic
from orchestrator.util.memory import gc_paused
from orchestrator.util.textsafe import terminal_safe
from orchestrator.view import (
    Screen,
    SummaryFormat,
    journal_summary,
    make_view,
    print_summary,
    watch_run,
)
from orchestrator.view.progress import ProgressPrinter, status_text

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orchestrator.backends.ansible.streaming import ExecutionNode
    from orchestrator.backends.ssh.executor import SshExecutor
    from orchestrator.models import Plan

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 a host or wave failed; 2 bad usage or bad input (nothing changed); "
    "3 error budget exceeded, rollout halted; 4 the plan no longer matches the fleet (drift), "
    "nothing changed; 130 interrupted."
)

app = typer.Typer(
    name="runc-rollout",
    help="Fleet-wide runc upgrade orchestrator: plan canary waves, swap runc alone, verify, "
    "restore fs.pipe-user-pages-soft, roll back.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"runc-rollout {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Options that come before the subcommand."""


class Format(StrEnum):
    table = "table"
    markdown = "markdown"
    json = "json"


KnownHostsOption = Annotated[
    Path | None,
    typer.Option("--known-hosts", help="known_hosts file (else the inventory's, else ~/.ssh)."),
]
AskBecomePassOption = Annotated[
    bool,
    typer.Option(
        "--ask-become-pass",
        "-K",
        help="Ask once for the sudo password of hosts with ansible_become (never stored).",
    ),
]
ConcurrencyOption = Annotated[
    int, typer.Option("--concurrency", min=1, help="Hosts worked on at once.")
]
RunsDirOption = Annotated[
    Path,
    typer.Option("--runs-dir", envvar="RUNC_ROLLOUT_RUNS", help="Where run journals are kept."),
]
InventoryOption = Annotated[
    list[Path], typer.Option("-i", "--inventory", help="Ansible inventory file, dir or script.")
]
ProbeTimeoutOption = Annotated[
    float, typer.Option("--probe-timeout", min=1, max=3600, help="Seconds the probe may take.")
]
LimitOption = Annotated[
    str | None, typer.Option("-l", "--limit", help="Ansible host pattern (a:b, a:&b, a:!b).")
]


VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also show each host's phases as it reaches them.")
]
SummaryFormatOption = Annotated[
    SummaryFormat,
    typer.Option(
        "--format",
        help="The summary at the end (on stdout; on stderr with --json): text, or markdown to "
        "paste into the change ticket.",
    ),
]
JsonEventsOption = Annotated[
    bool,
    typer.Option("--json", help="Stream one JSON event per line on stdout (the journal's events)."),
]


@dataclass(frozen=True)
class ShowOptions:
    """How a run is shown: phases too, the summary's format, JSON events on stdout."""

    verbose: bool = False
    fmt: SummaryFormat = SummaryFormat.text
    json_events: bool = False


ExpectHashOption = Annotated[
    str | None,
    typer.Option(
        "--expect-hash",
        help="Refuse any plan whose plan_hash is not this one (what the merge request approved).",
    ),
]
AllowedSignersOption = Annotated[
    Path | None,
    typer.Option(
        "--allowed-signers",
        envvar="RUNC_ROLLOUT_ALLOWED_SIGNERS",
        help="Reviewers' SSH keys, in git's allowed_signers format: the plan must carry "
        "--required-signatures of theirs (see `sign`).",
    ),
]
RequiredSignaturesOption = Annotated[
    int | None,
    typer.Option(
        "--required-signatures",
        envvar="RUNC_ROLLOUT_REQUIRED_SIGNATURES",
        min=0,
        help="Distinct reviewers who must have signed the plan (default: 1 with "
        "--allowed-signers, else 0).",
    ),
]
SignaturesOption = Annotated[
    Path | None,
    typer.Option("--signatures", help="The plan's signatures file (default: PLAN.sig)."),
]


class ExecutorName(StrEnum):
    ssh = "ssh"
    ansible = "ansible"


ExecutorOption = Annotated[
    ExecutorName,
    typer.Option(
        "--executor",
        help="How hosts are worked on: ssh (built in), or ansible (playbooks/ through "
        "ansible-runner, one job per wave). Both keep the same host-side record.",
    ),
]

ExecutionNodeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--execution-node",
        metavar="DOMAIN=COMMAND",
        help="With --executor ansible: run failure domain DOMAIN's hosts on an execution node "
        "through ansible-runner's streaming (COMMAND's stdin takes the job, its stdout is the "
        "worker's stream), e.g. zone-a='ssh exec-a ansible-runner worker'. Repeatable; each "
        "wave's parts run at once; domains without one run on the controller.",
    ),
]


def execution_nodes(
    values: list[str] | None, executor: ExecutorName, plan: Plan
) -> dict[str, ExecutionNode]:
    """`--execution-node` values checked against the executor and the plan's failure domains."""
    from orchestrator.backends.ansible.streaming import check_domains, parse_execution_nodes

    nodes = parse_execution_nodes(values or [])
    if nodes and executor is not ExecutorName.ansible:
        raise BadInput("--execution-node: needs --executor ansible")
    check_domains(nodes, (host.domain for host in plan.hosts), f"plan {plan.plan_id}")
    return nodes


WAVES_HELP = (
    "Wave sizes, Ansible `serial` semantics: a comma list of counts or percentages of ALL "
    "selected hosts (rounded down, at least 1); the last entry repeats until every host is "
    "placed; 0 means all remaining. 7 hosts with 1,10%,50% -> 1,1,3,2."
)


@app.command()
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
    artifact = inspect_artifact(runc, sha256, run=run_artifact, version=runc_version)
    loaded = load_inventory(inventory)
    before: dict[str, HostBefore] = {}
    unreachable: dict[str, str] = {}
    if gather or facts_file:
        targets = hosts_to_plan(loaded, limit)
        if facts_file is not None:
            report = read_facts_report(facts_file)
        else:
            password = become_password(ask_become_pass)
            with ssh_executor(known_hosts, password) as executor:
                report = facts_report(gather_fleet(executor, targets, concurrency))
        before, unreachable = before_from_report(report, targets)
    result = build_plan(loaded, artifact, options, before, unreachable)
    del loaded  # at 100k hosts the inventory is as large as the plan: free it before writing
    with gc_paused():
        text = plan_json(result)
    try:
        write_atomic(output, text)
    except OSError as error:
        raise BadInput(f"-o {output}: cannot write the plan: {error.strerror or error}") from None
    if fmt is Format.json:
        sys.stdout.buffer.write(text)
        sys.stdout.flush()
    else:
        sys.stdout.write(plan_markdown(result) if fmt is Format.markdown else plan_table(result))
    typer.echo(f"plan written to {output} ({result.plan_id})", err=True)


@app.command()
def facts(
    inventory: InventoryOption,
    limit: LimitOption = None,
    fmt: Annotated[Format, typer.Option("--format", help="table or json.")] = Format.table,
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    concurrency: ConcurrencyOption = 16,
) -> int:
    """Gather each host's runc, daemons, sysctl and rollout record (read-only)."""
    if fmt is Format.markdown:
        raise BadInput("--format: facts prints table or json")
    targets = hosts_to_plan(load_inventory(inventory), limit)
    password = become_password(ask_become_pass)
    with ssh_executor(known_hosts, password) as executor:
        results = gather_fleet(executor, targets, concurrency)
    sys.stdout.write(facts_json(results) if fmt is Format.json else facts_table(results))
    failed = [name for name, result in results.items() if isinstance(result, Exception)]
    return ExitCode.HOST_FAILED if failed else ExitCode.OK


@app.command()
def audit(
    inventory: InventoryOption,
    limit: LimitOption = None,
    fmt: Annotated[Format, typer.Option("--format", help="What to print.")] = Format.table,
    fail_on: Annotated[
        FailOn,
        typer.Option(
            "--fail-on",
            help="Exit 1 when a finding of this severity or above is present; `none` (the "
            "default) exits 1 only for hosts that could not be audited.",
        ),
    ] = FailOn.none,
    ignore: Annotated[
        list[str] | None,
        typer.Option(
            "--ignore",
            help="A finding id to report but never fail on, e.g. a CVE the distribution "
            "package's changelog shows fixed (repeatable).",
        ),
    ] = None,
    domain_key: Annotated[
        str, typer.Option("--domain-key", help="Host variable naming the zone.")
    ] = "zone",
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="Run the incident's own trigger against each host's installed runc (starts one "
            "no-new-privileges container as a probe uid; the sysctl is not touched): the rc93 "
            "hang is then decided by what the runc does, not by its version string.",
        ),
    ] = False,
    probe_timeout: ProbeTimeoutOption = 20.0,
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    concurrency: ConcurrencyOption = 16,
) -> int:
    """Audit each host's runc (known bugs, advisories), the sysctl and hung runc init (read-only
    unless --probe).

    Exit 1 when a host could not be audited or a finding at or above --fail-on is present.
    """
    from orchestrator.diagnose.audit import (
        audit_fleet,
        audit_targets,
        finding_ids,
        load_advisories,
        probe_specs,
        report_markdown,
        report_table,
    )
    from orchestrator.diagnose.audit import report_json as audit_json

    advisories = load_advisories()
    unknown = sorted(set(ignore or ()) - finding_ids(advisories))
    if unknown:
        raise BadInput(f"--ignore: no finding is called {', '.join(unknown)}")
    loaded = load_inventory(inventory)
    targets, zones, held = audit_targets(loaded, limit, domain_key)
    specs = probe_specs(loaded, targets, probe_timeout) if probe else None
    password = become_password(ask_become_pass)
    with ssh_executor(known_hosts, password) as executor:
        report = audit_fleet(
            executor,
            targets,
            zones,
            advisories,
            concurrency=concurrency,
            fail_on=fail_on,
            ignore=ignore or (),
            held=held,
            probe_specs=specs,
        )
    views = {Format.json: audit_json, Format.markdown: report_markdown, Format.table: report_table}
    sys.stdout.write(views[fmt](report))
    return ExitCode.HOST_FAILED if report.failed else ExitCode.OK


@app.command()
def unstick(
    inventory: InventoryOption,
    limit: LimitOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Drain; without it, only list what would be done.")
    ] = False,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", min=1, help="Read at most this much per process.")
    ] = 65536,
    max_seconds: Annotated[
        float, typer.Option("--max-seconds", min=0.1, help="Drain each process at most this long.")
    ] = 10.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    concurrency: ConcurrencyOption = 16,
) -> int:
    """Free runc init hung the incident's way (in pipe_write on its own 8192-byte pipe) by
    draining that pipe alone; other processes and pipes are never touched. Needs python3 on the
    hosts. Dry run unless --yes.

    Exit 1 when a host could not be examined or a drained process did not go on.
    """
    from orchestrator.diagnose.audit import audit_targets
    from orchestrator.diagnose.unstick import failed_hosts, report_lines, unstick_fleet
    from orchestrator.diagnose.unstick import report_json as unstick_json

    targets, _, _ = audit_targets(load_inventory(inventory), limit)
    password = become_password(ask_become_pass)
    with ssh_executor(known_hosts, password) as executor:
        results = unstick_fleet(
            executor,
            targets,
            drain=yes,
            concurrency=concurrency,
            max_bytes=max_bytes,
            max_seconds=max_seconds,
        )
    lines = map(terminal_safe, report_lines(results))
    sys.stdout.write(unstick_json(results) if json_out else "\n".join(lines) + "\n")
    return ExitCode.HOST_FAILED if failed_hosts(results) else ExitCode.OK


@app.command()
def apply(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="A reviewed plan file.")],
    executor: ExecutorOption = ExecutorName.ssh,
    concurrency: ConcurrencyOption = 8,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what each host would get; change nothing.")
    ] = False,
    json_events: JsonEventsOption = False,
    verbose: VerboseOption = False,
    fmt: SummaryFormatOption = SummaryFormat.text,
    runs_dir: RunsDirOption = Path("runs"),
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    expect_hash: ExpectHashOption = None,
    allowed_signers: AllowedSignersOption = None,
    required_signatures: RequiredSignaturesOption = None,
    signatures: SignaturesOption = None,
    execution_node: ExecutionNodeOption = None,
) -> int:
    """Carry out a reviewed plan wave by wave (refused if the plan was edited after review).

    With --expect-hash, only the plan with that plan_hash; with --allowed-signers, only a plan
    signed by --required-signatures of those reviewers (`runc-rollout sign`)."""
    from orchestrator.plan.approval import approval_policy, check_approval, default_signatures
    from orchestrator.run.engine import check_artifact, load_plan, preview, preview_fails
    from orchestrator.util.fsutil import read_input

    plan = load_plan(plan_file)
    nodes = execution_nodes(execution_node, executor, plan)
    policy = approval_policy(expect_hash, allowed_signers, required_signatures)
    signatures = signatures or default_signatures(plan_file)
    signers = check_approval(plan, policy, signatures)
    if signers:
        typer.echo(f"{plan.plan_id} signed by {', '.join(signers)}", err=True)
    check_artifact(plan)
    password = become_password(ask_become_pass)
    with ssh_executor(known_hosts, password) as backend:
        if dry_run:
            targets = {host.name: host.ssh for host in plan.hosts}
            results = gather_fleet(backend, targets, concurrency)
            for line in preview(plan, results):
                typer.echo(terminal_safe(line))
            # As apply would end: a host it could not reach or would fail on is not a success.
            return ExitCode.HOST_FAILED if preview_fails(plan, results) else ExitCode.OK
        confirm(f"apply {plan.plan_id} to {len(plan.hosts)} hosts in {len(plan.waves)} waves?", yes)
        approval = RunApproval(
            plan_hash=plan.plan_hash,
            required_signatures=policy.required_signatures,
            signers=signers,
        )
        kept = read_input(signatures, SIGNATURES_LIMIT, "signatures file") if signers else None
        journal = Journal.create(runs_dir, plan, approval=approval, signatures=kept)
        typer.echo(f"run {journal.run_id} ({journal.run_dir})", err=True)
        show = ShowOptions(verbose, fmt, json_events)
        return run_rollout(
            journal,
            backend,
            concurrency,
            show,
            executor=executor,
            known_hosts=known_hosts,
            become_password=password,
            execution_nodes=nodes,
        )


@app.command()
def sign(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="The reviewed plan file.")],
    key: Annotated[
        Path, typer.Option("--key", "-k", help="Your SSH private key (or its .pub, with an agent).")
    ],
    signatures: SignaturesOption = None,
) -> None:
    """Sign a reviewed plan with your SSH key (ssh-keygen -Y sign), adding the signature to
    PLAN.sig; `apply --allowed-signers` then accepts it."""
    from orchestrator.plan.approval import append_signature, default_signatures, sign_plan
    from orchestrator.run.engine import load_plan

    plan = load_plan(plan_file)
    target = signatures or default_signatures(plan_file)
    append_signature(target, sign_plan(plan, key))
    typer.echo(f"signed {plan.plan_id} (plan_hash {plan.plan_hash}) into {target}", err=True)


@app.command("verify-plan")
def verify_plan(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="The plan file.")],
    allowed_signers: AllowedSignersOption = None,
    required_signatures: RequiredSignaturesOption = None,
    expect_hash: ExpectHashOption = None,
    signatures: SignaturesOption = None,
) -> None:
    """Check a plan as apply would (its hash, --expect-hash, its signatures); change nothing."""
    from orchestrator.plan.approval import approval_policy, check_approval, default_signatures
    from orchestrator.run.engine import load_plan

    plan = load_plan(plan_file)
    policy = approval_policy(expect_hash, allowed_signers, required_signatures)
    found = check_approval(plan, policy, signatures or default_signatures(plan_file))
    typer.echo(
        f"{plan.plan_id} plan_hash {plan.plan_hash}: "
        + (f"signed by {', '.join(found)}" if found else "no signatures required")
    )


@app.command()
def status(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run id or run directory.")],
    runs_dir: RunsDirOption = Path("runs"),
    json_out: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            help="Follow the run from its journal (read only) with apply's view, until it "
            "finishes, pauses, halts or is interrupted; then print its summary.",
        ),
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, max=60, help="Seconds between reads.")
    ] = 0.5,
    verbose: VerboseOption = False,
    fmt: SummaryFormatOption = SummaryFormat.text,
) -> int:
    """Show a run's waves and hosts, from its journal; --watch follows it as it goes."""
    journal = Journal.open(run_directory(run, runs_dir), read_only=True)
    for problem in journal.problems:
        typer.echo(f"runc-rollout: warning: {problem}", err=True)
    if watch:
        if json_out:
            raise BadInput("--watch shows the run; --json prints its state: one or the other")
        screen = Screen()
        try:
            summary = watch_run(journal, screen, interval=interval, verbose=verbose)
        except KeyboardInterrupt:
            typer.echo(f"stopped watching run {journal.run_id}; the run goes on", err=True)
            return ExitCode.INTERRUPTED
        print_summary(summary, screen, fmt)
    if json_out:
        typer.echo(journal.state.model_dump_json(indent=2))
    else:
        sys.stdout.write(status_text(journal.state))
    return ExitCode.OK


@app.command()
def resume(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run id or run directory.")],
    runs_dir: RunsDirOption = Path("runs"),
    concurrency: ConcurrencyOption = 8,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_events: JsonEventsOption = False,
    verbose: VerboseOption = False,
    fmt: SummaryFormatOption = SummaryFormat.text,
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    executor: ExecutorOption = ExecutorName.ssh,
    expect_hash: ExpectHashOption = None,
    allowed_signers: AllowedSignersOption = None,
    required_signatures: RequiredSignaturesOption = None,
    execution_node: ExecutionNodeOption = None,
) -> int:
    """Continue a paused, halted or crashed run; hosts caught mid-step are examined first.

    The run's plan is checked as apply checked it: --expect-hash, and the signatures apply
    kept in the run directory (at least as many as the run was applied with)."""
    from orchestrator.plan.approval import approval_policy, check_approval
    from orchestrator.run.engine import check_artifact

    journal = Journal.open(run_directory(run, runs_dir))
    for problem in journal.problems:
        typer.echo(f"runc-rollout: warning: {problem}", err=True)
    nodes = execution_nodes(execution_node, executor, journal.plan)
    policy = approval_policy(expect_hash, allowed_signers, required_signatures)
    applied = journal.approval()
    if applied.plan_hash != journal.plan.plan_hash:
        raise BadInput(f"{journal.run_dir}: the run's plan is not the one it was applied with")
    if policy.required_signatures < applied.required_signatures:
        raise BadInput(
            f"run {journal.run_id} was applied with {applied.required_signatures} required "
            "signatures: pass --allowed-signers (and --required-signatures) to resume it"
        )
    check_approval(journal.plan, policy, journal.signatures)
    check_artifact(journal.plan)
    if journal.state.status == "completed":
        typer.echo(f"run {journal.run_id} is already completed", err=True)
        return ExitCode.OK
    confirm(f"resume run {journal.run_id} ({journal.state.status})?", yes)
    password = become_password(ask_become_pass)
    with ssh_executor(known_hosts, password) as backend:
        return run_rollout(
            journal,
            backend,
            concurrency,
            ShowOptions(verbose, fmt, json_events),
            resumed=True,
            executor=executor,
            known_hosts=known_hosts,
            become_password=password,
            execution_nodes=nodes,
        )


@app.command()
def rollback(
    run: Annotated[
        str | None, typer.Argument(metavar="[RUN]", help="Run id or directory to roll back.")
    ] = None,
    hosts: Annotated[
        list[str] | None, typer.Option("--host", help="Only this host (repeatable).")
    ] = None,
    inventory: Annotated[
        list[Path] | None,
        typer.Option("-i", "--inventory", help="Roll back from the hosts' own records."),
    ] = None,
    limit: LimitOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    concurrency: ConcurrencyOption = 8,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    executor: ExecutorOption = ExecutorName.ssh,
    verbose: VerboseOption = False,
    fmt: SummaryFormatOption = SummaryFormat.text,
    execution_node: ExecutionNodeOption = None,
) -> int:
    """Return hosts to their recorded before: sysctl and its files first, then the old runc."""
    from orchestrator.backends.group import run_on_hosts
    from orchestrator.host.procedure import HostOutcome
    from orchestrator.run.rollback import contradicting_journal, rollback_host, swapped_by_run
    from orchestrator.view.summary import rollback_summary

    if (run is None) == (not inventory):
        raise BadInput("rollback: give a RUN, or -i INVENTORY [--limit P], not both")
    journal: Journal | None = None
    nodes: dict[str, ExecutionNode] = {}
    if run is not None:
        journal = Journal.open(run_directory(run, runs_dir))
        nodes = execution_nodes(execution_node, executor, journal.plan)
        targets = {host.name: host.ssh for host in journal.plan.hosts}
        unknown = sorted(set(hosts or []) - set(targets))
        if unknown:
            raise BadInput(f"--host: {', '.join(unknown)} not in run {journal.run_id}")
        if hosts:
            targets = {name: targets[name] for name in hosts}
    elif execution_node:
        raise BadInput("--execution-node: needs a RUN (its plan's failure domains), not -i")
    else:
        targets = hosts_to_plan(load_inventory(inventory or []), limit)
    confirm(f"roll back {len(targets)} hosts?", yes)
    run_id = journal.run_id if journal else None
    swapped = swapped_by_run(journal.state) if journal else set()
    screen = Screen()
    started = screen.clock()
    printer = ProgressPrinter(screen.stderr, verbose=verbose)

    def on_phase(host: str, phase: HostPhase, sha: str | None) -> None:
        if journal is not None:
            printer(journal.record("host.phase", host=host, phase=phase, runc_sha256=sha))

    results: dict[str, HostOutcome | Exception]
    password = become_password(ask_become_pass)
    if executor is ExecutorName.ansible:
        from orchestrator.backends.ansible.runner import rollback_hosts

        results = rollback_hosts(
            targets,
            run_id=run_id,
            jobs_dir=journal.run_dir / "ansible" if journal else None,
            concurrency=concurrency,
            known_hosts=known_hosts,
            become_password=password,
            on_phase=on_phase,
            domains={host.name: host.domain for host in journal.plan.hosts} if journal else None,
            execution_nodes=nodes,
            on_job=lambda node, names, message: typer.echo(terminal_safe(message), err=True),
        )
    else:
        with ssh_executor(known_hosts, password) as backend:

            def one(name: str, target: SshTarget) -> HostOutcome:
                session = backend.session(target, name=name)
                return rollback_host(session, name, run_id=run_id, on_phase=on_phase)

            results = run_on_hosts(targets, one, concurrency=concurrency)
    outcomes: dict[str, tuple[str, str | None, str]] = {}
    failed = 0
    for name, result in contradicting_journal(results, swapped).items():
        if isinstance(result, HostOutcome):
            outcomes[name] = (result.status, result.runc_sha256, result.message or "")
            if journal is not None:
                journal.record(
                    "host.finished",
                    host=name,
                    status=result.status,
                    phase=result.phase,
                    runc_sha256=result.runc_sha256,
                    message=result.message,
                )
        else:
            failed += 1
            outcomes[name] = ("failed", None, f"rollback failed: {result}")
        status, _, message = outcomes[name]
        typer.echo(
            terminal_safe(f"{name}: {status}" + (f": {message}" if message else "")), err=True
        )
    plan = journal.plan if journal else None
    summary = rollback_summary(plan, outcomes, screen.clock() - started)
    print_summary(summary, screen, fmt)
    return ExitCode.HOST_FAILED if failed else ExitCode.OK


lab_app = typer.Typer(
    help="A local fleet of real hosts (own sshd per 127.0.0.x; full hosts also dockerd and "
    "containerd, containerd-only hosts containerd alone), in the incident's state. Needs root.",
    no_args_is_help=True,
)
app.add_typer(lab_app, name="lab")
StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar=LAB_STATE_DIR_ENV,
        help=f"Lab state [default: {DEFAULT_STATE_DIR}].",
    ),
]
LabInventoryOption = Annotated[
    Path | None,
    typer.Option("--inventory", help=f"Inventory to write [default: {DEFAULT_INVENTORY}]."),
]


@lab_app.command("up")
def lab_up(
    hosts: Annotated[int | None, typer.Option("--hosts", min=1, help="Hosts (default 4).")] = None,
    docker: Annotated[
        int | None,
        typer.Option(
            "--docker", min=0, help="Of which full hosts: dockerd and containerd (default 2)."
        ),
    ] = None,
    containerd: Annotated[
        int | None,
        typer.Option(
            "--containerd",
            min=0,
            help="Of which containerd-only hosts after the full ones, as Kubernetes 1.24+ nodes "
            "(CRI, runc by BinaryName, no dockerd; default 0).",
        ),
    ] = None,
    state_dir: StateDirOption = None,
    inventory: LabInventoryOption = None,
    first_address: Annotated[
        str | None,
        typer.Option("--first-address", envvar=FIRST_ADDRESS_ENV, help="e.g. 127.0.0.11"),
    ] = None,
    stuck: Annotated[
        bool,
        typer.Option(
            "--stuck",
            help="Also hang one container on the first full host for real (container lab-stuck, "
            "its runc init blocked writing its seccomp pipe), as on the incident's nodes.",
        ),
    ] = False,
) -> None:
    """Start the lab (idempotent: a running lab only gets what died restarted). Every host's
    runc is a real 1.0.0-rc93 build (Debian's runc source with rc93's pipe hang), built once
    and cached in /var/cache/runc-rollout-lab."""
    from orchestrator.lab import fleet

    info = fleet.lab_up(
        hosts,
        docker,
        containerd,
        state_dir=state_dir,
        inventory_path=inventory,
        first_address=first_address,
        stuck=stuck,
    )
    typer.echo(fleet.format_up(info))


@lab_app.command("build-runc")
def lab_build_runc() -> None:
    """Build the lab's runc 1.0.0-rc93 (Debian's runc source with rc93's pipe hang) unless it
    is cached for today's inputs (source package version, recipe, Go version); print its path."""
    from orchestrator.lab import rc93

    build = rc93.ensure_rc93_runc()
    how = f"built in {build.seconds:.1f}s" if build.built else "cached"
    typer.echo(f"runc {rc93.VERSION} ({how}): {build.path}")


@lab_app.command("trigger")
def lab_trigger(
    hosts: Annotated[
        list[str] | None,
        typer.Option("--host", help="A full lab host (repeatable; default: every full host)."),
    ] = None,
    state_dir: StateDirOption = None,
) -> int:
    """Run the rc93 trigger once on full lab hosts: a no-new-privileges container with a seccomp
    program over 8 KiB, as a uid a pipe holder put over fs.pipe-user-pages-soft. rc93 hangs in
    runc init (killed at once, container removed; exit 1), a fixed runc passes."""
    from orchestrator.lab import fleet

    runs = fleet.lab_trigger(state_dir, hosts)
    typer.echo(fleet.format_trigger(runs))
    return ExitCode.HOST_FAILED if any(run.outcome != "passed" for run in runs) else ExitCode.OK


@lab_app.command("status")
def lab_status(state_dir: StateDirOption = None) -> None:
    """Each lab host: address, runc version and checksum, sysctl, daemons alive."""
    from orchestrator.lab import fleet

    typer.echo(fleet.format_status(fleet.lab_status(state_dir)))


@lab_app.command("down")
def lab_down(state_dir: StateDirOption = None, inventory: LabInventoryOption = None) -> None:
    """Stop the lab's own processes (by recorded PID), unmount, remove its files. Safe twice."""
    from orchestrator.lab import fleet

    typer.echo(fleet.format_down(fleet.lab_down(state_dir, inventory)))


_OPTION_OF_FIELD = {
    "bake_seconds": "--bake",
    "pause_after": "--pause-after",
    "sysctl_target": "--sysctl-target",
    "verify_timeout": "--verify-timeout",
}


def wave_options(**fields: object) -> WaveOptions:
    """`WaveOptions` from the command line; a value out of range names its option."""
    try:
        return WaveOptions.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "options"
        option = _OPTION_OF_FIELD.get(field, f"--{field.replace('_', '-')}")
        raise BadInput(f"{option}: {first['input']!r}: {first['msg']}") from None


def ssh_executor(known_hosts: Path | None, become_password: str | None = None) -> SshExecutor:
    from orchestrator.backends.ssh.executor import SshExecutor

    return SshExecutor(known_hosts=known_hosts, become_password=become_password)


def become_password(ask: bool) -> str | None:
    """`--ask-become-pass`: the sudo password, asked once on the terminal, kept in memory only."""
    if not ask:
        return None
    import getpass

    try:
        return getpass.getpass("BECOME password: ", stream=sys.stderr)
    except EOFError:
        raise BadInput("--ask-become-pass: no password given (end of input)") from None


def run_rollout(
    journal: Journal,
    backend: Executor,
    concurrency: int,
    show: ShowOptions,
    resumed: bool = False,
    *,
    executor: ExecutorName = ExecutorName.ssh,
    known_hosts: Path | None = None,
    become_password: str | None = None,
    execution_nodes: Mapping[str, ExecutionNode] | None = None,
) -> int:
    from orchestrator.run.engine import ApplyEnv, Rollout, SshWaves, WaveBackend

    screen = Screen()
    view, on_event = make_view(
        journal.plan, journal.state, screen, verbose=show.verbose, json_events=show.json_events
    )
    waves: WaveBackend = SshWaves(backend, concurrency)
    if executor is ExecutorName.ansible:
        from orchestrator.backends.ansible.runner import AnsibleWaves

        waves = AnsibleWaves(
            journal.run_dir,
            concurrency,
            known_hosts=known_hosts,
            become_password=become_password,
            execution_nodes=execution_nodes,
        )
    rollout = Rollout(journal, waves, env=ApplyEnv(on_event=on_event, sleep=view.sleep))
    with view:
        code = rollout.run(resumed=resumed)
    title = "resume" if resumed else "apply"
    summary = journal_summary(f"{title} {journal.run_id}", journal)
    print_summary(summary, screen, show.fmt, json_events=show.json_events)
    typer.echo(f"run {journal.run_id}: {journal.state.status} (exit {int(code)})", err=True)
    if journal.state.status == "paused" or summary.needs_resume:
        where = shlex.quote(str(journal.run_dir))
        typer.echo(f"continue with: runc-rollout resume {where}", err=True)
    return code


def run_directory(run: str, runs_dir: Path) -> Path:
    candidate = Path(run)
    if candidate.is_dir():
        return candidate
    if (runs_dir / run).is_dir():
        return runs_dir / run
    raise BadInput(
        f"RUN: no run {run!r} (looked for the directory {candidate} and {runs_dir / run})"
    )


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise BadInput(f"{question} stdin is not a terminal: pass --yes to confirm")
    if not typer.confirm(question):
        raise typer.Abort()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every `RolloutError` becomes one line on stderr and its exit code."""
    try:
        result = app(args=argv, prog_name="runc-rollout", standalone_mode=False)
    except RolloutError as error:
        typer.echo(f"runc-rollout: error: {error}", err=True)
        return int(error.exit_code)
    except typer.Exit as done:
        return int(done.exit_code)
    except typer.TyperException as error:  # usage errors: typer's own usage screen
        show = getattr(error, "show", None)
        if show is not None:
            show()
        else:
            typer.echo(f"runc-rollout: error: {error.message}", err=True)
        return ExitCode.BAD_INPUT
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("runc-rollout: interrupted", err=True)
        return ExitCode.INTERRUPTED
    return result if isinstance(result, int) else ExitCode.OK


def run() -> None:
    sys.exit(main())
