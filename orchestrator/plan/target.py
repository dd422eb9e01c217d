"""Which runc to go to: the target's version checked against the advisory table.

The rc93 pipe hang is refused always (the tool exists to remove it), unless accepted by id;
with a refusal severity (`--refuse-severity`, or the inventory's `runc_rollout_refuse_severity`)
every advisory at or above it is refused too. The target's other advisories are listed for the
reviewer, not refused: most runc builds in use carry some advisory by upstream version, and
distributions backport fixes. When the plan does not know the version, the refusals travel in
the plan and each host checks the staged file's own `--version` before its swap. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from orchestrator.diagnose.advisories import RC93_HANG, Advisory, affecting, build_affected
from orchestrator.diagnose.versions import parse_version
from orchestrator.errors import BadInput
from orchestrator.models import (
    SEVERITIES,
    Artifact,
    InventoryHost,
    Severity,
    TargetAdvisory,
    TargetPolicy,
    TargetRefusal,
)

REFUSED_ALWAYS = (RC93_HANG,)
REFUSE_SEVERITY_VAR = "runc_rollout_refuse_severity"
_VERSION_MAX = 64


def check_runc_version(text: str) -> str:
    """`text` when it is a runc version ("1.1.12", "1.0.0-rc93", "1.1.5+ds1"), else BadInput."""
    if len(text) > _VERSION_MAX or not text.isprintable() or parse_version(text) is None:
        raise BadInput(
            f"--runc-version: {text[:80]!r} is not a runc version (like 1.1.12 or 1.0.0-rc94)"
        )
    return text


def _severity(text: object, where: str) -> Severity:
    for severity in SEVERITIES:
        if str(text).strip().lower() == severity:
            return severity
    raise BadInput(f"{where}: {str(text)[:40]!r} is not one of {', '.join(SEVERITIES)}")


def refuse_severity(option: str | None, hosts: Iterable[InventoryHost]) -> Severity | None:
    """The lowest severity refused: `--refuse-severity`, and any selected host's
    `runc_rollout_refuse_severity` (the target is one for the whole plan: the strictest wins)."""
    found = [_severity(option, "--refuse-severity")] if option is not None else []
    for host in hosts:
        value = host.vars.get(REFUSE_SEVERITY_VAR)
        if value not in (None, ""):
            found.append(_severity(value, f"host {host.name}: {REFUSE_SEVERITY_VAR}"))
    return min(found, key=SEVERITIES.index) if found else None


def _refused(advisory: Advisory, severity: Severity | None) -> bool:
    if advisory.id in REFUSED_ALWAYS:
        return True
    return severity is not None and SEVERITIES.index(advisory.severity) >= SEVERITIES.index(
        severity
    )


def target_policy(
    artifact: Artifact,
    advisories: Iterable[Advisory],
    source: str,
    *,
    accepted: Iterable[str] = (),
    severity: Severity | None = None,
) -> TargetPolicy:
    """The target's advisories and refusals; BadInput when the target's known version (or
    commit) has an advisory that is refused and not accepted."""
    table = tuple(advisories)
    accepted_ids = tuple(dict.fromkeys(accepted))
    unknown = sorted(set(accepted_ids) - {advisory.id for advisory in table})
    if unknown:
        raise BadInput(f"--accept-advisory: no advisory is called {', '.join(unknown)}")
    policy = TargetPolicy(advisories_source=source, refuse_severity=severity, accepted=accepted_ids)
    if artifact.version is None and artifact.commit is None:
        refuse = [
            TargetRefusal(id=a.id, affected=list(a.affected), commits=list(a.commits))
            for a in table
            if _refused(a, severity) and a.id not in accepted_ids
        ]
        return policy.model_copy(update={"refuse": refuse})
    own = affecting(table, artifact.version, artifact.commit)
    refused = [a for a in own if _refused(a, severity) and a.id not in accepted_ids]
    if refused:
        first = refused[0]
        more = f" (and {', '.join(a.id for a in refused[1:])})" if refused[1:] else ""
        raise BadInput(
            f"--runc: runc {artifact.version or artifact.commit} has {first.id}{more}: "
            f"{first.severity}, {first.title}; fixed in {', '.join(first.fixed_in)}. Refused "
            f"unless --accept-advisory {first.id}"
        )
    listed = tuple(
        TargetAdvisory(
            id=a.id,
            severity=a.severity,
            title=a.title,
            fixed_in=a.fixed_in,
            accepted=a.id in accepted_ids,
        )
        for a in own
    )
    return policy.model_copy(update={"advisories": listed})


def staged_refusal(
    version: str | None, commit: str | None, refuse: Iterable[TargetRefusal]
) -> str | None:
    """Why a host must not swap in a staged file reporting `version` and `commit`, if the plan
    (which did not know them) refuses an advisory they have."""
    hits = [r.id for r in refuse if build_affected(r.affected, r.commits, version, commit)]
    if not hits:
        return None
    return (
        f"staged runc {version or '?'} has {', '.join(hits)}, which the plan refuses "
        f"(plan again with --accept-advisory to roll it out knowingly); not touched"
    )
