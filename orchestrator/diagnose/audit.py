"""`audit`: where the fleet stands, from each host's facts (the report is pure: facts in,
report out, so it is tested on constructed facts).

Per host: the runc the runtime executes (path, upstream version, commit, package, sha256), the
daemons' versions, and its findings (`findings.py`). A fleet summary counts hosts per runc
version, per finding and per zone. Gathering the facts is `audit_fleet.py`; the views are
`audit_views.py`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import Field

from orchestrator.choices import FailOn
from orchestrator.diagnose.advisories import Advisory
from orchestrator.diagnose.changelog import (
    Changelog,
)
from orchestrator.diagnose.facts_report import facts_report
from orchestrator.diagnose.findings import (
    Finding,
    daemon_namespaces,
    describe_binary,
    fixed_by_distribution,
    host_findings,
    rank,
)
from orchestrator.models import (
    SEVERITIES,
    HostError,
    HostFacts,
    Model,
    ProbeResult,
    Severity,
)


class HostAudit(Model):
    host: str
    zone: str
    held_back: bool = False  # runc_rollout_skip: `plan` leaves it out, `audit` does not
    runc_path: str | None
    runc_file: str | None  # the file behind `runc_path` (symlinks resolved)
    runc_version: str | None
    runc_commit: str | None
    runc_package: str | None
    runc_package_version: str | None
    runc_sha256: str | None
    runc_via: str | None = None  # the shim (NVIDIA's) the runtime executes this runc through
    also_runc: list[str] = Field(default_factory=list)  # other runc files runtimes execute
    # dockerd/containerd running in a mount namespace of their own: PID, namespace, root
    daemon_namespaces: list[str] = Field(default_factory=list)
    dockerd_version: str | None
    containerd_version: str | None
    sysctl_runtime: int | None
    sysctl_at_boot: str | None  # "value file:line" of the setting that wins at boot
    stuck_pids: list[int]
    shadowed: list[str]  # other runc binaries on the runtime's PATH
    findings: list[Finding]
    warnings: list[str]
    probe: ProbeResult | None = None  # `audit --probe`: the incident probe of the installed runc
    # `audit --probe`: the probe of each other runc file the runtimes execute (CRI's BinaryName,
    # another Docker runtime's), by path: through containerd's client told to use that file.
    also_probes: dict[str, ProbeResult] = Field(default_factory=dict)
    # The distribution package's changelog: what was read, and the advisories it names as fixed.
    changelog: str | None = None
    fixed_by_distribution: list[str] = Field(default_factory=list)

    @property
    def active(self) -> list[Finding]:
        return [finding for finding in self.findings if not finding.ignored]


class FindingCount(Model):
    id: str
    severity: Severity
    title: str
    hosts: list[str]


class ZoneCount(Model):
    hosts: int = 0
    unreachable: int = 0
    with_findings: int = 0  # hosts with a finding that is not ignored
    worst: Severity | None = None


class FleetSummary(Model):
    hosts: int
    unreachable: int
    by_version: dict[str, int]
    by_finding: list[FindingCount]  # most severe first, then most hosts
    by_zone: dict[str, ZoneCount]


class Unreachable(Model):
    host: str
    zone: str
    error: HostError


class AuditReport(Model):
    schema_version: Literal[1] = 1
    fail_on: FailOn
    ignored: list[str]
    hosts: list[HostAudit]
    unreachable: list[Unreachable]
    summary: FleetSummary
    failing: list[str] = Field(default_factory=list)  # why the audit exits 1, one line each

    @property
    def failed(self) -> bool:
        return bool(self.failing)


def audit_host(
    facts: HostFacts,
    zone: str,
    advisories: Iterable[Advisory],
    *,
    ignore: Iterable[str] = (),
    held: bool = False,
    probe: ProbeResult | None = None,
    changelog: Changelog | None = None,
    also_probes: Mapping[str, ProbeResult] | None = None,
) -> HostAudit:
    """One host's audit; `probe`: the incident probe of its runc, `also_probes`: of each other
    runc file its runtimes execute (by path)."""
    ignored = set(ignore)
    advisories = tuple(advisories)
    runc = facts.runc
    boot = facts.sysctl_persistent
    probes = dict(also_probes or {})
    if runc is not None and probe is not None:
        probes[runc.file] = probe
    findings = [
        finding.model_copy(update={"ignored": True}) if finding.id in ignored else finding
        for finding in host_findings(facts, advisories, changelog, probes)
    ]
    return HostAudit(
        host=facts.host,
        zone=zone,
        held_back=held,
        runc_path=runc.path if runc else None,
        runc_file=runc.file if runc else None,
        runc_version=runc.version if runc else None,
        runc_commit=runc.commit if runc else None,
        runc_package=runc.package if runc else None,
        runc_package_version=runc.package_version if runc else None,
        runc_sha256=runc.sha256 if runc else None,
        runc_via=facts.runc_via,
        also_runc=[
            f"{i.runc.file} {describe_binary(i.runc)} ({i.source})" for i in facts.also_runc
        ],
        daemon_namespaces=daemon_namespaces(facts),
        dockerd_version=facts.dockerd.version if facts.dockerd else None,
        containerd_version=facts.containerd.version if facts.containerd else None,
        sysctl_runtime=facts.sysctl_runtime,
        sysctl_at_boot=f"{boot.value} {boot.file}:{boot.line}" if boot else None,
        stuck_pids=[process.pid for process in facts.stuck],
        shadowed=[f"{b.path} {describe_binary(b)}" for b in facts.shadowed],
        findings=findings,
        warnings=facts.warnings,
        probe=probe,
        also_probes=dict(also_probes or {}),
        changelog=_changelog_read(changelog),
        fixed_by_distribution=fixed_by_distribution(runc, advisories, changelog),
    )


def _changelog_read(changelog: Changelog | None) -> str | None:
    if changelog is None:
        return None
    if changelog.problem is not None:
        return f"{changelog.package}: not read: {changelog.problem}"
    return f"{changelog.describe()}: {len(changelog.entries)} entries read"


def build_report(
    results: Mapping[str, HostFacts | Exception],
    zones: Mapping[str, str],
    advisories: Iterable[Advisory],
    *,
    fail_on: FailOn = FailOn.none,
    ignore: Iterable[str] = (),
    held: Iterable[str] = (),
    probes: Mapping[str, ProbeResult] | None = None,
    changelogs: Mapping[str, Changelog] | None = None,
    also_probes: Mapping[str, Mapping[str, ProbeResult]] | None = None,
) -> AuditReport:
    """The audit of every host in `results` (facts, or the error that stopped gathering them),
    with the incident probe's result for the hosts in `probes` (and of their other runc files in
    `also_probes`, by host and path) and the runc package's changelog for those in
    `changelogs`."""
    advisories = tuple(advisories)
    ignored, held_names = sorted(set(ignore)), set(held)
    errors = facts_report(results).errors
    hosts = [
        audit_host(
            r,
            zones.get(name, "all"),
            advisories,
            ignore=ignored,
            held=name in held_names,
            probe=(probes or {}).get(name),
            changelog=(changelogs or {}).get(name),
            also_probes=(also_probes or {}).get(name),
        )
        for name, r in results.items()
        if isinstance(r, HostFacts)
    ]
    unreachable = [
        Unreachable(host=name, zone=zones.get(name, "all"), error=error)
        for name, error in errors.items()
    ]
    failing = [f"{item.host}: not audited: {item.error.message}" for item in unreachable]
    if fail_on is not FailOn.none:
        threshold = SEVERITIES.index(fail_on.value)
        for host in hosts:
            over = [f.id for f in host.active if rank(f.severity) >= threshold]
            if over:
                failing.append(f"{host.host}: {', '.join(over)} (--fail-on {fail_on.value})")
    return AuditReport(
        fail_on=fail_on,
        ignored=ignored,
        hosts=hosts,
        unreachable=unreachable,
        summary=summarize(hosts, unreachable),
        failing=failing,
    )


def version_label(host: HostAudit) -> str:
    """How the summary names a host's runc: upstream version, and the package when one owns it."""
    if host.runc_path is None:
        return "(no runc)"
    label = host.runc_version or "(unknown version)"
    if host.runc_package:
        label += f" [{host.runc_package} {host.runc_package_version or '?'}]"
    return label


