"""`audit`: where the fleet stands, from each host's facts (read-only, one round trip per host).

Per host: the runc the runtime executes (path, upstream version, commit, package, sha256), the
daemons' versions, and findings: the rc93 pipe hang and runc's security advisories by version
range (`data/advisories.json`), `fs.pipe-user-pages-soft` off its default at runtime or at boot,
`runc init` processes blocked writing a pipe, other runc binaries on the runtime's PATH. A fleet
summary counts hosts per runc version, per finding and per zone.

Everything but `audit_fleet` is pure: facts in, report out, so it is tested on constructed facts.
A distribution's runc may carry backported fixes its version string does not show: the audit
reads the package's own changelog on the host (`changelog.py`); an advisory it names as fixed is
reported "fixed by the distribution (changelog)", not as a finding, and one it does not name is
worded "by upstream version; the distribution may have fixed it".
"""

from __future__ import annotations

import io
import re
import secrets
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Literal

from pydantic import Field, ValidationError
from rich.console import Console
from rich.table import Table

from orchestrator.backends.group import run_on_hosts
from orchestrator.choices import PIPE_USER_PAGES_SOFT_DEFAULT, FailOn
from orchestrator.diagnose.advisories import RC93_HANG, Advisory
from orchestrator.diagnose.changelog import (
    Changelog,
    distribution_build,
    package_of,
    read_changelog,
)
from orchestrator.diagnose.facts_report import facts_report
from orchestrator.diagnose.versions import compare_versions, parse_version
from orchestrator.host.facts import gather_facts
from orchestrator.host.procedure import executed_runcs as executed_runcs_of
from orchestrator.host.procedure import run_probe
from orchestrator.host.session import Executor
from orchestrator.inventory.patterns import select_hosts
from orchestrator.models import (
    SEVERITIES,
    HostError,
    HostFacts,
    HostRecord,
    Inventory,
    Model,
    ProbeResult,
    RecordedPackage,
    RuncBinary,
    Severity,
    SshTarget,
    VerifySpec,
    WaveOptions,
)
from orchestrator.plan.planner import (
    check_domain_key,
    check_domain_key_used,
    domain_of,
    held_back,
    host_verify_spec,
    ssh_target,
)
from orchestrator.util.textsafe import markup_safe as escape

MAY_HAVE_FIXED = "by upstream version; the distribution may have fixed it"


# Findings that are not advisories (`--ignore` accepts these and the advisories' ids).
CHECK_IDS = (
    "runc-not-found",
    "runc-not-used",
    "runc-not-package-content",
    "runc-version-unknown",
    "stuck-runc-init",
    "sysctl-raised",
    "sysctl-lowered",
    "sysctl-raised-at-boot",
    "sysctl-lowered-at-boot",
    "shadowed-runc",
    "daemon-mount-namespace",
    "runc-reverted",
    "package-newer",
)


def rank(severity: Severity) -> int:
    return SEVERITIES.index(severity)


# ---------------------------------------------------------------------------------------------
# Advisories


def finding_ids(advisories: Iterable[Advisory]) -> set[str]:
    """Every id a finding can have."""
    return {advisory.id for advisory in advisories} | set(CHECK_IDS)


# ---------------------------------------------------------------------------------------------
# Findings


class Finding(Model):
    id: str  # an advisory's id, or one of CHECK_IDS
    severity: Severity
    title: str
    detail: str
    source: str | None = None
    check_changelog: bool = False  # a distribution package: the version alone does not decide
    ignored: bool = False  # listed in `--ignore`: reported, never fails the audit


PROBE_WOULD_DECIDE = "decided by the version alone; `audit --probe` runs the incident's trigger"


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


