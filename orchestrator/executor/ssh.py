"""The SSH backend, on paramiko: strict host keys, key auth, retried connects, killed timeouts.

Host keys are always checked (`RejectPolicy`): an unknown or changed key fails the host before
anything runs. known_hosts comes from the target (the inventory's UserKnownHostsFile), else the
executor's `known_hosts` (`--known-hosts`), else ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts.

Every command runs as `timeout -s KILL N sh -c SCRIPT` on the host (inside `sudo -n` when a
non-root user has `become`), so a command that overruns is killed there with its whole process
group; the client gives up a few seconds later and closes the channel if the host did not.
"""

from __future__ import annotations

import logging
import math
import os
import random
import select
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import BinaryIO, NoReturn

import paramiko

from orchestrator.executor.base import (
    AuthenticationFailed,
    CommandResult,
    CommandTimeout,
    ConnectionLost,
    ExecutorError,
    HostKeyRejected,
    HostUnreachable,
)
from orchestrator.models import SshTarget

DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")
PARAMIKO_LOG = "orchestrator.executor.ssh.paramiko"
# paramiko logs every dropped connect with a traceback; retried ones are not worth a screenful.
# Quiet unless the application configures logging for this channel.
logging.getLogger(PARAMIKO_LOG).addHandler(logging.NullHandler())
KILL_GRACE = 5.0  # seconds the client waits beyond a timeout for the host to kill the command
_READ_SIZE = 65536
MAX_OUTPUT = 64 << 20  # bytes of stdout and stderr one command may send back


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


