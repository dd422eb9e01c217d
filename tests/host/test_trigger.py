"""The rc93 trigger without the lab: the profile's compiled size (libseccomp through Debian's
python3-seccomp, where installed), the holder's line, and the holder itself run as root under
Python 3.6, over the real soft limit and over a fake one in a mount namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.host import pipe_holder, trigger
from orchestrator.host.trigger import (
    HOLDER_EXIT_HARD_LIMIT,
    HOLDER_EXIT_SOFT_ZERO,
    HolderReport,
    architectures_for,
    parse_holder_line,
    seccomp_profile,
)

SYSTEM_PYTHON = Path("/usr/bin/python3")
PYTHON36 = Path("/root/.pyenv/versions/3.6.15/bin/python3.6")
HOLDER = Path(trigger.__file__).with_name("pipe_holder.py")
TEST_UID = 61999  # a trigger uid no lab host gets

# Compiles a profile on stdin as runc does (libseccomp, default action ERRNO, each rule added
# with its conditions) and prints the size of the exported BPF program in bytes.
MEASURE = """
import json, sys, tempfile, seccomp
profile = json.load(sys.stdin)
arches = {"SCMP_ARCH_X86_64": seccomp.Arch.X86_64, "SCMP_ARCH_X86": seccomp.Arch.X86,
          "SCMP_ARCH_X32": seccomp.Arch.X32, "SCMP_ARCH_AARCH64": seccomp.Arch.AARCH64,
          "SCMP_ARCH_ARM": seccomp.Arch.ARM}
ops = {"SCMP_CMP_EQ": seccomp.EQ, "SCMP_CMP_NE": seccomp.NE}
flt = seccomp.SyscallFilter(defaction=seccomp.ERRNO(1))
for name in profile["architectures"]:
    if not flt.exist_arch(arches[name]):
        flt.add_arch(arches[name])
for rule in profile["syscalls"]:
    args = [seccomp.Arg(c["index"], ops[c["op"]], c["value"]) for c in rule.get("args", [])]
    for name in rule["names"]:
        flt.add_rule(seccomp.ALLOW, name, *args)
with tempfile.TemporaryFile() as out:
    flt.export_bpf(out)
    print(out.tell())
"""


def has_python_seccomp() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import seccomp"], capture_output=True)
    return probe.returncode == 0


def compiled_size(profile: dict[str, object]) -> int:
    done = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", MEASURE],
        input=json.dumps(profile),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_architectures() -> None:
    assert architectures_for("x86_64") == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert architectures_for("aarch64") == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    with pytest.raises(ValueError, match="s390x"):
        architectures_for("s390x")


def test_profile_allows_every_syscall_once_or_by_a_pair() -> None:
    profile = seccomp_profile(["SCMP_ARCH_X86_64"])
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"
    assert profile["architectures"] == ["SCMP_ARCH_X86_64"]
    by_name: dict[str, list[str]] = {}
    for rule in profile["syscalls"]:
        assert rule["action"] == "SCMP_ACT_ALLOW"
        (name,) = rule["names"]
        by_name.setdefault(name, []).extend(arg["op"] for arg in rule.get("args", []))
    assert list(by_name) == list(trigger.SYSCALLS)
    assert len(set(trigger.SYSCALLS)) == len(trigger.SYSCALLS)
    pairs = [ops for ops in by_name.values() if ops]
    assert pairs and all(ops == ["SCMP_CMP_EQ", "SCMP_CMP_NE"] for ops in pairs)
    assert {"execve", "exit_group", "brk", "mmap"} <= set(by_name)


@pytest.mark.skipif(not has_python_seccomp(), reason="needs Debian's python3-seccomp")
@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_profile_compiles_well_over_the_shrunk_pipe(machine: str) -> None:
    """Over 8 KiB by far (12-20 KiB), under the kernel's 4096 instructions (32 KiB)."""
    size = compiled_size(seccomp_profile(architectures_for(machine)))
    assert 12 * 1024 <= size <= 20 * 1024, size
    plain = {**seccomp_profile(architectures_for(machine)), "syscalls": []}
    assert compiled_size(plain) < 8192


