"""The SSH executor on real sshd: run, put, timeouts that kill, strict host keys, retries, sudo.

Lab tests use the session's lab fleet; the sudo test starts its own sshd in a private mount
namespace where a user `deploy` exists with passwordless sudo (the machine's users are untouched).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from orchestrator.backends.group import run_on_hosts
from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.backends.ssh.session import KILL_GRACE, _Received, _send, remote_command
from orchestrator.host.session import (
    OUTPUT_CAP,
    AuthenticationFailed,
    CommandTimeout,
    HostKeyRejected,
    HostUnreachable,
    killed_after,
)
from orchestrator.lab.records import LabHost
from orchestrator.models import BecomePasswords, SshTarget
from tests.conftest import LabFleet


def target(lab: LabFleet, host: LabHost, **changes: Any) -> SshTarget:
    base = SshTarget(
        address=host.address,
        user="root",
        private_key_file=str(lab.private_key),
        known_hosts_file=str(lab.known_hosts),
    )
    return dataclasses.replace(base, **changes)


def accepted_logins(lab: LabFleet, host: LabHost) -> int:
    """How many logins the host's sshd has accepted so far, from its own log."""
    log = lab.state_dir / "hosts" / host.name / "var-log" / "sshd.log"
    return int(log.read_text(errors="replace").count("Accepted publickey"))


