"""Reaching hosts, decided before any host is: ssh settings the SSH backend cannot honour are
refused by `plan` (and every command that connects) as one line, exit 2, nothing written; a
become password in the inventory is used only with `--become-password-from-inventory`, and the
plan records that a host has one, never the password."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.backends.ansible.runner import password_groups
from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.backends.ssh.routes import SshRoutes
from orchestrator.backends.ssh.sshconfig import SshConfigError, check_destination
from orchestrator.cli.app import main
from orchestrator.errors import HostKeyRejected, HostUnreachable
from orchestrator.models import BecomePasswords, SshTarget

RUNC = Path("/usr/sbin/runc")
SECRET = "s3cret-become-4a1f"


@pytest.fixture(autouse=True)
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME without ~/.ssh/config: only the inventory's settings count."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def plan_argv(inventory: Path, output: Path) -> list[str]:
    sha = hashlib.sha256(RUNC.read_bytes()).hexdigest()
    return ["plan", "-i", str(inventory), "--runc", str(RUNC), "--sha256", sha, "-o", str(output)]


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.mark.parametrize(
    ("variables", "config", "words"),
    [
        ('ansible_ssh_common_args="-o HostKeyAlias=other"', "", "hostkeyalias (from the inventory"),
        ('ansible_ssh_extra_args="-L 8080:localhost:80"', "", "-L is not honoured"),
        ('ansible_ssh_common_args="-o StrictHostKeyChecking=no"', "", "StrictHostKeyChecking no"),
        ('ansible_ssh_common_args="-F {config}"', "Host *\n  CertificateFile c\n", "certificatefi"),
        ('ansible_ssh_common_args="-F {config}"', "Host h2\n  Port 70000\n", "Port '70000'"),
        ('ansible_ssh_common_args="-F {missing}"', "", "no such file"),
        ('ansible_ssh_common_args="-o ProxyJump=j -o ProxyCommand=nc"', "", "both ProxyJump"),
    ],
)
def test_plan_refuses_ssh_settings_it_cannot_honour(
    tmp_path: Path,
    variables: str,
    config: str,
    words: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "ssh_config").write_text(config)
    settings = variables.format(config=tmp_path / "ssh_config", missing=tmp_path / "nope")
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"h1\nh2 {settings}\nh3\n")
    output = tmp_path / "plan.json"
    assert main(plan_argv(inventory, output)) == 2
    error = one_error(capsys)
    assert error.startswith("runc-rollout: error: host h2: ") and words in error, error
    assert not output.exists()


@pytest.mark.parametrize(
    "config",
    [
        "Host *\n  User u\nHost web-2? !web-20\n  HostKeyAlias x\n",
        "Match host web-21\n  HostKeyAlias x\n",
        "Host jump\n  HostKeyAlias x\nHost web-21\n  ProxyJump jump\n",
    ],
)
def test_the_one_host_of_many_that_ssh_config_sets_apart(
    tmp_path: Path, empty_home: Path, config: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Hosts that ssh_config cannot tell apart are resolved once: the one it can is still
    resolved, and refused."""
    (empty_home / ".ssh").mkdir()
    (empty_home / ".ssh" / "config").write_text(config)
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("web-[10:29]\n")
    output = tmp_path / "plan.json"
    assert main(plan_argv(inventory, output)) == 2
    error = one_error(capsys)
    jump = "jump host jump: " if "ProxyJump" in config else ""
    assert f"host web-21: {jump}hostkeyalias (from ssh_config)" in error, error
    assert not output.exists()


def test_commands_that_connect_refuse_them_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The hosts do not exist: an error about them would mean a connection was tried."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text('h1.invalid ansible_ssh_common_args="-o HostKeyAlias=x"\n')
    for command in (["facts"], ["audit"], ["unstick"], ["rollback", "--yes"]):
        assert main([*command, "-i", str(inventory)]) == 2, command
        assert "host h1.invalid: hostkeyalias" in one_error(capsys), command


def test_the_plan_records_that_a_host_has_a_become_password_never_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"h1 ansible_user=deploy ansible_become=true ansible_become_password={SECRET}\n"
        f"h2 ansible_user=root ansible_become=true ansible_become_password={SECRET}\n"
        f"h3 ansible_user=deploy ansible_become_password={SECRET}\n"
        "h4 ansible_user=deploy ansible_become=true\n"
    )
    output = tmp_path / "plan.json"
    assert main([*plan_argv(inventory, output), "--format", "json"]) == 0
    text = output.read_text()
    assert SECRET not in text + capsys.readouterr().out
    body = json.loads(text)
    flagged = {
        host["name"]
        for wave in body["waves"]
        for host in wave["hosts"]
        if host["ssh"].get("inventory_become_password")
    }
    assert flagged == {"h1"}  # h2 logs in as root, h3 does not become, h4 has none
    assert any("1 hosts (h1) set ansible_become_password" in note for note in body["notes"])
    # Without the opt-in, apply refuses before anything (h1 does not resolve: nothing tried).
    assert main(["apply", str(output), "--yes", "--runs-dir", str(tmp_path / "runs")]) == 2
    error = one_error(capsys)
    assert "host h1: the inventory sets ansible_become_password" in error
    assert "--become-password-from-inventory" in error and SECRET not in error
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("\"{{ lookup('env', 'P') }}\"", "is a template"),
        ("!vault |\n        $ANSIBLE_VAULT;1.1;AES256\n        6162\n", "is vault-encrypted"),
        ("[a, b]", "is not text"),
    ],
)
def test_become_passwords_it_cannot_use(
    tmp_path: Path, value: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    h1.invalid:\n      ansible_user: deploy\n      ansible_become: true\n"
        f"      ansible_become_password: {value}"
    )
    opt_in = "--become-password-from-inventory"
    assert main(["facts", "-i", str(inventory), opt_in]) == 2
    error = one_error(capsys)
    assert f"host h1.invalid: ansible_become_password {words}" in error, error


