"""`apply --limit PATTERN`: a subset of a reviewed plan, applied without a new approval.

The pattern is Ansible's (`web:&zone_a`, `lab-0[1:2]`, `@retry_file`), evaluated over the plan's
own inventory sources read again, so group names mean what they meant when the plan was made.
What it selects must be inside the plan: a host the plan neither carries nor lists as held back
(skipped or unreachable at plan time) was never reviewed, and is refused (exit 2); the held-back
ones it selects are left out, as the plan leaves them out. The run's journal records the pattern
and the hosts (`run.limited`), so `resume`, `status` and `rollback RUN` keep to them."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import BadInput
from orchestrator.inventory.patterns import select_hosts
from orchestrator.inventory.read import load_inventory
from orchestrator.models import Inventory, Plan
from orchestrator.run.journal import RunLimit


def _shown(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def plan_subset(plan: Plan, pattern: str, inventory: Inventory | None = None) -> RunLimit:
    """The hosts of `plan` that `pattern` selects, in the plan's order; `inventory` is the
    plan's inventory (read from its sources when not given)."""
    if inventory is None:
        inventory = load_inventory([Path(source) for source in plan.inventory])
    selected = set(select_hosts(inventory, pattern))
    planned = [host.name for host in plan.hosts]
    held = {host.name for host in [*plan.skipped, *plan.unreachable]}
    outside = sorted(selected - set(planned) - held)
    if outside:
        raise BadInput(
            f"--limit {pattern}: {_shown(outside)} not in plan {plan.plan_id}: apply --limit "
            "takes a subset of the reviewed plan's hosts; make a new plan for others"
        )
    hosts = tuple(name for name in planned if name in selected)
    if not hosts:
        raise BadInput(
            f"--limit {pattern}: selects only hosts plan {plan.plan_id} holds back "
            f"({_shown(sorted(selected))}): nothing to apply"
        )
    return RunLimit(pattern, hosts)
