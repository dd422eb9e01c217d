"""Read Ansible inventories exactly as ansible-core reads them (checked against 2.19).

A source is an INI file, a YAML or JSON file, a directory of inventory files or an executable
inventory script, with `group_vars/` and `host_vars/` beside it. The result is what
`ansible-inventory --list` shows: the same hosts in the same order, the same groups and members,
each host's variables merged with Ansible's precedence. Ansible itself is not imported: it takes a
second to load and its objects are far heavier than a 100k-host fleet can afford.

Where Ansible only warns (an unparsable file, a failing script), this module raises
`InventoryError`: a rollout must not silently run against part of a fleet.
"""

from __future__ import annotations

import ast
import copy
import ipaddress
import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

from orchestrator.errors import BadInput, InventoryError
from orchestrator.models import Inventory, InventoryGroup, InventoryHost
from orchestrator.util.fsutil import MiB, read_input
from orchestrator.util.memory import gc_paused

SCRIPT_TIMEOUT_SECONDS = 120.0

# Which files of an inventory directory are read (Ansible's INVENTORY_IGNORE_EXTS defaults).
_IGNORED_NAMES = frozenset({"group_vars", "host_vars", "vars_plugins"})
_IGNORED_SUFFIXES = (
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
)  # fmt: skip
_YAML_SUFFIXES = frozenset({".yml", ".yaml", ".json"})
_VARS_SUFFIXES = (".yml", ".yaml", ".json")  # in the order Ansible tries them, after no suffix
INVENTORY_LIMIT = 512 * MiB  # an INI inventory of 100k hosts is ~5 MB

_INI_STATES = frozenset({"hosts", "children", "vars"})
_INI_CONSTANTS: dict[str, Any] = {"True": True, "False": False, "None": None}
# A value of these characters that starts with a letter or "_" is never a Python literal (bar
# the three constants above), so ast.literal_eval would hand it back unchanged.
_PLAIN_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")

# Host address grammar of ansible.parsing.utils.addresses, used only to split off a `:port`.
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_LABEL = rf"(?:\w|{_ALNUM_RANGE})(?:[\w-]|{_ALNUM_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.IGNORECASE)
_HEX_RANGE = re.compile(r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]", re.IGNORECASE)
_BRACKETED_HOSTPORT = re.compile(r"\[(.+)\]:([0-9]+)")
_HOSTPORT = re.compile(r"((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)")


class _Invalid(Exception):
    """A problem in one inventory file; the caller adds the file name and line."""


@dataclass(frozen=True, slots=True)
class EncryptedValue:
    """A `!vault` value: kept as ciphertext, since this tool never needs vaulted secrets."""

    ciphertext: str


# ---------------------------------------------------------------------------------------------
# Public entry point


def load_inventory(sources: Sequence[Path]) -> Inventory:
    """Every host and group of `sources`, merged in order, as Ansible would see them."""
    if not sources:
        raise InventoryError("no inventory source given")
    with gc_paused():
        return _load(sources)


NATIVE = "native"
ANSIBLE_CORE = "ansible-core (ansible-inventory)"


class _PluginConfig(Exception):
    """A source is an inventory plugin's configuration: only ansible-core can read it."""


def _load(sources: Sequence[Path]) -> Inventory:
    try:
        inventory = _load_natively(sources)
    except _PluginConfig:
        # Plugins such as `constructed` work on the hosts of the sources before them, so every
        # source goes through ansible-core together.
        inventory = _load_through_ansible(sources)
        reader = ANSIBLE_CORE
    else:
        reader = NATIVE
    return inventory.model_copy(update={"readers": dict.fromkeys(inventory.sources, reader)})


