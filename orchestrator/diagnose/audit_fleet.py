"""`audit` on a fleet: which hosts, how each is probed, and gathering each host's facts,
changelog and probe results (the only part of the audit that reaches hosts).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

from orchestrator.backends.group import run_on_hosts
from orchestrator.choices import FailOn
from orchestrator.diagnose.advisories import Advisory
from orchestrator.diagnose.audit import AuditReport, build_report
from orchestrator.diagnose.changelog import (
    Changelog,
    package_of,
    read_changelog,
)
from orchestrator.host.facts import gather_facts
from orchestrator.host.procedure import run_probe
from orchestrator.host.session import Executor
from orchestrator.inventory.patterns import select_hosts
from orchestrator.models import (
    HostFacts,
    Inventory,
    ProbeResult,
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
