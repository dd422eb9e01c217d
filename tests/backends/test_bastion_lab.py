"""Behind a bastion, and through ssh_config: the same inventories through `ansible -m ping` and
`runc-rollout facts`, reachable or not alike (a parity matrix); apply and rollback through
ProxyJump, kubespray's ProxyCommand and a `Host lab-*` block with both backends; a wrong bastion
host key fails closed. The lab's hosts answer on inner addresses only from behind the bastion
(`orchestrator.lab.bastion`); the home directory is one of the test's own, bound over /root in a
private mount namespace for both tools (/root/.ssh need not exist on this machine)."""

from __future__ import annotations

import hashlib
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
from orchestrator.lab.records import LabHost
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
    assert done.returncode in (0, 1), done.stderr
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
    wrong_proxy = {
        name: {
            **variables,
            "ansible_ssh_common_args": variables["ansible_ssh_common_args"]
            .replace(
                f"UserKnownHostsFile={inner_known} -o StrictHostKeyChecking",
                f"UserKnownHostsFile={wrong} -o StrictHostKeyChecking",
            )
            .replace(" -q ", " "),  # so that ssh says why
        }
        for name, variables in kubespray.items()
    }
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
        "wrong-bastion-key-proxycommand": (wrong_proxy, "", set()),
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
        if name == "wrong-bastion-key-proxycommand":
            assert "ProxyCommand" in errors and "Host key verification failed" in errors, errors
    assert disagree == []


def case_inventory(
    lab: LabFleet, hosts: list[LabHost], reach: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The lab inventory's variables of `hosts` (zone, probe uid...), reached as `reach` says."""
    document = yaml.safe_load(lab.inventory.read_text())
    kept = {
        host.name: {
            key: value
            for key, value in document["all"]["children"]["lab"]["hosts"][host.name].items()
            if not key.startswith(("ansible_host", "ansible_port", "ansible_user", "ansible_ssh"))
        }
        for host in hosts
    }
    return {name: {**kept[name], **reach[name]} for name in kept}


def runc_sha(lab: LabFleet, host: LabHost) -> str:
    return lab.ssh(host, "sha256sum /usr/local/sbin/runc").stdout.split()[0]


@pytest.mark.lab
@pytest.mark.parametrize("executor", ["ssh", "ansible"])
@pytest.mark.parametrize(
    "case", ["proxyjump-in-ssh-config", "kubespray-proxycommand", "host-block-names-only"]
)
def test_apply_and_rollback_behind_the_bastion(
    clean_lab: LabFleet, bastion: Bastion, artifact: Path, tmp_path: Path, case: str, executor: str
) -> None:
    """Two hosts, planned, applied and rolled back through the bastion (ProxyJump from
    ssh_config, kubespray's ProxyCommand) or named only, with user, key and port from a
    `Host lab-*` block; both backends."""
    hosts = clean_lab.light_hosts[:2]
    reach, config, _ = cases(clean_lab, bastion)[case]
    variables = case_inventory(clean_lab, hosts, reach)
    inventory, ssh_dir = write_case(tmp_path / case, variables, config)
    before = {host.name: runc_sha(clean_lab, host) for host in hosts}
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    plan, runs = tmp_path / "plan.json", tmp_path / "runs"

    def cli(*argv: str) -> None:
        done = in_private_home(ssh_dir, [RUNC_ROLLOUT, *argv], tmp_path)
        assert done.returncode == 0, f"{argv[0]}: {done.stderr[-2000:]}"

    cli("plan", "-i", str(inventory), "--runc", str(artifact), "--sha256", digest,
        "--waves", "100%", "--no-probe", "-o", str(plan))  # fmt: skip
    cli("apply", str(plan), "--yes", "--runs-dir", str(runs), "--executor", executor)
    assert {host.name: runc_sha(clean_lab, host) for host in hosts} == dict.fromkeys(before, digest)
    (run_dir,) = runs.iterdir()
    cli("rollback", str(run_dir), "--yes", "--executor", executor)
    assert {host.name: runc_sha(clean_lab, host) for host in hosts} == before


@pytest.mark.lab
@pytest.mark.parametrize("executor", ["ssh", "ansible"])
@pytest.mark.parametrize("case", ["wrong-bastion-key", "wrong-bastion-key-proxycommand"])
def test_a_wrong_bastion_key_fails_closed(
    clean_lab: LabFleet, bastion: Bastion, artifact: Path, tmp_path: Path, case: str, executor: str
) -> None:
    """Through ProxyJump and through ProxyCommand: apply does not get past the bastion, says
    why, and leaves the target as it was."""
    host = clean_lab.light_hosts[0]
    reach, config, _ = cases(clean_lab, bastion)[case]
    variables = case_inventory(clean_lab, [host], reach)
    inventory, ssh_dir = write_case(tmp_path / case, variables, config)
    before = runc_sha(clean_lab, host)
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    plan, runs = tmp_path / "plan.json", tmp_path / "runs"
    planning = [RUNC_ROLLOUT, "plan", "-i", str(inventory), "--runc", str(artifact),
                "--sha256", digest, "-o", str(plan)]  # fmt: skip
    planned = in_private_home(ssh_dir, planning, tmp_path)
    assert planned.returncode == 0, planned.stderr
    argv = [RUNC_ROLLOUT, "apply", str(plan), "--yes", "--runs-dir", str(runs), "--json"]
    done = in_private_home(ssh_dir, [*argv, "--executor", executor], tmp_path)
    assert done.returncode in (1, 3), done.stderr[-2000:]
    (run_dir,) = runs.iterdir()
    journal = (run_dir / "events.jsonl").read_text()
    assert '"status":"unreachable"' in journal.replace(" ", ""), journal[-2000:]
    expected = {
        ("ssh", "wrong-bastion-key"): "jump host bastion",
        ("ssh", "wrong-bastion-key-proxycommand"): "Host key verification failed",
        # What OpenSSH says of its jump or proxy does not reach Ansible's message (it runs ssh
        # with -q): the action's first command fails with Ansible's connection error.
        ("ansible", "wrong-bastion-key"): "can be reached over ssh",
        ("ansible", "wrong-bastion-key-proxycommand"): "can be reached over ssh",
    }[executor, case]
    finished = [line for line in journal.splitlines() if "host.finished" in line]
    assert expected in done.stdout + done.stderr + journal, finished
    assert runc_sha(clean_lab, host) == before
    assert clean_lab.ssh(host, "ls /var/lib/runc-rollout", check=False).stdout.strip() == ""