def _load_through_ansible(sources: Sequence[Path]) -> Inventory:
    """`ansible-inventory --list --export` over `sources`, read like a script's output."""
    program = shutil.which("ansible-inventory", path=f"{Path(sys.executable).parent}:{os.defpath}")
    if program is None:
        raise InventoryError(f"{sources[0]}: an inventory plugin needs ansible-inventory")
    argv = [program, *(arg for source in sources for arg in ("-i", str(source)))]
    environment = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    try:
        done = subprocess.run(
            [*argv, "--list", "--export"],
            capture_output=True,
            timeout=SCRIPT_TIMEOUT_SECONDS,
            env=environment,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InventoryError(
            f"{sources[0]}: ansible-inventory ran longer than {SCRIPT_TIMEOUT_SECONDS:g} s"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.decode(errors="replace").splitlines() if line]
        detail = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise InventoryError(f"{sources[0]}: ansible-inventory failed: {detail}")
    builder = _Builder()
    path = Path(sources[0])
    data = _script_json(path, done.stdout.decode(errors="replace"), "--list")
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: ansible-inventory printed no JSON object")
    try:
        _script_inventory(builder, path, _plain(data))
    except _Invalid as exc:
        raise InventoryError(f"{path}: {exc}") from None
    builder.reconcile()
    return builder.build(tuple(str(source) for source in sources), _VarsFiles([]))


def _plain(value: Any) -> Any:
    """ansible-inventory's `{"__ansible_unsafe": text}` as the text."""
    if isinstance(value, dict):
        if list(value) == ["__ansible_unsafe"]:
            return value["__ansible_unsafe"]
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _load_natively(sources: Sequence[Path]) -> Inventory:
    builder = _Builder()
    for source in sources:
        if not os.path.exists(source):
            raise InventoryError(f"{source}: no such inventory file or directory")
        if not _parse_source(builder, Path(source)):
            what = "no inventory files in" if os.path.isdir(source) else "not a regular file or"
            raise InventoryError(f"{source}: {what} directory")
    builder.reconcile()
    vars_dirs = [_vars_base(Path(source)) for source in sources]
    return builder.build(tuple(str(source) for source in sources), _VarsFiles(vars_dirs))


def parse_address(text: str) -> tuple[str, int | None] | None:
    """`text` as (host, port) when it is a host name or address with an optional `:port`.

    Host ranges such as `node[01:20]` are allowed in the host part. None when `text` is not a
    host identifier at all (then Ansible takes the whole text as the host name, without a port).
    """
    address, port = text, None
    for pattern in (_BRACKETED_HOSTPORT, _HOSTPORT):
        match = pattern.fullmatch(address)
        if match:
            address, port = match.group(1), int(match.group(2))
    if _HOSTNAME.fullmatch(address) or _is_ipv6(address):
        return address, port
    return None


def expand_host_range(pattern: str) -> list[str]:
    """The host names of a pattern with `[begin:end]` or `[begin:end:step]` ranges.

    Numeric bounds with a leading zero fix the width (`[01:10]`); letters range over
    a-z then A-Z. Raises ValueError with a one-line reason for a malformed range.
    """
    start = pattern.find("[")
    if start < 0:
        return [pattern]
    end = pattern.find("]")
    if end < start or "|" in pattern:
        raise ValueError(f"unbalanced bracket in host range {pattern!r}")
    head, bounds, tail = pattern[:start], pattern[start + 1 : end].split(":"), pattern[end + 1 :]
    if len(bounds) not in (2, 3):
        raise ValueError(f"host range must be begin:end or begin:end:step in {pattern!r}")
    first, last = bounds[0] or "0", bounds[1]
    step = bounds[2] if len(bounds) == 3 else "1"
    if not last:
        raise ValueError(f"host range must specify an end value in {pattern!r}")
    width = 0
    if first[0] == "0" and len(first) > 1:
        width = len(first)
        if len(last) != width:
            raise ValueError(f"host range bounds must have equal lengths in {pattern!r}")
    items: Iterable[str]
    try:
        items = _letter_range(first, last, int(step))
    except ValueError:
        try:
            items = (str(n).zfill(width) for n in range(int(first), int(last) + 1, int(step)))
        except ValueError:
            raise ValueError(f"invalid host range {pattern!r}") from None
    except _Invalid as exc:
        raise ValueError(f"{exc} in {pattern!r}") from None
    items = list(items)
    tails = expand_host_range(tail) if items else []  # Ansible never looks past an empty range
    return [head + item + rest for item in items for rest in tails]


def _letter_range(first: str, last: str, step: int) -> list[str]:
    # Ansible looks the bounds up with str.index in a-zA-Z, so "ab" is a valid bound; mirror it.
    begin, end = string.ascii_letters.index(first), string.ascii_letters.index(last)
    if begin > end:
        raise _Invalid("host range must have begin <= end")
    return list(string.ascii_letters[begin : end + 1 : step])


def _is_ipv6(address: str) -> bool:
    """An IPv6 address, hexadecimal ranges allowed (`fe80::[a:f]`), without a zone index."""
    if ":" not in address or "%" in address:
        return False
    try:
        ipaddress.IPv6Address(_HEX_RANGE.sub("0", address))
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# The in-memory inventory, with Ansible's group and host rules


class _Group:
    __slots__ = ("children", "depth", "hosts", "name", "parents", "priority", "vars")

    def __init__(self, name: str) -> None:
        self.name = name
        self.hosts: list[_Host] = []  # direct members, in the order they were added
        self.children: list[_Group] = []
        self.parents: list[_Group] = []
        self.vars: dict[str, Any] = {}
        self.depth = 0  # longest path from `all`: Ansible merges shallow groups first
        self.priority = 1


_NO_VARS: dict[str, Any] = {}


class _Host:
    __slots__ = ("groups", "name", "vars")

    def __init__(self, name: str) -> None:
        self.name = name
        # Shared by hosts given the same variables (most hosts of a large INI file): replaced,
        # never changed in place.
        self.vars: dict[str, Any] = _NO_VARS
        self.groups: list[_Group] = []  # direct memberships only

    def add_vars(self, variables: dict[str, Any]) -> None:
        """Merge `variables` into the host's; `variables` itself becomes them when the host has
        none, so the caller must not change it afterwards."""
        if variables:
            self.vars = {**self.vars, **variables} if self.vars else variables


class _Builder:
    """Hosts and groups as the inventory plugins add them (ansible.inventory.data)."""

    def __init__(self) -> None:
        self.groups: dict[str, _Group] = {}
        self.hosts: dict[str, _Host] = {}
        self._same_vars: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
        self.all = self.add_group("all")
        self.ungrouped = self.add_group("ungrouped")
        self.add_child(self.all, self.ungrouped)

    def same_vars(self, variables: dict[str, Any]) -> dict[str, Any]:
        """An equal dict another host already has, when it holds only values that cannot
        change (hosts' dicts are never changed in place: `_Host.add_vars`)."""
        if not variables or not all(type(v) in _SHAREABLE for v in variables.values()):
            return variables
        key = tuple(variables.items())
        found = self._same_vars.get(key)
        if found is None:
            found = variables
            if len(self._same_vars) < _SEEN_LIMIT:
                self._same_vars[key] = variables
        return found

    def add_group(self, name: object) -> _Group:
        if not isinstance(name, str) or not name:
            raise _Invalid(f"invalid group name {name!r}: expected a non-empty string")
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = _Group(name)
        return group

    def add_host(self, name: object, group: _Group, port: int | None = None) -> _Host:
        """Host `name` as a member of `group`; `port` applies only when the host is new."""
        host = self.hosts.get(name) if isinstance(name, str) else None
        if host is None:
            if not isinstance(name, str) or not name:
                raise _Invalid(f"invalid host name {name!r}: expected a non-empty string")
            host = self.hosts[name] = _Host(name)
            if port is not None:
                host.vars = {"ansible_port": port}
        if group not in host.groups:  # a host is in few groups: no set of names per group
            group.hosts.append(host)
            host.groups.append(group)
        return host

    def add_child(self, parent: _Group, child: _Group) -> None:
        if child is parent:
            raise _Invalid(f"group {parent.name!r} cannot be a child of itself")
        if child in parent.children:
            return
        if child in _ancestors(parent):
            raise _Invalid(
                f"adding group {child.name!r} as child to {parent.name!r} "
                "creates a recursive dependency loop"
            )
        parent.children.append(child)
        child.parents.append(parent)
        _deepen(child, parent.depth + 1)

    def add_member(self, parent: _Group, name: object) -> None:
        """Ansible's add_child by name: a group becomes a child group, a host a member."""
        if isinstance(name, str) and name in self.groups:
            self.add_child(parent, self.groups[name])
        elif isinstance(name, str) and name in self.hosts:
            self.add_host(name, parent)
        else:
            raise _Invalid(f"{name!r} is not a known host nor group")

    @staticmethod
    def set_group_var(group: _Group, key: object, value: Any) -> None:
        key = _var_name(key)
        if key == "ansible_group_priority":
            try:
                group.priority = int(value)
            except (TypeError, ValueError):
                raise _Invalid(
                    f"ansible_group_priority of group {group.name!r} must be an integer, "
                    f"got {value!r}"
                ) from None
        else:
            group.vars[key] = value

    def reconcile(self) -> None:
        """Ansible's post-parse rules: every group under `all`, `ungrouped` exactly right."""
        for group in list(self.groups.values()):
            if group is not self.all and not group.parents:
                self.add_child(self.all, group)
        ungrouped, special = self.ungrouped, (self.all, self.ungrouped)

        def grouped(host: _Host) -> bool:
            return any(group not in special for group in host.groups)

        kept = [host for host in ungrouped.hosts if not grouped(host)]
        if len(kept) != len(ungrouped.hosts):
            for host in ungrouped.hosts:
                if grouped(host):
                    host.groups.remove(ungrouped)
            ungrouped.hosts = kept
        for host in self.hosts.values():
            if not host.groups or host.groups == [self.all]:
                self.add_host(host.name, ungrouped)

    def build(self, sources: tuple[str, ...], files: _VarsFiles) -> Inventory:
        groups = {
            name: InventoryGroup(
                name=name,
                hosts=tuple(host.name for host in group.hosts),
                children=tuple(child.name for child in group.children),
                vars=self._group_vars(group, files),
            )
            for name, group in self.groups.items()
        }
        self._same_vars.clear()  # only hosts hold their dicts now: refcounts tell shared ones
        per_membership: dict[tuple[int, ...], tuple[tuple[str, ...], dict[str, Any]]] = {}
        # (membership, id of the host's own vars) -> (those vars, kept so the id stays theirs,
        # and the merged vars).
        per_vars: dict[tuple[int, int], tuple[dict[str, Any], dict[str, Any]]] = {}
        hosts: dict[str, InventoryHost] = {}
        with_files = files.names("host_vars")
        for name in group_hosts(groups, "all"):
            host = self.hosts[name]
            key = tuple(map(id, host.groups))
            shared = per_membership.get(key)
            if shared is None:
                shared = per_membership[key] = self._membership_vars(host.groups, files)
            group_names, merged = shared
            if name in with_files:
                merged = {**merged, **host.vars}
                for found in files.each("host_vars", name):
                    merged.update(found)
            elif host.vars and sys.getrefcount(host.vars) <= 2:  # its own (+1: the argument)
                merged = {**merged, **host.vars}
                host.vars = merged  # frees the host's own dict as the merged one is made
            elif host.vars:  # shared with other hosts: so are the merged vars
                own = (id(merged), id(host.vars))
                found_merged = per_vars.get(own)
                if found_merged is None:
                    found_merged = per_vars[own] = host.vars, {**merged, **host.vars}
                merged = found_merged[1]
            hosts[name] = _inventory_host(name, group_names, merged)
        # Built here from data already checked: validating it again would copy every host.
        return Inventory.model_construct(sources=sources, hosts=hosts, groups=groups)

    def _group_vars(self, group: _Group, files: _VarsFiles) -> dict[str, Any]:
        """What `ansible-inventory --list --export` shows as the group's vars."""
        merged = dict(group.vars)
        for found in files.each("group_vars", group.name):
            merged.update(found)
        if group.priority != 1:
            merged["ansible_group_priority"] = group.priority
        return merged

    def _membership_vars(
        self, direct: list[_Group], files: _VarsFiles
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Group names and group-level vars of a host in the groups `direct` (and their parents).

        Ansible's default precedence: `all` inventory vars < other groups' inventory vars <
        group_vars/all < group_vars of other groups, per source; groups sorted by (depth,
        ansible_group_priority, name) so that children override parents.
        """
        closure: set[_Group] = set(direct)
        for group in direct:
            closure |= _ancestors(group)
        closure.discard(self.all)
        ordered = sorted(closure, key=lambda group: (group.depth, group.priority, group.name))
        merged = dict(self.all.vars)
        for group in ordered:
            merged.update(group.vars)
        for found in files.each("group_vars", "all"):
            merged.update(found)
        for base in range(len(files.bases)):
            for group in ordered:
                merged.update(files.get(base, "group_vars", group.name))
        return tuple(sorted(group.name for group in closure)), merged


def _inventory_host(name: str, groups: tuple[str, ...], variables: dict[str, Any]) -> InventoryHost:
    """An `InventoryHost` without validation: its fields are the builder's own data (the
    dataclass is frozen, so its slots are set the way its generated `__init__` sets them)."""
    host = object.__new__(InventoryHost)
    object.__setattr__(host, "name", name)
    object.__setattr__(host, "groups", groups)
    object.__setattr__(host, "vars", variables)
    return host


def _ancestors(group: _Group) -> set[_Group]:
    found: set[_Group] = set()
    pending = list(group.parents)
    while pending:
        parent = pending.pop()
        if parent not in found:
            found.add(parent)
            pending.extend(parent.parents)
    return found


def _deepen(group: _Group, depth: int) -> None:
    if group.depth < depth:
        group.depth = depth
        for child in group.children:
            _deepen(child, depth + 1)


def _var_name(key: object) -> str:
    if not isinstance(key, str):
        raise _Invalid(f"variable name {key!r} must be a string")
    return key


def group_hosts(groups: Mapping[str, InventoryGroup], name: str) -> list[str]:
    """Hosts of group `name` and its descendants, in the order Ansible lists them.

    Ansible walks the group tree level by level (the group, its children, their children, ...)
    and takes each group's direct hosts in order, first occurrence winning. Within one level
    Ansible iterates a set, so its order there is not defined; this takes the children's order.
    """
    start = groups[name]
    walk, seen, level = [start], {name}, [start]
    while level:
        below: list[InventoryGroup] = []
        for group in level:
            for child_name in group.children:
                if child_name not in seen:
                    seen.add(child_name)
                    below.append(groups[child_name])
        walk.extend(below)
        level = below
    return list(dict.fromkeys(host for group in walk for host in group.hosts))


# ---------------------------------------------------------------------------------------------
# Sources: directories, scripts, YAML and INI files


def _ignored(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_NAMES or name.endswith(_IGNORED_SUFFIXES)


def _parse_source(builder: _Builder, path: Path) -> bool:
    """Add one source to `builder`; False when a directory held nothing to read."""
    if path.is_dir():
        parsed = False
        for name in sorted(os.listdir(path)):
            if not _ignored(name):
                parsed = _parse_source(builder, path / name) or parsed
        return parsed
    if not path.is_file():
        return False
    if os.access(path, os.X_OK) and _run_script(builder, path):
        return True
    _parse_static(builder, path)
    return True


def _parse_static(builder: _Builder, path: Path) -> None:
    suffix = path.suffix
    text = _read_text(path)
    if suffix == ".toml":
        _parse_toml(builder, path, text)
        return
    if suffix and suffix not in _YAML_SUFFIXES:
        _parse_ini(builder, path, text)
        return
    # Like Ansible's plugin chain: YAML (JSON first) when it parses to a YAML inventory, else INI.
    try:
        data = _load_data(text, path)
    except InventoryError as exc:
        yaml_error: InventoryError | None = exc if suffix else None
    else:
        if isinstance(data, dict) and data and not data.get("plugin"):
            _parse_yaml(builder, path, data)
            return
        if isinstance(data, dict) and data.get("plugin"):
            raise _PluginConfig
        yaml_error = _yaml_shape_error(path, data) if suffix else None
    try:
        _parse_ini(builder, path, text)
    except InventoryError:
        if yaml_error is not None:
            raise yaml_error from None
        raise


def _read_text(path: Path) -> str:
    try:
        text = read_input(path, INVENTORY_LIMIT, "inventory file").decode()
    except UnicodeDecodeError as exc:
        raise InventoryError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except BadInput as exc:
        raise InventoryError(str(exc)) from None
    if text.startswith("$ANSIBLE_VAULT;"):
        raise InventoryError(f"{path}: vault-encrypted files are not supported")
    return text


def _yaml_shape_error(path: Path, data: Any) -> InventoryError:
    if not data:
        return InventoryError(f"{path}: empty YAML inventory")
    if isinstance(data, dict):
        return InventoryError(f"{path}: inventory plugin configuration files are not supported")
    return InventoryError(
        f"{path}: a YAML inventory must be a mapping of groups, got {type(data).__name__}"
    )


# INI ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """A group named by `[g:vars]` or in `[p:children]` before its own section."""

    line: int
    state: str
    parents: list[str]


def _parse_ini(builder: _Builder, path: Path, text: str) -> None:
    pending: dict[str, _Pending] = {}
    seen = _Seen()
    group, state, number = builder.ungrouped, "hosts", 0
    try:
        for number, raw in enumerate(_lines(text), 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line[0] == "[":
                section = _ini_section(line)
                if section is not None:
                    group, state = _enter_section(builder, pending, section, number)
                    continue
                if line[-1] == "]":
                    raise _Invalid(
                        f"invalid section entry {line!r}: no spaces or other invalid characters "
                        "are allowed in a section name"
                    )
            if state == "hosts":
                _ini_hosts(builder, group, line, seen)
            elif state == "vars":
                key, sep, value = line.partition("=")
                if not sep:
                    raise _Invalid("expected key=value")
                builder.set_group_var(group, key.strip(), _ini_value(value.strip()))
            else:
                child = _ini_group_name(line)
                if child in builder.groups:
                    builder.add_child(group, builder.groups[child])
                elif child in pending:
                    pending[child].parents.append(group.name)
                else:
                    pending[child] = _Pending(number, "children", [group.name])
        for name, decl in pending.items():
            number = decl.line
            if decl.state == "vars":
                raise _Invalid(f"section [{name}:vars] is for undefined group {name!r}")
            raise _Invalid(
                f"section [{decl.parents[-1]}:children] includes undefined group {name!r}"
            )
    except _Invalid as exc:
        raise InventoryError(f"{path}:{number}: {exc}") from None


def _lines(text: str, piece: int = MiB) -> Iterator[str]:
    """`text.splitlines()`, a piece at a time: the lines of a 100k-host file are never all
    held at once (pieces end just after a newline, so no line break is split)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + piece)
        end = len(text) if end < 0 else end + 1
        yield from text[start:end].splitlines()
        start = end


