"""What the commands share: building wave options, SSH executors and backends, become passwords,
running a rollout with its view, confirmation."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from orchestrator.cli.options import ExecutorName, ShowOptions
from orchestrator.errors import BadInput

# What the commands run is imported where they run it: every command's options are built for
# `--help` and `--version` too, which must not pay for pydantic, rich or the backends.
if TYPE_CHECKING:
    from orchestrator.backends.ansible.streaming import ExecutionNode
    from orchestrator.backends.base import Backend
    from orchestrator.backends.ssh.executor import SshExecutor
    from orchestrator.models import (
        ApprovalPolicy,
        BecomePasswords,
        Event,
        Inventory,
        Plan,
        SshTarget,
        WaveOptions,
    )
    from orchestrator.run.journal import Journal
    from orchestrator.run.notify import Webhook


_OPTION_OF_FIELD = {
    "bake_seconds": "--bake",
    "pause_after": "--pause-after",
    "sysctl_target": "--sysctl-target",
    "verify_timeout": "--verify-timeout",
}


def wave_options(**fields: object) -> WaveOptions:
    """`WaveOptions` from the command line; a value out of range names its option."""
    from pydantic import ValidationError

    from orchestrator.models import WaveOptions

    try:
        return WaveOptions.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "options"
        option = _OPTION_OF_FIELD.get(field, f"--{field.replace('_', '-')}")
        raise BadInput(f"{option}: {first['input']!r}: {first['msg']}") from None


def ssh_executor(known_hosts: Path | None, become: BecomePasswords | None = None) -> SshExecutor:
    from orchestrator.backends.ssh.executor import SshExecutor

    return SshExecutor(known_hosts=known_hosts, become=become)


def check_routes(targets: Mapping[str, SshTarget]) -> None:
    """Refuse (exit 2, before any host is reached) a host whose ssh settings the SSH backend
    cannot honour, naming the host and the option."""
    from orchestrator.backends.ssh.executor import SshExecutor
    from orchestrator.backends.ssh.sshconfig import SshConfigError

    with SshExecutor() as executor:
        try:
            executor.check(targets)
        except SshConfigError as error:
            raise BadInput(str(error)) from None


def become_passwords(
    ask: bool,
    from_inventory: bool,
    targets: Mapping[str, SshTarget],
    inventory: Sequence[str] | Inventory,
) -> BecomePasswords:
    """`-K`'s password (asked once) and, with `--become-password-from-inventory`, each host's
    own from `inventory` (a plan's sources are read again). A host whose inventory sets one
    without the opt-in is refused: it would otherwise be ignored without a word."""
    from orchestrator.inventory.become import OPT_IN, become_password_of
    from orchestrator.inventory.read import load_inventory
    from orchestrator.models import BecomePasswords, Inventory

    flagged = [name for name, target in targets.items() if target.inventory_become_password]
    if flagged and not from_inventory:
        more = f" (and {len(flagged) - 1} more hosts)" if len(flagged) > 1 else ""
        raise BadInput(
            f"host {flagged[0]}{more}: the inventory sets ansible_become_password, which is used "
            f"only with {OPT_IN} (or remove it and use -K)"
        )
    asked = become_password(ask)
    if not flagged:
        return BecomePasswords(asked)
    if not isinstance(inventory, Inventory):
        try:
            inventory = load_inventory([Path(source) for source in inventory])
        except BadInput as error:
            raise BadInput(f"{OPT_IN}: the plan's inventory: {error}") from None
    per_host: dict[str, str] = {}
    for name in flagged:
        host = inventory.hosts.get(name)
        password = None if host is None else become_password_of(host)
        if password is None:
            raise BadInput(f"{OPT_IN}: host {name}: the inventory no longer sets a become password")
        per_host[name] = password
    return BecomePasswords(asked, per_host)


def become_password(ask: bool) -> str | None:
    """`--ask-become-pass`: the sudo password, asked once on the terminal, kept in memory only."""
    if not ask:
        return None
    import getpass

    try:
        return getpass.getpass("BECOME password: ", stream=sys.stderr)
    except EOFError:
        raise BadInput("--ask-become-pass: no password given (end of input)") from None


def execution_nodes(
    values: list[str] | None, executor: ExecutorName, plan: Plan | None
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
) -> Iterator[Backend]:
    """The backend `--executor` names; Ansible's jobs go under the run's directory (else a
    temporary one), each failure domain's on its execution node when `nodes` names one.
    `gzip`: a push sends the artifact compressed (else as it is)."""
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
            on_job=lambda node, hosts, message: typer.echo(terminal_safe(message), err=True),
            gzip=gzip,
        )
        return
    from orchestrator.backends.ssh.backend import SshBackend

    with ssh_executor(known_hosts, become) as ssh:
        yield SshBackend(ssh, concurrency, gzip=gzip)


def run_rollout(
    journal: Journal,
    backend: Backend,
    show: ShowOptions,
    resumed: bool = False,
    *,
    signers: Sequence[str] = (),
    wait_for_window: bool = True,
    webhooks: Sequence[Webhook] = (),
) -> int:
    from orchestrator.run.engine import ApplyEnv, Rollout
    from orchestrator.run.notify import Notifier
    from orchestrator.run.operator import current_operator
    from orchestrator.view import Screen, journal_summary, make_view, print_summary

    screen = Screen()
    view, on_event = make_view(
        journal.plan, journal.state, screen, verbose=show.verbose, json_events=show.json_events
    )
    operator = current_operator(signers)
    notifier = None
    if webhooks:
        typer.echo(f"notifying {', '.join(hook.host for hook in webhooks)}", err=True)
        notifier = Notifier(
            list(webhooks),
            journal.plan,
            journal.run_id,
            operator=operator,
            on_failure=lambda message: journal.record("notify.failed", message=message),
        )
        on_event = _both(on_event, notifier)
    env = ApplyEnv(
        on_event=on_event,
        sleep=view.sleep,
        operator=operator,
        wait_for_window=wait_for_window,
        sleep_until_window=screen.sleep,
    )
    rollout = Rollout(journal, backend, env=env)
    try:
        with view:
            code = rollout.run(resumed=resumed)
    finally:
        if notifier is not None:
            notifier.close()
    title = "resume" if resumed else "apply"
    summary = journal_summary(f"{title} {journal.run_id}", journal)
    print_summary(summary, screen, show.fmt, json_events=show.json_events)
    typer.echo(f"run {journal.run_id}: {journal.state.status} (exit {int(code)})", err=True)
    if journal.state.status == "paused" or summary.needs_resume:
        where = shlex.quote(str(journal.run_dir))
        typer.echo(f"continue with: runc-rollout resume {where}", err=True)
    return code


def _both(
    first: Callable[[Event], None], second: Callable[[Event], None]
) -> Callable[[Event], None]:
    def both(event: Event) -> None:
        first(event)
        second(event)

    return both


def run_directory(run: str, runs_dir: Path) -> Path:
    candidate = Path(run)
    if candidate.is_dir():
        return candidate
    if (runs_dir / run).is_dir():
        return runs_dir / run
    raise BadInput(
        f"RUN: no run {run!r} (looked for the directory {candidate} and {runs_dir / run})"
    )


def open_approved_run(run_dir: Path, policy: ApprovalPolicy) -> tuple[Journal, list[str]]:
    """A run to go on with (resume) or undo (rollback RUN), and who signed its plan: its folder
    the operator's, its plan approved under `policy`, the command line's. What the run folder
    records of its approval can only demand more: anyone who could write it could lower it."""
    from orchestrator.plan.approval import check_approval
    from orchestrator.run.journal import Journal

    journal = Journal.open(run_dir, expect_hash=policy.expect_hash)
    applied = journal.approval()
    if applied.plan_hash != journal.approved_plan.plan_hash:
        raise BadInput(f"{journal.run_dir}: the run's plan is not the one it was applied with")
    if policy.required_signatures < applied.required_signatures:
        raise BadInput(
            f"run {journal.run_id} was applied with {applied.required_signatures} required "
            "signatures: pass --allowed-signers (and --required-signatures) to go on with it"
        )
    return journal, check_approval(journal.approved_plan, policy, journal.signatures)


def confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise BadInput(f"{question} stdin is not a terminal: pass --yes to confirm")
    if not typer.confirm(question):
        raise typer.Abort()
