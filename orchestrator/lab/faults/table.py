"""The table of fault trials: how many times the full bench (`bench/faults.py`) and the quick
subset (`tests/run/test_faults_lab.py`) run each, and how one repetition is run."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# The table of trials
from orchestrator.lab.faults.bench import Bench
from orchestrator.lab.faults.inject import (
    CorruptUpload,
    FillDiskBeforeUpload,
    SetupFailed,
    foreign_elf_stub,
    read_only_dir,
    tiny_tmpfs,
)
from orchestrator.lab.faults.trials import (
    artifact_refused,
    bad_candidate,
    changed_host_key,
    connection_cut,
    connection_cut_ansible,
    damaged_journal,
    edited_plan_refused,
    hostile_host,
    kill_and_recover,
    killed_during_probe,
    overlapping_applies,
    private_modes,
    refused_before_swap,
    secrets_stay_out,
    sshd_down,
)

TrialFn = Callable[[Bench, random.Random], list[str]]


@dataclass(frozen=True)
class Trial:
    name: str
    run: TrialFn
    full: int  # repetitions in the full bench
    quick: int  # in --quick and in CI (0: full bench only)


def _artifact_trial(name: str, words: Sequence[str], make: Callable[[Path], None]) -> TrialFn:
    def run(bench: Bench, rng: random.Random) -> list[str]:
        artifact = bench.scratch(f"artifact-{name}") / "runc"
        make(artifact)
        return refused_before_swap(bench, rng, name=name, words=words, artifact=artifact)

    return run


def _random_data(path: Path) -> None:
    path.write_bytes(b"\x00not a program\n" + os.urandom(4096))
    path.chmod(0o755)


def _not_runc(path: Path) -> None:
    shutil.copy("/usr/bin/true", path)


def _disk_full(bench: Bench, rng: random.Random) -> list[str]:
    return refused_before_swap(
        bench,
        rng,
        name="tiny-tmpfs",
        words=["bytes free"],
        around=lambda host: tiny_tmpfs(bench.fleet, host, 64 * 1024),
    )


def _disk_fills(bench: Bench, rng: random.Random) -> list[str]:
    room = 3 * bench.artifact.stat().st_size  # passes the free-space check
    return refused_before_swap(
        bench,
        rng,
        name="fill",
        words=["No space left"],
        around=lambda host: tiny_tmpfs(bench.fleet, host, room),
        fault=lambda scratch: FillDiskBeforeUpload(bench.fleet),
    )


def _read_only(bench: Bench, rng: random.Random) -> list[str]:
    return refused_before_swap(
        bench,
        rng,
        name="read-only",
        # The facts see the read-only mount: the host is refused before any step is sent.
        words=["is on a read-only file system", "update the OS image"],
        around=lambda host: read_only_dir(bench.fleet, host),
    )


def _corrupted(bench: Bench, rng: random.Random) -> list[str]:
    return refused_before_swap(
        bench,
        rng,
        name="corrupt",
        words=["arrived with sha256"],
        fault=lambda scratch: CorruptUpload(scratch, rng),
    )


cca = connection_cut_ansible
TRIALS: tuple[Trial, ...] = (
    Trial("SIGKILL of apply, then resume", partial(kill_and_recover, then="resume"), 30, 1),
    Trial("SIGKILL of apply, then rollback", partial(kill_and_recover, then="rollback"), 20, 1),
    Trial(
        "SIGKILL of apply --executor ansible, then resume",
        partial(kill_and_recover, then="resume", executor="ansible"),
        10,
        0,
    ),
    Trial(
        "SIGKILL of apply --executor ansible, then rollback",
        partial(kill_and_recover, then="rollback", executor="ansible"),
        5,
        0,
    ),
    Trial("connection cut during stage", partial(connection_cut, step="stage"), 5, 1),
    Trial("connection cut during swap", partial(connection_cut, step="swap"), 5, 1),
    Trial("connection cut during verify", partial(connection_cut, step="verify"), 5, 1),
    Trial("sshd killed during verify", sshd_down, 3, 0),
    Trial("ansible: connection cut during stage", partial(cca, step="stage"), 3, 0),
    Trial("ansible: connection cut during swap", partial(cca, step="swap"), 3, 0),
    Trial("ansible: connection cut during verify", partial(cca, step="verify"), 3, 0),
    Trial("disk full beside runc (64k free)", _disk_full, 3, 1),
    Trial("disk fills during upload", _disk_fills, 3, 0),
    Trial("read-only runc directory", _read_only, 3, 1),
    Trial("staged file corrupted in transit", _corrupted, 3, 1),
    Trial(
        "artifact not executable",
        _artifact_trial("data", ["not an executable"], _random_data),
        2,
        1,
    ),
    Trial("artifact not runc", _artifact_trial("true", ["runc version"], _not_runc), 2, 1),
    Trial(
        "artifact for another architecture",
        _artifact_trial("aarch64", ["ELF binary for aarch64"], foreign_elf_stub),
        2,
        1,
    ),
    Trial("candidate hangs (budget 0: halts)", partial(bad_candidate, hangs=True), 2, 1),
    Trial("SIGKILL during the incident probe, then resume", killed_during_probe, 5, 1),
    Trial("candidate fails (budget 1: still halts)", partial(bad_candidate, hangs=False), 2, 1),
    Trial("two overlapping plans at once", partial(overlapping_applies, same_plan=False), 3, 1),
    Trial("one plan applied twice at once", partial(overlapping_applies, same_plan=True), 3, 1),
    Trial("changed host key", changed_host_key, 2, 1),
    Trial("journal: last event cut in half", partial(damaged_journal, damage="cut"), 3, 1),
    Trial("journal: state.json missing", partial(damaged_journal, damage="no-state"), 2, 1),
    Trial("journal: events.jsonl lost", partial(damaged_journal, damage="no-events"), 2, 0),
    Trial("journal: plan copy unreadable", partial(damaged_journal, damage="bad-plan"), 1, 0),
    Trial("journal: plan copy edited", partial(damaged_journal, damage="edited-plan"), 1, 0),
    Trial(
        "journal: plan copy unreadable, then edited",
        partial(damaged_journal, damage="plan-copy"),
        0,
        1,
    ),
    Trial("secrets never written", secrets_stay_out, 1, 1),
    Trial("secrets never written (ansible)", partial(secrets_stay_out, executor="ansible"), 1, 0),
    Trial("run dir and host store private", private_modes, 1, 1),
    Trial("artifact without matching sha256", artifact_refused, 1, 1),
    Trial("plan edited after review", edited_plan_refused, 1, 1),
    Trial("hostile host: untrusted binaries, templated runtime path", hostile_host, 2, 1),
)


def run_trial(trial: Trial, bench: Bench, seed: int) -> list[str]:
    """One repetition; an error of the trial itself counts as a problem, with its type."""
    try:
        return trial.run(bench, random.Random(seed))
    except SetupFailed as error:
        return [f"setup failed: {error}"]
    except Exception as error:
        return [f"{type(error).__name__}: {error}"]
