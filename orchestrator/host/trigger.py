"""The rc93 pipe hang's trigger, reproduced without touching the sysctl.

runc 1.0.0-rc93 exports its compiled seccomp program into a pipe it created itself and reads it
back only once the export returned; with `no-new-privileges` that pipe is created without
capabilities, so it gets 2 pages (8 KiB) when its uid is over `fs.pipe-user-pages-soft`. A
program over 8 KiB then blocks `runc init` in pipe_write for ever; runc >= rc94 drains the pipe
while exporting and passes. Three parts, all pure here:

- `seccomp_profile(architectures)`: a Docker/OCI seccomp profile that compiles (libseccomp
  2.5.4, x86_64+x86+x32) to about 14 KiB: well over the 8 KiB pipe, well under the kernel's
  4096-instruction limit (32 KiB). Docker's default profile compiles to under 8 KiB.
- the pipe holder (`orchestrator/hostside/pipe_holder.sh`, POSIX sh and util-linux's setpriv;
  `holder_args()`, `holder_command()`): as uid U it holds enough pipes that U is over the soft
  limit, proves it by measurement, and says so in one line (`parse_holder_line()`). The pipes
  stay held until stdin reaches EOF, so a dropped session releases them; a pipe created while U
  was over stays small after the release.
- `docker_run_argv()`: the no-new-privileges container, run as U, with that profile.

The kernel counts pipe pages per uid for the whole machine: lab hosts share one kernel, so every
use of the trigger needs a uid of its own (`SEED_UID_BASE` here; the incident probe's are
`lab.hostdef.probe_uid`'s), one that nothing else on the machine runs as. All of it assumes
4 KiB pages: with 64 KiB pages a shrunk pipe holds 128 KiB, more than any seccomp program
(32 KiB at most), and rc93 cannot hang.
"""

import functools
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.host import constants
from orchestrator.host.scripts import hostside_script, render

# uids for the lab's uses of the trigger, each base + the lab host's index (1...): two lab hosts
# never share one (the incident probe's uids are far above, see lab.hostdef.probe_uid).
SEED_UID_BASE = 61000

# Architectures libseccomp adds to a filter for one machine, as Docker's default profile has them.
_ARCHITECTURES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
}

# Every x86_64 system call libseccomp 2.5.4 knows, less the ones no kernel implements. runc skips
# a name its native architecture does not have, so the list also serves aarch64.
_SYSCALL_NAMES = """
    read write open close stat fstat lstat poll lseek mmap mprotect munmap brk rt_sigaction
    rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev access pipe select
    sched_yield mremap msync mincore madvise shmget shmat shmctl dup dup2 pause nanosleep
    getitimer alarm setitimer getpid sendfile socket connect accept sendto recvfrom sendmsg
    recvmsg shutdown bind listen getsockname getpeername socketpair setsockopt getsockopt clone
    fork vfork execve exit wait4 kill uname semget semop semctl shmdt msgget msgsnd msgrcv msgctl
    fcntl flock fsync fdatasync truncate ftruncate getdents getcwd chdir fchdir rename mkdir rmdir
    creat link unlink symlink readlink chmod fchmod chown fchown lchown umask gettimeofday
    getrlimit getrusage sysinfo times ptrace getuid syslog getgid setuid setgid geteuid getegid
    setpgid getppid getpgrp setsid setreuid setregid getgroups setgroups setresuid getresuid
    setresgid getresgid getpgid setfsuid setfsgid getsid capget capset rt_sigpending
    rt_sigtimedwait rt_sigqueueinfo rt_sigsuspend sigaltstack utime mknod personality ustat
    statfs fstatfs sysfs getpriority setpriority sched_setparam sched_getparam
    sched_setscheduler sched_getscheduler sched_get_priority_max sched_get_priority_min
    sched_rr_get_interval mlock munlock mlockall munlockall vhangup modify_ldt pivot_root prctl
    arch_prctl adjtimex setrlimit chroot sync acct settimeofday mount umount2 swapon swapoff
    reboot sethostname setdomainname iopl ioperm init_module delete_module quotactl gettid
    readahead setxattr lsetxattr fsetxattr getxattr lgetxattr fgetxattr listxattr llistxattr
    flistxattr removexattr lremovexattr fremovexattr tkill time futex sched_setaffinity
    sched_getaffinity set_thread_area io_setup io_destroy io_getevents io_submit io_cancel
    get_thread_area lookup_dcookie epoll_create remap_file_pages getdents64 set_tid_address
    restart_syscall semtimedop fadvise64 timer_create timer_settime timer_gettime
    timer_getoverrun timer_delete clock_settime clock_gettime clock_getres clock_nanosleep
    exit_group epoll_wait epoll_ctl tgkill utimes mbind set_mempolicy get_mempolicy mq_open
    mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr kexec_load waitid add_key
    request_key keyctl ioprio_set ioprio_get inotify_init inotify_add_watch inotify_rm_watch
    migrate_pages openat mkdirat mknodat fchownat futimesat newfstatat unlinkat renameat linkat
    symlinkat readlinkat fchmodat faccessat pselect6 ppoll unshare set_robust_list
    get_robust_list splice tee sync_file_range vmsplice move_pages utimensat epoll_pwait
    signalfd timerfd_create eventfd fallocate timerfd_settime timerfd_gettime accept4 signalfd4
    eventfd2 epoll_create1 dup3 pipe2 inotify_init1 preadv pwritev rt_tgsigqueueinfo
    perf_event_open recvmmsg fanotify_init fanotify_mark prlimit64 name_to_handle_at
    open_by_handle_at clock_adjtime syncfs sendmmsg setns getcpu process_vm_readv
    process_vm_writev kcmp finit_module sched_setattr sched_getattr renameat2 seccomp getrandom
    memfd_create kexec_file_load bpf execveat userfaultfd membarrier mlock2 copy_file_range
    preadv2 pwritev2 pkey_mprotect pkey_alloc pkey_free statx io_pgetevents rseq
    pidfd_send_signal io_uring_setup io_uring_enter io_uring_register open_tree move_mount
    fsopen fsconfig fsmount fspick pidfd_open clone3 close_range openat2 pidfd_getfd faccessat2
    process_madvise epoll_pwait2 mount_setattr quotactl_fd landlock_create_ruleset
    landlock_add_rule landlock_restrict_self memfd_secret process_mrelease futex_waitv
    set_mempolicy_home_node
    """
