"""The public Python API: what the command line runs, as functions (as ansible-runner's
`interface.run`): `plan`, `check`, `apply`, `resume`, `rollback` and `audit`.

Each takes its first argument by position and the rest by keyword, and returns a result
object. A call that refuses (bad input, a plan that is not the approved one, a host whose
settings cannot be honoured) raises `RolloutError`, whose `exit_code` is the command line's
(`ExitCode`); nothing was changed on any host then. How a run ended is its result's
`exit_code`. The outside world is a `Screen` (stdout, stderr, clock, sleep): progress goes to
its stderr, `json_events` to its stdout; the default is the process's own. The command line
(`orchestrator/cli/`) parses its options, calls these, renders the result and exits with its
code. See docs/api.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.backends.reach import (
    check_routes,
    diagnostic_fleet,
    execution_nodes,
    open_backend,
    ssh_executor,
)
from orchestrator.choices import DEFAULT_CONCURRENCY, ExecutorName, FailOn, PushName
from orchestrator.errors import BadInput, ExitCode, RolloutError, UnreachableAtPlan
from orchestrator.inventory.become import become_passwords
from orchestrator.models import (
    BecomePasswords,
    Event,
    HostBefore,
    Inventory,
    Plan,
    RunApproval,
    SshTarget,
    WaveOptions,
)
from orchestrator.plan.approval import (
    SIGNATURES_LIMIT,
    approval_policy,
    check_approval,
    default_signatures,
    set_aside_stale_signatures,
    written_plan_hash,
)

# What only `check`, `apply`, `resume`, `rollback` and `audit` use is imported there: `plan`
# (on 100k hosts, a few seconds) does not pay for the runs' and backends' modules.
if TYPE_CHECKING:
    from orchestrator.backends.ansible.streaming import ExecutionNode
    from orchestrator.backends.base import Backend, WaveRunner
    from orchestrator.diagnose.audit import AuditReport
    from orchestrator.run.journal import Journal, RunLimit
    from orchestrator.run.launch import Reach, Show
    from orchestrator.run.notify import Webhook
    from orchestrator.run.rollback import RollbackResult as HostRolledBack
    from orchestrator.view import Screen
    from orchestrator.view.summary import Summary

__all__ = [
    "AuditResult",
    "CheckResult",
    "ExecutorName",
    "ExitCode",
    "FailOn",
    "PlanResult",
    "PushName",
    "RollbackResult",
    "RolloutError",
    "RunResult",
    "Screen",
    "WaveOptions",
    "apply",
    "audit",
    "check",
    "plan",
    "resume",
    "rollback",
]

# A sudo password, or a function that asks for it (once, and only when a host needs it).
BecomePassword = str | Callable[[], str | None] | None
# Called with a question ("apply PLAN to N hosts in M waves?") before any host is changed:
# return to go on, raise to refuse (the command line asks on the terminal unless --yes).
Confirm = Callable[[str], None]


@dataclass(frozen=True)
class PlanResult:
    """A plan written to `output`. `stale_signatures`: where the signatures of an earlier,
    different plan written to the same path were moved (they approve nothing of this one)."""

    plan: Plan
    output: Path
    stale_signatures: Path | None = None


@dataclass(frozen=True)
class CheckResult:
    """A dry run (`check`): what each host would get, and the exit code `apply` would end
    with as far as the hosts' facts tell (1: a host unreachable or one it would fail)."""

    exit_code: ExitCode
    plan: Plan
    lines: tuple[str, ...]


@dataclass(frozen=True)
class RunResult:
    """A run that `apply` started or `resume` continued. `summary` is None when `resume`
    found the run completed already (nothing ran)."""

    exit_code: ExitCode
    journal: Journal
    summary: Summary | None

    @property
    def run_id(self) -> str:
        return self.journal.run_id

    @property
    def run_dir(self) -> Path:
        return self.journal.run_dir

    @property
    def status(self) -> str:
        return self.journal.state.status

    @property
    def needs_resume(self) -> bool:
        """Paused, or left with hosts `resume` must finish."""
        summary_says = self.summary is not None and self.summary.needs_resume
        return self.status == "paused" or summary_says


