"""The live view on a terminal: a progress bar per wave, counts, budget, time left, bake countdown.

Failures and warnings are printed above the live area as they happen, one line each; phases
only when verbose. Events arrive from worker threads: they only update counts under a lock, and
rich redraws from its own thread a few times a second, so the engine never waits for the screen.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.models import Event
from orchestrator.util.textsafe import markup_safe
from orchestrator.view.tally import Tally

REFRESH_PER_SECOND = 4


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`: short enough for a status line."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def event_line(event: Event, verbose: bool) -> str | None:
    """The line printed above the live area for `event`, as rich markup, or None."""
    host, message = markup_safe(event.host or ""), markup_safe(event.message or "")
    if event.type == "host.finished":
        if event.status in ("failed", "unreachable"):
            return f"[red]FAILED[/] {host}: {event.status}: {message or 'no reason given'}"
        if event.status in ("drift", "rolled_back"):
            return f"[yellow]WARNING[/] {host}: {event.status}: {message}"
        detail = f": {message}" if message else ""
        return f"  {host}: {event.status}{detail}" if verbose else None
    if event.type == "host.phase":
        return f"  {host}: {event.phase}" if verbose else None
    if event.type == "wave.started":
        return f"[bold]wave {event.wave} started[/]: {message}"
    if event.type == "wave.job":
        return f"  wave {event.wave}: {message}"
    if event.type.startswith("gate."):
        return f"  {message}"
    if event.type in ("run.halted", "run.paused", "run.interrupted", "run.waiting"):
        style = "red" if event.type == "run.halted" else "yellow"
        return f"[{style}]{event.type.replace('.', ' ')}[/]: {message}"
    return None


class LiveView:
    """Shows a run on a terminal while it happens (apply's, or one `status --watch` follows)."""

    def __init__(
        self,
        console: Console,
        tally: Tally,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        verbose: bool = False,
        auto_refresh: bool = True,
    ) -> None:
        self.console = console
        self.tally = tally
        self.clock = clock
        self._sleep = sleep
        self.verbose = verbose
        self._lock = threading.Lock()
        self._live = Live(
            console=console,
            get_renderable=self.render,
            refresh_per_second=REFRESH_PER_SECOND,
            auto_refresh=auto_refresh,
            transient=True,
        )

    def __enter__(self) -> LiveView:
        self._live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._live.stop()  # the cursor comes back and the live area goes, whatever happened

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.tally.add(event)
            line = event_line(event, self.verbose)
            if event.type == "wave.finished" and event.wave is not None:
                wave = self.tally.waves[event.wave]
                took = duration((wave.finished or 0) - (wave.started or 0))
                message = markup_safe(event.message or "")
                line = f"[bold]wave {event.wave} finished[/] in {took}: {message}"
        if line is not None:  # printed outside the lock: rich's refresh thread renders under it
            self._live.console.print(line, highlight=False)

    def sleep(self, seconds: float) -> None:
        """The engine's bake: the live area counts it down from the plan's bake time."""
        self._sleep(seconds)

    def render(self) -> RenderableType:
        """The live area: the current wave's bar and counts, then the run's line."""
        with self._lock:
            return Group(*self._lines(self.clock()))

    def _lines(self, now: float) -> list[RenderableType]:
        tally = self.tally
        lines: list[RenderableType] = []
        if tally.current is not None:
            wave = tally.waves[tally.current]
            left = tally.wave_left(now)
            elapsed = duration(now - wave.started) if wave.started is not None else "-"
            row = Table.grid(padding=(0, 1))
            row.add_row(
                Text(f"wave {wave.index + 1}/{len(tally.waves)}"),
                ProgressBar(total=max(wave.hosts, 1), completed=wave.done, width=30),
                Text(
                    f"{wave.done}/{wave.hosts} hosts  {elapsed} elapsed"
                    + (f", ~{duration(left)} left" if left is not None else "")
                ),
            )
            lines.append(row)
            counts, budget = wave.counts, wave.budget_left
            budget_text = (
                f"[red]budget exceeded by {-budget}[/]"
                if budget < 0
                else f"budget {budget} of {wave.max_failures} left"
            )
            lines.append(
                Text.from_markup(
                    f"[green]done {counts['done']}[/]  [red]failed {counts['failed']}[/]  "
                    f"[red]unreachable {counts['unreachable']}[/]  "
                    f"in flight {counts['running']}  [cyan]noop {counts['noop']}[/]  "
                    f"{budget_text}"
                )
            )
        if tally.window_until is not None:
            left = math.ceil(tally.window_until - now)
            lines.append(Text(f"outside the maintenance windows: next opening in {duration(left)}"))
        if tally.bake_until is not None:
            left = math.ceil(tally.bake_until - now)  # a countdown shows 1s until the end
            lines.append(Text(f"bake: {duration(left)} left before the next wave"))
        run_left = tally.run_left(now)
        lines.append(
            Text(
                f"run: {tally.finished}/{tally.hosts} hosts finished"
                + (f", ~{duration(run_left)} left (bake not counted)" if run_left else "")
            )
        )
        return lines
