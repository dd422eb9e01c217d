"""Lab hosts whose login user is not root and whose sudo asks for a password: apply and
rollback with the password given once (`--ask-become-pass`), and with each host's own password
from the inventory (`--become-password-from-inventory`), through both backends; the planted
passwords are in no plan, journal, runner artifact, output or host-side file."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.app import main
from orchestrator.lab import fleet
from orchestrator.lab.records import LabHost
from tests.conftest import LabFleet

PASSWORD = "pl4nted-become-" + os.urandom(6).hex()
FILES = ("passwd", "shadow", "group", "sudoers.d")


@contextmanager
def deploy_user(lab: LabFleet, host: LabHost, password: str) -> Iterator[None]:
    """On a light lab host, `deploy` logs in with the lab's key and sudo asks for `password`;
    the files are bind-mounted in that host's own (private) mount namespace only."""
    record = fleet.load_record(lab.state_dir)
    assert record is not None
    holder = next(h for h in record.hosts if h.name == host.name).procs["holder"].pid
    root_line = next(
        line
        for line in Path(f"/proc/{holder}/mountinfo").read_text().splitlines()
        if line.split()[4] == "/"
    )
    if "shared:" in root_line:
        pytest.skip("the lab host's mounts propagate to the machine")
    base = Path(tempfile.mkdtemp(prefix="rr-become-"))
    os.chmod(base, 0o755)
    for name in ("passwd", "shadow", "group"):
        shutil.copy2(f"/etc/{name}", base / name)
    shutil.copytree("/etc/sudoers.d", base / "sudoers.d")
    hashed = subprocess.run(
        ["openssl", "passwd", "-6", "-stdin"], input=password, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    home = base / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(f"{lab.private_key}.pub", home / ".ssh" / "authorized_keys")
    with (base / "passwd").open("a") as f:
        f.write(f"deploy:x:4243:4243::{home}:/bin/sh\n")
    with (base / "shadow").open("a") as f:
        f.write(f"deploy:{hashed}:19000:0:99999:7:::\n")
    with (base / "group").open("a") as f:
        f.write("deploy:x:4243:\n")
    (base / "sudoers.d" / "deploy").write_text("deploy ALL=(ALL) ALL\n")
    os.chmod(base / "sudoers.d" / "deploy", 0o440)
    for path in (home, home / ".ssh", home / ".ssh" / "authorized_keys"):
        os.chown(path, 4243, 4243)
    os.chmod(home / ".ssh", 0o700)
    enter = ["nsenter", f"--mount=/proc/{holder}/ns/mnt", "--"]
    binds = " && ".join(f"mount --bind {base / name} /etc/{name}" for name in FILES)
    subprocess.run([*enter, "sh", "-c", binds], check=True)
    try:
        yield
    finally:
        subprocess.run([*enter, "sh", "-c", f"umount {' /etc/'.join(('', *FILES))}"], check=True)
        shutil.rmtree(base)


def deploy_inventory(lab: LabFleet, path: Path, passwords: dict[str, str | None]) -> Path:
    """The lab's inventory where the hosts of `passwords` log in as `deploy` with become, and
    set ansible_become_password where a password is given."""
    document = yaml.safe_load(lab.inventory.read_text())
    for name, password in passwords.items():
        variables = document["all"]["children"]["lab"]["hosts"][name]
        variables.update(ansible_user="deploy", ansible_become=True)
        if password is not None:
            variables["ansible_become_password"] = password
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def deploy_host(clean_lab: LabFleet, tmp_path: Path) -> Iterator[tuple[LabHost, Path]]:
    host = clean_lab.light_hosts[0]
    with deploy_user(clean_lab, host, PASSWORD):
        yield host, deploy_inventory(clean_lab, tmp_path / "hosts.yml", {host.name: None})


@pytest.fixture
def deploy_hosts(clean_lab: LabFleet, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """Two light hosts, each with its own sudo password, given in the inventory."""
    hosts = clean_lab.light_hosts[:2]
    passwords = {host.name: f"{PASSWORD}-{host.name}" for host in hosts}
    with (
        deploy_user(clean_lab, hosts[0], passwords[hosts[0].name]),
        deploy_user(clean_lab, hosts[1], passwords[hosts[1].name]),
    ):
        yield passwords, deploy_inventory(clean_lab, tmp_path / "hosts.yml", dict(passwords))


def planted_nowhere(lab: LabFleet, secrets: list[str], files: list[Path], output: str) -> None:
    """None of `secrets` is in `files` (plan, journal, runner artifacts), `output`, or the
    hosts' store and logs."""
    for secret in secrets:
        assert secret not in output
        for path in files:
            if path.is_file():
                assert secret not in path.read_text(errors="replace"), path
        for host in lab.light_hosts:
            found = lab.ssh(host, f"grep -rl {secret} /var/lib/runc-rollout /var/log", check=False)
            assert found.stdout.strip() == ""


@pytest.mark.lab
@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_apply_and_rollback_with_a_become_password(
    deploy_host: tuple[LabHost, Path],
    clean_lab: LabFleet,
    artifact: Path,
    tmp_path: Path,
    executor: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    host, inventory = deploy_host
    asked: list[str] = []

    def getpass(prompt: str, stream: object = None) -> str:
        asked.append(prompt)
        return PASSWORD

    monkeypatch.setattr("getpass.getpass", getpass)
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    plan = tmp_path / "plan.json"
    runs = tmp_path / "runs"
    assert main(["plan", "-i", str(inventory), "--runc", str(artifact), "--sha256", digest,
                 "--limit", host.name, "--waves", "100%", "-o", str(plan)]) == 0  # fmt: skip
    via = ["--executor", executor]
    assert main(["apply", str(plan), "--yes", "--runs-dir", str(runs), "-K", *via]) == 0
    assert len(asked) == 1
    runc = clean_lab.ssh(host, "sha256sum /usr/local/sbin/runc").stdout.split()[0]
    assert runc == digest
    (run_dir,) = runs.iterdir()
    assert main(["rollback", str(run_dir), "--yes", "-K", *via]) == 0
    assert len(asked) == 2  # once per command
    assert clean_lab.ssh(host, "sha256sum /usr/local/sbin/runc").stdout.split()[0] != digest
    output = capfd.readouterr()
    planted_nowhere(clean_lab, [PASSWORD], [plan, *run_dir.rglob("*")], output.out + output.err)


@pytest.mark.lab
@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_each_host_its_own_password_from_the_inventory(
    deploy_hosts: tuple[dict[str, str], Path],
    clean_lab: LabFleet,
    artifact: Path,
    tmp_path: Path,
    executor: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Two hosts, two passwords, both from the inventory: used only with the opt-in, each on its
    own host (a swapped password would be refused by sudo), and written nowhere."""
    passwords, inventory = deploy_hosts
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    plan = tmp_path / "plan.json"
    runs = tmp_path / "runs"
    limit = ":".join(passwords)
    assert main(["plan", "-i", str(inventory), "--runc", str(artifact), "--sha256", digest,
                 "--limit", limit, "--waves", "100%", "-o", str(plan)]) == 0  # fmt: skip
    via = ["--executor", executor]
    apply = ["apply", str(plan), "--yes", "--runs-dir", str(runs), *via]
    assert main(apply) == 2  # no opt-in: refused, nothing run
    assert not runs.exists()
    assert main([*apply, "--become-password-from-inventory"]) == 0
    for name in passwords:
        runc = clean_lab.ssh(clean_lab.host(name), "sha256sum /usr/local/sbin/runc").stdout
        assert runc.split()[0] == digest, name
    (run_dir,) = runs.iterdir()
    rollback = ["rollback", str(run_dir), "--yes", *via, "--become-password-from-inventory"]
    assert main(rollback) == 0
    for name in passwords:
        runc = clean_lab.ssh(clean_lab.host(name), "sha256sum /usr/local/sbin/runc").stdout
        assert runc.split()[0] != digest, name
    output = capfd.readouterr()
    files = [plan, *run_dir.rglob("*")]
    planted_nowhere(clean_lab, list(passwords.values()), files, output.out + output.err)
