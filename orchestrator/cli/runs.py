"""`apply`, `resume`, `status`, `rollback`, `sign`, `verify-plan`: carrying out a reviewed plan."""

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.options import (
    DEFAULT_CONCURRENCY,
    AllowedSignersOption,
    AskBecomePassOption,
    BecomeFromInventoryOption,
    ConcurrencyOption,
    ExecutionNodeOption,
    ExecutorName,
    ExecutorOption,
    ExpectHashOption,
    Format,
    JsonFlagOption,
    KnownHostsOption,
    LimitOption,
    NotifyOption,
    NoWaitOption,
    PushName,
    PushOption,
    RequiredSignaturesOption,
    RunFormatOption,
    RunsDirOption,
    ShowOptions,
    SignaturesOption,
    VerboseOption,
    chosen_format,
    expand_limit,
    format_option,
)
from orchestrator.cli.support import (
    become_passwords,
    check_routes,
    confirm,
    execution_nodes,
    open_approved_run,
    open_backend,
    run_directory,
    run_rollout,
    ssh_executor,
)
from orchestrator.errors import BadInput, ExitCode

if TYPE_CHECKING:
    from orchestrator.models import Inventory
    from orchestrator.run.journal import Journal


def apply(
    plan_file: Annotated[Path, typer.Argument(metavar="PLAN", help="A reviewed plan file.")],
    limit: Annotated[
        str | None,
        typer.Option(
            "-l",
            "--limit",
            callback=expand_limit,
            metavar="PATTERN",
            help="Apply only the plan's hosts this Ansible host pattern (or @FILE) selects, "
            "with the plan's approval: a host outside the plan is refused. The run records the "
            "limit; resume, status and rollback keep to it.",
        ),
    ] = None,
    executor: ExecutorOption = ExecutorName.ssh,
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            "--check",
            "-C",
            help="Show what each host would get; change nothing (Ansible's --check).",
        ),
    ] = False,
    json_flag: JsonFlagOption = False,
    verbose: VerboseOption = False,
    fmt: RunFormatOption = Format.text,
    runs_dir: RunsDirOption = Path("runs"),
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    become_from_inventory: BecomeFromInventoryOption = False,
    expect_hash: ExpectHashOption = None,
    allowed_signers: AllowedSignersOption = None,
    required_signatures: RequiredSignaturesOption = None,
    signatures: SignaturesOption = None,
    execution_node: ExecutionNodeOption = None,
    push: PushOption = PushName.gzip,
    no_wait: NoWaitOption = False,
    notify: NotifyOption = None,
) -> int:
    """Carry out a reviewed plan wave by wave (refused if the plan was edited after review).

    With --expect-hash, only the plan with that plan_hash; with --allowed-signers, only a plan
    signed by --required-signatures of those reviewers (`runc-rollout sign`)."""
    from orchestrator.diagnose.facts_report import gather_fleet
    from orchestrator.models import RunApproval
    from orchestrator.plan.approval import (
        SIGNATURES_LIMIT,
        approval_policy,
        check_approval,
        default_signatures,
    )
    from orchestrator.run.engine import check_artifact, load_plan, preview, preview_fails
    from orchestrator.run.journal import Journal
    from orchestrator.run.limit import plan_subset
    from orchestrator.run.notify import parse_webhooks
    from orchestrator.util.fsutil import read_input
    from orchestrator.util.textsafe import terminal_safe

    plan = load_plan(plan_file)
    webhooks = parse_webhooks(notify or [])
    nodes = execution_nodes(execution_node, executor, plan)
    policy = approval_policy(expect_hash, allowed_signers, required_signatures)
    signatures = signatures or default_signatures(plan_file)
    signers = check_approval(plan, policy, signatures)
    if signers:
        typer.echo(f"{plan.plan_id} signed by {', '.join(signers)}", err=True)
    approved = plan
    subset = plan_subset(plan, limit) if limit is not None else None
    if subset is not None:  # approved as a whole: the run works on its subset alone
        plan = plan.limited_to(subset.hosts)
        said = f"--limit {limit}: {len(subset.hosts)} of the plan's {len(approved.hosts)} hosts"
        typer.echo(terminal_safe(said), err=True)
    check_artifact(plan)
    targets = {host.name: host.ssh for host in plan.hosts}
    check_routes(targets)
    become = become_passwords(ask_become_pass, become_from_inventory, targets, plan.inventory)
    if dry_run:
        with ssh_executor(known_hosts, become) as ssh:
            results = gather_fleet(ssh, targets, concurrency)
        for line in preview(plan, results):
            typer.echo(terminal_safe(line))
        # As apply would end: a host it could not reach or would fail on is not a success.
        return ExitCode.HOST_FAILED if preview_fails(plan, results) else ExitCode.OK
    waves = sum(1 for wave in plan.waves if wave.hosts)
    confirm(f"apply {plan.plan_id} to {len(plan.hosts)} hosts in {waves} waves?", yes)
    approval = RunApproval(
        plan_hash=plan.plan_hash,
        required_signatures=policy.required_signatures,
        signers=signers,
    )
    kept = read_input(signatures, SIGNATURES_LIMIT, "signatures file") if signers else None
    journal = Journal.create(runs_dir, approved, approval=approval, signatures=kept, limit=subset)
    typer.echo(f"run {journal.run_id} ({journal.run_dir})", err=True)
    run_dir = journal.run_dir
    gzip = push is PushName.gzip
    with open_backend(
        executor, concurrency, known_hosts, become, run_dir, nodes=nodes, gzip=gzip
    ) as backend:
        show = ShowOptions.of_run(verbose, fmt, json_flag, "apply")
        return run_rollout(
            journal,
            backend,
            show,
            signers=signers,
            wait_for_window=not no_wait,
            webhooks=webhooks,
        )


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


