"""A diagnostic on one host, over any `HostSession`: what `facts`, `audit` and `unstick` do
there. The SSH backend runs it on its sessions (`SshFleet`); the Ansible action runs the very
same function on Ansible's connection (`backends/ansible/action.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, Field

from orchestrator.backends.group import run_on_hosts
from orchestrator.diagnose.changelog import Changelog, package_of, read_changelog
from orchestrator.diagnose.fleet import Result
from orchestrator.diagnose.unstick import scan_host
from orchestrator.host.facts import gather_facts
from orchestrator.host.procedure import run_probe
from orchestrator.host.session import Executor, HostSession
from orchestrator.models import HostFacts, HostTask, Model, ProbeResult, SshTarget, VerifySpec


class AuditGathered(Model):
    """What `audit` reads on one host: its facts, its runc package's changelog, and with
    `--probe` the incident probe of its runc and of each other runc file its runtimes execute."""

    facts: HostFacts
    changelog: Changelog | None = None
    probe: ProbeResult | None = None
    also_probes: dict[str, ProbeResult] = Field(default_factory=dict)


def gather_audit(session: HostSession, spec: VerifySpec | None, run_id: str) -> AuditGathered:
    """Facts and changelog; with `spec`, the probes too (each starts a container, one after the
    other; their uids are drawn from `run_id`)."""
    facts = gather_facts(session)
    package = package_of(facts.runc) if facts.runc is not None else None
    changelog = read_changelog(session, *package) if package is not None else None
    if spec is None:
        return AuditGathered(facts=facts, changelog=changelog)

    def probe(path: str) -> ProbeResult:
        return run_probe(session, facts, path, spec, run_id=run_id, holds_lock=False)

    return AuditGathered(
        facts=facts,
        changelog=changelog,
        probe=probe(facts.runc.file) if facts.runc is not None else None,
        also_probes={
            item.runc.file: probe(item.runc.file)
            for item in facts.also_runc
            if item.runc.target_problem is None
        },
    )


def diagnose_host(session: HostSession, task: HostTask) -> BaseModel:
    """One host's diagnostic (`task.procedure`: facts, audit or unstick)."""
    if task.procedure == "facts":
        return gather_facts(session)
    if task.procedure == "audit":
        return gather_audit(session, task.verify if task.probe else None, task.run_id or "")
    if task.procedure == "unstick":
        return scan_host(
            session, drain=task.drain, max_bytes=task.max_bytes, max_seconds=task.max_seconds
        )
    raise ValueError(f"not a diagnostic: {task.procedure}")


class SshFleet:
    """The diagnostics over the SSH backend's sessions, `concurrency` hosts at a time."""

    def __init__(self, executor: Executor, concurrency: int) -> None:
        self.executor = executor
        self.concurrency = concurrency

    def run(
        self,
        targets: Mapping[str, SshTarget],
        tasks: Mapping[str, HostTask],
        result: type[Result],
    ) -> dict[str, Result | Exception]:
        def one(name: str, target: SshTarget) -> Result:
            # Each host's connection closes once its task is done: kept to the end, a fleet of
            # 10,000 would hold 10,000 sockets and threads (past `ulimit -n` at about 1,000).
            try:
                found = diagnose_host(self.executor.session(target, name=name), tasks[name])
            finally:
                self.executor.release(target, name=name)
            if not isinstance(found, result):
                raise TypeError(f"{tasks[name].procedure} gave {type(found).__name__}")
            return found

        return run_on_hosts(targets, one, concurrency=self.concurrency)
