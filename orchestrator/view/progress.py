"""Progress of a run as it happens, off a terminal: plain lines on stderr (one per host outcome,
per phase only when verbose), and one JSON event a line for `--json`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from rich.console import Console

from orchestrator.models import Event, RunState
from orchestrator.util.textsafe import markup_safe, terminal_safe

_STYLE = {"done": "green", "noop": "cyan", "failed": "red", "unreachable": "red", "drift": "yellow"}


class JsonEvents:
    """`--json`: every event as one JSON line, exactly as the journal has it (the machine
    interface), then whatever `then` shows."""

    def __init__(self, stream: TextIO, then: Callable[[Event], None]) -> None:
        self.stream = stream
        self.then = then

    def __call__(self, event: Event) -> None:
        self.stream.write(event.model_dump_json(exclude_none=True) + "\n")
        self.stream.flush()
        self.then(event)


class ProgressPrinter:
    """Turns journal events into plain lines, for CI, cron and pipes."""

    def __init__(
        self,
        stderr: TextIO | None = None,
        *,
        verbose: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        # soft_wrap: one line per outcome however long, for grep and CI logs
        self.console = Console(file=stderr or sys.stderr, highlight=False, soft_wrap=True)
        self.verbose = verbose
        self._sleep = sleep
        self.totals: dict[str, int] = {}
        self.wave_started: dict[int, float] = {}

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def __call__(self, event: Event) -> None:
        line = self.describe(event)
        if line:
            self.console.print(line)

    def sleep(self, seconds: float) -> None:
        """The bake between waves: said once, then waited."""
        self.console.print(f"bake: waiting {seconds:g} s before the next wave")
        self._sleep(seconds)

    def describe(self, event: Event) -> str | None:
        """The event as rich markup; what hosts said (names, messages) shown, never obeyed."""
        host, message = markup_safe(event.host or ""), markup_safe(event.message or "")
        if event.type == "host.phase":
            return f"  {host}: {event.phase}" if self.verbose else None
        if event.type == "host.finished":
            status = event.status or "?"
            self.totals[status] = self.totals.get(status, 0) + 1
            style = _STYLE.get(status, "white")
            detail = f": {message}" if event.message else ""
            flag = "[red]FAILED[/] " if status in ("failed", "unreachable") else "  "
            return f"{flag}[{style}]{host}: {status}[/]{detail}"
        if event.type == "wave.job":
            return f"  wave {event.wave}: {message}"
        if event.type.startswith("gate."):
            return f"  {message}"
        if event.type == "wave.started" and event.wave is not None:
            self.wave_started[event.wave] = event.time
        if event.type in ("wave.started", "wave.finished"):
            verb = event.type.split(".")[1]
            started = self.wave_started.get(event.wave) if event.wave is not None else None
            if event.type == "wave.finished" and started is not None:
                verb += f" in {event.time - started:.1f} s"
            return f"[bold]wave {event.wave} {verb}[/]" + (f": {message}" if event.message else "")
        if event.type.startswith("run."):
            counts = ", ".join(f"{count} {status}" for status, count in sorted(self.totals.items()))
            text = f"[bold]run {event.type.split('.')[1]}[/]"
            if event.status:
                text += f" ({event.status})"
            if event.message:
                text += f": {message}"
            return text + (f" [{counts}]" if counts and event.type != "run.started" else "")
        return None


def status_text(state: RunState) -> str:
    """`status RUN`: the run and each host, a line each, plain text for terminals and scripts."""
    lines = [
        f"run {state.run_id} plan {state.plan_id}: {state.status}, next wave {state.next_wave}"
    ]
    if state.limit is not None:
        lines.append(f"  limited to {terminal_safe(state.limit)}: {len(state.hosts)} hosts")
    for name, host in sorted(state.hosts.items(), key=lambda item: (item[1].wave, item[0])):
        runc = terminal_safe((host.runc_sha256 or "-")[:12])
        message = f"  {terminal_safe(host.message)}" if host.message else ""
        name = terminal_safe(name)
        row = f"wave {host.wave:<3} {name:<24} {host.status:<12} {host.phase:<16} runc {runc}"
        lines.append(f"  {row}{message}")
        if host.probe is not None:
            lines.append(f"      {host.probe.summary()}")
    return "\n".join(lines) + "\n"
