"""How the plan shows what surrounds the rollout: ticket and reason, canary and last hosts,
the operator's host check and gates, maintenance windows. Pure."""

from __future__ import annotations

from orchestrator.models import Plan
from orchestrator.plan.windows import next_openings, parse_windows, utc_text
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


def host_checks(plan: Plan) -> dict[str, list[str]]:
    """Each host check command, and the hosts to swap that run it."""
    checks: dict[str, list[str]] = {}
    for host in plan.hosts:
        if host.action == "swap" and host.verify.host_check is not None:
            checks.setdefault(host.verify.host_check, []).append(host.name)
    return checks


def gates_markdown(plan: Plan) -> list[str]:
    """The operator's own checks, for the plan's "Error budget and gates" section."""
    options = plan.options
    lines = []
    swaps = sum(1 for host in plan.hosts if host.action == "swap")
    for command, names in host_checks(plan).items():
        which = "every host" if len(names) == swaps else f"{len(names)} hosts"
        lines.append(
            f"- Host check on {which}, after the tool's own verification (timeout "
            f"{options.host_check_timeout:g} s; a non-zero exit fails the host and rolls it "
            f"back): {code(terminal_safe(command))}"
        )
    gates: tuple[tuple[str, str | None], ...] = (
        ("Pre-gate, here, before the first wave and at every resume", options.pre_gate),
        ("Wave gate, here, after each wave (after the bake time)", options.wave_gate),
    )
    for what, gate in gates:
        if gate is not None:
            lines.append(
                f"- {what} (timeout {options.gate_timeout:g} s; a non-zero exit halts the run, "
                f"exit 3): {code(terminal_safe(gate))}"
            )
    return lines


OPENINGS_LISTED = 5


def _openings(plan: Plan, now: float | None) -> list[str]:
    if now is None or not plan.options.windows:
        return []
    found = next_openings(parse_windows(plan.options.windows), now, OPENINGS_LISTED)
    return [f"{utc_text(when)} ({window})" for when, window in found]


def windows_markdown(plan: Plan, now: float | None) -> list[str]:
    """The maintenance windows and, as of `now`, when they next open."""
    windows = plan.options.windows
    if not windows:
        return ["- No maintenance windows: waves start whenever the previous one is done."]
    lines = [
        "- A wave starts only inside a maintenance window (one that started finishes): "
        + ", ".join(code(window) for window in windows)
    ]
    openings = _openings(plan, now)
    if openings:
        lines.append("- Next openings, as of the plan: " + "; ".join(openings))
    return lines


def windows_table_lines(plan: Plan, now: float | None) -> list[str]:
    lines = [f"window: {window}" for window in plan.options.windows]
    lines += [f"next opening: {opening}" for opening in _openings(plan, now)]
    return lines