@dataclass(frozen=True)
class RollbackResult:
    """`rollback`: per host, (status, runc sha256, message); exit 1 if any host is not
    `rolled_back`."""

    exit_code: ExitCode
    outcomes: Mapping[str, HostRolledBack]
    summary: Summary


@dataclass(frozen=True)
class AuditResult:
    """`audit`: the report, and 1 when a host could not be audited or a finding at or above
    `fail_on` is present."""

    exit_code: ExitCode
    report: AuditReport


@dataclass(frozen=True)
class _Approved:
    """A plan checked as `apply` checks it: the whole approved plan, the part to run (with a
    limit), who signed it, and the hosts' passwords."""

    approved: Plan
    plan: Plan
    signers: list[str]
    required_signatures: int
    limit: RunLimit | None
    signatures: Path | None


def plan(
    inventory: Sequence[Path | str] | Inventory,
    *,
    runc: Path,
    sha256: str | None = None,
    sha256_file: Path | None = None,
    sha256_name: str | None = None,
    signature: Path | None = None,
    keyring: Path | None = None,
    runc_version: str | None = None,
    artifact_url: str | None = None,
    run_artifact: bool = False,
    options: WaveOptions | None = None,
    output: Path = Path("plan.json"),
    gather: bool = False,
    facts_file: Path | None = None,
    allow_unreachable: bool = False,
    accept_advisories: Sequence[str] = (),
    refuse_severity: str | None = None,
    advisories_file: Path | None = None,
    known_hosts: Path | None = None,
    become_password: BecomePassword = None,
    become_from_inventory: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> PlanResult:
    """Plan a rollout of `runc` over `inventory` (files, directories, scripts or host lists,
    or an `Inventory` already read) in waves (`options`; its `limit` selects the hosts), and
    write it to `output`. No host is changed; with `gather` each host's facts are read."""
    from orchestrator.diagnose.advisories import advisory_table, describe_table
    from orchestrator.inventory.patterns import select_hosts
    from orchestrator.plan.artifact import inspect_artifact
    from orchestrator.plan.planner import build_plan, hosts_to_plan
    from orchestrator.plan.provenance import check_provenance
    from orchestrator.plan.render import plan_json_chunks
    from orchestrator.plan.target import refuse_severity as plan_refuse_severity
    from orchestrator.plan.target import target_policy
    from orchestrator.util.fsutil import write_atomic
    from orchestrator.util.memory import gc_paused

    options = options or WaveOptions()
    expected, provenance = check_provenance(
        runc,
        sha256,
        sha256_file=sha256_file,
        sha256_name=sha256_name,
        signature=signature,
        keyring=keyring,
    )
    artifact = inspect_artifact(
        runc, expected, run=run_artifact, version=runc_version, url=artifact_url
    ).model_copy(update={"provenance": provenance})
    table = advisory_table(advisories_file)
    loaded = _inventory(inventory)
    selected = (loaded.hosts[name] for name in select_hosts(loaded, options.limit))
    policy = target_policy(
        artifact,
        table.advisories,
        describe_table(table, advisories_file),
        accepted=accept_advisories,
        severity=plan_refuse_severity(refuse_severity, selected),
    )
    before: dict[str, HostBefore] = {}
    unreachable: dict[str, str] = {}
    held: dict[str, str] = {}
    if gather or facts_file:
        from orchestrator.diagnose.facts_report import (
            before_from_report,
            facts_report,
            gather_fleet,
            read_facts_report,
        )

        targets = hosts_to_plan(loaded, options.limit)
        if facts_file is not None:
            report = read_facts_report(facts_file)
        else:
            check_routes(targets)
            become = become_passwords(
                _asker(become_password), become_from_inventory, targets, loaded
            )
            with ssh_executor(known_hosts, become) as executor:
                report = facts_report(gather_fleet(executor, targets, concurrency))
        before, unreachable, held = before_from_report(report, targets)
        if unreachable and not allow_unreachable:
            raise UnreachableAtPlan(_unreachable_message(unreachable, len(targets)))
    result = build_plan(loaded, artifact, options, before, unreachable, policy, held)
    del loaded  # at 100k hosts the inventory is as large as the plan: free it before writing
    check_routes({host.name: host.ssh for host in result.hosts})
    replaced = written_plan_hash(output)
    try:
        with gc_paused():
            write_atomic(output, plan_json_chunks(result))
    except OSError as error:
        raise BadInput(f"-o {output}: cannot write the plan: {error.strerror or error}") from None
    stale = set_aside_stale_signatures(output, replaced, result.plan_hash)
    return PlanResult(result, output, stale)


def check(
    plan: Path | Plan,
    *,
    limit: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    known_hosts: Path | None = None,
    become_password: BecomePassword = None,
    become_from_inventory: bool = False,
    expect_hash: str | None = None,
    allowed_signers: Path | None = None,
    required_signatures: int | None = None,
    signatures: Path | None = None,
    screen: Screen | None = None,
    diff: bool = False,
) -> CheckResult:
    """What `apply` would do to each host of a reviewed plan, from the hosts' facts (read
    only); changes nothing (Ansible's --check). The plan is checked as `apply` checks it.
    With `diff`, each change as before and after (Ansible's --diff)."""
    from orchestrator.diagnose.facts_report import gather_fleet
    from orchestrator.run.engine import preview, preview_fails

    screen = _screen(screen)
    loaded, signatures = _plan_and_signatures(plan, signatures)
    approved = _approve(
        loaded, limit, expect_hash, allowed_signers, required_signatures, signatures, screen
    )
    targets = _targets(approved.plan)
    become = become_passwords(
        _asker(become_password), become_from_inventory, targets, approved.plan.inventory
    )
    with ssh_executor(known_hosts, become) as ssh:
        results = gather_fleet(ssh, targets, concurrency)
    # As apply would end: a host it could not reach or would fail on is not a success.
    code = ExitCode.HOST_FAILED if preview_fails(approved.plan, results) else ExitCode.OK
    return CheckResult(code, approved.plan, tuple(preview(approved.plan, results, diff=diff)))


def apply(
    plan: Path | Plan,
    *,
    runs_dir: Path = Path("runs"),
    limit: str | None = None,
    executor: ExecutorName = ExecutorName.ssh,
    concurrency: int = DEFAULT_CONCURRENCY,
    known_hosts: Path | None = None,
    become_password: BecomePassword = None,
    become_from_inventory: bool = False,
    expect_hash: str | None = None,
    allowed_signers: Path | None = None,
    required_signatures: int | None = None,
    signatures: Path | None = None,
    execution_nodes: Sequence[str] = (),
    push: PushName = PushName.gzip,
    wait_for_window: bool = True,
    notify: Sequence[str] = (),
    confirm: Confirm | None = None,
    screen: Screen | None = None,
    verbose: bool = False,
    json_events: bool = False,
    on_event: Callable[[Event], None] | None = None,
    backend: WaveRunner | None = None,
) -> RunResult:
    """Carry out a reviewed plan (a plan file, or a `Plan`) wave by wave, in a new run under
    `runs_dir`; refused if the plan was edited after review, or is not the one `expect_hash`
    or `allowed_signers` approve. With `limit`, only the plan's hosts that pattern selects.
    `execution_nodes`: `DOMAIN=COMMAND` values (`executor` ansible). `backend`: one of your
    own instead of the one `executor` names (then no host's SSH settings are checked)."""
    from orchestrator.run.journal import Journal
    from orchestrator.run.launch import Reach, Show
    from orchestrator.run.notify import parse_webhooks
    from orchestrator.util.fsutil import read_input

    screen = _screen(screen)
    webhooks = parse_webhooks(notify)
    loaded, signatures = _plan_and_signatures(plan, signatures)
    nodes = _nodes(execution_nodes, executor, loaded, backend)
    approved = _approve(
        loaded, limit, expect_hash, allowed_signers, required_signatures, signatures, screen
    )
    become = _become(approved.plan, become_password, become_from_inventory, backend)
    run = approved.plan
    waves = sum(1 for wave in run.waves if wave.hosts)
    if confirm is not None:
        confirm(f"apply {run.plan_id} to {len(run.hosts)} hosts in {waves} waves?")
    approval = RunApproval(
        plan_hash=run.plan_hash,
        required_signatures=approved.required_signatures,
        signers=approved.signers,
    )
    kept = None
    if approved.signers and approved.signatures is not None:
        kept = read_input(approved.signatures, SIGNATURES_LIMIT, "signatures file")
    journal = Journal.create(
        runs_dir,
        approved.approved,
        screen.clock,
        approval=approval,
        signatures=kept,
        limit=approved.limit,
    )
    _say(screen, f"run {journal.run_id} ({journal.run_dir})")
    reach = Reach(executor, concurrency, known_hosts, become, nodes, push)
    show = Show(screen, verbose, json_events, on_event)
    return _run(journal, backend, reach, show, approved.signers, wait_for_window, webhooks)


def resume(
    run: str | Path,
    *,
    runs_dir: Path = Path("runs"),
    executor: ExecutorName = ExecutorName.ssh,
    concurrency: int = DEFAULT_CONCURRENCY,
    known_hosts: Path | None = None,
    become_password: BecomePassword = None,
    become_from_inventory: bool = False,
    expect_hash: str | None = None,
    allowed_signers: Path | None = None,
    required_signatures: int | None = None,
    execution_nodes: Sequence[str] = (),
    push: PushName = PushName.gzip,
    wait_for_window: bool = True,
    notify: Sequence[str] = (),
    confirm: Confirm | None = None,
    screen: Screen | None = None,
    verbose: bool = False,
    json_events: bool = False,
    on_event: Callable[[Event], None] | None = None,
    backend: WaveRunner | None = None,
) -> RunResult:
    """Continue a paused, halted or crashed run (its id under `runs_dir`, or its directory);
    hosts caught mid-step are examined first. Its plan is checked against the approval given
    here, as `apply` checked it, and at least as strictly as the run was applied."""
    from orchestrator.run.approved import open_approved_run, run_directory
    from orchestrator.run.engine import check_artifact
    from orchestrator.run.launch import Reach, Show
    from orchestrator.run.notify import parse_webhooks

    screen = _screen(screen)
    webhooks = parse_webhooks(notify)
    policy = approval_policy(expect_hash, allowed_signers, required_signatures)
    journal, signers = open_approved_run(run_directory(run, runs_dir), policy)
    _warn(screen, journal)
    nodes = _nodes(execution_nodes, executor, journal.plan, backend)
    check_artifact(journal.plan)
    if journal.state.status == "completed":
        _say(screen, f"run {journal.run_id} is already completed")
        return RunResult(ExitCode.OK, journal, None)
    become = _become(journal.plan, become_password, become_from_inventory, backend)
    if confirm is not None:
        confirm(f"resume run {journal.run_id} ({journal.state.status})?")
    reach = Reach(executor, concurrency, known_hosts, become, nodes, push)
    show = Show(screen, verbose, json_events, on_event)
    return _run(journal, backend, reach, show, signers, wait_for_window, webhooks, resumed=True)


def rollback(
    run: str | Path | None = None,
    *,
    inventory: Sequence[Path | str] | Inventory = (),
    limit: str | None = None,
    hosts: Sequence[str] = (),
    runs_dir: Path = Path("runs"),
    executor: ExecutorName = ExecutorName.ssh,
    concurrency: int = DEFAULT_CONCURRENCY,
    known_hosts: Path | None = None,
    become_password: BecomePassword = None,
    become_from_inventory: bool = False,
    expect_hash: str | None = None,
    allowed_signers: Path | None = None,
    required_signatures: int | None = None,
    execution_nodes: Sequence[str] = (),
    confirm: Confirm | None = None,
    screen: Screen | None = None,
    verbose: bool = False,
    backend: Backend | None = None,
) -> RollbackResult:
    """Return hosts to their recorded before (the sysctl and its files first, then the old
    runc): a run's hosts (`hosts`: only these), or, without a run, the hosts of `inventory`
    (`limit`) from their own records. A run's plan is checked as `resume` checks it."""
    from orchestrator.plan.planner import hosts_to_plan
    from orchestrator.run.approved import open_approved_run, run_directory
    from orchestrator.run.rollback import roll_back
    from orchestrator.view.progress import ProgressPrinter
    from orchestrator.view.summary import rollback_summary

    if (run is None) == (not inventory):
        raise BadInput("rollback: give a RUN, or -i INVENTORY [--limit P], not both")
    screen = _screen(screen)
    journal: Journal | None = None
    if run is not None:
        policy = approval_policy(expect_hash, allowed_signers, required_signatures)
        journal, _ = open_approved_run(run_directory(run, runs_dir), policy)
        targets = _targets(journal.plan, check=False)
        unknown = sorted(set(hosts) - set(targets))
        if unknown:
            raise BadInput(f"--host: {', '.join(unknown)} not in run {journal.run_id}")
        if hosts:
            targets = {name: targets[name] for name in hosts}
        source: Sequence[str] | Inventory = journal.plan.inventory
    else:
        source = _inventory(inventory)
        targets = hosts_to_plan(source, limit)
    if backend is None:
        check_routes(targets)
    become = become_passwords(_asker(become_password), become_from_inventory, targets, source)
    plan = journal.plan if journal else None
    nodes = _nodes(execution_nodes, executor, plan, backend)
    if confirm is not None:
        confirm(f"roll back {len(targets)} hosts?")
    started = screen.clock()
    printer = ProgressPrinter(screen.stderr, verbose=verbose)
    if backend is not None:
        outcomes = roll_back(backend, targets, journal, on_event=printer)
    else:
        run_dir = journal.run_dir if journal else None
        with open_backend(
            executor,
            concurrency,
            known_hosts,
            become,
            run_dir,
            nodes=nodes or None,
            plan=plan,
            say=lambda message: _say(screen, message),
        ) as chosen:
            outcomes = roll_back(chosen, targets, journal, on_event=printer)
    failed = any(status != "rolled_back" for status, _, _ in outcomes.values())
    summary = rollback_summary(plan, outcomes, screen.clock() - started)
    return RollbackResult(ExitCode.HOST_FAILED if failed else ExitCode.OK, outcomes, summary)


def audit(
    inventory: Sequence[Path | str] | Inventory,
    *,
    limit: str | None = None,
    fail_on: FailOn = FailOn.none,
    ignore: Sequence[str] = (),
    domain_key: str | None = None,
    probe: bool = False,
    probe_timeout: float = 20.0,
    advisories_file: Path | None = None,
    known_hosts: Path | None = None,
    become_password: BecomePassword = None,
    become_from_inventory: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    executor: ExecutorName = ExecutorName.ssh,
) -> AuditResult:
    """Audit each host's runc (known bugs, advisories), the sysctl and hung runc init: read
    only, unless `probe` (which starts the incident's trigger container on each host).
    `executor` reaches the hosts over SSH or through Ansible, with the same scripts."""
    from orchestrator.diagnose.advisories import load_advisories
    from orchestrator.diagnose.audit_fleet import audit_fleet, audit_targets, probe_specs
    from orchestrator.diagnose.findings import finding_ids

    advisories = load_advisories(advisories_file)
    unknown = sorted(set(ignore) - finding_ids(advisories))
    if unknown:
        raise BadInput(f"--ignore: no finding is called {', '.join(unknown)}")
    loaded = _inventory(inventory)
    targets, zones, held = audit_targets(loaded, limit, domain_key)
    specs = probe_specs(loaded, targets, probe_timeout) if probe else None
    check_routes(targets)
    become = become_passwords(_asker(become_password), become_from_inventory, targets, loaded)
    with diagnostic_fleet(executor, known_hosts, become, concurrency) as fleet:
        report = audit_fleet(
            fleet,
            targets,
            zones,
            advisories,
            fail_on=fail_on,
            ignore=ignore,
            held=held,
            probe_specs=specs,
        )
    return AuditResult(ExitCode.HOST_FAILED if report.failed else ExitCode.OK, report)


def _run(
    journal: Journal,
    backend: WaveRunner | None,
    reach: Reach,
    show: Show,
    signers: Sequence[str],
    wait_for_window: bool,
    webhooks: Sequence[Webhook],
    *,
    resumed: bool = False,
) -> RunResult:
    from orchestrator.run.launch import run_journal
    from orchestrator.view import journal_summary

    code = run_journal(
        journal,
        backend,
        reach,
        show,
        resumed=resumed,
        signers=signers,
        wait_for_window=wait_for_window,
        webhooks=webhooks,
    )
    title = "resume" if resumed else "apply"
    return RunResult(code, journal, journal_summary(f"{title} {journal.run_id}", journal))


def _plan_and_signatures(plan: Path | Plan, signatures: Path | None) -> tuple[Plan, Path | None]:
    """The plan, and where its signatures are: `signatures`, else beside a plan file."""
    from orchestrator.run.engine import load_plan

    if isinstance(plan, Path):
        return load_plan(plan), signatures if signatures is not None else default_signatures(plan)
    return plan, signatures


def _approve(
    loaded: Plan,
    limit: str | None,
    expect_hash: str | None,
    allowed_signers: Path | None,
    required_signatures: int | None,
    signatures: Path | None,
    screen: Screen,
) -> _Approved:
    """The plan checked as `apply` checks it: its hash and signatures against the policy,
    cut down to `limit`, its artifact present and unchanged."""
    from orchestrator.run.engine import check_artifact
    from orchestrator.run.limit import plan_subset
    from orchestrator.util.textsafe import terminal_safe

    policy = approval_policy(expect_hash, allowed_signers, required_signatures)
    signers = check_approval(loaded, policy, signatures)
    if signers:
        _say(screen, f"{loaded.plan_id} signed by {', '.join(signers)}")
    subset = plan_subset(loaded, limit) if limit is not None else None
    run = loaded
    if subset is not None:  # approved as a whole: the run works on its subset alone
        run = loaded.limited_to(subset.hosts)
        said = f"--limit {limit}: {len(subset.hosts)} of the plan's {len(loaded.hosts)} hosts"
        _say(screen, terminal_safe(said))
    check_artifact(run)
    return _Approved(loaded, run, signers, policy.required_signatures, subset, signatures)


def _targets(plan: Plan, *, check: bool = True) -> dict[str, SshTarget]:
    targets = {host.name: host.ssh for host in plan.hosts}
    if check:
        check_routes(targets)
    return targets


def _become(
    plan: Plan, password: BecomePassword, from_inventory: bool, backend: WaveRunner | None
) -> BecomePasswords:
    """The hosts' sudo passwords, their SSH settings checked first (none of it with a backend
    of the caller's own)."""
    if backend is not None:
        return BecomePasswords()
    targets = _targets(plan)
    return become_passwords(_asker(password), from_inventory, targets, plan.inventory)


def _nodes(
    values: Sequence[str], executor: ExecutorName, plan: Plan | None, backend: object | None
) -> Mapping[str, ExecutionNode]:
    if values and backend is not None:
        raise BadInput("execution nodes: not with a backend of your own")
    return execution_nodes(values, executor, plan)


def _asker(password: BecomePassword) -> Callable[[], str | None]:
    if password is None or isinstance(password, str):
        return lambda: password
    return password


def _inventory(inventory: Sequence[Path | str] | Inventory) -> Inventory:
    from orchestrator.inventory.read import load_inventory

    if isinstance(inventory, Inventory):
        return inventory
    return load_inventory([Path(source) for source in inventory])


def __getattr__(name: str) -> object:
    """`Screen`, imported when asked for (`plan` needs no view)."""
    if name == "Screen":
        from orchestrator.view import Screen

        return Screen
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _screen(screen: Screen | None) -> Screen:
    from orchestrator.view import Screen

    return screen or Screen()


def _say(screen: Screen, message: str) -> None:
    screen.stderr.write(message + "\n")
    screen.stderr.flush()


def _warn(screen: Screen, journal: Journal) -> None:
    for problem in journal.problems:
        _say(screen, f"runc-rollout: warning: {problem}")


def _unreachable_message(unreachable: dict[str, str], selected: int) -> str:
    """One line: which selected hosts could not be gathered, the first one's reason, what to do."""
    from orchestrator.util.textsafe import terminal_safe

    names = list(unreachable)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    first = terminal_safe(unreachable[names[0]])
    return (
        f"plan: {len(names)} of {selected} selected hosts could not be gathered ({shown}; "
        f"{names[0]}: {first}): no plan written; bring them back, hold them with "
        "runc_rollout_skip, or pass --allow-unreachable to plan without them"
    )
