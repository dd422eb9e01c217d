"""INI inventory files, as ansible-core's `ini` plugin reads them."""

from __future__ import annotations

import ast
import shlex
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import InventoryError
from orchestrator.inventory.builder import Builder, Group
from orchestrator.inventory.common import (
    INI_CONSTANTS,
    INI_STATES,
    PLAIN_WORD,
    SEEN_LIMIT,
    SHAREABLE,
    InvalidValue,
    host_pattern,
)
from orchestrator.util.fsutil import MiB

# INI ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """A group named by `[g:vars]` or in `[p:children]` before its own section."""

    line: int
    state: str
    parents: list[str]


def parse_ini(builder: Builder, path: Path, text: str) -> None:
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
                    raise InvalidValue(
                        f"invalid section entry {line!r}: no spaces or other invalid characters "
                        "are allowed in a section name"
                    )
            if state == "hosts":
                _ini_hosts(builder, group, line, seen)
            elif state == "vars":
                key, sep, value = line.partition("=")
                if not sep:
                    raise InvalidValue("expected key=value")
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
                raise InvalidValue(f"section [{name}:vars] is for undefined group {name!r}")
            raise InvalidValue(
                f"section [{decl.parents[-1]}:children] includes undefined group {name!r}"
            )
    except InvalidValue as exc:
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
    builder: Builder, pending: dict[str, _Pending], section: tuple[str, str], number: int
) -> tuple[Group, str]:
    name, state = section
    if state not in INI_STATES:
        raise InvalidValue(f"section [{name}:{state}] has unknown type {state!r}")
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
        raise InvalidValue("expected a group name")
    return name


def _ini_hosts(builder: Builder, group: Group, line: str, seen: _Seen) -> None:
    if '"' in line or "'" in line or "\\" in line:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InvalidValue(f"cannot parse the host definition: {exc}") from None
    else:  # what shlex does without quotes: "#" starts a comment, even inside a word
        cut = line.find("#")
        tokens = [t for t in (line if cut < 0 else line[:cut]).replace("\t", " ").split(" ") if t]
    if not tokens:
        raise InvalidValue("expected a host definition")
    pattern = tokens[0]
    names, port = host_pattern(pattern)
    if port is None and pattern.rstrip().endswith(":"):
        raise InvalidValue(f"invalid host pattern {pattern!r}: a trailing ':' must give a port")
    if "---" in pattern and any(name.strip() == "---" for name in names):
        raise InvalidValue(f"invalid host pattern {pattern!r}: '---' is a sign this is a YAML file")
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


def _ini_variables(tokens: tuple[str, ...], seen: _Seen) -> dict[str, Any]:
    found = seen.lines.get(tokens)
    if found is not None:
        return found
    # One loop, no call per word: at 100k hosts that each have their own address and serial,
    # most words are new and this is most of the reading.
    found = {}
    words = seen.words
    shareable = True
    for token in tokens:
        pair = words.get(token)
        if pair is None:
            pair = _ini_assignment(token, seen)
        key, value = pair
        found[key] = value
        shareable = shareable and type(value) in SHAREABLE
    if shareable and len(seen.lines) < SEEN_LIMIT:
        seen.lines[tokens] = found
    return found


def _ini_assignment(token: str, seen: _Seen) -> tuple[str, Any]:
    """A `key=value` word not seen before (remembered while there is room)."""
    key, sep, value = token.partition("=")
    if not sep:
        raise InvalidValue("expected key=value host variable assignments after the host name")
    found = sys.intern(key), _ini_value(value)
    if type(found[1]) in SHAREABLE and len(seen.words) < SEEN_LIMIT:
        seen.words[token] = found
    return found


def _ini_value(text: str) -> Any:
    """An INI value as Ansible reads it: a Python literal when it is one, else the string."""
    if text in INI_CONSTANTS:
        return INI_CONSTANTS[text]
    if not text or PLAIN_WORD.fullmatch(text):
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
        raise InvalidValue(f"cannot parse a value: {exc}") from None
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