def _ini_section(line: str) -> tuple[str, str] | None:
    """(group, kind) of a `[group]` or `[group:kind]` header (comment allowed), else None."""
    close = line.find("]")
    if close < 0:
        return None
    rest = line[close + 1 :].lstrip()
    if rest and rest[0] != "#":
        return None
    name, sep, kind = line[1:close].partition(":")
    if not name or any(char.isspace() for char in name):
        return None
    if sep and not (kind and all(char.isalnum() or char == "_" for char in kind)):
        return None
    return name, kind or "hosts"


def _enter_section(
    builder: _Builder, pending: dict[str, _Pending], section: tuple[str, str], number: int
) -> tuple[_Group, str]:
    name, state = section
    if state not in _INI_STATES:
        raise _Invalid(f"section [{name}:{state}] has unknown type {state!r}")
    if name not in builder.groups:
        # [g:vars] may come before g is declared, as long as it is declared somewhere.
        if state == "vars" and name not in pending:
            pending[name] = _Pending(number, "vars", [])
        builder.add_group(name)
    group = builder.groups[name]
    decl = pending.get(name)
    if decl is not None and state != "vars":
        for parent in decl.parents:
            builder.add_child(builder.groups[parent], group)
        del pending[name]
    return group, state


def _ini_group_name(line: str) -> str:
    name, *rest = line.split(None, 1)
    if ":" in name or "]" in name or (rest and rest[0][0] != "#"):
        raise _Invalid("expected a group name")
    return name


