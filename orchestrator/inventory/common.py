"""What every inventory reader shares: limits, the names Ansible skips, the host grammar."""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput, InventoryError
from orchestrator.util.fsutil import MiB, read_input

SCRIPT_TIMEOUT_SECONDS = 120.0

# Which files of an inventory directory are read (Ansible's INVENTORY_IGNORE_EXTS defaults).
IGNORED_NAMES = frozenset({"group_vars", "host_vars", "vars_plugins"})
IGNORED_SUFFIXES = (
    ".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry",
)  # fmt: skip
YAML_SUFFIXES = frozenset({".yml", ".yaml", ".json"})
VARS_SUFFIXES = (".yml", ".yaml", ".json")  # in the order Ansible tries them, after no suffix
INVENTORY_LIMIT = 512 * MiB  # an INI inventory of 100k hosts is ~5 MB

INI_STATES = frozenset({"hosts", "children", "vars"})
INI_CONSTANTS: dict[str, Any] = {"True": True, "False": False, "None": None}
# A value of these characters that starts with a letter or "_" is never a Python literal (bar
# the three constants above), so ast.literal_eval would hand it back unchanged.
PLAIN_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")

# Host address grammar of ansible.parsing.utils.addresses, used only to split off a `:port`.
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_LABEL = rf"(?:\w|{_ALNUM_RANGE})(?:[\w-]|{_ALNUM_RANGE})*(?<![_-])"
HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.IGNORECASE)
HEX_RANGE = re.compile(r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]", re.IGNORECASE)
BRACKETED_HOSTPORT = re.compile(r"\[(.+)\]:([0-9]+)")
HOSTPORT = re.compile(r"((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)")


class InvalidValue(Exception):
    """A problem in one inventory file; the caller adds the file name and line."""


@dataclass(frozen=True, slots=True)
class EncryptedValue:
    """A `!vault` value: kept as ciphertext, since this tool never needs vaulted secrets."""

    ciphertext: str


SHAREABLE = frozenset({str, int, float, bool, type(None)})


SEEN_LIMIT = 4096  # distinct words, sets of words, texts remembered per file


def host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """The host names and port of one host entry (`name`, `name:port`, `node[01:20]`...)."""
    host, port = (parse_address(pattern) or (pattern, None)) if ":" in pattern else (pattern, None)
    if "[" not in host:
        return [host], port
    try:
        return expand_host_range(host), port
    except ValueError as exc:
        raise InvalidValue(str(exc)) from None


def parse_address(text: str) -> tuple[str, int | None] | None:
    """`text` as (host, port) when it is a host name or address with an optional `:port`.

    Host ranges such as `node[01:20]` are allowed in the host part. None when `text` is not a
    host identifier at all (then Ansible takes the whole text as the host name, without a port).
    """
    address, port = text, None
    for pattern in (BRACKETED_HOSTPORT, HOSTPORT):
        match = pattern.fullmatch(address)
        if match:
            address, port = match.group(1), int(match.group(2))
    if HOSTNAME.fullmatch(address) or _is_ipv6(address):
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
    except InvalidValue as exc:
        raise ValueError(f"{exc} in {pattern!r}") from None
    items = list(items)
    tails = expand_host_range(tail) if items else []  # Ansible never looks past an empty range
    return [head + item + rest for item in items for rest in tails]


def _letter_range(first: str, last: str, step: int) -> list[str]:
    # Ansible looks the bounds up with str.index in a-zA-Z, so "ab" is a valid bound; mirror it.
    begin, end = string.ascii_letters.index(first), string.ascii_letters.index(last)
    if begin > end:
        raise InvalidValue("host range must have begin <= end")
    return list(string.ascii_letters[begin : end + 1 : step])


def _is_ipv6(address: str) -> bool:
    """An IPv6 address, hexadecimal ranges allowed (`fe80::[a:f]`), without a zone index."""
    if ":" not in address or "%" in address:
        return False
    try:
        ipaddress.IPv6Address(HEX_RANGE.sub("0", address))
    except ValueError:
        return False
    return True


def read_text(path: Path) -> str:
    try:
        text = read_input(path, INVENTORY_LIMIT, "inventory file").decode()
    except UnicodeDecodeError as exc:
        raise InventoryError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except BadInput as exc:
        raise InventoryError(str(exc)) from None
    if text.startswith("$ANSIBLE_VAULT;"):
        raise InventoryError(f"{path}: vault-encrypted files are not supported")
    return text
