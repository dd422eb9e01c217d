"""The rc93 trigger without the lab: the profile's compiled size (libseccomp through Debian's
python3-seccomp, where installed), the holder's line, and the holder itself (POSIX sh) run as
root under dash, bash and busybox sh, over the real soft limit and over fake ones in a mount
namespace."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.host import trigger
from orchestrator.host.trigger import (
    HOLDER_EXIT_HARD_LIMIT,
    HOLDER_EXIT_SOFT_ZERO,
    HolderReport,
    architectures_for,
    parse_holder_line,
    seccomp_profile,
)

SYSTEM_PYTHON = Path("/usr/bin/python3")
TEST_UID = 61999  # a trigger uid no lab host gets
SHELLS = {"dash": ["dash"], "bash": ["bash", "--posix"], "busybox": ["busybox", "sh"]}

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


def test_holder_line() -> None:
    line = "held=1033 soft=16384 hard=0 pagesize=4096 capacity=8192 uid=61001 pid=42\n"
    assert parse_holder_line(line) == HolderReport(1033, 16384, 0, 4096, 8192, 61001, 42)
    assert parse_holder_line("refused=soft-zero soft=0 hard=0") is None
    assert parse_holder_line("held=3 soft=1") is None
    assert parse_holder_line("") is None


def shell(name: str) -> list[str]:
    if os.geteuid() != 0:
        pytest.skip("the holder drops to a uid: needs root")
    if shutil.which(SHELLS[name][0]) is None:
        pytest.skip(f"no {SHELLS[name][0]} here")
    return SHELLS[name]


def uid_processes(uid: int) -> list[str]:
    """Processes (not zombies) whose real uid is `uid`."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)] and "zombie" not in fields["State"]:
            found.append(status.parent.name)
    return found


def comm(pid: str) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def held_fifos(uid: int) -> int:
    """Open FIFOs among the file descriptors of the processes of `uid`."""
    count = 0
    for pid in uid_processes(uid):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                count += stat.S_ISFIFO(fd.stat().st_mode)
    return count


def end(holder: subprocess.Popen[str], uid: int) -> None:
    """After a failed test: the holder and its processes (of the test's own uid) are gone."""
    holder.kill()
    holder.wait()
    subprocess.run(["pkill", "-KILL", "-u", str(uid)], check=False)


def wait_for_no_processes(uid: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while uid_processes(uid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert uid_processes(uid) == []


@pytest.mark.parametrize("name", SHELLS)
def test_holder_puts_its_uid_over_the_soft_limit_and_releases_at_eof(name: str) -> None:
    """Under each shell: the line comes once the uid is over (a fresh pipe of it blocked its
    writer at 2 pages), every pipe is held by processes of that uid, and EOF on stdin ends all
    of them."""
    uid = TEST_UID - list(SHELLS).index(name)
    command = [*shell(name), "-c", trigger.holder_source(), "pipe_holder",
               *trigger.holder_args(uid, 60)]  # fmt: skip
    holder = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        report = parse_holder_line(holder.stdout.readline())
        soft = int(Path("/proc/sys/fs/pipe-user-pages-soft").read_text())
        assert report is not None and report.capacity == 8192 and report.uid == uid
        assert report.held > soft // 16 and report.pid == holder.pid
        sleeps = [pid for pid in uid_processes(uid) if comm(pid) == "sleep"]
        assert held_fifos(uid) >= report.held and len(sleeps) == -(-report.held // 10)
        holder.stdin.close()
        assert holder.wait(timeout=10) == 0
    finally:
        end(holder, uid)
    wait_for_no_processes(uid)


@pytest.mark.parametrize(
    ("soft", "hard", "code", "reason"),
    [
        ("0", "0", HOLDER_EXIT_SOFT_ZERO, "soft-zero"),
        ("16384", "16400", HOLDER_EXIT_HARD_LIMIT, "hard-limit"),
    ],
)
def test_holder_refuses(tmp_path: Path, soft: str, hard: str, code: int, reason: str) -> None:
    """Fake limits bound over /proc/sys in a mount namespace of its own: nothing is created."""
    dash = shell("dash")
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare")
    (tmp_path / "soft").write_text(soft + "\n")
    (tmp_path / "hard").write_text(hard + "\n")
    (tmp_path / "holder.sh").write_text(trigger.holder_source())
    script = (
        f"mount --bind {tmp_path}/soft /proc/sys/fs/pipe-user-pages-soft && "
        f"mount --bind {tmp_path}/hard /proc/sys/fs/pipe-user-pages-hard && "
        f"exec {dash[0]} {tmp_path}/holder.sh {TEST_UID} 5"
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
    assert uid_processes(TEST_UID) == []


def test_holder_without_util_linux_setpriv_says_so(tmp_path: Path) -> None:
    """A host whose only setpriv is busybox's (it cannot change uids): one clear line, exit 1."""
    dash = shell("dash")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("busybox") or "/bin/busybox", bin_dir / "setpriv")
    (tmp_path / "holder.sh").write_text(trigger.holder_source())
    hidden = " ".join(
        f"mount --bind {bin_dir}/setpriv {path} &&"
        for path in ("/usr/bin/setpriv", "/bin/setpriv")
        if Path(path).exists() and not Path(path).is_symlink()
    )
    script = f"{hidden} PATH={bin_dir}:$PATH exec {dash[0]} {tmp_path}/holder.sh {TEST_UID} 5"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == trigger.HOLDER_EXIT_ERROR, done.stderr
    assert "no setpriv with --reuid (util-linux)" in done.stderr


def test_holder_command_is_one_line_for_a_remote_shell() -> None:
    """The remote form: program and arguments in the command line, stdin kept for the release."""
    shell("dash")
    command = trigger.holder_command(TEST_UID, max_seconds=30)
    holder = subprocess.Popen(
        ["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        report = parse_holder_line(holder.stdout.readline())
        assert report is not None and report.capacity == 8192
        holder.stdin.close()
        assert holder.wait(timeout=10) == 0
    finally:
        end(holder, TEST_UID)
    wait_for_no_processes(TEST_UID)
