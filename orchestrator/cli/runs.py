"""`apply`, `resume`, `status`, `rollback`, `sign`, `verify-plan`: carrying out a reviewed plan."""

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.choices import DEFAULT_CONCURRENCY, ExecutorName, PushName
from orchestrator.cli.options import (
    AllowedSignersOption,
    AskBecomePassOption,
    BecomeFromInventoryOption,
    ConcurrencyOption,
    ExecutionNodeOption,
    ExecutorOption,
    ExpectHashOption,
    Format,
    JsonFlagOption,
    KnownHostsOption,
    LimitOption,
    NotifyOption,
    NoWaitOption,
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
from orchestrator.cli.support import become_prompt, confirmation
from orchestrator.errors import BadInput, ExitCode

if TYPE_CHECKING:
    from orchestrator.api import RunResult


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
    diff: Annotated[
        bool,
        typer.Option(
            "--diff",
            "-D",
            help="With --check: each change as before (-) and after (+): every runc file, the "
            "runtime sysctl, each sysctl file's line (Ansible's --diff).",
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
    from orchestrator import api
    from orchestrator.util.textsafe import terminal_safe

    show = ShowOptions.of_run(verbose, fmt, json_flag, "apply")
    if diff and not dry_run:
        raise BadInput("--diff shows what --check would change: give it with --check")
    if dry_run:
        checked = api.check(
            plan_file,
            limit=limit,
            concurrency=concurrency,
            known_hosts=known_hosts,
            become_password=become_prompt(ask_become_pass),
            become_from_inventory=become_from_inventory,
            expect_hash=expect_hash,
            allowed_signers=allowed_signers,
            required_signatures=required_signatures,
            signatures=signatures,
            diff=diff,
        )
        for line in checked.lines:
            typer.echo(terminal_safe(line))
        return checked.exit_code
    result = api.apply(
        plan_file,
        runs_dir=runs_dir,
        limit=limit,
        executor=executor,
        concurrency=concurrency,
        known_hosts=known_hosts,
        become_password=become_prompt(ask_become_pass),
        become_from_inventory=become_from_inventory,
        expect_hash=expect_hash,
        allowed_signers=allowed_signers,
        required_signatures=required_signatures,
        signatures=signatures,
        execution_nodes=execution_node or (),
        push=push,
        wait_for_window=not no_wait,
        notify=notify or (),
        confirm=confirmation(yes),
        verbose=show.verbose,
        json_events=show.json_events,
    )
    return rendered_run(result, show)


def rendered_run(result: "RunResult", show: ShowOptions) -> int:
    """apply's and resume's end: the summary, the run's status and how to go on."""
    from orchestrator.view import Screen, print_summary

    if result.summary is None:
        return result.exit_code
    print_summary(result.summary, Screen(), show.fmt, json_events=show.json_events)
    code = int(result.exit_code)
    typer.echo(f"run {result.run_id}: {result.status} (exit {code})", err=True)
    if result.needs_resume:
        where = shlex.quote(str(result.run_dir))
        typer.echo(f"continue with: runc-rollout resume {where}", err=True)
    return code


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
    from orchestrator.run.approved import run_directory
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
    from orchestrator import api

    show = ShowOptions.of_run(verbose, fmt, json_flag, "resume")
    result = api.resume(
        run,
        runs_dir=runs_dir,
        executor=executor,
        concurrency=concurrency,
        known_hosts=known_hosts,
        become_password=become_prompt(ask_become_pass),
        become_from_inventory=become_from_inventory,
        expect_hash=expect_hash,
        allowed_signers=allowed_signers,
        required_signatures=required_signatures,
        execution_nodes=execution_node or (),
        push=push,
        wait_for_window=not no_wait,
        notify=notify or (),
        confirm=confirmation(yes),
        verbose=show.verbose,
        json_events=show.json_events,
    )
    return rendered_run(result, show)


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
    from orchestrator import api
    from orchestrator.choices import SummaryFormat
    from orchestrator.util.textsafe import terminal_safe
    from orchestrator.view import Screen, print_summary
    from orchestrator.view.summary import summary_json

    result = api.rollback(
        run,
        inventory=inventory or (),
        limit=limit,
        hosts=hosts or (),
        runs_dir=runs_dir,
        executor=executor,
        concurrency=concurrency,
        known_hosts=known_hosts,
        become_password=become_prompt(ask_become_pass),
        become_from_inventory=become_from_inventory,
        expect_hash=expect_hash,
        allowed_signers=allowed_signers,
        required_signatures=required_signatures,
        execution_nodes=execution_node or (),
        confirm=confirmation(yes),
        verbose=verbose,
    )
    for name, (status, _, message) in result.outcomes.items():
        typer.echo(
            terminal_safe(f"{name}: {status}" + (f": {message}" if message else "")), err=True
        )
    if fmt is Format.json:
        sys.stdout.write(summary_json(result.summary))
    else:
        print_summary(result.summary, Screen(), SummaryFormat(fmt.value))
    return result.exit_code