SYSCALLS: tuple[str, ...] = tuple(_SYSCALL_NAMES.split())

# Every CONDITION_EVERY-th syscall is allowed by a pair of rules, arg0 == V and arg0 != V, with
# a V of its own: together they allow every call, but each pair compiles to comparisons of its
# own per architecture (libseccomp shares identical blocks, and drops a mask-0 test). One rule per
# syscall compiles to 8888 bytes over x86_64+x86+x32, barely over the pipe; with the pairs the
# program is 14104 bytes (libseccomp 2.5.4, measured in tests/host/test_trigger.py).
CONDITION_EVERY = 3
CONDITION_VALUE_BASE = 1000


def architectures_for(uname_machine: str) -> list[str]:
    """The seccomp architectures of a machine (`uname -m`); ValueError for any other."""
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(uname_machine, uname_machine)
    if machine not in _ARCHITECTURES:
        raise ValueError(f"no seccomp architectures known for machine {uname_machine!r}")
    return list(_ARCHITECTURES[machine])


def seccomp_profile(architectures: Sequence[str]) -> dict[str, Any]:
    """A Docker/OCI seccomp profile allowing every syscall of `SYSCALLS` (others fail with
    EPERM) whose compiled program is far over 8 KiB on the given architectures."""
    rules: list[dict[str, Any]] = []
    for position, name in enumerate(SYSCALLS):
        if position % CONDITION_EVERY:
            rules.append({"names": [name], "action": "SCMP_ACT_ALLOW"})
            continue
        for op in ("SCMP_CMP_EQ", "SCMP_CMP_NE"):
            condition = {"index": 0, "value": CONDITION_VALUE_BASE + position, "op": op}
            rules.append({"names": [name], "action": "SCMP_ACT_ALLOW", "args": [condition]})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": list(architectures),
        "syscalls": rules,
    }


def docker_run_argv(
    image: str,
    profile_path: str,
    uid: int,
    docker: Sequence[str] = ("docker",),
    options: Sequence[str] = ("--rm",),
) -> list[str]:
    """The trigger container (`true` in `image`): `docker` may carry client options (-H), and
    `options` replace `--rm` (the lab's stuck seed uses `-d --name NAME`)."""
    return [
        *docker,
        "run",
        *options,
        "--network",
        "none",
        "--security-opt",
        "no-new-privileges",
        "--security-opt",
        f"seccomp={profile_path}",
        "--user",
        f"{uid}:{uid}",
        image,
        "true",
    ]


# The holder's exit codes (besides 0: released by EOF, a signal or its lifetime).
HOLDER_EXIT_ERROR = constants.HOLDER_EXIT_ERROR
HOLDER_EXIT_SOFT_ZERO = constants.HOLDER_EXIT_SOFT_ZERO
HOLDER_EXIT_HARD_LIMIT = constants.HOLDER_EXIT_HARD_LIMIT
HOLDER_EXIT_NOT_OVER = constants.HOLDER_EXIT_NOT_OVER


@functools.cache
def holder_source() -> str:
    """The pipe holder's program text (`orchestrator/hostside/pipe_holder.sh`), rendered."""
    return render(hostside_script("pipe_holder.sh"))


def holder_args(uid: int, max_seconds: float = 600.0) -> list[str]:
    """The holder's arguments: hold as `uid` until stdin reaches EOF, SIGTERM or SIGHUP, or
    `max_seconds` pass."""
    return [str(uid), str(int(max_seconds))]


def holder_command(uid: int, max_seconds: float = 600.0) -> str:
    """A shell command line for a host: the holder's program and its arguments. Keep its stdin
    open: its EOF (the session ends) releases the pipes."""
    return shlex.join(["sh", "-c", holder_source(), "pipe_holder", *holder_args(uid, max_seconds)])


@dataclass(frozen=True)
class HolderReport:
    """The holder's one line once its uid is over the soft limit."""

    held: int  # pipes held
    soft: int  # fs.pipe-user-pages-soft as the host shows it
    hard: int
    pagesize: int
    capacity: int  # a fresh pipe of that uid blocked its writer at 2 pages (8192): it is over
    uid: int
    pid: int


_LINE = re.compile(r"^held=\d+( \w+=\d+)+$")


def parse_holder_line(line: str) -> HolderReport | None:
    """The report in the holder's ready line (`held=N soft=S hard=H pagesize=P capacity=C uid=U
    pid=P`), or None for any other line (such as `refused=soft-zero ...`)."""
    text = line.strip()
    if not _LINE.match(text):
        return None
    fields = dict(word.split("=", 1) for word in text.split())
    try:
        return HolderReport(**{key: int(fields[key]) for key in HolderReport.__dataclass_fields__})
    except KeyError:
        return None
