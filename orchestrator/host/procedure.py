"""The procedures run on one host, long because they are described once, here, for both
backends: upgrade (stage, back up, swap, verify, restore the sysctl),
continue an interrupted upgrade, and roll back from the host-side record.

Described once, here: the SSH backend runs it over its sessions, the Ansible backend from its
action plugin over Ansible's own connection. Steps are `commands` scripts, sent in batches
(`steps.StepRunner`): a fresh upgrade is five round trips, and a push when the host cannot get
the new runc itself:

1. facts (and the host-side record), and `decide` what the host needs;
2. the new runc to a staging name of this run beside the old one, from the host's own copy
   (staged already, or in the backup store) or the plan's URL; lock, check the staged file,
   back up runc and the sysctl files to change. When the host has no copy and no URL answers,
   the batch stops there: the controller pushes the runc (gzip, else as it is), and sends the
   batch again without that first step;
3. record, swap, record, verify: `runc --version`, the incident probe, a no-new-privileges
   container, `docker exec`, facts again (no daemon restarted, no new stuck `runc init`);
4. record "verified", restore the sysctl (runtime and files);
5. record "finished", unlock.

The host-side record is written before the swap and at every phase after it, so whatever happens
to the orchestrator, the host itself says what it had and how far it got. A failure before the
swap leaves the host untouched; a failure after it rolls the host back before this returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from pydantic import ValidationError

from orchestrator.errors import FactsError
from orchestrator.host import commands, probe
from orchestrator.host.commands import HostCommand, StepResult
from orchestrator.host.facts import facts_command, facts_from, packaged_runcs
from orchestrator.host.runcinfo import parse_runc_version
from orchestrator.host.session import (
    CommandTimeout,
    ConnectionLost,
    ExecutorError,
    HostSession,
    send_script,
)
from orchestrator.host.steps import Payload, StepRunner
from orchestrator.models import (
    Artifact,
    Delivery,
    HostFacts,
    HostPhase,
    HostRecord,
    HostStatus,
    PackagedRunc,
    PlannedHost,
    ProbeMethod,
    ProbeResult,
    RecordedFile,
    RecordedPackage,
    RecordedRunc,
    RuncBinary,
    SysctlSetting,
    TargetRefusal,
    VerifySpec,
)
from orchestrator.plan.target import staged_refusal
from orchestrator.util.textsafe import one_line

HOLD_FILES = (
    "/etc/dnf/dnf.conf",
    "/etc/yum.conf",
)  # where hostside/steps/package.sh holds a package
FETCH_TIMEOUT = 120.0  # seconds a host may take to fetch the artifact from the plan's URL

_OBTAINED: dict[str, Delivery] = {"staged": "staged", "backup": "backup", "url": "url"}

PHASE_ORDER: tuple[HostPhase, ...] = get_args(HostPhase)  # the Literal's order is the order


def phase_at_least(phase: HostPhase, other: HostPhase) -> bool:
    return PHASE_ORDER.index(phase) >= PHASE_ORDER.index(other)


@dataclass(frozen=True)
class HostOutcome:
    status: HostStatus
    phase: HostPhase
    runc_sha256: str | None
    message: str | None = None
    probe: ProbeResult | None = None  # the incident probe's result, when it ran
    delivery: Delivery | None = None  # how the new runc reached the host, if it had to
    sent_bytes: int | None = None  # what the controller sent the host (the backend counts it)

    def event_fields(self) -> dict[str, object]:
        """The journal's `host.finished` fields for this outcome."""
        return {
            "status": self.status,
            "phase": self.phase,
            "runc_sha256": self.runc_sha256,
            "message": self.message,
            "probe": self.probe,
            "delivery": self.delivery,
            "sent_bytes": self.sent_bytes,
        }


class StepFailed(Exception):
    """A host step failed; `status` and `message` go to the journal as they are."""

    def __init__(self, message: str, status: HostStatus = "failed") -> None:
        super().__init__(message)
        self.status: HostStatus = status


PhaseListener = Callable[[str, HostPhase, str | None], None]  # host, phase, runc sha256


def read_record(facts: HostFacts) -> HostRecord | None:
    if not facts.record_json or not facts.record_json.strip():
        return None
    try:
        return HostRecord.model_validate_json(facts.record_json)
    except ValidationError:
        raise StepFailed(f"{commands.RECORD} is unreadable; inspect it by hand") from None


def sysctl_settings_to_change(facts: HostFacts, target: int) -> list[SysctlSetting]:
    """Every persistent line for the key that sets something other than `target`."""
    return [s for s in facts.sysctl_settings if s.value.strip() != str(target)]


def sysctl_files_to_change(facts: HostFacts, target: int) -> list[str]:
    """Every persistent file with a line for the key that sets something other than `target`."""
    return sorted({s.real_file or s.file for s in sysctl_settings_to_change(facts, target)})


# -- the decision --------------------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What a host needs: `continue` a run that left it mid-way, `swap`, or nothing and why."""

    action: Literal["continue", "swap", "noop", "drift", "fail"]
    message: str | None = None


def decide(
    planned: PlannedHost, artifact: Artifact, facts: HostFacts, run_id: str | None
) -> Decision:
    """What a host needs, from its facts alone. Pure: `apply` acts on it, `--dry-run` shows it."""
    try:
        record = read_record(facts)
    except StepFailed as unreadable:
        return Decision("fail", str(unreadable))
    if record is not None and run_id is not None and record.run_id == run_id:
        return Decision("continue")
    runc = facts.runc
    if facts.runc_unused is not None:
        return Decision("noop", f"{facts.runc_unused}; not touched")
    if runc is None or runc.sha256 is None:
        return Decision("fail", f"no runc binary found ({facts.runc_source})")
    drift = drift_from_plan(planned, facts)
    if drift:
        return Decision("drift", drift)
    targets = swap_targets(facts, artifact)
    if not targets:
        return Decision("noop", f"{runc.file} already at the target")
    for target in targets:
        if target.target_problem is not None:
            return Decision("fail", f"{target.target_problem}; not touched")
        if target.free_bytes is not None and target.free_bytes < artifact.size * 2:
            return Decision(
                "fail",
                f"only {target.free_bytes} bytes free beside {target.file}; need "
                f"{artifact.size * 2}; not touched",
            )
    return Decision("swap")


def executed_runcs(facts: HostFacts) -> list[RuncBinary]:
    """Every runc file the host's runtimes execute: Docker's default (or CRI's) first."""
    return ([facts.runc] if facts.runc is not None else []) + [
        item.runc for item in facts.also_runc
    ]


