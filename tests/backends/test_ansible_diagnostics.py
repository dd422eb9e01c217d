"""The diagnostics through Ansible without a lab: the action runs the SSH backend's own code on
Ansible's connection (the same script, sent the same way), and the job's events come back as
the same results and errors."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from ansible.errors import AnsibleConnectionFailure

from orchestrator.backends.ansible.action import run_task
from orchestrator.backends.ansible.diagnostics import DiagnosticEvents, task_vars
from orchestrator.diagnose.facts_report import ReportedError, error_kind
from orchestrator.diagnose.unstick import HostScan
from orchestrator.models import HostFacts, HostTask, VerifySpec
from tests.diagnose.test_unstick import HUNG, output


class _Connection:
    def put_file(self, local: str, remote: str) -> None:
        raise AssertionError("a diagnostic uploads nothing")


class _Action:
    """An action whose host answers each command with `answer` (or its connection fails)."""

    def __init__(self, answer: dict[str, Any] | None) -> None:
        self.answer = answer
        self.sent: list[tuple[str, bytes | None]] = []
        self._connection = _Connection()

    def _low_level_execute_command(
        self, command: str, *, sudoable: bool, in_data: bytes | None, executable: str
    ) -> dict[str, Any]:
        self.sent.append((command, in_data))
        if self.answer is None:
            raise AnsibleConnectionFailure("ssh: connect to host h1 port 22: Connection refused")
        return self.answer


def test_unstick_runs_the_same_script_on_the_ansible_connection() -> None:
    action = _Action({"rc": 0, "stdout": output(HUNG), "stderr": ""})
    args = {"procedure": "unstick", "drain": False, "max_bytes": 4096, "max_seconds": 2}
    result = run_task(action, args, {"inventory_hostname": "h1"})
    scan = HostScan.model_validate(result["runc_rollout_unstick"])
    assert [(p.pid, p.matched) for p in scan.processes] == [(4242, True)]
    assert result["changed"] is False and "failed" not in result
    ((command, stdin),) = action.sent
    assert stdin is not None and b"DRAIN=0" in stdin and b"MAX_BYTES=4096" in stdin
    assert hashlib.sha256(stdin).hexdigest() in command  # the checksummed stdin launcher
    assert "python" not in command and b"python" not in stdin


@pytest.mark.parametrize(
    ("answer", "kind", "unreachable"),
    [
        (None, "unreachable", True),
        ({"rc": 3, "stdout": "", "stderr": "sh: broken\n"}, "facts", False),
    ],
)
def test_a_failed_diagnostic_says_its_kind(
    answer: dict[str, Any] | None, kind: str, unreachable: bool
) -> None:
    result = run_task(_Action(answer), {"procedure": "facts"}, {"inventory_hostname": "h1"})
    assert result["failed"] is True and result["runc_rollout_error"]["kind"] == kind
    assert result.get("unreachable", False) is unreachable
    assert result["msg"].startswith("h1")


def test_task_vars_are_what_diagnose_yml_reads() -> None:
    task = HostTask(
        procedure="audit", run_id="audit-1", probe=True, verify=VerifySpec(probe_uid=4242)
    )
    said = task_vars(task)
    assert said["runc_rollout_procedure"] == "audit" and said["runc_rollout_probe"] is True
    assert said["runc_rollout_verify"]["probe_uid"] == 4242
    assert HostTask.model_validate({k.removeprefix("runc_rollout_"): v for k, v in said.items()})


def _event(kind: str, host: str, res: dict[str, Any]) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": host, "res": res}}


def test_events_give_each_host_its_result_or_error() -> None:
    scan = HostScan(schema_version=2, uid=0, arch="x86_64", drain=False, processes=[])
    events = DiagnosticEvents(["a", "b", "c", "d", "e"], "unstick", HostScan)
    said = {"kind": "timeout", "message": "b (b): command timed out after 5s: sh"}
    for event in [
        _event("runner_on_ok", "a", {"runc_rollout_unstick": scan.model_dump(mode="json")}),
        _event("runner_on_failed", "b", {"failed": True, "runc_rollout_error": said}),
        _event("runner_on_unreachable", "c", {"msg": "Failed to connect\nto the host"}),
        _event("runner_on_failed", "d", {"runc_rollout_unstick": {"schema_version": 9}}),
        _event("runner_on_ok", "a", {"runc_rollout_unstick": {}}),  # the first word stands
        _event("runner_on_ok", "zz", {}),  # not this job's
    ]:
        assert events(event) is True
    events.finish("failed", 2)
    found = events.found
    assert found["a"] == scan
    assert isinstance(found["b"], ReportedError) and error_kind(found["b"]) == "timeout"
    assert str(found["b"]) == said["message"]
    assert error_kind(found["c"]) == "unreachable"  # type: ignore[arg-type]
    assert str(found["c"]) == "c: Failed to connect to the host"
    assert "unreadable result" in str(found["d"])
    assert str(found["e"]) == "e: ansible-runner job failed (rc 2)"
    assert set(found) == {"a", "b", "c", "d", "e"}


def test_a_facts_error_kind_survives_the_trip() -> None:
    facts = DiagnosticEvents(["h"], "facts", HostFacts)
    facts(_event("runner_on_failed", "h", {"runc_rollout_error": {"kind": "auth", "message": "m"}}))
    assert error_kind(facts.found["h"]) == "auth"  # type: ignore[arg-type]