def known_hosts_name(address: str, port: int) -> str:
    """How OpenSSH names the host in known_hosts: `addr`, or `[addr]:port` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


def remote_command(command: str, timeout: float, *, sudo: bool) -> str:
    """The command line sent to sshd: `command` under `sh`, killed on the host after `timeout`."""
    inner = f"timeout -s KILL {math.ceil(timeout)} sh -c {shlex.quote(command)}"
    return f"exec sudo -n {inner}" if sudo else f"exec {inner}"


class SshSession:
    """One authenticated connection to one host. Safe to share between threads."""

    def __init__(
        self, client: paramiko.SSHClient, host: str, address: str, *, sudo: bool, io_timeout: float
    ) -> None:
        self._client = client
        self._host = host
        self._address = address
        self._sudo = sudo
        self._io_timeout = io_timeout
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_available = True
        self._sftp_lock = threading.Lock()

    @property
    def host(self) -> str:
        return self._host

    @property
    def active(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def run(
        self, command: str, *, timeout: float, stdin: bytes | BinaryIO | None = None
    ) -> CommandResult:
        if timeout <= 0:
            raise ValueError("timeout must be positive")  # `timeout 0` would never kill
        started = time.monotonic()
        deadline = started + math.ceil(timeout) + KILL_GRACE
        label = " ".join(command.split())[:100]
        transport = self._transport()
        try:
            channel = transport.open_session(timeout=self._io_timeout)
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise self._lost(f"cannot open a channel: {error}") from error
        try:
            channel.exec_command(remote_command(command, timeout, sudo=self._sudo))
            if stdin:
                channel.settimeout(max(deadline - time.monotonic(), 0.001))
                try:
                    _send(channel, stdin)
                except OSError:
                    if not channel.closed:  # else the command ended without reading it all
                        raise
            channel.shutdown_write()
            stdout, stderr = _collect(channel, deadline)
        except TimeoutError as error:
            raise CommandTimeout(self._host, self._address, label, timeout) from error
        except (paramiko.SSHException, OSError, EOFError) as error:
            raise self._lost(f"connection lost during command {label!r}: {error}") from error
        finally:
            channel.close()
        status = channel.exit_status
        duration = time.monotonic() - started
        if status == -1 and not transport.is_active():
            raise self._lost(f"connection lost during command {label!r}")
        if status in (-1, 124, 137) and duration >= math.ceil(timeout):
            raise CommandTimeout(self._host, self._address, label, timeout)
        return CommandResult(
            exit_status=status,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            duration=duration,
        )

    def put(self, local: Path, remote: str, *, mode: int) -> None:
        if self._sudo:
            self._put_through_shell(local, remote, mode)
            return
        with self._sftp_lock:
            sftp = self._sftp_client()
            if sftp is None:
                self._put_through_shell(local, remote, mode)
                return
            try:
                with sftp.open(remote, "wb") as handle:
                    handle.chmod(mode)  # before any content arrives
                    handle.set_pipelined(True)
                    with local.open("rb") as source:
                        while chunk := source.read(1 << 20):
                            handle.write(chunk)
                size = sftp.stat(remote).st_size
            except OSError as error:
                if not self.active or isinstance(error, TimeoutError):
                    raise self._lost(f"connection lost while writing {remote}: {error}") from error
                raise ExecutorError(
                    self._host, self._address, f"cannot write {remote}: {error}"
                ) from error
            except (paramiko.SSHException, EOFError) as error:
                raise self._lost(f"connection lost while writing {remote}: {error}") from error
        if size != local.stat().st_size:
            raise ExecutorError(
                self._host, self._address, f"{remote}: wrote {size} bytes of {local.stat().st_size}"
            )

    def close(self) -> None:
        with self._sftp_lock:
            if self._sftp is not None:
                self._sftp.close()
                self._sftp = None
        self._client.close()

    def _put_through_shell(self, local: Path, remote: str, mode: int) -> None:
        """Stream the file through `cat`: for sudo (SFTP runs as the login user, who cannot
        write root's files) and for hosts whose sshd has no SFTP subsystem."""
        script = f'set -- {shlex.quote(remote)}\numask 077 && cat > "$1" && chmod {mode:o} "$1"'
        with local.open("rb") as source:  # streamed: never the whole artifact in memory
            result = self.run(script, timeout=self._io_timeout, stdin=source)
        if not result.ok:
            raise ExecutorError(
                self._host, self._address, f"cannot write {remote}: {result.stderr.strip()}"
            )

    def _sftp_client(self) -> paramiko.SFTPClient | None:
        """The session's SFTP client, opened on first use; None if the host has no SFTP."""
        if self._sftp is None and self._sftp_available:
            try:
                self._sftp = self._client.open_sftp()
            except (paramiko.SSHException, OSError, EOFError) as error:
                if not self.active:
                    raise self._lost(f"connection lost opening SFTP: {error}") from error
                self._sftp_available = False
                return None
            channel = self._sftp.get_channel()
            if channel is not None:
                channel.settimeout(self._io_timeout)
        return self._sftp

    def _transport(self) -> paramiko.Transport:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise self._lost("the connection is closed")
        return transport

    def _lost(self, message: str) -> ConnectionLost:
        return ConnectionLost(self._host, self._address, message)


def _send(channel: paramiko.Channel, stdin: bytes | BinaryIO) -> None:
    if isinstance(stdin, bytes):
        channel.sendall(stdin)
        return
    while chunk := stdin.read(_READ_SIZE * 32):
        channel.sendall(chunk)


def _collect(channel: paramiko.Channel, deadline: float) -> tuple[bytes, bytes]:
    """Read stdout and stderr until EOF and the exit status; TimeoutError at `deadline`.
    A host is untrusted: more than `MAX_OUTPUT` bytes of output ends the command (EOFError)."""
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    received = 0

    def drain() -> None:
        nonlocal received
        while channel.recv_ready():
            stdout.append(channel.recv(_READ_SIZE))
            received += len(stdout[-1])
        while channel.recv_stderr_ready():
            stderr.append(channel.recv_stderr(_READ_SIZE))
            received += len(stderr[-1])
        if received > MAX_OUTPUT:
            raise EOFError(f"the host sent more than {MAX_OUTPUT >> 20} MiB of output")

    poller = select.poll()  # not select(): descriptors above 1024 with many hosts
    poller.register(channel.fileno(), select.POLLIN)
    while not (channel.eof_received or channel.closed):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        poller.poll(remaining * 1000)
        drain()
    drain()
    if not channel.status_event.wait(max(deadline - time.monotonic(), 0)):
        raise TimeoutError
    drain()
    return b"".join(stdout), b"".join(stderr)


class SshExecutor:
    """Opens and caches one `SshSession` per host; `session` is safe to call from many threads.

    Connects are retried with exponential backoff and jitter on transient errors (refused, reset,
    timed out, dropped before the banner as sshd's MaxStartups does), never on a rejected host
    key or failed authentication.
    """

    def __init__(
        self,
        *,
        known_hosts: Path | None = None,
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
        self._known_hosts = known_hosts
        self._connect_timeout = connect_timeout
        self._attempts = connect_attempts
        self._backoff = backoff
        self._backoff_max = backoff_max
        self._keepalive = keepalive
        self._io_timeout = io_timeout
        self._rng = rng or random.Random()
        self._sessions: dict[tuple[str, int, str], SshSession] = {}
        self._locks: dict[tuple[str, int, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> SshExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def session(self, target: SshTarget, *, name: str | None = None) -> SshSession:
        user = target.user or "root"
        key = (target.address, target.port, user)
        with self._lock:
            host_lock = self._locks.setdefault(key, threading.Lock())
        with host_lock:
            with self._lock:
                cached = self._sessions.get(key)
            if cached is not None and cached.active:
                return cached
            if cached is not None:
                cached.close()
            opened = self._connect(target, name or target.address, user)
            with self._lock:
                self._sessions[key] = opened
            return opened

    def close(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for opened in sessions:
            opened.close()

    def known_hosts_files(self, target: SshTarget) -> list[Path]:
        """The known_hosts files checked for `target`, in the order described above."""
        if target.known_hosts_file:
            return [Path(target.known_hosts_file).expanduser()]
        if self._known_hosts is not None:
            return [self._known_hosts.expanduser()]
        return [Path(path).expanduser() for path in DEFAULT_KNOWN_HOSTS]

    def _connect(self, target: SshTarget, host: str, user: str) -> SshSession:
        address = f"{target.address}:{target.port}"
        files = self._checked_files(target, host, address)
        if target.private_key_file and not Path(target.private_key_file).expanduser().is_file():
            raise AuthenticationFailed(
                host, address, f"private key file {target.private_key_file} does not exist"
            )
        last: BaseException | None = None
        for attempt in range(self._attempts):
            if attempt:
                ceiling = min(self._backoff_max, self._backoff * 2 ** (attempt - 1))
                time.sleep(ceiling / 2 + self._rng.uniform(0, ceiling / 2))
            client = paramiko.SSHClient()
            client.set_log_channel(PARAMIKO_LOG)
            client.set_missing_host_key_policy(_StrictRejectPolicy())
            for path in files:
                client.load_system_host_keys(str(path))
            try:
                self._open(client, target, user)
            except _UnknownHostKey as error:
                client.close()
                raise self._unknown_key(target, host, address, files, error.key) from None
            except paramiko.BadHostKeyException as error:
                client.close()
                raise self._changed_key(target, host, address, files, error) from None
            except paramiko.AuthenticationException as error:
                client.close()
                raise AuthenticationFailed(
                    host, address, f"authentication as {user} failed: {error}"
                ) from None
            except socket.gaierror as error:
                client.close()
                raise HostUnreachable(host, address, f"cannot resolve: {error}") from None
            except (paramiko.SSHException, OSError, EOFError) as error:
                client.close()
                last = error
                continue
            transport = client.get_transport()
            if transport is not None:
                transport.set_keepalive(self._keepalive)
            sudo = target.become and user != "root"
            return SshSession(client, host, address, sudo=sudo, io_timeout=self._io_timeout)
        raise HostUnreachable(
            host, address, f"cannot connect after {self._attempts} attempts: {_describe(last)}"
        )

    def _open(self, client: paramiko.SSHClient, target: SshTarget, user: str) -> None:
        sock = socket.create_connection((target.address, target.port), self._connect_timeout)
        try:
            # Without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms to a channel open.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key_file = target.private_key_file
            client.connect(
                target.address,
                port=target.port,
                username=user,
                key_filename=None if key_file is None else str(Path(key_file).expanduser()),
                look_for_keys=key_file is None,
                allow_agent=key_file is None,
                sock=sock,
                timeout=self._connect_timeout,
                banner_timeout=self._connect_timeout,
                auth_timeout=self._connect_timeout,
                channel_timeout=self._connect_timeout,
            )
        except BaseException:
            client.close()  # stops paramiko's transport thread before its socket goes
            sock.close()
            raise

    def _checked_files(self, target: SshTarget, host: str, address: str) -> list[Path]:
        files = self.known_hosts_files(target)
        present = [path for path in files if path.is_file()]
        unreadable = [path for path in present if not os.access(path, os.R_OK)]
        if unreadable:
            raise HostKeyRejected(host, address, f"cannot read known_hosts file {unreadable[0]}")
        if not present:
            listed = " or ".join(str(path) for path in files)
            raise HostKeyRejected(
                host,
                address,
                f"no known_hosts file: {listed} does not exist, so the host key cannot be "
                "checked. Pass --known-hosts FILE or set UserKnownHostsFile in the inventory's "
                "ansible_ssh_common_args.",
            )
        return present

    def _unknown_key(
        self, target: SshTarget, host: str, address: str, files: list[Path], key: paramiko.PKey
    ) -> HostKeyRejected:
        name = known_hosts_name(target.address, target.port)
        port = "" if target.port == 22 else f"-p {target.port} "
        return HostKeyRejected(
            host,
            address,
            f"host key unknown: {name} is not in {', '.join(map(str, files))}. The host offered "
            f"{key.get_name()} {key.fingerprint}. Check that fingerprint out of band (on the host: "
            f"ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then add the key with "
            f"`ssh-keyscan {port}{target.address} >> {files[0]}`.",
        )

    def _changed_key(
        self,
        target: SshTarget,
        host: str,
        address: str,
        files: list[Path],
        error: paramiko.BadHostKeyException,
    ) -> HostKeyRejected:
        name = known_hosts_name(target.address, target.port)
        holding = [path for path in files if _has_entry(path, name)] or files
        return HostKeyRejected(
            host,
            address,
            f"HOST KEY CHANGED: {name} offered {error.key.get_name()} {error.key.fingerprint}, "
            f"but {', '.join(map(str, holding))} expects {error.expected_key.get_name()} "
            f"{error.expected_key.fingerprint}. Someone may be intercepting the connection, or "
            f"the host was reinstalled. Only if you know it was: `ssh-keygen -R '{name}' -f "
            f"{holding[0]}`, check the new fingerprint out of band, and add it.",
        )


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