def _ini_hosts(builder: _Builder, group: _Group, line: str, seen: _Seen) -> None:
    if '"' in line or "'" in line or "\\" in line:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise _Invalid(f"cannot parse the host definition: {exc}") from None
    else:  # what shlex does without quotes: "#" starts a comment, even inside a word
        cut = line.find("#")
        tokens = [t for t in (line if cut < 0 else line[:cut]).replace("\t", " ").split(" ") if t]
    if not tokens:
        raise _Invalid("expected a host definition")
    pattern = tokens[0]
    names, port = _host_pattern(pattern)
    if port is None and pattern.rstrip().endswith(":"):
        raise _Invalid(f"invalid host pattern {pattern!r}: a trailing ':' must give a port")
    if "---" in pattern and any(name.strip() == "---" for name in names):
        raise _Invalid(f"invalid host pattern {pattern!r}: '---' is a sign this is a YAML file")
    variables = _ini_variables(tuple(tokens[1:]), seen)
    for name in names:
        builder.add_host(name, group, port).add_vars(variables)


@dataclass(slots=True)
class _Seen:
    """The `key=value` words, and sets of them, already read in one INI file. A large
    inventory repeats the same few on most lines: each is parsed once, and hosts with the same
    words share one dict of variables (values that cannot change only; bounded, since words
    such as `ansible_host=10.0.3.7` are unique)."""

    words: dict[str, tuple[str, Any]] = field(default_factory=dict)
    lines: dict[tuple[str, ...], dict[str, Any]] = field(default_factory=dict)