def probe_decides(findings: list[Finding], probe: ProbeResult | None) -> list[Finding]:
    """The rc93 hang decided by the incident probe when it decided (present when the installed
    runc hung, absent when it passed), else by the version, which says so."""
    by_version = [finding for finding in findings if finding.id == RC93_HANG]
    others = [finding for finding in findings if finding.id != RC93_HANG]
    if probe is not None and probe.outcome == "hung":
        found = Finding(
            id=RC93_HANG,
            severity="high",
            title="runc init hangs under the incident's trigger (probe)",
            detail=f"{probe.summary()}; the installed runc has the rc93 pipe hang whatever its "
            "version says",
            source=by_version[0].source if by_version else None,
        )
        return sorted([found, *others], key=lambda finding: -rank(finding.severity))
    if probe is not None and probe.outcome == "passed":
        return others
    why = probe.summary() if probe is not None else PROBE_WOULD_DECIDE
    decided = [f.model_copy(update={"detail": f"{f.detail} ({why})"}) for f in by_version]
    return sorted([*decided, *others], key=lambda finding: -rank(finding.severity))


def host_findings(
    facts: HostFacts,
    advisories: Iterable[Advisory],
    changelog: Changelog | None = None,
    probes: Mapping[str, ProbeResult] | None = None,
) -> list[Finding]:
    """Every finding of one host, most severe first; `changelog`: its runc package's. With
    `probes` (by runc file; `audit` passes them, an empty mapping without `--probe`), the rc93
    hang of each runc the runtimes execute is decided by that file's own probe
    (`probe_decides`), else by its version."""

    def decided(found: list[Finding], binary: RuncBinary) -> list[Finding]:
        return found if probes is None else probe_decides(found, probes.get(binary.file))

    findings: list[Finding] = []
    runc = facts.runc
    if facts.runc_unused is not None:
        findings.append(
            Finding(
                id="runc-not-used",
                severity="low",
                title="the default runtime is not runc",
                detail=f"{facts.runc_unused} ({facts.runc_source}); runc's bugs do not touch "
                "the containers it runs, and `plan` holds the host back",
            )
        )
    elif runc is None:
        findings.append(
            Finding(
                id="runc-not-found",
                severity="medium",
                title="no runc found where the container runtime looks",
                detail=f"{facts.runc_source}; PATH {':'.join(facts.runtime_path)}",
            )
        )
    else:
        # A package's changelog says nothing of a file that is not the package's.
        packaged = changelog if runc.package_intact is not False else None
        findings += decided(_version_findings(runc, advisories, packaged), runc)
    record = _record(facts)
    rolled_out = (
        record is not None
        and record.outcome == "done"
        and runc is not None
        and runc.sha256 == record.target_sha256
    )
    if runc is not None and runc.package and runc.package_intact is False and not rolled_out:
        findings.append(
            Finding(
                id="runc-not-package-content",
                severity="medium",
                title="runc is not its package's file",
                detail=f"{runc.file} belongs to {runc.package} {runc.package_version or ''}, "
                "but the package manager's checksum of it disagrees (swapped by hand?): the "
                "package's backported fixes say nothing about it, its version does",
            )
        )
    elif runc is not None and runc.package and runc.package_intact is False and record:
        findings.append(_rolled_out_package(runc, record))
    if record is not None:
        findings += rollout_findings(facts, record)
    for item in facts.also_runc:  # kubelet's runc (CRI's BinaryName), other Docker runtimes
        for finding in decided(_version_findings(item.runc, advisories, None), item.runc):
            where = f"also {item.runc.file} ({item.source}): {finding.detail}"
            same = next((i for i, f in enumerate(findings) if f.id == finding.id), None)
            if same is None:
                findings.append(finding.model_copy(update={"detail": where}))
            else:
                detail = f"{findings[same].detail}; {where}"
                findings[same] = findings[same].model_copy(update={"detail": detail})
    findings += _sysctl_findings(facts, PIPE_USER_PAGES_SOFT_DEFAULT)
    if facts.stuck:
        listed = ", ".join(
            f"PID {p.pid} ({p.state} in {p.wchan}{_age(facts, p.start_time)})" for p in facts.stuck
        )
        findings.append(
            Finding(
                id="stuck-runc-init",
                severity="critical",
                title="runc init blocked writing a pipe, as in the incident",
                detail=f"{listed}; `runc-rollout unstick` checks the whole signature and frees "
                "the processes that match it",
            )
        )
    findings += _namespace_findings(facts)
    differing = [b for b in facts.shadowed if runc is None or b.sha256 != runc.sha256]
    if differing:
        active = runc.path if runc else "none"
        others = "; ".join(f"{b.path} {_describe(b)}" for b in differing)
        findings.append(
            Finding(
                id="shadowed-runc",
                severity="low",
                title="other runc binaries on the runtime's PATH",
                detail=f"{others} (the runtime executes {active}; a shell or `docker info` may "
                "report another one)",
            )
        )
    return sorted(findings, key=lambda finding: -rank(finding.severity))


