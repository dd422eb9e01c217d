"""What the operator sees of a run: the live view on a terminal (`live`), plain lines elsewhere
(`orchestrator.view.progress`), the summary at the end (`summary`), and following a run from its
journal (`follow`). The streams, the clock and the sleep are injected (`Screen`) so tests drive
all of it with fake ones."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, TextIO

from rich.console import Console

from orchestrator.choices import SummaryFormat
from orchestrator.models import Event, Plan, RunState
from orchestrator.run.journal import (
    EVENTS_FILE,
    EventTail,
    Journal,
    fold,
    initial_state,
    iter_events,
)
from orchestrator.view.live import LiveView
from orchestrator.view.progress import JsonEvents, ProgressPrinter
from orchestrator.view.summary import (
    RunHistory,
    Summary,
    run_summary,
    summary_markdown,
    summary_text,
)
from orchestrator.view.tally import Tally

SETTLED = frozenset({"run.finished", "run.paused", "run.halted", "run.interrupted"})


@dataclass
class Screen:
    """The outside world of the view."""

    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    terminal: bool | None = None  # None: whether stderr is a terminal

    def is_terminal(self) -> bool:
        return self.stderr.isatty() if self.terminal is None else self.terminal


class View(Protocol):
    def __call__(self, event: Event) -> None: ...
    def sleep(self, seconds: float) -> None: ...
    def __enter__(self) -> View: ...
    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


def make_view(
    plan: Plan, state: RunState | None, screen: Screen, *, verbose: bool, json_events: bool
) -> tuple[View, Callable[[Event], None]]:
    """The view for this screen, and the event callback for the engine (JSON lines first with
    `--json`). Live only when stderr is a terminal and stdout is not the same terminal taking
    JSON."""
    live = screen.is_terminal() and not (json_events and screen.stdout.isatty())
    view: View
    if live:
        console = Console(file=screen.stderr, force_terminal=True, highlight=False)
        view = LiveView(
            console, Tally.start(plan, state), clock=screen.clock, sleep=screen.sleep,
            verbose=verbose,
        )  # fmt: skip
    else:
        view = ProgressPrinter(screen.stderr, verbose=verbose, sleep=screen.sleep)
    return view, (JsonEvents(screen.stdout, view) if json_events else view)


def print_summary(
    summary: Summary, screen: Screen, fmt: SummaryFormat, *, json_events: bool = False
) -> None:
    """On stdout (where a ticket's text is taken from), or on stderr when stdout has the JSON
    event stream."""
    text = summary_markdown(summary) if fmt is SummaryFormat.markdown else summary_text(summary)
    stream = screen.stderr if json_events else screen.stdout
    stream.write(text)
    stream.flush()


def follow(
    tail: EventTail, on_event: Callable[[Event], None], screen: Screen, interval: float
) -> None:
    """Feed a run's events to `on_event` as its journal grows, until the run settles (finished,
    paused, halted or interrupted, and not resumed since)."""
    settled = False
    while True:
        for event in tail.read():
            on_event(event)
            if event.type.startswith("run."):
                settled = event.type in SETTLED
        if settled:
            return
        screen.sleep(interval)


def journal_summary(title: str, journal: Journal) -> Summary:
    """The summary of a run from its journal as it stands (`apply`, `resume` at their end)."""
    history = RunHistory.of(iter_events(journal.run_dir / EVENTS_FILE, []))
    return run_summary(title, journal.plan, journal.state, history)


def watch_run(
    journal: Journal, screen: Screen, *, interval: float, verbose: bool, json_events: bool = False
) -> Summary:
    """`status --watch`: the run's journal so far and as it grows, into the view (and as JSON
    lines on stdout with `json_events`), until the run settles; then its summary. Reads only.
    Ctrl-C (KeyboardInterrupt) goes to the caller."""
    view, on_event = make_view(journal.plan, None, screen, verbose=verbose, json_events=json_events)
    state = initial_state(journal.run_id, journal.plan)
    history = RunHistory()

    def seen(event: Event) -> None:
        history.add(event)
        fold(state, event)
        on_event(event)

    with view:
        follow(EventTail(journal.run_dir / EVENTS_FILE), seen, screen, interval)
    return run_summary(f"run {journal.run_id}", journal.plan, state, history)
