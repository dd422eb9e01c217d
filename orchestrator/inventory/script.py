"""Executable inventory scripts (`--list`, `--host`), as ansible-core's `script` plugin
runs them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from orchestrator.errors import InventoryError
from orchestrator.inventory.builder import Builder, var_name
from orchestrator.inventory.common import SCRIPT_TIMEOUT_SECONDS, InvalidValue

# Scripts --------------------------------------------------------------------------------------


def run_script(builder: Builder, path: Path) -> bool:
    """Run an executable inventory; False when the file cannot be executed and has no `#!`."""
    try:
        listing = _script_output(path, "--list")
    except OSError as exc:
        with open(path, "rb") as handle:
            if handle.read(2) != b"#!":
                return False
        raise InventoryError(f"{path}: cannot run inventory script: {exc.strerror}") from None
    data = script_json(path, listing, "--list")
    if not isinstance(data, dict):
        raise InventoryError(f"{path}: inventory script must print a JSON object")
    try:
        script_inventory(builder, path, data)
    except InvalidValue as exc:
        raise InventoryError(f"{path}: {exc}") from None
    return True


def script_inventory(builder: Builder, path: Path, data: dict[str, Any]) -> None:
    hostvars: dict[str, Any] | None = None
    listed: dict[str, None] = {}  # hosts named in groups: only those get host vars
    for name, body in data.items():
        if name == "_meta":
            hostvars = body.get("hostvars") if isinstance(body, dict) else None
            if not isinstance(hostvars, dict):
                raise InvalidValue("'_meta.hostvars' must be a JSON object")
        else:
            _script_group(builder, name, body, listed)
    for name in listed:
        if hostvars is not None:
            variables = hostvars.get(name, {})
        else:
            output = _script_output(path, "--host", name)
            variables = script_json(path, output, f"--host {name}") if output.strip() else {}
        if not isinstance(variables, dict):
            raise InvalidValue(f"variables of host {name!r} must be a JSON object")
        for key in variables:
            var_name(key)
        builder.hosts[name].add_vars(variables)


def _script_group(builder: Builder, name: str, body: Any, listed: dict[str, None]) -> None:
    group = builder.add_group(name)
    if not isinstance(body, dict):
        body = {"hosts": body}
    elif not any(key in body for key in ("hosts", "vars", "children")):
        body = {"hosts": [name], "vars": body}  # Ansible's legacy form: the group is its host
    if "hosts" in body:
        if not isinstance(body["hosts"], list):
            raise InvalidValue(f"'{name}.hosts' must be a JSON array")
        for host in body["hosts"]:
            builder.add_host(host, group)
            listed[host] = None
    if "vars" in body:
        if not isinstance(body["vars"], dict):
            raise InvalidValue(f"'{name}.vars' must be a JSON object")
        for key, value in body["vars"].items():
            builder.set_group_var(group, key, value)
    if "children" in body:
        if not isinstance(body["children"], list | dict):
            raise InvalidValue(f"'{name}.children' must be a JSON array")
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


def script_json(path: Path, output: str, args: str) -> Any:
    try:
        return json.loads(output)
    except ValueError as exc:
        raise InventoryError(
            f"{path}: inventory script {args} printed invalid JSON: {exc}"
        ) from None