def daemon_namespaces(facts: HostFacts) -> list[str]:
    """Each daemon that runs in a mount namespace other than the facts session's, one line."""
    return [
        f"{name} PID {daemon.pid} in {daemon.mount_ns} (its files seen through {daemon.root})"
        for name, daemon in (("dockerd", facts.dockerd), ("containerd", facts.containerd))
        if daemon is not None and daemon.mount_ns is not None
    ]


def _namespace_findings(facts: HostFacts) -> list[Finding]:
    """Daemons in a mount namespace of their own: where their runc lives, and whether `plan`
    can swap it (only the very file this session sees at that path) or refuses, and why."""
    daemons = daemon_namespaces(facts)
    if not daemons:
        return []
    runcs = [facts.runc] if facts.runc is not None else []
    runcs += [item.runc for item in facts.also_runc]
    problems = [b.namespace_problem for b in runcs if b.namespace_problem is not None]
    seen = [f"{b.file} seen at {b.seen_at}" for b in runcs if b.seen_at is not None]
    where = "; ".join(daemons) + (f"; runc {', '.join(seen)}" if seen else "")
    if problems:
        return [
            Finding(
                id="daemon-mount-namespace",
                severity="medium",
                title="the daemons run in a mount namespace of their own: runc not swappable",
                detail=f"{where}; {'; '.join(problems)}; `plan` holds the host back",
            )
        ]
    return [
        Finding(
            id="daemon-mount-namespace",
            severity="low",
            title="the daemons run in a mount namespace of their own",
            detail=f"{where}; the runc they execute is the file this session sees at the same "
            "path, so `plan` swaps it here",
        )
    ]


def _record(facts: HostFacts) -> HostRecord | None:
    """The host-side record of the last rollout, if it is one this audit can read."""
    if not facts.record_json or not facts.record_json.strip():
        return None
    try:
        return HostRecord.model_validate_json(facts.record_json)
    except ValidationError:
        return None


def _rolled_out_package(runc: RuncBinary, record: HostRecord) -> Finding:
    """`runc-not-package-content`, explained: a rollout put the file there on purpose."""
    item = record.package_of(runc.file)
    tool = "rpm -V" if runc.package_manager == "rpm" else "dpkg --verify"
    if item is not None and item.policy == "divert" and item.diverted_to:
        how = f"the package's own file is at {item.diverted_to} (a local diversion)"
    elif item is not None and item.policy == "hold" and item.hold_file:
        how = f"the package is held (exclude= in {item.hold_file})"
    else:
        how = "the package is neither diverted nor held: its next install puts its runc back"
    return Finding(
        id="runc-not-package-content",
        severity="low",
        title="runc is not its package's file: a rollout put it there",
        detail=f"{runc.file} belongs to {runc.package} {runc.package_version or ''}; runc-rollout "
        f"run {record.run_id} replaced it, so {tool} reports it changed; {how}",
    )


