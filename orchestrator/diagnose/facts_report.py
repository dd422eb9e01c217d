"""`runc-rollout facts`: the facts of a fleet, gathered N hosts at a time, as a report (JSON or
a table) that `plan --facts` reads back for each host's "before"."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from orchestrator.diagnose.fleet import DiagnosticFleet
from orchestrator.diagnose.onhost import SshFleet
from orchestrator.errors import BadInput, FactsError
from orchestrator.host.facts import FACTS_LIMIT, facts_to_before
from orchestrator.host.session import (
    AuthenticationFailed,
    CommandTimeout,
    ConnectionLost,
    Executor,
    HostKeyRejected,
    HostUnreachable,
)
from orchestrator.models import (
    Daemon,
    ErrorKind,
    FactsReport,
    HostBefore,
    HostError,
    HostFacts,
    HostTask,
    SshTarget,
)
from orchestrator.util.fsutil import read_input
from orchestrator.util.textsafe import markdown_text, markup_safe, terminal_safe


def gather_fleet(
    executor: Executor, targets: Mapping[str, SshTarget], concurrency: int
) -> dict[str, HostFacts | Exception]:
    """Facts of every host over SSH, `concurrency` at a time; a host that fails gets its
    exception."""
    return facts_fleet(SshFleet(executor, concurrency), targets)


def facts_fleet(
    fleet: DiagnosticFleet, targets: Mapping[str, SshTarget]
) -> dict[str, HostFacts | Exception]:
    """Facts of every host, through either backend; a host that fails gets its exception."""
    return fleet.run(targets, dict.fromkeys(targets, HostTask(procedure="facts")), HostFacts)


# ---------------------------------------------------------------------------------------------
# Reports: the `facts` command's JSON (which `plan --facts FILE` can read back) and table


_ERROR_KINDS: tuple[tuple[type[Exception], ErrorKind], ...] = (
    (HostKeyRejected, "host_key"),  # before HostUnreachable: it is one
    (AuthenticationFailed, "auth"),
    (HostUnreachable, "unreachable"),
    (CommandTimeout, "timeout"),
    (ConnectionLost, "connection_lost"),
    (FactsError, "facts"),
)


def facts_report(results: Mapping[str, HostFacts | Exception]) -> FactsReport:
    hosts = {name: r for name, r in results.items() if isinstance(r, HostFacts)}
    errors = {
        name: HostError(kind=error_kind(r), message=str(r))
        for name, r in results.items()
        if not isinstance(r, HostFacts)
    }
    return FactsReport(hosts=hosts, errors=errors)


def read_facts_report(path: Path) -> FactsReport:
    """A report saved by `facts --format json`."""
    try:
        return FactsReport.model_validate_json(read_input(path, FACTS_LIMIT, "facts file"))
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise BadInput(f"{path} is not a facts report: {where}: {problem['msg']}") from None


def before_from_report(
    report: FactsReport, targets: Mapping[str, SshTarget]
) -> tuple[dict[str, HostBefore], dict[str, str], dict[str, str]]:
    """Each target's "before" from `report`; why the unreachable ones have none (or are not in
    the report); and the targets held back for what their facts say (no runc, one not to be
    trusted, a default runtime that is not runc), and why."""
    before: dict[str, HostBefore] = {}
    missing: dict[str, str] = {}
    held: dict[str, str] = {}
    for name in targets:
        facts = report.hosts.get(name)
        if facts is not None and facts.runc_unused is not None:
            held[name] = facts.runc_unused
        elif facts is not None:
            try:
                before[name] = facts_to_before(facts)
            except FactsError as error:
                held[name] = error.detail
        elif name in report.errors:
            missing[name] = report.errors[name].message
        else:
            missing[name] = "no facts for this host in the report"
    return before, missing, held


class ReportedError(Exception):
    """A host's error as another process reported it (the Ansible action's): its kind and
    message, as `error_kind` and `str` gave them there."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def error_kind(error: Exception) -> ErrorKind:
    if isinstance(error, ReportedError):
        return error.kind
    return next((kind for cls, kind in _ERROR_KINDS if isinstance(error, cls)), "error")