def processes_matching(marker: str) -> list[int]:
    """PIDs on this machine (all lab hosts share its PID space) whose command line has `marker`."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry.name))
    return found


def test_run_put_stdin_and_one_connection_per_host(lab: LabFleet, tmp_path: Path) -> None:
    host = lab.light_hosts[0]
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(3 << 20))
    with SshExecutor() as executor:
        session = executor.session(target(lab, host), name=host.name)
        assert executor.session(target(lab, host), name=host.name) is session
        result = session.run("echo out; echo err >&2; hostname >/dev/null; exit 3", timeout=10)
        assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")
        assert session.run("wc -c", timeout=10, stdin=b"x" * 100000).stdout.strip() == "100000"
        quoted = session.run("""printf '%s|' "it's" '$HOME' "a  b" """, timeout=10)
        assert quoted.stdout == "it's|$HOME|a  b|"

        remote = f"/var/lib/runc-rollout/put-test-{uuid.uuid4().hex}"
        session.put(payload, remote, mode=0o640)
        check = session.run(f"stat -c %a {remote}; sha256sum {remote}; rm {remote}", timeout=10)
    mode, digest = check.stdout.split()[:2]
    assert mode == "640"
    assert digest == hashlib.sha256(payload.read_bytes()).hexdigest()


def test_release_closes_a_done_hosts_connection_and_a_session_opens_anew(lab: LabFleet) -> None:
    host = lab.light_hosts[0]
    logins = accepted_logins(lab, host)
    with SshExecutor() as executor:
        first = executor.session(target(lab, host), name=host.name)
        threads = threading.active_count()
        executor.release(target(lab, host), name=host.name)
        assert not first.active
        deadline = time.monotonic() + 5  # paramiko's thread ends at its next wakeup
        while threading.active_count() >= threads and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() < threads
        executor.release(target(lab, host), name=host.name)  # twice is harmless
        again = executor.session(target(lab, host), name=host.name)
        assert again is not first and again.run("true", timeout=10).ok
    assert accepted_logins(lab, host) == logins + 2


def test_timeout_kills_the_command_and_its_children_on_the_host(lab: LabFleet) -> None:
    host = lab.light_hosts[0]
    marker = f"{time.time_ns() % 10**9}"  # `sleep N.marker` names our processes uniquely
    with SshExecutor() as executor:
        session = executor.session(target(lab, host), name=host.name)
        began = time.monotonic()
        with pytest.raises(CommandTimeout, match=f"{host.name} .*timed out after 2s"):
            session.run(f"sleep 300.{marker} & sleep 301.{marker}; echo never", timeout=2)
        elapsed = time.monotonic() - began
        assert 2 <= elapsed < 2 + KILL_GRACE  # the host killed it; the client did not give up
        # The session is still good, and nothing of the command is left on the host.
        assert session.run("echo alive", timeout=10).stdout == "alive\n"
    deadline = time.monotonic() + 5
    while processes_matching(f".{marker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_matching(f".{marker}") == []


def test_a_command_killed_inside_its_timeout_is_a_result_not_a_timeout(lab: LabFleet) -> None:
    with SshExecutor() as executor:
        session = executor.session(target(lab, lab.light_hosts[0]))
        result = session.run("timeout -s KILL 1 sleep 30", timeout=20)
    assert result.exit_status == 137 and result.duration < 10


def test_output_over_the_cap_is_a_cut_result_and_the_session_stays(lab: LabFleet) -> None:
    """100 MB of output: the host stops at the cap, the command is a failed result (`cut`), not
    a lost connection, and the session runs the next command (a rollback's)."""
    with SshExecutor() as executor:
        session = executor.session(target(lab, lab.light_hosts[0]))
        result = session.run("head -c 100000000 /dev/zero | tr '\\0' a", timeout=30)
        assert result.cut and len(result.stdout) == OUTPUT_CAP
        assert session.run("echo alive", timeout=10).stdout == "alive\n"


def test_a_hosts_output_is_decoded_a_piece_at_a_time_up_to_the_cap() -> None:
    """A character split between two reads decodes whole; bytes past the cap are dropped."""
    received = _Received()
    smile = "\U0001f600".encode()
    received.add(b"a" + smile[:2])
    received.add(smile[2:] + b"\xff")
    assert (received.text(), received.cut) == ("a\U0001f600\ufffd", False)
    received.add(b"b" * OUTPUT_CAP)
    assert received.cut and received.size == OUTPUT_CAP


class _PacketChannel:
    """What `_send` sees of a paramiko channel: the peer's largest packet, and `sendall`."""

    out_max_packet_size = 32768

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.pieces.append(data)


@pytest.mark.parametrize("as_file", [False, True])
def test_stdin_goes_in_pieces_that_each_fill_one_packet(as_file: bool) -> None:
    """paramiko puts at most the peer's largest packet less 64 bytes in one packet: a larger
    piece goes as two, the second tiny (twice the packets for a push)."""
    data = os.urandom(200_000)
    channel = _PacketChannel()
    _send(channel, io.BytesIO(data) if as_file else data)  # type: ignore[arg-type]
    assert b"".join(channel.pieces) == data
    assert max(map(len, channel.pieces)) == channel.out_max_packet_size - 64


def test_unknown_host_key_is_rejected_before_login(lab: LabFleet, tmp_path: Path) -> None:
    host, other = lab.hosts[0], lab.hosts[1]
    known = tmp_path / "known_hosts"  # knows every lab host but `host`
    lines = lab.known_hosts.read_text().splitlines(keepends=True)
    known.write_text("".join(line for line in lines if not line.startswith(host.address + " ")))
    logins = accepted_logins(lab, host)
    with SshExecutor(backoff=5.0) as executor:
        began = time.monotonic()
        with pytest.raises(HostKeyRejected) as caught:
            executor.session(target(lab, host, known_hosts_file=str(known)), name=host.name)
        assert time.monotonic() - began < 3  # not retried
        executor.session(target(lab, other, known_hosts_file=str(known)))  # the file works
    message = str(caught.value)
    assert f"{host.name} ({host.address}:22): host key unknown" in message
    assert str(known) in message and "ssh-keyscan" in message and "SHA256:" in message
    assert isinstance(caught.value, HostUnreachable)
    assert accepted_logins(lab, host) == logins


def test_changed_host_key_is_rejected_before_login(lab: LabFleet, tmp_path: Path) -> None:
    host = lab.hosts[0]
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "impostor")],
        check=True,
    )
    kind, blob = (tmp_path / "impostor.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"{host.address} {kind} {blob}\n")
    logins = accepted_logins(lab, host)
    with SshExecutor() as executor, pytest.raises(HostKeyRejected) as caught:
        executor.session(target(lab, host, known_hosts_file=str(known)), name=host.name)
    message = str(caught.value)
    assert "HOST KEY CHANGED" in message and f"ssh-keygen -R '{host.address}'" in message
    assert str(known) in message
    assert accepted_logins(lab, host) == logins


def test_no_known_hosts_file_is_a_rejection(lab: LabFleet, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with SshExecutor() as executor, pytest.raises(HostKeyRejected, match="no known_hosts file"):
        executor.session(target(lab, lab.hosts[0], known_hosts_file=str(missing)))


def test_executor_known_hosts_when_the_target_has_none(lab: LabFleet) -> None:
    with SshExecutor(known_hosts=lab.known_hosts) as executor:
        session = executor.session(target(lab, lab.hosts[0], known_hosts_file=None))
        assert session.run("true", timeout=10).ok


def test_authentication_failure_is_not_retried(lab: LabFleet, tmp_path: Path) -> None:
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with SshExecutor(backoff=5.0) as executor:
        began = time.monotonic()
        with pytest.raises(AuthenticationFailed, match="authentication as root failed"):
            executor.session(target(lab, lab.hosts[0], private_key_file=str(key)))
        assert time.monotonic() - began < 3
        with pytest.raises(AuthenticationFailed, match="does not exist"):
            executor.session(target(lab, lab.hosts[0], private_key_file=str(tmp_path / "no")))


class FlakyDoor:
    """A TCP forwarder to a lab host's sshd on another port: refuses connections for `closed`
    seconds (nothing listens), then drops the first `drops` it accepts (as sshd's MaxStartups
    does), then forwards."""

    def __init__(self, upstream: str, closed: float, drops: int) -> None:
        self.upstream = upstream
        self.drops = drops
        self.accepted = 0
        probe = socket.socket()
        probe.bind((upstream, 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._serve, args=(closed,), daemon=True)]
        self.threads[0].start()

    def _serve(self, closed: float) -> None:
        if self.stopping.wait(closed):
            return
        server = socket.create_server((self.upstream, self.port))
        server.settimeout(0.2)
        with server:
            while not self.stopping.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                self.accepted += 1
                if self.accepted <= self.drops:
                    client.close()
                    continue
                upstream = socket.create_connection((self.upstream, 22))
                for a, b in ((client, upstream), (upstream, client)):
                    thread = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                    thread.start()
                    self.threads.append(thread)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        source.close()

    def close(self) -> None:
        self.stopping.set()


@pytest.fixture
def flaky_door(lab: LabFleet) -> Iterator[FlakyDoor]:
    door = FlakyDoor(lab.hosts[0].address, closed=1.0, drops=2)
    yield door
    door.close()


def test_connect_retries_refused_and_dropped_connections(
    lab: LabFleet, flaky_door: FlakyDoor, tmp_path: Path
) -> None:
    host = lab.hosts[0]
    # Off port 22, known_hosts names the host `[address]:port`.
    key = next(
        line
        for line in lab.known_hosts.read_text().splitlines()
        if line.startswith(host.address + " ")
    )
    known = tmp_path / "known_hosts"
    known.write_text(f"[{host.address}]:{flaky_door.port} {key.split(' ', 1)[1]}\n")
    door = target(lab, host, port=flaky_door.port, known_hosts_file=str(known))
    with SshExecutor(backoff=0.4, backoff_max=1.0, connect_attempts=8) as executor:
        began = time.monotonic()
        session = executor.session(door, name=host.name)
        assert session.run("echo through", timeout=10).stdout == "through\n"
    assert flaky_door.accepted == 3  # two dropped, the third forwarded
    assert time.monotonic() - began >= 1.0
    with (
        SshExecutor(backoff=0.1, connect_attempts=3) as executor,
        pytest.raises(
            HostUnreachable, match="cannot connect after 3 attempts: ConnectionRefusedError"
        ),
    ):
        executor.session(target(lab, host, port=flaky_door.port + 1))


def test_many_hosts_concurrently(lab: LabFleet) -> None:
    targets = {host.name: target(lab, host) for host in lab.hosts}
    targets["nowhere"] = SshTarget(
        address="127.0.0.2", port=1, known_hosts_file=str(lab.known_hosts)
    )
    with SshExecutor(connect_attempts=2, backoff=0.1) as executor:
        results = run_on_hosts(
            targets,
            lambda name, t: executor.session(t, name=name).run("echo $((6*7))", timeout=10),
            concurrency=8,
        )
    assert list(results) == list(targets)
    assert all(r.stdout == "42\n" for name, r in results.items() if name != "nowhere")  # type: ignore[union-attr]
    assert isinstance(results["nowhere"], HostUnreachable)


# ---------------------------------------------------------------------------------------------
# sudo: a non-root user with `become`

SUDO_ADDRESS = "127.0.0.254"


SUDO_PASSWORD = "pl4nted-sudo-s3cret"


@pytest.fixture
def sudo_host() -> Iterator[SshTarget]:
    """An sshd (port 2222) in a private mount namespace where user `deploy` may `sudo -n`."""
    with sudo_sshd(None) as target:
        yield target


@pytest.fixture
def sudo_password_host() -> Iterator[SshTarget]:
    """The same, but sudo asks `deploy` for the password `SUDO_PASSWORD`."""
    with sudo_sshd(SUDO_PASSWORD) as target:
        yield target


@contextlib.contextmanager
def sudo_sshd(password: str | None) -> Iterator[SshTarget]:
    if os.geteuid() != 0 or not all(map(shutil.which, ("sudo", "unshare", "/usr/sbin/sshd"))):
        pytest.skip("needs root, sudo, unshare and sshd")
    # Not under pytest's 0700 temporary directory: `deploy` must reach its home.
    base = Path(tempfile.mkdtemp(prefix="runc-rollout-sudo-"))
    os.chmod(base, 0o755)
    (base / "home").mkdir()
    (base / "sudoers.d").mkdir()
    for name in ("passwd", "shadow", "group"):
        shutil.copy2(f"/etc/{name}", base / name)
    with (base / "passwd").open("a") as f:
        f.write(f"deploy:x:4242:4242::{base / 'home'}:/bin/sh\n")
    hashed = "*"
    if password is not None:
        hashed = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"],
            input=password,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    with (base / "shadow").open("a") as f:
        f.write(f"deploy:{hashed}:19000:0:99999:7:::\n")
    with (base / "group").open("a") as f:
        f.write("deploy:x:4242:\n")
    rule = "ALL" if password is not None else "NOPASSWD: ALL"
    (base / "sudoers.d" / "deploy").write_text(f"deploy ALL=(ALL) {rule}\n")
    os.chmod(base / "sudoers.d" / "deploy", 0o440)
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / name)], check=True
        )
    shutil.copy(base / "client_key.pub", base / "home" / "authorized_keys")
    os.chown(base / "home", 4242, 4242)
    os.chown(base / "home" / "authorized_keys", 4242, 4242)
    kind, blob = (base / "host_key.pub").read_text().split()[:2]
    (base / "known_hosts").write_text(f"[{SUDO_ADDRESS}]:2222 {kind} {blob}\n")
    binds = " && ".join(
        f"mount --bind {base / name} /etc/{name}"
        for name in ("passwd", "shadow", "group", "sudoers.d")
    )
    # sshd wants its privilege separation directory, which only a running system sshd makes.
    binds += " && mount -t tmpfs -o mode=0755 runc-rollout-sudo /run && mkdir -m 0755 /run/sshd"
    sshd = (
        f"exec /usr/sbin/sshd -D -e -f /dev/null -o ListenAddress={SUDO_ADDRESS}:2222 "
        f"-o HostKey={base / 'host_key'} -o AuthorizedKeysFile=%h/authorized_keys "
        "-o PidFile=none -o UsePAM=no -o StrictModes=no"
    )
    log = (base / "sshd.log").open("w")
    process = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{binds} && {sshd}"],
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 10
        while "Server listening" not in (base / "sshd.log").read_text():
            assert process.poll() is None and time.monotonic() < deadline, (
                base / "sshd.log"
            ).read_text()
            time.sleep(0.05)
        yield SshTarget(
            address=SUDO_ADDRESS,
            port=2222,
            user="deploy",
            private_key_file=str(base / "client_key"),
            known_hosts_file=str(base / "known_hosts"),
            become=True,
        )
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        shutil.rmtree(base)


