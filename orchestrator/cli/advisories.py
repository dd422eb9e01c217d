"""`runc-rollout advisories`: the advisory table plan and audit use, and a check of your own."""

from pathlib import Path
from typing import Annotated

import typer

AdvisoriesOption = Annotated[
    Path | None,
    typer.Option(
        "--advisories",
        help="Your own advisories file (the shipped format; `runc-rollout advisories --check "
        "FILE` validates it) instead of the shipped table.",
    ),
]


def advisories(
    check: Annotated[
        Path | None,
        typer.Option(
            "--check",
            help="Validate this advisories file (exit 0 if plan and audit can use it, else 2 "
            "with the first problem) instead of listing the shipped table.",
        ),
    ] = None,
) -> None:
    """List the advisory table (known runc bugs and CVEs by upstream version), or check one."""
    from orchestrator.diagnose.advisories import advisory_table, describe_table
    from orchestrator.util.textsafe import terminal_safe

    table = advisory_table(check)
    typer.echo(f"{describe_table(table, check)}: valid")
    for advisory in table.advisories:
        fixed = ", ".join(advisory.fixed_in) or "not fixed"
        typer.echo(terminal_safe(f"{advisory.id:<22} {advisory.severity:<8} fixed in {fixed}"))