def rollout_findings(facts: HostFacts, record: HostRecord) -> list[Finding]:
    """What became of the last finished rollout on this host (its host-side record):
    `runc-reverted`, a runc it swapped is no longer what it put there; `package-newer`, the
    package whose runc it diverted or held is now newer than the rolled-out runc."""
    if record.outcome != "done":
        return []
    binaries = {b.file: b for b in [*executed_runcs_of(facts), *facts.shadowed]}
    findings = []
    for path, _ in record.runcs:
        now = binaries.get(path)
        if now is None or now.sha256 == record.target_sha256:
            continue
        item = record.package_of(path)
        if now.package and now.package_intact:
            who = f"its package {now.package} {now.package_version or ''} put its own file back"
            if item is not None and item.policy == "leave":
                who += " (the plan's package policy was leave)"
        else:
            who = "a person or another tool replaced it"
        # Replaced by a runc no older than the one rolled out (the operator returned to the
        # distribution's newer package, as `package-newer` suggests): said, not alarmed.
        no_older = _no_older(now.version, record.target_version)
        findings.append(
            Finding(
                id="runc-reverted",
                severity="low" if no_older else "high",
                title="runc is no longer the one a rollout put there"
                + (" (replaced by a version no older)" if no_older else ""),
                detail=f"{path} is {str(now.sha256)[:12]} {now.version or '?'}, not the "
                f"{record.target_sha256[:12]} {record.target_version or ''} run "
                f"{record.run_id} put there: {who}",
            )
        )
    for item in record.packages:
        now = binaries.get(item.path)
        if item.policy == "leave" or now is None or now.sha256 != record.target_sha256:
            continue
        package_version = (now.package_version or "").split(":", 1)[-1]
        if not package_version or now.version is None:
            continue
        try:
            newer = compare_versions(package_version, now.version) > 0
        except ValueError:
            continue
        if not newer:
            continue
        findings.append(
            Finding(
                id="package-newer",
                severity="low",
                title="the package's runc is newer than the rolled-out one",
                detail=f"{item.package} {now.package_version} is newer than the rolled-out runc "
                f"{now.version} at {item.path}: the {item.policy} may go, and the host return "
                f"to its distribution's updates: {drop_command(item)}",
            )
        )
    return findings


def _no_older(version: str | None, target: str | None) -> bool:
    """Whether runc `version` is known to be no older than the rolled-out `target`."""
    if version is None or target is None:
        return False
    try:
        return compare_versions(version, target) >= 0
    except ValueError:
        return False


def drop_command(item: RecordedPackage) -> str:
    """The shell commands that end a diversion or hold and give the package its file back."""
    path = shlex.quote(item.path)
    if item.policy == "divert" and item.diverted_to:
        diverted = shlex.quote(item.diverted_to)
        new = shlex.quote(item.path + ".new")
        return (
            f"`cp -p {diverted} {new} && mv -f {new} {path} && "
            f"dpkg-divert --local --no-rename --remove {path} && rm -f {diverted}`"
        )
    if item.policy == "hold" and item.hold_file:
        where = shlex.quote(item.hold_file)
        return (
            f"remove {item.package} from the exclude= line of {where}, then "
            f"`dnf upgrade {shlex.quote(item.package)}` (or yum)"
        )
    return "(nothing to drop)"


def _version_findings(
    runc: RuncBinary, advisories: Iterable[Advisory], changelog: Changelog | None
) -> list[Finding]:
    findings = []
    if runc.version is None or parse_version(runc.version) is None:
        findings.append(
            Finding(
                id="runc-version-unknown",
                severity="medium",
                title="runc did not report a version this audit understands",
                detail=f"{runc.path} --version exited {runc.version_exit}: "
                f"{runc.version_output.splitlines()[0] if runc.version_output else 'no output'}",
            )
        )
    distribution = distribution_of(runc)
    for advisory in advisories:  # without a version, only a known commit can match
        if not advisory.affects_build(runc.version, runc.commit):
            continue
        detail = f"runc {_describe(runc)}; fixed in {', '.join(advisory.fixed_in)}"
        fixed_at = changelog.fixed_at(advisory) if changelog is not None else None
        if fixed_at is not None and advisory.id != RC93_HANG:
            continue  # `fixed_by_distribution` lists it
        if distribution:
            detail += f" ({MAY_HAVE_FIXED}: {distribution}; {_changelog_says(changelog, fixed_at)})"
        findings.append(
            Finding(
                id=advisory.id,
                severity=advisory.severity,
                title=advisory.title,
                detail=detail,
                source=advisory.source,
                check_changelog=distribution is not None,
            )
        )
    return findings


