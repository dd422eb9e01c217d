"""Reaching the hosts a command works on: every host's SSH settings checked before any is
reached, the SSH executor, the backend `executor` names, and Ansible execution nodes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.choices import ExecutorName
from orchestrator.errors import BadInput

# The backends are imported where they are used: `plan` without --gather needs only the
# routes (ssh_config, read by paramiko), never the executor's connections (fabric).
if TYPE_CHECKING:
    from orchestrator.backends.ansible.streaming import ExecutionNode
    from orchestrator.backends.base import Backend
    from orchestrator.backends.ssh.executor import SshExecutor
    from orchestrator.diagnose.fleet import DiagnosticFleet
    from orchestrator.models import BecomePasswords, Plan, SshTarget


def ssh_executor(known_hosts: Path | None, become: BecomePasswords | None = None) -> SshExecutor:
    from orchestrator.backends.ssh.executor import SshExecutor

    return SshExecutor(known_hosts=known_hosts, become=become)


@contextlib.contextmanager
def diagnostic_fleet(
    executor: ExecutorName,
    known_hosts: Path | None,
    become: BecomePasswords | None,
    concurrency: int,
) -> Iterator[DiagnosticFleet]:
    """The fleet `executor` names, for a diagnostic (`facts`, `audit`, `unstick`)."""
    if executor is ExecutorName.ansible:
        from orchestrator.backends.ansible.diagnostics import AnsibleFleet

        yield AnsibleFleet(concurrency, known_hosts=known_hosts, become=become)
        return
    from orchestrator.diagnose.onhost import SshFleet

    with ssh_executor(known_hosts, become) as ssh:
        yield SshFleet(ssh, concurrency)


def check_routes(targets: Mapping[str, SshTarget]) -> None:
    """Refuse (exit 2, before any host is reached) a host whose ssh settings the SSH backend
    cannot honour, naming the host and the option."""
    from orchestrator.backends.ssh.routes import SshRoutes
    from orchestrator.backends.ssh.sshconfig import SshConfigError

    try:
        SshRoutes().check(targets)
    except SshConfigError as error:
        raise BadInput(str(error)) from None


def execution_nodes(
    values: Sequence[str], executor: ExecutorName, plan: Plan | None
) -> dict[str, ExecutionNode]:
    """`--execution-node` values checked against the executor and the plan's failure domains
    (a node needs a plan: `rollback -i` has none)."""
    if not values:
        return {}
    from orchestrator.backends.ansible.streaming import check_domains, parse_execution_nodes

    nodes = parse_execution_nodes(values)
    if executor is not ExecutorName.ansible:
        raise BadInput("--execution-node: needs --executor ansible")
    if plan is None:
        raise BadInput("--execution-node: needs a RUN (its plan's failure domains), not -i")
    check_domains(nodes, (host.domain for host in plan.hosts), f"plan {plan.plan_id}")
    return nodes


@contextlib.contextmanager
def open_backend(
    executor: ExecutorName,
    concurrency: int,
    known_hosts: Path | None,
    become: BecomePasswords | None,
    run_dir: Path | None,
    *,
    nodes: Mapping[str, ExecutionNode] | None = None,
    plan: Plan | None = None,
    gzip: bool = True,
    say: Callable[[str], None] = lambda message: None,
) -> Iterator[Backend]:
    """The backend `executor` names; Ansible's jobs go under the run's directory (else a
    temporary one), each failure domain's on its execution node when `nodes` names one, and
    what the jobs report goes to `say`. `gzip`: a push sends the artifact compressed."""
    if executor is ExecutorName.ansible:
        from orchestrator.backends.ansible.runner import AnsibleBackend
        from orchestrator.util.textsafe import terminal_safe

        jobs_dir = None if run_dir is None else run_dir / "ansible"
        yield AnsibleBackend(
            jobs_dir,
            concurrency,
            known_hosts=known_hosts,
            become=become,
            execution_nodes=nodes,
            domains={host.name: host.domain for host in plan.hosts} if plan else None,
            on_job=lambda node, hosts, message: say(terminal_safe(message)),
            gzip=gzip,
        )
        return
    from orchestrator.backends.ssh.backend import SshBackend

    with ssh_executor(known_hosts, become) as ssh:
        yield SshBackend(ssh, concurrency, gzip=gzip)
