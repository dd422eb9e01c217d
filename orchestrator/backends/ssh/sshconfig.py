"""How to reach a host, resolved the way OpenSSH and Ansible do: a pure function of the target's
inventory settings and a parsed ssh_config (fabric's loading: `-F FILE`, else
/etc/ssh/ssh_config and ~/.ssh/config).

Precedence is OpenSSH's, where the first value obtained wins: Ansible's command line comes first
(`ansible_port`, `ansible_ssh_private_key_file`, `ansible_user` as `-o` options, then
`ansible_ssh_common_args`, then `ansible_ssh_extra_args`), then the config's `Host`/`Match`
blocks. `IdentityFile` accumulates. `ansible_host` is the destination the blocks are matched
against. Jump hosts (`ProxyJump`, `-J`) get the config only, as OpenSSH gives them.

Anything that changes how a host is reached or authenticated and is not honoured here is an
`SshConfigError` naming the option, never silently dropped; options that only tune a
connection (keepalives, multiplexing, compression...) are ignored.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import paramiko

from orchestrator.models import SshHop, SshRoute, SshTarget
from orchestrator.util.destinations import destination_problem

HONOURED = frozenset(
    {
        "hostname",
        "user",
        "port",
        "identityfile",
        "identitiesonly",
        "proxyjump",
        "proxycommand",
        "userknownhostsfile",
        "globalknownhostsfile",
        "stricthostkeychecking",
        "connecttimeout",
    }
)
# Settings that do not change which host is reached or how it authenticates: safe to ignore.
IGNORED = frozenset(
    {
        "controlmaster",
        "controlpath",
        "controlpersist",
        "serveraliveinterval",
        "serveralivecountmax",
        "tcpkeepalive",
        "compression",
        "loglevel",
        "batchmode",
        "forwardagent",
        "forwardx11",
        "forwardx11trusted",
        "addkeystoagent",
        "hashknownhosts",
        "passwordauthentication",
        "kbdinteractiveauthentication",
        "challengeresponseauthentication",
        "preferredauthentications",
        "pubkeyauthentication",
        "gssapiauthentication",
        "gssapidelegatecredentials",
        "sendenv",
        "setenv",
        "requesttty",
        "visualhostkey",
        "updatehostkeys",
        "checkhostip",
        "connectionattempts",
        "escapechar",
        "exitonforwardfailure",
        "clearallforwardings",
        "ipqos",
        "identityagent",  # the agent is reached through SSH_AUTH_SOCK
        "usekeychain",
        "ignoreunknown",
    }
)
# ssh flags without a value that change nothing here (-C compression, -q quiet, -v verbose...).
_PLAIN_FLAGS = frozenset("46ACNTXYaknqstvxy")
_FLAG_OPTIONS = {"-p": "port", "-l": "user", "-i": "identityfile", "-J": "proxyjump"}
_TRUE = {"yes", "true", "on"}
MAX_JUMPS = 8


class SshConfigError(ValueError):
    """An ssh setting this backend cannot honour, or a malformed one."""


def check_destination(target: SshTarget) -> None:
    """Refuse, before any ssh_config lookup (`Match exec` runs `%h` and `%r` through a
    shell), an address or a user that is not a plain name (`util.destinations`)."""
    problem = destination_problem(target.address, target.user)
    if problem is not None:
        raise SshConfigError(f"{problem} (refused before any ssh_config lookup)")


def command_line(target: SshTarget) -> tuple[str | None, list[tuple[str, str]]]:
    """The `-F` file and the `-o` options Ansible's ssh command line would carry, in order."""
    options: list[tuple[str, str]] = []
    if target.port is not None:
        options.append(("port", str(target.port)))
    if target.private_key_file:
        options.append(("identityfile", target.private_key_file))
    if target.user:
        options.append(("user", target.user))
    if target.known_hosts_file:  # the planner's reading of the arguments below
        options.append(("userknownhostsfile", target.known_hosts_file))
    config_file, parsed = parse_ssh_args(target.ssh_args)
    return config_file, options + parsed


def parse_ssh_args(words: Sequence[str]) -> tuple[str | None, list[tuple[str, str]]]:
    """`-F FILE` and the options of ssh arguments (`-o K=V`, `-oK V`, `-p`, `-l`, `-i`, `-J`)."""
    config_file: str | None = None
    options: list[tuple[str, str]] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if not word.startswith("-") or len(word) < 2:
            raise SshConfigError(f"ssh argument {word!r} is not an option")
        flag, attached = word[:2], word[2:]
        if flag in ("-o", "-F", *_FLAG_OPTIONS):
            value = attached
            if not value:
                if index >= len(words):
                    raise SshConfigError(f"ssh option {flag} has no value")
                value = words[index]
                index += 1
            if flag == "-F":
                config_file = value
            elif flag == "-o":
                options.append(_option(value))
            else:
                options.append((_FLAG_OPTIONS[flag], value))
        elif all(letter in _PLAIN_FLAGS for letter in word[1:]):
            continue
        else:
            raise SshConfigError(f"ssh option {word} is not honoured by the SSH backend")
    return config_file, options


