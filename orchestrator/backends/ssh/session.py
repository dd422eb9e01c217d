"""One open SSH connection as the host procedure uses it (`SshSession`): commands run as `timeout
-s KILL N sh -c SCRIPT` (inside `sudo -n`, or sudo with the become password), their output read
up to a cap, files sent over SFTP or the shell; and the wrapping of a command for the host."""

from __future__ import annotations

import codecs
import math
import re
import secrets
import select
import shlex
import threading
import time
from pathlib import Path
from typing import BinaryIO

import fabric
import paramiko
from invoke.exceptions import ResponseNotAccepted
from invoke.watchers import FailingResponder

from orchestrator.host.session import (
    OUTPUT_CAP,
    AuthenticationFailed,
    CommandResult,
    CommandTimeout,
    ConnectionLost,
    ExecutorError,
    killed_after,
    timed_out,
)

KILL_GRACE = 5.0  # seconds the client waits beyond a timeout for the host to kill the command
_READ_SIZE = 65536
_SEND_SIZE = 32768  # paramiko's largest packet
SUDO_READY = "runc-rollout: sudo done"


def remote_command(command: str, timeout: float, *, sudo: bool, prompt: str | None = None) -> str:
    """The command line sent to sshd: `command` under `sh`, killed on the host after `timeout`.

    With a sudo `prompt` (a become password), sudo reads the password from stdin when it asks
    (`-S -p PROMPT`), and the command says `SUDO_READY` on stderr before it starts, so that the
    client knows when sudo is done with stdin.
    """
    inner = killed_after(command, timeout)
    if not sudo:
        return f"exec {inner}"
    if prompt is None:
        return f"exec sudo -n {inner}"
    ready = f"echo {shlex.quote(SUDO_READY)} >&2 && exec {inner}"
    return f"exec sudo -S -p {shlex.quote(prompt)} sh -c {shlex.quote(ready)}"


class SshSession:
    """One authenticated connection to one host. Safe to share between threads."""

    def __init__(
        self,
        connection: fabric.Connection,
        host: str,
        address: str,
        *,
        sudo: bool,
        password: str | None,
        io_timeout: float,
    ) -> None:
        self._connection = connection
        self._client: paramiko.SSHClient = connection.client
        self._password = password
        self._prompt = f"[sudo for runc-rollout {secrets.token_hex(8)}] password: "
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
            prompt = self._prompt if self._sudo and self._password is not None else None
            channel.exec_command(remote_command(command, timeout, sudo=self._sudo, prompt=prompt))
            early = b"" if prompt is None else self._answer_sudo(channel, deadline, prompt)
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
        if timed_out(status, duration, timeout):
            raise CommandTimeout(self._host, self._address, label, timeout)
        return CommandResult(
            exit_status=status,
            stdout=stdout.text(),
            stderr=early.decode("utf-8", "replace") + stderr.text(),
            duration=duration,
            cut=stdout.cut or stderr.cut,
        )

    def _answer_sudo(self, channel: paramiko.Channel, deadline: float, prompt: str) -> bytes:
        """Give sudo the become password when it asks (invoke's responder, as fabric's `sudo`
        does) and wait until it is done; return what the command wrote to stderr after that."""
        assert self._password is not None
        responder = FailingResponder(
            pattern=re.escape(prompt), response=f"{self._password}\n", sentinel="try again"
        )
        seen = b""
        ready = SUDO_READY.encode() + b"\n"
        poller = select.poll()
        poller.register(channel.fileno(), select.POLLIN)
        while ready not in seen:
            if channel.exit_status_ready() and not channel.recv_stderr_ready():
                break  # sudo refused (not allowed, no password accepted)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            poller.poll(min(remaining, 1.0) * 1000)
            while channel.recv_stderr_ready():
                seen += channel.recv_stderr(_READ_SIZE)
            if len(seen) > OUTPUT_CAP:
                raise EOFError(f"sudo sent more than {OUTPUT_CAP >> 20} MiB before the command")
            try:
                for response in responder.submit(seen.decode("utf-8", "replace")):
                    channel.sendall(response.encode())
            except ResponseNotAccepted:
                raise AuthenticationFailed(
                    self._host, self._address, "sudo did not accept the become password"
                ) from None
        if ready not in seen:
            text = seen.decode("utf-8", "replace").replace(prompt, "").strip()
            raise AuthenticationFailed(
                self._host, self._address, f"sudo failed: {text or 'no reason given'}"
            )
        return seen.split(ready, 1)[1]

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
        self._connection.close()

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
    """In pieces of one packet: paramiko's `sendall` copies what is left after every packet
    (a 3.4 MB push in one call copied 180 MB). paramiko puts at most the peer's largest packet
    less 64 bytes in one: a piece of a round 32 KiB went as two packets, the second 64 bytes."""
    size = max(min(_SEND_SIZE, channel.out_max_packet_size - 64), 1024)
    if isinstance(stdin, bytes):
        view = memoryview(stdin)
        for start in range(0, len(view), size):
            channel.sendall(view[start : start + size].tobytes())
        return
    while chunk := stdin.read(size):
        channel.sendall(chunk)


class _Received:
    """One stream of a command's output, decoded a piece at a time as it arrives (never all of
    it as bytes and as text at once), up to `OUTPUT_CAP` bytes; `cut` once there was more."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._pieces: list[str] = []
        self.size = 0
        self.cut = False

    def add(self, data: bytes) -> None:
        room = OUTPUT_CAP - self.size
        if len(data) > room:
            data, self.cut = data[: max(room, 0)], True
        self.size += len(data)
        self._pieces.append(self._decoder.decode(data))

    def text(self) -> str:
        return "".join(self._pieces) + self._decoder.decode(b"", final=True)


def _collect(channel: paramiko.Channel, deadline: float) -> tuple[_Received, _Received]:
    """Read stdout and stderr until EOF and the exit status; TimeoutError at `deadline`.
    A host is untrusted: reading stops as soon as either stream is `cut` (the caller closes
    the channel, and the command fails)."""
    stdout, stderr = _Received(), _Received()

    def drain() -> bool:
        while channel.recv_ready() and not stdout.cut:
            stdout.add(channel.recv(_READ_SIZE))
        while channel.recv_stderr_ready() and not stderr.cut:
            stderr.add(channel.recv_stderr(_READ_SIZE))
        return stdout.cut or stderr.cut

    poller = select.poll()  # not select(): descriptors above 1024 with many hosts
    poller.register(channel.fileno(), select.POLLIN)
    while not (channel.eof_received or channel.closed):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        poller.poll(remaining * 1000)
        if drain():
            return stdout, stderr
    if drain():
        return stdout, stderr
    if not channel.status_event.wait(max(deadline - time.monotonic(), 0)):
        raise TimeoutError
    drain()
    return stdout, stderr
