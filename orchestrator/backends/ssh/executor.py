"""The SSH backend, on fabric and paramiko: ssh_config, jump hosts, strict host keys, key auth,
sudo with or without a password, retried connects, killed timeouts.

Host keys are always checked (`RejectPolicy`), for every hop: an unknown or changed key fails
the host before anything runs. Which known_hosts, user, port, keys and jump hosts apply is
resolved by `sshconfig` (the README's "Reaching hosts" says in what order).

Every command runs as `timeout -s KILL N sh -c SCRIPT` on the host (inside `sudo -n`, or
`sudo -S` answered with the become password, when a non-root user has `become`), so a command
that overruns is killed there with its whole process group; the client gives up a few seconds
later and closes the channel if the host did not.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import select
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import NoReturn

import fabric
import paramiko

from orchestrator.backends.ssh import sshconfig
from orchestrator.backends.ssh.routes import SshRoutes
from orchestrator.backends.ssh.session import SshSession
from orchestrator.host.session import (
    AuthenticationFailed,
    ExecutorError,
    HostKeyRejected,
    HostUnreachable,
)
from orchestrator.models import BecomePasswords, SshHop, SshRoute, SshTarget

DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")
PARAMIKO_LOG = "orchestrator.backends.ssh.executor.paramiko"
# paramiko logs every dropped connect with a traceback; retried ones are not worth a screenful.
# Quiet unless the application configures logging for this channel.
logging.getLogger(PARAMIKO_LOG).addHandler(logging.NullHandler())
# AES-GCM first: paramiko checks every other cipher's MAC in Python, byte by byte, which was
# most of the controller's CPU per host. OpenSSH has had it since 6.2 (2013); the rest stay.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


# How often paramiko's thread for a connection wakes when nothing arrives (it sets 0.1 s: each
# open connection then cost 0.55 ms of CPU per second here, 36 ms per host over a 65 s wave).
IDLE_WAKEUP = 1.0


def _transport(sock: object, **kwargs: object) -> paramiko.Transport:
    """paramiko's transport with `PREFERRED_CIPHERS` offered first, whose thread wakes every
    `IDLE_WAKEUP` seconds when idle (SSHClient's factory)."""
    transport = paramiko.Transport(sock, **kwargs)  # type: ignore[arg-type]
    transport.sock.settimeout(IDLE_WAKEUP)  # after paramiko's own, in Transport()
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    first = tuple(name for name in PREFERRED_CIPHERS if name in offered)
    options.ciphers = first + tuple(name for name in offered if name not in first)
    return transport


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, key: paramiko.PKey) -> None:
        super().__init__("host key not in known_hosts")
        self.key = key


class _StrictRejectPolicy(paramiko.RejectPolicy):
    """paramiko's RejectPolicy, keeping the offered key so the message can show its fingerprint."""

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> NoReturn:
        raise _UnknownHostKey(key)


class _ProxyCommand(paramiko.ProxyCommand):
    """A ProxyCommand run as OpenSSH runs it (`$SHELL -c "exec COMMAND"`, tokens expanded once,
    by `sshconfig`), whose end is the connection's end: paramiko's own reads an exited command's
    stdout in a loop until some timeout. What the command says on stderr (goes to a file, never
    blocking it) explains a failed connect."""

    def __init__(self, command: str) -> None:  # not super()'s: it splits the command itself
        self.cmd = [os.environ.get("SHELL") or "/bin/sh", "-c", f"exec {command}"]
        # Open after close(), which paramiko calls before a failed connect returns: said() reads it.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed with this object)
        self.process = subprocess.Popen(
            self.cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,
            start_new_session=True,  # Ctrl-C here is not the command's
        )
        self.timeout: float | None = None

    def recv(self, size: int) -> bytes:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        if not ready:
            raise TimeoutError
        return os.read(self.process.stdout.fileno(), size)  # b"" at its end: EOFError upstream

    def said(self) -> str:
        """Its exit status and last lines on stderr if it has ended (waits a second), else ""."""
        try:
            self.process.wait(1)
        except subprocess.TimeoutExpired:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read()[-4096:].decode("utf-8", "replace").strip().splitlines()
        words = "; ".join(line.strip() for line in lines[-3:] if line.strip())
        return f"exit status {self.process.returncode}" + (f": {words}" if words else "")

    def close(self) -> None:
        """End the command and reap it (paramiko's signals a PID that may be reaped already)."""
        self.process.terminate()  # nothing if it was reaped
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# What OpenSSH says when a host key is unknown or changed (in a ProxyCommand's `ssh -W`).
_SSH_HOST_KEY_FAILURE = re.compile(r"Host key verification failed|HOST IDENTIFICATION HAS CHANGED")


