"""The data models the parts share, long because they are one schema read in one place: the
inventory and how a host is reached, the artifact, its advisories and the wave options, the
plan (each host's task, as the Ansible action gets it too) and its approval, the journal's
events and run state, the host-side record, a host's facts and the facts report.

Models that one part alone makes and reads live beside it: the audit's, unstick's and the
advisories' reports (`diagnose/`), the lab's records (`lab/records.py`), the Ansible action's
outcome lines (`backends/ansible/`). All models reject unknown fields, so a typo in a plan file
or a facts file is an error, not a silent default. The plan is what a reviewer approves:
`plan_hash` covers its whole body.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import field as dataclass_field
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from orchestrator.choices import (  # (defined apart: the command line's options name them)
    GATE_TIMEOUT,
    HOST_CHECK_TIMEOUT,
    PIPE_USER_PAGES_SOFT_DEFAULT,
)
from orchestrator.choices import (
    FailOn as FailOn,
)
from orchestrator.host.runcinfo import runtime_banner

SHA256_PATTERN = r"^[0-9a-f]{64}$"
# An image reference or a container name, never something docker would take as an option.
IMAGE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$"
CONTAINER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
MAX_TIMEOUT = 86400.0  # seconds: a day
MAX_BAKE = 7 * 86400.0  # seconds between waves: a week
MAX_SYSCTL = 2**31 - 1  # pages; the kernel's default is 16384


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# ---------------------------------------------------------------------------------------------
# Audit

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")


# ---------------------------------------------------------------------------------------------
# Inventory


# One per host of the inventory: a slotted pydantic dataclass, as PlannedHost below (a BaseModel's
# per-instance __dict__ and fields-set would be most of a 100k-host inventory's memory).
_LEAN = ConfigDict(extra="forbid")


@pydantic_dataclass(config=_LEAN, slots=True, frozen=True)
class InventoryHost:
    """A host with its variables merged the way Ansible merges them."""

    name: str
    groups: tuple[str, ...] = ()  # every group it belongs to, ancestors included, `all` excluded
    vars: dict[str, Any] = dataclass_field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host", self.name))

    @property
    def port(self) -> int:
        return int(self.vars.get("ansible_port", 22))

    @property
    def user(self) -> str | None:
        user = self.vars.get("ansible_user")
        return None if user is None else str(user)


class InventoryGroup(Model):
    name: str
    hosts: tuple[str, ...] = ()  # direct members only
    children: tuple[str, ...] = ()
    vars: dict[str, Any] = Field(default_factory=dict)


class Inventory(Model):
    sources: tuple[str, ...]
    hosts: dict[str, InventoryHost]  # in the order Ansible would list them
    groups: dict[str, InventoryGroup]
    readers: dict[str, str] = Field(default_factory=dict)  # source -> what read it


# ---------------------------------------------------------------------------------------------
# Plan inputs


# Printable ASCII but `"` and `\` (hosts hand it to curl as a quoted config line), no spaces.
ARTIFACT_URL_PATTERN = r"^https?://[!#-\[\]-~]+$"
ARTIFACT_URL_MAX = 2048


def url_credentials_problem(url: str) -> str | None:
    """Why `url` may not be a plan's artifact URL although well formed: a user (and password)
    before its host would be in the plan, on every host and in their logs."""
    if "@" in urlsplit(url).netloc:
        return "credentials (user@) in a URL go into the plan and onto every host: give one without"
    return None


def _without_credentials(url: str | None) -> str | None:
    problem = None if url is None else url_credentials_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


ArtifactUrl = Annotated[
    str | None,
    Field(max_length=ARTIFACT_URL_MAX, pattern=ARTIFACT_URL_PATTERN),
    AfterValidator(_without_credentials),
]

# How the new runc reached a host: its own copy (staged by this run already, or in its backup
# store), fetched from the plan's URL, or pushed by the controller (gzip, or as it is).
Delivery = Literal["staged", "backup", "url", "push-gzip", "push"]


# ---------------------------------------------------------------------------------------------
# The target: its advisories and provenance (plan/target.py, plan/provenance.py)


class VersionRange(Model):
    """[introduced, fixed) of upstream runc versions; None: open on that side."""

    introduced: str | None = None
    fixed: str | None = None


class TargetAdvisory(Model):
    """An advisory of the target's version, as the reviewer saw it."""

    id: str
    severity: Severity
    title: str
    fixed_in: tuple[str, ...]
    accepted: bool = False  # --accept-advisory: rolled out knowingly


class TargetRefusal(Model):
    """An advisory each host checks the staged file's version against before its swap, when
    the plan did not know the target's version."""

    id: str
    affected: list[VersionRange]  # lists, not tuples: Ansible passes them as task arguments
    commits: list[str] = Field(default_factory=list)


class TargetPolicy(Model):
    advisories_source: str  # which table decided, and its date
    refuse_severity: Severity | None = None  # --refuse-severity or runc_rollout_refuse_severity
    accepted: tuple[str, ...] = ()  # --accept-advisory
    advisories: tuple[TargetAdvisory, ...] = ()  # the target's, when its version is known
    refuse: list[TargetRefusal] = Field(default_factory=list)  # checked on each host, if not


