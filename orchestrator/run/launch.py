"""Running a journal's plan as `apply` and `resume` do: the engine with its view on a screen,
the webhooks notified, through the backend the caller gives or the one its `Reach` names."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.backends.base import WaveRunner
from orchestrator.backends.reach import open_backend
from orchestrator.choices import ExecutorName, PushName
from orchestrator.errors import ExitCode
from orchestrator.models import BecomePasswords, Event
from orchestrator.run.engine import ApplyEnv, Rollout
from orchestrator.run.journal import Journal
from orchestrator.run.notify import Notifier, Webhook
from orchestrator.run.operator import current_operator
from orchestrator.view import Screen, make_view

if TYPE_CHECKING:
    from orchestrator.backends.ansible.streaming import ExecutionNode


@dataclass(frozen=True)
class Reach:
    """How the hosts are reached when the caller gives no backend of its own."""

    executor: ExecutorName
    concurrency: int
    known_hosts: Path | None
    become: BecomePasswords
    nodes: Mapping[str, ExecutionNode]
    push: PushName


@dataclass(frozen=True)
class Show:
    """What the run shows on its screen: phases too, the journal's events as JSON lines on
    stdout, and who else hears each event."""

    screen: Screen
    verbose: bool = False
    json_events: bool = False
    on_event: Callable[[Event], None] | None = None

    def say(self, message: str) -> None:
        self.screen.stderr.write(message + "\n")
        self.screen.stderr.flush()


def run_journal(
    journal: Journal,
    backend: WaveRunner | None,
    reach: Reach,
    show: Show,
    *,
    resumed: bool,
    signers: Sequence[str],
    wait_for_window: bool,
    webhooks: Sequence[Webhook],
) -> ExitCode:
    """Run every wave of the journal's plan that still has work; the run's exit code."""
    screen = show.screen
    view, shown = make_view(
        journal.plan, journal.state, screen, verbose=show.verbose, json_events=show.json_events
    )
    listeners = [shown] + ([show.on_event] if show.on_event is not None else [])
    operator = current_operator(signers)
    notifier = None
    if webhooks:
        show.say(f"notifying {', '.join(hook.host for hook in webhooks)}")
        notifier = Notifier(
            list(webhooks),
            journal.plan,
            journal.run_id,
            operator=operator,
            on_failure=lambda message: journal.record("notify.failed", message=message),
        )
        listeners.append(notifier)

    def each(event: Event) -> None:
        for listener in listeners:
            listener(event)

    env = ApplyEnv(
        clock=screen.clock,
        on_event=each if len(listeners) > 1 else shown,
        sleep=view.sleep,
        operator=operator,
        wait_for_window=wait_for_window,
        sleep_until_window=screen.sleep,
    )
    try:
        with _backend(journal, backend, reach, show) as chosen:
            rollout = Rollout(journal, chosen, env=env)
            with view:
                return rollout.run(resumed=resumed)
    finally:
        if notifier is not None:
            notifier.close()


def _backend(
    journal: Journal, backend: WaveRunner | None, reach: Reach, show: Show
) -> contextlib.AbstractContextManager[WaveRunner]:
    if backend is not None:
        return contextlib.nullcontext(backend)
    return open_backend(
        reach.executor,
        reach.concurrency,
        reach.known_hosts,
        reach.become,
        journal.run_dir,
        nodes=reach.nodes or None,
        gzip=reach.push is PushName.gzip,
        say=show.say,
    )
