"""Build a rollout plan from an inventory, an artifact and wave options. Pure: no I/O."""

from __future__ import annotations

import functools
import random
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from orchestrator.choices import HOST_CHECK_TIMEOUT
from orchestrator.errors import BadInput, PatternError
from orchestrator.inventory.become import OPT_IN, sets_become_password
from orchestrator.inventory.patterns import select_hosts
from orchestrator.models import (
    DEFAULT_PACKAGE_POLICY,
    HOSTS_PER_CHUNK,
    MAX_UID,
    PACKAGE_POLICIES,
    PLANNED_HOSTS,
    Artifact,
    HostBefore,
    Inventory,
    InventoryHost,
    Plan,
    PlannedHost,
    Skipped,
    SshTarget,
    TargetPolicy,
    VerifySpec,
    Wave,
    WaveOptions,
)
from orchestrator.plan.waves import Size, Tier, parse_size, parse_sizes, place_in_tiers
from orchestrator.plan.windows import parse_windows
from orchestrator.util.destinations import plain_host, plain_user
from orchestrator.util.memory import gc_paused
from orchestrator.util.textsafe import terminal_safe

SKIP_VAR = "runc_rollout_skip"
NO_DOMAIN_KEY = "all"
_TRUE_WORDS = {"1", "true", "yes", "on", "y", "t"}


def build_plan(
    inventory: Inventory,
    artifact: Artifact,
    options: WaveOptions,
    before: Mapping[str, HostBefore] | None = None,
    unreachable: Mapping[str, str] | None = None,
    target: TargetPolicy | None = None,
    held: Mapping[str, str] | None = None,
) -> Plan:
    """The plan for `options.limit` of `inventory`.

    `before` holds facts gathered from hosts; `unreachable` maps hosts whose facts could not be
    gathered to the reason: they are in no wave, and listed apart from the hosts held back.
    `target`: the target's advisories and refusals (`plan.target`). `held`: hosts whose facts
    say they are not to be swapped (their default runtime is not runc), and why: held back.
    """
    with gc_paused():
        return _build_plan(
            inventory, artifact, options, before or {}, unreachable or {}, target, held or {}
        )


def _build_plan(
    inventory: Inventory,
    artifact: Artifact,
    options: WaveOptions,
    facts: Mapping[str, HostBefore],
    unreachable: Mapping[str, str],
    target: TargetPolicy | None,
    held: Mapping[str, str],
) -> Plan:
    sizes = parse_sizes(options.waves, option="--waves")
    cap = (
        parse_size(options.max_per_domain, option="--max-per-domain")
        if (options.max_per_domain)
        else None
    )
    if cap is not None and cap.value == 0:
        raise BadInput("--max-per-domain: must allow at least one host per domain")
    failures = parse_size(options.max_failures, option="--max-failures")
    if options.pause_after is not None and options.pause_after < 0:
        raise BadInput("--pause-after: must be a wave index, 0 or more")
    if options.bake_seconds < 0:
        raise BadInput("--bake: must be 0 seconds or more")

    check_domain_key("--domain-key", options.domain_key)
    parse_windows(options.windows)  # refused here, not when the first wave would start
    selected = [inventory.hosts[name] for name in select_hosts(inventory, options.limit)]
    held_by_operator: list[InventoryHost] = []
    not_held: list[InventoryHost] = []
    for host in selected:  # (asked once per host: at 100k hosts each pass is noticeable)
        (held_by_operator if held_back(host) else not_held).append(host)
    skipped_by_operator = [
        Skipped(name=host.name, reason=str(host.vars[SKIP_VAR])) for host in held_by_operator
    ]
    skipped_by_facts = [
        Skipped(name=host.name, reason=held[host.name]) for host in not_held if host.name in held
    ]
    skipped = skipped_by_operator + skipped_by_facts
    not_gathered = [
        Skipped(name=host.name, reason=unreachable[host.name])
        for host in not_held
        if host.name in unreachable
    ]
    left_out = {item.name for item in skipped + not_gathered}
    candidates = [host for host in selected if host.name not in left_out]
    if not candidates:
        raise BadInput(
            nothing_to_plan(
                len(selected),
                len(skipped_by_operator),
                len(skipped_by_facts),
                len(not_gathered),
                skipped_by_facts,
            )
        )

    check_domain_key_used(options.domain_key, candidates)
    by_domain = _group_by_domain(candidates, options.domain_key)
    if options.seed is not None:
        rng = random.Random(options.seed)
        for hosts in by_domain.values():
            rng.shuffle(hosts)
    tiers = _tiers(inventory, candidates, by_domain, options)
    drafts = place_in_tiers(tiers, sizes, cap)
    waves = [
        Wave.model_validate(
            {
                "index": index,
                "hosts": _planned_hosts(d.items, artifact, options, facts),
                "max_failures": failures.of(len(d.items), at_least_one=False),
                "domains": d.domains,
                "note": d.note,
            }
        )
        for index, d in enumerate(drafts)
    ]
    if options.pause_after is not None and options.pause_after >= len(waves):
        raise BadInput(
            f"--pause-after: wave {options.pause_after} does not exist (waves 0-{len(waves) - 1})"
        )
    domains = {domain: len(hosts) for domain, hosts in by_domain.items()}
    plan = Plan.model_validate(
        {
            "plan_id": "pending",
            "plan_hash": "0" * 64,
            "inventory": inventory.sources,
            "inventory_readers": inventory.readers,
            "artifact": artifact,
            "options": options,
            "waves": waves,
            "skipped": skipped,
            "unreachable": not_gathered,
            "domains": domains,
            "notes": _notes(options, domains, cap)
            + _placement_notes(options, tiers, waves)
            + _password_notes(waves),
            "target": target,
        }
    )
    return plan.sealed()


