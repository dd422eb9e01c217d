"""The Ansible backend: each wave is one ansible-runner job running `playbooks/upgrade.yml`,
whose one task per host (the `runc_rollout` action, `action.py`) runs the host procedure.

A job gets a fresh private data dir (mode 0700) with a copy of the playbooks, an inventory
written from the plan's SSH targets (strict host key checking, the plan's known_hosts), the
wave's hosts as `limit`, and `forks` = the concurrency. Its event handler turns the action's
display lines into the journal's phase events and each task's `runc_rollout_outcome` into the
host's outcome; a host that ends without one is unreachable or failed.

Nothing secret reaches the job's artifacts: the job's environment is reduced to what Ansible
needs (ansible-runner would otherwise copy the whole environment into them), a become password
only answers ansible-playbook's prompt, and the private key stays a path.
"""

from __future__ import annotations

import getpass
import os
import secrets
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ansible_runner.interface import init_runner
from pydantic import Field, ValidationError

from orchestrator.backends.ansible.action import EVENT_PREFIX
from orchestrator.backends.ansible.control import close_masters, control_directory
from orchestrator.backends.ansible.streaming import (
    ARTIFACT_NAME,
    PACKED_NAME,
    ExecutionNode,
    describe_part,
    run_on_node,
    run_parts,
    shipped_known_hosts,
    split_by_node,
)
from orchestrator.backends.base import WaveContext
from orchestrator.backends.ssh import sshconfig
from orchestrator.errors import BadInput
from orchestrator.host.procedure import HostOutcome, PhaseListener, StepFailed
from orchestrator.models import (
    Artifact,
    BecomePasswords,
    Delivery,
    HostPhase,
    HostStatus,
    Model,
    Plan,
    PlannedHost,
    ProbeResult,
    SshTarget,
)
from orchestrator.plan.artifact import packed_artifact
from orchestrator.util.fsutil import write_atomic

PLAYBOOK_DIR = Path(__file__).resolve().parent / "playbooks"  # the package's copy in a wheel
# The environment a job keeps from ours: what ssh and Python need, never credentials.
KEPT_ENVIRONMENT = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"}
    | {"SSH_AUTH_SOCK", "VIRTUAL_ENV", "PYTHONPATH"}
)
BECOME_PROMPT = r"^BECOME password.*:\s*?$"  # ansible-playbook --ask-become-pass
CANCEL_POLL = 0.25  # seconds between checks of the cancel callback


class _Outcome(Model):
    """A task's `runc_rollout_outcome`."""

    status: HostStatus
    phase: HostPhase | None
    runc_sha256: str | None
    message: str | None
    probe: ProbeResult | None = None
    delivery: Delivery | None = None
    sent_bytes: int | None = Field(default=None, ge=0)


class _Phase(Model):
    """One `runc-rollout-event` line."""

    host: str
    phase: HostPhase
    runc_sha256: str | None


@dataclass(frozen=True)
class JobSpec:
    """One ansible-runner job: a playbook over some hosts of an inventory."""

    playbook: str  # a file of `playbooks/`
    inventory: dict[str, Any]
    hosts: list[str]  # the limit
    extravars: dict[str, Any]
    forks: int
    become_password: str | None = field(default=None, repr=False)  # to ansible-runner's prompt
    node: ExecutionNode | None = None  # run there (streaming.py), else here
    files: Mapping[str, Path] = field(default_factory=dict)  # copied into a node job's project


