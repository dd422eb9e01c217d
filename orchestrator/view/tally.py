"""Counts of a run as its events arrive: what the live view shows, kept apart from rich. Pure."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from orchestrator.models import Event, Plan, RunState

# Statuses a host ends a wave with; anything else (pending, running) is not finished.
FINISHED = frozenset({"done", "noop", "failed", "unreachable", "drift", "rolled_back"})
AGAINST_BUDGET = frozenset({"failed", "unreachable"})


@dataclass
class WaveTally:
    """One wave as far as the events went: its hosts' statuses, when it started, how many of
    its hosts finished since (the rate the estimate is made from)."""

    index: int
    hosts: int
    max_failures: int
    counts: Counter[str] = field(default_factory=Counter)
    started: float | None = None
    finished: float | None = None
    finished_since_start: int = 0
    todo_at_start: int = 0
    last_finish: float | None = None  # when its last host finished

    @property
    def done(self) -> int:
        return sum(self.counts[status] for status in FINISHED)

    @property
    def against_budget(self) -> int:
        return sum(self.counts[status] for status in AGAINST_BUDGET)

    @property
    def budget_left(self) -> int:
        return self.max_failures - self.against_budget


@dataclass
class Tally:
    """Every host's last status and every wave's counts, folded from events."""

    plan: Plan
    status: dict[str, str] = field(default_factory=dict)
    waves: list[WaveTally] = field(default_factory=list)
    wave_of: dict[str, int] = field(default_factory=dict)
    current: int | None = None  # the wave under way, if any
    run_started: float | None = None
    seconds_in_waves: float = 0.0  # this session's wave time, for the run's estimate
    finished_in_waves: int = 0  # hosts finished in this session's waves
    bake_until: float | None = None  # a wave finished and the next one waits until then
    window_until: float | None = None  # the next wave waits for a maintenance window until then

    @classmethod
    def start(cls, plan: Plan, state: RunState | None = None) -> Tally:
        """A tally of `plan`, its hosts as `state` has them (a resumed run keeps its past)."""
        tally = cls(plan)
        for wave in plan.waves:
            tally.waves.append(WaveTally(wave.index, len(wave.hosts), wave.max_failures))
            for host in wave.hosts:
                status = state.hosts[host.name].status if state else "pending"
                tally.status[host.name] = status
                tally.wave_of[host.name] = wave.index
                tally.waves[wave.index].counts[status] += 1
        return tally

    def add(self, event: Event) -> None:
        if event.type.startswith(("run.", "wave.")):
            self.bake_until = self.window_until = None
        if event.type == "run.waiting":
            self.window_until = event.until
        if event.type in ("run.started", "run.resumed") and self.run_started is None:
            self.run_started = event.time
        elif event.type == "wave.started" and event.wave is not None:
            wave = self.waves[event.wave]
            wave.started, wave.finished = event.time, None
            wave.finished_since_start, wave.last_finish = 0, None
            wave.todo_at_start = wave.hosts - wave.done
            self.current = event.wave
        elif event.type == "wave.finished" and event.wave is not None:
            wave = self.waves[event.wave]
            wave.finished = event.time
            if wave.started is not None:
                self.seconds_in_waves += event.time - wave.started
                self.finished_in_waves += wave.finished_since_start
            self.current = None
            bake = self.plan.options.bake_seconds
            if bake > 0 and event.wave < len(self.waves) - 1:  # the engine bakes, as the plan says
                self.bake_until = event.time + bake
        elif event.type in ("host.phase", "host.finished") and event.host in self.status:
            new = "running" if event.type == "host.phase" else (event.status or "failed")
            self._set(event.host, new, event.time)

    def _set(self, host: str, new: str, time: float) -> None:
        old = self.status[host]
        if old == new:
            return
        wave = self.waves[self.wave_of[host]]
        wave.counts[old] -= 1
        wave.counts[new] += 1
        self.status[host] = new
        if new in FINISHED and old not in FINISHED:
            wave.finished_since_start += 1
            wave.last_finish = time

    @property
    def hosts(self) -> int:
        return len(self.status)

    @property
    def finished(self) -> int:
        return sum(wave.done for wave in self.waves)

    def wave_left(self, now: float) -> float | None:
        """Seconds the current wave may still take, at the rate its hosts finished so far."""
        if self.current is None:
            return None
        wave = self.waves[self.current]
        if wave.started is None or wave.finished_since_start == 0:
            return None
        per_host = (now - wave.started) / wave.finished_since_start
        return per_host * (wave.todo_at_start - wave.finished_since_start)

    def run_left(self, now: float) -> float | None:
        """Seconds the rest of the run's waves may take (bake not counted), at this run's rate
        (the current wave counted up to its last finished host: steady between outcomes)."""
        seconds, finished = self.seconds_in_waves, self.finished_in_waves
        if self.current is not None:
            wave = self.waves[self.current]
            if wave.started is not None and wave.last_finish is not None:
                seconds += wave.last_finish - wave.started
                finished += wave.finished_since_start
        if finished == 0:
            return None
        return seconds / finished * (self.hosts - self.finished)