def _changelog_says(changelog: Changelog | None, fixed_at: str | None) -> str:
    if changelog is None:
        return "its changelog was not read"
    if changelog.problem is not None:
        return f"changelog not read: {changelog.problem}"
    if fixed_at is not None:  # the rc93 hang: a patch the probe proves or not
        return (
            f"the changelog of {changelog.describe()} names a fix at {fixed_at}; the probe decides"
        )
    return f"the changelog of {changelog.describe()} does not name it"


def fixed_by_distribution(
    runc: RuncBinary | None, advisories: Iterable[Advisory], changelog: Changelog | None
) -> list[str]:
    """The advisories `runc` has by upstream version that its package's changelog names as
    fixed at or below the installed version (the rc93 hang stays a finding: the probe decides)."""
    if runc is None or changelog is None:
        return []
    found = []
    for advisory in advisories:
        if advisory.id == RC93_HANG or not advisory.affects_build(runc.version, runc.commit):
            continue
        fixed_at = changelog.fixed_at(advisory)
        if fixed_at is not None:
            found.append(
                f"{advisory.id} ({advisory.severity}): fixed by the distribution (changelog of "
                f"{changelog.describe()}: {fixed_at})"
            )
    return found


def distribution_of(runc: RuncBinary) -> str | None:
    """Who may have backported fixes into `runc`: the package owning it, or, for a copy outside
    any package, the distribution whose package version its `commit:` line shows (Debian prints
    "1.1.5+ds1-1+deb12u1" where upstream prints a git commit)."""
    if runc.package and runc.package_intact is not False:
        return f"distribution package {runc.package} {runc.package_version or ''}".rstrip()
    build = distribution_build(runc.version, runc.commit)
    return f"distribution build {build}" if build is not None else None


def _sysctl_findings(facts: HostFacts, default: int) -> list[Finding]:
    findings = []
    runtime = facts.sysctl_runtime
    if runtime is not None and runtime != default:
        raised = runtime > default
        findings.append(
            Finding(
                id="sysctl-raised" if raised else "sysctl-lowered",
                severity="medium" if raised else "low",
                title=f"fs.pipe-user-pages-soft is {runtime} at runtime (default {default})",
                detail=_sysctl_advice(raised),
            )
        )
    boot = facts.sysctl_persistent
    value = _as_int(boot.value) if boot else None
    if boot is not None and value is not None and value != default:
        raised = value > default
        where = f"{boot.file}:{boot.line}"
        if boot.real_file:
            where += f" (-> {boot.real_file})"
        findings.append(
            Finding(
                id="sysctl-raised-at-boot" if raised else "sysctl-lowered-at-boot",
                severity="medium" if raised else "low",
                title=f"fs.pipe-user-pages-soft = {value} at boot, set in {where}",
                detail=_sysctl_advice(raised),
            )
        )
    return findings


def _sysctl_advice(raised: bool) -> str:
    if raised:
        return (
            "the incident's workaround A (per-uid pipe memory limit raised); restore it once "
            "the host's new runc is verified (`apply` does)"
        )
    return "unprivileged pipes drop to 2 pages sooner: the trigger of the rc93 hang"


def _describe(binary: RuncBinary) -> str:
    text = binary.version or "version unknown"
    if binary.commit and binary.commit != binary.version:
        text += f" (commit {_short(binary.commit)})"
    if binary.package:
        text += f" [package {binary.package} {binary.package_version or '?'}]"
    return text


def _age(facts: HostFacts, start_time: float | None) -> str:
    if start_time is None or not facts.gathered_at:
        return ""
    seconds = max(0, int(facts.gathered_at - start_time))
    return f", for {seconds // 60}m{seconds % 60:02d}s"


def _as_int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Hosts, report and summary