def status(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run id or run directory.")],
    runs_dir: RunsDirOption = Path("runs"),
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
    fmt: Annotated[
        Format,
        format_option(
            "text: the waves and hosts; markdown: the run's summary for a change ticket; json: "
            "the run's state (with --watch: every journal event as a JSON line, the summary on "
            "stderr)"
        ),
    ] = Format.text,
    json_flag: JsonFlagOption = False,
) -> int:
    """Show a run's waves and hosts, from its journal; --watch follows it as it goes. Exits as
    the run did: 0 completed (or still running), 1 failed, 3 halted, 5 paused."""
    from orchestrator.choices import SummaryFormat
    from orchestrator.run.journal import Journal
    from orchestrator.view import Screen, journal_summary, print_summary, watch_run
    from orchestrator.view.progress import status_text

    fmt = chosen_format(fmt, json_flag, "status")
    journal = Journal.open(run_directory(run, runs_dir), read_only=True)
    for problem in journal.problems:
        typer.echo(f"runc-rollout: warning: {problem}", err=True)
    if watch:
        show = ShowOptions.of(verbose, fmt)
        screen = Screen()
        try:
            summary = watch_run(
                journal, screen, interval=interval, verbose=verbose, json_events=show.json_events
            )
        except KeyboardInterrupt:
            typer.echo(f"stopped watching run {journal.run_id}; the run goes on", err=True)
            return ExitCode.INTERRUPTED
        # The summary alone on stdout (on stderr beside the JSON events): never the table too.
        print_summary(summary, screen, show.fmt, json_events=show.json_events)
    elif fmt is Format.json:
        typer.echo(journal.state.model_dump_json(indent=2))
    elif fmt is Format.markdown:
        summary = journal_summary(f"status {journal.run_id}", journal)
        print_summary(summary, Screen(), SummaryFormat.markdown)
    else:
        sys.stdout.write(status_text(journal.state))
    return STATUS_EXIT.get(journal.state.status, ExitCode.OK)


# What `status` exits with, by the run's status: a script can tell done from not done.
STATUS_EXIT: dict[str, ExitCode] = {
    "failed": ExitCode.HOST_FAILED,
    "halted": ExitCode.BUDGET_EXCEEDED,
    "paused": ExitCode.PAUSED,
}


def resume(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run id or run directory.")],
    runs_dir: RunsDirOption = Path("runs"),
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_flag: JsonFlagOption = False,
    verbose: VerboseOption = False,
    fmt: RunFormatOption = Format.text,
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    become_from_inventory: BecomeFromInventoryOption = False,
    executor: ExecutorOption = ExecutorName.ssh,
    expect_hash: ExpectHashOption = None,
    allowed_signers: AllowedSignersOption = None,
    required_signatures: RequiredSignaturesOption = None,
    execution_node: ExecutionNodeOption = None,
    push: PushOption = PushName.gzip,
    no_wait: NoWaitOption = False,
    notify: NotifyOption = None,
) -> int:
    """Continue a paused, halted or crashed run; hosts caught mid-step are examined first.

    The run's plan is checked against the approval policy given here, as apply checked it:
    --expect-hash, and the signatures apply kept in the run directory (at least as many as
    the run was applied with)."""
    from orchestrator.plan.approval import approval_policy
    from orchestrator.run.engine import check_artifact
    from orchestrator.run.notify import parse_webhooks

    webhooks = parse_webhooks(notify or [])
    policy = approval_policy(expect_hash, allowed_signers, required_signatures)
    journal, signers = open_approved_run(run_directory(run, runs_dir), policy)
    for problem in journal.problems:
        typer.echo(f"runc-rollout: warning: {problem}", err=True)
    nodes = execution_nodes(execution_node, executor, journal.plan)
    check_artifact(journal.plan)
    if journal.state.status == "completed":
        typer.echo(f"run {journal.run_id} is already completed", err=True)
        return ExitCode.OK
    targets = {host.name: host.ssh for host in journal.plan.hosts}
    check_routes(targets)
    become = become_passwords(
        ask_become_pass, become_from_inventory, targets, journal.plan.inventory
    )
    confirm(f"resume run {journal.run_id} ({journal.state.status})?", yes)
    run_dir = journal.run_dir
    gzip = push is PushName.gzip
    with open_backend(
        executor, concurrency, known_hosts, become, run_dir, nodes=nodes, gzip=gzip
    ) as backend:
        show = ShowOptions.of_run(verbose, fmt, json_flag, "resume")
        return run_rollout(
            journal,
            backend,
            show,
            resumed=True,
            signers=signers,
            wait_for_window=not no_wait,
            webhooks=webhooks,
        )