_Tier = Tier[tuple[InventoryHost, str]]


def _tiers(
    inventory: Inventory,
    candidates: list[InventoryHost],
    by_domain: dict[str, list[tuple[InventoryHost, str]]],
    options: WaveOptions,
) -> list[_Tier]:
    """The hosts `--canary` matches first, those `--last` matches at the end, the rest between;
    each tier keeps `by_domain`'s grouping and order. Tiers with no hosts are left out."""
    canary = _matching(inventory, candidates, "--canary", options.canary)
    last = _matching(inventory, candidates, "--last", options.last)
    both = [host.name for host in candidates if host.name in canary and host.name in last]
    if both:
        raise BadInput(f"--canary and --last: both match {', '.join(both[:5])}")
    if not canary and not last:
        return [Tier(None, by_domain)]
    labels = ("the --canary hosts", "the hosts before the --last ones", "the --last hosts")
    ranked: list[dict[str, list[tuple[InventoryHost, str]]]] = [{}, {}, {}]
    for domain, items in by_domain.items():
        for item in items:
            rank = 0 if item[0].name in canary else 2 if item[0].name in last else 1
            ranked[rank].setdefault(domain, []).append(item)
    tiers = [Tier(label, hosts) for label, hosts in zip(labels, ranked, strict=True) if hosts]
    return tiers


def _matching(
    inventory: Inventory, candidates: list[InventoryHost], option: str, pattern: str | None
) -> set[str]:
    """The hosts to upgrade that `pattern` (an Ansible host pattern) selects."""
    if pattern is None:
        return set()
    try:
        selected = set(select_hosts(inventory, pattern))
    except PatternError as error:
        raise BadInput(f"{option}: {error}") from None
    matched = {host.name for host in candidates if host.name in selected}
    if not matched:
        raise BadInput(f"{option}: {pattern!r} matches none of the hosts to upgrade")
    return matched


