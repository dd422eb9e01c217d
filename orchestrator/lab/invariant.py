"""The invariant every failure must leave intact: one checker for the fault tests and the bench.

After any failure, every host has a working runc: each file the runtimes execute (the plan's
runc path and every other one it swaps with it: CRI's BinaryName, another Docker runtime's)
exists, is executable, `--version` runs, and its sha256 is its own "before" in the plan or the
artifact, never a partial or missing file; a host done has the artifact in every one of them, a
host rolled back or untouched its before in every one. Once a run has been resumed or rolled
back ("settled"), no temporary or lock file is left. The local journal's final status and runc
checksum of each host, the host-side record and the host's real state agree. The sysctl matches
the outcome: a host done has the target at runtime and in every file that sets it; a host rolled
back or untouched has its "before" value and the files' original bytes.

`snapshot_hosts` reads the real state (one round trip per host, read-only); `judge` compares it
with the journals (pure); `check_runs` does both.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from orchestrator.backends.group import run_on_hosts
from orchestrator.host import commands
from orchestrator.host.scripts import hostside_script, render
from orchestrator.host.session import Executor
from orchestrator.models import HostRecord, HostState, Plan, PlannedHost, RunState
from orchestrator.run.journal import (
    EVENTS_FILE,
    PLAN_FILE,
    STATE_FILE,
    fold,
    initial_state,
    iter_events,
)

SNAPSHOT_TIMEOUT = 60.0


@dataclass(frozen=True)
class RuncFile:
    """One more runc file the plan swaps on a host, as found."""

    path: str
    exists: bool
    executable: bool
    sha256: str | None
    version_exit: int | None  # None: not executable, so not run


@dataclass(frozen=True)
class HostSnapshot:
    """What the invariant looks at on one host, as found."""

    runc_path: str
    runc_exists: bool
    runc_executable: bool
    runc_sha256: str | None
    version_exit: int | None  # None: not executable, so not run
    version_line: str
    temp_files: tuple[str, ...]
    lock_owner: str | None  # None: no lock directory
    backups: dict[str, str]  # name in the backup store -> sha256 of its content
    sysctl_runtime: int | None
    sysctl_files: dict[str, tuple[str, tuple[str, ...]]]  # path -> (sha256, values it sets)
    modes: dict[str, int]  # host-side store paths -> permission bits
    verify_containers: int  # runc-rollout verification containers left (hosts with Docker)
    record_json: str | None
    also: tuple[RuncFile, ...] = ()  # the other runc files the plan swaps, in its order


def snapshot_script(runc_path: str, mark: str, also: Sequence[str] = ()) -> str:
    """`hostside/snapshot.sh` for a host whose runtimes execute `runc_path` and `also`; its
    record follows the line `mark`."""
    return render(hostside_script("snapshot.sh"), RUNC=runc_path, MARK=mark, ALSO=" ".join(also))


def parse_snapshot(runc_path: str, output: str, mark: str) -> HostSnapshot:
    """The snapshot script's output as a `HostSnapshot`. Pure."""
    head, _, record = output.partition(f"{mark}\n")
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for line in head.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in ("temp", "backup", "sysctl_file", "mode", "also"):
            multi.setdefault(key, []).append(value)
        else:
            single[key] = value
    backups = dict(
        (parts[0], parts[1] if len(parts) > 1 else "")
        for parts in (entry.split(" ", 1) for entry in multi.get("backup", []))
    )
    sysctl_files: dict[str, tuple[str, tuple[str, ...]]] = {}
    for entry in multi.get("sysctl_file", []):
        path, sha, values_text = [*entry.split(" ", 2), "", ""][:3]
        values = tuple(value for value in values_text.split(",") if value)
        sysctl_files[path] = (sha, values)
    also = []
    for entry in multi.get("also", []):
        path, exists, executable, sha, code = [*entry.rsplit(" ", 4), "", "", "", ""][:5]
        also.append(
            RuncFile(
                path=path,
                exists=exists == "1",
                executable=executable == "1",
                sha256=sha if sha != "-" and sha else None,
                version_exit=_int(code) if code != "-" else None,
            )
        )
    modes = {}
    for entry in multi.get("mode", []):
        path, _, bits = entry.rpartition(" ")
        modes[path] = int(bits, 8)
    return HostSnapshot(
        runc_path=runc_path,
        runc_exists=single.get("exists") == "1",
        runc_executable=single.get("executable") == "1",
        runc_sha256=single.get("sha256") or None,
        version_exit=_int(single.get("version_exit")),
        version_line=single.get("version", ""),
        temp_files=tuple(multi.get("temp", [])),
        lock_owner=single.get("lock"),
        backups=backups,
        sysctl_runtime=_int(single.get("sysctl")),
        sysctl_files=sysctl_files,
        modes=modes,
        verify_containers=_int(single.get("verify_containers")) or 0,
        record_json=record if record.strip() else None,
        also=tuple(also),
    )


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text.strip())
    except ValueError:
        return None


