"""Routes to hosts: each target resolved by `sshconfig`, every ssh_config read once. The SSH
executor connects along them; `plan` checks every host's with this alone, without the
executor's connection machinery (fabric)."""

from __future__ import annotations

import getpass
import threading
from collections.abc import Mapping
from pathlib import Path

import paramiko

from orchestrator.backends.ssh import sshconfig
from orchestrator.models import SshRoute, SshTarget


class SshRoutes:
    """How each target is reached (`route` is safe to call from many threads)."""

    def __init__(self, known_hosts: Path | None = None) -> None:
        self._known_hosts = known_hosts
        self._configs: dict[str | None, paramiko.SSHConfig] = {}
        self._host_blocks: dict[int, list[sshconfig.HostBlock] | None] = {}
        self._lock = threading.Lock()
        self._local_user = getpass.getuser()
        self._home = Path.home()

    def route(self, target: SshTarget) -> SshRoute:
        """How `target` is reached; `SshConfigError` if its settings cannot be honoured."""
        config_file, _ = sshconfig.command_line(target)
        default = None if self._known_hosts is None else str(self._known_hosts.expanduser())
        return sshconfig.resolve(
            target,
            self._config(config_file),
            local_user=self._local_user,
            home=self._home,
            known_hosts=default,
        )

    def check(self, targets: Mapping[str, SshTarget]) -> None:
        """Resolve every target's route; `SshConfigError` names the first host that cannot be.

        Once per distinct case (100k hosts would take seconds): targets that differ only in an
        address that no ssh_config block tells apart from the other's resolve alike.
        """
        resolved: set[tuple[object, ...]] = set()
        files: dict[tuple[str, ...], str | None] = {}
        for name, target in targets.items():
            try:
                sshconfig.check_destination(target)  # a resolved case is not resolved again
                if target.ssh_args not in files:
                    files[target.ssh_args] = sshconfig.parse_ssh_args(target.ssh_args)[0]
                blocks = self._blocks(self._config(files[target.ssh_args]))
                case: tuple[object, ...] | None = None
                if blocks is not None:
                    matched = sshconfig.matching_blocks(blocks, target.address)
                    case = (matched, target.port, target.user, target.private_key_file)
                    case += (target.known_hosts_file, target.ssh_args)
                    if case in resolved:
                        continue
                self.route(target)
            except sshconfig.SshConfigError as error:
                raise sshconfig.SshConfigError(f"host {name}: {error}") from None
            if case is not None:
                resolved.add(case)

    def _config(self, config_file: str | None) -> paramiko.SSHConfig:
        with self._lock:
            config = self._configs.get(config_file)
        if config is None:
            config = sshconfig.load_config(config_file, self._home)
            with self._lock:
                self._configs[config_file] = config
        return config

    def _blocks(self, config: paramiko.SSHConfig) -> list[sshconfig.HostBlock] | None:
        key = id(config)
        if key not in self._host_blocks:
            self._host_blocks[key] = sshconfig.host_blocks(config)
        return self._host_blocks[key]
