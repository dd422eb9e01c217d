"""The live view while a run waits for a maintenance window: it counts down to the opening on
the injected clock, then the wave starts; and the lines it prints for gates and the wait."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from orchestrator.errors import ExitCode
from orchestrator.run.engine import ApplyEnv, Rollout
from orchestrator.run.gates import GateResult
from orchestrator.run.journal import Journal
from orchestrator.view.live import LiveView
from orchestrator.view.tally import Tally
from tests.view.test_view import FakeClock, ScriptedWaves, make_plan, recording_console, text_of


def test_the_wait_for_a_window_is_counted_down_then_the_wave_starts(tmp_path: Path) -> None:
    clock = FakeClock()
    clock.now = dt.datetime(2026, 12, 8, 5, 59, 55, tzinfo=dt.UTC).timestamp()  # Tuesday
    plan = make_plan((1, 1))
    options = plan.options.model_copy(
        update={"windows": ("Mon-Fri 22:00-06:00 UTC",), "wave_gate": "check"}
    )
    plan = plan.model_copy(update={"options": options}).sealed()
    journal = Journal.create(tmp_path, plan, clock)
    shown: list[str] = []

    def wait(seconds: float) -> None:  # the engine waits: the view is drawn meanwhile
        for _ in range(3):
            shown.append(text_of(view))
            clock.sleep(1.0)
        clock.sleep(seconds - 3)

    console = recording_console()
    view = LiveView(console, Tally.start(plan, journal.state), clock=clock, sleep=clock.sleep,
                    auto_refresh=False)  # fmt: skip
    env = ApplyEnv(
        clock=clock,
        sleep=clock.sleep,
        on_event=view,
        sleep_until_window=wait,
        run_gate=lambda call: GateResult(0, f"{call.gate} ok"),
    )
    with view:
        assert Rollout(journal, ScriptedWaves(clock, {}), env=env).run() == ExitCode.OK
    opens = dt.datetime(2026, 12, 8, 22, 0, tzinfo=dt.UTC).timestamp()
    left = opens - dt.datetime(2026, 12, 8, 6, 0, 5, tzinfo=dt.UTC).timestamp()  # 15h59m55s
    assert f"next opening in {int(left // 3600)}h{int(left % 3600 // 60):02d}m" in shown[0]
    assert "next opening" not in text_of(view)  # the wave started
    printed = console.export_text()
    assert "run waiting: wave 1 waits for a maintenance window, next opening Tue 2026-12-08" in (
        printed
    )
    assert "wave-gate ok" in printed