class Provenance(Model):
    """What was checked of the artifact's origin before anything else."""

    sha256_file: str | None = None  # a sha256sum-format file, and the name of its line used
    sha256_name: str | None = None
    signature: str | None = None  # a detached OpenPGP signature of the artifact (gpgv)
    keyring: str | None = None
    fingerprint: str | None = None  # of the key that made the good signature


class Artifact(Model):
    """The runc binary to roll out."""

    path: str
    sha256: str = Field(pattern=SHA256_PATTERN)
    size: int
    version: str | None = None  # e.g. "1.1.5+ds1", from `runc --version` when it runs here
    commit: str | None = None
    version_output: str | None = None
    # Where hosts fetch it themselves (an internal mirror); the push is the fallback. Left out
    # of the JSON when unset, so plans made before it keep their plan_hash.
    url: ArtifactUrl = Field(default=None, exclude_if=lambda v: v is None)
    # Checked origin (--sha256-file, --signature); left out when unset, like `url`.
    provenance: Provenance | None = Field(default=None, exclude_if=lambda v: v is None)


TICKET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/#-]*$"  # JIRA-123, CHG0012345, org/repo#42
ONE_LINE_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # printable text on one line
COMMAND_MAX = 4096


def _unset(value: object) -> bool:
    return value is None or value == ()


def _command_field() -> Any:
    """An optional operator command on one line; left out of the JSON when unset."""
    return Field(default=None, pattern=ONE_LINE_PATTERN, max_length=COMMAND_MAX, exclude_if=_unset)


def _timeout_field(default: float) -> Any:
    """A timeout in seconds; left out of the JSON at its default."""
    return Field(
        default=default,
        gt=0,
        le=MAX_TIMEOUT,
        allow_inf_nan=False,
        exclude_if=lambda value: value == default,
    )


class WaveOptions(Model):
    """What the operator asked for; recorded in the plan so `apply` enforces exactly this."""

    waves: tuple[str, ...] = ("1", "10%", "50%", "100%")
    domain_key: str | None = None
    max_per_domain: str | None = None
    max_failures: str = "0"
    bake_seconds: float = Field(default=0.0, ge=0, le=MAX_BAKE, allow_inf_nan=False)
    pause_after: int | None = Field(default=None, ge=0, le=1_000_000)
    seed: int | None = None
    limit: str | None = None
    sysctl_target: int = Field(default=PIPE_USER_PAGES_SOFT_DEFAULT, ge=0, le=MAX_SYSCTL)
    verify_image: str | None = None  # else each host's runc_rollout_verify_image
    verify_command: str | None = None  # else each host's runc_rollout_verify_command, else true
    verify_timeout: float = Field(default=60.0, gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)
    verify_exec_container: str | None = None  # else runc_rollout_verify_exec_container
    probe: bool = True  # the incident probe after the swap; off: the fix is NOT proven
    probe_timeout: float = Field(default=20.0, gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)
    # Around the rollout: who and why, which hosts go first and last, the operator's own health
    # checks and gates, maintenance windows. Each is left out of the JSON when unset, so that a
    # plan made without them keeps its plan_hash.
    ticket: str | None = Field(
        default=None, pattern=TICKET_PATTERN, max_length=128, exclude_if=_unset
    )
    reason: str | None = Field(
        default=None, pattern=ONE_LINE_PATTERN, max_length=1000, exclude_if=_unset
    )
    canary: str | None = Field(default=None, max_length=4096, exclude_if=_unset)  # host pattern
    last: str | None = Field(default=None, max_length=4096, exclude_if=_unset)  # host pattern
    host_check: str | None = _command_field()  # else each host's runc_rollout_host_check
    host_check_timeout: float = _timeout_field(HOST_CHECK_TIMEOUT)
    pre_gate: str | None = _command_field()
    wave_gate: str | None = _command_field()
    gate_timeout: float = _timeout_field(GATE_TIMEOUT)
    windows: tuple[str, ...] = Field(default=(), max_length=64, exclude_if=_unset)
    # For every packaged runc (else each host's runc_rollout_package_policy, else the package
    # manager's default: divert for dpkg, hold for rpm).
    package_policy: PackagePolicy | None = Field(default=None, exclude_if=_unset)


# ---------------------------------------------------------------------------------------------
# Facts about a host, as far as the plan needs them


class BeforeRunc(Model):
    """Another runc file the host's runtimes execute (CRI's BinaryName, another Docker runtime)."""

    path: str
    sha256: str = Field(pattern=SHA256_PATTERN)
    version: str | None = None


PackageManager = Literal["dpkg", "rpm"]
# What the rollout does about the package owning a runc it swaps: a local diversion (dpkg), a
# hold (rpm: an `exclude=` in the dnf/yum configuration), or nothing (the package manager will
# put its own runc back at the next install, reinstall or upgrade of the package).
PackagePolicy = Literal["divert", "hold", "leave"]
PACKAGE_POLICIES: tuple[PackagePolicy, ...] = ("divert", "hold", "leave")
DEFAULT_PACKAGE_POLICY: dict[str, PackagePolicy] = {"dpkg": "divert", "rpm": "hold"}
# A package name as dpkg and rpm spell them (dpkg's multi-arch ":amd64" included): host data,
# checked before it goes anywhere near a command line or a review document.
PACKAGE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9+._:~-]{0,127}$"


