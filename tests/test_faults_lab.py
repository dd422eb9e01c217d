"""The quick subset of the fault-injection bench (`bench/faults.py`): each trial once, on a lab
of its own (8 hosts, 2 of them full), judged by the scenario's expectations and the invariant
(`orchestrator.invariant`). `RUNC_ROLLOUT_FAULT_SEED` picks another seed."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from orchestrator.lab.fleet import lab_down
from tests.conftest import lab_unavailable, start_lab
from tests.faultlib import TRIALS, Bench, Trial, run_trial

pytestmark = pytest.mark.lab

FAULT_LAB_HOSTS = 8
FAULT_LAB_FULL = 2
QUICK = [trial for trial in TRIALS if trial.quick]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"lab unavailable: {reason}")
    base = tmp_path_factory.mktemp("faults")
    fleet = start_lab(
        base / "state", base / "inventory" / "hosts.yml", FAULT_LAB_HOSTS, FAULT_LAB_FULL
    )
    try:
        yield Bench(fleet, base / "work")
    finally:
        lab_down(fleet.state_dir, fleet.inventory)


@pytest.mark.parametrize("trial", QUICK, ids=[trial.name for trial in QUICK])
def test_fault_ends_safely(bench: Bench, trial: Trial) -> None:
    seed = int(os.environ.get("RUNC_ROLLOUT_FAULT_SEED", "0"))
    problems = run_trial(trial, bench, seed)
    assert not problems, f"{trial.name} [seed {seed}]:\n" + "\n".join(problems)
