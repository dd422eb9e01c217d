"""The diagnostics (`facts`, `audit`, `unstick`) with `--executor ansible`: one ansible-runner
job running `playbooks/diagnose.yml` (one per become password), whose one task per host is the
`runc_rollout` action running `diagnose.onhost.diagnose_host` over Ansible's connection: the
scripts of `hostside/` sent as over SSH, nothing else on the host (no module, no Python there).

Each host's task (`HostTask`) goes in the job's inventory as that host's variables (unsafe: data,
never templated); what the host said comes back as the task's `runc_rollout_<procedure>`,
validated here, and an error as its kind and message, so the reports read as over SSH.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Generic

from pydantic import ValidationError

from orchestrator.backends.ansible.runner import (
    JobSpec,
    host_vars,
    jobs_folder,
    password_groups,
    run_job,
    unsafe_vars,
)
from orchestrator.diagnose.facts_report import ReportedError
from orchestrator.diagnose.fleet import Result
from orchestrator.models import BecomePasswords, ErrorKind, HostError, HostTask, SshTarget

TASK_VARIABLES = ("procedure", "run_id", "verify", "probe", "drain", "max_bytes", "max_seconds")


def task_vars(task: HostTask) -> dict[str, Any]:
    """A host's `HostTask` as the variables `diagnose.yml` reads (`runc_rollout_<field>`)."""
    said = task.model_dump(mode="json", include=set(TASK_VARIABLES), exclude_none=True)
    return {f"runc_rollout_{key}": value for key, value in said.items()}


class DiagnosticEvents(Generic[Result]):
    """The event handler of one diagnostics job: each host's result or error, the first one."""

    def __init__(self, hosts: Collection[str], procedure: str, result: type[Result]) -> None:
        self._hosts = set(hosts)
        self._key = f"runc_rollout_{procedure}"
        self._result = result
        self.found: dict[str, Result | Exception] = {}

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        host = data.get("host")
        if host not in self._hosts or host in self.found:
            return True
        if kind not in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            return True
        res = data.get("res")
        said: dict[str, Any] = res if isinstance(res, dict) else {}
        self.found[host] = self._read(host, kind, said)
        return True

    def _read(self, host: str, kind: str, said: dict[str, Any]) -> Result | Exception:
        try:
            if self._key in said:
                return self._result.model_validate(said[self._key])
            if "runc_rollout_error" in said:
                error = HostError.model_validate(said["runc_rollout_error"])
                return ReportedError(error.kind, error.message)
        except ValidationError as error:
            return ReportedError("error", f"{host}: unreadable result from the action: {error}")
        why: ErrorKind = "unreachable" if kind == "runner_on_unreachable" else "error"
        message = " ".join(str(said.get("msg") or "no message").split())[:500]
        return ReportedError(why, f"{host}: {message}")

    def finish(self, status: str, rc: int) -> None:
        """Every host the job ended without a word for."""
        for host in self._hosts - set(self.found):
            self.found[host] = ReportedError(
                "error", f"{host}: ansible-runner job {status} (rc {rc})"
            )


class AnsibleFleet:
    """`DiagnosticFleet` through ansible-runner jobs under `jobs` (else a temporary folder)."""

    def __init__(
        self,
        concurrency: int,
        *,
        known_hosts: Path | None = None,
        become: BecomePasswords | None = None,
        jobs: Path | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.known_hosts = None if known_hosts is None else known_hosts.absolute()
        self._become = become or BecomePasswords()
        self._jobs = None if jobs is None else jobs.absolute()

    def run(
        self,
        targets: Mapping[str, SshTarget],
        tasks: Mapping[str, HostTask],
        result: type[Result],
    ) -> dict[str, Result | Exception]:
        found: dict[str, Result | Exception] = {}
        with jobs_folder(self._jobs) as directory:
            for password, group in password_groups(targets, self._become).items():
                for procedure in sorted({tasks[name].procedure for name in group}):
                    names = [name for name in group if tasks[name].procedure == procedure]
                    found |= self._job(directory, targets, tasks, names, password, result)
        return {name: found[name] for name in targets}

    def _job(
        self,
        directory: Path,
        targets: Mapping[str, SshTarget],
        tasks: Mapping[str, HostTask],
        names: list[str],
        password: str | None,
        result: type[Result],
    ) -> dict[str, Result | Exception]:
        hosts = {
            name: unsafe_vars(host_vars(targets[name], self.known_hosts) | task_vars(tasks[name]))
            for name in names
        }
        events = DiagnosticEvents(names, tasks[names[0]].procedure, result)
        spec = JobSpec(
            playbook="diagnose.yml",
            inventory={"all": {"hosts": hosts}},
            hosts=names,
            extravars={},
            forks=self.concurrency,
            become_password=password,
        )
        status, rc = run_job(directory, spec, events)
        events.finish(status, rc)
        return events.found