def host_vars(
    target: SshTarget, known_hosts: Path | None, planned: PlannedHost | None = None
) -> dict[str, Any]:
    """A host's inventory variables: how to reach it and, from the plan, how to verify it and
    the "before" it must still match."""
    known = target.known_hosts_file or (str(known_hosts) if known_hosts else None)
    # Ansible shlex-splits this: each argument quoted, so a path with spaces stays one argument
    # and a hostile one cannot add options (`-o ProxyCommand=...` would run on the controller).
    # The inventory's own ssh arguments follow (`-F`, ProxyJump, ProxyCommand...): ssh takes the
    # first value of an option, so host key checking stays strict whatever they say.
    args = ["-o", "StrictHostKeyChecking=yes"]
    if known:
        args += ["-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null"]
    common = shlex.join([*args, *target.ssh_args])
    variables: dict[str, Any] = {
        "ansible_host": target.address,
        "ansible_ssh_common_args": common,
        "ansible_become": target.become and login_user(target) != "root",
        "ansible_python_interpreter": "auto_silent",
    }
    if target.port is not None:  # else ssh_config's Port, as the SSH backend does
        variables["ansible_port"] = target.port
    if target.user is not None:
        variables["ansible_user"] = target.user
    if target.private_key_file:
        variables["ansible_ssh_private_key_file"] = target.private_key_file
    if planned is not None:
        variables["runc_rollout_verify"] = planned.verify.model_dump(mode="json")
        if planned.before is not None:
            variables["runc_rollout_before"] = planned.before.model_dump(mode="json")
    return variables


def login_user(target: SshTarget) -> str:
    """The user ssh logs in as: the inventory's, else ssh_config's, else the local user."""
    if target.user is not None:
        return target.user
    config_file, _ = sshconfig.command_line(target)
    try:
        config = sshconfig.load_config(config_file, Path.home())
        route = sshconfig.resolve(target, config, local_user=getpass.getuser(), home=Path.home())
    except sshconfig.SshConfigError:
        return getpass.getuser()  # ssh itself will say what is wrong
    return route.target.user


