"""The `runc_rollout` Ansible action (`playbooks/action_plugins/runc_rollout.py` calls `run_task`):
the host procedure of `orchestrator.host.procedure`, run over Ansible's own connection.

So the Ansible backend runs exactly what the SSH backend runs: the same decision, the same step
batches, records and messages; Ansible supplies the connection (its inventory, ssh settings and
become), the forks, `serial` and the job's events. Phases are told as they happen on the
controller's display, one line each (`runc-rollout-event NONCE JSON`), which ansible-runner
streams as events; the outcome is the task's result (`runc_rollout_outcome`).

`action` is Ansible's `ActionBase` instance; only a few of its methods are used, so Ansible is
imported here only to recognise its connection errors.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.diagnose.facts_report import error_kind
from orchestrator.diagnose.onhost import diagnose_host
from orchestrator.diagnose.unstick import HostScan
from orchestrator.host.commands import SYSCTL_KEY, HostCommand, StepResult
from orchestrator.host.facts import facts_from
from orchestrator.host.procedure import (
    HostOutcome,
    HostProcedure,
    StepFailed,
    decide,
    describe,
    rollback_host,
    swap_targets,
    sysctl_settings_to_change,
)
from orchestrator.host.session import (
    CommandResult,
    CommandTimeout,
    ConnectionLost,
    ExecutorError,
    HostUnreachable,
    killed_after,
    over_cap,
    timed_out,
)
from orchestrator.host.steps import Payload, SessionSteps
from orchestrator.models import Artifact, HostFacts, HostPhase, HostTask, PlannedHost, SshTarget
from orchestrator.util.textsafe import terminal_safe

EVENT_PREFIX = "runc-rollout-event"
DIAGNOSTICS = ("facts", "audit", "unstick")  # procedures that read (and unstick) a host
KILL_GRACE = 15.0  # seconds past a command's timeout before the controller gives up on it


class AnsibleSession:
    """A `HostSession` over the connection of an Ansible action (become included)."""

    def __init__(self, action: Any, host: str) -> None:
        self._action = action
        self._host = host
        self._reached = False  # a command has run: a connection error now is a lost connection

    @property
    def host(self) -> str:
        return self._host

    def run(self, command: str, *, timeout: float, stdin: bytes | None = None) -> CommandResult:
        wrapped = killed_after(command, timeout)
        started = time.monotonic()
        result = self._call(
            lambda: self._action._low_level_execute_command(
                wrapped, sudoable=True, in_data=stdin, executable="/bin/sh"
            ),
            "command",
        )
        duration = time.monotonic() - started
        status = int(result.get("rc", -1))
        if timed_out(status, duration, timeout):
            raise CommandTimeout(self._host, "", command.split("\n", 1)[0][:100], timeout)
        stdout, stderr = str(result.get("stdout", "")), str(result.get("stderr", ""))
        return CommandResult(status, stdout, stderr, duration, over_cap(stdout) or over_cap(stderr))

    def put(self, local: Path, remote: str, *, mode: int) -> None:
        """Ansible's transfer to a temporary name, then into place: as root through become
        when the login user is not root (the upload itself runs as the login user)."""
        if self._action._play_context.become:
            upload = f"/tmp/.runc-rollout-upload-{secrets.token_hex(8)}"
            place = (
                f'umask 077; cat "$1" > "$2" && chmod {mode:o} "$2"; rc=$?; rm -f "$1"; exit $rc'
            )
        else:
            upload = f"{remote}.upload"
            place = f'chmod {mode:o} "$1" && mv -f "$1" "$2"'
        self._call(lambda: self._action._connection.put_file(str(local), upload), "upload")
        script = f"set -- {shlex.quote(upload)} {shlex.quote(remote)}\n{place}"
        result = self.run(script, timeout=60)
        if not result.ok:
            why = result.stderr.strip() or result.stdout.strip() or f"exit {result.exit_status}"
            raise ExecutorError(self._host, "", f"cannot write {remote}: {why[-300:]}")

    def close(self) -> None:
        """Ansible owns the connection."""

    def _call(self, fn: Any, what: str) -> Any:
        from ansible.errors import AnsibleConnectionFailure

        try:
            result = fn()
        except AnsibleConnectionFailure as error:
            message = " ".join(str(error).split())[:300]
            if self._reached:
                lost = f"connection lost during {what}: {message}"
                raise ConnectionLost(self._host, "", lost) from None
            raise HostUnreachable(self._host, "", message) from None
        self._reached = True
        return result


def run_task(action: Any, args: dict[str, Any], task_vars: dict[str, Any]) -> dict[str, Any]:
    """Carry out one `runc_rollout` task on the action's host; the task's result."""
    name = str(task_vars.get("inventory_hostname", "?"))
    try:
        task = HostTask.model_validate(args)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "arguments"
        return {"failed": True, "msg": f"runc_rollout: {where}: {first['msg']}"}
    if task.procedure in DIAGNOSTICS:
        return _diagnose(AnsibleSession(action, name), task)
    events = _Events(task.events)
    steps = _FirstFacts(AnsibleSession(action, name))
    procedure: HostProcedure | None = None
    try:
        if task.procedure == "rollback":
            outcome = rollback_host(steps, name, run_id=task.run_id, on_phase=events.phase)
            return _result(name, outcome, steps, None)
        basedir = Path(action._loader.get_basedir())
        artifact, problem = _artifact(task, basedir)
        if artifact is None:
            return {"failed": True, "msg": f"runc_rollout: {problem}"}
        packed, problem = _packed(task, basedir)
        if problem:
            return {"failed": True, "msg": f"runc_rollout: {problem}"}
        planned = PlannedHost(
            name=name,
            domain="",
            ssh=SshTarget(address=name),
            verify=task.verify,
            before=task.before,
        )
        procedure = HostProcedure(
            steps,
            planned,
            artifact,
            packed=packed,
            run_id=task.run_id or "",
            plan_id=task.plan_id,
            sysctl_target=task.sysctl_target,
            on_phase=events.phase,
            refuse=task.refuse,
        )
        if action._play_context.check_mode:
            return _preview(name, planned, artifact, procedure.facts(), task)
        return _result(name, procedure.upgrade(), steps, procedure)
    except (HostUnreachable, ConnectionLost) as error:
        outcome = HostOutcome("unreachable", "none", None, str(error))
        return _result(name, outcome, steps, procedure, unreachable=True)
    except StepFailed as failure:
        outcome = HostOutcome(failure.status, "none", None, str(failure))
        return _result(name, outcome, steps, procedure)
    except Exception as error:  # the host's outcome, never a traceback in the job
        outcome = HostOutcome("failed", "none", None, f"{type(error).__name__}: {error}")
        return _result(name, outcome, steps, procedure)


def _diagnose(session: AnsibleSession, task: HostTask) -> dict[str, Any]:
    """A diagnostic (`runc-rollout facts`, `audit`, `unstick` with `--executor ansible`): the
    same code the SSH backend runs on its session, on this one. Its result is the task's
    `runc_rollout_<procedure>`; an error is `runc_rollout_error`, its kind and message."""
    try:
        found = diagnose_host(session, task)
    except Exception as error:
        kind = error_kind(error)
        said = {"kind": kind, "message": terminal_safe(str(error))}
        unreachable = isinstance(error, HostUnreachable | ConnectionLost)
        result = {"failed": True, "msg": said["message"], "runc_rollout_error": said}
        return result | ({"unreachable": True} if unreachable else {})
    drained = isinstance(found, HostScan) and any(p.action == "drained" for p in found.processes)
    return {"changed": drained, f"runc_rollout_{task.procedure}": found.model_dump(mode="json")}


def _artifact(task: HostTask, basedir: Path) -> tuple[Artifact | None, str]:
    if not task.run_id or not task.artifact or not task.sha256:
        return None, (
            "set runc_rollout_artifact (the new runc, on the controller), runc_rollout_sha256 "
            "(its sha256) and runc_rollout_run_id (names this change; the same id resumes it)"
        )
    path = Path(task.artifact)
    if not path.is_absolute():
        path = basedir / path
    try:
        size = path.stat().st_size
    except OSError as error:
        return None, f"{path}: {error.strerror}"
    # Its sha256 is checked on each host, on arrival, before anything else happens there.
    artifact = Artifact(
        path=str(path), sha256=task.sha256, size=size, version=task.version, url=task.url
    )
    return artifact, ""


def _packed(task: HostTask, basedir: Path) -> tuple[Payload | None, str]:
    """The artifact's gzip, if the task names one (what it decompresses to is checked on the
    host like the artifact itself)."""
    if not task.packed:
        return None, ""
    path = Path(task.packed)
    if not path.is_absolute():
        path = basedir / path
    if not path.is_file():
        return None, f"{path}: not a file (the artifact's gzip)"
    return Payload(path.read_bytes), ""


def _preview(
    name: str, planned: PlannedHost, artifact: Artifact, facts: HostFacts, task: HostTask
) -> dict[str, Any]:
    """Check mode: the decision, as `apply --dry-run` words it, and a diff of what changes."""
    decision = decide(planned, artifact, facts, task.run_id)
    _say(f"{name}: would {describe(decision, artifact, facts, task.sysctl_target, planned)}")
    if decision.action != "swap":
        return {"changed": False, "msg": decision.message or decision.action}
    diff = [
        {
            "before_header": runc.file,
            "after_header": runc.file,
            "before": f"runc {runc.version} sha256 {runc.sha256}\n",
            "after": f"runc {artifact.version or '?'} sha256 {artifact.sha256}\n",
        }
        for runc in swap_targets(facts, artifact)
    ]
    target = f"{SYSCTL_KEY} = {task.sysctl_target}\n"
    for setting in sysctl_settings_to_change(facts, task.sysctl_target):
        where = f"{setting.real_file or setting.file}:{setting.line}"
        before = f"{SYSCTL_KEY} = {setting.value.strip()}\n"
        diff.append(
            {"before_header": where, "after_header": where, "before": before, "after": target}
        )
    return {"changed": True, "msg": "would swap", "diff": diff}


def _say(line: str) -> None:
    """One line on the job's display (host text made safe for a terminal)."""
    from ansible.utils.display import Display

    Display().display(terminal_safe(line))