def _placement_notes(options: WaveOptions, tiers: list[_Tier], waves: list[Wave]) -> list[str]:
    """Where `--canary` and `--last` put their hosts, for the reviewer."""
    notes = []
    wave_of = {host.name: wave.index for wave in waves for host in wave.hosts}
    for option, pattern, label in (
        ("--canary", options.canary, "the --canary hosts"),
        ("--last", options.last, "the --last hosts"),
    ):
        tier = next((tier for tier in tiers if tier.label == label), None)
        if pattern is None or tier is None:
            continue
        names = [host.name for hosts in tier.by_domain.values() for host, _ in hosts]
        indexes = sorted({wave_of[name] for name in names})
        where = f"wave {indexes[0]}" if len(indexes) == 1 else f"waves {indexes[0]}-{indexes[-1]}"
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        count = f"{len(names)} host" + ("" if len(names) == 1 else "s")
        notes.append(f"{option} {pattern!r}: {count} in {where} ({shown})")
    return notes


def _password_notes(waves: list[Wave]) -> list[str]:
    """Which hosts' inventories give a become password (never the password itself)."""
    names = [
        host.name for wave in waves for host in wave.hosts if host.ssh.inventory_become_password
    ]
    if not names:
        return []
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return [
        f"{len(names)} hosts ({shown}) set ansible_become_password in the inventory: it is read "
        f"again and used only with {OPT_IN}"
    ]


def nothing_to_plan(
    selected: int, held: int, by_facts: int, unreachable: int, why: Iterable[Skipped] = ()
) -> str:
    """Why no selected host is left to plan, naming each cause, and (`why`) what the facts of
    the first few hosts held back by them say."""
    causes = [f"{held} held back by {SKIP_VAR}"] if held else []
    causes += [f"{by_facts} held back for what their facts say"] if by_facts else []
    causes += [f"{unreachable} unreachable at plan time (--gather)"] if unreachable else []
    text = f"nothing to plan: of {selected} selected hosts, " + " and ".join(causes)
    said = [f"{item.name}: {terminal_safe(item.reason)}" for item in list(why)[:3]]
    return text + "".join(f"\n  {line}" for line in said)


def held_back(host: InventoryHost) -> bool:
    return host.vars.get(SKIP_VAR) not in (None, False, "")


def hosts_to_plan(inventory: Inventory, limit: str | None) -> dict[str, SshTarget]:
    """The selected hosts that are not held back, with how to reach them (for gathering facts)."""
    return {
        name: ssh_target(inventory.hosts[name])
        for name in select_hosts(inventory, limit)
        if not held_back(inventory.hosts[name])
    }


# Variables that hold credentials (ansible_password, ansible_become_pass, *_token...): their
# values must never be copied into a plan or a report, e.g. as a failure domain's name.
SECRET_VARIABLE = re.compile(r"pass|secret|token|vault|private_key|credential", re.IGNORECASE)


def check_domain_key(option: str, key: str | None) -> None:
    if key is not None and SECRET_VARIABLE.search(key):
        raise BadInput(f"{option}: {key!r} names a secret; its values would be written out")


def check_domain_key_used(key: str | None, hosts: Iterable[InventoryHost]) -> None:
    """A `--domain-key` that no selected host carries is a typo, not one domain of all hosts."""
    selected = list(hosts)
    if (
        key is None
        or not selected
        or any(host.vars.get(key) not in (None, "") for host in selected)
    ):
        return
    raise BadInput(
        f"--domain-key {key}: none of the {len(selected)} selected hosts has a {key!r} variable"
    )


def domain_of(host: InventoryHost, domain_key: str | None) -> str:
    if domain_key is None:
        return NO_DOMAIN_KEY
    value = host.vars.get(domain_key)
    return f"(no {domain_key})" if value is None or value == "" else str(value)


def _group_by_domain(
    hosts: list[InventoryHost], domain_key: str | None
) -> dict[str, list[tuple[InventoryHost, str]]]:
    groups: dict[str, list[tuple[InventoryHost, str]]] = {}
    for host in hosts:
        domain = domain_of(host, domain_key)
        groups.setdefault(domain, []).append((host, domain))
    return groups