_SHAREABLE = frozenset({str, int, float, bool, type(None)})
_SEEN_LIMIT = 4096  # distinct words, sets of words, texts remembered per file


def _ini_variables(tokens: tuple[str, ...], seen: _Seen) -> dict[str, Any]:
    found = seen.lines.get(tokens)
    if found is None:
        found = dict(_ini_assignment(token, seen) for token in tokens)
        if len(seen.lines) < _SEEN_LIMIT and all(type(v) in _SHAREABLE for v in found.values()):
            seen.lines[tokens] = found
    return found


def _ini_assignment(token: str, seen: _Seen) -> tuple[str, Any]:
    found = seen.words.get(token)
    if found is None:
        key, sep, value = token.partition("=")
        if not sep:
            raise _Invalid("expected key=value host variable assignments after the host name")
        found = sys.intern(key), _ini_value(value)
        if type(found[1]) in _SHAREABLE and len(seen.words) < _SEEN_LIMIT:
            seen.words[token] = found
    return found


def _host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """The host names and port of one host entry (`name`, `name:port`, `node[01:20]`...)."""
    host, port = (parse_address(pattern) or (pattern, None)) if ":" in pattern else (pattern, None)
    if "[" not in host:
        return [host], port
    try:
        return expand_host_range(host), port
    except ValueError as exc:
        raise _Invalid(str(exc)) from None