class _FirstFacts(SessionSteps):
    """Steps that note the runc the host had when the task began (Ansible's `changed`)."""

    runc_before: str | None = None
    _seen = False

    def run(self, *steps: HostCommand) -> list[StepResult]:
        results = super().run(*steps)
        if not self._seen and results and results[0].name == "facts" and results[0].ok:
            self._seen = True
            runc = facts_from(self.host, results[0]).runc
            self.runc_before = runc.sha256 if runc else None
        return results


def _result(
    name: str,
    outcome: HostOutcome,
    steps: _FirstFacts,
    procedure: HostProcedure | None,
    *,
    unreachable: bool = False,
) -> dict[str, Any]:
    """The task's result: failed unless done, noop or rolled back; changed if the host's runc
    is another now, or it was swapped and rolled back."""
    failed = outcome.status not in ("done", "noop", "rolled_back")
    swapped = outcome.runc_sha256 is not None and outcome.runc_sha256 != steps.runc_before
    changed = swapped or (outcome.status == "failed" and outcome.phase == "finished")
    said = {
        "status": outcome.status,
        "phase": outcome.phase,
        "runc_sha256": outcome.runc_sha256,
        "message": outcome.message,
        "probe": None if outcome.probe is None else outcome.probe.model_dump(mode="json"),
        "delivery": procedure.delivery if procedure else None,
        "sent_bytes": steps.sent_bytes,
    }
    _say(f"{name}: {outcome.status}" + (f": {outcome.message}" if outcome.message else ""))
    result: dict[str, Any] = {
        "changed": changed,
        "failed": failed,
        "msg": f"{outcome.status}: {outcome.message}" if outcome.message else outcome.status,
        "runc_rollout_outcome": said,
    }
    if unreachable:
        result["unreachable"] = True
    return result


class _Events:
    """Phases on the display, for the runner's event handler (only with the job's nonce)."""

    def __init__(self, nonce: str | None) -> None:
        self._nonce = nonce

    def phase(self, host: str, phase: HostPhase, sha: str | None) -> None:
        if self._nonce is None:
            return
        line = {"host": host, "phase": phase, "runc_sha256": sha}
        _say(f"{EVENT_PREFIX} {self._nonce} {json.dumps(line)}")
