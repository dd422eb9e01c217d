"""Behind a bastion, and through ssh_config: the same inventories through `ansible -m ping` and
`runc-rollout facts`, reachable or not alike (a parity matrix). The lab's hosts answer on inner
addresses only from behind the bastion (`orchestrator.lab.bastion`); the home directory is one
of the test's own, bound over /root in a private mount namespace for both tools (/root/.ssh
need not exist on this machine)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.lab.bastion import Bastion, bastion_down, bastion_up
from orchestrator.lab.procs import port_in_use
from tests.conftest import RUNC_ROLLOUT, LabFleet

ANSIBLE = str(Path(RUNC_ROLLOUT).parent / "ansible")
PRIVATE_HOME = 'mount --bind "$1" /root && shift && exec "$@"'


@pytest.fixture(scope="module")
def bastion(lab: LabFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    address = lab.hosts[0].address.rsplit(".", 1)[0] + ".10"
    if port_in_use(address):
        pytest.skip(f"{address}:22 is taken: no room for the bastion")
    started = bastion_up(lab.info, lab.hosts, address, tmp_path_factory.mktemp("bastion"))
    yield started
    bastion_down(started)


def in_private_home(ssh_dir: Path, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`argv` with `ssh_dir` as /root/.ssh (its parent as /root), in a mount namespace of its
    own."""
    # Each call its own ssh master connections (under /tmp: a socket path must be short): one
    # left by a case before would skip the bastion and its host key.
    control = tempfile.mkdtemp(prefix="rr-cp-")
    try:
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", PRIVATE_HOME, "sh",
             str(ssh_dir.parent), *argv],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "ANSIBLE_SSH_CONTROL_PATH_DIR": control},
        )  # fmt: skip
    finally:
        shutil.rmtree(control, ignore_errors=True)


def reachable_by_ansible(inventory: Path, ssh_dir: Path, cwd: Path) -> set[str]:
    done = in_private_home(ssh_dir, [ANSIBLE, "-i", str(inventory), "all", "-m", "ping", "-o"], cwd)
    return {line.split(" | ")[0] for line in done.stdout.splitlines() if " | SUCCESS" in line}


def reachable_by_facts(inventory: Path, ssh_dir: Path, cwd: Path) -> tuple[set[str], str]:
    done = in_private_home(
        ssh_dir, [RUNC_ROLLOUT, "facts", "-i", str(inventory), "--format", "json"], cwd
    )
    report = json.loads(done.stdout)
    return set(report["hosts"]), json.dumps(report["errors"])


def write_case(base: Path, hosts: dict[str, dict[str, Any]], config: str) -> tuple[Path, Path]:
    base.mkdir()
    ssh_dir = base / "home" / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True)
    (ssh_dir / "config").write_text(config)
    for variables in hosts.values():
        variables["ansible_python_interpreter"] = "/usr/bin/python3"
    inventory = base / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return inventory, ssh_dir


def cases(
    lab: LabFleet, bastion: Bastion
) -> dict[str, tuple[dict[str, dict[str, Any]], str, set[str]]]:
    """name -> (inventory hosts, ~/.ssh/config, the hosts that must be reachable)."""
    key, inner_known = bastion.private_key, bastion.known_hosts
    names = [host.name for host in lab.hosts]
    via_config = (
        f"Host bastion\n  HostName {bastion.address}\n  User root\n  IdentityFile {key}\n"
        f"  UserKnownHostsFile {inner_known}\n"
        f"Host 127.1.*\n  ProxyJump bastion\n  User root\n  IdentityFile {key}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {inner_known}\n"
    )
    inner = {name: {"ansible_host": bastion.inner[name]} for name in names}
    proxy = (
        f"ssh -F /dev/null -i {key} -o UserKnownHostsFile={inner_known} "
        f"-o StrictHostKeyChecking=yes -W %h:%p -q root@{bastion.address}"
    )
    kubespray = {
        name: {
            "ansible_host": bastion.inner[name],
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": f"-o ProxyCommand={shlex.quote(proxy)} "
            f"-o UserKnownHostsFile={inner_known}",
        }
        for name in names
    }
    wrong = bastion.directory / "wrong_known_hosts"
    other = lab.known_hosts.read_text().splitlines()[0].split()[1:]  # a lab host's key
    wrong.write_text(
        f"{bastion.address} {' '.join(other)}\n"
        + "\n".join(inner_known.read_text().splitlines()[1:])
        + "\n"
    )
    host_block = "".join(f"Host {h.name}\n  HostName {h.address}\n" for h in lab.hosts) + (
        f"Host lab-*\n  User root\n  Port 22\n  IdentityFile {lab.private_key}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {lab.known_hosts}\n"
    )
    return {
        "proxyjump-in-ssh-config": (inner, via_config, set(names)),
        "kubespray-proxycommand": (kubespray, "", set(names)),
        "host-block-names-only": ({name: {} for name in names}, host_block, set(names)),
        "jump-in-extra-args": (
            {
                name: {**inner[name], "ansible_ssh_extra_args": f"-J root@{bastion.address}"}
                for name in names
            },
            via_config.replace("Host bastion\n", f"Host bastion {bastion.address}\n").replace(
                "  ProxyJump bastion\n", ""
            ),
            set(names),
        ),
        "wrong-bastion-key": (inner, via_config.replace(str(inner_known), str(wrong), 1), set()),
        "no-bastion": (inner, via_config.replace("  ProxyJump bastion\n", ""), set()),
    }


@pytest.mark.lab
def test_parity_matrix_behind_a_bastion(lab: LabFleet, bastion: Bastion, tmp_path: Path) -> None:
    disagree = []
    for name, (hosts, config, expected) in cases(lab, bastion).items():
        inventory, ssh_dir = write_case(tmp_path / name, hosts, config)
        by_ansible = reachable_by_ansible(inventory, ssh_dir, tmp_path / name)
        by_facts, errors = reachable_by_facts(inventory, ssh_dir, tmp_path / name)
        if not by_ansible == by_facts == expected:
            disagree.append(f"{name}: ansible {by_ansible}, facts {by_facts} ({errors})")
        if name == "wrong-bastion-key":
            assert "jump host bastion" in errors and "HOST KEY CHANGED" in errors, errors
    assert disagree == []
