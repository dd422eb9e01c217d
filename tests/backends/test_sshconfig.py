"""ssh_config resolution as plain data: target settings + config text in, a route out."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.backends.ssh.sshconfig import SshConfigError, load_config, parse_ssh_args, resolve
from orchestrator.errors import ExecutorError
from orchestrator.models import InventoryHost, SshHop, SshTarget
from orchestrator.plan.planner import ssh_target

HOME = Path.home()  # paramiko expands ~ in IdentityFile from the environment
CONFIG = """
Host lab-*
    User alice
    Port 2222
    IdentityFile ~/.ssh/lab
    IdentitiesOnly yes
Host lab-behind-*
    ProxyJump ops@bastion:2200
Host bastion
    HostName 10.0.0.1
    UserKnownHostsFile ~/.ssh/bastion_known
Match host 192.168.*
    User matched
Host *
    ServerAliveInterval 15
    IdentityFile ~/.ssh/id_default
"""


def route(target: SshTarget, text: str = CONFIG) -> tuple[SshHop, ...]:
    config = paramiko.SSHConfig.from_text(text)
    return resolve(target, config, local_user="root", home=HOME, known_hosts="/k").hops


def host(name: str, **variables: object) -> SshTarget:
    return ssh_target(InventoryHost(name=name, vars=variables))


def test_host_block_gives_user_port_and_key() -> None:
    (hop,) = route(host("lab-01"))
    assert hop == SshHop(
        alias="lab-01",
        hostname="lab-01",
        port=2222,
        user="alice",
        identity_files=(f"{HOME}/.ssh/lab", f"{HOME}/.ssh/id_default"),
        identities_only=True,
        known_hosts_files=("/k",),
    )


def test_inventory_beats_ssh_config() -> None:
    target = host(
        "lab-01",
        ansible_host="127.0.0.5",
        ansible_port=22,
        ansible_user="bob",
        ansible_ssh_private_key_file="/keys/bob",
    )
    (hop,) = route(target)
    # The Host block matched the destination, 127.0.0.5, not the inventory name.
    assert (hop.hostname, hop.port, hop.user) == ("127.0.0.5", 22, "bob")
    assert hop.identity_files[0] == "/keys/bob"


def test_common_args_beat_config_and_extra_args_come_after() -> None:
    target = host(
        "lab-01",
        ansible_ssh_common_args="-o User=carol -o Port=2020",
        ansible_ssh_extra_args="-o User=dave -l erin",
    )
    (hop,) = route(target)
    assert (hop.user, hop.port) == ("carol", 2020)


def test_match_host() -> None:
    (hop,) = route(host("192.168.1.4"))
    assert hop.user == "matched"


def test_proxy_jump_from_config() -> None:
    bastion, target = route(host("lab-behind-1"))
    assert (bastion.alias, bastion.hostname, bastion.port, bastion.user) == (
        "bastion",
        "10.0.0.1",
        2200,
        "ops",
    )
    # Jump hosts get ssh_config's known_hosts, never --known-hosts (as OpenSSH's ProxyJump).
    assert bastion.known_hosts_files == (f"{HOME}/.ssh/bastion_known",)
    assert target.known_hosts_files == ("/k",)


def test_proxy_jump_chain_from_inventory_args() -> None:
    hops = route(host("db", ansible_ssh_common_args="-J first,second:2201"))
    assert [(h.alias, h.port) for h in hops] == [("first", 22), ("second", 2201), ("db", 22)]


def test_kubespray_proxy_command() -> None:
    args = '-o ProxyCommand="ssh -F /dev/null -W %h:%p -p 22 ops@10.0.0.1"'
    (hop,) = route(host("node1", ansible_host="10.1.0.5", ansible_ssh_common_args=args))
    assert hop.proxy_command == "ssh -F /dev/null -W 10.1.0.5:22 -p 22 ops@10.0.0.1"


def test_config_file_from_args() -> None:
    config_file, options = parse_ssh_args(["-F", "/etc/lab.cfg", "-oPort=2", "-C", "-q"])
    assert config_file == "/etc/lab.cfg"
    assert options == [("port", "2")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("-o StrictHostKeyChecking=no", "host keys are always checked"),
        ("-o PKCS11Provider=/lib/p11.so", "pkcs11provider"),
        ("-D 1080", "-D is not honoured"),
        ("-o ProxyJump=a -o ProxyCommand=b", "both ProxyJump and ProxyCommand"),
        ("-o Port=x", "not a TCP port"),
    ],
)
def test_what_is_not_honoured_is_an_error(args: str, message: str) -> None:
    with pytest.raises(SshConfigError, match=message):
        route(host("h", ansible_ssh_common_args=args))


def test_unknown_config_option_names_ssh_config() -> None:
    with pytest.raises(SshConfigError, match=r"hostkeyalias \(from ssh_config\)"):
        route(host("h"), "Host *\n  HostKeyAlias other\n")


def test_load_config_inlines_include(tmp_path: Path) -> None:
    (tmp_path / ".ssh/conf.d").mkdir(parents=True)
    (tmp_path / ".ssh/conf.d/lab.conf").write_text("Host lab-*\n  User included\n")
    (tmp_path / ".ssh/config").write_text("Include conf.d/*.conf\nHost *\n  Port 2\n")
    config = load_config(None, tmp_path)
    assert config.lookup("lab-1")["user"] == "included"
    with pytest.raises(SshConfigError, match="no such file"):
        load_config(str(tmp_path / "missing"), tmp_path)


def test_the_executor_fails_the_host_naming_the_option() -> None:
    target = host("node7", ansible_ssh_common_args="-o PKCS11Provider=/lib/p11.so")
    with SshExecutor() as executor, pytest.raises(ExecutorError) as caught:
        executor.session(target, name="node7")
    assert "node7" in str(caught.value) and "pkcs11provider" in str(caught.value)


def test_a_config_paramiko_cannot_apply_is_an_error() -> None:
    with pytest.raises(SshConfigError, match="cannot be applied to h"):
        route(host("h"), "Host *\n  CanonicalizeHostname yes\n")
