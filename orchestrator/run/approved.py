"""A run to go on with (`resume`) or undo (`rollback RUN`): found by id or directory, its plan
approved as the run was applied."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import BadInput
from orchestrator.models import ApprovalPolicy
from orchestrator.plan.approval import check_approval
from orchestrator.run.journal import Journal


def run_directory(run: str | Path, runs_dir: Path) -> Path:
    """RUN as a directory, or as a run id under `runs_dir`."""
    candidate = Path(run)
    if candidate.is_dir():
        return candidate
    if (runs_dir / run).is_dir():
        return runs_dir / run
    raise BadInput(
        f"RUN: no run {str(run)!r} (looked for the directory {candidate} and {runs_dir / run})"
    )


def open_approved_run(run_dir: Path, policy: ApprovalPolicy) -> tuple[Journal, list[str]]:
    """The run in `run_dir`, and who signed its plan: its folder the operator's, its plan
    approved under `policy`, the caller's. What the run folder records of its approval can only
    demand more: anyone who could write it could lower it."""
    journal = Journal.open(run_dir, expect_hash=policy.expect_hash)
    applied = journal.approval()
    if applied.plan_hash != journal.approved_plan.plan_hash:
        raise BadInput(f"{journal.run_dir}: the run's plan is not the one it was applied with")
    if policy.required_signatures < applied.required_signatures:
        raise BadInput(
            f"run {journal.run_id} was applied with {applied.required_signatures} required "
            "signatures: pass --allowed-signers (and --required-signatures) to go on with it"
        )
    return journal, check_approval(journal.approved_plan, policy, journal.signatures)