def runc_path_of(planned: PlannedHost) -> str:
    """The file the runtime executes, as the plan recorded it (plan made with facts)."""
    if planned.before is None:
        raise ValueError(f"{planned.name}: the plan has no facts for it (plan with --gather)")
    return planned.before.runc_path


def also_paths_of(planned: PlannedHost) -> list[str]:
    """The other runc files the plan swaps on the host with the first (CRI's, another
    Docker runtime's)."""
    return [item.path for item in planned.before.also] if planned.before is not None else []


def snapshot_hosts(
    executor: Executor, hosts: Sequence[PlannedHost], *, concurrency: int = 8
) -> dict[str, HostSnapshot | Exception]:
    """Read every host's state (read-only, one round trip each); a host that cannot be read
    gets its exception."""

    def one(name: str, planned: PlannedHost) -> HostSnapshot:
        session = executor.session(planned.ssh, name=name)
        mark = f"@@record-{secrets.token_hex(8)}@@"
        runc_path = runc_path_of(planned)
        script = snapshot_script(runc_path, mark, also_paths_of(planned))
        result = session.run(script, timeout=SNAPSHOT_TIMEOUT)
        return parse_snapshot(runc_path, result.stdout, mark)

    return run_on_hosts({host.name: host for host in hosts}, one, concurrency=concurrency)


# ---------------------------------------------------------------------------------------------
# Runs as their journals tell them


@dataclass(frozen=True)
class RunView:
    """A run's journal, read without changing it: the state folded from the events."""

    run_dir: Path
    plan: Plan
    state: RunState
    swaps: dict[str, int]  # host -> `swapped` phase events
    problems: list[str] = field(default_factory=list)  # a state file missing or stale

    @property
    def run_id(self) -> str:
        return self.state.run_id


def load_run(run_dir: Path) -> RunView:
    """Fold a run's events (the truth); note where state.json disagrees with them."""
    plan = Plan.model_validate_json((run_dir / PLAN_FILE).read_bytes())
    problems: list[str] = []
    state = initial_state(run_dir.name, plan)
    swaps: dict[str, int] = {}
    for event in iter_events(run_dir / EVENTS_FILE, []):  # unreadable lines: not a violation
        fold(state, event)
        if event.type == "host.phase" and event.phase == "swapped" and event.host:
            swaps[event.host] = swaps.get(event.host, 0) + 1
    state_file = run_dir / STATE_FILE
    if state_file.is_file():
        try:
            saved = RunState.model_validate_json(state_file.read_bytes())
        except ValidationError:
            problems.append(f"{state_file}: unreadable")
        else:
            if saved.hosts != state.hosts or saved.status != state.status:
                problems.append(f"{state_file}: disagrees with {EVENTS_FILE}")
    else:
        problems.append(f"{state_file}: missing")
    return RunView(run_dir, plan, state, swaps, problems)


# ---------------------------------------------------------------------------------------------
# The judgement


@dataclass(frozen=True)
class Expectations:
    """What a host must look like, from the plan and (optionally) a snapshot taken before."""

    artifact_sha256: str
    before_sha256: str | None
    before_sysctl: int | None
    before_files: dict[str, str] | None  # path -> sha256, when a baseline was taken
    also_before: dict[str, str] = field(default_factory=dict)  # other runc path -> before sha256


def judge(
    runs: Sequence[RunView],
    snapshots: Mapping[str, HostSnapshot | Exception],
    *,
    baseline: Mapping[str, HostSnapshot] | None = None,
    settled: bool = True,
    single_rollout: bool = True,
) -> list[str]:
    """Every violation of the invariant, as "host: what" lines; empty when it holds. Pure.

    `settled`: the runs were resumed or rolled back to their end, so nothing may be in flight.
    `single_rollout`: the hosts started with an empty host-side store (a lab host after reset),
    so each holds at most one backup and was swapped at most once over all `runs`.
    """
    problems: list[str] = []
    if settled:
        problems += [f"journal {run.run_id}: {problem}" for run in runs for problem in run.problems]
    planned: dict[str, tuple[PlannedHost, RunView]] = {}
    for run in runs:
        for host in run.plan.hosts:
            planned.setdefault(host.name, (host, run))
    for name, (host, first_run) in planned.items():
        snapshot = snapshots.get(name)
        if snapshot is None:
            problems.append(f"{name}: not inspected")
            continue
        if isinstance(snapshot, Exception):
            problems.append(f"{name}: cannot be inspected: {snapshot}")
            continue
        before = baseline.get(name) if baseline else None
        expect = Expectations(
            artifact_sha256=first_run.plan.artifact.sha256,
            before_sha256=before.runc_sha256
            if before
            else (host.before.runc_sha256 if host.before else None),
            before_sysctl=before.sysctl_runtime
            if before
            else (host.before.sysctl_runtime if host.before else None),
            before_files={path: sha for path, (sha, _) in before.sysctl_files.items()}
            if before
            else None,
            also_before=_also_before(host, before),
        )
        verdicts = _judge_host(name, snapshot, runs, expect, settled, single_rollout)
        problems += [f"{name}: {text}" for text in verdicts]
    return problems