def _ini_value(text: str) -> Any:
    """An INI value as Ansible reads it: a Python literal when it is one, else the string."""
    if text in _INI_CONSTANTS:
        return _INI_CONSTANTS[text]
    if not text or _PLAIN_WORD.fullmatch(text):
        return text
    if text.isascii():
        if text.isdigit():  # "0123" is not a Python literal; "000" is
            return int(text) if text[0] != "0" or not text.strip("0") else text
        if text.count(".") > 1 and text.replace(".", "").isdigit():  # an IPv4 address
            return text
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    except (TypeError, MemoryError, RecursionError) as exc:  # e.g. {[1]: 2}
        raise _Invalid(f"cannot parse a value: {exc}") from None
    return _ini_coerce(value)


def _ini_coerce(value: Any) -> Any:
    """Only types a variable can hold: tuples and sets become lists, bytes text, etc."""
    if isinstance(value, list | tuple | set):
        return [_ini_coerce(item) for item in value]
    if isinstance(value, dict):
        return {key: _ini_coerce(item) for key, item in value.items()}
    if value is Ellipsis:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode(errors="surrogateescape")
    return value


# YAML -----------------------------------------------------------------------------------------


class _YamlLoader(_SafeLoader):
    """YAML 1.1 as Ansible loads it, with its `!unsafe` and `!vault` tags."""


def _construct_untagged(loader: _YamlLoader, node: yaml.Node) -> Any:
    """The value of `node` as if it had no tag (how Ansible reads `!unsafe 5`: the int 5)."""
    plain = copy.copy(node)
    plain.tag = loader.resolve(type(node), node.value, (True, False))  # type: ignore[no-untyped-call]
    return loader.construct_object(plain, deep=True)


def _construct_vault(loader: _YamlLoader, node: yaml.Node) -> EncryptedValue:
    ciphertext = _construct_untagged(loader, node)
    if not isinstance(ciphertext, str):
        raise yaml.constructor.ConstructorError(
            None, None, f"the {node.tag} tag requires a string value", node.start_mark
        )
    return EncryptedValue(ciphertext)


_YamlLoader.add_constructor("!unsafe", _construct_untagged)
_YamlLoader.add_constructor("!vault", _construct_vault)
_YamlLoader.add_constructor("!vault-encrypted", _construct_vault)


class _NotPlain(Exception):
    """YAML that `_fast_yaml` leaves to PyYAML's constructor: tags, merge keys, odd keys."""


_STR_TAG = "tag:yaml.org,2002:str"
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "timestamp")
)
_IMPLICIT = yaml.resolver.Resolver.yaml_implicit_resolvers
_SCALARS = yaml.constructor.SafeConstructor()
_NO_KEY = object()


def _fast_yaml(text: str) -> Any:
    """What `yaml.load(text, _YamlLoader)` returns, built straight from parser events.

    PyYAML's composer and constructor cost about 60 us per host of a large inventory; this takes
    a fifth of that. It handles untagged documents (the norm for inventories) with anchors
    and aliases, and raises `_NotPlain` for anything else, which PyYAML then loads itself.
    """
    root: Any = None
    stack: list[list[Any]] = []  # [container, pending mapping key or _NO_KEY]
    anchors: dict[str, Any] = {}
    strings: dict[str, str] = {}
    documents = 0

    def add(value: Any) -> None:
        nonlocal root
        if not stack:
            root = value
            return
        frame = stack[-1]
        container = frame[0]
        if type(container) is list:
            container.append(value)
        elif frame[1] is _NO_KEY:
            if isinstance(value, dict | list):
                raise _NotPlain  # an unhashable key: PyYAML reports it
            frame[1] = value
        else:
            container[frame[1]] = value
            frame[1] = _NO_KEY

    def anchor(name: str, value: Any) -> None:
        if name in anchors:
            raise _NotPlain  # a duplicate anchor: PyYAML reports it
        anchors[name] = value

    parser = _SafeLoader(text)
    while True:
        event = parser.get_event()
        if isinstance(event, yaml.ScalarEvent):
            if event.tag is not None:
                raise _NotPlain
            value: Any = event.value
            if event.implicit[0]:
                tag = _plain_tag(value)
                if tag != _STR_TAG:
                    if tag not in _SCALAR_TAGS:
                        raise _NotPlain  # "<<" merge keys, "=" value keys
                    value = _SCALARS.yaml_constructors[tag](_SCALARS, yaml.ScalarNode(tag, value))
            if type(value) is str:  # one object for each text repeated across hosts
                shared = strings.get(value)
                if shared is None and len(strings) < _SEEN_LIMIT:
                    strings[value] = value
                value = shared or value
            if event.anchor is not None:
                anchor(event.anchor, value)
            add(value)
        elif isinstance(event, yaml.CollectionStartEvent):
            if event.tag is not None:
                raise _NotPlain
            container: Any = {} if isinstance(event, yaml.MappingStartEvent) else []
            if event.anchor is not None:
                anchor(event.anchor, container)
            add(container)
            stack.append([container, _NO_KEY])
        elif isinstance(event, yaml.CollectionEndEvent):
            stack.pop()
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                raise _NotPlain  # an undefined alias: PyYAML reports it
            add(anchors[event.anchor])
        elif isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _NotPlain  # several documents: PyYAML reports it
        elif isinstance(event, yaml.StreamEndEvent):
            break
    return root


