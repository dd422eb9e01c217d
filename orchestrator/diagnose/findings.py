"""The audit's rules: every finding of one host, from its facts (pure: facts in, findings out,
so they are tested on constructed facts).

The rc93 pipe hang and runc's security advisories by version range (`data/advisories.json`),
`fs.pipe-user-pages-soft` off its default at runtime or at boot, `runc init` processes blocked
writing a pipe, other runc binaries on the runtime's PATH, what became of the last rollout. A
distribution's runc may carry backported fixes its version string does not show: the package's
own changelog (`changelog.py`) decides those; an advisory it names as fixed is reported "fixed by
the distribution (changelog)", not as a finding, and one it does not name is worded "by upstream
version; the distribution may have fixed it".
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from orchestrator.choices import PIPE_USER_PAGES_SOFT_DEFAULT
from orchestrator.diagnose.advisories import RC93_HANG, Advisory
from orchestrator.diagnose.changelog import (
    Changelog,
    distribution_build,
)
from orchestrator.diagnose.versions import compare_versions, parse_version
from orchestrator.host.procedure import executed_runcs as executed_runcs_of
from orchestrator.models import (
    SEVERITIES,
    HostFacts,
    HostRecord,
    Model,
    ProbeResult,
    RecordedPackage,
    RuncBinary,
    Severity,
)

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
        others = "; ".join(f"{b.path} {describe_binary(b)}" for b in differing)
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
        detail = f"runc {describe_binary(runc)}; fixed in {', '.join(advisory.fixed_in)}"
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


def describe_binary(binary: RuncBinary) -> str:
    text = binary.version or "version unknown"
    if binary.commit and binary.commit != binary.version:
        text += f" (commit {short_commit(binary.commit)})"
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


def short_commit(commit: str | None) -> str:
    """A git commit abbreviated to 12 digits; a distribution's commit text ("1.1.5+ds1-1") whole."""
    if commit is None:
        return ""
    return commit[:12] if re.fullmatch(r"[0-9a-f]{13,40}", commit) else commit
