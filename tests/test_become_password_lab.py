"""A lab host whose login user is not root and whose sudo asks for a password: apply and
rollback with the password given once (`--ask-become-pass`), through both backends; the planted
password is in no plan, journal, runner artifact, output or host-side file."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from orchestrator.cli.app import main
from orchestrator.lab import fleet
from orchestrator.lab.records import LabHost
from tests.conftest import LabFleet

PASSWORD = "pl4nted-become-" + os.urandom(6).hex()
FILES = ("passwd", "shadow", "group", "sudoers.d")


@pytest.fixture
def deploy_host(clean_lab: LabFleet) -> Iterator[tuple[LabHost, Path]]:
    """A light lab host where `deploy` logs in with the lab's key and sudo asks its password;
    the files are bind-mounted in that host's own (private) mount namespace only."""
    host = clean_lab.light_hosts[0]
    record = fleet.load_record(clean_lab.state_dir)
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
        ["openssl", "passwd", "-6", "-stdin"], input=PASSWORD, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    home = base / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(f"{clean_lab.private_key}.pub", home / ".ssh" / "authorized_keys")
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
    inventory = base / "hosts.yml"
    document = yaml.safe_load(clean_lab.inventory.read_text())
    variables = document["all"]["children"]["lab"]["hosts"][host.name]
    variables.update(ansible_user="deploy", ansible_become=True)
    inventory.write_text(yaml.safe_dump(document))
    try:
        yield host, inventory
    finally:
        subprocess.run([*enter, "sh", "-c", f"umount {' /etc/'.join(('', *FILES))}"], check=True)
        shutil.rmtree(base)


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
    assert PASSWORD not in output.out + output.err
    for path in [plan, *run_dir.rglob("*")]:
        if path.is_file():
            assert PASSWORD not in path.read_text(errors="replace"), path
    found = clean_lab.ssh(host, f"grep -rl {PASSWORD} /var/lib/runc-rollout /var/log", check=False)
    assert found.stdout.strip() == ""
