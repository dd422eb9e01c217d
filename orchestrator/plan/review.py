"""What signers approve besides the artifact and the waves: how each host is reached and how it
proves its new runc. The plan's views show every distinct setting, with the hosts that have
it, and flag those that run a command on the controller (ProxyCommand), replace ssh_config
(`-F`) or change whose host keys are trusted (a known_hosts file of the inventory's).

Pure: a plan in, lines out (Markdown for the change document, plain lines for the terminal).
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from orchestrator.backends.ssh.sshconfig import SshConfigError, parse_ssh_args
from orchestrator.models import Plan, SshTarget, VerifySpec
from orchestrator.util.textsafe import markdown_code, markdown_text, terminal_safe

NAMED = 20  # hosts named per setting shared by many; a flagged one names them all
# (name, value, what holds when the plan gives none), in the order they are shown
Settings = tuple[tuple[str, str | None, str], ...]
_Key = TypeVar("_Key")


@dataclass(frozen=True)
class Attention:
    """A setting a signer must look at: what it does, its value, the hosts that have it."""

    what: str
    value: str
    hosts: tuple[str, ...]


def _ssh_settings(target: SshTarget) -> Settings:
    """A target's settings but its address, in the order ssh reads them."""
    return (
        ("user", target.user, "ssh_config's, else the local user"),
        ("port", None if target.port is None else str(target.port), "ssh_config's, else 22"),
        ("key file", target.private_key_file, "ssh_config's, else ~/.ssh/id_* and the agent"),
        ("known_hosts", target.known_hosts_file, "--known-hosts, else ssh_config's"),
        ("become", "yes (sudo)" if target.become else "no", ""),
        ("ssh args", shlex.join(target.ssh_args) if target.ssh_args else None, "none"),
    )


def _verify_settings(verify: VerifySpec) -> Settings:
    uid = "a free uid drawn for each run" if verify.probe_uid is None else f"uid {verify.probe_uid}"
    probe = f"as {uid}, {verify.probe_timeout_seconds:g} s" if verify.probe else ""
    return (
        ("image", verify.image, "none: an OCI bundle run by the new runc"),
        ("command", verify.command, ""),
        ("exec into", verify.exec_container, "the first running container"),
        ("timeout", f"{verify.timeout_seconds:g} s", ""),
        ("incident probe", probe or None, "OFF: the fix is not proven"),
    )


def _flags(target: SshTarget) -> tuple[tuple[str, str], ...]:
    return _flags_of(target.known_hosts_file, target.ssh_args)


@functools.lru_cache(maxsize=1024)  # hosts share their settings: parsed once per case
def _flags_of(
    known_hosts_file: str | None, ssh_args: tuple[str, ...]
) -> tuple[tuple[str, str], ...]:
    """(what it does, value) of each risky setting of a target."""
    found: list[tuple[str, str]] = []
    if known_hosts_file:
        trusted = "a known_hosts file of the inventory's decides which keys are trusted"
        found.append((trusted, known_hosts_file))
    try:
        config_file, options = parse_ssh_args(ssh_args)
    except SshConfigError as error:
        return (*found, ("ssh args that cannot be read", str(error)))
    if config_file is not None:
        found.append(("-F: this ssh_config file replaces the usual ones", config_file))
    for name, value in options:
        if name == "proxycommand" and value.lower() != "none":
            found.append(("ProxyCommand: runs on the controller to reach the host", value))
        elif name in ("userknownhostsfile", "globalknownhostsfile") and (value != known_hosts_file):
            found.append((f"{name}: decides which host keys are trusted", value))
    return tuple(found)


def _grouped(pairs: Iterable[tuple[_Key, str]]) -> dict[_Key, list[str]]:
    """Host names by the setting they share, in the order of their first host."""
    groups: dict[_Key, list[str]] = {}
    for key, name in pairs:
        groups.setdefault(key, []).append(name)
    return groups


def _attention(plan: Plan) -> list[Attention]:
    """Every flagged setting, with all the hosts that have it."""
    groups = _grouped((flag, host.name) for host in plan.hosts for flag in _flags(host.ssh))
    return [Attention(what, value, tuple(names)) for (what, value), names in groups.items()]


def _hosts(names: list[str]) -> str:
    return f"{len(names)} host{'' if len(names) == 1 else 's'}"


def _some(names: list[str], show: Callable[[str], str] = markdown_code) -> str:
    head = ", ".join(show(name) for name in names[:NAMED])
    return head + (f" and {len(names) - NAMED} more" if len(names) > NAMED else "")


def settings_markdown(plan: Plan) -> list[str]:
    """The change document's section on reaching and verifying hosts."""
    ssh = _grouped((_ssh_settings(host.ssh), host.name) for host in plan.hosts)
    verify = _grouped((_verify_settings(host.verify), host.name) for host in plan.hosts)
    moved = [host for host in plan.hosts if host.ssh.address != host.name]
    out = ["## How hosts are reached and verified", "", "### SSH settings", ""]
    for settings, names in ssh.items():
        out.append(f"- {_hosts(names)} ({_some(names)}): " + _pairs(settings))
    out.append("- addresses: " + (
        ", ".join(f"{markdown_code(h.name)} at {markdown_code(h.ssh.address)}" for h in moved)
        + ("; every other host at its inventory name" if len(moved) < len(plan.hosts) else "")
        if moved
        else "every host at its inventory name"
    ))  # fmt: skip
    out += ["", "### Verification", ""]
    for settings, names in verify.items():
        out.append(f"- {_hosts(names)} ({_some(names)}): " + _pairs(settings))
    out += ["", "### Needs attention", ""]
    flagged = _attention(plan)
    for item in flagged:
        hosts = ", ".join(markdown_code(name) for name in item.hosts)
        out.append(f"- **{markdown_text(item.what)}** {markdown_code(item.value)}: {hosts}")
    out += [] if flagged else ["- nothing: no ProxyCommand, no -F, no known_hosts of their own"]
    return [*out, ""]


def _pairs(settings: Settings) -> str:
    return ", ".join(
        f"{name} {markdown_code(value)}"
        if value is not None
        else f"{name} *({markdown_text(default)})*"
        for name, value, default in settings
    )


def settings_lines(plan: Plan) -> list[str]:
    """The same for the terminal: plain lines (print them without markup)."""
    lines = []
    for title, groups in (
        ("ssh", _grouped((_ssh_settings(host.ssh), host.name) for host in plan.hosts)),
        ("verify", _grouped((_verify_settings(host.verify), host.name) for host in plan.hosts)),
    ):
        for settings, names in groups.items():
            text = ", ".join(
                f"{name} {value if value is not None else f'({default})'}"
                for name, value, default in settings
            )
            lines.append(f"{title}: {text}: {_hosts(names)} ({_some(names, str)})")
    # A real inventory gives every host its own address: at 100k hosts a line each would be
    # 100k lines on the terminal (and most of plan's time): the first NAMED, then a count.
    moved = [host for host in plan.hosts if host.ssh.address != host.name]
    for host in moved[:NAMED]:
        lines.append(f"address: {host.name} at {host.ssh.address}")
    if len(moved) > NAMED:
        lines.append(
            f"address: {len(moved) - NAMED} more hosts at addresses of their own (the plan "
            "file lists them all; so does --format markdown)"
        )
    for item in _attention(plan):
        lines.append(f"needs attention: {item.what}: {item.value}: {', '.join(item.hosts)}")
    return [terminal_safe(line) for line in lines]