def known_hosts_name(address: str, port: int) -> str:
    """How OpenSSH names the host in known_hosts: `addr`, or `[addr]:port` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


class SshExecutor:
    """Opens and caches one `SshSession` per host; `session` is safe to call from many threads.

    Every connection goes through fabric: a `Connection` per hop, jump hosts as its gateway (each
    host its own connection to them, as with OpenSSH), a ProxyCommand as its socket. How
    each host is reached is resolved by `sshconfig` from the target and ssh_config.
    Connects are retried with exponential backoff and jitter on transient errors
    (refused, reset, timed out, dropped before the banner as sshd's MaxStartups does), never on a
    rejected host key or failed authentication.
    """

    def __init__(
        self,
        *,
        known_hosts: Path | None = None,
        become: BecomePasswords | None = None,
        connect_timeout: float = 10.0,
        connect_attempts: int = 5,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        keepalive: int = 15,
        io_timeout: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        if connect_attempts < 1:
            raise ValueError("connect_attempts must be at least 1")
        self._routes = SshRoutes(known_hosts)
        self._become = become or BecomePasswords()
        self._connect_timeout = connect_timeout
        self._attempts = connect_attempts
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._keepalive = keepalive
        self._io_timeout = io_timeout
        self._rng = rng or random.Random()
        self._sessions: dict[SshRoute, SshSession] = {}
        self._gateways: dict[tuple[tuple[SshHop, ...], str], fabric.Connection] = {}
        self._locks: dict[object, threading.Lock] = {}
        self._lock = threading.Lock()
        self._known_hosts_files = _KnownHostsFiles()

    def __enter__(self) -> SshExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def route(self, target: SshTarget) -> SshRoute:
        """How `target` is reached; `SshConfigError` if its settings cannot be honoured."""
        return self._routes.route(target)

    def session(self, target: SshTarget, *, name: str | None = None) -> SshSession:
        host = name or target.address
        try:
            route = self.route(target)
        except sshconfig.SshConfigError as error:
            raise ExecutorError(host, target.address, str(error)) from None
        with self._host_lock(route):
            with self._lock:
                cached = self._sessions.get(route)
            if cached is not None and cached.active:
                return cached
            if cached is not None:
                cached.close()
            sudo = target.become and route.target.user != "root"
            opened = self._connect(route, host, sudo=sudo)
            with self._lock:
                self._sessions[route] = opened
            return opened

    def release(self, target: SshTarget, *, name: str | None = None) -> None:
        """Close `target`'s session and its own jump-host connections, if open: at 10,000
        hosts, connections kept to the end of a run would be 10,000 sockets and threads."""
        host = name or target.address
        try:
            route = self.route(target)
        except sshconfig.SshConfigError:
            return  # never opened
        with self._lock:
            session = self._sessions.pop(route, None)
            gateways = [key for key in self._gateways if key[1] == host]
            jumps = [self._gateways.pop(key) for key in gateways]
        if session is not None:
            session.close()
        for gateway in reversed(jumps):
            gateway.close()

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
            gateways = list(self._gateways.values())
            self._gateways.clear()
        for opened in sessions:
            opened.close()
        for gateway in reversed(gateways):
            gateway.close()

    def _host_lock(self, key: object) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def _connect(self, route: SshRoute, host: str, *, sudo: bool) -> SshSession:
        hop = route.target
        address = f"{hop.hostname}:{hop.port}"
        last: BaseException | None = None
        for attempt in range(self._attempts):
            if attempt:
                ceiling = min(self._backoff_max, self._backoff * 2 ** (attempt - 1))
                time.sleep(ceiling / 2 + self._rng.uniform(0, ceiling / 2))
            try:
                gateway = self._gateway(route.jumps, host) if route.jumps else hop.proxy_command
                connection = self._open(hop, host, gateway)
            except _Transient as error:
                last = error.error
                continue
            password = self._become.of(host) if sudo else None
            return SshSession(
                connection, host, address, sudo=sudo, password=password, io_timeout=self._io_timeout
            )
        raise HostUnreachable(
            host, address, f"cannot connect after {self._attempts} attempts: {_describe(last)}"
        )

    def _gateway(self, hops: tuple[SshHop, ...], host: str) -> fabric.Connection:
        """`host`'s open connection to the last of `hops` (through the ones before it).

        One per host, as OpenSSH's ProxyJump makes: through one shared bastion connection, one
        paramiko transport thread encrypts every host's traffic twice, and apply over 48 hosts
        took twice as long (bench/apply_scale.py).
        """
        key = (hops, host)
        with self._host_lock(key):
            with self._lock:
                cached = self._gateways.get(key)
            if cached is not None and _is_active(cached):
                return cached
            if cached is not None:
                cached.close()
            hop = hops[-1]
            through = self._gateway(hops[:-1], host) if len(hops) > 1 else hop.proxy_command
            connection = self._open(hop, host, through, jump=True)
            with self._lock:
                self._gateways[key] = connection
            return connection

    def _open(
        self,
        hop: SshHop,
        host: str,
        gateway: fabric.Connection | str | None,
        *,
        jump: bool = False,
    ) -> fabric.Connection:
        """A fabric `Connection` to `hop`, opened with strict host keys; errors name the hop."""
        address = f"{hop.hostname}:{hop.port}"
        role = f"jump host {hop.alias} ({address}): " if jump else ""
        files = self._checked_files(hop, host, address, role)
        for key_file in hop.identity_files:
            if not Path(key_file).is_file():
                raise AuthenticationFailed(
                    host, address, f"{role}private key file {key_file} does not exist"
                )
        timeout = hop.connect_timeout or self._connect_timeout
        connect_kwargs: dict[str, object] = {
            "key_filename": list(hop.identity_files),
            "look_for_keys": not hop.identity_files,
            "allow_agent": not hop.identities_only,
            "banner_timeout": timeout,
            "auth_timeout": timeout,
            "channel_timeout": timeout,
            "transport_factory": _transport,
        }
        connection = fabric.Connection(
            hop.hostname,
            user=hop.user,
            port=hop.port,
            config=fabric.Config(ssh_config=paramiko.SSHConfig()),  # resolved already
            gateway=gateway if isinstance(gateway, fabric.Connection) else False,
            connect_timeout=math.ceil(timeout),
            connect_kwargs=connect_kwargs,
        )
        client = connection.client
        client.set_log_channel(PARAMIKO_LOG)
        client.set_missing_host_key_policy(_StrictRejectPolicy())
        name = known_hosts_name(hop.hostname, hop.port)  # as paramiko looks the host up
        for path in files:
            found = self._known_hosts_files.read(path).lookup(name)
            for keytype, key in (found or {}).items():
                client.get_host_keys().add(name, keytype, key)
        sock: socket.socket | _ProxyCommand | None = None
        try:
            if isinstance(gateway, str):
                sock = _ProxyCommand(gateway)
                connection.connect_kwargs["sock"] = sock
            elif gateway is None:
                sock = socket.create_connection((hop.hostname, hop.port), timeout)
                # Without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms to a channel open.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                connection.connect_kwargs["sock"] = sock
            connection.open()
        except BaseException as error:
            said = _proxy_said(sock, error)
            client.close()  # stops paramiko's transport thread before its socket goes
            if sock is not None:
                sock.close()
            if said:  # the command ended: that is the reason
                what = f"{role}ProxyCommand {gateway!r} ended: {said}"
                if _SSH_HOST_KEY_FAILURE.search(said):
                    raise HostKeyRejected(host, address, what) from None
                error = EOFError(what)
            raise self._connect_error(error, hop, host, address, files, role) from None
        transport = connection.client.get_transport()
        if transport is not None:
            transport.set_keepalive(self._keepalive)
        return connection

    def _checked_files(self, hop: SshHop, host: str, address: str, role: str) -> list[Path]:
        files = [Path(path) for path in hop.known_hosts_files] or [
            Path(path).expanduser() for path in DEFAULT_KNOWN_HOSTS
        ]
        present = [path for path in files if path.is_file()]
        unreadable = [path for path in present if not os.access(path, os.R_OK)]
        if unreadable:
            raise HostKeyRejected(
                host, address, f"{role}cannot read known_hosts file {unreadable[0]}"
            )
        if not present:
            listed = " or ".join(str(path) for path in files)
            raise HostKeyRejected(
                host,
                address,
                f"{role}no known_hosts file: {listed} does not exist, so the host key cannot be "
                "checked. Pass --known-hosts FILE or set UserKnownHostsFile in the inventory's "
                "ansible_ssh_common_args or in ssh_config.",
            )
        return present

    def _unknown_key(
        self,
        hop: SshHop,
        host: str,
        address: str,
        files: list[Path],
        key: paramiko.PKey,
        role: str,
    ) -> HostKeyRejected:
        name = known_hosts_name(hop.hostname, hop.port)
        port = "" if hop.port == 22 else f"-p {hop.port} "
        return HostKeyRejected(
            host,
            address,
            f"{role}host key unknown: {name} is not in {', '.join(map(str, files))}. The host "
            f"offered {key.get_name()} {key.fingerprint}. Check that fingerprint out of band (on "
            f"the host: ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then add the key with "
            f"`ssh-keyscan {port}{hop.hostname} >> {files[0]}`.",
        )

    def _changed_key(
        self,
        hop: SshHop,
        host: str,
        address: str,
        files: list[Path],
        error: paramiko.BadHostKeyException,
        role: str,
    ) -> HostKeyRejected:
        name = known_hosts_name(hop.hostname, hop.port)
        holding = [path for path in files if _has_entry(path, name)] or files
        return HostKeyRejected(
            host,
            address,
            f"{role}HOST KEY CHANGED: {name} offered {error.key.get_name()} "
            f"{error.key.fingerprint}, but {', '.join(map(str, holding))} expects "
            f"{error.expected_key.get_name()} {error.expected_key.fingerprint}. Someone may be "
            f"intercepting the connection, or the host was reinstalled. Only if you know it was: "
            f"`ssh-keygen -R '{name}' -f {holding[0]}`, check the new fingerprint out of band, "
            "and add it.",
        )

    def _connect_error(
        self,
        error: BaseException,
        hop: SshHop,
        host: str,
        address: str,
        files: list[Path],
        role: str,
    ) -> BaseException:
        """What a failed connect means: a final verdict on the host, or `_Transient`."""
        if isinstance(error, _UnknownHostKey):
            return self._unknown_key(hop, host, address, files, error.key, role)
        if isinstance(error, paramiko.BadHostKeyException):
            return self._changed_key(hop, host, address, files, error, role)
        if isinstance(error, paramiko.AuthenticationException):
            return AuthenticationFailed(
                host, address, f"{role}authentication as {hop.user} failed: {error}"
            )
        if isinstance(error, socket.gaierror):
            return HostUnreachable(host, address, f"{role}cannot resolve: {error}")
        if isinstance(error, paramiko.SSHException | OSError | EOFError):
            return _Transient(error)
        return error


class _Transient(Exception):
    """A connect that may work if tried again."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _proxy_said(sock: object, error: BaseException) -> str:
    """What a ProxyCommand said, when its end may be why the connect failed (not when the
    host behind it was judged: then the command is still running)."""
    judged = (_UnknownHostKey, paramiko.BadHostKeyException, paramiko.AuthenticationException)
    if not isinstance(sock, _ProxyCommand) or not isinstance(error, Exception):
        return ""
    return "" if isinstance(error, judged) else sock.said()


def _is_active(connection: fabric.Connection) -> bool:
    transport = connection.client.get_transport()
    return transport is not None and transport.is_active()


class _KnownHostsFiles:
    """known_hosts files, each parsed once (again only when it changes) and shared by every
    connection: a fleet's file has a line per host, and each connection reading it all made
    1,000 hosts a million parsed lines (each taking logging's global lock in paramiko)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._parsed: dict[Path, tuple[tuple[int, int, int, int], paramiko.HostKeys]] = {}

    def read(self, path: Path) -> paramiko.HostKeys:
        info = path.stat()
        stamp = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:  # one thread parses; the others wait for it rather than parse too
            held = self._parsed.get(path)
            if held is None or held[0] != stamp:
                keys = paramiko.HostKeys()
                keys.load(str(path))
                held = self._parsed[path] = (stamp, keys)
            return held[1]


def _has_entry(path: Path, name: str) -> bool:
    keys = paramiko.HostKeys()
    try:
        keys.load(str(path))
    except OSError:
        return False
    return keys.lookup(name) is not None


def _describe(error: BaseException | None) -> str:
    text = str(error).strip().splitlines()[0] if error is not None and str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