def _also_before(host: PlannedHost, before: HostSnapshot | None) -> dict[str, str]:
    """Each other runc file's before: from the baseline snapshot when one was taken, else the
    plan's facts."""
    planned = {item.path: item.sha256 for item in host.before.also} if host.before else {}
    if before is None:
        return planned
    found = {item.path: item.sha256 for item in before.also if item.sha256 is not None}
    return {path: found.get(path, sha) for path, sha in planned.items()}


def _judge_host(
    name: str,
    snap: HostSnapshot,
    runs: Sequence[RunView],
    expect: Expectations,
    settled: bool,
    single_rollout: bool,
) -> list[str]:
    problems = _working_runc(snap, expect)
    if snap.verify_containers:
        problems.append(f"{snap.verify_containers} verification containers left behind")
    if settled and snap.temp_files:
        problems.append(f"temporary files left: {', '.join(snap.temp_files)}")
    if settled and snap.lock_owner is not None:
        problems.append(f"host still locked by run {snap.lock_owner}")
    for entry, sha in snap.backups.items():
        if entry != sha:
            problems.append(f"backup store entry {entry} does not hold that checksum ({sha})")
    record: HostRecord | None = None
    if snap.record_json is not None:
        try:
            record = HostRecord.model_validate_json(snap.record_json)
        except ValidationError:
            return [*problems, f"{commands.RECORD} is unreadable"]
    views = [(run, run.state.hosts[name]) for run in runs if name in run.state.hosts]
    if single_rollout:
        swaps = sum(run.swaps.get(name, 0) for run, _ in views)
        if swaps > 1:
            problems.append(f"swapped {swaps} times (journals)")
        # One backup per distinct before; with other runc files, the artifact too (apply keeps
        # the checked new runc there, whence each other file's staged copy comes).
        kept = {expect.before_sha256, *expect.also_before.values()} - {None}
        kept |= {expect.artifact_sha256} if expect.also_before else set()
        if len(snap.backups) > max(1, len(kept)):
            problems.append(f"backup store holds {len(snap.backups)} binaries: swapped again")
    owner = record.run_id if record is not None else None
    owner_views = [(run, state) for run, state in views if run.run_id == owner]
    for run, state in views:
        if run.run_id == owner:
            continue
        if single_rollout and state.status in ("done", "rolled_back") and state.phase != "none":
            problems.append(
                f"run {run.run_id} says {state.status} but the host's record is "
                f"{'of run ' + owner if owner else 'absent'}"
            )
        if settled and state.status in ("running", "unreachable"):
            problems.append(f"run {run.run_id} left it {state.status} ({state.phase})")
    if record is None or not owner_views:
        return problems + _untouched(snap, expect)
    return problems + _owned(snap, record, owner_views[0][1], expect, settled)


def _working_runc(snap: HostSnapshot, expect: Expectations) -> list[str]:
    problems = _working_also(snap, expect)
    if not snap.runc_exists:
        return [f"{snap.runc_path} is missing", *problems]
    if not snap.runc_executable:
        problems.append(f"{snap.runc_path} is not executable")
    elif snap.version_exit != 0:
        problems.append(f"{snap.runc_path} --version exits {snap.version_exit}")
    allowed = {expect.before_sha256, expect.artifact_sha256}
    if snap.runc_sha256 not in allowed:
        problems.append(
            f"{snap.runc_path} has sha256 {str(snap.runc_sha256)[:12]}: neither the before "
            f"({str(expect.before_sha256)[:12]}) nor the artifact ({expect.artifact_sha256[:12]})"
        )
    return problems


def _working_also(snap: HostSnapshot, expect: Expectations) -> list[str]:
    """Every other runc file the plan swaps: there, working, its before or the artifact."""
    found = {item.path: item for item in snap.also}
    problems = []
    for path, before in expect.also_before.items():
        item = found.get(path)
        if item is None or not item.exists:
            problems.append(f"{path} is missing")
            continue
        if not item.executable:
            problems.append(f"{path} is not executable")
        elif item.version_exit != 0:
            problems.append(f"{path} --version exits {item.version_exit}")
        if item.sha256 not in (before, expect.artifact_sha256):
            problems.append(
                f"{path} has sha256 {str(item.sha256)[:12]}: neither the before "
                f"({before[:12]}) nor the artifact ({expect.artifact_sha256[:12]})"
            )
    return problems


