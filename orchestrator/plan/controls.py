"""How the plan shows what surrounds the rollout: ticket and reason, canary and last hosts,
the operator's host check and gates, maintenance windows. Pure."""

from __future__ import annotations

from orchestrator.models import Plan
from orchestrator.util.textsafe import terminal_safe

_MARKDOWN_SPECIAL = "\\`*_[]<>#|"


def markdown_text(text: str) -> str:
    """Operator text as plain Markdown: nothing in it is taken as markup, and nothing hidden
    (bidi controls...) is left in it."""
    text = terminal_safe(text)
    for char in _MARKDOWN_SPECIAL:
        text = text.replace(char, "\\" + char)
    return text


def code(text: str) -> str:
    """`text` as inline code, whatever backticks it holds."""
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def change_markdown(plan: Plan) -> list[str]:
    """The ticket and reason, first thing in the plan's Markdown."""
    options = plan.options
    lines = [f"- **Ticket:** {code(options.ticket)}"] if options.ticket else []
    if options.reason:
        lines.append(f"- **Reason:** {markdown_text(options.reason)}")
    return [*lines, ""] if lines else []


def change_table_lines(plan: Plan) -> list[str]:
    """The same for the terminal table."""
    options = plan.options
    lines = [f"ticket {options.ticket}"] if options.ticket else []
    if options.reason:
        lines.append(f"reason: {options.reason}")
    return [terminal_safe(line) for line in lines]
