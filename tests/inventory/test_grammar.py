"""The inventory grammar piece by piece: host ranges, INI values and the YAML reader, each compared
with what Ansible (or PyYAML) reads where that is installed."""

from __future__ import annotations

import re
import string
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.inventory.common import expand_host_range, parse_address
from orchestrator.inventory.yamlfile import _fast_yaml, _NotPlain, _YamlLoader

# Host ranges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("node", ["node"]),
        ("node[1:3]", ["node1", "node2", "node3"]),
        ("node[01:03].x", ["node01.x", "node02.x", "node03.x"]),
        ("n[1:10:4]", ["n1", "n5", "n9"]),
        ("n[:2]", ["n0", "n1", "n2"]),
        ("[a:c]-db", ["a-db", "b-db", "c-db"]),
        ("r[y:B]", ["ry", "rz", "rA", "rB"]),
        ("r[1:2]c[a:b]", ["r1ca", "r1cb", "r2ca", "r2cb"]),
        ("n[3:1]", []),
    ],
)
def test_expand_host_range(pattern: str, expected: list[str]) -> None:
    assert expand_host_range(pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("node[01:", "unbalanced bracket"),
        ("node]1:2[", "unbalanced bracket"),
        ("node[1]", "begin:end"),
        ("node[1:2:3:4]", "begin:end"),
        ("node[1:]", "end value"),
        ("node[01:100]", "equal lengths"),
        ("node[c:a]", "begin <= end"),
        ("node[a:9]", "invalid host range"),
        ("node[1:5:0]", "invalid host range"),
    ],
)
def test_bad_host_range(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        expand_host_range(pattern)


@given(
    head=st.text(string.ascii_lowercase + "-.", max_size=5),
    first=st.integers(0, 60),
    count=st.integers(0, 40),
    step=st.integers(1, 7),
    width=st.integers(0, 3),
)
def test_numeric_ranges(head: str, first: int, count: int, step: int, width: int) -> None:
    last = first + count
    digits = max(len(str(last)), width)
    begin = str(first).zfill(digits) if width else str(first)
    end = str(last).zfill(digits) if width else str(last)
    names = expand_host_range(f"{head}[{begin}:{end}:{step}]x")
    fill = digits if width and begin.startswith("0") and len(begin) > 1 else 0
    assert names == [f"{head}{str(n).zfill(fill)}x" for n in range(first, last + 1, step)]


@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(1, 3)), min_size=1, max_size=3
    )
)
def test_ranges_multiply(ranges: list[tuple[int, int, int]]) -> None:
    pattern = "".join(f"p{first}[{first}:{first + span}:{step}]" for first, span, step in ranges)
    expected = 1
    for _, span, step in ranges:
        expected *= len(range(0, span + 1, step))
    names = expand_host_range(pattern)
    assert len(names) == expected
    assert len(set(names)) == expected


@settings(deadline=None)
@given(
    st.from_regex(
        r"[a-c]{0,3}\[[0-9a-dA-D]{0,3}:[0-9a-dA-D]{0,3}(:[0-9]{1,2})?\][a-c.]{0,3}", fullmatch=True
    )
)
def test_ranges_match_ansible(pattern: str) -> None:
    ansible = pytest.importorskip("ansible.plugins.inventory")
    try:
        expected = ansible.expand_hostname_range(pattern)
    except Exception:  # any failure in Ansible must be a ValueError here
        with pytest.raises(ValueError):
            expand_host_range(pattern)
    else:
        assert expand_host_range(pattern) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("node1", ("node1", None)),
        ("node1:2222", ("node1", 2222)),
        ("node[01:10].x:22", ("node[01:10].x", 22)),
        ("192.0.2.1:22", ("192.0.2.1", 22)),
        ("[fe80::1]:22", ("fe80::1", 22)),
        ("fe80::1", ("fe80::1", None)),
        ("host%x:22", None),
        ("node-:22", None),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int | None] | None) -> None:
    assert parse_address(text) == expected


# INI values ------------------------------------------------------------------------------------


@settings(deadline=None)
@given(
    st.one_of(
        st.text(string.ascii_letters + string.digits + "._-+:=/'\"[]{}(), ", max_size=12),
        st.from_regex(r"-?[0-9]{1,4}(\.[0-9]{0,3}){0,3}", fullmatch=True),
        st.sampled_from(["True", "None", "...", "1+2j", "b'x'", "0123", "00", "0x1F", "1_000"]),
    )
)
def test_ini_values_match_ansible(text: str) -> None:
    pytest.importorskip("ansible")
    from ansible._internal._datatag._tags import Origin
    from ansible.plugins.inventory.ini import InventoryModule

    from orchestrator.inventory.ini import _ini_value

    reference = InventoryModule()
    reference._origin = Origin(path="/hosts", line_num=1)
    try:
        expected = reference._parse_value(text)
    except Exception:  # Ansible rejects the file; so must we
        with pytest.raises(Exception, match="cannot parse value"):
            _ini_value(text)
    else:
        assert _shape(_ini_value(text)) == _shape(expected)


def _shape(value: Any) -> Any:
    """A value with its JSON-ish type at every level (so 1, 1.0 and True differ)."""
    if isinstance(value, dict):
        return ("dict", [(key, _shape(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("list", [_shape(item) for item in value])
    kind = next(kind for kind in (bool, int, float, str, type(None)) if isinstance(value, kind))
    return (kind.__name__, value)


# YAML ------------------------------------------------------------------------------------------

YAML_SNIPPETS = [
    "a: &x {b: 1, c: [1, 2.5, yes, No, ~, 2024-01-02, 0x1F, 017, 1_000, '1', -.inf, 1:30]}\n"
    "d: *x\ne: [*x, {f: g}]\n? 1\n: int key\nyes: bool key\n'': empty\nnone:\n",
    "multi: |\n  line1\n  line2\nfolded: >\n  a\n  b\nlist:\n- a\n- - nested\n  - list\n",
    "",
    "# only a comment\n",
    "plain scalar",
    "- a\n- b\n",
    "a: &r [*r]\n",
    "x: !unsafe 'y'\n",
    "base: &b {a: 1}\nmerged:\n  <<: *b\n  c: 2\n",
    "--- a\n--- b\n",
    "? [a]\n: b\n",
    "a: *nope\n",
    "a: &x 1\nb: &x 2\n",
    "a: !!str 1\nb: !!binary aGk=\n",
    "a: [1, 2\n",
    "dup: 1\ndup: 2\n",
]


@pytest.mark.parametrize("text", YAML_SNIPPETS)
def test_fast_yaml_reads_what_pyyaml_reads(text: str) -> None:
    try:
        expected = yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError:
        with pytest.raises((yaml.YAMLError, _NotPlain)):
            _fast_yaml(text)
        return
    try:
        value = _fast_yaml(text)
    except _NotPlain:
        return  # left to PyYAML
    assert repr(value) == repr(expected)


yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.sampled_from(["yes", "off", "~", "1e3", "0o17", "2024-01-02", "1:30", "<<", "=", "0x1F"]),
)


@settings(deadline=None)
@given(
    st.recursive(
        yaml_scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(yaml_scalars, inner, max_size=4)
        ),
        max_leaves=20,
    ),
    st.sampled_from([False, True, None]),
)
def test_fast_yaml_round_trips_like_pyyaml(data: Any, flow: bool | None) -> None:
    text = yaml.safe_dump(data, default_flow_style=flow, allow_unicode=True)
    expected = yaml.load(text, Loader=_YamlLoader)
    try:
        value = _fast_yaml(text)
    except _NotPlain:
        return
    assert repr(value) == repr(expected)
