"""The quick subset of the fault-injection bench (`bench/faults.py`): one trial of each class of
fault, drawn with `RUNC_ROLLOUT_FAULT_SEED` (0 unless set; the test ids name the trials drawn),
on a lab of its own (8 hosts: 2 full, 1 containerd-only), judged by the scenario's expectations
and the invariant (`orchestrator.lab.invariant`). The seed also seeds each trial."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from orchestrator.lab.faults.bench import Bench
from orchestrator.lab.faults.table import Trial, quick_subset, run_trial
from tests.conftest import running_lab

pytestmark = pytest.mark.lab

FAULT_LAB_HOSTS = 8
FAULT_LAB_FULL = 2
FAULT_LAB_CONTAINERD = 1
SEED = int(os.environ.get("RUNC_ROLLOUT_FAULT_SEED", "0"))
QUICK = quick_subset(SEED)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    base = tmp_path_factory.mktemp("faults")
    with running_lab(base, FAULT_LAB_HOSTS, FAULT_LAB_FULL, FAULT_LAB_CONTAINERD) as fleet:
        yield Bench(fleet, base / "work")


@pytest.mark.parametrize("trial", QUICK, ids=[f"{trial.kind}: {trial.name}" for trial in QUICK])
def test_fault_ends_safely(bench: Bench, trial: Trial) -> None:
    problems = run_trial(trial, bench, SEED)
    assert not problems, f"{trial.name} [seed {SEED}]:\n" + "\n".join(problems)