class PackagedRunc(Model):
    """A runc file to swap that belongs to a package, and what the rollout does about that."""

    path: str  # the file swapped
    package: str = Field(pattern=PACKAGE_NAME_PATTERN)
    version: str | None = Field(default=None, pattern=ONE_LINE_PATTERN, max_length=256)
    manager: PackageManager
    policy: PackagePolicy


class HostBefore(Model):
    """A host's state when the plan was made; `apply` refuses a host that no longer matches."""

    runc_path: str
    runc_sha256: str = Field(pattern=SHA256_PATTERN)
    runc_version: str | None = None
    sysctl_runtime: int | None = None
    # The shim the runtime executes this runc through (NVIDIA's): never swapped itself.
    runc_via: str | None = Field(default=None, exclude_if=lambda v: v is None)
    also: list[BeforeRunc] = Field(default_factory=list, exclude_if=lambda v: not v)
    # The packages owning the runc files to swap, and the plan's policy for each; left out of
    # the JSON when empty, so that plans written before it keep their plan_hash.
    packages: list[PackagedRunc] = Field(default_factory=list, exclude_if=lambda v: not v)

    def package_of(self, path: str) -> PackagedRunc | None:
        return next((item for item in self.packages if item.path == path), None)


# A plan holds one PlannedHost and one SshTarget per host: at 100k hosts, BaseModel's per-instance
# __dict__ and fields-set would double the planner's memory, so these two are slotted pydantic
# dataclasses (validated and serialized the same way, unknown fields still rejected; not strict,
# since strict dataclasses refuse the plain data the planner validates in bulk).


@pydantic_dataclass(config=_LEAN, slots=True, frozen=True)
class SshTarget:
    """How to reach a host, taken from the inventory. Never holds a password."""

    address: str  # what ssh is given as the destination (ansible_host, else the name)
    port: int | None = None  # None: ssh_config's Port, else 22
    user: str | None = None  # None: ssh_config's User, else the local user
    private_key_file: str | None = None
    known_hosts_file: str | None = None
    become: bool = False
    # ansible_ssh_common_args + ansible_ssh_extra_args, as words. Left out of the JSON when
    # empty, so that a plan written before this field existed keeps its plan_hash.
    ssh_args: tuple[str, ...] = Field(default=(), exclude_if=lambda words: not words)
    # The inventory sets ansible_become_password for this becoming, non-root login: only *that*
    # is recorded (left out of the JSON when false); the value is read again when the operator
    # opts in (--become-password-from-inventory).
    inventory_become_password: bool = Field(default=False, exclude_if=lambda flag: not flag)


@dataclasses.dataclass(frozen=True)
class BecomePasswords:
    """Sudo passwords, in memory only: `--ask-become-pass`'s for every host, and a host's own
    from the inventory (`--become-password-from-inventory`), which wins, as in Ansible."""

    asked: str | None = dataclasses.field(default=None, repr=False)
    per_host: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)

    def of(self, host: str) -> str | None:
        return self.per_host.get(host, self.asked)


@dataclasses.dataclass(frozen=True)
class SshHop:
    """One SSH connection of a route, every setting resolved."""

    alias: str  # the name ssh_config's Host blocks matched
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()  # empty: ~/.ssh/id_* and the agent
    identities_only: bool = False
    known_hosts_files: tuple[str, ...] = ()  # empty: --known-hosts, else ~/.ssh/known_hosts
    proxy_command: str | None = None  # run on the controller; only ever on the first hop
    connect_timeout: float | None = None


@dataclasses.dataclass(frozen=True)
class SshRoute:
    """How to reach a host: jump hosts in order, then the host itself (`hops[-1]`)."""

    hops: tuple[SshHop, ...]

    @property
    def target(self) -> SshHop:
        return self.hops[-1]

    @property
    def jumps(self) -> tuple[SshHop, ...]:
        return self.hops[:-1]


# ---------------------------------------------------------------------------------------------
# The plan

HostAction = Literal["swap", "noop"]


# The probe uid every host once used by default: public, so a tenant could run as it (the lab
# numbers its hosts' own uids from it). Now each run draws its own (`probe.probe_uids`).
DEFAULT_PROBE_UID = 2_147_000_000
MAX_UID = 4_294_967_294  # (uid_t)-1 means "no uid"