def facts_json(results: Mapping[str, HostFacts | Exception]) -> str:
    return facts_report(results).model_dump_json(indent=2) + "\n"


FACTS_COLUMNS = (
    "host", "runc", "version", "sha256", "sysctl", "at boot", "dockerd", "containerd", "stuck",
)  # fmt: skip


def _facts_rows(
    results: Mapping[str, HostFacts | Exception],
) -> tuple[list[tuple[str, str | None, list[str | None]]], list[str]]:
    """Per host: its name, the error kind of a host not gathered (else None) and its cells (None:
    no runc); and the notes below the table. Everything here came from the host: the views show
    it as text, never as markup."""
    rows: list[tuple[str, str | None, list[str | None]]] = []
    notes: list[str] = []
    for name, result in results.items():
        if not isinstance(result, HostFacts):
            rows.append((name, error_kind(result).upper(), []))
            notes.append(f"{name}: {result}")
            continue
        runc = result.runc
        boot = result.sysctl_persistent
        cells = [
            runc.path if runc else None,
            f"{runc.version or '?'} {_short(runc.commit)}" if runc else "",
            runc.sha256[:12] if runc and runc.sha256 else "",
            "?" if result.sysctl_runtime is None else str(result.sysctl_runtime),
            f"{boot.value} {boot.file.rpartition('/')[2]}:{boot.line}" if boot else "",
            _daemon(result.dockerd),
            _daemon(result.containerd),
            str(len(result.stuck)) if result.stuck else "",
        ]
        rows.append((name, None, cells))
        if result.runc_via:
            notes.append(f"{name}: {result.runc_source}")
        notes += [f"{name}: shadowed {b.path} ({b.version or '?'})" for b in result.shadowed]
        notes += [f"{name}: {warning}" for warning in result.warnings]
    return rows, notes


def facts_table(results: Mapping[str, HostFacts | Exception], width: int = 180) -> str:
    """The terminal view: one row per host, warnings and errors below the table."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, highlight=False)
    table = Table(show_lines=False)
    for column in FACTS_COLUMNS:
        table.add_column(column, no_wrap=True, justify="right" if column == "stuck" else "left")
    rows, notes = _facts_rows(results)
    for name, error, cells in rows:
        if error is not None:
            table.add_row(markup_safe(name), f"[red]{error}[/]", *[""] * 7)
            continue
        table.add_row(
            markup_safe(name), *("[red]none[/]" if c is None else markup_safe(c) for c in cells)
        )
    console.print(table)
    for note in notes:
        console.print(terminal_safe(note), markup=False)
    return buffer.getvalue()


def facts_markdown(results: Mapping[str, HostFacts | Exception]) -> str:
    """`facts --format markdown`: the same table and notes, for a ticket (host text escaped)."""
    rows, notes = _facts_rows(results)
    lines = [
        f"### runc-rollout facts: {len(rows)} hosts",
        "",
        "| " + " | ".join(FACTS_COLUMNS) + " |",
        "|" + "---|" * (len(FACTS_COLUMNS) - 1) + "---:|",
    ]
    for name, error, cells in rows:
        if error is not None:  # our own word for what went wrong; the reason is in the notes
            shown = [f"**{error}**", *[""] * 7]
        else:
            shown = [markdown_text("none" if c is None else c) for c in cells]
        lines.append("| " + " | ".join([markdown_text(name), *shown]) + " |")
    if notes:
        lines += ["", *(f"- {markdown_text(note)}" for note in notes)]
    return "\n".join(lines) + "\n"


def _short(commit: str | None) -> str:
    return "" if commit is None else commit[:7] if re.fullmatch(r"[0-9a-f]{40}", commit) else commit


def _daemon(daemon: Daemon | None) -> str:
    return "-" if daemon is None else f"{daemon.version or '?'} pid {daemon.pid}"
