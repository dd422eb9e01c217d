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

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import InventoryError
from orchestrator.inventory.builder import Builder
from orchestrator.inventory.common import (
    IGNORED_NAMES,
    IGNORED_SUFFIXES,
    SCRIPT_TIMEOUT_SECONDS,
    YAML_SUFFIXES,
    InvalidValue,
    parse_address,
    read_text,
)
from orchestrator.inventory.ini import parse_ini
from orchestrator.inventory.script import run_script, script_inventory, script_json
from orchestrator.inventory.varsfiles import VarsFiles, vars_base
from orchestrator.inventory.yamlfile import load_data, parse_toml, parse_yaml
from orchestrator.models import Inventory
from orchestrator.util.memory import gc_paused

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
    builder = Builder()
    path = Path(sources[0])
    data = script_json(path, done.stdout.decode(errors="replace"), "--list")
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: ansible-inventory printed no JSON object")
    try:
        script_inventory(builder, path, _plain(data))
    except InvalidValue as exc:
        raise InventoryError(f"{path}: {exc}") from None
    builder.reconcile()
    return builder.build(tuple(str(source) for source in sources), VarsFiles([]))


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
    builder = Builder()
    for source in sources:
        if is_host_list(source):
            _parse_host_list(builder, str(source))
            continue
        if not os.path.exists(source):
            raise InventoryError(f"{source}: no such inventory file or directory")
        if not _parse_source(builder, Path(source)):
            what = "no inventory files in" if os.path.isdir(source) else "not a regular file or"
            raise InventoryError(f"{source}: {what} directory")
    builder.reconcile()
    # A host list's group_vars/ and host_vars/ are the working directory's, as in Ansible.
    vars_dirs = [vars_base(Path(source)) for source in sources]
    return builder.build(tuple(str(source) for source in sources), VarsFiles(vars_dirs))


def is_host_list(source: Path | str) -> bool:
    """`-i 'web1,web2:2222,'`: a comma-separated list of hosts, as Ansible's host_list plugin
    reads a source that has a comma and is no existing path."""
    return "," in str(source) and not os.path.exists(source)


def _parse_host_list(builder: Builder, source: str) -> None:
    """The hosts of a host list, in `ungrouped`; each a name or address with an optional
    `:port`, no ranges and no variables (as Ansible's host_list)."""
    for entry in (part.strip() for part in source.split(",")):
        if not entry:
            continue
        parsed = parse_address(entry)
        if parsed is None or "[" in parsed[0]:
            raise InventoryError(f"-i {source!r}: {entry!r} is not a host name or address")
        builder.add_host(parsed[0], builder.ungrouped, parsed[1])


# ---------------------------------------------------------------------------------------------
# Sources: directories, scripts, YAML and INI files


def _ignored(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES)


def _parse_source(builder: Builder, path: Path) -> bool:
    """Add one source to `builder`; False when a directory held nothing to read."""
    if path.is_dir():
        parsed = False
        for name in sorted(os.listdir(path)):
            if not _ignored(name):
                parsed = _parse_source(builder, path / name) or parsed
        return parsed
    if not path.is_file():
        return False
    if os.access(path, os.X_OK) and run_script(builder, path):
        return True
    _parse_static(builder, path)
    return True


def _parse_static(builder: Builder, path: Path) -> None:
    suffix = path.suffix
    text = read_text(path)
    if suffix == ".toml":
        parse_toml(builder, path, text)
        return
    if suffix and suffix not in YAML_SUFFIXES:
        parse_ini(builder, path, text)
        return
    # Like Ansible's plugin chain: YAML (JSON first) when it parses to a YAML inventory, else INI.
    try:
        data = load_data(text, path)
    except InventoryError as exc:
        yaml_error: InventoryError | None = exc if suffix else None
    else:
        if isinstance(data, dict) and data and not data.get("plugin"):
            parse_yaml(builder, path, data)
            return
        if isinstance(data, dict) and data.get("plugin"):
            raise _PluginConfig
        yaml_error = _yaml_shape_error(path, data) if suffix else None
    try:
        parse_ini(builder, path, text)
    except InventoryError:
        if yaml_error is not None:
            raise yaml_error from None
        raise


def _yaml_shape_error(path: Path, data: Any) -> InventoryError:
    if not data:
        return InventoryError(f"{path}: empty YAML inventory")
    if isinstance(data, dict):
        return InventoryError(f"{path}: inventory plugin configuration files are not supported")
    return InventoryError(
        f"{path}: a YAML inventory must be a mapping of groups, got {type(data).__name__}"
    )