class VerifySpec(Model):
    """How a host proves its new runc: a Docker container when it runs Docker and has an image,
    else a minimal OCI bundle run by runc itself. Both with no-new-privileges. Then the incident
    probe (`orchestrator/host/probe.py`), unless the plan turned it off, as `probe_uid` if the
    inventory forces one (`runc_rollout_probe_uid`), else as the first free uid of the run's."""

    image: str | None = Field(default=None, pattern=IMAGE_PATTERN)
    command: str = "true"  # split into words as a shell would, on the controller
    timeout_seconds: float = Field(default=60.0, gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)
    exec_container: str | None = Field(default=None, pattern=CONTAINER_PATTERN)
    probe: bool = True
    probe_uid: int | None = Field(default=None, ge=1, le=MAX_UID, exclude_if=lambda v: v is None)
    probe_timeout_seconds: float = Field(default=20.0, gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)
    # The operator's own health check (`sh -c`, on the host) after the tool's verification: a
    # non-zero exit fails the host. Left out of the JSON when unset (plans keep their hash).
    host_check: str | None = _command_field()
    host_check_timeout_seconds: float = _timeout_field(HOST_CHECK_TIMEOUT)

    @field_validator("command")
    @classmethod
    def _words(cls, command: str) -> str:
        try:
            words = shlex.split(command)
        except ValueError as error:
            raise ValueError(f"cannot be split into words: {error}") from None
        if not words:
            raise ValueError("is empty")
        return command


ProbeMethod = Literal["docker", "containerd", "bundle"]
ProbeOutcome = Literal["passed", "hung", "failed", "undecidable", "unavailable"]


class ProbeResult(Model):
    """What the incident probe found on one host: `passed` proves the runc does not hang under
    the incident's trigger; `hung` is the rc93 bug; the other three prove nothing."""

    outcome: ProbeOutcome
    method: ProbeMethod | None  # None: the probe ended before it said
    seconds: float | None = None
    detail: str = ""  # the hung runc init's wchan, or why the probe failed or could not decide
    holder: str | None = None  # the pipe holder's line: pipes held, limits, shrunk capacity

    def summary(self) -> str:
        took = "" if self.seconds is None else f"{self.seconds:g} s"
        where = f"probe ({self.method})" if self.method else "probe"
        if self.outcome == "passed":
            return f"{where}: passed in {took}"
        if self.outcome == "hung":
            return f"{where}: hung in {self.detail or 'an unknown place'} after {took}"
        if self.outcome == "failed":
            return f"{where}: failed after {took}: {self.detail}"
        if self.outcome == "undecidable":
            return f"{where}: cannot decide: {self.detail}"
        return f"{where}: cannot probe: {self.detail}"


@pydantic_dataclass(config=_LEAN, slots=True, frozen=True)
class PlannedHost:
    name: str
    domain: str
    ssh: SshTarget
    action: HostAction = "swap"
    reason: str | None = None  # why a host is noop
    verify: VerifySpec = dataclass_field(default_factory=VerifySpec)
    before: HostBefore | None = None


class HostTask(Model):
    """The arguments of the `runc_rollout` Ansible action (playbooks/action_plugins): one host's
    procedure. runc-rollout sets them from the plan; a standalone or AWX run from its vars."""

    procedure: Literal["upgrade", "rollback", "facts", "audit", "unstick"]
    run_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
    plan_id: str = "ansible-playbook"
    artifact: str | None = None  # on the controller; a relative path is the playbook dir's
    packed: str | None = None  # its gzip, for the push (else it goes as it is); likewise
    url: ArtifactUrl = None
    sha256: str | None = Field(default=None, pattern=SHA256_PATTERN)
    version: str | None = None
    sysctl_target: int = Field(default=PIPE_USER_PAGES_SOFT_DEFAULT, ge=0, le=MAX_SYSCTL)
    verify: VerifySpec = Field(default_factory=VerifySpec)
    before: HostBefore | None = None  # the plan's: a host that differs is drift
    events: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")  # the job's event nonce
    refuse: list[TargetRefusal] = Field(default_factory=list)  # the plan's, without a version
    # The diagnostics (`procedure` facts, audit, unstick), as `runc-rollout audit` and `unstick`
    # run them: `probe`, the incident probe of the installed runc as `verify` says (audit; its
    # probe uids are drawn from `run_id`); `drain` the stuck runc init, at most `max_bytes` and
    # `max_seconds` each (unstick; else only what would be done).
    probe: bool = False
    drain: bool = False
    max_bytes: int = Field(default=65536, ge=1)
    max_seconds: float = Field(default=10.0, ge=0.1)


class Wave(Model):
    index: int
    hosts: list[PlannedHost]
    max_failures: int  # more failed or unreachable hosts than this halts the rollout
    domains: dict[str, int]  # hosts of each failure domain in this wave
    note: str | None = None  # why the wave is smaller than asked or was added


class Skipped(Model):
    name: str
    reason: str


