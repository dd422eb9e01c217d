"""Inventory loading: unit tests, error reporting, and comparisons with `ansible-inventory`.

The comparisons run the real Ansible CLI on the same files and require identical hosts, host order,
groups with their members, merged host variables and group variables; they skip when ansible-core
is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.inventory.builder import group_hosts
from orchestrator.inventory.common import EncryptedValue
from orchestrator.inventory.ini import _lines
from orchestrator.inventory.read import load_inventory
from orchestrator.models import Inventory

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
