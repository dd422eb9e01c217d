"""The in-memory inventory every source adds to, with Ansible's group and host rules."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.inventory.common import SEEN_LIMIT, SHAREABLE, InvalidValue
from orchestrator.models import Inventory, InventoryGroup, InventoryHost

if TYPE_CHECKING:
    from orchestrator.inventory.varsfiles import VarsFiles

# ---------------------------------------------------------------------------------------------
# The in-memory inventory, with Ansible's group and host rules


class Group:
    __slots__ = ("children", "depth", "hosts", "name", "parents", "priority", "vars")

    def __init__(self, name: str) -> None:
        self.name = name
        self.hosts: list[_Host] = []  # direct members, in the order they were added
        self.children: list[Group] = []
        self.parents: list[Group] = []
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
        self.groups: list[Group] = []  # direct memberships only

    def add_vars(self, variables: dict[str, Any]) -> None:
        """Merge `variables` into the host's; `variables` itself becomes them when the host has
        none, so the caller must not change it afterwards."""
        if variables:
            self.vars = {**self.vars, **variables} if self.vars else variables


class Builder:
    """Hosts and groups as the inventory plugins add them (ansible.inventory.data)."""

    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.hosts: dict[str, _Host] = {}
        self._same_vars: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}
        self.all = self.add_group("all")
        self.ungrouped = self.add_group("ungrouped")
        self.add_child(self.all, self.ungrouped)

    def same_vars(self, variables: dict[str, Any]) -> dict[str, Any]:
        """An equal dict another host already has, when it holds only values that cannot
        change (hosts' dicts are never changed in place: `_Host.add_vars`)."""
        if not variables or not all(type(v) in SHAREABLE for v in variables.values()):
            return variables
        key = tuple(variables.items())
        found = self._same_vars.get(key)
        if found is None:
            found = variables
            if len(self._same_vars) < SEEN_LIMIT:
                self._same_vars[key] = variables
        return found

    def add_group(self, name: object) -> Group:
        if not isinstance(name, str) or not name:
            raise InvalidValue(f"invalid group name {name!r}: expected a non-empty string")
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = Group(name)
        return group

    def add_host(self, name: object, group: Group, port: int | None = None) -> _Host:
        """Host `name` as a member of `group`; `port` applies only when the host is new."""
        host = self.hosts.get(name) if isinstance(name, str) else None
        if host is None:
            if not isinstance(name, str) or not name:
                raise InvalidValue(f"invalid host name {name!r}: expected a non-empty string")
            host = self.hosts[name] = _Host(name)
            if port is not None:
                host.vars = {"ansible_port": port}
        if group not in host.groups:  # a host is in few groups: no set of names per group
            group.hosts.append(host)
            host.groups.append(group)
        return host

    def add_child(self, parent: Group, child: Group) -> None:
        if child is parent:
            raise InvalidValue(f"group {parent.name!r} cannot be a child of itself")
        if child in parent.children:
            return
        if child in _ancestors(parent):
            raise InvalidValue(
                f"adding group {child.name!r} as child to {parent.name!r} "
                "creates a recursive dependency loop"
            )
        parent.children.append(child)
        child.parents.append(parent)
        _deepen(child, parent.depth + 1)

    def add_member(self, parent: Group, name: object) -> None:
        """Ansible's add_child by name: a group becomes a child group, a host a member."""
        if isinstance(name, str) and name in self.groups:
            self.add_child(parent, self.groups[name])
        elif isinstance(name, str) and name in self.hosts:
            self.add_host(name, parent)
        else:
            raise InvalidValue(f"{name!r} is not a known host nor group")

    @staticmethod
    def set_group_var(group: Group, key: object, value: Any) -> None:
        key = var_name(key)
        if key == "ansible_group_priority":
            try:
                group.priority = int(value)
            except (TypeError, ValueError):
                raise InvalidValue(
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

    def build(self, sources: tuple[str, ...], files: VarsFiles) -> Inventory:
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

    def _group_vars(self, group: Group, files: VarsFiles) -> dict[str, Any]:
        """What `ansible-inventory --list --export` shows as the group's vars."""
        merged = dict(group.vars)
        for found in files.each("group_vars", group.name):
            merged.update(found)
        if group.priority != 1:
            merged["ansible_group_priority"] = group.priority
        return merged

    def _membership_vars(
        self, direct: list[Group], files: VarsFiles
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Group names and group-level vars of a host in the groups `direct` (and their parents).

        Ansible's default precedence: `all` inventory vars < other groups' inventory vars <
        group_vars/all < group_vars of other groups, per source; groups sorted by (depth,
        ansible_group_priority, name) so that children override parents.
        """
        closure: set[Group] = set(direct)
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


def _ancestors(group: Group) -> set[Group]:
    found: set[Group] = set()
    pending = list(group.parents)
    while pending:
        parent = pending.pop()
        if parent not in found:
            found.add(parent)
            pending.extend(parent.parents)
    return found


def _deepen(group: Group, depth: int) -> None:
    if group.depth < depth:
        group.depth = depth
        for child in group.children:
            _deepen(child, depth + 1)


def var_name(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidValue(f"variable name {key!r} must be a string")
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