def _also_at(snap: HostSnapshot, wanted: Mapping[str, str], what: str) -> list[str]:
    """Each other runc file holds the sha256 `wanted` says, else a problem naming it."""
    found = {item.path: item.sha256 for item in snap.also}
    return [
        f"{path} is {str(found.get(path))[:12]}, not {what}"
        for path, sha in wanted.items()
        if found.get(path) != sha
    ]


def _untouched(snap: HostSnapshot, expect: Expectations) -> list[str]:
    """A host no run changed (or one rolled back): its before, exactly."""
    problems = []
    if expect.before_sha256 is not None and snap.runc_sha256 != expect.before_sha256:
        problems.append(f"runc is {str(snap.runc_sha256)[:12]}, not its before")
    problems += _also_at(snap, expect.also_before, "its before")
    problems += _sysctl_before(snap, expect.before_sysctl, expect.before_files)
    return problems


def _sysctl_before(
    snap: HostSnapshot, runtime: int | None, files: Mapping[str, str] | None
) -> list[str]:
    problems = []
    if runtime is not None and snap.sysctl_runtime != runtime:
        problems.append(f"sysctl runtime {snap.sysctl_runtime}, expected its before {runtime}")
    if files is not None:
        now = {path: sha for path, (sha, _) in snap.sysctl_files.items()}
        changed = sorted(path for path in set(files) | set(now) if files.get(path) != now.get(path))
        if changed:
            problems.append(f"sysctl files not as before: {', '.join(changed)}")
    return problems


def _owned(
    snap: HostSnapshot,
    record: HostRecord,
    state: HostState,
    expect: Expectations,
    settled: bool,
) -> list[str]:
    """The host's record is of the run whose journal says `state`: the record, the journal and
    the host must agree."""
    problems = []
    for path, sha in record.runcs:  # the record is written after the backups
        if sha not in snap.backups:
            problems.append(f"the backup of its before ({sha[:12]}, {path}) is missing")
    final = state.status not in ("running", "unreachable") and not (
        state.status == "failed" and record.outcome == "in_progress"
    )
    if final and state.runc_sha256 is not None and state.runc_sha256 != snap.runc_sha256:
        problems.append(
            f"journal says runc {state.runc_sha256[:12]}, the host has {str(snap.runc_sha256)[:12]}"
        )
    if record.outcome == "done":
        if state.status != "done":
            problems.append(f"record says done, journal says {state.status}")
        if snap.runc_sha256 != record.target_sha256:
            problems.append("record says done but runc is not the target")
        targets = {item.path: record.target_sha256 for item in record.also}
        problems += _also_at(snap, targets, "the target, though the record says done")
        if snap.sysctl_runtime != record.sysctl_target:
            problems.append(f"done but sysctl runtime is {snap.sysctl_runtime}")
        wrong = sorted(
            path
            for path, (_, values) in snap.sysctl_files.items()
            if any(value != str(record.sysctl_target) for value in values)
        )
        if wrong:
            problems.append(f"done but these files set another value: {', '.join(wrong)}")
    elif record.outcome in ("rolled_back", "failed"):
        if state.status not in ("failed", "rolled_back"):
            problems.append(f"record says {record.outcome}, journal says {state.status}")
        if snap.runc_sha256 != record.before_sha256:
            problems.append(f"record says {record.outcome} but runc is not its before")
        befores = {item.path: item.before_sha256 for item in record.also}
        problems += _also_at(snap, befores, f"its before, though the record says {record.outcome}")
        files = expect.before_files
        if files is None:
            files = {item.path: item.before_sha256 for item in record.files}
            files |= {p: s for p, (s, _) in snap.sysctl_files.items() if p not in files}
        problems += _sysctl_before(snap, record.sysctl_before, files)
    else:
        if settled:
            problems.append(f"record still in progress ({record.phase}) after the run settled")
        if state.status in ("done", "rolled_back"):
            problems.append(f"journal says {state.status}, record is still in progress")
    return problems


def check_runs(
    run_dirs: Sequence[Path],
    executor: Executor,
    *,
    baseline: Mapping[str, HostSnapshot] | None = None,
    settled: bool = True,
    single_rollout: bool = True,
) -> list[str]:
    """Read the runs' journals and every host of their plans, and judge them (see `judge`)."""
    runs = [load_run(path) for path in run_dirs]
    hosts: dict[str, PlannedHost] = {}
    for run in runs:
        for host in run.plan.hosts:
            hosts.setdefault(host.name, host)
    snapshots = snapshot_hosts(executor, list(hosts.values()))
    return judge(runs, snapshots, baseline=baseline, settled=settled, single_rollout=single_rollout)