@pytest.mark.lab
def test_become_runs_through_sudo(sudo_host: SshTarget, tmp_path: Path) -> None:
    sudo_target = sudo_host
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(100000))
    remote = f"/root/runc-rollout-sudo-test-{uuid.uuid4().hex}"
    marker = f"{time.time_ns() % 10**9}"
    with SshExecutor() as executor:
        session = executor.session(sudo_target)
        result = session.run("""id -u; printf '%s\\n' "it's"; cat""", timeout=10, stdin=b"in\n")
        assert result.stdout == "0\nit's\nin\n"
        session.put(payload, remote, mode=0o600)
        check = session.run(
            f"stat -c '%a %u' {remote}; sha256sum {remote}; rm {remote}", timeout=10
        )
        with pytest.raises(CommandTimeout):
            session.run(f"sleep 300.{marker}", timeout=1)
        plain = SshExecutor().session(dataclasses.replace(sudo_target, become=False))
        assert plain.run("id -u", timeout=10).stdout == "4242\n"
        plain.close()
    assert check.stdout.split()[:3] == [
        "600",
        "0",
        hashlib.sha256(payload.read_bytes()).hexdigest(),
    ]
    deadline = time.monotonic() + 5
    while processes_matching(f"300.{marker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_matching(f"300.{marker}") == []


@pytest.mark.lab
def test_become_with_a_password(sudo_password_host: SshTarget, tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    payload.write_bytes(os.urandom(200000))
    remote = f"/root/runc-rollout-sudo-test-{uuid.uuid4().hex}"
    with SshExecutor(become=BecomePasswords(SUDO_PASSWORD)) as executor:
        session = executor.session(sudo_password_host)
        # Twice: the second time sudo has the timestamp and does not ask; stdin still reaches
        # the command and only the command's stderr comes back.
        for _ in range(2):
            result = session.run("id -u; cat; echo err >&2", timeout=10, stdin=b"in\n")
            assert (result.stdout, result.stderr) == ("0\nin\n", "err\n")
        session.put(payload, remote, mode=0o600)
        check = session.run(f"sha256sum {remote}; rm {remote}", timeout=10)
        assert check.stdout.split()[0] == hashlib.sha256(payload.read_bytes()).hexdigest()
    with (
        SshExecutor(become=BecomePasswords("wrong")) as executor,
        pytest.raises(AuthenticationFailed, match="did not accept the become password"),
    ):
        executor.session(sudo_password_host).run("id -u", timeout=10)
    with SshExecutor() as executor:  # no password: sudo -n refuses, and says so
        assert not executor.session(sudo_password_host).run("id -u", timeout=10).ok


def test_remote_command_quoting() -> None:
    said = subprocess.run(
        ["sh", "-c", remote_command("""printf '%s|' "it's" '$HOME' "a  b" """, 2.5, sudo=False)],
        capture_output=True,
        text=True,
    )
    assert said.stdout == "it's|$HOME|a  b|"
    assert remote_command("id", 10, sudo=True) == f"exec sudo -n {killed_after('id', 10)}"


def test_a_known_hosts_file_is_read_once_for_every_host_it_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fleet's known_hosts has a line per host: read again for each connection, 1,000 hosts
    cost a million parsed lines (each taking logging's global lock: apply at concurrency 200
    ran about one host at a time). Read once, it is re-read only when the file changes."""
    public = paramiko.Ed25519Key.from_private_key_file(str(_host_key(tmp_path)))
    blob = public.get_base64()
    known = tmp_path / "known_hosts"
    known.write_text("".join(f"127.0.9.{i} ssh-ed25519 {blob}\n" for i in range(1, 201)))
    key = _host_key(tmp_path / "client")
    parsed = 0
    original = paramiko.hostkeys.HostKeyEntry.from_line

    def counting(line: str, lineno: int | None = None) -> paramiko.hostkeys.HostKeyEntry | None:
        nonlocal parsed
        parsed += 1
        return original(line, lineno)

    monkeypatch.setattr(paramiko.hostkeys.HostKeyEntry, "from_line", counting)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nobody listens on: every connect is refused
    port = closed.getsockname()[1]
    with SshExecutor(connect_attempts=1) as executor:
        for i in range(1, 21):
            host = SshTarget(
                address="127.0.0.1", port=port, user="root",
                private_key_file=str(key), known_hosts_file=str(known),
            )  # fmt: skip
            with pytest.raises(HostUnreachable):
                executor.session(host, name=f"host-{i}")
        assert parsed == 200
        known.write_text(known.read_text() + f"127.0.9.201 ssh-ed25519 {blob}\n")
        with pytest.raises(HostUnreachable):
            executor.session(host, name="after-a-change")
        assert parsed == 200 + 201
    closed.close()


def _host_key(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path
