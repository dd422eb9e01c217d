"""Inventory loading: unit tests, error reporting, and comparisons with `ansible-inventory`.

The comparisons run the real Ansible CLI on the same files and require identical hosts, host order,
groups with their members, merged host variables and group variables; they skip when ansible-core
is not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import string
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.errors import BadInput, InventoryError
from orchestrator.inventory.builder import group_hosts
from orchestrator.inventory.common import EncryptedValue, expand_host_range, parse_address
from orchestrator.inventory.ini import _lines
from orchestrator.inventory.read import load_inventory
from orchestrator.inventory.yamlfile import _fast_yaml, _NotPlain, _YamlLoader
from orchestrator.models import Artifact, Inventory, WaveOptions
from orchestrator.plan.planner import build_plan

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "inventories"
BAD = Path(__file__).resolve().parents[1] / "data" / "inventories"

needs_ansible = pytest.mark.skipif(
    shutil.which("ansible-inventory") is None or shutil.which("ansible") is None,
    reason="ansible-core is not installed",
)


# ---------------------------------------------------------------------------------------------
# Running Ansible as the reference


@dataclass
class View:
    """What an inventory looks like from outside: the fields `ansible-inventory` prints."""

    order: list[str]
    groups: dict[str, dict[str, list[str]]]
    hostvars: dict[str, Any]
    groupvars: dict[str, Any]


def _ansible_env(home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_NOCOLOR="true",
    )
    return env


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=_ansible_env(cwd / ".ansible"), capture_output=True, text=True
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def _unsafe_free(value: Any) -> Any:
    """Ansible prints `!unsafe` strings as {"__ansible_unsafe": text}; compare the text."""
    if isinstance(value, dict):
        if list(value) == ["__ansible_unsafe"]:
            return value["__ansible_unsafe"]
        return {key: _unsafe_free(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unsafe_free(item) for item in value]
    return value


def ansible_view(sources: list[Path], cwd: Path) -> View:
    inventory_args = [arg for source in sources for arg in ("-i", str(source))]
    commands = [
        ["ansible-inventory", *inventory_args, "--list"],
        ["ansible-inventory", *inventory_args, "--list", "--export"],
        ["ansible", "all", *inventory_args, "--list-hosts"],
    ]
    with ThreadPoolExecutor(len(commands)) as pool:
        listed, exported, hosts = pool.map(lambda args: _run(args, cwd), commands)
    full, export = json.loads(listed), json.loads(exported)
    groups = {
        name: {key: entry[key] for key in ("hosts", "children") if key in entry}
        for name, entry in full.items()
        if name != "_meta"
    }
    return View(
        order=[line.strip() for line in hosts.splitlines()[1:] if line.strip()],
        groups={name: entry for name, entry in groups.items() if entry},
        hostvars=_unsafe_free(full["_meta"]["hostvars"]),
        groupvars={
            name: _unsafe_free(entry["vars"])
            for name, entry in export.items()
            if name != "_meta" and entry.get("vars")
        },
    )


def our_view(inventory: Inventory) -> View:
    def plain(value: Any) -> Any:
        return json.loads(json.dumps(value, default=str))

    groups: dict[str, dict[str, list[str]]] = {}
    for name, group in inventory.groups.items():
        entry = {}
        if group.hosts and name != "all":
            entry["hosts"] = list(group.hosts)
        if group.children:
            entry["children"] = list(group.children)
        if entry:
            groups[name] = entry
    return View(
        order=list(inventory.hosts),
        groups=groups,
        hostvars={name: plain(host.vars) for name, host in inventory.hosts.items() if host.vars},
        groupvars={
            name: plain(group.vars) for name, group in inventory.groups.items() if group.vars
        },
    )


def assert_same_as_ansible(sources: list[Path], cwd: Path) -> Inventory:
    inventory = load_inventory(sources)
    ours, theirs = our_view(inventory), ansible_view(sources, cwd)
    assert ours.order == theirs.order
    assert ours.groups == theirs.groups
    assert ours.hostvars == theirs.hostvars
    assert ours.groupvars == theirs.groupvars
    return inventory


def write_tree(root: Path, files: dict[str, str]) -> None:
    """Files under `root`; a name ending in `*` is written executable (without the `*`)."""
    for name, text in files.items():
        path = root / name.rstrip("*")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        if name.endswith("*"):
            path.chmod(0o755)


# ---------------------------------------------------------------------------------------------
# The sample inventories


@needs_ansible
@pytest.mark.parametrize(
    "source",
    [
        "fleet40/hosts.ini",
        "fleet40",
        "fleet40-yaml/hosts.yml",
        "dynamic/inventory.py",
        "dynamic",
    ],
)
def test_samples_match_ansible(source: str, tmp_path: Path) -> None:
    assert_same_as_ansible([SAMPLES / source], tmp_path)


def test_fleet40_ini_and_yaml_are_the_same_inventory() -> None:
    ini = load_inventory([SAMPLES / "fleet40" / "hosts.ini"])
    yml = load_inventory([SAMPLES / "fleet40-yaml" / "hosts.yml"])
    assert ini.hosts == yml.hosts
    assert ini.groups == yml.groups


def test_fleet40_shape() -> None:
    inventory = load_inventory([SAMPLES / "fleet40"])
    assert len(inventory.hosts) == 40
    assert all(name.endswith(".invalid") for name in inventory.hosts)
    assert all(host.address.endswith(".invalid") for host in inventory.hosts.values())
    assert list(inventory.hosts)[:3] == [
        "node-a01.k8s.invalid",
        "node-a02.k8s.invalid",
        "node-a03.k8s.invalid",
    ]
    zones = [host.vars["zone"] for host in inventory.hosts.values()]
    assert (zones.count("zone-a"), zones.count("zone-b"), zones.count("zone-c")) == (14, 13, 13)
    assert inventory.groups["masters"].hosts == (
        "node-a01.k8s.invalid",
        "node-b01.k8s.invalid",
        "node-c01.k8s.invalid",
    )
    assert inventory.groups["k8s_cluster"].children == ("masters", "workers")
    master = inventory.hosts["node-c01.k8s.invalid"]
    assert master.groups == ("k8s_cluster", "masters", "zone_c")
    assert (master.port, master.user, master.vars["node_role"]) == (2222, "ops", "control-plane")
    skipped = {
        name: host.vars["runc_rollout_skip"]
        for name, host in inventory.hosts.items()
        if "runc_rollout_skip" in host.vars
    }
    assert set(skipped) == {"node-b07.k8s.invalid", "node-c05.k8s.invalid"}
    tunnelled = inventory.hosts["node-a09.k8s.invalid"]
    assert (tunnelled.port, tunnelled.user) == (2022, "maint")  # host_vars beat [all:vars]
    assert inventory.hosts["node-b02.k8s.invalid"].user == "core"


def test_dynamic_inventory() -> None:
    inventory = load_inventory([SAMPLES / "dynamic" / "inventory.py"])
    assert list(inventory.hosts) == [
        "edge-a1.dyn.invalid",
        "edge-a2.dyn.invalid",
        "edge-a3.dyn.invalid",
        "edge-b1.dyn.invalid",
        "edge-b2.dyn.invalid",
        "edge-b3.dyn.invalid",
    ]
    host = inventory.hosts["edge-b1.dyn.invalid"]
    assert (host.port, host.user, host.vars["zone"]) == (2222, "ops", "zone-b")
    assert host.vars["runc_target_version"] == "1.1.12"  # group_vars/ beside the script
    assert inventory.hosts["edge-a1.dyn.invalid"].groups == ("canary", "edge", "zone_a")


# ---------------------------------------------------------------------------------------------
# Tricky inventories, each compared with Ansible

CASES: dict[str, tuple[dict[str, str], list[str]]] = {
    "ini-values-ports-ungrouped": (
        {
            "hosts": r"""
            top1 a=1 b=yes c="x y" d=[1,2] e={'k':1} f=0123 g=1.5 h=None i=b'zz' j=1+2j k=...
            top2 l=0x1F m=1e3 n=-5 o=000 p=10.0.0.1 q=True_ r="[1, (2, 3)]" s= t=a=b u=#x
            top3	tab=1  h=hash#comment more  # trailing
            [web]
            w[01:03]:2222 ansible_user=bob
            w02:2200
            top1
            [fe80::1]:2022
            192.0.2.10:2023 role=ip
            host%x:22
            [web:vars]
            v1=5
            v2=FALSE
            v3='quoted'
            v4 = "a" # c
            v5=foo # c
            v6 = {'a': [1, (2, 3)], 'b': {1, 2}}
            v7=[1, 2
            v8 = a = b
            [db:children]  # comment
            web  # comment
            """,
        },
        ["hosts"],
    ),
    "ini-pending-depth-priority": (
        {
            "hosts.ini": """
            [web:vars]
            role = 'web'
            http_port=8080
            [prod:children]
            web
            db
            [web]
            web[1:3].ex.invalid
            [db]
            db-[a:c].ex.invalid
            [db:vars]
            role=db
            ansible_group_priority=7
            [dc1:children]
            prod
            [web:children]
            canary
            [canary]
            web2.ex.invalid
            db-b.ex.invalid
            [canary:vars]
            role=canary
            [prod:vars]
            role=prod
            tier=1
            [dc1:vars]
            tier=0
            ansible_group_priority=3
            [b_side]
            web1.ex.invalid
            [a_side]
            web1.ex.invalid
            [c_side]
            web1.ex.invalid
            [a_side:vars]
            side=a
            [b_side:vars]
            side=b
            [c_side:vars]
            side=c
            ansible_group_priority=0
            """,
        },
        ["hosts.ini"],
    ),
    "ini-ungrouped-and-all": (
        {
            "hosts.ini": """
            lonely.ex.invalid
            both.ex.invalid
            [all]
            inall.ex.invalid
            both.ex.invalid
            [g]
            both.ex.invalid
            [ungrouped]
            explicit.ex.invalid
            [ungrouped:vars]
            u=1
            [all:vars]
            a=all
            """,
        },
        ["hosts.ini"],
    ),
    "yaml-features": (
        {
            "hosts.yml": """
            all:
              hosts:
                direct.ex.invalid:
                  a: 1
              vars:
                v: all
              children:
                web:
                  hosts:
                    web[01:09:2].ex.invalid:
                    "web-[x:B].ex.invalid:2200":
                      alpha: true
                  vars: {v: web, unsafe: !unsafe '{{ not_templated }}', n: !unsafe 5}
                db:
                  hosts: db1.ex.invalid
                  children:
                    replica:
                      hosts:
                        db[2:3].ex.invalid: {role: replica, when: 2024-01-02}
                      unknown_key: {x: 1}
                    empty:
                    nothing: {}
                  vars:
                    ansible_group_priority: 4
            other:
              hosts:
                web01.ex.invalid:
                  v: host
              vars:
                ansible_group_priority: 5
                v: other
                nested: {a: {b: [1, 2]}}
            scalar_group: not a group
            """,
        },
        ["hosts.yml"],
    ),
    "directory-source": (
        {
            "inv/01-base.ini": """
            [web]
            h1
            h2 x=inline
            """,
            "inv/02-more.yml": """
            web:
              hosts:
                h3:
            db:
              hosts:
                h1:
            """,
            "inv/03-extra": """
            [extra]
            h4
            """,
            "inv/sub/04.ini": "[web]\nh5\n",
            "inv/ignored.retry": "not an inventory\n",
            "inv/notes.md": "# not an inventory\n",
            "inv/old.ini~": "[old]\nghost\n",
            "inv/.hidden.ini": "[hidden]\nghost\n",
            "inv/backup.bak": "[bak]\nghost\n",
            "inv/group_vars/all.yml": "x: all\ny: all\n",
            "inv/group_vars/web/a.yml": "x: web-a\n",
            "inv/group_vars/web/b": "y: web-b\n",
            "inv/group_vars/web/c.txt": "x: ignored\n",
            "inv/group_vars/web/.hidden.yml": "x: ignored\n",
            "inv/group_vars/web/z.yml~": "x: ignored\n",
            "inv/group_vars/web/nested/d.yml": "z: web-nested\n",
            "inv/group_vars/web/x.d/e.yml": "z: ignored\n",
            "inv/group_vars/web.yml": "x: shadowed by the directory\n",
            "inv/group_vars/db.json": '{"x": "db", "n": 1}',
            "inv/group_vars/db.yaml": "x: shadowed by db.yaml? no, .yml then .yaml then .json\n",
            "inv/host_vars/h1": "h: no-suffix wins\n",
            "inv/host_vars/h1.yml": "h: ignored\n",
            "inv/host_vars/h2.yml": "x: host_vars beat inline\n",
            "inv/host_vars/h3.yml": "",
            "inv/host_vars/nobody.yml": "x: no such host\n",
        },
        ["inv"],
    ),
    "multiple-sources": (
        {
            "one/hosts.ini": """
            [parent:children]
            child
            [child]
            h1
            h2
            [child:vars]
            x=inventory-child
            """,
            "one/group_vars/child.yml": "x: one-child\ny: one-child\n",
            "one/group_vars/all.yml": "w: one-all\n",
            "two/hosts.yml": """
            parent:
              hosts:
                h3:
            """,
            "two/group_vars/parent.yml": "y: two-parent\n",
            "two/group_vars/all.yml": "w: two-all\n",
            "two/host_vars/h1.yml": "h: two\n",
        },
        ["one/hosts.ini", "two/hosts.yml"],
    ),
    "precedence": (
        {
            "hosts.ini": """
            [g]
            h1 x=inline w=inline
            h2
            [g:vars]
            y=inventory-group
            z=inventory-group
            [all:vars]
            w=inventory-all
            v=inventory-all
            """,
            "group_vars/all.yml": "y: group_vars-all\nw: group_vars-all\n",
            "group_vars/g.yml": "z: group_vars-g\nv: group_vars-g\n",
            "host_vars/h1.yml": "x: host_vars\n",
        },
        ["hosts.ini"],
    ),
    "script-legacy-forms": (
        {
            "inv.py*": """
            #!/usr/bin/env python3
            import json
            print(json.dumps({
                "all": {"vars": {"a": 1}},
                "listed": ["s1", "s2"],
                "s3": {"only": "vars"},
                "parent": {"children": ["listed", "kids"], "hosts": ["s4"]},
                "kids": {"hosts": ["s5"], "vars": {"k": True}},
                "_meta": {"hostvars": {"s1": {"h": 1}, "s4": {"h": 4}, "ghost": {"h": 0}}},
            }))
            """,
            "group_vars/parent.yml": "p: parent\n",
        },
        ["inv.py"],
    ),
    "script-without-meta": (
        {
            "inv.py*": """
            #!/usr/bin/env python3
            import json, sys
            if sys.argv[1] == "--list":
                print(json.dumps({"web": {"hosts": ["n1", "n2"]}, "db": ["n3"]}))
            elif sys.argv[2] == "n1":
                print(json.dumps({"ansible_port": 2201}))
            """,
        },
        ["inv.py"],
    ),
    "ini-hosts-with-the-same-words": (  # one dict for identical lines, changes their own
        {
            "hosts.ini": """
            [a]
            s1 u=root r=1 l=[1,2]
            s2 u=root r=1 l=[1,2]
            s3 u=root r=1
            s4 u=root r=1
            n[1:3] u=root r=1
            [b]
            s3 r=2 extra=yes
            n2 u=other
            s4:2222 u=root r=1
            s5 r=1 u=root
            [b:vars]
            r=9
            """,
            "host_vars/s1.yml": "r: from-file\n",
            "host_vars/n1.yml": "u: n1-file\n",
        },
        ["hosts.ini"],
    ),
    "yaml-hosts-with-the-same-vars": (
        {
            "hosts.yml": """
            all:
              children:
                a:
                  hosts:
                    y1: {u: root, r: 1}
                    y2: {u: root, r: 1}
                    y3: &v {u: root, l: [1, 2]}
                    y4: *v
                    y5: {u: root, r: 1}
                b:
                  hosts:
                    y2: {extra: yes}
                    y4: {u: other}
                  vars:
                    r: 9
            """,
        },
        ["hosts.yml"],
    ),
    "json-and-extensionless-files": (
        {
            "inv/hosts.json": '{"web": {"hosts": {"j1": {"p": 1}}, "vars": {"x": 1e5}}}',
            "inv/yaml-without-suffix": "db:\n  hosts:\n    y1:\n",
            "inv/ini-without-suffix": "[cache]\ni1\n",
            "inv/empty.yml": "",
            "inv/ini-named.yml": "[mixed]\nm1 a=1\n",
        },
        ["inv"],
    ),
}


@needs_ansible
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_ansible(case: str, tmp_path: Path) -> None:
    files, sources = CASES[case]
    write_tree(tmp_path, files)
    assert_same_as_ansible([tmp_path / source for source in sources], tmp_path)


# ---------------------------------------------------------------------------------------------
# Behaviour, without Ansible


def load_text(tmp_path: Path, text: str, name: str = "hosts.ini") -> Inventory:
    write_tree(tmp_path, {name: text})
    return load_inventory([tmp_path / name])


def test_host_port_applies_where_the_host_is_first_defined(tmp_path: Path) -> None:
    inventory = load_text(tmp_path, "[a]\nh1\n[b]\nh1:2222\nh2:2200\n")
    assert inventory.hosts["h1"].port == 22
    assert inventory.hosts["h2"].port == 2200


def test_group_vars_are_python_literals_like_host_vars(tmp_path: Path) -> None:
    inventory = load_text(tmp_path, "[g]\nh1 n=5 s='x y'\n[g:vars]\nm=6\nt=FALSE\nu=True\n")
    host = inventory.hosts["h1"]
    assert (host.vars["n"], host.vars["s"], host.vars["m"]) == (5, "x y", 6)
    assert (host.vars["t"], host.vars["u"]) == ("FALSE", True)


def test_hosts_share_unchanged_variables(tmp_path: Path) -> None:
    inventory = load_text(tmp_path, "[g]\nh[1:3]\n[g:vars]\nx=1\n")
    first, second, _ = inventory.hosts.values()
    assert first.vars == {"x": 1}
    assert first.vars is second.vars


def test_hosts_given_the_same_words_share_one_dict_of_them(tmp_path: Path) -> None:
    inventory = load_text(
        tmp_path, "[a]\nh1 u=root\nh2 u=root\nh3 u=root\nl1 l=[1]\nl2 l=[1]\n[b]\nh3 x=1\n"
    )
    h1, h2, h3, l1, l2 = inventory.hosts.values()
    assert h1.vars is h2.vars
    assert (h1.vars, h3.vars) == ({"u": "root"}, {"u": "root", "x": 1})
    assert l1.vars == l2.vars and l1.vars["l"] is not l2.vars["l"]  # a list is each host's own


def test_yaml_hosts_with_equal_vars_share_one_dict_of_them(tmp_path: Path) -> None:
    text = "g:\n  hosts:\n    a: {u: root}\n    b: {u: root}\n    c: {u: root}\nh:\n  hosts:\n"
    inventory = load_text(tmp_path, text + "    c: {x: 1}\n", "hosts.yml")
    a, b, c = inventory.hosts.values()
    assert a.vars is b.vars
    assert (a.vars, c.vars) == ({"u": "root"}, {"u": "root", "x": 1})


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1 << 20])
def test_ini_lines_are_read_a_piece_at_a_time_as_splitlines_splits(piece: int) -> None:
    text = "a\r\nb\rc\x0bd\x0ce\x1cf\x1dg\x1eh\x85i\u2028j\u2029k\n\n\r\n\nlast line"
    for sample in (text, text + "\n", text + "\r", "", "\n", "x"):
        assert list(_lines(sample, piece)) == sample.splitlines()


def test_groups_include_ancestors_and_ungrouped(tmp_path: Path) -> None:
    inventory = load_text(
        tmp_path, "loner\n[leaf]\nh1\n[mid:children]\nleaf\n[top:children]\nmid\n"
    )
    assert inventory.hosts["h1"].groups == ("leaf", "mid", "top")
    assert inventory.hosts["loner"].groups == ("ungrouped",)
    assert inventory.groups["all"].children == ("ungrouped", "top")


def test_group_hosts_walks_levels_in_order(tmp_path: Path) -> None:
    inventory = load_text(
        tmp_path, "[deep]\nd1\n[mid]\nm1\n[top]\nt1\n[top:children]\nmid\n[mid:children]\ndeep\n"
    )
    assert group_hosts(inventory.groups, "top") == ["t1", "m1", "d1"]
    assert group_hosts(inventory.groups, "deep") == ["d1"]


def test_vault_values_are_kept_encrypted(tmp_path: Path) -> None:
    inventory = load_text(
        tmp_path,
        "all:\n  hosts:\n    h1:\n      secret: !vault |\n        $ANSIBLE_VAULT;1.1\n",
        name="hosts.yml",
    )
    assert inventory.hosts["h1"].vars["secret"] == EncryptedValue("$ANSIBLE_VAULT;1.1\n")


def test_several_sources_merge_in_order(tmp_path: Path) -> None:
    write_tree(tmp_path, {"a.ini": "[g]\nh1 x=1\n", "b.ini": "[g]\nh2\nh1 x=2\n"})
    inventory = load_inventory([tmp_path / "a.ini", tmp_path / "b.ini"])
    assert list(inventory.hosts) == ["h1", "h2"]
    assert inventory.hosts["h1"].vars["x"] == 2
    assert inventory.sources == (str(tmp_path / "a.ini"), str(tmp_path / "b.ini"))


def test_executable_file_without_shebang_is_read_as_a_file(tmp_path: Path) -> None:
    write_tree(tmp_path, {"hosts.ini*": "[g]\nh1\n"})
    assert list(load_inventory([tmp_path / "hosts.ini"]).hosts) == ["h1"]


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


# Errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "unbalanced_range.ini",
            r"unbalanced_range\.ini:7: unbalanced bracket in host range 'node\[01:'",
        ),
        ("unknown_section.ini", r"unknown_section\.ini:4: section \[web:hostz\] has unknown type"),
        (
            "undefined_child.ini",
            r"undefined_child\.ini:5: section \[k8s:children\] includes undefined group 'missing'",
        ),
        (
            "undefined_vars_group.ini",
            r"undefined_vars_group\.ini:4: section \[ghost:vars\] is for undefined group",
        ),
        (
            "host_var_without_value.ini",
            r"host_var_without_value\.ini:3: expected key=value host variable assignments",
        ),
        (
            "unclosed_quote.ini",
            r"unclosed_quote\.ini:2: cannot parse the host definition: No closing quotation",
        ),
        (
            "cycle.ini",
            r"cycle\.ini:9: adding group 'a' as child to 'b' creates a recursive dependency loop",
        ),
        (
            "bad_section_name.ini",
            r"bad_section_name\.ini:3: invalid section entry '\[web servers\]'",
        ),
        ("trailing_colon.ini", r"trailing_colon\.ini:2: invalid host pattern 'node1:'"),
        (
            "bad_priority.ini",
            r"bad_priority\.ini:5: ansible_group_priority of group 'web' must be an integer",
        ),
        ("bad_yaml.yml", r"bad_yaml\.yml:4: "),
        (
            "hosts_as_list.yml",
            r"hosts_as_list\.yml: group 'all': 'hosts' must be a mapping, got list",
        ),
        ("numeric_host.yml", r"numeric_host\.yml: host pattern 1 must be a string"),
        (
            "failing_script.py",
            r"failing_script\.py: inventory script --list exited with status 3: "
            r"cannot reach the CMDB",
        ),
        (
            "bad_json_script.py",
            r"bad_json_script\.py: inventory script --list printed invalid JSON",
        ),
        ("bad_group_vars", r"group_vars/all\.yml: a variables file must hold a mapping, got list"),
        ("inventory.toml", r"inventory\.toml: group 'web': 'hosts' must be a mapping, got list"),
    ],
)
def test_malformed_inventories(name: str, message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory([BAD / name])
    text = str(caught.value)
    assert "\n" not in text
    assert re.search(message, text), text
    assert caught.value.exit_code == 2


def test_toml_is_read_as_ansible_reads_it(tmp_path: Path) -> None:
    source = tmp_path / "fleet.toml"
    source.write_text(
        textwrap.dedent(
            """\
            [all.vars]
            ntp = "10.0.0.1"

            [web]
            children = ["apache", "nginx"]
            vars = { http_port = 8080, zone = "zone-a" }

            [apache.hosts]
            tomcat1 = {}
            "tomcat[2:3]" = { ansible_port = 2222, enabled = true }

            [nginx.hosts]
            jenkins1 = { ansible_host = "10.0.0.9" }
            """
        )
    )
    inventory = assert_same_as_ansible([source], tmp_path)
    assert inventory.hosts["tomcat3"].vars["ansible_port"] == 2222


def test_relative_script_path_is_the_file_not_a_program_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "inventory.sh"
    script.write_text(
        "#!/bin/sh\n"
        'echo \'{"web": {"hosts": ["w1"]}, "_meta": {"hostvars": {"w1": {"zone": "a"}}}}\'\n'
    )
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    for name in ("inventory.sh", "./inventory.sh"):
        inventory = assert_same_as_ansible([Path(name)], tmp_path)
        assert inventory.hosts["w1"].vars == {"zone": "a"}


def test_constructed_plugin_is_read_through_ansible_core(tmp_path: Path) -> None:
    static = tmp_path / "static.yml"
    static.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "vars": {"arch": "x86_64"},
                    "children": {
                        "nodes": {
                            "hosts": {
                                "node1": {"zone": "a", "rack": 1},
                                "node2": {"zone": "b", "rack": 2},
                                "node3": {"zone": "a", "rack": 3},
                            }
                        }
                    },
                }
            }
        )
    )
    plugin = tmp_path / "constructed.yml"
    plugin.write_text(
        yaml.safe_dump(
            {
                "plugin": "ansible.builtin.constructed",
                "strict": True,
                "keyed_groups": [{"key": "zone", "prefix": "zone"}],
                "compose": {"runc_rollout_probe_uid": "2147000000 + rack"},
                "groups": {"canary": "rack == 1"},
            }
        )
    )
    inventory = assert_same_as_ansible([static, plugin], tmp_path)
    assert set(inventory.groups["zone_a"].hosts) == {"node1", "node3"}
    assert inventory.groups["canary"].hosts == ("node1",)
    assert inventory.hosts["node2"].vars["runc_rollout_probe_uid"] == 2147000002
    assert set(inventory.readers.values()) == {"ansible-core (ansible-inventory)"}
    assert set(load_inventory([static]).readers.values()) == {"native"}


def test_missing_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=re.escape(f"{tmp_path / 'nope.ini'}: no such")):
        load_inventory([tmp_path / "nope.ini"])


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "group_vars").mkdir()
    with pytest.raises(InventoryError, match="no inventory files"):
        load_inventory([tmp_path])


def test_no_sources_is_an_error() -> None:
    with pytest.raises(InventoryError, match="no inventory source"):
        load_inventory([])


def test_errors_never_echo_inventory_lines_or_values(tmp_path: Path) -> None:
    """A password on a line that cannot be parsed stays out of the message (and so out of
    logs and CI output); a failure domain named by a secret variable is refused."""
    secret = "hunter2-s3cr3t"
    cases = {
        "quote.ini": f'h1 ansible_password="{secret}\n',
        "word.ini": f"h1 {secret}\n",
        "vars.ini": f"[all:vars]\n{secret}\n",
        "children.ini": f"[g:children]\n{secret} x\n",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InventoryError) as caught:
            load_inventory([tmp_path / name])
        assert secret not in str(caught.value), name
    (tmp_path / "ok.ini").write_text(f"h1 ansible_become_password={secret}\n")
    inventory = load_inventory([tmp_path / "ok.ini"])
    artifact = Artifact(path="/x", sha256="a" * 64, size=1)
    for key in ("ansible_become_password", "ansible_ssh_pass", "api_token"):
        with pytest.raises(BadInput, match="names a secret"):
            build_plan(inventory, artifact, WaveOptions(domain_key=key))


@needs_ansible
@pytest.mark.parametrize(
    "source", ["web1,", "web1,web2:2222, 10.0.0.7 ,", "[2001:db8::1]:2200,db1,web1"]
)
def test_a_host_list_is_read_as_ansible_reads_it(source: str, tmp_path: Path) -> None:
    """`-i 'a,b,'`: Ansible's host_list, hosts in `ungrouped`, ports kept, and the working
    directory's group_vars/ applying to them."""
    write_tree(tmp_path, {"group_vars/all.yml": "zone: from-cwd\n"})
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        inventory = load_inventory([Path(source)])
    finally:
        os.chdir(cwd)
    ours, theirs = our_view(inventory), ansible_view([Path(source)], tmp_path)
    # (ansible-inventory shows the working directory's group_vars as each host's, not the group's)
    assert (ours.order, ours.groups, ours.hostvars) == (
        theirs.order,
        theirs.groups,
        theirs.hostvars,
    )
    assert inventory.groups["ungrouped"].hosts


def test_a_host_list_entry_that_is_no_host_is_refused() -> None:
    with pytest.raises(InventoryError, match=r"-i 'web1,we b2,': 'we b2' is not a host name"):
        load_inventory([Path("web1,we b2,")])