class Plan(Model):
    schema_version: Literal[1] = 1
    plan_id: str
    plan_hash: str = Field(pattern=SHA256_PATTERN)
    inventory: tuple[str, ...]
    # Which path read each source (native, or ansible-core for plugin configurations); left out
    # of the JSON when empty, so that plans written before it keep their plan_hash.
    inventory_readers: dict[str, str] = Field(default_factory=dict, exclude_if=lambda v: not v)
    artifact: Artifact
    options: WaveOptions
    waves: list[Wave]
    skipped: list[Skipped]  # held back by the operator (runc_rollout_skip)
    # Selected hosts whose facts could not be gathered at plan time (unreachable, or facts that
    # do not say what is needed): not in any wave. Left out of the JSON when empty, so that plans
    # written before it keep their plan_hash.
    unreachable: list[Skipped] = Field(default_factory=list, exclude_if=lambda v: not v)
    domains: dict[str, int]  # selected hosts per failure domain
    notes: list[str] = Field(default_factory=list)
    # The target's advisories and what they refuse; left out of plans made before it.
    target: TargetPolicy | None = Field(default=None, exclude_if=lambda v: v is None)

    def computed_hash(self) -> str:
        """sha256 of the canonical body: everything but `plan_id` and `plan_hash`, as compact
        JSON with fields in schema order (what `model_dump_json(exclude=...)` writes; stable
        for a schema version), hashed piece by piece."""
        digest = hashlib.sha256()
        for chunk in self.json_chunks(body=True):
            digest.update(chunk)
        return digest.hexdigest()

    def json_chunks(self, *, indent: int | None = None, body: bool = False) -> Iterator[bytes]:
        """The bytes `model_dump_json(indent=indent)` writes, in pieces of at most
        `HOSTS_PER_CHUNK` hosts: a 100k-host plan is ~70 MB of JSON, never held at once.
        `body`: without `plan_id` and `plan_hash` (what the hash covers)."""
        fields = list(Plan.model_fields)
        cut = fields.index("waves") + 1
        dropped = {"plan_id", "plan_hash"} if body else set()
        skeleton = self.model_copy(update={"waves": []})
        head = _dump(skeleton, indent, 0, include=set(fields[:cut]) - dropped)
        yield head[: head.rindex(b"[]")]  # ends with the key "waves"
        yield from _items([_wave_chunks(wave, indent) for wave in self.waves], indent, 1)
        yield b"," + _dump(skeleton, indent, 0, include=set(fields[cut:]))[1:]

    def sealed(self) -> Plan:
        """This plan with `plan_hash` (and the `plan_id` derived from it) set from its body."""
        digest = self.computed_hash()
        return self.model_copy(update={"plan_hash": digest, "plan_id": f"plan-{digest[:12]}"})

    @property
    def hosts(self) -> list[PlannedHost]:
        return [host for wave in self.waves for host in wave.hosts]

    def limited_to(self, names: Collection[str]) -> Plan:
        """This plan with only the hosts `names` in its waves (`apply --limit`): the waves keep
        their indices, budgets and options, a wave left without hosts is empty. The copy's body
        is no longer what `plan_hash` covers: approve the plan itself, never this copy."""
        keep = set(names)
        waves = []
        for wave in self.waves:
            hosts = [host for host in wave.hosts if host.name in keep]
            domains = dict(Counter(host.domain for host in hosts))
            waves.append(wave.model_copy(update={"hosts": hosts, "domains": domains}))
        return self.model_copy(update={"waves": waves})


HOSTS_PER_CHUNK = 2000  # hosts validated or serialized at a time (~1 MB of JSON)
PLANNED_HOSTS = TypeAdapter(list[PlannedHost])


def _dump(value: Any, indent: int | None, depth: int, **options: Any) -> bytes:
    """`value` as pydantic writes it, nested `depth` levels deep in an indented document."""
    serializer = (
        PLANNED_HOSTS.serializer if isinstance(value, list) else value.__pydantic_serializer__
    )
    text: bytes = serializer.to_json(value, indent=indent, **options)
    if indent and depth:
        text = text.replace(b"\n", b"\n" + b" " * (indent * depth))  # raw newlines: layout only
    return text


def _items(items: list[Iterator[bytes]], indent: int | None, depth: int) -> Iterator[bytes]:
    """A JSON array of already-serialized items, laid out as pydantic lays out arrays."""
    if not items:
        yield b"[]"
        return
    newline = b"\n" + b" " * (indent * depth) if indent else b""
    yield b"["
    for index, item in enumerate(items):
        yield (b"," if index else b"") + newline + (b" " * indent if indent else b"")
        yield from item
    yield newline + b"]"


def _wave_chunks(wave: Wave, indent: int | None) -> Iterator[bytes]:
    """One wave (an item of the plan's `waves`: 2 levels deep), its hosts in chunks."""
    fields = list(Wave.model_fields)
    cut = fields.index("hosts") + 1
    skeleton = wave.model_copy(update={"hosts": []})
    head = _dump(skeleton, indent, 2, include=set(fields[:cut]))
    yield head[: head.rindex(b"[]")]  # ends with the key "hosts"
    hosts = wave.hosts
    if not hosts:
        yield b"[]"
    for start in range(0, len(hosts), HOSTS_PER_CHUNK):
        text = _dump(hosts[start : start + HOSTS_PER_CHUNK], indent, 3)
        inner = text[1 : text.rindex(b"]")].rstrip(b" \n")
        yield (b"[" if start == 0 else b",") + inner
        if start + HOSTS_PER_CHUNK >= len(hosts):
            yield text[1 + len(inner) :]  # the array's end, as the last chunk lays it out
    yield b"," + _dump(skeleton, indent, 2, include=set(fields[cut:]))[1:]


