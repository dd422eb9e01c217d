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
from orchestrator.lab.faults.exposure import hostile_host, private_modes, secrets_stay_out
from orchestrator.lab.faults.inject import (
    CorruptUpload,
    FillDiskBeforeUpload,
    SetupFailed,
    foreign_elf_stub,
    read_only_dir,
    tiny_tmpfs,
)
from orchestrator.lab.faults.outages import (
    backup_full,
    clock_jump,
    controller_disk_full,
    host_reboot,
    link_cut,
)
from orchestrator.lab.faults.trials import (
    artifact_refused,
    bad_candidate,
    changed_host_key,
    connection_cut,
    connection_cut_ansible,
    damaged_journal,
    edited_plan_refused,
    kill_and_recover,
    killed_during_probe,
    overlapping_applies,
    refused_before_swap,
    sshd_down,
)

TrialFn = Callable[[Bench, random.Random], list[str]]


@dataclass(frozen=True)
class Trial:
    name: str
    run: TrialFn
    full: int  # repetitions in the full bench
    kind: str  # its class of fault: the quick subset runs one trial of each
    quick: bool = True  # quick enough to be drawn for the quick subset


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
KILLED, CUT, HOST_DISK = "orchestrator killed", "connection cut", "host file system"
ARTIFACT, CANDIDATE, RACE = "bad artifact or plan", "bad candidate", "racing applies"
KEY, JOURNAL, SECRETS = "changed host key", "damaged journal", "secrets and modes"
HOSTILE, REBOOT, CONTROLLER_DISK = "hostile host", "host reboot", "controller disk full"
PARTITION, CLOCK = "network partition", "controller clock jump"
TRIALS: tuple[Trial, ...] = (
    Trial("SIGKILL of apply, then resume", partial(kill_and_recover, then="resume"), 30, KILLED),
    Trial(
        "SIGKILL of apply, then rollback", partial(kill_and_recover, then="rollback"), 20, KILLED
    ),
    Trial(
        "SIGKILL of apply --executor ansible, then resume",
        partial(kill_and_recover, then="resume", executor="ansible"),
        10,
        KILLED,
        quick=False,
    ),
    Trial(
        "SIGKILL of apply --executor ansible, then rollback",
        partial(kill_and_recover, then="rollback", executor="ansible"),
        5,
        KILLED,
        quick=False,
    ),
    Trial("SIGKILL during the incident probe, then resume", killed_during_probe, 5, KILLED),
    Trial("connection cut during stage", partial(connection_cut, step="stage"), 5, CUT),
    Trial("connection cut during swap", partial(connection_cut, step="swap"), 5, CUT),
    Trial("connection cut during verify", partial(connection_cut, step="verify"), 5, CUT),
    Trial("sshd killed during verify", sshd_down, 3, CUT, quick=False),
    Trial("ansible: connection cut during stage", partial(cca, step="stage"), 3, CUT, quick=False),
    Trial("ansible: connection cut during swap", partial(cca, step="swap"), 3, CUT, quick=False),
    Trial(
        "ansible: connection cut during verify", partial(cca, step="verify"), 3, CUT, quick=False
    ),
    Trial("disk full beside runc (64k free)", _disk_full, 3, HOST_DISK),
    Trial("disk fills during upload", _disk_fills, 3, HOST_DISK),
    Trial(
        "host disk full during the backup of runc", partial(backup_full, of="runc"), 10, HOST_DISK
    ),
    Trial(
        "host disk full during the sysctl files' backup",
        partial(backup_full, of="files"),
        10,
        HOST_DISK,
    ),
    Trial("read-only runc directory", _read_only, 3, HOST_DISK),
    Trial("staged file corrupted in transit", _corrupted, 3, ARTIFACT),
    Trial(
        "artifact not executable",
        _artifact_trial("data", ["not an executable"], _random_data),
        2,
        ARTIFACT,
    ),
    Trial("artifact not runc", _artifact_trial("true", ["runc version"], _not_runc), 2, ARTIFACT),
    Trial(
        "artifact for another architecture",
        _artifact_trial("aarch64", ["ELF binary for aarch64"], foreign_elf_stub),
        2,
        ARTIFACT,
    ),
    Trial("artifact without matching sha256", artifact_refused, 1, ARTIFACT),
    Trial("plan edited after review", edited_plan_refused, 1, ARTIFACT),
    Trial("candidate hangs (budget 0: halts)", partial(bad_candidate, hangs=True), 2, CANDIDATE),
    Trial(
        "candidate fails (budget 1: still halts)", partial(bad_candidate, hangs=False), 2, CANDIDATE
    ),
    Trial("two overlapping plans at once", partial(overlapping_applies, same_plan=False), 3, RACE),
    Trial("one plan applied twice at once", partial(overlapping_applies, same_plan=True), 3, RACE),
    Trial("changed host key", changed_host_key, 2, KEY),
    Trial("journal: last event cut in half", partial(damaged_journal, damage="cut"), 3, JOURNAL),
    Trial("journal: state.json missing", partial(damaged_journal, damage="no-state"), 2, JOURNAL),
    Trial("journal: events.jsonl lost", partial(damaged_journal, damage="no-events"), 2, JOURNAL),
    Trial(
        "journal: plan copy unreadable",
        partial(damaged_journal, damage="bad-plan"),
        1,
        JOURNAL,
        quick=False,
    ),
    Trial(
        "journal: plan copy edited",
        partial(damaged_journal, damage="edited-plan"),
        1,
        JOURNAL,
        quick=False,
    ),
    Trial(
        "journal: plan copy unreadable, then edited",
        partial(damaged_journal, damage="plan-copy"),
        0,
        JOURNAL,
    ),
    Trial("secrets never written", secrets_stay_out, 1, SECRETS),
    Trial(
        "secrets never written (ansible)",
        partial(secrets_stay_out, executor="ansible"),
        1,
        SECRETS,
        quick=False,
    ),
    Trial("run dir and host store private", private_modes, 1, SECRETS),
    Trial("hostile host: untrusted binaries, templated runtime path", hostile_host, 2, HOSTILE),
    Trial("host reboots mid-run, then resume", host_reboot, 40, REBOOT),
    Trial(
        "controller disk full while writing the journal", controller_disk_full, 30, CONTROLLER_DISK
    ),
    Trial("network partition mid-batch, then restored", link_cut, 40, PARTITION),
    Trial("controller clock jumps during the bake", clock_jump, 30, CLOCK),
)


def kinds() -> list[str]:
    """The classes of fault, in the table's order."""
    return list(dict.fromkeys(trial.kind for trial in TRIALS))


def quick_subset(seed: int) -> list[Trial]:
    """One trial of each class, drawn with `seed` from those quick enough for CI (the same
    seed, the same draw): each class proven once per run; another seed tries another."""
    rng = random.Random(seed)
    chosen = []
    for kind in kinds():
        eligible = [trial for trial in TRIALS if trial.kind == kind and trial.quick]
        if eligible:
            chosen.append(rng.choice(eligible))
    return chosen


def run_trial(trial: Trial, bench: Bench, seed: int) -> list[str]:
    """One repetition; an error of the trial itself counts as a problem, with its type."""
    try:
        return trial.run(bench, random.Random(seed))
    except SetupFailed as error:
        return [f"setup failed: {error}"]
    except Exception as error:
        return [f"{type(error).__name__}: {error}"]
