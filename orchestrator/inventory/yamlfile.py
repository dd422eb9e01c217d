"""YAML, JSON and TOML inventory files, as ansible-core's `yaml` and `toml` plugins read
them."""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path
from typing import Any

import yaml

from orchestrator.inventory.builder import Builder, Group, var_name
from orchestrator.inventory.common import SEEN_LIMIT, EncryptedValue, InvalidValue, host_pattern

try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

from orchestrator.errors import InventoryError

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
                if shared is None and len(strings) < SEEN_LIMIT:
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


def load_data(text: str, path: Path) -> Any:
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


def parse_toml(builder: Builder, path: Path, text: str) -> None:
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
    parse_yaml(builder, path, groups)


def parse_yaml(builder: Builder, path: Path, data: dict[Any, Any]) -> None:
    try:
        for name, body in data.items():
            _yaml_group(builder, name, body)
    except InvalidValue as exc:
        raise InventoryError(f"{path}: {exc}") from None


def _yaml_group(builder: Builder, name: Any, body: Any) -> Any:
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
            raise InvalidValue(
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


def _yaml_hosts(builder: Builder, group: Group, pattern: Any, variables: Any) -> None:
    if not isinstance(pattern, str):
        raise InvalidValue(f"host pattern {pattern!r} must be a string: quote numbers")
    variables = variables or {}
    if not isinstance(variables, dict):
        raise InvalidValue(
            f"host {pattern!r}: variables must be a mapping, got {type(variables).__name__}"
        )
    for key in variables:
        var_name(key)
    names, port = host_pattern(pattern)
    variables = builder.same_vars(variables)
    for name in names:
        builder.add_host(name, group, port).add_vars(variables)