class ApprovalPolicy(Model):
    """What `apply` and `resume` demand of a plan beyond its own hash:
    the plan_hash a merge request recorded, and signatures of reviewers in `allowed_signers`."""

    expect_hash: str | None = Field(default=None, pattern=SHA256_PATTERN)
    allowed_signers: str | None = None
    required_signatures: int = Field(default=0, ge=0)


class RunApproval(Model):
    """`runs/<run-id>/approval.json`: how the run's plan was approved when it was applied; a
    resume demands at least as much."""

    plan_hash: str = Field(pattern=SHA256_PATTERN)
    required_signatures: int = 0
    signers: list[str] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# A run: the journal's events and the state folded from them

HostStatus = Literal[
    "pending",  # not started
    "running",  # started; `phase` says how far it got
    "done",  # new runc verified, sysctl restored
    "noop",  # already at the target
    "failed",  # failed; rolled back if it had been swapped (`runc_sha256` says which runc it has)
    "unreachable",  # could not be reached; not changed by this run unless `phase` says otherwise
    "drift",  # no longer matched the plan's "before"; not touched
    "rolled_back",  # returned to its "before" by `rollback`
]
# How far a host's procedure got, in the order it gets there (`host.procedure.PHASE_ORDER`
# is this order: a phase is "at least" another when it comes later here).
HostPhase = Literal[
    "none", "locked", "staged", "backed_up", "swapped", "verified", "sysctl_restored", "finished"
]
# Swapped and not finished: the new runc is in place, and only the host knows how far it got.
UNSETTLED_PHASES: frozenset[HostPhase] = frozenset({"swapped", "verified", "sysctl_restored"})
RunStatus = Literal["running", "paused", "halted", "completed", "failed", "rolled_back"]


class Operator(Model):
    """Who applied or resumed a run: the local user and machine, and the reviewers whose
    signatures approved the plan (none when no signature was required)."""

    user: str
    host: str
    signers: list[str] = Field(default_factory=list)

    def describe(self) -> str:
        signed = f", approved by {', '.join(self.signers)}" if self.signers else ""
        return f"{self.user}@{self.host}{signed}"


GateName = Literal["pre-gate", "wave-gate"]


class Event(Model):
    """One line of a run's append-only event log."""

    seq: int
    time: float
    type: Literal[
        "run.limited",  # apply --limit: the run works on these hosts of the plan only
        "run.started",
        "run.resumed",
        "wave.started",
        "wave.job",  # with execution nodes: which hosts of the wave run where
        "wave.finished",
        "host.phase",
        "host.finished",
        "run.paused",
        "run.halted",
        "run.finished",
        "run.interrupted",
        "run.waiting",  # outside every maintenance window: the next wave waits for one
        "gate.passed",  # a pre-gate or wave gate said yes
        "gate.failed",  # ...or no: the run halts
        "notify.failed",  # a webhook could not be told (never fails the run)
    ]
    wave: int | None = None
    host: str | None = None
    status: HostStatus | RunStatus | None = None
    phase: HostPhase | None = None
    runc_sha256: str | None = None
    message: str | None = None
    probe: ProbeResult | None = None  # host.finished: the incident probe's result, if it ran
    delivery: Delivery | None = None  # host.finished: how the new runc reached the host
    sent_bytes: int | None = None  # host.finished: what the controller sent the host
    hosts: list[str] | None = None  # wave.job: its hosts; run.limited: the hosts of the run
    limit: str | None = None  # run.limited, run.started: the --limit pattern as given
    execution_node: str | None = None  # wave.job: the domain whose node runs it (None: here)
    operator: Operator | None = None  # run.started, run.resumed: who
    counts: dict[str, int] | None = None  # wave.finished: the wave's hosts by status
    budget: int | None = None  # wave.finished: its error budget
    gate: GateName | None = None  # gate.*: which gate
    until: float | None = None  # run.waiting: when the next window opens


class HostState(Model):
    wave: int
    status: HostStatus = "pending"
    phase: HostPhase = "none"
    runc_sha256: str | None = None  # the runc the host has now, as far as the journal knows
    message: str | None = None
    probe: ProbeResult | None = None  # the incident probe's last result on this host
    delivery: Delivery | None = None  # how the new runc last reached the host
    sent_bytes: int = 0  # what the controller sent the host, over every attempt of this run

    @property
    def needs_work(self) -> bool:
        """Not finished, or failed at a point where only the host knows its state (a resume
        runs it again and looks)."""
        return self.status not in FINAL_STATUSES or (
            self.status == "failed" and self.phase in UNSETTLED_PHASES
        )


FINAL_STATUSES: frozenset[HostStatus] = frozenset(
    {"done", "noop", "failed", "drift", "rolled_back"}
)


class RunState(Model):
    run_id: str
    plan_id: str
    status: RunStatus = "running"
    next_wave: int = 0
    paused_after: int | None = None  # the wave the run last paused after (pause is taken once)
    gates_passed: list[int] = Field(default_factory=list)  # waves whose wave gate said yes
    last_seq: int = 0
    hosts: dict[str, HostState]
    # apply --limit: the pattern; `hosts` then holds only the hosts of the plan it selected.
    limit: str | None = None


