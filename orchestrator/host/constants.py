"""Every value the controller and the host-side scripts must agree on, defined once.

Python code imports these names; `SHELL` maps the shell variable each script sees to its value,
and `orchestrator.host.scripts.render` puts the ones a script refers to (`$NAME` or `${NAME}`)
into that script's header, shell-quoted. A script never spells one of these values itself.

Host-side layout (shared by every backend, so one can roll back what another did):

    /var/lib/runc-rollout/            0700
        lock/owner                    run id holding the host (mkdir is the atomic test-and-set)
        record.json                   the current rollout's "before" state and phase
        backup/<sha256>               every runc binary replaced, named by its checksum
        files/<sha256>                every sysctl file changed, as it was, named by its checksum
"""

from __future__ import annotations

from orchestrator.host.runcinfo import PIPE_WCHANS, RUNC_COMMS

STATE_DIR = "/var/lib/runc-rollout"
RECORD = f"{STATE_DIR}/record.json"
LOCK_DIR = f"{STATE_DIR}/lock"
BACKUP_DIR = f"{STATE_DIR}/backup"
FILE_BACKUP_DIR = f"{STATE_DIR}/files"

SYSCTL_KEY = "fs.pipe-user-pages-soft"
# The key as a sysctl file may spell it (`fs.pipe-user-pages-soft` or `fs/pipe-user-pages-soft`),
# as an extended regular expression.
SYSCTL_KEY_ERE = "fs[./]pipe-user-pages-soft"
SYSCTL_PROC = "/proc/sys/fs/pipe-user-pages-soft"
SYSCTL_HARD_PROC = "/proc/sys/fs/pipe-user-pages-hard"
# sysctl.d directories, highest precedence first: a file hides same-named files further down.
SYSCTL_DIRS = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
)
SYSCTL_CONF = "/etc/sysctl.conf"  # read last, after every sysctl.d file

# systemd's default PATH: what dockerd and containerd have unless told otherwise, and the PATH
# every host-side script puts first (a non-login SSH session's PATH may lack the sbin folders).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

EXIT_LOCKED = 75  # another run holds the host
EXIT_MISMATCH = 65  # a checksum did not match
EXIT_WONT_RUN = 66  # a binary did not run, or did not report itself as runc
EXIT_NEEDS_PUSH = 67  # the host holds no copy of the artifact and could not fetch it
EXIT_NO_GUNZIP = 68  # the host cannot take a compressed push
EXIT_TIMEOUT = 124  # `timeout` killed the command (124, or 137 for SIGKILL)
EXIT_KILLED = 137

# The pipe holder's exit codes (besides 0: released by EOF, a signal or its lifetime).
HOLDER_EXIT_ERROR = 1  # bad arguments, no setpriv to drop to the uid, out of processes: stderr
HOLDER_EXIT_SOFT_ZERO = 3  # fs.pipe-user-pages-soft is 0: the kernel never shrinks pipes
HOLDER_EXIT_HARD_LIMIT = 4  # fs.pipe-user-pages-hard is set and holding would reach it
HOLDER_EXIT_NOT_OVER = 5  # a fresh pipe of the uid was still large: the uid is privileged?

VERIFY_CONTAINER_PREFIX = "runc-rollout-verify-"
EXEC_OUTPUT_CAP = 65536  # bytes of a `docker exec`'d container's output kept on the host
HOST_CHECK_OUTPUT = 4096  # bytes of the operator's host check's output brought back
KEPT_SUFFIX = ".runc-rollout-before"  # beside a file changed since the rollout wrote it

SHELL: dict[str, str] = {
    "STATE_DIR": STATE_DIR,
    "RECORD_PATH": RECORD,
    "LOCK_DIR": LOCK_DIR,
    "BACKUP_DIR": BACKUP_DIR,
    "FILE_BACKUP_DIR": FILE_BACKUP_DIR,
    "SYSCTL_KEY": SYSCTL_KEY,
    "SYSCTL_KEY_ERE": SYSCTL_KEY_ERE,
    "SYSCTL_PROC": SYSCTL_PROC,
    "SYSCTL_HARD_PROC": SYSCTL_HARD_PROC,
    "SYSCTL_DIRS": " ".join(SYSCTL_DIRS),
    "SYSCTL_CONF": SYSCTL_CONF,
    "SYSTEMD_PATH": SYSTEMD_PATH,
    "EXIT_LOCKED": str(EXIT_LOCKED),
    "EXIT_MISMATCH": str(EXIT_MISMATCH),
    "EXIT_WONT_RUN": str(EXIT_WONT_RUN),
    "EXIT_NEEDS_PUSH": str(EXIT_NEEDS_PUSH),
    "EXIT_NO_GUNZIP": str(EXIT_NO_GUNZIP),
    "HOLDER_EXIT_SOFT_ZERO": str(HOLDER_EXIT_SOFT_ZERO),
    "HOLDER_EXIT_HARD_LIMIT": str(HOLDER_EXIT_HARD_LIMIT),
    "HOLDER_EXIT_NOT_OVER": str(HOLDER_EXIT_NOT_OVER),
    "VERIFY_PREFIX": VERIFY_CONTAINER_PREFIX,
    "EXEC_OUTPUT_CAP": str(EXEC_OUTPUT_CAP),
    "HOST_CHECK_OUTPUT": str(HOST_CHECK_OUTPUT),
    "KEPT_SUFFIX": KEPT_SUFFIX,
    # runcinfo's definitions: globs of a runc's comm, and the wchans of a blocked pipe writer
    "RUNC_COMMS": " ".join(RUNC_COMMS),
    "PIPE_WCHANS": " ".join(PIPE_WCHANS),
}