def _option(text: str) -> tuple[str, str]:
    """`Name=value` or `Name value`, as ssh's -o reads it."""
    stripped = text.strip()
    cut = min((i for i in (stripped.find("="), stripped.find(" ")) if i > 0), default=-1)
    if cut < 0:
        raise SshConfigError(f"ssh option -o {text!r} has no value")
    value = stripped[cut + 1 :].strip()
    if value.startswith("="):
        value = value[1:].strip()
    return stripped[:cut].strip().lower(), value


def resolve(
    target: SshTarget,
    config: paramiko.SSHConfig,
    *,
    local_user: str,
    home: Path,
    known_hosts: str | None = None,
) -> SshRoute:
    """The route to `target`: its jump hosts, then itself, every setting resolved.

    `known_hosts` (`--known-hosts`) comes after the inventory's ssh arguments and before
    ssh_config, for the target only: jump hosts get ssh_config's, as OpenSSH gives them.
    """
    check_destination(target)
    _, options = command_line(target)
    if known_hosts is not None:
        options.append(("userknownhostsfile", known_hosts))
    first = _first_values(options)
    identity = [value for name, value in options if name == "identityfile"]
    return SshRoute(
        _route(target.address, first, identity, config, local_user=local_user, home=home, depth=0)
    )


def _route(
    alias: str,
    given: Mapping[str, str],
    given_identity: Sequence[str],
    config: paramiko.SSHConfig,
    *,
    local_user: str,
    home: Path,
    depth: int,
) -> tuple[SshHop, ...]:
    if depth > MAX_JUMPS:
        raise SshConfigError(f"more than {MAX_JUMPS} jump hosts (a ProxyJump loop?)")
    problem = destination_problem(alias, given.get("user"))
    if problem is not None:
        jump = f"jump host {alias}: " if depth else ""
        raise SshConfigError(f"{jump}{problem} (refused before any ssh_config lookup)")
    try:
        looked_up = config.lookup(alias)
    except (KeyError, ValueError, paramiko.ConfigParseError) as error:  # e.g. half a Canonical*
        raise SshConfigError(f"ssh_config cannot be applied to {alias}: {error!r}") from None
    found = {key: value for key, value in looked_up.items() if key not in given}
    for key in sorted(set(given) | set(found)):
        if key not in HONOURED and key not in IGNORED:
            where = "the inventory's ssh arguments" if key in given else "ssh_config"
            jump = f"jump host {alias}: " if depth else ""
            raise SshConfigError(f"{jump}{key} (from {where}) is not honoured by the SSH backend")
    settings = {**found, **given}
    checking = settings.get("stricthostkeychecking", "yes").lower()
    if checking not in ("yes", "ask"):
        raise SshConfigError(
            f"StrictHostKeyChecking {checking} is not honoured: host keys are always checked"
        )
    hostname = settings.get("hostname") or alias  # paramiko expanded its tokens
    port = _port(settings.get("port", "22"))
    user = settings.get("user") or local_user
    problem = destination_problem(hostname, user)  # pasted into a ProxyCommand's %h and %r
    if problem is not None:
        raise SshConfigError(f"host {alias}: HostName or User: {problem}")
    identity = [*given_identity, *_as_list(found.get("identityfile", []))]
    hop = SshHop(
        alias=alias,
        hostname=hostname,
        port=port,
        user=user,
        identity_files=tuple(_expand(path, home) for path in identity),
        identities_only=settings.get("identitiesonly", "no").lower() in _TRUE,
        known_hosts_files=_known_hosts(settings, home),
        connect_timeout=_timeout(settings.get("connecttimeout")),
    )
    proxy_jump = _unless_none(settings.get("proxyjump"))
    proxy_command = _unless_none(settings.get("proxycommand"))
    if proxy_jump and proxy_command:
        raise SshConfigError(f"host {alias}: both ProxyJump and ProxyCommand are set")
    if proxy_command:
        if "proxycommand" in given:  # paramiko expanded the config's own tokens already
            proxy_command = _tokens(proxy_command, hostname, alias, str(port), user)
        return (dataclasses.replace(hop, proxy_command=proxy_command),)
    if not proxy_jump:
        return (hop,)
    jumps = [_jump(text) for text in proxy_jump.split(",")]
    hops: list[SshHop] = []
    for index, (jump_user, jump_host, jump_port) in enumerate(jumps):
        override = {"user": jump_user, "port": jump_port}
        jump_given = {key: value for key, value in override.items() if value}
        if index:  # each later hop goes through the one before it, whatever its config says
            jump_given["proxyjump"] = "none"
            jump_given["proxycommand"] = "none"
        hops += _route(
            jump_host, jump_given, (), config, local_user=local_user, home=home, depth=depth + 1
        )
    return (*hops, hop)


HostBlock = tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]  # negated, plain