def audit_targets(
    inventory: Inventory, limit: str | None, zone_key: str | None = None
) -> tuple[dict[str, SshTarget], dict[str, str], set[str]]:
    """Every selected host (held-back ones too: they are the fleet as well), its zone, and the
    names of the held-back ones."""
    names = select_hosts(inventory, limit)
    targets = {name: ssh_target(inventory.hosts[name]) for name in names}
    check_domain_key("--domain-key", zone_key)
    check_domain_key_used(zone_key, (inventory.hosts[name] for name in names))
    zones = {name: domain_of(inventory.hosts[name], zone_key) for name in names}
    held = {name for name in names if held_back(inventory.hosts[name])}
    return targets, zones, held


def probe_specs(
    inventory: Inventory, names: Iterable[str], timeout: float
) -> dict[str, VerifySpec]:
    """How `audit --probe` probes each host: its verification image and probe uid, as a plan
    would have them."""
    options = WaveOptions(probe_timeout=timeout)
    return {name: host_verify_spec(inventory.hosts[name], options) for name in names}


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
        also_runc=[f"{i.runc.file} {_describe(i.runc)} ({i.source})" for i in facts.also_runc],
        daemon_namespaces=daemon_namespaces(facts),
        dockerd_version=facts.dockerd.version if facts.dockerd else None,
        containerd_version=facts.containerd.version if facts.containerd else None,
        sysctl_runtime=facts.sysctl_runtime,
        sysctl_at_boot=f"{boot.value} {boot.file}:{boot.line}" if boot else None,
        stuck_pids=[process.pid for process in facts.stuck],
        shadowed=[f"{b.path} {_describe(b)}" for b in facts.shadowed],
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


def audit_fleet(
    executor: Executor,
    targets: Mapping[str, SshTarget],
    zones: Mapping[str, str],
    advisories: Iterable[Advisory],
    *,
    concurrency: int,
    fail_on: FailOn = FailOn.none,
    ignore: Iterable[str] = (),
    held: Iterable[str] = (),
    probe_specs: Mapping[str, VerifySpec] | None = None,
) -> AuditReport:
    """Gather every host's facts (read-only) and audit them; with `probe_specs`, also run the
    incident probe against each of those hosts' installed runc (it starts a container)."""
    specs = probe_specs or {}
    probes: dict[str, ProbeResult] = {}
    also_probes: dict[str, dict[str, ProbeResult]] = {}
    changelogs: dict[str, Changelog] = {}
    run_id = f"audit-{secrets.token_hex(8)}"  # its probe uids are drawn from it: this audit's own

    def one(name: str, target: SshTarget) -> HostFacts:
        session = executor.session(target, name=name)
        facts = gather_facts(session)
        package = package_of(facts.runc) if facts.runc is not None else None
        if package is not None:
            changelogs[name] = read_changelog(session, *package)
        if name in specs and facts.runc is not None:
            probes[name] = run_probe(
                session, facts, facts.runc.file, specs[name], run_id=run_id, holds_lock=False
            )
        if name in specs:  # each other runc the runtimes execute, one after the other
            also_probes[name] = {
                item.runc.file: run_probe(
                    session, facts, item.runc.file, specs[name], run_id=run_id, holds_lock=False
                )
                for item in facts.also_runc
                if item.runc.target_problem is None
            }
        return facts

    results = run_on_hosts(targets, one, concurrency=concurrency)
    return build_report(
        results,
        zones,
        advisories,
        fail_on=fail_on,
        ignore=ignore,
        held=held,
        probes=probes,
        changelogs=changelogs,
        also_probes=also_probes,
    )


# ---------------------------------------------------------------------------------------------
# Views


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
            f"{host.runc_version or '?'} {_short(host.runc_commit)}" if host.runc_path else "",
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


def _short(commit: str | None) -> str:
    """A git commit abbreviated to 12 digits; a distribution's commit text ("1.1.5+ds1-1") whole."""
    if commit is None:
        return ""
    return commit[:12] if re.fullmatch(r"[0-9a-f]{13,40}", commit) else commit


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
