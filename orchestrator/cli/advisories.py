"""`runc-rollout advisories`: the advisory table plan and audit use, and a check of your own."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli.options import Format, format_option

if TYPE_CHECKING:
    from orchestrator.diagnose.advisories import Advisory

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
    fmt: Annotated[
        Format,
        format_option(
            "text: a line per advisory; markdown: a table for a ticket; json: the table "
            "(where from, and every advisory as the file has it)"
        ),
    ] = Format.text,
) -> None:
    """List the advisory table (known runc bugs and CVEs by upstream version), or check one."""
    from orchestrator.diagnose.advisories import advisory_table, describe_table

    table = advisory_table(check)
    described = describe_table(table, check)
    if fmt is Format.json:
        rows = [advisory.model_dump(mode="json") for advisory in table.advisories]
        typer.echo(json.dumps({"table": described, "valid": True, "advisories": rows}, indent=2))
    elif fmt is Format.markdown:
        typer.echo(advisories_markdown(described, table.advisories))
    else:
        typer.echo(advisories_text(described, table.advisories))


def fixed_in(advisory: "Advisory") -> str:
    return ", ".join(advisory.fixed_in) or "not fixed"


def advisories_text(described: str, advisories: "Sequence[Advisory]") -> str:
    from orchestrator.util.textsafe import terminal_safe

    lines = [f"{described}: valid"]
    for advisory in advisories:
        line = f"{advisory.id:<22} {advisory.severity:<8} fixed in {fixed_in(advisory)}"
        lines.append(terminal_safe(line))
    return "\n".join(lines)


def advisories_markdown(described: str, advisories: "Sequence[Advisory]") -> str:
    from orchestrator.util.textsafe import markdown_text

    lines = [
        f"**Advisories:** {markdown_text(described)}, valid",
        "",
        "| id | kind | severity | fixed in | title |",
        "|---|---|---|---|---|",
    ]
    for advisory in advisories:
        cells = (advisory.id, advisory.kind, advisory.severity, fixed_in(advisory), advisory.title)
        lines.append("| " + " | ".join(markdown_text(cell) for cell in cells) + " |")
    return "\n".join(lines)