def swap_targets(facts: HostFacts, artifact: Artifact) -> list[RuncBinary]:
    """The runc files the host's runtimes execute that do not have the artifact yet."""
    return [runc for runc in executed_runcs(facts) if runc.sha256 != artifact.sha256]


def _sha_of(facts: HostFacts, path: str) -> str | None:
    """The sha256 of the runc file `path` as the facts saw it."""
    every = [*executed_runcs(facts), *facts.shadowed]
    return next((runc.sha256 for runc in every if runc.file == path), None)


def _step(command: HostCommand, index: int) -> HostCommand:
    """Step `command` for the index-th runc of a record (the first keeps its own name)."""
    return command if index == 0 else dataclasses.replace(command, name=f"{command.name}-{index}")


def _name(name: str, index: int) -> str:
    return name if index == 0 else f"{name}-{index}"


def describe(
    decision: Decision,
    artifact: Artifact,
    facts: HostFacts,
    sysctl_target: int,
    planned: PlannedHost | None = None,
) -> str:
    """What a decision means for this host, in one line (`--dry-run`, Ansible's check mode);
    with `planned`, what is done about each packaged runc too."""
    if decision.action != "swap":
        return f"{decision.action}: {decision.message or 'this run left it mid-way'}"
    runc, *others = swap_targets(facts, artifact)
    assert runc.sha256 is not None
    files = sysctl_files_to_change(facts, sysctl_target)
    behind = f" (runc behind {facts.runc_via}, left as it is)" if facts.runc_via else ""
    behind += "".join(f" and {other.file}" for other in others)
    packages = ""
    if planned is not None:
        with contextlib.suppress(StepFailed):
            paths = [runc.file, *(other.file for other in others)]
            packages = "".join(
                f"; {item.policy} {item.package} {item.version or '?'} ({item.manager})"
                for item in package_plan(planned, facts, paths)
            )
    return (
        f"swap {runc.file}{behind} {runc.version or '?'} ({runc.sha256[:12]}) -> "
        f"{artifact.version or '?'} ({artifact.sha256[:12]}); "
        f"sysctl {facts.sysctl_runtime} -> {sysctl_target}"
        + (f"; rewrite {', '.join(files)}" if files else "")
        + packages
    )


def drift_from_plan(planned: PlannedHost, facts: HostFacts) -> str | None:
    """How the host differs from the "before" the plan was made against (runc file, its
    sha256 and the runtime sysctl, when the plan recorded them), or None."""
    before = planned.before
    if before is None or facts.runc is None:
        return None
    sysctl_now = None if before.sysctl_runtime is None else facts.sysctl_runtime
    now = (facts.runc.file, facts.runc.sha256, sysctl_now)
    then = (before.runc_path, before.runc_sha256, before.sysctl_runtime)
    also_now = sorted((item.runc.file, item.runc.sha256) for item in facts.also_runc)
    also_then = sorted((item.path, item.sha256) for item in before.also)
    if now == then and also_now == also_then:
        return None
    if now == then:
        return (
            f"host changed since the plan: the other runc files its runtimes execute are "
            f"{[path for path, _ in also_now]}, with other checksums than the plan's "
            f"{[path for path, _ in also_then]}; not touched"
        )
    return (
        f"host changed since the plan: runc {now[0]} sha256 {str(now[1])[:12]} sysctl {now[2]}"
        f" (plan: {then[0]} sha256 {then[1][:12]} sysctl {then[2]}); not touched"
    )


def probe_uids(spec: VerifySpec, run_id: str) -> tuple[int, ...]:
    """The uids a probe may run as: the one the inventory forces, else the run's own."""
    return probe.probe_uids(run_id) if spec.probe_uid is None else (spec.probe_uid,)


def probe_command(
    facts: HostFacts, runc_path: str, spec: VerifySpec, *, run_id: str, holds_lock: bool
) -> tuple[HostCommand, ProbeMethod]:
    """The incident probe of `runc_path` on a host with these facts, and the path it takes; as
    the uid the inventory forces, else as the first free one of the run's. Through Docker's
    default runtime only when that is what executes `runc_path`; another runc file the runtimes
    execute (CRI's BinaryName) through containerd's client told to use it (else an OCI bundle)."""
    default = facts.runc is not None and facts.runc.file == runc_path
    image = spec.image if default else None
    method = probe.choose_method(
        default and facts.dockerd is not None, facts.containerd is not None, image
    )
    command = probe.probe(
        method,
        runc_path,
        uids=probe_uids(spec, run_id),
        timeout=spec.probe_timeout_seconds,
        run_id=run_id,
        image=image,
        holds_lock=holds_lock,
        machine=facts.arch,
    )
    return command, method


def run_probe(
    session: HostSession,
    facts: HostFacts,
    runc_path: str,
    spec: VerifySpec,
    *,
    run_id: str,
    holds_lock: bool,
) -> ProbeResult:
    """Run the incident probe of `runc_path` on one host and read its result (`audit`)."""
    command, method = probe_command(facts, runc_path, spec, run_id=run_id, holds_lock=holds_lock)
    result = send_script(session, command.script, timeout=command.timeout)
    return probe.parse_probe(result.stdout, result.exit_status, method)


# -- the procedures ------------------------------------------------------------------------


class Results:
    """The results of one batch by step name; a step the batch did not reach is absent."""

    def __init__(self, results: list[StepResult]) -> None:
        self._by_name = {result.name: result for result in results}

    def get(self, name: str) -> StepResult | None:
        return self._by_name.get(name)

    def ok(self, name: str) -> bool:
        result = self._by_name.get(name)
        return result is not None and result.ok

    def why(self, name: str) -> str:
        """Why step `name` did not succeed: its last line, or that the batch never reached it."""
        result = self._by_name.get(name)
        return "not reached" if result is None else result.last_line()

    def stdout(self, name: str) -> str:
        result = self._by_name.get(name)
        return "" if result is None else result.stdout

    def kv(self, name: str) -> dict[str, str]:
        return commands.parse_kv(self.stdout(name))