def host_blocks(config: paramiko.SSHConfig) -> list[HostBlock] | None:
    """The `Host` blocks of `config` that tell aliases apart (as compiled patterns; `Host *`
    applies to every alias alike), when which blocks match an alias alone decides what the
    config gives it: not with a `Match` block or a token in a ProxyJump (then None).

    Read from paramiko's parsed blocks (`_config`: not public API; None if it is not there)."""
    parsed = getattr(config, "_config", None)
    if not isinstance(parsed, list):
        return None
    blocks: list[HostBlock] = []
    for block in parsed:
        settings = block.get("config", {})
        if "matches" in block or "%" in str(settings.get("proxyjump") or ""):
            return None
        patterns = list(block.get("host", []))
        negated = tuple(_glob(p[1:]) for p in patterns if p.startswith("!"))
        plain = tuple(_glob(p) for p in patterns if not p.startswith("!"))
        if negated or "*" not in patterns:
            blocks.append((negated, plain))
    return blocks


def matching_blocks(blocks: Sequence[HostBlock], alias: str) -> tuple[int, ...]:
    """Which of `blocks` (from `host_blocks`) apply to `alias`: a negated pattern that matches
    rules its block out, else any pattern that matches rules it in (ssh_config(5), paramiko)."""
    return tuple(
        index
        for index, (negated, plain) in enumerate(blocks)
        if not any(p.match(alias) for p in negated) and any(p.match(alias) for p in plain)
    )


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


def _unless_none(value: str | None) -> str | None:
    return None if value is None or value.lower() == "none" else value


def _first_values(options: Iterable[tuple[str, str]]) -> dict[str, str]:
    first: dict[str, str] = {}
    for name, value in options:
        if name != "identityfile":
            first.setdefault(name, value)
    return first


def _jump(text: str) -> tuple[str | None, str, str | None]:
    """`[user@]host[:port]` (or `ssh://[user@]host[:port]`) of a ProxyJump list."""
    spec = text.strip().removeprefix("ssh://")
    user, _, rest = spec.rpartition("@")
    host, port = rest, None
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.removeprefix(":") or None
    elif rest.count(":") == 1:
        host, port = rest.split(":")
    if not host:
        raise SshConfigError(f"ProxyJump {text!r} names no host")
    return user or None, host, port


def _tokens(text: str, hostname: str, alias: str, port: str, user: str) -> str:
    """OpenSSH's `%h %n %p %r %%` in HostName and ProxyCommand."""
    values = {"h": hostname, "n": alias, "p": port, "r": user, "%": "%"}
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "%" and index + 1 < len(text):
            token = text[index + 1]
            if token not in values:
                raise SshConfigError(f"%{token} in {text!r} is not honoured by the SSH backend")
            out.append(values[token])
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise SshConfigError(f"Port {text!r} is not a TCP port")
    return int(text)


def _timeout(text: str | None) -> float | None:
    if text is None:
        return None
    if not text.isdigit() or int(text) == 0:
        raise SshConfigError(f"ConnectTimeout {text!r} is not a number of seconds")
    return float(text)


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _expand(path: str, home: Path) -> str:
    return str(home / path[2:]) if path.startswith("~/") else path


def _known_hosts(settings: Mapping[str, str], home: Path) -> tuple[str, ...]:
    files = [
        _expand(path, home)
        for key in ("userknownhostsfile", "globalknownhostsfile")
        for path in settings.get(key, "").split()
    ]
    return tuple(files)


SYSTEM_CONFIG = Path("/etc/ssh/ssh_config")


def load_config(config_file: str | None, home: Path) -> paramiko.SSHConfig:
    """The ssh_config OpenSSH would read: `-F FILE` alone, else the user's then the system's
    file, with `Include` inlined (paramiko and fabric do not read it)."""
    if config_file is not None:
        path = Path(_expand(config_file, home))
        if not path.is_file():
            raise SshConfigError(f"-F {config_file}: no such file")
        files = [path]
    else:
        files = [path for path in (home / ".ssh/config", SYSTEM_CONFIG) if path.is_file()]
    text = "\n".join(_inlined(path, home, depth=0) for path in files)
    return paramiko.SSHConfig.from_text(text)


def _inlined(path: Path, home: Path, *, depth: int) -> str:
    """`path`'s text with each `Include` replaced by the files it names (relative names are
    under ~/.ssh for the user's files and /etc/ssh for the system's, as in OpenSSH)."""
    if depth > 16:
        raise SshConfigError(f"{path}: Include nested more than 16 deep")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise SshConfigError(f"cannot read ssh_config {path}: {error}") from None
    base = SYSTEM_CONFIG.parent if str(path).startswith("/etc/ssh/") else home / ".ssh"
    lines = []
    for line in text.splitlines():
        words = line.split(None, 1)
        if words and words[0].lower() == "include" and len(words) == 2:
            for pattern in words[1].split():
                expanded = Path(_expand(pattern, home))
                full = expanded if expanded.is_absolute() else base / expanded
                for name in sorted(glob.glob(str(full))):
                    lines.append(_inlined(Path(name), home, depth=depth + 1))
        else:
            lines.append(line)
    return "\n".join(lines)
