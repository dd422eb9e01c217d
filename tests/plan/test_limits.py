"""Oversized and endless inputs, under a memory limit: one line and exit 2, never a
MemoryError or the kernel's OOM killer (first review, finding 9)."""

from __future__ import annotations

import hashlib
import io
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.backends.ssh.session import SshSession
from orchestrator.host.session import CommandResult

MEMORY_LIMIT = 1 << 30  # far less than any of these inputs would take if read whole


def limited(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`runc-rollout ARGS` in its own process with at most MEMORY_LIMIT of address space."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
        stdin=subprocess.DEVNULL,
    )


def one_line_exit_2(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    for word in words:
        assert word in lines[0]


@pytest.fixture
def sparse(tmp_path: Path) -> Path:
    """A 3 GiB file that takes no disk."""
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(3 << 30)
    return path


def test_apply_of_a_device_or_a_huge_file(sparse: Path) -> None:
    one_line_exit_2(limited("apply", "/dev/zero", "--yes"), "/dev/zero", "not a regular file")
    one_line_exit_2(limited("apply", sparse, "--yes"), "larger than")


def test_plan_with_endless_or_huge_facts(tmp_path: Path, sparse: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("h1\n")
    runc = Path("/usr/sbin/runc")
    sha = hashlib.sha256(runc.read_bytes()).hexdigest()
    base: list[str | Path] = [
        "plan",
        "-i",
        inventory,
        "--runc",
        runc,
        "--sha256",
        sha,
        "-o",
        tmp_path / "p.json",
    ]
    one_line_exit_2(limited(*base, "--facts", "/dev/zero"), "not a regular file")
    one_line_exit_2(limited(*base, "--facts", sparse), "larger than")
    one_line_exit_2(limited("plan", "-i", sparse, *base[3:]), "larger than")


def test_a_yaml_alias_bomb_in_a_host_var(tmp_path: Path) -> None:
    lines = ["all:", "  hosts:", "    h1:", '      a: &a ["x","x","x","x","x","x","x","x","x"]']
    for name, previous in zip("bcdefghij", "abcdefghi", strict=True):
        lines.append(f"      {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    inventory = tmp_path / "bomb.yml"
    inventory.write_text("\n".join(lines) + "\n")
    runc = Path("/usr/sbin/runc")
    sha = hashlib.sha256(runc.read_bytes()).hexdigest()
    args: list[str | Path] = [
        "plan",
        "-i",
        inventory,
        "--runc",
        runc,
        "--sha256",
        sha,
        "--domain-key",
        "j",
    ]
    one_line_exit_2(limited(*args, "-o", tmp_path / "p.json"), "alias bomb")
    recursive = tmp_path / "recursive.yml"
    recursive.write_text("all:\n  hosts:\n    h1:\n      a: &a [1, *a]\n")
    args = ["plan", "-i", recursive, "--runc", runc, "--sha256", sha, "--domain-key", "a"]
    one_line_exit_2(limited(*args, "-o", tmp_path / "p.json"), "refers to a value")


def test_the_sudo_upload_streams_the_artifact(tmp_path: Path) -> None:
    """The upload through `cat` (sudo, or no SFTP) sends a file, never its bytes read whole."""
    artifact = tmp_path / "runc"
    artifact.write_bytes(b"x" * (3 << 20))
    sent: list[Any] = []

    class Recorder(SshSession):
        def __init__(self) -> None:
            pass

        def run(self, command: str, *, timeout: float, stdin: Any = None) -> CommandResult:
            sent.append(stdin)
            return CommandResult(exit_status=0, stdout="", stderr="", duration=0.0)

    session = Recorder()
    session._io_timeout = 10
    session._put_through_shell(artifact, "/usr/local/sbin/.x.tmp", 0o700)
    assert isinstance(sent[0], io.BufferedReader) and sent[0].name == str(artifact)
