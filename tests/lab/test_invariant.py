"""The invariant checker itself (no lab): it reads the snapshot script's output, and `judge`
passes a clean fleet and names every kind of violation the fault trials look for."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.lab.invariant import (
    HostSnapshot,
    RuncFile,
    RunView,
    judge,
    load_run,
    parse_snapshot,
    snapshot_script,
)
from orchestrator.models import (
    Artifact,
    BeforeRunc,
    HostBefore,
    HostRecord,
    Plan,
    PlannedHost,
    RecordedFile,
    RecordedRunc,
    SshTarget,
    Wave,
    WaveOptions,
)
from orchestrator.run.journal import Journal

BEFORE, TARGET, OTHER = "b" * 64, "a" * 64, "c" * 64
FILE, FILE_BEFORE, FILE_AFTER = "/etc/sysctl.d/90-x.conf", "1" * 64, "2" * 64
RUNC = "/usr/local/sbin/runc"


def plan() -> Plan:
    before = HostBefore(runc_path=RUNC, runc_sha256=BEFORE, sysctl_runtime=163840)
    hosts = [
        PlannedHost(name=name, domain="a", ssh=SshTarget(address="127.0.0.1"), before=before)
        for name in ("h1", "h2")
    ]
    return Plan(
        plan_id="x",
        plan_hash="0" * 64,
        inventory=("inv",),
        artifact=Artifact(path="/tmp/runc", sha256=TARGET, size=1),
        options=WaveOptions(),
        waves=[Wave(index=0, hosts=hosts, max_failures=0, domains={"a": 2})],
        skipped=[],
        domains={"a": 2},
    ).sealed()


def snapshot(**changes: object) -> HostSnapshot:
    """An untouched host: the before runc, 163840, the original file."""
    base = HostSnapshot(
        runc_path=RUNC,
        runc_exists=True,
        runc_executable=True,
        runc_sha256=BEFORE,
        version_exit=0,
        version_line="runc version 1.0.0-rc93",
        temp_files=(),
        lock_owner=None,
        backups={},
        sysctl_runtime=163840,
        sysctl_files={FILE: (FILE_BEFORE, ("163840",))},
        modes={},
        verify_containers=0,
        record_json=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def record(run_id: str, outcome: str = "done", phase: str = "finished") -> str:
    return HostRecord(
        run_id=run_id,
        plan_id="x",
        phase=phase,  # type: ignore[arg-type]
        outcome=outcome,  # type: ignore[arg-type]
        runc_path=RUNC,
        before_sha256=BEFORE,
        target_sha256=TARGET,
        sysctl_before=163840,
        sysctl_target=16384,
        files=[RecordedFile(path=FILE, before_sha256=FILE_BEFORE, after_sha256=FILE_AFTER)],
        updated=0.0,
    ).model_dump_json()


def done(run_id: str) -> HostSnapshot:
    return snapshot(
        runc_sha256=TARGET,
        backups={BEFORE: BEFORE},
        sysctl_runtime=16384,
        sysctl_files={FILE: (FILE_AFTER, ("16384",))},
        record_json=record(run_id),
    )


@pytest.fixture
def run(tmp_path: Path) -> tuple[Journal, RunView]:
    """h1 done, h2 never reached (the run halted)."""
    journal = Journal.create(tmp_path, plan())
    journal.record("run.started")
    journal.record("host.phase", host="h1", phase="swapped", runc_sha256=TARGET)
    journal.record("host.finished", host="h1", status="done", phase="finished", runc_sha256=TARGET)
    journal.record("run.halted")
    return journal, load_run(journal.run_dir)


def baseline() -> dict[str, HostSnapshot]:
    return {"h1": snapshot(), "h2": snapshot()}


def test_a_clean_fleet_passes(run: tuple[Journal, RunView]) -> None:
    journal, view = run
    snapshots = {"h1": done(journal.run_id), "h2": snapshot()}
    assert judge([view], snapshots, baseline=baseline()) == []


@pytest.mark.parametrize(
    ("h1", "h2", "expected"),
    [
        ({"runc_exists": False}, {}, "is missing"),
        ({"runc_sha256": OTHER}, {}, "neither the before"),
        ({"version_exit": 126}, {}, "--version exits 126"),
        ({"temp_files": (f"{RUNC}.tmp",)}, {}, "temporary files left"),
        ({"lock_owner": "r"}, {}, "still locked"),
        ({"sysctl_runtime": 163840}, {}, "done but sysctl runtime"),
        ({"sysctl_files": {FILE: (FILE_BEFORE, ("163840",))}}, {}, "set another value"),
        ({"backups": {}}, {}, "backup of its before"),
        ({"backups": {BEFORE: BEFORE, OTHER: OTHER}}, {}, "swapped again"),
        ({"backups": {BEFORE: BEFORE, f"{BEFORE}.tmp": OTHER}}, {}, "does not hold"),
        ({}, {"runc_sha256": TARGET}, "not its before"),
        ({}, {"sysctl_files": {FILE: (FILE_AFTER, ("16384",))}}, "sysctl files not as before"),
        ({}, {"sysctl_runtime": 16384}, "expected its before 163840"),
        ({}, {"verify_containers": 1}, "verification containers"),
    ],
)
def test_violations_are_named(
    run: tuple[Journal, RunView], h1: dict[str, object], h2: dict[str, object], expected: str
) -> None:
    journal, view = run
    snapshots = {
        "h1": dataclasses.replace(done(journal.run_id), **h1),  # type: ignore[arg-type]
        "h2": snapshot(**h2),
    }
    problems = judge([view], snapshots, baseline=baseline())
    assert any(expected in problem for problem in problems), problems


def test_journal_and_record_must_agree(run: tuple[Journal, RunView]) -> None:
    journal, view = run
    rolled_back = snapshot(backups={BEFORE: BEFORE}, record_json=record(journal.run_id, "failed"))
    problems = judge([view], {"h1": rolled_back, "h2": snapshot()}, baseline=baseline())
    assert any("record says failed, journal says done" in p for p in problems), problems
    in_flight = done(journal.run_id)
    in_flight = dataclasses.replace(
        in_flight, record_json=record(journal.run_id, "in_progress", "verified")
    )
    problems = judge([view], {"h1": in_flight, "h2": snapshot()}, baseline=baseline())
    assert any("still in progress" in p for p in problems), problems
    assert not judge(
        [view], {"h1": done(journal.run_id), "h2": snapshot()}, baseline=baseline(), settled=False
    )


def test_a_stale_state_file_and_a_second_swap_are_caught(
    run: tuple[Journal, RunView], tmp_path: Path
) -> None:
    journal, _ = run
    journal.record("host.phase", host="h1", phase="swapped", runc_sha256=TARGET)
    (journal.run_dir / "state.json").write_text(
        (journal.run_dir / "state.json").read_text().replace('"halted"', '"completed"')
    )
    problems = judge([load_run(journal.run_dir)], {"h1": done(journal.run_id), "h2": snapshot()})
    assert any("swapped 2 times" in p for p in problems), problems
    assert any("disagrees with events.jsonl" in p for p in problems), problems


def test_another_run_claiming_a_host_is_caught(
    run: tuple[Journal, RunView], tmp_path: Path
) -> None:
    journal, view = run
    other = Journal.create(tmp_path / "other", plan())
    other.record("host.phase", host="h1", phase="swapped", runc_sha256=TARGET)
    other.record("host.finished", host="h1", status="done", phase="finished")
    problems = judge(
        [view, load_run(other.run_dir)],
        {"h1": done(journal.run_id), "h2": snapshot()},
        baseline=baseline(),
    )
    assert any("swapped 2 times" in p for p in problems), problems
    assert any(f"run {other.run_id} says done" in p for p in problems), problems


def test_snapshot_output_is_parsed() -> None:
    mark = "@@record-1@@"
    output = "\n".join(
        [
            "exists=1",
            "executable=1",
            f"sha256={TARGET}",
            "version_exit=0",
            "version=runc version 1.1.5",
            f"temp={RUNC[:-4]}.runc-rollout-r.tmp",
            "lock=run-1",
            f"backup={BEFORE} {BEFORE}",
            "sysctl=16384",
            f"sysctl_file={FILE} {FILE_AFTER} 16384,",
            "mode=/var/lib/runc-rollout 700",
            "verify_containers=0",
            mark,
            '{"x": 1}',
        ]
    )
    parsed = parse_snapshot(RUNC, output + "\n", mark)
    assert parsed.runc_sha256 == TARGET and parsed.lock_owner == "run-1"
    assert parsed.temp_files == (f"{RUNC[:-4]}.runc-rollout-r.tmp",)
    assert parsed.sysctl_files == {FILE: (FILE_AFTER, ("16384",))}
    assert parsed.modes == {"/var/lib/runc-rollout": 0o700}
    assert parsed.record_json == '{"x": 1}\n'
    empty = parse_snapshot(RUNC, f"sysctl=\n{mark}\n", mark)
    assert not empty.runc_exists and empty.sysctl_runtime is None and empty.record_json is None


# ---------------------------------------------------------------------------------------------
# A host whose runtimes execute two runc files (Docker's and containerd CRI's): both are checked

CRI = "/usr/local/bin/runc"
CRI_BEFORE = "d" * 64


def two_runc_plan() -> Plan:
    """As `plan()`, each host's runtimes also executing CRI's runc (another before)."""
    before = HostBefore(
        runc_path=RUNC,
        runc_sha256=BEFORE,
        sysctl_runtime=163840,
        also=[BeforeRunc(path=CRI, sha256=CRI_BEFORE)],
    )
    body = plan().model_dump()
    for wave in body["waves"]:
        for host in wave["hosts"]:
            host["before"] = before.model_dump()
    return Plan.model_validate(body).sealed()


def cri(sha256: str | None = CRI_BEFORE, **changes: object) -> tuple[RuncFile, ...]:
    file = RuncFile(path=CRI, exists=True, executable=True, sha256=sha256, version_exit=0)
    return (dataclasses.replace(file, **changes),)  # type: ignore[arg-type]


def two_runc_record(run_id: str, outcome: str = "done") -> str:
    body = HostRecord.model_validate_json(record(run_id, outcome))
    also = [RecordedRunc(path=CRI, before_sha256=CRI_BEFORE)]
    return body.model_copy(update={"also": also}).model_dump_json()


@pytest.fixture
def two_runc_run(tmp_path: Path) -> tuple[Journal, RunView]:
    journal = Journal.create(tmp_path, two_runc_plan())
    journal.record("run.started")
    journal.record("host.phase", host="h1", phase="swapped", runc_sha256=TARGET)
    journal.record("host.finished", host="h1", status="done", phase="finished", runc_sha256=TARGET)
    journal.record("run.halted")
    return journal, load_run(journal.run_dir)


def two_runc_done(run_id: str) -> HostSnapshot:
    return dataclasses.replace(
        done(run_id),
        also=cri(TARGET),
        backups={BEFORE: BEFORE, CRI_BEFORE: CRI_BEFORE, TARGET: TARGET},  # as apply keeps them
        record_json=two_runc_record(run_id),
    )


def test_every_swapped_runc_is_checked_not_only_the_first(
    two_runc_run: tuple[Journal, RunView],
) -> None:
    journal, view = two_runc_run
    untouched = snapshot(also=cri())
    clean = {"h1": two_runc_done(journal.run_id), "h2": untouched}
    assert judge([view], clean) == []
    with_baseline = {"h1": snapshot(also=cri()), "h2": snapshot(also=cri())}
    assert judge([view], clean, baseline=with_baseline) == []

    def problems(h1: HostSnapshot, h2: HostSnapshot = untouched) -> list[str]:
        return judge([view], {"h1": h1, "h2": h2})

    done_host = two_runc_done(journal.run_id)
    missing = dataclasses.replace(done_host, also=cri(None, exists=False, executable=False))
    assert f"h1: {CRI} is missing" in problems(missing)
    partial = dataclasses.replace(done_host, also=cri(OTHER))
    assert any(f"{CRI} has sha256 {OTHER[:12]}: neither the before" in p for p in problems(partial))
    broken = dataclasses.replace(done_host, also=cri(TARGET, version_exit=126))
    assert f"h1: {CRI} --version exits 126" in problems(broken)
    half_done = dataclasses.replace(done_host, also=cri(CRI_BEFORE))
    assert any("not the target, though the record says done" in p for p in problems(half_done))
    again = {BEFORE: BEFORE, CRI_BEFORE: CRI_BEFORE, TARGET: TARGET, OTHER: OTHER}
    assert any(
        "swapped again" in p for p in problems(dataclasses.replace(done_host, backups=again))
    )
    no_backup = dataclasses.replace(done_host, backups={BEFORE: BEFORE, TARGET: TARGET})
    assert any(f"({CRI_BEFORE[:12]}, {CRI}) is missing" in p for p in problems(no_backup))
    rolled_back = dataclasses.replace(
        snapshot(also=cri(TARGET)),
        backups={BEFORE: BEFORE, CRI_BEFORE: CRI_BEFORE},
        record_json=two_runc_record(journal.run_id, "failed"),
    )
    assert any("not its before, though the record says failed" in p for p in problems(rolled_back))
    touched = snapshot(also=cri(TARGET))
    assert f"h2: {CRI} is {TARGET[:12]}, not its before" in problems(done_host, touched)


def test_snapshot_output_of_another_runc_is_parsed() -> None:
    mark = "@@record-2@@"
    output = f"also={CRI} 1 1 {TARGET} 0\nalso=/opt/x/runc 0 0 - -\n{mark}\n"
    parsed = parse_snapshot(RUNC, output, mark)
    assert parsed.also == (
        RuncFile(path=CRI, exists=True, executable=True, sha256=TARGET, version_exit=0),
        RuncFile(
            path="/opt/x/runc", exists=False, executable=False, sha256=None, version_exit=None
        ),
    )
    script = snapshot_script(RUNC, mark, [CRI])
    assert f"ALSO={CRI}\n" in script and f"RUNC={RUNC}\n" in script
