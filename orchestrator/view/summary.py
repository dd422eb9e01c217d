"""The summary printed at the end of `apply`, `resume`, `rollback` and `status --watch`: hosts
per outcome, what went wrong and what the tool did about it, the runc each host ends with, the
probe's result, the time per wave. Plain text, or Markdown to paste into a change ticket. Pure.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from orchestrator.models import UNSETTLED_PHASES, Event, HostBefore, HostState, Plan, RunState
from orchestrator.plan.controls import change_table_lines
from orchestrator.util.textsafe import terminal_safe
from orchestrator.view.live import duration

OUTCOME_ORDER = ("done", "noop", "failed", "unreachable", "drift", "rolled_back", "running")
PROBLEMS = frozenset({"failed", "unreachable", "drift", "running", "pending"})
NEEDS_RESUME = "needs resume"


@dataclass(frozen=True)
class HostLine:
    name: str
    wave: int | None
    status: str
    runc: str  # version and sha256 prefix, as far as the plan knows them
    probe: str
    reason: str
    action: str  # what the tool did about it
    delivery: str | None = None  # how the new runc reached the host
    sent_bytes: int = 0  # what the controller sent the host


@dataclass(frozen=True)
class WaveTime:
    index: int
    hosts: int
    seconds: float
    against_budget: int


@dataclass(frozen=True)
class Summary:
    title: str
    status: str
    hosts: list[HostLine]
    waves: list[WaveTime]
    seconds: float | None
    who: list[str] = field(default_factory=list)  # the ticket and reason, who applied, resumed

    @property
    def counts(self) -> Counter[str]:
        return Counter(host.status for host in self.hosts)

    @property
    def needs_resume(self) -> bool:
        return any(NEEDS_RESUME in host.action for host in self.hosts)

    @property
    def problems(self) -> list[HostLine]:
        return [host for host in self.hosts if host.status in PROBLEMS]


def runc_label(plan: Plan | None, before: HostBefore | None, sha256: str | None) -> str:
    """`1.1.5 (3f2a1b9c0d1e)` where the plan knows the version of that sha256, else the prefix."""
    if not sha256:
        return "unknown"
    version = plan.artifact.version if plan and sha256 == plan.artifact.sha256 else None
    if version is None and before is not None and before.runc_sha256 == sha256:
        version = before.runc_version
    return f"{version} ({sha256[:12]})" if version else sha256[:12]


def host_action(host: HostState, swapped: bool, stopped: bool = False) -> str:
    """What the run did about a host, from its final status, phase and whether it was swapped.
    `stopped`: the run halted at a wave a resume would judge the same (nothing left to redo)."""
    if host.status == "done":
        return "upgraded"
    if host.status == "noop":
        return "already at the target"
    if host.status == "rolled_back":
        return "rolled back to its before"
    if host.status == "drift":
        return "not touched (drift)"
    if host.status == "pending":
        if stopped:
            return "not started: the run halted (roll back, or plan anew)"
        return f"not started: {NEEDS_RESUME}"
    if host.phase in UNSETTLED_PHASES:
        return f"{NEEDS_RESUME}: swapped, then cut off; resume examines the host"
    if host.status == "failed" and swapped:
        return "rolled back to old runc"
    return f"left on old runc: {NEEDS_RESUME}" if host.status != "failed" else "left on old runc"


@dataclass
class RunHistory:
    """What the summary needs of a run's events beyond the state folded from them, gathered
    one event at a time: a 100k-host run has ~700k events, and none of them is kept."""

    swapped: set[str] = field(default_factory=set)  # hosts that reached `swapped`
    halted_at: int | None = None  # the wave of the last `run.halted`
    first: float | None = None  # the earliest and latest event times
    last: float | None = None
    wave_seconds: dict[int, float] = field(default_factory=dict)
    open_wave: tuple[int, float] | None = None  # a wave started and not yet ended: since when
    operators: list[str] = field(default_factory=list)  # "applied by ...", "resumed by ..."
    halted_by_gate: bool = False  # the last halt was a gate's: a resume runs it again
    limit: str | None = None  # apply --limit: what the run.limited event said

    @classmethod
    def of(cls, events: Iterable[Event]) -> RunHistory:
        history = cls()
        for event in events:
            history.add(event)
        return history

    def add(self, event: Event) -> None:
        """Each wave's time runs from its `wave.started` to its `wave.finished` (added up over
        resumes; a wave cut off by a halt or Ctrl-C counts up to the next run event)."""
        self.first = event.time if self.first is None else min(self.first, event.time)
        self.last = event.time if self.last is None else max(self.last, event.time)
        if event.type == "host.phase" and event.phase == "swapped" and event.host is not None:
            self.swapped.add(event.host)
        elif event.type == "run.halted" and event.wave is not None:
            self.halted_at = event.wave
        elif event.type == "gate.failed":
            self.halted_by_gate = True
        elif event.type == "run.limited":
            self.limit = event.message
        elif event.type in ("run.started", "run.resumed"):
            self.halted_by_gate = False
        if event.operator is not None:
            verb = "resumed" if event.type == "run.resumed" else "applied"
            self.operators.append(f"{verb} by {event.operator.describe()}")
        if event.type == "wave.started" and event.wave is not None:
            self.open_wave = (event.wave, event.time)
        elif self.open_wave is not None and event.type in ("wave.finished", "run.interrupted"):
            index, started = self.open_wave
            self.wave_seconds[index] = self.wave_seconds.get(index, 0.0) + event.time - started
            self.open_wave = None


def wave_times(history: RunHistory, plan: Plan, state: RunState) -> list[WaveTime]:
    times = []
    for index, total in sorted(history.wave_seconds.items()):
        names = [host.name for host in plan.waves[index].hosts]
        bad = sum(state.hosts[name].status in ("failed", "unreachable") for name in names)
        times.append(WaveTime(index, len(names), total, bad))
    return times


def run_summary(title: str, plan: Plan, state: RunState, history: RunHistory) -> Summary:
    """The summary of a run, from its journal: the plan, the folded state and the history."""
    swapped, halted_at = history.swapped, history.halted_at
    stopped = (
        state.status == "halted"
        and not history.halted_by_gate
        and halted_at is not None
        and not any(state.hosts[host.name].needs_work for host in plan.waves[halted_at].hosts)
    )
    hosts = []
    for planned in plan.hosts:
        host, before = state.hosts[planned.name], planned.before
        sha = host.runc_sha256 or (before.runc_sha256 if before else None)
        runc = runc_label(plan, before, sha)
        if sha is None and planned.name not in swapped:
            runc = "its old one (not read)"
        reason = host.message or ("" if host.status != "pending" else f"run {state.status}")
        hosts.append(
            HostLine(
                name=planned.name,
                wave=host.wave,
                status=host.status,
                runc=runc,
                probe=host.probe.summary() if host.probe else "not run",
                reason=reason,
                action=host_action(host, planned.name in swapped, stopped),
                delivery=host.delivery,
                sent_bytes=host.sent_bytes,
            )
        )
    first, last = history.first, history.last
    seconds = last - first if first is not None and last is not None else None
    times = wave_times(history, plan, state)
    return Summary(title, state.status, hosts, times, seconds, who_and_why(plan, history))


def who_and_why(plan: Plan, history: RunHistory) -> list[str]:
    """The change ticket and reason the plan gives, then who applied and resumed the run."""
    limit = [history.limit] if history.limit else []
    return change_table_lines(plan) + limit + history.operators


def rollback_summary(
    plan: Plan | None, results: Mapping[str, tuple[str, str | None, str]], seconds: float
) -> Summary:
    """The summary of `rollback`: per host (status, runc sha256, message)."""
    befores = {host.name: host.before for host in plan.hosts} if plan else {}
    hosts = []
    for name, (status, sha, message) in results.items():
        runc = runc_label(plan, befores.get(name), sha)
        action = {"rolled_back": "rolled back to its before"}.get(status, "left as it was")
        hosts.append(HostLine(name, None, status, runc, "not run", message, action))
    failed = any(host.status != "rolled_back" for host in hosts)
    return Summary("rollback", "failed" if failed else "rolled_back", hosts, [], seconds)


def _hosts(count: int) -> str:
    return f"{count} host" if count == 1 else f"{count} hosts"


def _outcomes(summary: Summary) -> str:
    counts = summary.counts
    order = [s for s in OUTCOME_ORDER if counts[s]] + sorted(set(counts) - set(OUTCOME_ORDER))
    return ", ".join(f"{counts[status]} {status}" for status in order)


def size(count: float) -> str:
    """Bytes as people read them: 850 B, 12.4 kB, 3.4 MB, 1.2 GB."""
    for unit in ("B", "kB", "MB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"


def _sent(summary: Summary) -> str | None:
    """What the controller sent, per host and in all, and how the runc reached the hosts."""
    reached = [host for host in summary.hosts if host.sent_bytes]
    if not reached:
        return None
    total = sum(host.sent_bytes for host in reached)
    ways = Counter(host.delivery for host in summary.hosts if host.delivery)
    how = ", ".join(f"{count} {way}" for way, count in ways.most_common())
    return f"{size(total / len(reached))} per host, {size(total)} to {_hosts(len(reached))}" + (
        f"; the new runc by {how}" if how else ""
    )


def _runcs(summary: Summary) -> list[tuple[str, int]]:
    return Counter(host.runc for host in summary.hosts).most_common()


def summary_text(summary: Summary) -> str:
    """Plain text: reads well in a terminal, a CI log or a ticket without Markdown."""
    safe = terminal_safe
    took = f" in {duration(summary.seconds)}" if summary.seconds is not None else ""
    lines = [f"{summary.title}: {summary.status}{took}: {_hosts(len(summary.hosts))}"]
    lines += [f"  {safe(line)}" for line in summary.who]
    lines.append(f"  outcomes: {_outcomes(summary)}")
    for wave in summary.waves:
        lines.append(
            f"  wave {wave.index}: {_hosts(wave.hosts)} in {duration(wave.seconds)}, "
            f"{wave.against_budget} failed or unreachable"
        )
    lines.append("  runc at the end: " + ", ".join(f"{n} x {safe(r)}" for r, n in _runcs(summary)))
    sent = _sent(summary)
    if sent:
        lines.append(f"  controller sent: {sent}")
    if summary.problems:
        lines.append("  needing attention:")
        for host in summary.problems:
            lines.append(
                f"    {safe(host.name)}: {host.status}: {safe(host.reason) or 'no reason given'}"
            )
            lines.append(f"      did: {host.action}; runc {safe(host.runc)}; {safe(host.probe)}")
    lines.append("  hosts:")
    width = max((len(safe(host.name)) for host in summary.hosts), default=4)
    for host in summary.hosts:
        number = "-" if host.wave is None else str(host.wave)
        sent = f"  sent {size(host.sent_bytes)}" if host.sent_bytes else ""
        lines.append(
            f"    {safe(host.name):<{width}}  wave {number:<3} {host.status:<12} "
            f"runc {safe(host.runc):<28} {safe(host.probe)}{sent}"
        )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """A Markdown table cell: one line, nothing a renderer would take as markup or a column."""
    safe = terminal_safe(text)
    for char in "\\|`*_[]<>":
        safe = safe.replace(char, "\\" + char)
    return safe or "-"


def summary_markdown(summary: Summary) -> str:
    """Markdown for the change ticket."""
    took = f" in {duration(summary.seconds)}" if summary.seconds is not None else ""
    lines = [
        f"### runc-rollout {summary.title}: {summary.status}{took}",
        "",
        f"**{_hosts(len(summary.hosts))}**: {_outcomes(summary)}",
        "",
    ]
    if summary.who:
        lines += [*(f"- {_cell(line)}" for line in summary.who), ""]
    if summary.waves:
        lines += ["| wave | hosts | time | failed or unreachable |", "|---:|---:|---:|---:|"]
        lines += [
            f"| {w.index} | {w.hosts} | {duration(w.seconds)} | {w.against_budget} |"
            for w in summary.waves
        ]
        lines.append("")
    lines += ["| runc at the end | hosts |", "|---|---:|"]
    lines += [f"| {_cell(runc)} | {count} |" for runc, count in _runcs(summary)]
    lines.append("")
    sent = _sent(summary)
    if sent:
        lines += [f"**Controller sent:** {sent}", ""]
    if summary.problems:
        lines += ["#### Needing attention", "", "| host | outcome | reason | what was done |"]
        lines.append("|---|---|---|---|")
        lines += [
            f"| {_cell(h.name)} | {h.status} | {_cell(h.reason)} | {_cell(h.action)} |"
            for h in summary.problems
        ]
        lines.append("")
    lines += ["#### Hosts", "", "| host | wave | outcome | runc | probe | sent |"]
    lines.append("|---|---:|---|---|---|---:|")
    lines += [
        f"| {_cell(h.name)} | {'-' if h.wave is None else h.wave} | {h.status} | "
        f"{_cell(h.runc)} | {_cell(h.probe)} | {size(h.sent_bytes) if h.sent_bytes else '-'} |"
        for h in summary.hosts
    ]
    return "\n".join(lines) + "\n"


def summary_json(summary: Summary) -> str:
    """The summary as one JSON document (`rollback --format json`): its fields, and `counts`."""
    document = asdict(summary) | {"counts": dict(summary.counts)}
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
