"""`audit` on a fleet: which hosts, how each is probed, and gathering each host's facts,
changelog and probe results (the only part of the audit that reaches hosts).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

from orchestrator.choices import FailOn
from orchestrator.diagnose.advisories import Advisory
from orchestrator.diagnose.audit import AuditReport, build_report
from orchestrator.diagnose.fleet import DiagnosticFleet
from orchestrator.diagnose.onhost import AuditGathered
from orchestrator.inventory.patterns import select_hosts
from orchestrator.models import (
    HostFacts,
    HostTask,
    Inventory,
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


def audit_fleet(
    fleet: DiagnosticFleet,
    targets: Mapping[str, SshTarget],
    zones: Mapping[str, str],
    advisories: Iterable[Advisory],
    *,
    fail_on: FailOn = FailOn.none,
    ignore: Iterable[str] = (),
    held: Iterable[str] = (),
    probe_specs: Mapping[str, VerifySpec] | None = None,
) -> AuditReport:
    """Gather every host's facts (read-only) and audit them; with `probe_specs`, also run the
    incident probe against each of those hosts' installed runc (it starts a container)."""
    specs = probe_specs or {}
    run_id = f"audit-{secrets.token_hex(8)}"  # its probe uids are drawn from it: this audit's own
    tasks = {
        name: HostTask(
            procedure="audit",
            run_id=run_id,
            probe=name in specs,
            verify=specs.get(name, VerifySpec()),
        )
        for name in targets
    }
    gathered = fleet.run(targets, tasks, AuditGathered)
    results: dict[str, HostFacts | Exception] = {
        name: item if isinstance(item, Exception) else item.facts for name, item in gathered.items()
    }
    done = {name: item for name, item in gathered.items() if isinstance(item, AuditGathered)}
    return build_report(
        results,
        zones,
        advisories,
        fail_on=fail_on,
        ignore=ignore,
        held=held,
        probes={n: item.probe for n, item in done.items() if item.probe is not None},
        changelogs={n: item.changelog for n, item in done.items() if item.changelog is not None},
        also_probes={n: item.also_probes for n, item in done.items() if tasks[n].probe},
    )
