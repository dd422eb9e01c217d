"""Roll hosts back to the "before" their host-side record holds: for one run from its journal, or
from the hosts alone (`rollback -i INVENTORY`) when the machine that ran the rollout is gone."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from orchestrator.backends.base import Backend
from orchestrator.host.procedure import HostOutcome, StepFailed
from orchestrator.models import UNSETTLED_PHASES, Event, HostPhase, RunState, SshTarget
from orchestrator.run.journal import Journal

SWAPPED_PHASES: frozenset[HostPhase] = UNSETTLED_PHASES | {"finished"}


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


RollbackResult = tuple[str, str | None, str]  # status, runc sha256, message


def roll_back(
    backend: Backend,
    targets: Mapping[str, SshTarget],
    journal: Journal | None,
    *,
    on_event: Callable[[Event], None] = lambda event: None,
) -> dict[str, RollbackResult]:
    """Roll `targets` back through `backend`: for the journal's run (its events recorded there),
    or, without a journal, whichever run each host's own record names."""
    swapped = swapped_by_run(journal.state) if journal else set()

    def on_phase(host: str, phase: HostPhase, sha: str | None) -> None:
        if journal is not None:
            on_event(journal.record("host.phase", host=host, phase=phase, runc_sha256=sha))

    run_id = journal.run_id if journal else None
    outcomes: dict[str, RollbackResult] = {}
    try:
        results = backend.rollback(targets, run_id=run_id, on_phase=on_phase)
        for name, result in contradicting_journal(results, swapped).items():
            if not isinstance(result, HostOutcome):
                outcomes[name] = ("failed", None, f"rollback failed: {result}")
                continue
            outcomes[name] = (result.status, result.runc_sha256, result.message or "")
            if journal is not None:
                journal.record("host.finished", host=name, **result.event_fields())
    finally:
        if journal is not None:
            journal.snapshot()  # a rollback records host events only: none of them forces one
    return outcomes