def rollback(
    run: Annotated[
        str | None, typer.Argument(metavar="RUN", help="Run id or directory to roll back.")
    ] = None,
    hosts: Annotated[
        list[str] | None,
        typer.Option("--host", metavar="HOST", help="Only this host (repeatable)."),
    ] = None,
    inventory: Annotated[
        list[Path] | None,
        typer.Option(
            "-i", "--inventory", metavar="INVENTORY", help="Roll back from the hosts' own records."
        ),
    ] = None,
    limit: LimitOption = None,
    runs_dir: RunsDirOption = Path("runs"),
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    become_from_inventory: BecomeFromInventoryOption = False,
    executor: ExecutorOption = ExecutorName.ssh,
    verbose: VerboseOption = False,
    fmt: Annotated[
        Format,
        format_option(
            "The summary at the end, on stdout: text, markdown to paste into the change "
            "ticket, or json (its hosts: status, runc, reason, what was done)"
        ),
    ] = Format.text,
    execution_node: ExecutionNodeOption = None,
    expect_hash: ExpectHashOption = None,
    allowed_signers: AllowedSignersOption = None,
    required_signatures: RequiredSignaturesOption = None,
) -> int:
    """Return hosts to their recorded before: sysctl and its files first, then the old runc.

    A RUN's plan is checked against the approval policy given here, as resume checks it."""
    from orchestrator.choices import SummaryFormat
    from orchestrator.inventory.read import load_inventory
    from orchestrator.plan.approval import approval_policy
    from orchestrator.plan.planner import hosts_to_plan
    from orchestrator.run.rollback import roll_back
    from orchestrator.util.textsafe import terminal_safe
    from orchestrator.view import Screen, print_summary
    from orchestrator.view.progress import ProgressPrinter
    from orchestrator.view.summary import rollback_summary, summary_json

    if (run is None) == (not inventory):
        raise BadInput("rollback: give a RUN, or -i INVENTORY [--limit P], not both")
    journal: Journal | None = None
    if run is not None:
        policy = approval_policy(expect_hash, allowed_signers, required_signatures)
        journal, _ = open_approved_run(run_directory(run, runs_dir), policy)
        targets = {host.name: host.ssh for host in journal.plan.hosts}
        unknown = sorted(set(hosts or []) - set(targets))
        if unknown:
            raise BadInput(f"--host: {', '.join(unknown)} not in run {journal.run_id}")
        if hosts:
            targets = {name: targets[name] for name in hosts}
        source: Sequence[str] | Inventory = journal.plan.inventory
    else:
        source = load_inventory(inventory or [])
        targets = hosts_to_plan(source, limit)
    check_routes(targets)
    become = become_passwords(ask_become_pass, become_from_inventory, targets, source)
    plan = journal.plan if journal else None
    nodes = execution_nodes(execution_node, executor, plan)
    confirm(f"roll back {len(targets)} hosts?", yes)
    screen = Screen()
    started = screen.clock()
    printer = ProgressPrinter(screen.stderr, verbose=verbose)
    run_dir = journal.run_dir if journal else None
    with open_backend(
        executor, concurrency, known_hosts, become, run_dir, nodes=nodes, plan=plan
    ) as backend:
        outcomes = roll_back(backend, targets, journal, on_event=printer)
    failed = 0
    for name, (status, _, message) in outcomes.items():
        failed += status != "rolled_back"
        typer.echo(
            terminal_safe(f"{name}: {status}" + (f": {message}" if message else "")), err=True
        )
    plan = journal.plan if journal else None
    summary = rollback_summary(plan, outcomes, screen.clock() - started)
    if fmt is Format.json:
        sys.stdout.write(summary_json(summary))
    else:
        print_summary(summary, screen, SummaryFormat(fmt.value))
    return ExitCode.HOST_FAILED if failed else ExitCode.OK
