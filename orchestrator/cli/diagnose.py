"""`facts`, `audit` and `unstick`: fleet diagnostics for the incident."""

import sys
from typing import Annotated

import typer

from orchestrator.backends.reach import check_routes, diagnostic_fleet
from orchestrator.choices import DEFAULT_CONCURRENCY, ExecutorName, FailOn
from orchestrator.cli.advisories import AdvisoriesOption
from orchestrator.cli.options import (
    AskBecomePassOption,
    BecomeFromInventoryOption,
    ConcurrencyOption,
    Format,
    InventoryOption,
    JsonFlagOption,
    KnownHostsOption,
    LimitOption,
    ProbeTimeoutOption,
    chosen_format,
    format_option,
)
from orchestrator.cli.support import become_passwords, become_prompt
from orchestrator.errors import ExitCode

DiagnosticExecutorOption = Annotated[
    ExecutorName,
    typer.Option(
        "--executor",
        help="How hosts are reached: ssh (built in), or ansible (playbooks/diagnose.yml through "
        "ansible-runner, over Ansible's connection). Both run the same scripts on the hosts.",
    ),
]


def facts(
    inventory: InventoryOption,
    limit: LimitOption = None,
    fmt: Annotated[
        Format,
        format_option(
            "text: a table; markdown: the same for a ticket; json: the report `plan --facts` reads"
        ),
    ] = Format.text,
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    become_from_inventory: BecomeFromInventoryOption = False,
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    executor: DiagnosticExecutorOption = ExecutorName.ssh,
) -> int:
    """Gather each host's runc, daemons, sysctl and rollout record (read-only)."""
    from orchestrator.diagnose.facts_report import (
        facts_fleet,
        facts_json,
        facts_markdown,
        facts_table,
    )
    from orchestrator.inventory.read import load_inventory
    from orchestrator.plan.planner import hosts_to_plan

    loaded = load_inventory(inventory)
    targets = hosts_to_plan(loaded, limit)
    check_routes(targets)
    become = become_passwords(ask_become_pass, become_from_inventory, targets, loaded)
    with diagnostic_fleet(executor, known_hosts, become, concurrency) as fleet:
        results = facts_fleet(fleet, targets)
    views = {Format.json: facts_json, Format.markdown: facts_markdown, Format.text: facts_table}
    sys.stdout.write(views[fmt](results))
    failed = [name for name, result in results.items() if isinstance(result, Exception)]
    return ExitCode.HOST_FAILED if failed else ExitCode.OK


def audit(
    inventory: InventoryOption,
    limit: LimitOption = None,
    fmt: Annotated[
        Format, format_option("text: a table; markdown: for a ticket; json: every finding")
    ] = Format.text,
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
        str | None,
        typer.Option("--domain-key", help="Host variable naming the zone (hosts per zone)."),
    ] = None,
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
    become_from_inventory: BecomeFromInventoryOption = False,
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    advisories_file: AdvisoriesOption = None,
    executor: DiagnosticExecutorOption = ExecutorName.ssh,
) -> int:
    """Audit each host's runc (known bugs, advisories), the sysctl and hung runc init (read-only
    unless --probe).

    Exit 1 when a host could not be audited or a finding at or above --fail-on is present.
    """
    from orchestrator import api
    from orchestrator.diagnose.audit_views import report_json as audit_json
    from orchestrator.diagnose.audit_views import report_markdown, report_table

    result = api.audit(
        inventory,
        limit=limit,
        fail_on=fail_on,
        ignore=ignore or (),
        domain_key=domain_key,
        probe=probe,
        probe_timeout=probe_timeout,
        advisories_file=advisories_file,
        known_hosts=known_hosts,
        become_password=become_prompt(ask_become_pass),
        become_from_inventory=become_from_inventory,
        concurrency=concurrency,
        executor=executor,
    )
    views = {Format.json: audit_json, Format.markdown: report_markdown, Format.text: report_table}
    sys.stdout.write(views[fmt](result.report))
    return result.exit_code


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
    fmt: Annotated[
        Format,
        format_option("text: a line per host and process; markdown: the same as a list; json"),
    ] = Format.text,
    json_flag: JsonFlagOption = False,
    known_hosts: KnownHostsOption = None,
    ask_become_pass: AskBecomePassOption = False,
    become_from_inventory: BecomeFromInventoryOption = False,
    concurrency: ConcurrencyOption = DEFAULT_CONCURRENCY,
    executor: DiagnosticExecutorOption = ExecutorName.ssh,
) -> int:
    """Free runc init hung the incident's way (in pipe_write, writing its seccomp program into
    a pipe only it holds) by draining that pipe alone; other processes and pipes are never
    touched. Hosts need only POSIX sh. Dry run unless --yes.

    Exit 1 when a host could not be examined or a drained process did not go on.
    """
    from orchestrator.diagnose.audit_fleet import audit_targets
    from orchestrator.diagnose.unstick import failed_hosts, report_lines, unstick_fleet
    from orchestrator.diagnose.unstick import report_json as unstick_json
    from orchestrator.diagnose.unstick import report_markdown as unstick_markdown
    from orchestrator.inventory.read import load_inventory
    from orchestrator.util.textsafe import terminal_safe

    fmt = chosen_format(fmt, json_flag, "unstick")
    loaded = load_inventory(inventory)
    targets, _, _ = audit_targets(loaded, limit)
    check_routes(targets)
    become = become_passwords(ask_become_pass, become_from_inventory, targets, loaded)
    with diagnostic_fleet(executor, known_hosts, become, concurrency) as fleet:
        results = unstick_fleet(
            fleet,
            targets,
            drain=yes,
            max_bytes=max_bytes,
            max_seconds=max_seconds,
        )
    if fmt is Format.json:
        sys.stdout.write(unstick_json(results))
    elif fmt is Format.markdown:
        sys.stdout.write(unstick_markdown(results))
    else:
        sys.stdout.write("\n".join(map(terminal_safe, report_lines(results))) + "\n")
    return ExitCode.HOST_FAILED if failed_hosts(results) else ExitCode.OK