def _planned_hosts(
    items: list[tuple[InventoryHost, str]],
    artifact: Artifact,
    options: WaveOptions,
    facts: Mapping[str, HostBefore],
) -> list[PlannedHost]:
    """One wave's hosts, built as plain data and validated by pydantic-core a chunk at a time:
    at 100k hosts, a model constructor call per host would take most of the planner's time,
    and the plain data of a whole wave at once most of its memory."""
    settings: dict[tuple[tuple[str, Any], ...], _Settings] = {}
    hosts: list[PlannedHost] = []
    for start in range(0, len(items), HOSTS_PER_CHUNK):
        chunk = items[start : start + HOSTS_PER_CHUNK]
        data = [
            _planned(
                host,
                domain,
                artifact,
                facts.get(host.name),
                _settings(host, options, settings),
                options,
            )
            for host, domain in chunk
        ]
        hosts += PLANNED_HOSTS.validate_python(data)
    return hosts


# A host's connection settings as data for SshTarget (all but its address) and its
# verification: both come from its `ansible_*` and `runc_rollout_*` variables alone.
_Settings = tuple[dict[str, Any], VerifySpec]
_SETTINGS_KEPT = 4096
_SETTINGS_PREFIXES = ("ansible_", "runc_rollout_")
_ADDRESS_VARS = frozenset({"ansible_host", "ansible_ssh_host"})


def _settings(
    host: InventoryHost, options: WaveOptions, seen: dict[tuple[tuple[str, Any], ...], _Settings]
) -> tuple[dict[str, Any], VerifySpec]:
    """The host's SSH fields and verification. Worked out once for hosts whose variables that
    decide them, the address aside, are equal: a real fleet gives every host its own address
    (and rack, serial...), but its hosts share a few ways in."""
    key = tuple(
        item
        for item in host.vars.items()
        if item[0].startswith(_SETTINGS_PREFIXES) and item[0] not in _ADDRESS_VARS
    )
    try:
        found, shared = seen.get(key), True
    except TypeError:  # an unhashable value (a list, a mapping): worked out for this host alone
        found, shared = None, False
    if found is None:
        fields = ssh_fields(host)
        del fields["address"]
        found = fields, host_verify_spec(host, options)
        if shared and len(seen) < _SETTINGS_KEPT:
            seen[key] = found
    fields, verify = found
    return {**fields, "address": host_address(host)}, verify


def _planned(
    host: InventoryHost,
    domain: str,
    artifact: Artifact,
    before: HostBefore | None,
    settings: tuple[dict[str, Any], VerifySpec],
    options: WaveOptions,
) -> dict[str, Any]:
    """One host's `PlannedHost`, as data for `Plan.model_validate`."""
    ssh, verify = settings
    if before is not None and before.packages:
        before = with_package_policy(host, options, before)
    at_target = before is not None and all(
        sha == artifact.sha256 for sha in (before.runc_sha256, *(r.sha256 for r in before.also))
    )
    return {
        "name": host.name,
        "domain": domain,
        "action": "noop" if at_target else "swap",
        "reason": f"{before.runc_path} already has the target sha256"
        if at_target and before
        else None,
        "ssh": ssh,
        "verify": verify,
        "before": before,
    }


PACKAGE_POLICY_VAR = "runc_rollout_package_policy"


def with_package_policy(
    host: InventoryHost, options: WaveOptions, before: HostBefore
) -> HostBefore:
    """`before` with the policy for each packaged runc: `--package-policy`, else the host's
    runc_rollout_package_policy, else the package manager's default. A policy the package
    manager cannot do (rpm has no diversion; a hold is for rpm) is refused, naming where it
    came from."""
    value: object = options.package_policy
    source = "--package-policy"
    if value is None and host.vars.get(PACKAGE_POLICY_VAR) is not None:
        value, source = host.vars[PACKAGE_POLICY_VAR], f"host {host.name}: {PACKAGE_POLICY_VAR}"
    if value is None:
        return before
    if value not in PACKAGE_POLICIES:
        raise BadInput(f"{source}: {str(value)[:80]!r} is not one of {', '.join(PACKAGE_POLICIES)}")
    policy = PACKAGE_POLICIES[PACKAGE_POLICIES.index(value)]
    packages = []
    for item in before.packages:
        if policy != "leave" and policy != DEFAULT_PACKAGE_POLICY[item.manager]:
            raise BadInput(
                f"{source}: {policy} is not for {item.manager} (host {host.name}, {item.path} "
                f"of {item.package}): {item.manager} takes "
                f"{DEFAULT_PACKAGE_POLICY[item.manager]} or leave"
            )
        packages.append(item.model_copy(update={"policy": policy}))
    return before.model_copy(update={"packages": packages})