def _check_expansion(data: Any, path: Path, text_length: int) -> None:
    """Refuse YAML whose aliases expand far beyond its text (an alias bomb: a few lines that
    become billions of values once printed or copied) or refer to themselves. Iterative, and
    linear in the distinct values: each shared one is sized once."""
    limit = 100_000 + 50 * text_length
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        value, done = stack.pop()
        if not isinstance(value, dict | list):
            continue
        key = id(value)
        children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
        if done:
            open_ids.discard(key)
            size = 1 + sum(sizes.get(id(c), 1) for c in children)
            if size > limit:
                raise InventoryError(
                    f"{path}: YAML aliases expand to more than {limit} values (an alias bomb?)"
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        if key in open_ids:
            raise InventoryError(f"{path}: a YAML alias refers to a value that contains it")
        open_ids.add(key)
        stack.append((value, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _plain_tag(value: str) -> str:
    """The tag YAML 1.1 gives a plain scalar (PyYAML's Resolver.resolve, without its overhead)."""
    for tag, pattern in _IMPLICIT.get(value[0] if value else "", ()):
        if pattern.match(value):
            return str(tag)
    return _STR_TAG


def _load_data(text: str, path: Path) -> Any:
    """JSON or YAML text as Ansible's DataLoader reads it: JSON first, then YAML."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        try:
            data = _fast_yaml(text)
        except _NotPlain:
            data = yaml.load(text, Loader=_YamlLoader)
        if "*" in text:  # no alias without one
            _check_expansion(data, path, len(text))
        return data
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        reason = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise InventoryError(f"{where}: {reason}") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: {' '.join(str(exc).split())}") from None


def _parse_toml(builder: _Builder, path: Path, text: str) -> None:
    """Ansible's `toml` plugin: the YAML layout, except that `children` is a list of names."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{path}: not a TOML inventory: {exc}") from None
    groups = {
        name: {**body, "children": dict.fromkeys(map(str, body["children"]))}
        if isinstance(body, dict) and isinstance(body.get("children"), list)
        else body
        for name, body in data.items()
    }
    _parse_yaml(builder, path, groups)


def _parse_yaml(builder: _Builder, path: Path, data: dict[Any, Any]) -> None:
    try:
        for name, body in data.items():
            _yaml_group(builder, name, body)
    except _Invalid as exc:
        raise InventoryError(f"{path}: {exc}") from None


def _yaml_group(builder: _Builder, name: Any, body: Any) -> Any:
    """Add one group of a YAML inventory; returns its name (Ansible skips a non-mapping body)."""
    if body is not None and not isinstance(body, dict):
        return name
    group = builder.add_group(name)
    if body is None:
        return name
    sections = {}
    for section in ("vars", "children", "hosts"):
        value = body.get(section)
        if isinstance(value, str):
            value = {value: None}
        if value is not None and not isinstance(value, dict):
            raise _Invalid(
                f"group {name!r}: {section!r} must be a mapping, got {type(value).__name__}"
            )
        sections[section] = value
    for key in body:
        value = sections.get(key)
        if not value:  # unknown keys, empty and null sections: Ansible skips them
            continue
        if key == "vars":
            for var, item in value.items():
                builder.set_group_var(group, var, item)
        elif key == "children":
            for child, child_body in value.items():
                builder.add_member(group, _yaml_group(builder, child, child_body))
        else:
            for pattern, variables in value.items():
                _yaml_hosts(builder, group, pattern, variables)
    return name


def _yaml_hosts(builder: _Builder, group: _Group, pattern: Any, variables: Any) -> None:
    if not isinstance(pattern, str):
        raise _Invalid(f"host pattern {pattern!r} must be a string: quote numbers")
    variables = variables or {}
    if not isinstance(variables, dict):
        raise _Invalid(
            f"host {pattern!r}: variables must be a mapping, got {type(variables).__name__}"
        )
    for key in variables:
        _var_name(key)
    names, port = _host_pattern(pattern)
    variables = builder.same_vars(variables)
    for name in names:
        builder.add_host(name, group, port).add_vars(variables)


# Scripts --------------------------------------------------------------------------------------


def _run_script(builder: _Builder, path: Path) -> bool:
    """Run an executable inventory; False when the file cannot be executed and has no `#!`."""
    try:
        listing = _script_output(path, "--list")
    except OSError as exc:
        with open(path, "rb") as handle:
            if handle.read(2) != b"#!":
                return False
        raise InventoryError(f"{path}: cannot run inventory script: {exc.strerror}") from None
    data = _script_json(path, listing, "--list")
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: inventory script must print a JSON object")
    try:
        _script_inventory(builder, path, data)
    except _Invalid as exc:
        raise InventoryError(f"{path}: {exc}") from None
    return True


def _script_inventory(builder: _Builder, path: Path, data: dict[str, Any]) -> None:
    hostvars: dict[str, Any] | None = None
    listed: dict[str, None] = {}  # hosts named in groups: only those get host vars
    for name, body in data.items():
        if name == "_meta":
            hostvars = body.get("hostvars") if isinstance(body, dict) else None
            if not isinstance(hostvars, dict):
                raise _Invalid("'_meta.hostvars' must be a JSON object")
        else:
            _script_group(builder, name, body, listed)
    for name in listed:
        if hostvars is not None:
            variables = hostvars.get(name, {})
        else:
            output = _script_output(path, "--host", name)
            variables = _script_json(path, output, f"--host {name}") if output.strip() else {}
        if not isinstance(variables, dict):
            raise _Invalid(f"variables of host {name!r} must be a JSON object")
        for key in variables:
            _var_name(key)
        builder.hosts[name].add_vars(variables)


def _script_group(builder: _Builder, name: str, body: Any, listed: dict[str, None]) -> None:
    group = builder.add_group(name)
    if not isinstance(body, dict):
        body = {"hosts": body}
    elif not any(key in body for key in ("hosts", "vars", "children")):
        body = {"hosts": [name], "vars": body}  # Ansible's legacy form: the group is its host
    if "hosts" in body:
        if not isinstance(body["hosts"], list):
            raise _Invalid(f"'{name}.hosts' must be a JSON array")
        for host in body["hosts"]:
            builder.add_host(host, group)
            listed[host] = None
    if "vars" in body:
        if not isinstance(body["vars"], dict):
            raise _Invalid(f"'{name}.vars' must be a JSON object")
        for key, value in body["vars"].items():
            builder.set_group_var(group, key, value)
    if "children" in body:
        if not isinstance(body["children"], list | dict):
            raise _Invalid(f"'{name}.children' must be a JSON array")
        for child in body["children"]:
            builder.add_child(group, builder.add_group(child))


def _script_output(path: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            # Absolute: a bare relative name (`-i inventory.sh`) is the file, as for Ansible,
            # never a program looked up on PATH.
            [os.path.abspath(path), *args],
            capture_output=True,
            timeout=SCRIPT_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InventoryError(
            f"{path}: inventory script {' '.join(args)} ran longer than "
            f"{SCRIPT_TIMEOUT_SECONDS:g} s"
        ) from None
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        detail = f": {lines[-1].strip()}" if lines else ""
        raise InventoryError(
            f"{path}: inventory script {' '.join(args)} exited with status {done.returncode}"
            f"{detail}"
        )
    try:
        return done.stdout.decode()
    except UnicodeDecodeError:
        raise InventoryError(
            f"{path}: inventory script {' '.join(args)} printed non-UTF-8 output"
        ) from None


def _script_json(path: Path, output: str, args: str) -> Any:
    try:
        return json.loads(output)
    except ValueError as exc:
        raise InventoryError(
            f"{path}: inventory script {args} printed invalid JSON: {exc}"
        ) from None


# ---------------------------------------------------------------------------------------------
# group_vars/ and host_vars/


def _vars_base(source: Path) -> str:
    """The directory whose group_vars/ and host_vars/ apply to `source`."""
    absolute = os.path.abspath(source)
    return os.path.realpath(absolute if os.path.isdir(absolute) else os.path.dirname(absolute))


class _VarsFiles:
    """Variables from `group_vars/` and `host_vars/` beside each source, read at most once.

    For an entity named N, Ansible reads the first of `N`, `N.yml`, `N.yaml`, `N.json` that
    exists; when that is a directory, every file in it (and in its subdirectories) with one of
    those suffixes or none, in sorted order, skipping hidden files and backups (`~`).
    """

    def __init__(self, bases: list[str]) -> None:
        self.bases = bases
        self._index: dict[tuple[int, str], dict[str, str]] = {}
        self._vars: dict[tuple[int, str, str], dict[str, Any]] = {}

    def each(self, kind: str, name: str) -> list[dict[str, Any]]:
        """The vars of `name` from each source that has a file or directory for it."""
        return [
            self.get(base, kind, name)
            for base in range(len(self.bases))
            if name in self._entries(base, kind)
        ]

    def names(self, kind: str) -> set[str]:
        """Every name with a file or directory in the `kind` directory of some source."""
        return {name for base in range(len(self.bases)) for name in self._entries(base, kind)}

    def get(self, base: int, kind: str, name: str) -> dict[str, Any]:
        """The vars of `name` from the `kind` directory of source `base` ({} when none)."""
        path = self._entries(base, kind).get(name)
        if path is None:
            return {}
        key = (base, kind, name)
        found = self._vars.get(key)
        if found is None:
            found = self._vars[key] = {}
            for file in _vars_dir_files(path) if os.path.isdir(path) else [path]:
                found.update(_read_vars_file(file))
        return found

    def _entries(self, base: int, kind: str) -> dict[str, str]:
        """Entity name -> the path Ansible would pick for it, for one vars directory."""
        entries = self._index.get((base, kind))
        if entries is None:
            directory = os.path.join(self.bases[base], kind)
            names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
            rank: dict[str, int] = {}
            entries = {}
            for entry in names:
                for order, suffix in enumerate(("", *_VARS_SUFFIXES)):
                    if entry.endswith(suffix):
                        name = entry[: len(entry) - len(suffix)]
                        if name and rank.get(name, order + 1) > order:
                            rank[name] = order
                            entries[name] = os.path.join(directory, entry)
            self._index[(base, kind)] = entries
        return entries


def _vars_dir_files(directory: str) -> list[str]:
    found: list[str] = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(".") or name.endswith("~"):
            continue
        path = os.path.join(directory, name)
        suffix = os.path.splitext(name)[1]
        if os.path.isdir(path):
            if not suffix:
                found.extend(_vars_dir_files(path))
        elif os.path.isfile(path) and (not suffix or suffix in _VARS_SUFFIXES):
            found.append(path)
    return found


def _read_vars_file(path: str) -> dict[str, Any]:
    data = _load_data(_read_text(Path(path)), Path(path))
    if not data:  # Ansible ignores empty files
        return {}
    if not isinstance(data, dict):
        raise InventoryError(
            f"{path}: a variables file must hold a mapping, got {type(data).__name__}"
        )
    for key in data:
        if not isinstance(key, str):
            raise InventoryError(f"{path}: variable name {key!r} must be a string")
    return data