def test_a_plan_whose_inventory_lost_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"h1.invalid ansible_user=u ansible_become=1 ansible_sudo_pass={SECRET}\n")
    output = tmp_path / "plan.json"
    assert main(plan_argv(inventory, output)) == 0
    inventory.write_text("h1.invalid ansible_user=u ansible_become=1\n")
    capsys.readouterr()
    argv = ["apply", str(output), "--yes", "--runs-dir", str(tmp_path / "runs")]
    assert main([*argv, "--become-password-from-inventory"]) == 2
    assert "host h1.invalid: the inventory no longer sets a become password" in one_error(capsys)
    inventory.unlink()
    assert main([*argv, "--become-password-from-inventory"]) == 2
    assert "the plan's inventory" in one_error(capsys)


def test_ansible_jobs_are_split_by_become_password() -> None:
    become = BecomePasswords("asked", {"b": "own", "d": "own", "e": "other"})
    assert password_groups(["a", "b", "c", "d", "e"], become) == {
        "asked": ["a", "c"],
        "own": ["b", "d"],
        "other": ["e"],
    }
    assert password_groups(["a", "b"], BecomePasswords()) == {None: ["a", "b"]}
    assert SECRET not in repr(BecomePasswords(SECRET, {"h": SECRET}))


@pytest.mark.parametrize(
    ("said", "error", "words"),
    [
        ("Host key verification failed.", HostKeyRejected, "exit status 255: Host key verif"),
        ("kex_exchange_identification: Connection closed", HostUnreachable, "after 2 attempts"),
    ],
)
def test_a_proxycommand_that_ends_says_why(
    tmp_path: Path, said: str, error: type[Exception], words: str
) -> None:
    """A ProxyCommand's end is the connection's end, with what it said (run through the shell,
    as OpenSSH runs it); ssh refusing the bastion's key is final, anything else is retried."""
    (tmp_path / "known_hosts").write_text("")
    command = "sh -c " + shlex.quote(f"echo {said!r} >&2; exit 255")
    target = SshTarget(
        address="h1.invalid",
        known_hosts_file=str(tmp_path / "known_hosts"),
        ssh_args=("-o", f"ProxyCommand={command}"),
    )
    started = time.monotonic()
    with (
        SshExecutor(connect_attempts=2, backoff=0.01) as executor,
        pytest.raises(error, match="ProxyCommand") as caught,
    ):
        executor.session(target, name="h1")
    assert words in str(caught.value) and said in str(caught.value)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("variables", "says"),
    [
        ("ansible_host='web1;touch${{IFS}}{marker};#'", "ansible_host 'web1;touch"),
        ("ansible_host='-oProxyCommand=touch${{IFS}}{marker}'", "ansible_host '-oProxyCommand"),
        ("ansible_host=web1 ansible_user='u$(touch${{IFS}}{marker})'", "ansible_user 'u$(touch"),
    ],
)
def test_addresses_and_users_that_are_not_plain_names_run_nothing(
    tmp_path: Path, variables: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """ssh_config's `Match exec` runs through a shell with %h and %r filled in, as a
    ProxyCommand does: an address or a user that is not a plain name is refused first."""
    marker = tmp_path / "ran"
    config = tmp_path / "ssh_config"
    config.write_text('Match exec "true %h %r"\n  User matched\n')
    inventory = tmp_path / "hosts.ini"
    common = f'ansible_ssh_common_args="-F {config}"'
    inventory.write_text(f"h1 {variables.format(marker=marker)} {common}\n")
    output = tmp_path / "plan.json"
    assert main(plan_argv(inventory, output)) == 2
    error = one_error(capsys)
    assert error.startswith("runc-rollout: error: host h1: ") and says in error, error
    assert "not a plain host name or IP address" in error or "not a plain user name" in error
    assert not marker.exists() and not output.exists()


@pytest.mark.parametrize(
    "target",
    [
        SshTarget(address="web1;touch${IFS}MARKER;#"),
        SshTarget(address="web1", user="u`touch${IFS}MARKER`"),
        SshTarget(address="web1", ssh_args=("-J", "j;touch${IFS}MARKER;#")),
        SshTarget(address="web1", ssh_args=("-o", "HostName=x$(touch${IFS}MARKER)")),
    ],
)
def test_a_plan_with_such_an_address_runs_nothing_either(
    tmp_path: Path, target: SshTarget, empty_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan file is input too: the check is made again before any ssh_config lookup."""
    marker = tmp_path / "ran"
    (empty_home / ".ssh").mkdir()
    (empty_home / ".ssh" / "config").write_text('Match exec "true %h %r"\n  User matched\n')
    hostile = replace(
        target,
        address=target.address.replace("MARKER", str(marker)),
        user=None if target.user is None else target.user.replace("MARKER", str(marker)),
        ssh_args=tuple(word.replace("MARKER", str(marker)) for word in target.ssh_args),
    )
    with open(os.devnull) as nothing:
        monkeypatch.setattr(sys, "stdin", nothing)  # `Match exec` (invoke) reads our stdin
        with pytest.raises(SshConfigError, match="not a plain"):
            SshRoutes().check({"h1": hostile})
    assert not marker.exists()


def test_plain_names_and_addresses_are_taken() -> None:
    for address in ("web-1.example.org", "10.0.0.1", "fe80::1%eth0", "2001:db8::1", "node_7"):
        check_destination(SshTarget(address=address, user="deploy.user@corp"))
