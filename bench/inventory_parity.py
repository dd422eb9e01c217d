"""Inventory parity with ansible-core on a corpus of real inventories.

Finds inventory-looking files (named `inventory*`, `hosts*`, `*.ini`, `*.toml`, `*.yml` under an
`inventory` directory) in the given directories (checkouts of ansible-core's test suite, kubespray's
samples...), keeps those ansible-core itself reads with at least one host, and checks, each as one
comparison: the hosts and their order, each host's merged variables (as `ansible-inventory --list`
shows them), and `--limit` patterns built from the inventory's own groups and hosts (unions,
intersections, exclusions, globs, regexes, subscripts) against Ansible's `subset()`. Where
runc-rollout refuses a pattern that selects nothing (Ansible only warns), an empty Ansible
selection agrees. Prints the totals and every disagreement.

    python bench/inventory_parity.py DIR... [--show 20]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import random
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("ANSIBLE_INVENTORY_UNPARSED_FAILED", "true")
os.environ.setdefault("ANSIBLE_LOCALHOST_WARNING", "false")

from ansible import constants as C
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.vars.manager import VariableManager

from orchestrator.errors import BadInput
from orchestrator.inventory.common import EncryptedValue
from orchestrator.inventory.patterns import select_hosts
from orchestrator.inventory.read import load_inventory

SKIP_PARTS = {"tasks", "library", "templates", "meta", "vars", "defaults", "handlers", "roles"}
SKIP_PARTS |= {"group_vars", "host_vars", ".git", "files"}


def candidates(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or SKIP_PARTS & set(path.relative_to(root).parts[:-1]):
            continue
        name = path.name.lower()
        in_inventory_dir = "inventory" in path.parent.name.lower()
        if (
            name.startswith(("inventory", "hosts"))
            or name.endswith((".ini", ".toml"))
            or (in_inventory_dir and name.endswith((".yml", ".yaml")))
        ):
            found.append(path)
    return found


def ansible_view(path: Path) -> tuple[InventoryManager, dict[str, dict[str, Any]]] | None:
    """Ansible's inventory of `path` and each host's variables, or None if it reads no host."""
    loader = DataLoader()
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            manager = InventoryManager(loader=loader, sources=[str(path)])
            variables = VariableManager(loader=loader, inventory=manager)
            hosts = manager.get_hosts("all")
            if not hosts:
                return None
            views = {}
            for host in hosts:
                found = variables.get_vars(host=host, include_hostvars=False, stage="all")
                views[host.name] = {
                    key: value for key, value in found.items() if key not in C.INTERNAL_STATIC_VARS
                }
    except Exception:  # not an inventory Ansible reads
        return None
    return manager, views


def plain(value: Any) -> Any:
    """A variable as JSON would show it (vaulted values as their ciphertext)."""
    if isinstance(value, EncryptedValue):
        return value.ciphertext.strip()
    if hasattr(value, "_ciphertext"):
        return value._ciphertext.decode().strip()
    return json.loads(json.dumps(value, default=str))


def patterns(manager: InventoryManager, rng: random.Random) -> list[str]:
    groups = sorted(name for name in manager.groups if name not in ("all", "ungrouped"))
    hosts = [host.name for host in manager.get_hosts("all")]
    chosen_groups = rng.sample(groups, min(len(groups), 6))
    chosen_hosts = rng.sample(hosts, min(len(hosts), 3))
    found = ["all", "ungrouped", *chosen_groups, *chosen_hosts, "no-such-host"]
    for first, second in itertools.pairwise(chosen_groups):
        found += [f"{first}:{second}", f"{first}:&{second}", f"{first}:!{second}"]
        found += [f"{first},!{second}", f"!{first}"]
    for group in chosen_groups[:3]:
        found += [f"{group}[0]", f"{group}[-1]", f"{group}[0:1]", f"{group}[1:]"]
    for host in chosen_hosts:
        found += [f"{host[:2]}*", f"~{host[:2]}.*", f"all:!{host}", f"{host}:&all"]
    return found


def ansible_limit(manager: InventoryManager, pattern: str) -> list[str]:
    manager.clear_pattern_cache()
    manager.subset(pattern)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return [host.name for host in manager.get_hosts("all")]
    except Exception:  # Ansible refuses it too
        return []
    finally:
        manager.subset(None)


def ours_limit(inventory: Any, pattern: str) -> list[str]:
    try:
        return select_hosts(inventory, pattern)
    except BadInput:
        return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--show", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(16)
    checks = agreed = inventories = limits = 0
    disagreements: list[str] = []
    for root in args.roots:
        for path in candidates(root):
            view = ansible_view(path)
            if view is None:
                continue
            manager, hostvars = view
            inventories += 1
            where = str(path.relative_to(root))
            try:
                ours = load_inventory([path])
            except BadInput as error:
                checks += 1
                disagreements.append(f"{where}: refused: {error}")
                continue
            results = [("hosts", list(ours.hosts) == list(hostvars))]
            for name, expected in hostvars.items():
                got = ours.hosts[name].vars if name in ours.hosts else None
                same = got is not None and plain(got) == plain(expected)
                results.append((f"vars of {name}", same))
            for pattern in patterns(manager, rng):
                limits += 1
                theirs = ansible_limit(manager, pattern)
                results.append((f"--limit {pattern!r}", ours_limit(ours, pattern) == theirs))
            for what, same in results:
                checks += 1
                agreed += same
                if not same:
                    disagreements.append(f"{where}: {what}")
    print(f"{inventories} inventories, {limits} --limit patterns: {agreed}/{checks} checks agree")
    for line in disagreements[: args.show]:
        print(f"  {line}")
    return 0 if agreed == checks else 1


if __name__ == "__main__":
    sys.exit(main())
