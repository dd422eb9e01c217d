"""The procedures run on one host: upgrade (stage, back up, swap, verify, restore the sysctl),
continue an interrupted upgrade, and roll back from the host-side record.

Every step is a `hostside` command run through a `HostSession`. The host-side record is written
before the swap and after every phase, so whatever happens to the orchestrator, the host itself
says what it had and how far it got. A failure before the swap leaves the host untouched; a failure
after it rolls the host back before the procedure returns.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from orchestrator.host import commands, probe
from orchestrator.host.facts import gather_facts
from orchestrator.host.runcinfo import parse_runc_version
from orchestrator.host.session import (
    CommandResult,
    CommandTimeout,
    ConnectionLost,
    ExecutorError,
    HostSession,
)
from orchestrator.models import (
    Artifact,
    HostFacts,
    HostPhase,
    HostRecord,
    HostStatus,
    PlannedHost,
    ProbeResult,
    RecordedFile,
    VerifySpec,
)

PHASE_ORDER: tuple[HostPhase, ...] = (
    "none",
    "locked",
    "staged",
    "backed_up",
    "swapped",
    "verified",
    "sysctl_restored",
    "finished",
)


def phase_at_least(phase: HostPhase, other: HostPhase) -> bool:
    return PHASE_ORDER.index(phase) >= PHASE_ORDER.index(other)


@dataclass(frozen=True)
class HostOutcome:
    status: HostStatus
    phase: HostPhase
    runc_sha256: str | None
    message: str | None = None
    probe: ProbeResult | None = None  # the incident probe's result, when it ran


class StepFailed(Exception):
    """A host step failed; `status` and `message` go to the journal as they are."""

    def __init__(self, message: str, status: HostStatus = "failed") -> None:
        super().__init__(message)
        self.status: HostStatus = status


PhaseListener = Callable[[str, HostPhase, str | None], None]  # host, phase, runc sha256


def run_step(session: HostSession, command: commands.HostCommand) -> CommandResult:
    return session.run(command.script, timeout=command.timeout)


def _last_line(result: CommandResult) -> str:
    text = (result.stdout.strip() or result.stderr.strip()).splitlines()
    return text[-1][:300] if text else f"exit {result.exit_status}"


def read_record(facts: HostFacts) -> HostRecord | None:
    if not facts.record_json or not facts.record_json.strip():
        return None
    try:
        return HostRecord.model_validate_json(facts.record_json)
    except ValidationError:
        raise StepFailed(f"{commands.RECORD} is unreadable; inspect it by hand") from None


def sysctl_files_to_change(facts: HostFacts, target: int) -> list[str]:
    """Every persistent file whose line for the key sets something other than `target`."""
    changed = {
        setting.real_file or setting.file
        for setting in facts.sysctl_settings
        if setting.value.strip() != str(target)
    }
    return sorted(changed)


class HostSteps:
    """The steps shared by upgrade and rollback: the lock, the host-side record, rollback."""

    def __init__(
        self,
        session: HostSession,
        name: str,
        *,
        run_id: str,
        on_phase: PhaseListener,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session
        self.name = name
        self.run_id = run_id
        self._on_phase = on_phase
        self._clock = clock

    def _lock(self) -> None:
        result = run_step(self.session, commands.lock(self.run_id))
        if result.exit_status == commands.EXIT_LOCKED:
            owner = commands.parse_kv(result.stdout).get("owner", "unknown")
            raise StepFailed(f"host is locked by run {owner}; not touched")
        if not result.ok:
            raise StepFailed(f"could not take the host lock: {_last_line(result)}")
        self._phase("locked", None)

    # -- rollback --------------------------------------------------------------------------

    def rollback(self, record: HostRecord) -> HostOutcome:
        """Back to the record's "before": sysctl and files first, then the binary, then check."""
        self._lock()
        kept: list[str] = []
        if record.files:
            files = run_step(
                self.session,
                commands.restore_files(
                    [(item.path, item.before_sha256, item.after_sha256) for item in record.files]
                ),
            )
            if not files.ok:
                raise StepFailed(f"rollback: restoring sysctl files failed: {_last_line(files)}")
            restored = commands.parse_file_lines(files.stdout, (i.path for i in record.files))
            kept = [path for path, sums in restored.items() if sums.get("kept") == "1"]
        if record.sysctl_before is not None:
            runtime = run_step(self.session, commands.set_runtime_sysctl(record.sysctl_before))
            if not runtime.ok:
                raise StepFailed(f"rollback: setting the sysctl failed: {_last_line(runtime)}")
        self._restore_binary(record)
        version = run_step(self.session, commands.runc_version(record.runc_path, 30))
        if not version.ok:
            raise StepFailed(f"rollback: restored runc does not run: {_last_line(version)}")
        record = self._finish_record(record, "rolled_back")
        self.release(record.runc_path)
        note = None
        if kept:
            note = "; ".join(
                f"{path} was edited after the rollout changed it: kept as it is, the version from "
                f"before the rollout is {path}{commands.KEPT_SUFFIX}"
                for path in kept
            )
        return HostOutcome("rolled_back", "finished", record.before_sha256, note)

    def release(self, runc_path: str | None) -> None:
        """Remove this run's staged file beside `runc_path` (if any) and its lock."""
        if runc_path is not None:
            staged = commands.staging_path(runc_path, self.run_id)
            self._best_effort(commands.discard_staged(staged))
        self._best_effort(commands.unlock(self.run_id))

    def _restore_binary(self, record: HostRecord) -> None:
        result = run_step(
            self.session, commands.restore_binary(record.runc_path, record.before_sha256)
        )
        if commands.parse_kv(result.stdout).get("sha256") != record.before_sha256:
            raise StepFailed(f"rollback: restoring the old runc failed: {_last_line(result)}")
        self._phase("finished", record.before_sha256)

    # -- records ---------------------------------------------------------------------------

    def _write_record(self, record: HostRecord) -> None:
        result = run_step(self.session, commands.write_record(record.model_dump_json(indent=2)))
        if not result.ok:
            raise StepFailed(f"could not write {commands.RECORD}: {_last_line(result)}")

    def _update_record(self, record: HostRecord, phase: HostPhase, **changes: object) -> HostRecord:
        updated = record.model_copy(update={"phase": phase, "updated": self._clock(), **changes})
        self._write_record(updated)
        return updated

    def _finish_record(self, record: HostRecord, outcome: str) -> HostRecord:
        return self._update_record(record, "finished", outcome=outcome)

    def _phase(self, phase: HostPhase, runc_sha256: str | None) -> None:
        self._on_phase(self.name, phase, runc_sha256)

    def _best_effort(self, command: commands.HostCommand) -> None:
        """A clean-up step whose failure must not hide the error being handled."""
        with contextlib.suppress(Exception):
            run_step(self.session, command)


