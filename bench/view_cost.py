"""What the view costs the engine per event: the callbacks `apply` passes as `on_event`, fed the
events of a 1,000-host wave (locked ... finished, 8 per host), timed in the calling thread.

    python bench/view_cost.py [--hosts 1000]

live: the terminal view (rich, redrawing 4 times a second from its own thread) on /dev/null
made to look like a terminal; lines: the plain lines (-v: with every phase, what apply printed
before the live view); none: no view at all.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from rich.console import Console

from orchestrator.models import (
    Artifact,
    Event,
    HostPhase,
    HostStatus,
    Plan,
    PlannedHost,
    SshTarget,
    Wave,
    WaveOptions,
)
from orchestrator.view.live import LiveView
from orchestrator.view.progress import ProgressPrinter
from orchestrator.view.tally import Tally

PHASES: tuple[HostPhase, ...] = (
    "locked", "staged", "backed_up", "swapped", "verified", "sysctl_restored", "finished"
)  # fmt: skip


def wave_events(hosts: int) -> tuple[Plan, list[Event]]:
    planned = [PlannedHost(name=f"h{i}", domain="a", ssh=SshTarget(address="127.0.0.1"))
               for i in range(hosts)]  # fmt: skip
    plan = Plan(
        plan_id="x", plan_hash="0" * 64, inventory=("i",),
        artifact=Artifact(path="/tmp/runc", sha256="a" * 64, size=1), options=WaveOptions(),
        waves=[Wave(index=0, hosts=planned, max_failures=hosts, domains={"a": hosts})],
        skipped=[], domains={"a": hosts},
    ).sealed()  # fmt: skip
    events = [
        Event(seq=1, time=0.0, type="run.started"),
        Event(seq=2, time=0.0, type="wave.started", wave=0, message=f"{hosts} hosts"),
    ]
    for i in range(hosts):
        for phase in PHASES:
            events.append(Event(seq=len(events) + 1, time=i * 0.01, type="host.phase",
                                host=f"h{i}", phase=phase))  # fmt: skip
        status: HostStatus = "failed" if i % 50 == 0 else "done"
        events.append(Event(seq=len(events) + 1, time=i * 0.01, type="host.finished",
                            host=f"h{i}", status=status, message="a reason"))  # fmt: skip
    return plan, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    args = parser.parse_args()
    plan, events = wave_events(args.hosts)
    with open("/dev/null", "w") as null:
        live = LiveView(Console(file=null, force_terminal=True, width=100), Tally.start(plan),
                        clock=time.time, sleep=time.sleep)  # fmt: skip
        views: dict[str, Callable[[Event], None]] = {
            "none": lambda event: None,
            "lines": ProgressPrinter(null),
            "lines -v": ProgressPrinter(null, verbose=True),  # every phase: as before the live view
            "live": live,
        }
        for name, view in views.items():
            with live if name == "live" else open("/dev/null"):
                started = time.perf_counter()
                for event in events:
                    view(event)
                took = time.perf_counter() - started
            print(f"{name:8} {len(events)} events in {took * 1000:7.1f} ms: "
                  f"{took / len(events) * 1e6:6.1f} us per event")  # fmt: skip


if __name__ == "__main__":
    main()