def test_exit_codes_agree_with_the_holder() -> None:
    codes = (pipe_holder.EXIT_ERROR, pipe_holder.EXIT_SOFT_ZERO, pipe_holder.EXIT_HARD_LIMIT)
    assert codes == (trigger.HOLDER_EXIT_ERROR, HOLDER_EXIT_SOFT_ZERO, HOLDER_EXIT_HARD_LIMIT)
    assert pipe_holder.EXIT_NOT_OVER == trigger.HOLDER_EXIT_NOT_OVER


def test_holder_line() -> None:
    line = "held=1033 soft=16384 hard=0 pagesize=4096 capacity=8192 uid=61001 pid=42\n"
    assert parse_holder_line(line) == HolderReport(1033, 16384, 0, 4096, 8192, 61001, 42)
    assert parse_holder_line("refused=soft-zero soft=0 hard=0") is None
    assert parse_holder_line("held=3 soft=1") is None
    assert parse_holder_line("") is None


def root_only() -> None:
    if os.geteuid() != 0 or not PYTHON36.exists():
        pytest.skip("needs root and Python 3.6 at " + str(PYTHON36))


def test_holder_puts_its_uid_over_the_soft_limit_and_releases_at_eof() -> None:
    root_only()
    command = [str(PYTHON36), "-I", str(HOLDER), *trigger.holder_args(TEST_UID)]
    holder = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdin is not None
    report = parse_holder_line(holder.stdout.readline())
    soft = int(Path("/proc/sys/fs/pipe-user-pages-soft").read_text())
    assert report is not None and report.capacity == 8192 and report.uid == TEST_UID
    assert report.held > soft // 16
    status = Path(f"/proc/{holder.pid}/status").read_text()
    assert f"Uid:\t{TEST_UID}\t{TEST_UID}" in status
    holder.stdin.close()
    assert holder.wait(timeout=5) == 0


@pytest.mark.parametrize(
    ("soft", "hard", "code", "reason"),
    [
        ("0", "0", HOLDER_EXIT_SOFT_ZERO, "soft-zero"),
        ("16384", "16400", HOLDER_EXIT_HARD_LIMIT, "hard-limit"),
    ],
)
def test_holder_refuses(tmp_path: Path, soft: str, hard: str, code: int, reason: str) -> None:
    """Fake limits bound over /proc/sys in a mount namespace of its own: nothing is created."""
    root_only()
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare")
    (tmp_path / "soft").write_text(soft + "\n")
    (tmp_path / "hard").write_text(hard + "\n")
    script = (
        f"mount --bind {tmp_path}/soft /proc/sys/fs/pipe-user-pages-soft && "
        f"mount --bind {tmp_path}/hard /proc/sys/fs/pipe-user-pages-hard && "
        f"exec {PYTHON36} -I {HOLDER} --uid {TEST_UID} --gid {TEST_UID} --max-seconds 5"
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == code, done.stderr
    assert done.stdout.startswith(f"refused={reason} soft={soft} hard={hard}")
    assert "pipe_holder: " in done.stderr


def test_holder_command_runs_the_program_sent_on_stdin() -> None:
    """The remote form: the program on stdin, then stdin kept open until the release."""
    root_only()
    command = trigger.holder_command(TEST_UID, max_seconds=30, python=str(PYTHON36))
    holder = subprocess.Popen(
        ["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdin is not None
    holder.stdin.write(trigger.holder_source())
    holder.stdin.flush()
    report = parse_holder_line(holder.stdout.readline())
    assert report is not None and report.capacity == 8192
    holder.stdin.close()
    assert holder.wait(timeout=5) == 0
