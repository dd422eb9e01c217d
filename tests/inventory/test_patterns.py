"""Host patterns (`--limit`): unit tests and comparisons with Ansible's own evaluation.

The comparisons ask Ansible which hosts each pattern selects (one `ansible-playbook --list-hosts`
run with a play per pattern, and `ansible all --limit` for the order) and skip when ansible-core is
not installed.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import PatternError
from orchestrator.inventory.patterns import select_hosts, split_pattern
from orchestrator.inventory.read import load_inventory
from orchestrator.models import Inventory

FLEET40 = Path(__file__).resolve().parents[2] / "inventories" / "fleet40"

needs_ansible = pytest.mark.skipif(
    shutil.which("ansible-playbook") is None or shutil.which("ansible") is None,
    reason="ansible-core is not installed",
)

SMALL = """\
lonely.ex.invalid
[web]
web1.ex.invalid
web2.ex.invalid
web3.ex.invalid
[db]
db1.ex.invalid
db2.ex.invalid
[canary]
web2.ex.invalid
db1.ex.invalid
[stack:children]
web
db
[api]
api
[api-edge]
edge1.ex.invalid
"""


@pytest.fixture(scope="module")
def fleet() -> Inventory:
    return load_inventory([FLEET40])


@pytest.fixture(scope="module")
def small_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("small") / "hosts.ini"
    path.write_text(SMALL)
    return path


@pytest.fixture(scope="module")
def small(small_path: Path) -> Inventory:
    return load_inventory([small_path])


def _env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_NOCOLOR="true",
    )
    return env


def ansible_selections(inventory: Path, patterns: list[str], workdir: Path) -> list[set[str]]:
    """The hosts Ansible selects for each pattern, as sets (one play per pattern)."""
    plays = [
        {"name": f"case-{index}", "hosts": pattern, "gather_facts": False, "tasks": []}
        for index, pattern in enumerate(patterns)
    ]
    playbook = workdir / "patterns.yml"
    playbook.write_text(json.dumps(plays))
    done = subprocess.run(
        ["ansible-playbook", "-i", str(inventory), "--list-hosts", str(playbook)],
        cwd=workdir,
        env=_env(workdir / ".ansible"),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    selections: list[set[str]] = []
    for block in re.split(r"\n\s*play #\d+ ", done.stdout)[1:]:
        lines = block.splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip().startswith("hosts ("))
        selections.append({line.strip() for line in lines[start + 1 :] if line.strip()})
    assert len(selections) == len(patterns)
    return selections


def ansible_limit(inventory: Path, pattern: str, workdir: Path) -> list[str] | None:
    """`ansible all --limit PATTERN --list-hosts`, in order; None when it selects nothing."""
    done = subprocess.run(
        ["ansible", "all", "-i", str(inventory), "--limit", pattern, "--list-hosts"],
        cwd=workdir,
        env=_env(workdir / ".ansible"),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        assert "no hosts" in done.stderr, done.stderr
        return None
    return [line.strip() for line in done.stdout.splitlines()[1:] if line.strip()]


def ours(inventory: Inventory, pattern: str) -> set[str] | None:
    try:
        return set(select_hosts(inventory, pattern))
    except PatternError:
        return None


# Patterns where Ansible warns about a term that names nothing and we refuse the whole pattern
# (with a comma, "zone_b:&workers" is one term: a group name that does not exist).
STRICT = {"zone_a:nosuch", "web,nosuch", "!nosuch", "api:&nosuch", "zone_a,zone_b:&workers"}

FLEET_PATTERNS = [
    "all",
    "*",
    "masters",
    "zone_a:&masters",
    "zone_a,zone_b:&workers",
    "k8s_cluster:!zone_c",
    "!masters:zone_b",
    "!masters",
    "&zone_a",
    "zone_a:&masters:&zone_b",
    "node-a0*",
    "node-?0[12].k8s.invalid",
    "*.k8s.invalid:!node-b*",
    "~node-[ab]0[13]\\.k8s",
    "~node-c1",
    "zone_*",
    "zone_b,node-c13.k8s.invalid",
    "node-c13.k8s.invalid:node-a01.k8s.invalid",
    "workers[0]",
    "workers[-1]",
    "workers[2:4]",
    "workers[30:]",
    "workers[3:0]",
    "zone_b:zone_a",
    "zone_a:nosuch",
    "!nosuch",
    "masters:&zone_z*",
    "ungrouped",
    "zone_c:!node-c05*:!masters",
]

SMALL_PATTERNS = [
    "api",
    "api*",
    "api-*",
    "api:&nosuch",
    "web,nosuch",
    "stack:!canary",
    "canary:&web",
    "ungrouped",
    "lonely.ex.invalid,web1.ex.invalid",
    "~^(web|db)1",
    "*1*",
    "web[1]",
    "stack[1:3]",
    "*[2:6]",
    "*b*[1]",
]


@needs_ansible
def test_fleet_patterns_match_ansible(fleet: Inventory, tmp_path: Path) -> None:
    expected = ansible_selections(FLEET40, FLEET_PATTERNS, tmp_path)
    for pattern, theirs in zip(FLEET_PATTERNS, expected, strict=True):
        wanted = None if pattern in STRICT or not theirs else theirs
        assert ours(fleet, pattern) == wanted, pattern


@needs_ansible
def test_small_patterns_match_ansible(small: Inventory, small_path: Path, tmp_path: Path) -> None:
    expected = ansible_selections(small_path, SMALL_PATTERNS, tmp_path)
    for pattern, theirs in zip(SMALL_PATTERNS, expected, strict=True):
        wanted = None if pattern in STRICT or not theirs else theirs
        assert ours(small, pattern) == wanted, pattern


def random_patterns(inventory: Inventory, count: int, seed: int) -> list[str]:
    """Patterns of known names, globs and regexes, joined with one kind of separator each."""
    rng = random.Random(seed)
    names = [*inventory.groups, *rng.sample(list(inventory.hosts), 8)]
    globs = ["node-a*", "node-?1?.k8s.invalid", "*0[13].*", "zone_[ab]", "*ers", "node-[!a]*"]
    regexes = ["~node-(a|c)1", "~.*2\\.k8s", "~zone"]
    patterns = []
    for _ in range(count):
        terms = [
            rng.choice(["", "", "&", "!"]) + rng.choice(rng.choice([names, names, globs, regexes]))
            for _ in range(rng.randint(1, 4))
        ]
        patterns.append(rng.choice([",", ":"]).join(terms))
    return patterns


@needs_ansible
def test_random_patterns_match_ansible(fleet: Inventory, tmp_path: Path) -> None:
    patterns = random_patterns(fleet, 200, seed=20240611)
    expected = ansible_selections(FLEET40, patterns, tmp_path)
    for pattern, theirs in zip(patterns, expected, strict=True):
        assert ours(fleet, pattern) == (theirs or None), pattern


@needs_ansible
def test_limit_order_matches_ansible(fleet: Inventory, tmp_path: Path) -> None:
    patterns = ["zone_c:zone_a", "node-b1*,masters", "workers:!zone_b", "zone_q*"]
    with ThreadPoolExecutor(len(patterns)) as pool:
        expected = list(pool.map(lambda p: ansible_limit(FLEET40, p, tmp_path), patterns))
    for pattern, theirs in zip(patterns, expected, strict=True):
        try:
            got: list[str] | None = select_hosts(fleet, pattern)
        except PatternError:
            got = None
        assert got == theirs, pattern


# ---------------------------------------------------------------------------------------------
# Without Ansible


@pytest.mark.parametrize(
    ("pattern", "terms"),
    [
        ("web", ["web"]),
        ("web:db", ["web", "db"]),
        ("web:&db:!canary", ["web", "&db", "!canary"]),
        ("web, db ,, canary", ["web", "db", "canary"]),
        ("web:db,canary", ["web:db", "canary"]),  # with commas, colons do not separate
        ("web db", ["web", "db"]),
        ("node[01:10]", ["node[01:10]"]),
        ("web[0:2]:db", ["web[0:2]", "db"]),
        ("fe80::1", ["fe80::1"]),
        ("node1:22", ["node1:22"]),
        ("", []),
    ],
)
def test_split_pattern(pattern: str, terms: list[str]) -> None:
    assert split_pattern(pattern) == terms


def test_none_selects_everything_in_inventory_order(fleet: Inventory) -> None:
    assert select_hosts(fleet, None) == list(fleet.hosts)


def test_result_is_in_inventory_order(fleet: Inventory) -> None:
    hosts = select_hosts(fleet, "zone_c:masters:zone_a")
    assert hosts == [
        name for name in fleet.hosts if name[5] in "ac" or name.endswith("01.k8s.invalid")
    ]


def test_unions_then_intersections_then_exclusions(small: Inventory) -> None:
    expected = ["web1.ex.invalid", "web3.ex.invalid"]
    assert select_hosts(small, "web:!canary") == expected
    assert select_hosts(small, "!canary:web") == expected
    assert select_hosts(small, "!canary:&stack:web:db") == [*expected, "db2.ex.invalid"]


def test_only_exclusions_start_from_all(small: Inventory) -> None:
    assert select_hosts(small, "!stack:!api") == ["lonely.ex.invalid", "edge1.ex.invalid"]


def test_a_host_and_a_group_of_the_same_name(small: Inventory) -> None:
    assert select_hosts(small, "api") == ["api"]
    assert select_hosts(small, "api*") == ["api", "edge1.ex.invalid"]


def test_subscripts(fleet: Inventory) -> None:
    workers = [name for name in fleet.hosts if name in fleet.groups["workers"].hosts]
    assert select_hosts(fleet, "workers[0]") == [workers[0]]
    assert select_hosts(fleet, "workers[1:2]") == sorted(workers[1:3], key=list(fleet.hosts).index)
    with pytest.raises(PatternError, match=r"subscripted pattern 'workers\[99\]'"):
        select_hosts(fleet, "workers[99]")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("zone_q", "host pattern 'zone_q' matches no host or group"),
        ("zone_a:!canry", "host pattern 'canry' matches no host or group"),
        ("zone_a:&masters:&zone_b", "host pattern 'zone_a:&masters:&zone_b' selects no hosts"),
        ("node-z*", "host pattern 'node-z\\*' selects no hosts"),
        ("~node-(", "invalid host pattern '~node-\\('"),
        ("", "empty host pattern ''"),
        (" , ", "empty host pattern"),
        ("zone_a:!", "empty term"),
    ],
)
def test_pattern_errors(fleet: Inventory, pattern: str, message: str) -> None:
    with pytest.raises(PatternError, match=message) as caught:
        select_hosts(fleet, pattern)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


@settings(deadline=None)
@given(st.lists(st.sampled_from(["zone_a", "zone_b", "zone_c", "masters", "workers"]), min_size=1))
def test_union_is_the_union_of_its_terms(fleet: Inventory, groups: list[str]) -> None:
    union = set().union(*(select_hosts(fleet, group) for group in groups))
    assert set(select_hosts(fleet, ",".join(groups))) == union
    assert set(select_hosts(fleet, ":".join(groups))) == union


@settings(deadline=None)
@given(
    st.sampled_from(["zone_a", "zone_b", "zone_c", "masters", "workers", "all"]),
    st.sampled_from(["zone_a", "zone_b", "zone_c", "masters", "workers"]),
)
def test_intersection_and_exclusion_partition(fleet: Inventory, left: str, right: str) -> None:
    base = set(select_hosts(fleet, left))
    both = set(ours(fleet, f"{left}:&{right}") or ())
    rest = set(ours(fleet, f"{left}:!{right}") or ())
    assert both | rest == base
    assert not both & rest
