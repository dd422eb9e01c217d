"""Roll hosts back to the "before" their host-side record holds: for one run from its journal, or
from the hosts alone (`rollback -i INVENTORY`) when the machine that ran the rollout is gone."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping

from orchestrator.host.facts import gather_facts
from orchestrator.host.procedure import (
    HostOutcome,
    HostSteps,
    PhaseListener,
    StepFailed,
    read_record,
)
from orchestrator.host.session import HostSession
from orchestrator.models import UNSETTLED_PHASES, HostPhase, RunState

KNOWN_HANG_VERSIONS = ("1.0.0-rc93",)
SWAPPED_PHASES: frozenset[HostPhase] = UNSETTLED_PHASES | {"finished"}


def rollback_host(
    session: HostSession,
    name: str,
    *,
    run_id: str | None,
    on_phase: PhaseListener,
    clock: Callable[[], float] = time.time,
) -> HostOutcome:
    """Return one host to its recorded "before"; `run_id` None accepts whichever run it records."""
    facts = gather_facts(session)
    record = read_record(facts)
    current = facts.runc.sha256 if facts.runc else None
    if run_id is not None and (record is None or record.run_id != run_id):
        # The run never wrote its record here, so it never swapped: nothing to put back, but
        # the lock and staged file a crash may have left go.
        steps = HostSteps(session, name, run_id=run_id, on_phase=on_phase, clock=clock)
        steps.release(facts.runc.file if facts.runc else None)
        mine = "" if record is None else f" (its record is of run {record.run_id})"
        message = f"run {run_id} never changed this host{mine}: nothing to roll back"
        return HostOutcome("rolled_back", "none", current, message)
    if record is None:
        raise StepFailed("no host-side record: runc-rollout never changed this host")
    if record.outcome == "rolled_back" and current == record.before_sha256:
        return HostOutcome("rolled_back", "finished", current, "already rolled back")
    outcome = HostSteps(
        session, name, run_id=record.run_id, on_phase=on_phase, clock=clock
    ).rollback(record)
    version = record.before_version or ""
    if any(bad in version for bad in KNOWN_HANG_VERSIONS):
        warning = f"WARNING: rolled back to runc {version}, which hangs in runc init (rc93 bug)"
        return HostOutcome(outcome.status, outcome.phase, outcome.runc_sha256, warning)
    return outcome


def swapped_by_run(state: RunState) -> set[str]:
    """Hosts the run's journal says it swapped and has not rolled back."""
    return {
        name
        for name, host in state.hosts.items()
        if host.phase in SWAPPED_PHASES and host.status != "rolled_back"
    }


def contradicting_journal(
    results: Mapping[str, HostOutcome | Exception], swapped: Collection[str]
) -> dict[str, HostOutcome | Exception]:
    """A host the journal says the run swapped, where the rollback found nothing of the run
    (no record, or another run's), is a failure to report, not nothing to do: its runc is not
    the run's to put back blindly, and someone must look."""
    checked: dict[str, HostOutcome | Exception] = {}
    for name, result in results.items():
        if isinstance(result, HostOutcome) and result.phase == "none" and name in swapped:
            result = StepFailed(
                "the journal says this run swapped it, but the host holds no record of the run "
                f"({result.message}); inspect it, or roll it back from its own record with "
                "`rollback -i INVENTORY --limit HOST`"
            )
        checked[name] = result
    return checked