def summarize(hosts: list[HostAudit], unreachable: list[Unreachable]) -> FleetSummary:
    versions = Counter(version_label(host) for host in hosts)
    by_finding: dict[str, FindingCount] = {}
    zones: dict[str, ZoneCount] = {}
    for host in hosts:
        zone = zones.setdefault(host.zone, ZoneCount())
        zone.hosts += 1
        active = host.active
        if active:
            zone.with_findings += 1
            worst = max((f.severity for f in active), key=rank)
            if zone.worst is None or rank(worst) > rank(zone.worst):
                zone.worst = worst
        for finding in active:
            entry = by_finding.setdefault(
                finding.id,
                FindingCount(
                    id=finding.id, severity=finding.severity, title=finding.title, hosts=[]
                ),
            )
            entry.hosts.append(host.host)
    for item in unreachable:
        zone = zones.setdefault(item.zone, ZoneCount())
        zone.hosts += 1
        zone.unreachable += 1
    return FleetSummary(
        hosts=len(hosts) + len(unreachable),
        unreachable=len(unreachable),
        by_version=dict(sorted(versions.items(), key=lambda item: (-item[1], item[0]))),
        by_finding=sorted(
            by_finding.values(), key=lambda f: (-rank(f.severity), -len(f.hosts), f.id)
        ),
        by_zone=dict(sorted(zones.items())),
    )
