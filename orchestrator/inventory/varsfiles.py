"""`group_vars/` and `host_vars/` beside an inventory source, as Ansible finds them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from orchestrator.errors import InventoryError
from orchestrator.inventory.common import VARS_SUFFIXES, read_text
from orchestrator.inventory.yamlfile import load_data

# ---------------------------------------------------------------------------------------------
# group_vars/ and host_vars/


def vars_base(source: Path) -> str:
    """The directory whose group_vars/ and host_vars/ apply to `source`."""
    absolute = os.path.abspath(source)
    return os.path.realpath(absolute if os.path.isdir(absolute) else os.path.dirname(absolute))


class VarsFiles:
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
                for order, suffix in enumerate(("", *VARS_SUFFIXES)):
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
        elif os.path.isfile(path) and (not suffix or suffix in VARS_SUFFIXES):
            found.append(path)
    return found


def _read_vars_file(path: str) -> dict[str, Any]:
    data = load_data(read_text(Path(path)), Path(path))
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