@dataclass(frozen=True)
class Verification:
    """The verification steps for one host, and what `_judge` needs to read their results."""

    steps: list[HostCommand]
    probe_method: ProbeMethod | None  # None: the plan turned the probe off
    container: str  # the step that runs the no-new-privileges container
    exec: bool  # whether `docker exec` is checked (dockerd runs)
    # Each other runc swapped: its path, the step that runs a container through it, and the
    # probe method of that step (None: a plain no-new-privileges bundle, the probe is off).
    also: list[tuple[str, str, ProbeMethod | None]] = dataclasses.field(default_factory=list)


def _record_step(record: HostRecord, name: str) -> HostCommand:
    """`record` written to the host, as a step named `name` (a batch may write it twice)."""
    return dataclasses.replace(commands.write_record(record.model_dump_json(indent=2)), name=name)


class HostSteps:
    """The steps shared by upgrade and rollback: the lock, the host-side record, rollback."""

    def __init__(
        self,
        steps: StepRunner,
        name: str,
        *,
        run_id: str,
        on_phase: PhaseListener,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.steps = steps
        self.name = name
        self.run_id = run_id
        self._on_phase = on_phase
        self._clock = clock

    def facts(self) -> HostFacts:
        (result,) = self.steps.run(facts_command())
        return facts_from(self.name, result)

    def _check_lock(self, results: Results) -> None:
        lock = results.get("lock")
        if lock is not None and lock.exit_status == commands.EXIT_LOCKED:
            owner = commands.parse_kv(lock.stdout).get("owner", "unknown")
            raise StepFailed(f"host is locked by run {owner}; not touched")
        if not results.ok("lock"):
            raise StepFailed(f"could not take the host lock: {results.why('lock')}")
        self._phase("locked", None)

    # -- rollback --------------------------------------------------------------------------

    def rollback(self, record: HostRecord) -> HostOutcome:
        """Back to the record's "before": sysctl and files first, then the binary, then check
        that it runs; then record it and release the host. Two round trips."""
        batch = [commands.lock(self.run_id)]
        if record.files:
            triples = [(item.path, item.before_sha256, item.after_sha256) for item in record.files]
            batch.append(commands.restore_files(triples))
        if record.sysctl_before is not None:
            batch.append(commands.set_runtime_sysctl(record.sysctl_before))
        holds = [item for item in record.packages if item.hold_file and item.hold_before_sha256]
        for index, item in enumerate(holds):
            assert item.hold_file is not None and item.hold_before_sha256 is not None
            triple = (item.hold_file, item.hold_before_sha256, item.hold_after_sha256)
            restore = dataclasses.replace(commands.restore_files([triple]), name="restore-hold")
            batch.append(_step(restore, index))
        for index, (path, before) in enumerate(record.runcs):
            batch += [
                _step(_restore_runc(record, path, before), index),
                _step(commands.runc_version(path, 30), index),
            ]
        packaged = [item for item in record.packages if item.policy != "leave"]
        batch += [
            _step(commands.verify_package(item.path, item.package, item.manager), index)
            for index, item in enumerate(packaged)
        ]
        results = Results(self.steps.run(*batch))
        self._check_lock(results)
        for index, item in enumerate(holds):
            if not results.ok(_name("restore-hold", index)):
                why = results.why(_name("restore-hold", index))
                raise StepFailed(f"rollback: removing the hold of {item.package} failed: {why}")
        kept: list[str] = []
        if record.files:
            if not results.ok("restore-files"):
                why = results.why("restore-files")
                raise StepFailed(f"rollback: restoring sysctl files failed: {why}")
            restored = commands.parse_file_lines(
                results.stdout("restore-files"), (item.path for item in record.files)
            )
            kept = [path for path, sums in restored.items() if sums.get("kept") == "1"]
        if record.sysctl_before is not None and not results.ok("set-runtime-sysctl"):
            why = results.why("set-runtime-sysctl")
            raise StepFailed(f"rollback: setting the sysctl failed: {why}")
        for index, (path, before) in enumerate(record.runcs):
            step = _name("restore-binary", index)
            if not _restored(record, path, before, results, step):
                runc = "the old runc" if index == 0 else path
                raise StepFailed(f"rollback: restoring {runc} failed: {results.why(step)}")
        # What is at runc's path now: the old runc, or the package's own file (a package
        # upgraded while diverted gives back its newer runc, not the old one).
        now = results.kv("restore-binary").get("sha256") or record.before_sha256
        self._phase("finished", now)
        for index, (path, _) in enumerate(record.runcs):
            if not results.ok(_name("runc-version", index)):
                why = results.why(_name("runc-version", index))
                runc = "runc" if index == 0 else path
                raise StepFailed(f"rollback: restored {runc} does not run: {why}")
        finished = self._updated(record, "finished", outcome="rolled_back")
        done = Results(self.steps.run(_record_step(finished, "record"), *self._release(record)))
        if not done.ok("record"):
            raise StepFailed(f"could not write {commands.RECORD}: {done.why('record')}")
        notes = [
            f"{path} was edited after the rollout changed it: kept as it is, the version from "
            f"before the rollout is {path}{commands.KEPT_SUFFIX}"
            for path in kept
        ]
        notes += _package_notes(record, packaged, results)
        note = "; ".join(notes) or None
        return HostOutcome("rolled_back", "finished", now, note)

    def release(self, runc_paths: Sequence[str]) -> None:
        """Remove this run's staged files beside `runc_paths` (if any) and its lock."""
        self.steps.run(*self._discard_staged(runc_paths), commands.unlock(self.run_id))

    def _discard_staged(self, runc_paths: Sequence[str]) -> list[HostCommand]:
        return [
            _step(commands.discard_staged(self._staged(path)), index)
            for index, path in enumerate(runc_paths)
        ]

    def _release(self, record: HostRecord) -> list[HostCommand]:
        paths = [path for path, _ in record.runcs]
        return [*self._discard_staged(paths), commands.unlock(self.run_id)]

    def _release_quietly(self, runc_paths: Sequence[str]) -> None:
        """`release` while another error is being handled: its own failure must not hide it."""
        with contextlib.suppress(Exception):
            self.release(runc_paths)

    def _staged(self, target: str) -> str:
        return commands.staging_path(target, self.run_id)

    def _updated(self, record: HostRecord, phase: HostPhase, **changes: object) -> HostRecord:
        return record.model_copy(update={"phase": phase, "updated": self._clock(), **changes})

    def _phase(self, phase: HostPhase, runc_sha256: str | None) -> None:
        self._on_phase(self.name, phase, runc_sha256)


class HostProcedure(HostSteps):
    """Upgrade one host for one run. One instance per host, used from one thread."""

    def __init__(
        self,
        steps: StepRunner,
        planned: PlannedHost,
        artifact: Artifact,
        *,
        packed: Payload | None = None,
        run_id: str,
        plan_id: str,
        sysctl_target: int,
        on_phase: PhaseListener,
        clock: Callable[[], float] = time.time,
        refuse: Iterable[TargetRefusal] = (),
    ) -> None:
        super().__init__(steps, planned.name, run_id=run_id, on_phase=on_phase, clock=clock)
        self.planned = planned
        self.refuse = tuple(refuse)  # the plan's refusals, for a version it did not know
        self.artifact = artifact
        self.packed = packed  # the artifact as gzip, made once per run (None: push it as it is)
        self.plan_id = plan_id
        self.sysctl_target = sysctl_target
        self.probe_result: ProbeResult | None = None
        self.verified_exec: str | None = None  # the running container `docker exec` checked
        self.staged_version: str | None = None  # what the staged file reported on this host
        self.delivery: Delivery | None = None
        self.previous: HostRecord | None = None  # this run's record from before a crash

    # -- upgrade ---------------------------------------------------------------------------

    def upgrade(self) -> HostOutcome:
        facts = self.facts()
        decision = decide(self.planned, self.artifact, facts, self.run_id)
        current = facts.runc.sha256 if facts.runc else None
        if decision.action == "continue":
            record = read_record(facts)
            assert record is not None
            return self._continue(record, facts)
        if decision.action in ("noop", "drift"):
            return HostOutcome(decision.action, "none", current, decision.message)
        if decision.action == "fail":
            raise StepFailed(decision.message or "cannot upgrade this host")
        return self._fresh(facts)

    def _fresh(self, facts: HostFacts) -> HostOutcome:
        """Stage (pushing only if the host cannot get it), lock and back up; swap and verify;
        restore the sysctl."""
        targets = [runc.file for runc in swap_targets(facts, self.artifact)]
        try:
            record = self._stage_and_back_up(facts)
        except BaseException:
            self._release_quietly(targets)
            raise
        return self._swap_and_verify(record, facts)

    def _obtained(self, results: Results) -> bool:
        """Whether the batch's `obtain` put the artifact in place; False: push it."""
        obtain = results.get("obtain")
        assert obtain is not None
        if obtain.exit_status == commands.EXIT_MISMATCH:
            said = commands.parse_kv(obtain.stdout)
            served, plans = f"sha256 {said.get('actual', '?')}", self.artifact.sha256
            if "bytes" in said:
                served, plans = f"{said['bytes']} bytes", f"{self.artifact.size} bytes"
            raise StepFailed(
                f"{self.artifact.url} served {served}, not the plan's {plans}; not touched"
            )
        source = _OBTAINED.get(commands.parse_kv(obtain.stdout).get("source", ""))
        if not obtain.ok or source is None:
            return False
        self.delivery = source
        return True

    def _push(self, staged: str) -> None:
        """The new runc to this run's staging name (before the lock: no other run uses it):
        gzip through the shell when the host has gunzip, else as it is."""
        if self.packed is not None:
            data = self.packed.data()
            push = commands.push_gzip(staged, len(data), self.artifact.size)
            pushed = self.steps.send(push, data)
            if pushed.ok:
                self.delivery = "push-gzip"
                return
            if pushed.exit_status != commands.EXIT_NO_GUNZIP:
                raise StepFailed(f"push to {staged} failed: {pushed.last_line()}; not touched")
        try:
            self.steps.put(Path(self.artifact.path), staged, mode=0o700)
        except ConnectionLost:
            raise
        except (OSError, ExecutorError) as error:
            # SFTP reports most causes as "Failure": ask the host's shell for the real one.
            (result,) = self.steps.run(commands.probe_write(staged))
            why = result.last_line() if not result.ok else str(error)
            raise StepFailed(f"upload to {staged} failed: {why}; not touched") from None
        self.delivery = "push"

    def _stage_and_back_up(self, facts: HostFacts) -> HostRecord:
        main, *others = swap_targets(facts, self.artifact)
        assert main.sha256 is not None and all(other.sha256 for other in others)
        target, before = main.file, main.sha256
        staged = self._staged(target)
        files = sysctl_files_to_change(facts, self.sysctl_target)
        timeout = self.planned.verify.timeout_seconds
        batch = [
            commands.lock(self.run_id),
            commands.check_staged(staged, self.artifact.sha256, timeout),
            commands.backup_binary(target, before),
        ]
        if files:
            batch.append(commands.backup_files(files))
        paths = [main.file, *(other.file for other in others)]
        packages = package_plan(self.planned, facts, paths)
        to_hold = sorted({item.package for item in packages if item.policy == "hold"})
        batch += [_step(commands.prepare_hold(name), i) for i, name in enumerate(to_hold)]
        if others:  # the checked new runc to the backup store, whence each other staged copy
            keep = commands.backup_binary(staged, self.artifact.sha256)
            batch.append(dataclasses.replace(keep, name="keep-new"))
        for index, other in enumerate(others, 1):
            copy = self._staged(other.file)
            batch += [
                _step(
                    commands.obtain_staged(
                        copy, self.artifact.sha256, self.artifact.size, None, 30
                    ),
                    index,
                ),
                _step(commands.check_staged(copy, self.artifact.sha256, timeout), index),
                _step(commands.backup_binary(other.file, other.sha256 or ""), index),
            ]
        artifact = self.artifact
        obtain = commands.obtain_staged(
            staged, artifact.sha256, artifact.size, artifact.url, FETCH_TIMEOUT
        )
        results = Results(self.steps.run(obtain, *batch))
        if not self._obtained(results):
            self._push(staged)
            results = Results(self.steps.run(*batch))
        self._check_lock(results)
        check = results.get("check-staged")
        if check is not None and check.exit_status == commands.EXIT_MISMATCH:
            actual = commands.parse_kv(check.stdout).get("actual", "?")
            raise StepFailed(f"staged file arrived with sha256 {actual}; not touched")
        if check is None or not check.ok:
            why = results.why("check-staged")
            raise StepFailed(f"staged runc does not run on this host: {why}; not touched")
        staged_version = parse_runc_version(check.stdout)
        if staged_version.version is None:
            raise StepFailed("staged file ran but did not report a runc version; not touched")
        if self.artifact.version is not None and staged_version.version != self.artifact.version:
            raise StepFailed(
                f"staged runc reports version {staged_version.version}, the plan says "
                f"{self.artifact.version}; not touched"
            )
        if self.artifact.version is None:
            refusal = staged_refusal(staged_version.version, staged_version.commit, self.refuse)
            if refusal is not None:
                raise StepFailed(refusal)
        self.staged_version = staged_version.version
        self._phase("staged", None)
        if not results.ok("backup"):
            raise StepFailed(f"could not back up {target}: {results.why('backup')}; not touched")
        recorded: list[RecordedFile] = []
        if files:
            if not results.ok("backup-files"):
                why = results.why("backup-files")
                raise StepFailed(f"backing up the sysctl files failed: {why}; not touched")
            backed = results.get("backup-files")
            assert backed is not None
            for path, sums in commands.parse_file_lines(backed.stdout, files).items():
                recorded.append(RecordedFile(path=path, before_sha256=sums["before"]))
        if others and not results.ok("keep-new"):
            why = results.why("keep-new")
            raise StepFailed(f"could not keep the new runc in the backup store: {why}; not touched")
        for index, other in enumerate(others, 1):
            for step in ("obtain", "check-staged", "backup"):
                if not results.ok(_name(step, index)):
                    why = results.why(_name(step, index))
                    raise StepFailed(f"{step} beside {other.file} failed: {why}; not touched")
        held: dict[str, tuple[str, str]] = {}
        for index, name in enumerate(to_hold):
            step = _name("hold-prepare", index)
            if not results.ok(step):
                raise StepFailed(f"cannot hold {name}: {results.why(step)}; not touched")
            said = results.kv(step).get("file", "")
            conf, _, before_sha = said.rpartition(" before=")
            if conf not in HOLD_FILES or not re.fullmatch(r"[0-9a-f]{64}", before_sha):
                raise StepFailed(f"cannot hold {name}: the host said {said[:120]!r}; not touched")
            held[name] = (conf, before_sha)
        return HostRecord(
            packages=record_packages(packages, facts, self.previous, held),
            target_version=staged_version.version,
            run_id=self.run_id,
            plan_id=self.plan_id,
            phase="backed_up",
            runc_path=target,
            before_sha256=before,
            before_version=main.version,
            target_sha256=self.artifact.sha256,
            sysctl_before=facts.sysctl_runtime,
            sysctl_target=self.sysctl_target,
            files=recorded,
            daemons=_daemons(facts),
            stuck_runc_init_before=sum(1 for process in facts.runc_init if process.stuck),
            updated=self._clock(),
            also=[
                RecordedRunc(
                    path=other.file, before_sha256=other.sha256 or "", before_version=other.version
                )
                for other in others
            ],
        )

    def _swap_and_verify(self, record: HostRecord, facts: HostFacts) -> HostOutcome:
        """Record, swap, record and verify in one round trip; then judge what came back."""
        swapped = self._updated(record, "swapped")
        verification = self._verification(record, facts)
        swaps = [
            _step(commands.swap(self._staged(path), path, record.target_sha256), index)
            for index, (path, _) in enumerate(record.runcs)
        ]
        protect = package_steps(record)
        results = Results(
            self.steps.run(
                _record_step(record, "record-backed-up"),
                *protect,
                *swaps,
                _record_step(swapped, "record-swapped"),
                *verification.steps,
            )
        )
        if not results.ok("record-backed-up"):
            self._release_quietly([path for path, _ in record.runcs])
            why = results.why("record-backed-up")
            raise StepFailed(f"could not write {commands.RECORD}: {why}; not touched")
        self._phase("backed_up", None)
        for step in protect:
            if not results.ok(step.name):
                # Whatever of it was done is undone from the record, as after a failed swap.
                self.rollback(record)
                why = f"{step.name} {step.params.get('PKG')} failed: {results.why(step.name)}"
                raise StepFailed(f"{why}; runc not swapped, host rolled back")
        swapped = _held(swapped, protect, results)
        for swap in swaps:
            if results.kv(swap.name).get("sha256") != record.target_sha256:
                self._swap_failed(record, results, results.why(swap.name))
        if not results.ok("record-swapped"):
            why = (
                f"could not write {commands.RECORD} after the swap: {results.why('record-swapped')}"
            )
            return self._roll_back_after(record, StepFailed(why))
        self._phase("swapped", record.target_sha256)
        return self._after_swap(swapped, facts, (verification, results))

    def _swap_failed(self, record: HostRecord, swapped: Results, why: str) -> None:
        """A rename did not leave the new runc: put the old one back wherever it is not there,
        end the record and release the host (a packaged runc: a full rollback, which undoes the
        diversion or hold too)."""
        if record.packages:
            self.rollback(record)
            raise StepFailed(f"swap failed: {why}; old runc kept, package given back")
        restores = [
            _step(commands.restore_binary(path, before), index)
            for index, (path, before) in enumerate(record.runcs)
            if swapped.kv(_name("swap", index)).get("sha256") != before
        ]
        if restores:
            results = Results(self.steps.run(*restores))
            for restore in restores:
                if results.kv(restore.name).get("sha256") != restore.params["sha256"]:
                    raise StepFailed(
                        f"swap failed: {why}; restoring the old runc failed too: "
                        f"{results.why(restore.name)}"
                    )
            self._phase("finished", record.before_sha256)
        failed = self._updated(record, "finished", outcome="failed")
        self.steps.run(_record_step(failed, "record"), *self._release(record))
        raise StepFailed(f"swap failed: {why}; old runc kept")

    def _after_swap(
        self,
        record: HostRecord,
        facts: HostFacts,
        verified: tuple[Verification, Results] | None = None,
    ) -> HostOutcome:
        """Verify (unless `verified` holds its results already), then restore the sysctl;
        roll back on any failure of either; then finish the record and unlock."""
        try:
            if not phase_at_least(record.phase, "verified"):
                if verified is None:
                    verification = self._verification(record, facts)
                    verified = (verification, Results(self.steps.run(*verification.steps)))
                facts = self._judge(record, *verified)
            if not phase_at_least(record.phase, "sysctl_restored"):
                record = self._restore_sysctl(record, facts)
        except (StepFailed, CommandTimeout) as failure:
            return self._roll_back_after(record, failure)
        finished = self._updated(record, "finished", outcome="done")
        results = Results(
            self.steps.run(_record_step(finished, "record"), commands.unlock(self.run_id))
        )
        if not results.ok("record"):
            raise StepFailed(f"could not write {commands.RECORD}: {results.why('record')}")
        self._phase("finished", record.target_sha256)
        note = (
            f"docker exec checked in container {self.verified_exec}" if self.verified_exec else None
        )
        return HostOutcome("done", "finished", record.target_sha256, note, probe=self.probe_result)

    def _roll_back_after(self, record: HostRecord, failure: Exception) -> HostOutcome:
        self.rollback(record)
        message = f"{failure}; rolled back to old runc"
        return HostOutcome(
            "failed", "finished", record.before_sha256, message, probe=self.probe_result
        )

    def _continue(self, record: HostRecord, facts: HostFacts) -> HostOutcome:
        """Pick up a host this run left mid-way (resume after a crash): never redo a step."""
        shas = [_sha_of(facts, path) for path, _ in record.runcs]
        current = shas[0]
        if record.phase == "finished":
            self.release([path for path, _ in record.runcs])
            if record.outcome == "done":
                return HostOutcome("done", "finished", current, "already finished by this run")
            return HostOutcome("failed", "finished", current, f"this run ended it {record.outcome}")
        renamed = [sha == record.target_sha256 for sha in shas]
        if not phase_at_least(record.phase, "swapped") and any(renamed):
            record = self._updated(record, "swapped")  # a rename ran; its record did not
            results = Results(self.steps.run(_record_step(record, "record")))
            if not results.ok("record"):
                raise StepFailed(f"could not write {commands.RECORD}: {results.why('record')}")
            self._phase("swapped", current)
        if phase_at_least(record.phase, "swapped") and not all(renamed):
            # Not the target after the swap: a rollback was cut short (or someone replaced the
            # binary). Verifying this runc as if it were the new one would be a lie: finish it.
            self.rollback(record)
            path, sha = next(
                (p, h) for (p, _), h, r in zip(record.runcs, shas, renamed, strict=True) if not r
            )
            runc = "runc" if path == record.runc_path else path
            return HostOutcome(
                "failed",
                "finished",
                record.before_sha256,
                f"{runc} was {str(sha)[:12]}, not the target, after the swap (a rollback cut "
                "short?); rolled back to old runc",
            )
        if phase_at_least(record.phase, "swapped"):
            return self._after_swap(record, facts)
        # Interrupted before the swap: the binaries are untouched; start over under our own lock
        # (a diversion this run added before the crash stays its own, to remove at rollback).
        if any(sha != before for sha, (_, before) in zip(shas, record.runcs, strict=True)):
            raise StepFailed("runc changed while this run held the host; inspect it by hand")
        self.previous = record
        return self._fresh(facts)

    # -- verify ----------------------------------------------------------------------------

    def _verification(self, record: HostRecord, facts: HostFacts) -> Verification:
        """`runc --version` of each runc swapped; the incident probe first of the containers
        (it also clears what a probe cut short by a crash left); a no-new-privileges container;
        a container through each other runc swapped (containerd's `ctr --runc-binary`, else an
        OCI bundle); `docker exec` into a running container; facts again."""
        spec = self.planned.verify
        runc_path, *others = (path for path, _ in record.runcs)
        steps = [
            _step(commands.runc_version(path, 30), i) for i, (path, _) in enumerate(record.runcs)
        ]
        method: ProbeMethod | None = None
        if spec.probe:
            command, method = self._probe_of(facts, runc_path)
            steps.append(command)
        if facts.dockerd is not None and spec.image:
            steps.append(
                commands.verify_docker(self.run_id, spec.image, spec.command, spec.timeout_seconds)
            )
        else:
            steps.append(commands.verify_runc_bundle(runc_path, self.run_id, spec.timeout_seconds))
        container = steps[-1].name
        also: list[tuple[str, HostCommand, ProbeMethod | None]] = []
        for index, path in enumerate(others, 1):
            if spec.probe:
                command, other_method = self._probe_of(facts, path)
                also.append((path, _step(command, index), other_method))
            else:
                check = commands.verify_runc_bundle(path, self.run_id, spec.timeout_seconds)
                also.append((path, _step(check, index), None))
        steps += [command for _, command, _ in also]
        if facts.dockerd is not None:
            steps.append(
                commands.verify_exec(spec.command, spec.timeout_seconds, spec.exec_container)
            )
        steps.append(facts_command())
        if spec.host_check is not None:  # last: after the tool's own verification passed
            steps.append(
                commands.host_check(
                    spec.host_check,
                    spec.host_check_timeout_seconds,
                    host=self.name,
                    runc=runc_path,
                )
            )
        checks = [(path, command.name, method) for path, command, method in also]
        return Verification(steps, method, container, exec=facts.dockerd is not None, also=checks)

    def _probe_of(self, facts: HostFacts, path: str) -> tuple[HostCommand, ProbeMethod]:
        """The incident probe of `path`: through Docker's default runtime when that is what
        executes it, else through containerd's client told to use it (else an OCI bundle)."""
        spec = self.planned.verify
        if facts.runc is not None and facts.runc.file == path:
            return probe_command(facts, path, spec, run_id=self.run_id, holds_lock=True)
        method = probe.choose_method(False, facts.containerd is not None, None)
        command = probe.probe(
            method,
            path,
            uids=probe_uids(spec, self.run_id),
            timeout=spec.probe_timeout_seconds,
            run_id=self.run_id,
            holds_lock=True,
            machine=facts.arch,
        )
        return command, method

    def _judge(self, record: HostRecord, verification: Verification, results: Results) -> HostFacts:
        """Each verification in order; the first that did not pass fails the host (a batch
        ends at its first failing step, so the later ones are absent). The facts gathered last."""
        spec = self.planned.verify
        expected = self.artifact.version or self.staged_version
        for index, (path, _) in enumerate(record.runcs):
            step = _name("runc-version", index)
            parsed = parse_runc_version(results.stdout(step))
            if not results.ok(step) or (expected is not None and parsed.version != expected):
                said = parsed.version or results.why(step)
                runc = "runc" if index == 0 else path
                raise StepFailed(f"{runc} --version reports {said!r}, expected {expected!r}")
        after_result = results.get("facts")
        after = facts_from(self.name, after_result) if after_result is not None else None
        if after is not None:
            restarted = [
                name
                for name, (pid, ticks) in record.daemons.items()
                if _daemons(after).get(name) != (pid, ticks)
            ]
            if restarted:
                raise StepFailed(f"{', '.join(restarted)} restarted or stopped during the swap")
        if verification.probe_method is not None:
            ran = results.get("probe")
            self.probe_result = probe.parse_probe(
                results.stdout("probe"),
                ran.exit_status if ran is not None else -1,
                verification.probe_method,
            )
            if self.probe_result.outcome != "passed":
                raise StepFailed(self.probe_result.summary())
        checked = results.get(verification.container)
        if checked is None or not checked.ok:
            killed = checked is not None and checked.exit_status in (
                commands.EXIT_TIMEOUT,
                commands.EXIT_KILLED,
            )
            why = (
                f"timed out after {spec.timeout_seconds:g}s"
                if killed
                else f"failed: {results.why(verification.container)}"
            )
            raise StepFailed(f"verification container ({verification.container}) {why}")
        for path, step, method in verification.also:
            ran = results.get(step)
            if method is None:
                if ran is None or not ran.ok:
                    raise StepFailed(f"a container through {path} failed: {results.why(step)}")
                continue
            outcome = probe.parse_probe(
                results.stdout(step), ran.exit_status if ran else -1, method
            )
            if outcome.outcome != "passed":
                raise StepFailed(f"{path}: {outcome.summary()}")
        if verification.exec:
            if not results.ok("verify-exec"):
                raise StepFailed(
                    f"docker exec into a running container failed: {results.why('verify-exec')}"
                )
            said = results.kv("verify-exec").get("exec", "")  # "ok container=NAME"
            self.verified_exec = said.partition("container=")[2] or None
        if after is None:
            raise StepFailed(f"facts after the verification failed: {results.why('facts')}")
        for seen in executed_runcs(after):  # read through the daemons' own mount namespace
            if seen.mount_ns is not None and seen.sha256 != self.artifact.sha256:
                raise StepFailed(
                    f"the daemons' mount namespace {seen.mount_ns} still sees another "
                    f"{seen.file} ({seen.seen_at}, sha256 {str(seen.sha256)[:12]})"
                )
        stuck = sum(1 for process in after.runc_init if process.stuck)
        if stuck > record.stuck_runc_init_before:
            raise StepFailed(
                f"{stuck - record.stuck_runc_init_before} new stuck `runc init` after the swap"
            )
        if spec.host_check is not None:
            _judge_host_check(results.get("host-check"), spec.host_check_timeout_seconds)
        return after

    # -- sysctl ----------------------------------------------------------------------------

    def _restore_sysctl(self, record: HostRecord, facts: HostFacts) -> HostRecord:
        """Record the files to change (backing up any not yet backed up), then set the runtime
        value and the files; the record names every file before any is changed."""
        files = sysctl_files_to_change(facts, record.sysctl_target)
        known = {item.path for item in record.files}
        new = [path for path in files if path not in known]
        recorded = list(record.files)
        if new:  # a resumed run: the files were not backed up with the binary
            results = Results(self.steps.run(commands.backup_files(new)))
            backed = results.get("backup-files")
            if backed is not None:
                for path, sums in commands.parse_file_lines(backed.stdout, new).items():
                    recorded.append(RecordedFile(path=path, before_sha256=sums["before"]))
            if not results.ok("backup-files"):
                record = self._updated(record, record.phase, files=recorded)
                self.steps.run(_record_step(record, "record"))
                why = results.why("backup-files")
                raise StepFailed(f"backing up the sysctl files failed: {why}")
        record = self._updated(record, "verified", files=recorded)
        results = Results(
            self.steps.run(
                _record_step(record, "record-verified"),
                commands.set_sysctl(record.sysctl_target, files),
            )
        )
        if not results.ok("record-verified"):
            raise StepFailed(f"could not write {commands.RECORD}: {results.why('record-verified')}")
        self._phase("verified", record.target_sha256)
        changed = commands.parse_file_lines(results.stdout("set-sysctl"), files)
        record = record.model_copy(
            update={
                "files": [
                    item.model_copy(
                        update={"after_sha256": changed[item.path].get("after") or None}
                    )
                    if item.path in changed
                    else item
                    for item in record.files
                ]
            }
        )
        if not results.ok("set-sysctl"):
            raise StepFailed(f"restoring {commands.SYSCTL_KEY} failed: {results.why('set-sysctl')}")
        self._phase("sysctl_restored", record.target_sha256)
        return self._updated(record, "sysctl_restored")


def _restore_runc(record: HostRecord, path: str, before: str) -> HostCommand:
    """The rollback step for one runc: the package's own file back and the diversion gone when
    this rollout diverted it, else the old runc from the backup store."""
    item = record.package_of(path)
    if item is not None and item.diversion_added and item.diverted_to:
        return commands.restore_package(path, item.package, item.diverted_to, before)
    return commands.restore_binary(path, before)


def _restored(record: HostRecord, path: str, before: str, results: Results, step: str) -> bool:
    """Whether the rollback step `step` put runc `path` back: the old runc's checksum, or (a
    diversion undone) the package's own file, which a package upgrade since may have changed."""
    said = results.kv(step)
    item = record.package_of(path)
    if item is not None and item.diversion_added and item.diverted_to:
        return results.ok(step) and said.get("restored") in ("package", "before")
    return said.get("sha256") == before


def _package_notes(
    record: HostRecord, packaged: Sequence[RecordedPackage], results: Results
) -> list[str]:
    """What the rollback did about each package, and what its package manager says now."""
    notes = []
    for index, item in enumerate(packaged):
        said = results.kv(_name("restore-binary", record.runcs.index(_runc_of(record, item))))
        said_verify = results.kv(_name("verify-package", index)).get("verify", "")
        verify = (
            said_verify
            if re.fullmatch(r"(clean|changed [.?0-9A-Za-z]{0,11})", said_verify)
            else "unknown"
        )
        tool = "dpkg --verify" if item.manager == "dpkg" else "rpm -V"
        if item.diversion_added:
            whose = (
                "the package's own file"
                if said.get("restored") == "package"
                else "the runc from before the rollout (the diverted file did not match the "
                "package's md5sum)"
            )
            notes.append(
                f"{item.path}: {whose} of {item.package} put back, diversion removed; "
                f"{tool}: {verify}"
            )
        elif item.hold_file:
            where = f"removed from {item.hold_file}"
            notes.append(f"{item.path}: hold of {item.package} {where}; {tool}: {verify}")
        else:
            notes.append(f"{item.path} of {item.package}: {tool}: {verify}")
    return notes


def _runc_of(record: HostRecord, item: RecordedPackage) -> tuple[str, str]:
    return next(runc for runc in record.runcs if runc[0] == item.path)


def package_plan(
    planned: PlannedHost, facts: HostFacts, paths: Sequence[str]
) -> list[PackagedRunc]:
    """The plan's packaged runc files among `paths` (those to swap); a plan made without facts
    gets each package manager's default policy from the facts of now."""
    if planned.before is not None:
        chosen = planned.before.packages
    else:
        try:
            chosen = packaged_runcs(facts)
        except FactsError as error:
            raise StepFailed(f"{error.detail}; not touched") from None
    return [item for item in chosen if item.path in paths]


def record_packages(
    packages: Sequence[PackagedRunc],
    facts: HostFacts,
    previous: HostRecord | None,
    held: dict[str, tuple[str, str]],
) -> list[RecordedPackage]:
    """What the host record says will be done about each packaged runc, before it is done.
    `previous`: this run's own record, from before a crash (a diversion it added is still its
    own). `held`: the dnf/yum file a hold will change and its sha256, by package."""
    found = {runc.file: runc for runc in executed_runcs(facts)}
    recorded = []
    for item in packages:
        fields: dict[str, object] = {}
        runc = found.get(item.path)
        if item.policy == "divert":
            by = runc.diverted_by if runc is not None else None
            before = previous.package_of(item.path) if previous is not None else None
            if by is not None and by != "LOCAL":
                raise StepFailed(f"{item.path} is diverted by {by} already; not touched")
            if by == "LOCAL" and runc is not None and runc.diverted_to:
                added = before is not None and before.diversion_added
                fields = {"diverted_to": runc.diverted_to, "diversion_added": added}
            else:
                fields = {
                    "diverted_to": commands.diverted_name(item.path),
                    "diversion_added": True,
                }
        elif item.policy == "hold" and item.package in held:
            conf, sha = held[item.package]
            fields = {"hold_file": conf, "hold_before_sha256": sha}
        recorded.append(
            RecordedPackage(
                path=item.path,
                package=item.package,
                version=item.version,
                manager=item.manager,
                policy=item.policy,
                **fields,  # type: ignore[arg-type]
            )
        )
    return recorded


def package_steps(record: HostRecord) -> list[HostCommand]:
    """The steps between the record of the "before" and the swap: each diversion (dpkg) and
    hold (rpm) the record names."""
    steps = []
    for index, item in enumerate(record.packages):
        if item.policy == "divert" and item.diversion_added and item.diverted_to:
            steps.append(
                _step(commands.divert_package(item.path, item.package, item.diverted_to), index)
            )
        elif item.policy == "hold" and item.hold_file and item.hold_before_sha256:
            hold = commands.hold_package(item.package, item.hold_file, item.hold_before_sha256)
            steps.append(_step(hold, index))
    return steps


def _held(record: HostRecord, steps: Sequence[HostCommand], results: Results) -> HostRecord:
    """`record` with what each hold left its dnf/yum file as (its next write records it)."""
    after: dict[str, str] = {}
    for step in steps:
        if step.name.partition("-")[0] == "hold":
            conf = str(step.params.get("CONF", ""))
            sums = commands.parse_file_lines(results.stdout(step.name), [conf]).get(conf, {})
            if sums.get("after"):
                after[str(step.params.get("PKG"))] = sums["after"]
    if not after:
        return record
    packages = [
        item.model_copy(update={"hold_after_sha256": after[item.package]})
        if item.package in after and item.hold_file
        else item
        for item in record.packages
    ]
    return record.model_copy(update={"packages": packages})


HOST_CHECK_REASON = 500  # characters of the host check's output kept as the reason


def _judge_host_check(result: StepResult | None, timeout: float) -> None:
    """A host check that did not exit 0 fails the host; its output, on one line, bounded and
    with nothing a terminal would obey, is the reason."""
    if result is None:
        raise StepFailed("host check: not reached")
    if result.ok:
        return
    if result.exit_status in (commands.EXIT_TIMEOUT, commands.EXIT_KILLED):
        said = f"timed out after {timeout:g}s"
    else:
        said = f"exit {result.exit_status}"
    output = one_line(result.stdout, HOST_CHECK_REASON)
    raise StepFailed(f"host check failed ({said})" + (f": {output}" if output else ""))


def _daemons(facts: HostFacts) -> dict[str, tuple[int, int]]:
    found = {}
    for name, daemon in (("dockerd", facts.dockerd), ("containerd", facts.containerd)):
        if daemon is not None:
            found[name] = (daemon.pid, daemon.start_ticks)
    return found


KNOWN_HANG_VERSIONS = ("1.0.0-rc93",)  # a rollback to these warns: the old runc hangs


def rollback_host(
    steps: StepRunner,
    name: str,
    *,
    run_id: str | None,
    on_phase: PhaseListener,
    clock: Callable[[], float] = time.time,
) -> HostOutcome:
    """Return one host to its recorded "before"; `run_id` None accepts whichever run it records."""
    first = HostSteps(steps, name, run_id=run_id or "", on_phase=on_phase, clock=clock)
    facts = first.facts()
    record = read_record(facts)
    current = facts.runc.sha256 if facts.runc else None
    if run_id is not None and (record is None or record.run_id != run_id):
        # The run never wrote its record here, so it never swapped: nothing to put back, but
        # the lock and staged file a crash may have left go.
        first.release([runc.file for runc in executed_runcs(facts)])
        mine = "" if record is None else f" (its record is of run {record.run_id})"
        message = f"run {run_id} never changed this host{mine}: nothing to roll back"
        return HostOutcome("rolled_back", "none", current, message)
    if record is None:
        raise StepFailed("no host-side record: runc-rollout never changed this host")
    given_back = (main := record.package_of(record.runc_path)) is not None and main.diversion_added
    if record.outcome == "rolled_back" and (current == record.before_sha256 or given_back):
        return HostOutcome("rolled_back", "finished", current, "already rolled back")
    host = HostSteps(steps, name, run_id=record.run_id, on_phase=on_phase, clock=clock)
    outcome = host.rollback(record)
    version = record.before_version or ""
    back = outcome.runc_sha256 == record.before_sha256  # not so: the package's newer file
    if back and any(bad in version for bad in KNOWN_HANG_VERSIONS):
        warning = f"WARNING: rolled back to runc {version}, which hangs in runc init (rc93 bug)"
        message = "; ".join(filter(None, [warning, outcome.message]))
        return HostOutcome(outcome.status, outcome.phase, outcome.runc_sha256, message)
    return outcome