_VERIFY_SOURCES = {
    "image": "--verify-image or runc_rollout_verify_image",
    "command": "--verify-command or runc_rollout_verify_command",
    "timeout_seconds": "--verify-timeout",
    "exec_container": "--verify-exec-container or runc_rollout_verify_exec_container",
    "probe_timeout_seconds": "--probe-timeout",
    "host_check": "--host-check or runc_rollout_host_check",
    "host_check_timeout_seconds": "--host-check-timeout",
}
ProbeSettings = tuple[bool, int | None, float]  # on, the uid forced (None: the run's), timeout
HostCheck = tuple[object, float]  # the command (None: none), its timeout


def host_verify_spec(host: InventoryHost, options: WaveOptions) -> VerifySpec:
    """How one host proves its new runc: the options first, then its own variables."""
    return verify_spec(
        options.verify_image or host.vars.get("runc_rollout_verify_image"),
        options.verify_command or host.vars.get("runc_rollout_verify_command") or "true",
        options.verify_timeout,
        options.verify_exec_container or host.vars.get("runc_rollout_verify_exec_container"),
        _probe_settings(host, options),
        (
            options.host_check or host.vars.get("runc_rollout_host_check"),
            options.host_check_timeout,
        ),
    )


def _probe_settings(host: InventoryHost, options: WaveOptions) -> ProbeSettings:
    """The incident probe for one host: `--no-probe` or `runc_rollout_probe: false` turn it off;
    `runc_rollout_probe_uid` forces its uid (hosts that share a kernel need different ones);
    else each run draws its own."""
    enabled = options.probe and _truthy(host.vars.get("runc_rollout_probe", True))
    uid_value = host.vars.get("runc_rollout_probe_uid")
    uid = None if uid_value is None else _whole_number(uid_value, 1, MAX_UID)
    if uid_value is not None and uid is None:
        raise BadInput(f"host {host.name}: runc_rollout_probe_uid {uid_value!r} is not a uid")
    return enabled, uid, options.probe_timeout


@functools.lru_cache(maxsize=256)
def verify_spec(
    image: object,
    command: object,
    timeout: float,
    exec_container: object,
    probe: ProbeSettings,
    host_check: HostCheck = (None, HOST_CHECK_TIMEOUT),
) -> VerifySpec:
    """Shared between hosts: the image and command are usually group variables."""
    enabled, uid, probe_timeout = probe
    check, check_timeout = host_check
    try:
        return VerifySpec(
            image=None if image in (None, "") else str(image),
            command=str(command),
            timeout_seconds=timeout,
            exec_container=None if exec_container is None else str(exec_container),
            probe=enabled,
            probe_uid=uid,
            probe_timeout_seconds=probe_timeout,
            host_check=None if check in (None, "") else str(check),
            host_check_timeout_seconds=check_timeout,
        )
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "verify"
        value = repr(first["input"])[:80]
        raise BadInput(f"{_VERIFY_SOURCES.get(field, field)}: {value}: {first['msg']}") from None


# ansible_connection values that mean SSH (None: unset). `local` and the others (docker, winrm,
# kubectl...) would otherwise be ignored without a word and the host reached over SSH anyway.
SSH_CONNECTIONS = frozenset({None, "ssh", "paramiko", "paramiko_ssh", "smart"})


def ssh_target(host: InventoryHost) -> SshTarget:
    return SshTarget(**ssh_fields(host))