def unsafe(value: Any) -> Any:
    """`value` with every string marked unsafe the way Ansible's JSON reads it
    (`{"__ansible_unsafe": ...}`): what came from a host, an inventory or a plan is data, and
    Ansible must never template it (a `{{ lookup('pipe', ...) }}` would run on the controller)."""
    if isinstance(value, str):
        return {"__ansible_unsafe": value}
    if isinstance(value, dict):
        return {key: unsafe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [unsafe(item) for item in value]
    return value


def unsafe_vars(variables: Mapping[str, Any]) -> dict[str, Any]:
    """Variables with every string in them unsafe (see `unsafe`)."""
    return {name: unsafe(value) for name, value in variables.items()}


def plan_inventory(
    plan: Plan, known_hosts: Path | None, names: Collection[str] | None = None
) -> dict[str, Any]:
    """The plan's hosts (those of `names` only, when given: a job, or an execution node, gets
    its own hosts), with the variables `upgrade.yml` needs (all of them unsafe). The artifact
    URL is a variable of the inventory, a file: extra vars go on ansible-playbook's command
    line, and a presigned URL's token would be in `ps` there."""
    hosts = {
        host.name: unsafe_vars(host_vars(host.ssh, known_hosts, host))
        for host in plan.hosts
        if names is None or host.name in names
    }
    url = {"runc_rollout_artifact_url": plan.artifact.url} if plan.artifact.url else {}
    return {"all": {"hosts": hosts, "vars": unsafe_vars(url)}}


def upgrade_extravars(plan: Plan, run_id: str, events: str) -> dict[str, Any]:
    return unsafe_vars(
        {
            "runc_rollout_sha256": plan.artifact.sha256,
            "runc_rollout_version": plan.artifact.version,
            "runc_rollout_run_id": run_id,
            "runc_rollout_plan_id": plan.plan_id,
            "runc_rollout_sysctl_target": plan.options.sysctl_target,
            "runc_rollout_events": events,
            # A job is one wave of the plan: all of it at once, judged by the wave engine (the
            # playbook's own careful defaults are for running it by hand).
            "runc_rollout_serial": "100%",
            "runc_rollout_max_fail_percentage": 100,
        }
        | _refusal_vars(plan)
    )


def _refusal_vars(plan: Plan) -> dict[str, Any]:
    """The plan's refusals of a target version it did not know, for each host to check."""
    if plan.target is None or not plan.target.refuse:
        return {}
    return {"runc_rollout_refuse": [item.model_dump(mode="json") for item in plan.target.refuse]}


class HostEvents:
    """The event handler of one job: phases and outcomes of its hosts, each outcome once.

    `nonce` is the job's `runc_rollout_events`: a display line is a phase only if it has it."""

    def __init__(
        self,
        hosts: Collection[str],
        *,
        nonce: str,
        on_phase: PhaseListener,
        on_outcome: Callable[[str, HostOutcome], None],
        phase_of: Callable[[str], HostPhase],
    ) -> None:
        self._hosts = set(hosts)
        self._prefix = f"{EVENT_PREFIX} {nonce} "
        self._on_phase = on_phase
        self._on_outcome = on_outcome
        self._phase_of = phase_of
        self._reported: set[str] = set()
        self._failures: dict[str, str] = {}
        self._unreachable: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> bool:
        """Handle one runner event; keep it in the artifacts (returns True)."""
        kind = event.get("event")
        if kind == "verbose":
            self._display(str(event.get("stdout") or ""))
            return True
        data = event.get("event_data") or {}
        host = data.get("host")
        if host not in self._hosts:
            return True
        res = data.get("res")
        result: dict[str, Any] = res if isinstance(res, dict) else {}
        if kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
            said = result.get("runc_rollout_outcome")
            if said is not None:
                self._report(host, _parse_outcome(said))
            elif kind == "runner_on_unreachable":
                self._unreachable[host] = _message(result)
            elif kind == "runner_on_failed" and not data.get("ignore_errors"):
                self._failures[host] = _message(result)
        return True

    def _display(self, text: str) -> None:
        for line in text.splitlines():
            if not line.startswith(self._prefix):
                continue
            try:
                phase = _Phase.model_validate_json(line[len(self._prefix) :])
            except ValidationError:
                continue
            if phase.host in self._hosts and phase.host not in self._reported:
                self._on_phase(phase.host, phase.phase, phase.runc_sha256)

    def finish(self, status: str, rc: int) -> None:
        """Report every host the job ended without an outcome for."""
        for host in sorted(self._hosts - self._reported):
            if host in self._unreachable:
                outcome = _Outcome(
                    status="unreachable",
                    phase=None,
                    runc_sha256=None,
                    message=self._unreachable[host],
                )
            else:
                why = self._failures.get(host, f"ansible-runner job {status} (rc {rc})")
                outcome = _Outcome(status="failed", phase=None, runc_sha256=None, message=why)
            self._report(host, outcome)

    def _report(self, host: str, outcome: _Outcome) -> None:
        with self._lock:
            if host in self._reported:
                return
            self._reported.add(host)
        # "none" is what the action says when it failed before the procedure knew a phase.
        phase = outcome.phase if outcome.phase not in (None, "none") else self._phase_of(host)
        result = HostOutcome(
            outcome.status,
            phase,
            outcome.runc_sha256,
            outcome.message,
            probe=outcome.probe,
            delivery=outcome.delivery,
            sent_bytes=outcome.sent_bytes,
        )
        self._on_outcome(host, result)


def _parse_outcome(said: Any) -> _Outcome:
    try:
        return _Outcome.model_validate(said)
    except ValidationError as error:
        return _Outcome(
            status="failed", phase=None, runc_sha256=None, message=f"unreadable outcome: {error}"
        )


def _message(result: dict[str, Any]) -> str:
    message = str(result.get("msg") or "").strip()
    detail = str(result.get("stderr") or result.get("stdout") or "").strip()
    if detail and detail not in message:
        message = f"{message}: {detail.splitlines()[-1]}" if message else detail.splitlines()[-1]
    return message[:500] or "failed"


JobsFor = Callable[[str, Path | None, list[str]], tuple[dict[str, Any], dict[str, Any]]]
# (event nonce, the known_hosts path the job's inventory names, its hosts)
# -> (inventory, extra vars)
OnJob = Callable[[str | None, list[str], str], None]  # execution node's domain, hosts, message


@dataclass(frozen=True)
class _Handlers:
    on_phase: PhaseListener
    on_outcome: Callable[[str, HostOutcome], None]
    phase_of: Callable[[str], HostPhase]
    on_job: OnJob


class AnsibleBackend:
    """One ansible-runner job per wave and per rollback, under `jobs_dir` (else a temporary
    directory, removed afterwards): one per become password (`password_groups`), and with
    `execution_nodes` each failure domain's part on its node, all parts at once (`domains`
    gives a rollback's hosts their domains; a wave's hosts carry theirs)."""

    def __init__(
        self,
        jobs_dir: Path | None,
        concurrency: int,
        *,
        known_hosts: Path | None = None,
        become: BecomePasswords | None = None,
        execution_nodes: Mapping[str, ExecutionNode] | None = None,
        domains: Mapping[str, str] | None = None,
        on_job: OnJob = lambda node, hosts, message: None,
        gzip: bool = True,
    ):
        # A job runs in its own folder: every path handed to it must be absolute.
        self.jobs_dir = None if jobs_dir is None else jobs_dir.absolute()
        self.concurrency = concurrency
        self.known_hosts = None if known_hosts is None else known_hosts.absolute()
        self._become = become or BecomePasswords()
        self.execution_nodes = dict(execution_nodes or {})
        self._domains = dict(domains or {})
        self._on_job = on_job
        self.gzip = gzip  # a push sends the artifact compressed (else as it is)
        self._packed_here: set[Path] = set()  # the gzip files this process wrote

    def run_wave(self, hosts: Mapping[str, PlannedHost], context: WaveContext) -> None:
        def job(
            nonce: str, known: Path | None, names: list[str]
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            extravars = upgrade_extravars(context.plan, context.run_id, nonce)
            return plan_inventory(context.plan, known, set(names)), extravars

        handlers = _Handlers(context.on_phase, context.on_outcome, context.phase_of, context.on_job)
        domains = {name: host.domain for name, host in hosts.items()}
        self._run("upgrade.yml", domains, job, handlers, context.plan.artifact)

    def rollback(
        self,
        targets: Mapping[str, SshTarget],
        *,
        run_id: str | None,
        on_phase: PhaseListener,
    ) -> dict[str, HostOutcome | Exception]:
        """`playbooks/rollback.yml` over `targets`; like `run_on_hosts`, a host that was not
        rolled back gets an exception."""
        outcomes: dict[str, HostOutcome] = {}
        only_run = {"runc_rollout_run_id": run_id} if run_id else {}

        def job(
            nonce: str, known: Path | None, names: list[str]
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            hosts = {n: unsafe_vars(host_vars(targets[n], known)) for n in names}
            return {"all": {"hosts": hosts}}, unsafe_vars(
                {"runc_rollout_events": nonce, **only_run}
            )

        handlers = _Handlers(on_phase, outcomes.__setitem__, lambda name: "none", self._on_job)
        domains = {name: self._domains.get(name, "") for name in targets}
        self._run("rollback.yml", domains, job, handlers, None)
        results: dict[str, HostOutcome | Exception] = {}
        for name in targets:
            outcome = outcomes[name]
            failed = outcome.status != "rolled_back"
            results[name] = StepFailed(outcome.message or outcome.status) if failed else outcome
        return results

    def _run(
        self,
        playbook: str,
        domains: Mapping[str, str],
        job: JobsFor,
        handlers: _Handlers,
        artifact: Artifact | None,
    ) -> None:
        """`playbook` over the hosts of `domains`: here, or each domain's part on its node."""
        if not self.execution_nodes:
            self._run_part(None, list(domains), playbook, job, handlers, artifact, None)
            return
        parts = split_by_node(domains, self.execution_nodes)
        for node, names in parts:
            handlers.on_job(node.domain if node else None, names, describe_part(node, names))
        run_parts(
            [
                partial(self._run_part, node, names, playbook, job, handlers, artifact)
                for node, names in parts
            ]
        )

    def _run_part(
        self,
        node: ExecutionNode | None,
        names: list[str],
        playbook: str,
        job: JobsFor,
        handlers: _Handlers,
        artifact: Artifact | None,
        cancel: threading.Event | None,
    ) -> None:
        """One part's jobs, one per become password, one after another. On a node everything
        the job reads travels with it, named relative to its project: known_hosts, the runc
        and its gzip."""
        files, known = shipped_known_hosts(node, self.known_hosts)
        with jobs_folder(self.jobs_dir) as directory:
            payload = {} if artifact is None else self._payload(directory, artifact)
            for password, group in password_groups(names, self._become).items():
                nonce = secrets.token_hex(8)
                inventory, extravars = job(nonce, known, group)
                shipped = dict(files)
                for var, (name, path) in payload.items():
                    if node is not None:
                        shipped[name] = path
                    extravars[var] = unsafe(name if node is not None else str(path))
                events = HostEvents(
                    group,
                    nonce=nonce,
                    on_phase=handlers.on_phase,
                    on_outcome=handlers.on_outcome,
                    phase_of=handlers.phase_of,
                )
                spec = JobSpec(
                    playbook=playbook,
                    inventory=inventory,
                    hosts=group,
                    extravars=extravars,
                    forks=self.concurrency,
                    become_password=password,
                    node=node,
                    files=shipped,
                )
                status, rc = run_job(directory, spec, events, cancel)
                events.finish(status, rc)

    def _payload(self, directory: Path, artifact: Artifact) -> dict[str, tuple[str, Path]]:
        """The files an upgrade job reads, by the variable that names them: the runc, and its
        gzip (made once per process, written by it into the jobs' directory). With the name each
        has in a node job's project."""
        payload = {"runc_rollout_artifact": (ARTIFACT_NAME, Path(artifact.path).resolve())}
        if not self.gzip:
            return payload
        packed = directory / f"runc-{artifact.sha256[:16]}.gz"
        if packed not in self._packed_here:  # never a file this process did not write
            data = packed_artifact(Path(artifact.path), artifact.sha256)
            write_atomic(packed, data, mode=0o600)
            self._packed_here.add(packed)
        return payload | {"runc_rollout_artifact_gz": (PACKED_NAME, packed)}


def password_groups(hosts: Iterable[str], become: BecomePasswords) -> dict[str | None, list[str]]:
    """Hosts by become password, in order. ansible-playbook asks for one password per job
    (`--ask-become-pass`, answered through ansible-runner's `passwords`), so hosts whose
    inventories give different passwords go in jobs of their own, one after another: a
    password is never written into a job's inventory, environment or command line."""
    groups: dict[str | None, list[str]] = {}
    for name in hosts:
        groups.setdefault(become.of(name), []).append(name)
    return groups


@contextmanager
def jobs_folder(jobs_dir: Path | None) -> Iterator[Path]:
    """`jobs_dir`, else a temporary folder, removed afterwards."""
    if jobs_dir is not None:
        yield jobs_dir
        return
    directory = Path(tempfile.mkdtemp(prefix="runc-rollout-ansible-"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_job(
    jobs_dir: Path,
    spec: JobSpec,
    on_event: Callable[[dict[str, Any]], bool],
    cancel: threading.Event | None = None,
) -> tuple[str, int]:
    """Run one job in a fresh private data dir under `jobs_dir`; return its status and rc.

    Runs ansible-runner in a thread so that Ctrl-C here (or `cancel`, set from another thread)
    cancels the job (its cancel callback kills ansible-playbook's process group) and is then
    raised as KeyboardInterrupt. A job with a `node` runs there (`streaming.run_on_node`).
    """
    if not (PLAYBOOK_DIR / spec.playbook).is_file():
        raise BadInput(f"{PLAYBOOK_DIR / spec.playbook}: the playbooks are missing")
    jobs_dir = jobs_dir.resolve()
    jobs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    data_dir = Path(tempfile.mkdtemp(prefix=f"job-{stamp}-", dir=jobs_dir))  # mode 0700
    project = data_dir / "project"
    shutil.copytree(PLAYBOOK_DIR, project)
    config = data_dir / "ansible.cfg"
    config.write_text("[defaults]\n")
    cancelled = cancel if cancel is not None else threading.Event()
    if spec.node is not None:
        return run_on_node(spec, data_dir, on_event, cancelled)
    control_dir = control_directory()
    environment = _job_environment(config, control_dir, data_dir)
    runner = init_runner(
        private_data_dir=str(data_dir),
        playbook=str(project / spec.playbook),
        inventory=spec.inventory,
        limit=",".join(spec.hosts),
        extravars=spec.extravars,
        forks=spec.forks,
        # A become password answers ansible-playbook's own prompt through the runner's pexpect:
        # it is in neither the environment, the command line nor a file of the job.
        cmdline="--ask-become-pass" if spec.become_password is not None else None,
        passwords=None if spec.become_password is None else {BECOME_PROMPT: spec.become_password},
        envvars=environment,
        settings={"pexpect_timeout": CANCEL_POLL, "suppress_ansible_output": True},
        suppress_env_files=True,
        quiet=True,
        ident="job",
        event_handler=on_event,
        cancel_callback=cancelled.is_set,
    )
    runner.config.env = kept_environment(runner.config.env, environment)
    runner.config.command = _dies_with_us(runner.config.command)
    # ansible-playbook runs where runc-rollout runs (ansible-runner would use the job's
    # project folder), so a relative path the inventory gives (a key file, known_hosts, `-F`)
    # names the file the SSH backend and a hand-run ansible-playbook would use.
    runner.config.cwd = os.getcwd()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as error:  # re-raised in the calling thread
            failures.append(error)

    thread = threading.Thread(target=run, name="ansible-runner", daemon=True)
    try:
        thread.start()
        try:
            while thread.is_alive():
                thread.join(CANCEL_POLL)
        except KeyboardInterrupt:
            cancelled.set()
            thread.join()
            raise
        if cancel is not None and cancel.is_set():
            raise KeyboardInterrupt
    finally:
        close_masters(control_dir)
    if failures:
        raise failures[0]
    return str(runner.status), int(runner.rc if runner.rc is not None else -1)


def _job_environment(config: Path, control_dir: Path, data_dir: Path) -> dict[str, str]:
    """Ansible settings of a job: this Python's Ansible, its own config, host keys checked, one
    verified master connection per host shared by that job only, pipelining."""
    return {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s",
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_SSH_RETRIES": "3",
        "ANSIBLE_TIMEOUT": "10",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_LOCAL_TEMP": str(data_dir / "tmp"),
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_GATHERING": "explicit",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        # The strategy loop checks for results every 1 ms by default: CPU the hosts' own work
        # and the workers need when they share the machine, for no gain at this scale.
        "ANSIBLE_INTERNAL_POLL_INTERVAL": "0.01",
    }


def kept_environment(env: Mapping[str, str], ours: Mapping[str, str]) -> dict[str, str]:
    """The job's environment without what it inherited and does not need (tokens, passwords):
    ansible-runner writes the whole of it into the job's artifacts. Kept: a few basics, `ours`,
    and what ansible-runner itself set."""
    return {
        key: value
        for key, value in env.items()
        if key in KEPT_ENVIRONMENT or key in ours or os.environ.get(key) != value
    }


# Run a command so that it is killed when the thread that started it ends (PR_SET_PDEATHSIG):
# if runc-rollout is killed, its ansible-playbook must not go on with the wave unwatched.
_PDEATHSIG = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)


def _dies_with_us(command: list[str]) -> list[str]:
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-c", _PDEATHSIG, *command]
