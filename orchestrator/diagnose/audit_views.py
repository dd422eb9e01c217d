"""`audit`'s views: JSON, the terminal's tables and a Markdown document for a ticket."""

from __future__ import annotations

import io
from collections import Counter

from rich.console import Console
from rich.table import Table

from orchestrator.diagnose.audit import AuditReport, FleetSummary
from orchestrator.diagnose.findings import Finding, short_commit
from orchestrator.models import (
    SEVERITIES,
    Severity,
)
from orchestrator.util.textsafe import markup_safe as escape

_STYLE: dict[Severity, str] = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
}


def report_json(report: AuditReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


def report_table(report: AuditReport, width: int = 200) -> str:
    """The terminal view: one row per host, each host's findings, then the fleet summary."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, highlight=False)
    table = Table(title="runc audit", title_justify="left")
    columns = ("host", "zone", "runc", "version", "package", "sha256", "sysctl", "at boot")
    for column in (*columns, "dockerd", "containerd", "stuck", "findings"):
        table.add_column(column, no_wrap=True)
    for host in report.hosts:
        texts = [
            host.host + (" (held back)" if host.held_back else ""),
            host.zone,
            (host.runc_path or "none") + (f" via {host.runc_via}" if host.runc_via else ""),
            f"{host.runc_version or '?'} {short_commit(host.runc_commit)}"
            if host.runc_path
            else "",
            f"{host.runc_package} {host.runc_package_version}" if host.runc_package else "-",
            (host.runc_sha256 or "")[:12],
            "?" if host.sysctl_runtime is None else str(host.sysctl_runtime),
            (host.sysctl_at_boot or "-").replace("/etc/sysctl.d/", ""),
            host.dockerd_version or "-",
            host.containerd_version or "-",
            str(len(host.stuck_pids)) if host.stuck_pids else "",
        ]
        table.add_row(*map(escape, texts), _counts(host.active))
    for item in report.unreachable:
        kind = f"[red]{item.error.kind.upper()}[/]"
        table.add_row(escape(item.host), escape(item.zone), kind, *[""] * 9)
    console.print(table)
    for host in report.hosts:
        if host.findings or host.warnings or host.probe or host.changelog:
            console.print(f"\n[bold]{escape(host.host)}[/]")
        if host.probe is not None:
            console.print(f"  [bold]probe[/] {escape(host.probe.summary())}")
        for path, result in host.also_probes.items():
            console.print(f"  [bold]probe[/] {escape(path)}: {escape(result.summary())}")
        if host.changelog is not None:
            console.print(f"  [dim]changelog[/] {escape(host.changelog)}")
        for line in host.fixed_by_distribution:
            console.print(f"  [green]   fixed[/] {escape(line)}")
        for finding in host.findings:
            console.print(f"  {_tag(finding)} {escape(_finding_line(finding))}")
        for warning in host.warnings:
            console.print(f"  [dim]warning[/] {escape(warning)}")
    for item in report.unreachable:
        console.print(f"\n[bold]{escape(item.host)}[/]: [red]{escape(item.error.message)}[/]")
    console.print()
    _summary_tables(console, report.summary)
    _verdict(console, report)
    return buffer.getvalue()


def report_markdown(report: AuditReport) -> str:
    """A document for a ticket or a change review."""
    summary = report.summary
    lines = [
        "# runc audit",
        "",
        f"{summary.hosts} hosts, {summary.unreachable} unreachable. "
        f"Fails on: {report.fail_on.value}."
        + (f" Ignored: {', '.join(report.ignored)}." if report.ignored else ""),
        "",
        "## Fleet",
        "",
        "| runc version | hosts |",
        "|---|---:|",
        *[f"| {_cell(v)} | {n} |" for v, n in summary.by_version.items()],
        "",
        "| finding | severity | hosts | title |",
        "|---|---|---:|---|",
        *[
            f"| {f.id} | {f.severity} | {len(f.hosts)} | {_cell(f.title)} |"
            for f in summary.by_finding
        ],
        "",
        "| zone | hosts | unreachable | with findings | worst |",
        "|---|---:|---:|---:|---|",
        *[
            f"| {_cell(z)} | {c.hosts} | {c.unreachable} | {c.with_findings} | {c.worst or '-'} |"
            for z, c in summary.by_zone.items()
        ],
        "",
        "## Hosts",
    ]
    for host in report.hosts:
        runc = f"runc `{host.runc_path or 'none'}` {host.runc_version or '?'}"
        if host.runc_via:
            runc += f" (behind `{host.runc_via}`, which is not runc and is never swapped)"
        runc += "".join(f"; also runc `{also}`" for also in host.also_runc)
        runc += f" commit {host.runc_commit or '?'}"
        if host.runc_package:
            runc += f", package {host.runc_package} {host.runc_package_version}"
        if host.runc_sha256:
            runc += f", sha256 `{host.runc_sha256}`"
        lines += [
            "",
            f"### {host.host}" + (" (held back)" if host.held_back else ""),
            "",
            f"- zone {host.zone}; {runc}",
            f"- dockerd {host.dockerd_version or '-'}, containerd {host.containerd_version or '-'}"
            f"; fs.pipe-user-pages-soft {host.sysctl_runtime} at runtime, "
            f"{host.sysctl_at_boot or 'not set'} at boot",
        ]
        if host.probe is not None:
            lines.append(f"- {host.probe.summary()}")
        lines += [f"- {path}: {result.summary()}" for path, result in host.also_probes.items()]
        if host.changelog is not None:
            lines.append(f"- changelog: {host.changelog}")
        lines += [f"- {line}" for line in host.fixed_by_distribution]
        lines += [
            f"- **{f.severity}**{' (ignored)' if f.ignored else ''} {_finding_line(f)}"
            for f in host.findings
        ]
        lines += [f"- warning: {warning}" for warning in host.warnings]
    if report.unreachable:
        lines += ["", "## Not audited", ""]
        lines += [f"- {item.host}: {item.error.message}" for item in report.unreachable]
    lines += ["", "## Verdict", ""]
    lines += [f"- {line}" for line in report.failing] or ["- pass"]
    return "\n".join(lines) + "\n"


def _summary_tables(console: Console, summary: FleetSummary) -> None:
    versions = Table(title="hosts per runc version", title_justify="left")
    versions.add_column("runc")
    versions.add_column("hosts", justify="right")
    for version, count in summary.by_version.items():
        versions.add_row(escape(version), str(count))
    console.print(versions)
    findings = Table(title="hosts per finding", title_justify="left")
    for column in ("finding", "severity", "hosts", "title"):
        findings.add_column(column, justify="right" if column == "hosts" else "left")
    for finding in summary.by_finding:
        findings.add_row(
            finding.id,
            f"[{_STYLE[finding.severity]}]{finding.severity}[/]",
            str(len(finding.hosts)),
            escape(finding.title),
        )
    console.print(findings)
    zones = Table(title="hosts per zone", title_justify="left")
    for column in ("zone", "hosts", "unreachable", "with findings", "worst"):
        zones.add_column(column, justify="left" if column in ("zone", "worst") else "right")
    for zone, tally in summary.by_zone.items():
        zones.add_row(
            escape(zone),
            str(tally.hosts),
            str(tally.unreachable),
            str(tally.with_findings),
            tally.worst or "-",
        )
    console.print(zones)


def _verdict(console: Console, report: AuditReport) -> None:
    if not report.failing:
        console.print(f"audit: pass (--fail-on {report.fail_on.value})")
        return
    console.print(f"audit: FAIL ({len(report.failing)})")
    for line in report.failing:
        console.print(f"  {escape(line)}")


def _finding_line(finding: Finding) -> str:
    text = f"{finding.id}: {finding.title}. {finding.detail}"
    return text + (f" <{finding.source}>" if finding.source else "")


def _tag(finding: Finding) -> str:
    label = f"[{_STYLE[finding.severity]}]{finding.severity:>8}[/]"
    return label + (" [dim](ignored)[/]" if finding.ignored else "")


def _counts(findings: list[Finding]) -> str:
    counts = Counter(finding.severity for finding in findings)
    text = " ".join(
        f"[{_STYLE[s]}]{counts[s]}{s[0].upper()}[/]" for s in reversed(SEVERITIES) if counts[s]
    )
    return text or "[green]none[/]"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