# ---------------------------------------------------------------------------------------------
# The host-side record: /var/lib/runc-rollout/record.json, what a host knows of its own rollout


class RecordedFile(Model):
    """A persistent sysctl file changed by the rollout; its old content is in the backup store."""

    path: str
    before_sha256: str = Field(pattern=SHA256_PATTERN)
    after_sha256: str | None = None


class RecordedPackage(Model):
    """What the rollout did about the package owning a runc it swapped: written to the host
    record before anything is changed, so that rollback needs nothing but the host."""

    path: str  # the runc file swapped
    package: str = Field(pattern=PACKAGE_NAME_PATTERN)
    version: str | None = None  # the package's version before the rollout
    manager: PackageManager
    policy: PackagePolicy
    # dpkg, divert: the name dpkg puts the package's file at (its copy of the file is put
    # there before the diversion is registered), and whether this run added the diversion
    # (False: one was there already, and rollback leaves it).
    diverted_to: str | None = Field(default=None, exclude_if=lambda v: v is None)
    diversion_added: bool = Field(default=False, exclude_if=lambda v: not v)
    # rpm, hold: the dnf/yum configuration file given an `exclude=` of the package, as it was
    # (kept in the file backup store) and as the hold left it.
    hold_file: str | None = Field(default=None, exclude_if=lambda v: v is None)
    hold_before_sha256: str | None = Field(default=None, exclude_if=lambda v: v is None)
    hold_after_sha256: str | None = Field(default=None, exclude_if=lambda v: v is None)


RecordOutcome = Literal["in_progress", "done", "failed", "rolled_back"]


class RecordedRunc(Model):
    """Another runc file a host's runtimes execute, swapped under the same record."""

    path: str
    before_sha256: str = Field(pattern=SHA256_PATTERN)
    before_version: str | None = None


class HostRecord(Model):
    """Written on the host before the swap and at every phase after it, so that rollback needs
    nothing but the host itself."""

    schema_version: Literal[1] = 1
    run_id: str
    plan_id: str
    phase: HostPhase
    outcome: RecordOutcome = "in_progress"
    runc_path: str
    before_sha256: str = Field(pattern=SHA256_PATTERN)
    before_version: str | None = None
    target_sha256: str = Field(pattern=SHA256_PATTERN)
    sysctl_before: int | None = None
    sysctl_target: int
    files: list[RecordedFile] = Field(default_factory=list)
    daemons: dict[str, tuple[int, int]] = Field(default_factory=dict)  # name -> (pid, start ticks)
    stuck_runc_init_before: int = 0
    updated: float
    # Every other runc file swapped with `runc_path` (to the same target), under this one record.
    also: list[RecordedRunc] = Field(default_factory=list, exclude_if=lambda v: not v)
    # The rolled-out runc's version, as it reported itself (left out of records without it).
    target_version: str | None = Field(default=None, exclude_if=lambda v: v is None)
    # What was done about each packaged runc swapped (left out when none was packaged).
    packages: list[RecordedPackage] = Field(default_factory=list, exclude_if=lambda v: not v)

    def package_of(self, path: str) -> RecordedPackage | None:
        return next((item for item in self.packages if item.path == path), None)

    @property
    def runcs(self) -> list[tuple[str, str]]:
        """(path, sha256 before) of every runc file this record swaps, `runc_path` first."""
        return [
            (self.runc_path, self.before_sha256),
            *((r.path, r.before_sha256) for r in self.also),
        ]


# ---------------------------------------------------------------------------------------------
# Host facts: what `facts` gathers (orchestrator.host.facts builds them)