def ssh_fields(host: InventoryHost) -> dict[str, Any]:
    """Connection settings from Ansible's variables; passwords are never copied."""
    get = host.vars.get
    connection = get("ansible_connection")
    if connection not in SSH_CONNECTIONS:
        raise BadInput(
            f"host {host.name}: ansible_connection={connection}: runc-rollout reaches hosts over "
            "SSH only (ssh, paramiko, smart); for the controller itself, give its SSH address"
        )
    port_value = get("ansible_port") or get("ansible_ssh_port")
    port = None if port_value is None else _port(port_value)
    if port_value is not None and port is None:
        raise BadInput(f"host {host.name}: ansible_port {port_value!r} is not a TCP port")
    key = get("ansible_ssh_private_key_file") or get("ansible_private_key_file")
    user = get("ansible_user") or get("ansible_ssh_user")
    common, extra = str(get("ansible_ssh_common_args", "")), str(get("ansible_ssh_extra_args", ""))
    try:
        known_hosts = known_hosts_from_args(common, extra)
        words = _words(common, extra)
    except ValueError as error:  # shlex: unbalanced quotes, a lone backslash
        raise BadInput(
            f"host {host.name}: ansible_ssh_common_args or ansible_ssh_extra_args cannot be "
            f"split into words as ssh would ({error})"
        ) from None
    become = _truthy(get("ansible_become", False))
    address = host_address(host)
    if user is not None and not plain_user(str(user)):
        raise BadInput(f"host {host.name}: ansible_user {str(user)!r} is not a plain user name")
    return {
        "address": address,
        "port": port,
        "user": None if user is None else str(user),
        "private_key_file": None if key is None else str(key),
        "known_hosts_file": known_hosts,
        "become": become,
        "ssh_args": words,
        "inventory_become_password": become
        and str(user) != "root"
        and sets_become_password(host.vars),
    }


def host_address(host: InventoryHost) -> str:
    """What ssh is given as the host: its `ansible_host`, else its name."""
    get = host.vars.get
    address = str(get("ansible_host") or get("ansible_ssh_host") or host.name)
    if not plain_host(address):
        raise BadInput(
            f"host {host.name}: ansible_host {address!r} is not a plain host name or IP address"
        )
    return address


@functools.lru_cache(maxsize=1024)
def _words(*args: str) -> tuple[str, ...]:
    """ssh's arguments as words, as Ansible splits them (cached: usually group variables)."""
    return tuple(word for text in args for word in shlex.split(text))


@functools.lru_cache(maxsize=64)
def _port(value: object) -> int | None:
    return _whole_number(value, 1, 65535)


def _whole_number(value: object, low: int, high: int) -> int | None:
    text = str(value)
    return int(text) if text.isdigit() and low <= int(text) <= high else None


@functools.lru_cache(maxsize=1024)
def known_hosts_from_args(*args: str) -> str | None:
    """The `UserKnownHostsFile` given in ssh arguments, if any (the last one wins, as in ssh).

    Cached: these arguments are nearly always group variables, the same for thousands of hosts.
    """
    if not any("knownhostsfile" in text.lower() for text in args):
        return None
    found = None
    for text in args:
        words = shlex.split(text)
        for index, word in enumerate(words):
            option = word
            if word == "-o" and index + 1 < len(words):
                option = words[index + 1]
            elif word.startswith("-o"):
                option = word[2:]
            name, sep, value = option.partition("=")
            if sep and name.strip().lower() == "userknownhostsfile":
                found = value.strip()
    return found


@functools.lru_cache(maxsize=64)
def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in _TRUE_WORDS


def _notes(options: WaveOptions, domains: dict[str, int], cap: Size | None) -> list[str]:
    notes = []
    key = options.domain_key
    if key is not None and f"(no {key})" in domains:
        notes.append(
            f"{domains[f'(no {key})']} hosts have no {key!r} variable and form the domain "
            f"'(no {key})' together"
        )
    if key is None:
        notes.append("no --domain-key: every host is in the one domain 'all'")
    if cap is not None:
        notes.append(f"at most {cap.text} of each domain's hosts per wave (--max-per-domain)")
    return notes
