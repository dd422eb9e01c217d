"""Inventories that cannot be read: one clear error naming the file (and line), never an
inventory's line or value echoed; and what is read the way Ansible reads it although it looks
wrong (TOML, scripts, constructed plugins, host lists)."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from orchestrator.errors import BadInput, InventoryError
from orchestrator.inventory.read import load_inventory
from orchestrator.models import Artifact, WaveOptions
from orchestrator.plan.planner import build_plan
from tests.inventory.test_inventory import (
    BAD,
    ansible_view,
    assert_same_as_ansible,
    needs_ansible,
    our_view,
    write_tree,
)

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