class RuncBinary(Model):
    path: str  # as found: a PATH entry or a configured path
    real_path: str | None = None  # where `path` leads, when that is somewhere else (symlinks)
    executable: bool
    size: int | None
    sha256: str | None
    version: str | None
    commit: str | None
    version_output: str
    version_exit: int | None
    package: str | None = None  # the dpkg/rpm package owning the file
    package_version: str | None = None
    package_manager: PackageManager | None = None  # which one said so
    # dpkg: where a diversion of the file puts the package's copy, and whose diversion it is
    # ("LOCAL", or the diverting package's name); None: not diverted.
    diverted_to: str | None = None
    diverted_by: str | None = None
    # Whether the package manager's own checksum of the file matches (False: not the package's
    # content, e.g. swapped by hand; None: not known).
    package_intact: bool | None = None
    free_bytes: int | None  # available to root in the file system of its directory
    # Why it was not run (`--version`): someone other than root could have placed or changed it.
    untrusted: str | None = None
    # Found in the mount namespace of daemons that run in one of their own (`path` as they see
    # it, read through `seen_at`, /proc/PID/root/...), not in the facts session's namespace.
    mount_ns: str | None = None  # "mnt:[4026532176]"
    seen_at: str | None = None
    fs_type: str | None = None  # of the file there (`stat -f`): squashfs is a snap's
    writable_there: bool | None = None  # its folder, in that namespace (not a read-only mount)
    # Whether the same path in the session's namespace is that very file (device and inode, its
    # folder too), trusted: then a swap here is what the daemons execute, and stays so when their
    # namespace is rebuilt at their next start.
    same_here: bool | None = None
    # The mount point of the read-only file system its folder is on (Flatcar's and Fedora
    # CoreOS's /usr): it cannot be swapped in place. None: a writable one, or not known.
    read_only_mount: str | None = None

    @property
    def file(self) -> str:
        """The file to swap: the symlink's target rather than the symlink."""
        return self.real_path or self.path

    @property
    def target_problem(self) -> str | None:
        """Why this binary must not be swapped, if it must not: only a root-owned file that is
        not group or world writable and answers `--version` as runc is one."""
        if self.untrusted is not None:
            return f"{self.file} is not trusted ({self.untrusted})"
        if self.version is None:
            says = runtime_banner(self.version_output)
            return f"{self.file} is not runc (--version says {says!r})"
        if self.read_only_mount is not None:
            return (
                f"{self.file} is on a read-only file system ({self.read_only_mount} is mounted "
                "read-only, as /usr on Flatcar and Fedora CoreOS): it cannot be swapped in "
                "place; update the OS image to one that ships a fixed runc instead"
            )
        return self.namespace_problem

    @property
    def namespace_problem(self) -> str | None:
        """Why a runc the daemons execute in a mount namespace of their own is not swapped: only
        one that is the very file this session's namespace has at the same path (so the swap,
        its backup and a rollback happen here, where they last) is."""
        if self.mount_ns is None or self.same_here:
            return None
        where = f"{self.file} in the daemons' mount namespace {self.mount_ns} ({self.seen_at})"
        if self.fs_type == "squashfs":
            return (
                f"{where} is on a read-only squashfs (a snap's): upgrade the snap that ships it "
                "(snap refresh), not the file"
            )
        if self.writable_there is False:
            return f"{where} is on a read-only mount there and is not this session's {self.file}"
        return (
            f"{where} is not the file this session sees at {self.file}: a swap made only in "
            "that namespace would not outlive the daemons' next start, nor could it be rolled back"
        )


class ExecutedRunc(Model):
    """A runc file a host's runtimes execute besides `HostFacts.runc`, and which runtime does."""

    source: str  # "containerd CRI BinaryName", "Docker runtime 'old'"
    runc: RuncBinary


class Daemon(Model):
    pid: int
    start_ticks: int  # /proc/PID/stat field 22: unchanged means not restarted
    start_time: float  # seconds since the epoch (boot time + start_ticks / CLK_TCK)
    exe: str | None
    version: str | None
    path: str | None  # its PATH environment variable
    # Set when it runs in a mount namespace other than the facts session's (a snap, a systemd
    # unit with ProtectSystem= or PrivateTmp=): that namespace, and where its files are seen.
    mount_ns: str | None = None  # "mnt:[4026532176]"
    root: str | None = None  # "/proc/PID/root"


class SysctlSetting(Model):
    file: str
    line: int
    value: str
    real_file: str | None = None  # where `file` leads, when it is a symlink
    applied: bool = True  # False: a same-named file in a directory that takes precedence hides it


class RuncInit(Model):
    pid: int
    ppid: int
    state: str  # /proc/PID/stat field 3
    wchan: str
    cmdline: str
    start_time: float | None
    stuck: bool  # blocked writing a pipe: the incident's signature, to be confirmed by `unstick`


class HostFacts(Model):
    host: str
    gathered_at: int  # the host's clock, seconds since the epoch
    boot_time: int
    arch: str
    kernel: str
    uid: int
    runtime_path: list[str]
    path_source: Literal["dockerd", "containerd", "default"]
    runc: RuncBinary | None  # the runc the container runtime executes
    runc_source: str  # how that one was chosen
    runc_via: str | None = None  # the shim (NVIDIA's) that executes `runc`: left as it is
    runc_unused: str | None = None  # why the runtimes execute no runc (a default such as crun)
    also_runc: list[ExecutedRunc] = Field(default_factory=list)  # other runc files executed
    shadowed: list[RuncBinary]  # every other runc on the runtime's PATH
    docker_default_runtime: str | None
    docker_runtimes: dict[str, str]  # name -> path, from daemon.json and dockerd's flags
    containerd_default_runtime: str | None
    containerd_runtimes: dict[str, str]  # CRI runtime name -> BinaryName
    dockerd: Daemon | None
    containerd: Daemon | None
    sysctl_runtime: int | None
    sysctl_settings: list[SysctlSetting]  # in the order sysctl applies them, hidden ones last
    sysctl_persistent: SysctlSetting | None  # the setting that wins at boot
    runc_init: list[RuncInit]
    record_json: str | None  # /var/lib/runc-rollout/record.json, as found
    warnings: list[str]

    @property
    def stuck(self) -> list[RuncInit]:
        return [process for process in self.runc_init if process.stuck]


# ---------------------------------------------------------------------------------------------
# The script


ErrorKind = Literal[
    "unreachable", "host_key", "auth", "timeout", "connection_lost", "facts", "error"
]


class HostError(Model):
    kind: ErrorKind
    message: str


class FactsReport(Model):
    schema_version: Literal[1] = 1
    hosts: dict[str, HostFacts]
    errors: dict[str, HostError]