class HostProcedure(HostSteps):
    """Upgrade one host for one run. One instance per host, used from one thread."""

    def __init__(
        self,
        session: HostSession,
        planned: PlannedHost,
        artifact: Artifact,
        *,
        run_id: str,
        plan_id: str,
        sysctl_target: int,
        on_phase: PhaseListener,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(session, planned.name, run_id=run_id, on_phase=on_phase, clock=clock)
        self.planned = planned
        self.artifact = artifact
        self.plan_id = plan_id
        self.sysctl_target = sysctl_target
        self.probe_result: ProbeResult | None = None
        self.verified_exec: str | None = None  # the running container `docker exec` checked
        self.staged_version: str | None = None  # what the staged file reported on this host

    # -- upgrade ---------------------------------------------------------------------------

    def upgrade(self) -> HostOutcome:
        facts = gather_facts(self.session)
        record = read_record(facts)
        if record is not None and record.run_id == self.run_id:
            return self._continue(record, facts)
        runc = facts.runc
        if runc is None or runc.sha256 is None:
            raise StepFailed(f"no runc binary found ({facts.runc_source})")
        drift = self._drift(facts)
        if drift:
            return HostOutcome("drift", "none", runc.sha256, drift)
        if runc.sha256 == self.artifact.sha256:
            return HostOutcome("noop", "none", runc.sha256, f"{runc.file} already at the target")
        problem = runc.target_problem
        if problem is not None:
            raise StepFailed(f"{problem}; not touched")
        return self._fresh(facts)

    def _fresh(self, facts: HostFacts) -> HostOutcome:
        """Lock, stage, back up, swap, then verify and restore the sysctl."""
        assert facts.runc is not None
        self._lock()
        try:
            record = self._stage_and_back_up(facts)
        except BaseException:
            self._best_effort(commands.discard_staged(self._staged(facts.runc.file)))
            self._best_effort(commands.unlock(self.run_id))
            raise
        self._swap(record)
        return self._after_swap(record)

    def _drift(self, facts: HostFacts) -> str | None:
        before = self.planned.before
        if before is None or facts.runc is None:
            return None
        sysctl_now = None if before.sysctl_runtime is None else facts.sysctl_runtime
        now = (facts.runc.file, facts.runc.sha256, sysctl_now)
        then = (before.runc_path, before.runc_sha256, before.sysctl_runtime)
        if now == then:
            return None
        return (
            f"host changed since the plan: runc {now[0]} sha256 {str(now[1])[:12]} sysctl {now[2]}"
            f" (plan: {then[0]} sha256 {then[1][:12]} sysctl {then[2]}); not touched"
        )

    def _staged(self, target: str) -> str:
        return commands.staging_path(target, self.run_id)

    def _stage_and_back_up(self, facts: HostFacts) -> HostRecord:
        assert facts.runc is not None and facts.runc.sha256 is not None
        target = facts.runc.file
        staged = self._staged(target)
        free = facts.runc.free_bytes
        if free is not None and free < self.artifact.size * 2:
            raise StepFailed(
                f"only {free} bytes free beside {target}; need {self.artifact.size * 2}; "
                "not touched"
            )
        try:
            self.session.put(Path(self.artifact.path), staged, mode=0o700)
        except ConnectionLost:
            raise
        except (OSError, ExecutorError) as error:
            # SFTP reports most causes as "Failure": ask the host's shell for the real one.
            probe = run_step(self.session, commands.probe_write(staged))
            why = _last_line(probe) if not probe.ok else str(error)
            raise StepFailed(f"upload to {staged} failed: {why}; not touched") from None
        timeout = self.planned.verify.timeout_seconds
        result = run_step(
            self.session, commands.check_staged(staged, self.artifact.sha256, timeout)
        )
        if result.exit_status == commands.EXIT_MISMATCH:
            actual = commands.parse_kv(result.stdout).get("actual", "?")
            raise StepFailed(f"staged file arrived with sha256 {actual}; not touched")
        if not result.ok:
            raise StepFailed(
                f"staged runc does not run on this host: {_last_line(result)}; not touched"
            )
        staged_version = parse_runc_version(result.stdout)
        if staged_version.version is None:
            raise StepFailed("staged file ran but did not report a runc version; not touched")
        if self.artifact.version is not None and staged_version.version != self.artifact.version:
            raise StepFailed(
                f"staged runc reports version {staged_version.version}, the plan says "
                f"{self.artifact.version}; not touched"
            )
        self.staged_version = staged_version.version
        self._phase("staged", None)
        backup = run_step(self.session, commands.backup_binary(target, facts.runc.sha256))
        if not backup.ok:
            raise StepFailed(f"could not back up {target}: {_last_line(backup)}; not touched")
        record = HostRecord(
            run_id=self.run_id,
            plan_id=self.plan_id,
            phase="backed_up",
            runc_path=target,
            before_sha256=facts.runc.sha256,
            before_version=facts.runc.version,
            target_sha256=self.artifact.sha256,
            sysctl_before=facts.sysctl_runtime,
            sysctl_target=self.sysctl_target,
            daemons=_daemons(facts),
            stuck_runc_init_before=sum(1 for process in facts.runc_init if process.stuck),
            updated=self._clock(),
        )
        self._write_record(record)
        self._phase("backed_up", None)
        return record

    def _swap(self, record: HostRecord) -> None:
        staged = self._staged(record.runc_path)
        result = run_step(
            self.session, commands.swap(staged, record.runc_path, record.target_sha256)
        )
        sha = commands.parse_kv(result.stdout).get("sha256")
        if not result.ok or sha != record.target_sha256:
            if sha != record.before_sha256:
                self._restore_binary(record)
            self._finish_record(record, "failed")
            self.release(record.runc_path)  # the staged file and the lock: the run ends here
            raise StepFailed(f"swap failed: {_last_line(result)}; old runc kept")
        record = self._update_record(record, "swapped")
        self._phase("swapped", record.target_sha256)

    def _after_swap(self, record: HostRecord) -> HostOutcome:
        """Verify, then restore the sysctl; roll back on any failure of either."""
        try:
            if not phase_at_least(record.phase, "verified"):
                self.verify(record)
                record = self._update_record(record, "verified")
                self._phase("verified", record.target_sha256)
            if not phase_at_least(record.phase, "sysctl_restored"):
                record = self._restore_sysctl(record)
        except (StepFailed, CommandTimeout) as failure:
            self.rollback(record)
            message = f"{failure}; rolled back to old runc"
            return HostOutcome(
                "failed", "finished", record.before_sha256, message, probe=self.probe_result
            )
        record = self._finish_record(record, "done")
        self._best_effort(commands.unlock(self.run_id))
        note = (
            f"docker exec checked in container {self.verified_exec}" if self.verified_exec else None
        )
        return HostOutcome("done", "finished", record.target_sha256, note, probe=self.probe_result)

    def _continue(self, record: HostRecord, facts: HostFacts) -> HostOutcome:
        """Pick up a host this run left mid-way (resume after a crash): never redo a step."""
        current = facts.runc.sha256 if facts.runc else None
        if record.phase == "finished":
            self.release(record.runc_path)
            if record.outcome == "done":
                return HostOutcome("done", "finished", current, "already finished by this run")
            return HostOutcome("failed", "finished", current, f"this run ended it {record.outcome}")
        if not phase_at_least(record.phase, "swapped") and current == record.target_sha256:
            record = self._update_record(record, "swapped")  # the rename ran; its record did not
            self._phase("swapped", current)
        if phase_at_least(record.phase, "swapped") and current != record.target_sha256:
            # Not the target after the swap: a rollback was cut short (or someone replaced the
            # binary). Verifying this runc as if it were the new one would be a lie: finish it.
            self.rollback(record)
            return HostOutcome(
                "failed",
                "finished",
                record.before_sha256,
                f"runc was {str(current)[:12]}, not the target, after the swap (a rollback cut "
                "short?); rolled back to old runc",
            )
        if phase_at_least(record.phase, "swapped"):
            return self._after_swap(record)
        # Interrupted before the swap: the binary is untouched; start over under our own lock.
        self._best_effort(commands.discard_staged(self._staged(record.runc_path)))
        facts = gather_facts(self.session)
        if facts.runc is None or facts.runc.sha256 != record.before_sha256:
            raise StepFailed("runc changed while this run held the host; inspect it by hand")
        return self._fresh(facts)

    # -- verify ----------------------------------------------------------------------------

    def verify(self, record: HostRecord) -> None:
        """Prove the swapped runc: version, daemons not restarted, the incident probe, a
        no-new-privileges container, exec into a running container, no new stuck `runc init`."""
        spec = self.planned.verify
        version = run_step(self.session, commands.runc_version(record.runc_path, 30))
        parsed = parse_runc_version(version.stdout)
        expected = self.artifact.version or self.staged_version
        if not version.ok or (expected is not None and parsed.version != expected):
            raise StepFailed(
                f"runc --version reports {parsed.version or _last_line(version)!r}, "
                f"expected {expected!r}"
            )
        facts = gather_facts(self.session)
        restarted = [
            name
            for name, (pid, ticks) in record.daemons.items()
            if _daemons(facts).get(name) != (pid, ticks)
        ]
        if restarted:
            raise StepFailed(f"{', '.join(restarted)} restarted or stopped during the swap")
        if spec.probe:  # first: it also clears what a probe cut short by a crash left
            self._probe(record, facts, spec)
        if facts.dockerd is not None and spec.image:
            check = commands.verify_docker(
                self.run_id, spec.image, spec.command, spec.timeout_seconds
            )
        else:
            check = commands.verify_runc_bundle(record.runc_path, self.run_id, spec.timeout_seconds)
        result = run_step(self.session, check)
        if not result.ok:
            killed = result.exit_status in (commands.EXIT_TIMEOUT, commands.EXIT_KILLED)
            why = (
                f"timed out after {spec.timeout_seconds:g}s"
                if killed
                else f"failed: {_last_line(result)}"
            )
            raise StepFailed(f"verification container ({check.name}) {why}")
        if facts.dockerd is not None:
            exec_result = run_step(
                self.session,
                commands.verify_exec(spec.command, spec.timeout_seconds, spec.exec_container),
            )
            if not exec_result.ok:
                raise StepFailed(
                    f"docker exec into a running container failed: {_last_line(exec_result)}"
                )
            said = commands.parse_kv(exec_result.stdout).get("exec", "")  # "ok container=NAME"
            self.verified_exec = said.partition("container=")[2] or None
        after = gather_facts(self.session)
        stuck = sum(1 for process in after.runc_init if process.stuck)
        if stuck > record.stuck_runc_init_before:
            raise StepFailed(
                f"{stuck - record.stuck_runc_init_before} new stuck `runc init` after the swap"
            )

    def _probe(self, record: HostRecord, facts: HostFacts, spec: VerifySpec) -> None:
        """The incident's own trigger against the new runc: anything but a pass fails the host
        (a probe that cannot decide proves nothing; the plan can turn the probe off)."""
        self.probe_result = run_probe(
            self.session, facts, record.runc_path, spec, run_id=self.run_id, holds_lock=True
        )
        if self.probe_result.outcome != "passed":
            raise StepFailed(self.probe_result.summary())

    # -- sysctl ----------------------------------------------------------------------------

    def _restore_sysctl(self, record: HostRecord) -> HostRecord:
        facts = gather_facts(self.session)
        files = sysctl_files_to_change(facts, record.sysctl_target)
        # Back up and record every file before changing any: if the orchestrator dies while the
        # host rewrites them, the record already names them (a resume finds them at the target
        # and would not record them again), so a rollback restores them. Earlier entries win.
        backed = run_step(self.session, commands.backup_files(files))
        known = {item.path: item for item in record.files}
        for path, sums in commands.parse_file_lines(backed.stdout, files).items():
            known.setdefault(path, RecordedFile(path=path, before_sha256=sums["before"]))
        record = self._update_record(record, record.phase, files=list(known.values()))
        if not backed.ok:
            raise StepFailed(f"backing up the sysctl files failed: {_last_line(backed)}")
        result = run_step(self.session, commands.set_sysctl(record.sysctl_target, files))
        changed = commands.parse_file_lines(result.stdout, files)
        recorded = [
            item.model_copy(update={"after_sha256": changed[item.path].get("after") or None})
            if item.path in changed
            else item
            for item in record.files
        ]
        record = self._update_record(record, record.phase, files=recorded)
        if not result.ok:
            raise StepFailed(f"restoring {commands.SYSCTL_KEY} failed: {_last_line(result)}")
        record = self._update_record(record, "sysctl_restored")
        self._phase("sysctl_restored", record.target_sha256)
        return record


def _daemons(facts: HostFacts) -> dict[str, tuple[int, int]]:
    found = {}
    for name, daemon in (("dockerd", facts.dockerd), ("containerd", facts.containerd)):
        if daemon is not None:
            found[name] = (daemon.pid, daemon.start_ticks)
    return found


def run_probe(
    session: HostSession,
    facts: HostFacts,
    runc_path: str,
    spec: VerifySpec,
    *,
    run_id: str,
    holds_lock: bool,
) -> ProbeResult:
    """Run the incident probe of `runc_path` on one host and read its result."""
    method = probe.choose_method(
        facts.dockerd is not None, facts.containerd is not None, spec.image
    )
    command = probe.probe(
        method,
        runc_path,
        uid=spec.probe_uid,
        timeout=spec.probe_timeout_seconds,
        run_id=run_id,
        image=spec.image,
        holds_lock=holds_lock,
    )
    result = run_step(session, command)
    return probe.parse_probe(result.stdout, result.exit_status, method)
