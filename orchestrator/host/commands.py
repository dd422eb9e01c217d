"""What runc-rollout does on a host, as data: POSIX shell commands an executor runs.

Each function returns a `HostCommand`: one of the scripts in `orchestrator/hostside/steps/`
rendered with its parameters quoted into its header (`scripts.render`: data too; nothing
travels on stdin, where a controller dying mid-send would leave a short read), and a timeout.
Scripts print `key=value` lines (`parse_kv`) and exit with one of the `EXIT_*` codes of
`orchestrator.host.constants` (which also describes the host-side layout). Nothing here does
I/O; the apply engine runs these through an executor.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.host import constants, scripts

# The shared constants (`orchestrator.host.constants`), as callers read them: `commands.NAME`.
BACKUP_DIR = constants.BACKUP_DIR
EXEC_OUTPUT_CAP = constants.EXEC_OUTPUT_CAP
EXIT_KILLED = constants.EXIT_KILLED
EXIT_LOCKED = constants.EXIT_LOCKED
EXIT_MISMATCH = constants.EXIT_MISMATCH
EXIT_NEEDS_PUSH = constants.EXIT_NEEDS_PUSH
EXIT_NO_GUNZIP = constants.EXIT_NO_GUNZIP
EXIT_TIMEOUT = constants.EXIT_TIMEOUT
EXIT_WONT_RUN = constants.EXIT_WONT_RUN
FILE_BACKUP_DIR = constants.FILE_BACKUP_DIR
HOST_CHECK_OUTPUT = constants.HOST_CHECK_OUTPUT
KEPT_SUFFIX = constants.KEPT_SUFFIX
LOCK_DIR = constants.LOCK_DIR
RECORD = constants.RECORD
STATE_DIR = constants.STATE_DIR
SYSCTL_KEY = constants.SYSCTL_KEY
SYSCTL_PROC = constants.SYSCTL_PROC
VERIFY_CONTAINER_PREFIX = constants.VERIFY_CONTAINER_PREFIX


@dataclass(frozen=True)
class HostCommand:
    """One host step: its script, a timeout, and its parameters as data (what the script was
    given: tests drive a fake host from them; the script is what a real host runs)."""

    name: str
    script: str
    timeout: float
    params: Mapping[str, object] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class StepResult:
    """What one step of a batch left: exit status (-1 if the batch ended during it), output."""

    name: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def last_line(self) -> str:
        text = (self.stdout.strip() or self.stderr.strip()).splitlines()
        return text[-1][:300] if text else f"exit {self.exit_status}"


def parse_kv(output: str) -> dict[str, str]:
    """`key=value` lines of a script's stdout; other lines are ignored, the last value wins."""
    values: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and key and key.replace("_", "").isalnum():
            values[key] = value
    return values


def staging_path(target: str, run_id: str) -> str:
    directory, _, _ = target.rpartition("/")
    return f"{directory}/.runc-rollout-{run_id}.tmp"


def lock(run_id: str) -> HostCommand:
    """Take the host for `run_id`; a lock held by the same run (a resume) is taken over."""
    return HostCommand("lock", scripts.step("lock", RUN_ID=run_id), 30, {"run_id": run_id})


def unlock(run_id: str) -> HostCommand:
    """Release the host if this run holds it; never removes another run's lock."""
    return HostCommand("unlock", scripts.step("unlock", RUN_ID=run_id), 30, {"run_id": run_id})


def check_staged(staged: str, sha256: str, timeout: float) -> HostCommand:
    """Prove the uploaded file is intact and runs here; remove it if not."""
    params = {"staged": staged, "sha256": sha256}
    script = scripts.step("check_staged", STAGED=staged, SHA=sha256, TIMEOUT=str(int(timeout)))
    return HostCommand("check-staged", script, timeout + 30, params)


def obtain_staged(
    staged: str, sha256: str, size: int, url: str | None, timeout: float
) -> HostCommand:
    """Put the artifact at `staged` without the controller sending it: a copy this run staged
    already, the backup store's copy, or a fetch from `url` (curl or wget, the URL as it is,
    never a glob). Prints `source=` (`staged`, `backup`, `url`); exits `EXIT_NEEDS_PUSH` (with
    `why=`) if none of them has it, and `EXIT_MISMATCH` (with `bytes=` or `actual=`) if what
    `url` served is not the artifact. What a URL serves is cut at `size` + 1 bytes on its way
    to the disk, whatever it says its length is; the size is checked before the sha256. Either
    way `check_staged` is what proves the file before anything uses it."""
    params = {"staged": staged, "sha256": sha256, "size": size, "url": url}
    script = scripts.step(
        "obtain",
        STAGED=staged,
        SHA=sha256,
        SIZE=str(size),
        URL=url or "",
        TIMEOUT=str(int(timeout)),
    )
    return HostCommand("obtain", script, timeout + 30, params)


def push_gzip(staged: str, size: int, unpacked_size: int) -> HostCommand:
    """Take `size` bytes of gzip on stdin and write what they decompress to at `staged`, cut
    at `unpacked_size` + 1 bytes (a gzip bomb fills no disk); anything but `unpacked_size`
    bytes is refused. The only step that reads stdin; `check_staged` proves the result."""
    params = {"staged": staged, "size": size, "unpacked_size": unpacked_size}
    script = scripts.step("push", STAGED=staged, SIZE=str(size), UNPACKED=str(unpacked_size))
    return HostCommand("push", script, 300, params)


def probe_write(staged: str) -> HostCommand:
    """Why an upload to `staged` failed, in the shell's words (full, read-only, ...)."""
    script = scripts.step("probe_write", STAGED=staged)
    return HostCommand("probe-write", script, 30, {"staged": staged})


def discard_staged(staged: str) -> HostCommand:
    script = scripts.step("discard_staged", STAGED=staged)
    return HostCommand("discard-staged", script, 30, {"staged": staged})


def backup_binary(target: str, before_sha256: str) -> HostCommand:
    """Keep the current runc in the backup store by its checksum (a copy, then a rename)."""
    params = {"target": target, "sha256": before_sha256}
    script = scripts.step("backup", TARGET=target, BEFORE=before_sha256)
    return HostCommand("backup", script, 60, params)


def write_record(record_json: str) -> HostCommand:
    """Replace the host-side record atomically. The JSON travels inside the command, not on
    stdin: a controller killed mid-send would leave `cat` a short read to install as the record."""
    script = scripts.step("write_record", RECORD=record_json)
    return HostCommand("write-record", script, 30, {"json": record_json})


def swap(staged: str, target: str, sha256: str) -> HostCommand:
    """The one rename that changes what every new container gets."""
    params = {"staged": staged, "target": target, "sha256": sha256}
    return HostCommand("swap", scripts.step("swap", STAGED=staged, TARGET=target), 30, params)


def restore_binary(target: str, sha256: str) -> HostCommand:
    """Put the backed-up runc `sha256` back at `target`, by copy to a temporary name and rename."""
    params = {"target": target, "sha256": sha256}
    script = scripts.step("restore_binary", TARGET=target, SHA=sha256)
    return HostCommand("restore-binary", script, 60, params)


def runc_version(target: str, timeout: float) -> HostCommand:
    script = scripts.step("runc_version", TARGET=target, TIMEOUT=str(int(timeout)))
    return HostCommand("runc-version", script, timeout + 15, {"target": target})


def verify_docker(run_id: str, image: str, command: str, timeout: float) -> HostCommand:
    """A no-new-privileges container must finish in time; a hung one is killed and removed.

    `docker run` ignores SIGTERM while runc init hangs, so the client gets SIGKILL, and the
    container it leaves "Created" is removed by name.
    """
    params = {"PREFIX": VERIFY_CONTAINER_PREFIX, "RUN_ID": run_id, "IMAGE": image}
    script = scripts.step(
        "verify_docker",
        args=_argv(command),
        RUN_ID=run_id,
        IMAGE=image,
        TIMEOUT=str(int(timeout)),
    )
    return HostCommand("verify-docker", script, timeout + 60, params)


def _argv(command: str) -> list[str]:
    """The verification command's words (split as a shell would, on the controller), given to
    the script as its arguments, "$@": never word-split or evaluated on the host."""
    return shlex.split(command)


def verify_exec(command: str, timeout: float, container: str | None = None) -> HostCommand:
    """`docker exec` into a container that was running before the swap: `container` if given
    (it must be running), else the first running one; its name is reported."""
    params = {"PREFIX": VERIFY_CONTAINER_PREFIX, "CONTAINER": container or ""}
    script = scripts.step(
        "verify_exec",
        args=_argv(command),
        CONTAINER=container or "",
        TIMEOUT=str(int(timeout)),
    )
    return HostCommand("verify-exec", script, timeout + 60, params)


def host_check(command: str, timeout: float, *, host: str, runc: str) -> HostCommand:
    """The operator's own health check, `sh -c COMMAND` (e.g. kubelet's healthz), with a hard
    timeout, stdin closed, and the host's inventory name and runc path in its environment;
    the first `HOST_CHECK_OUTPUT` bytes of its output come back, its exit status is ours."""
    params = {"CHECK": command, "HOST": host, "RUNC": runc}
    script = scripts.step("host_check", TIMEOUT=str(int(timeout)), **params)
    return HostCommand("host-check", script, timeout + 30, params)


def verify_runc_bundle(target: str, run_id: str, timeout: float) -> HostCommand:
    """Hosts without Docker: run a minimal OCI bundle (`noNewPrivileges: true`) with runc itself.

    The rootfs holds a static busybox when the host has one; the container runs `true`.
    """
    params = {"TARGET": target, "RUN_ID": run_id, "PREFIX": VERIFY_CONTAINER_PREFIX}
    script = scripts.step("verify_runc", TARGET=target, RUN_ID=run_id, TIMEOUT=str(int(timeout)))
    return HostCommand("verify-runc", script, timeout + 60, params)


def set_sysctl(value: int, files: list[str]) -> HostCommand:
    """Set the runtime value, and every line of `files` that sets the key, to `value`.

    Each file is backed up by its checksum before it is changed; one `file=` line per file reports
    its checksum before and after, for the host-side record.
    """
    script = scripts.step("set_sysctl", args=sorted(files), VALUE=str(int(value)))
    return HostCommand("set-sysctl", script, 60, {"value": value, "files": sorted(files)})


def backup_files(files: list[str]) -> HostCommand:
    """Keep each file in the backup store by its checksum (a copy, then a rename); one
    `file=PATH before=SHA256` line each."""
    script = scripts.step("backup_files", args=sorted(files))
    return HostCommand("backup-files", script, 60, {"files": sorted(files)})


def parse_file_lines(output: str, paths: Iterable[str]) -> dict[str, dict[str, str]]:
    """The `file=PATH k=v ...` lines of the file steps, for the files `paths` they were given
    (a name may hold spaces: each line is matched against the names, longest first)."""
    names = sorted(paths, key=len, reverse=True)
    files: dict[str, dict[str, str]] = {}
    for line in output.splitlines():
        path = next((name for name in names if line.startswith(f"file={name} ")), None)
        if path is not None:
            pairs = line[len(f"file={path} ") :].split(" ")
            files[path] = dict(pair.partition("=")[::2] for pair in pairs)
    return files


def restore_files(files: Sequence[tuple[str, str, str | None]]) -> HostCommand:
    """Put each file (path, sha256 before, sha256 the rollout left) back from the backup store.

    A file that is neither what the rollout left nor what it was before was edited since (by an
    admin): it is kept, and the old version is put beside it (`PATH.runc-rollout-before`);
    its line says `kept=1`. Without a recorded "after" the file is restored.
    """
    args = [item for path, before, after in sorted(files) for item in (path, before, after or "")]
    script = scripts.step("restore_files", args=args)
    return HostCommand("restore-files", script, 60, {"files": sorted(files)})


def set_runtime_sysctl(value: int) -> HostCommand:
    script = scripts.step("set_runtime_sysctl", VALUE=str(int(value)))
    return HostCommand("set-runtime-sysctl", script, 30, {"value": value})


# ---------------------------------------------------------------------------------------------
# Batches: several steps in one round trip


def batch(steps: Sequence[HostCommand], nonce: str) -> HostCommand:
    """The steps run one after another in one script, each in its own subshell; the first that
    fails ends the batch. Markers delimit each step's stdout and stderr and give its exit status
    (`split_batch` reads them); `nonce` (random hex, per batch) keeps output from forging them."""
    if not re.fullmatch(r"[0-9a-f]{16,64}", nonce):
        raise ValueError("nonce must be 16-64 lowercase hex digits")
    lines = ["set -u"]
    for step in steps:
        mark = f"\\n@@{nonce} step {step.name}\\n"
        lines += [
            f"printf '{mark}'; printf '{mark}' >&2",
            f"(\n{step.script.rstrip()}\n) </dev/null",
            f'rc=$?; printf \'\\n@@{nonce} rc %s\\n\' "$rc"; [ "$rc" -eq 0 ] || exit 0',
        ]
    names = "+".join(step.name for step in steps)
    timeout = sum(step.timeout for step in steps)
    return HostCommand(names, "\n".join(lines) + "\n", timeout, {"steps": list(steps)})


def split_batch(stdout: str, stderr: str, nonce: str) -> list[StepResult]:
    """Each step of a batch that started, in order; one the batch ended in has exit -1.
    Plain string search, no regular expression: the nonce is new in every batch, and compiling
    one per batch was a visible part of the controller's CPU per host."""
    step_mark, rc_mark = f"\n@@{nonce} step ", f"\n@@{nonce} rc "
    error_of = dict(_marked(stderr, step_mark))  # names are unique per batch
    results = []
    for name, body in _marked(stdout, step_mark):
        at = body.find(rc_mark)
        end = body.find("\n", at + len(rc_mark)) if at >= 0 else -1
        code = body[at + len(rc_mark) : end] if end >= 0 else ""
        if code.lstrip("-").isdigit():
            results.append(StepResult(name, int(code), body[:at], error_of.get(name, "")))
        else:
            results.append(StepResult(name, -1, body, error_of.get(name, "")))
    return results


def _marked(output: str, mark: str) -> Iterator[tuple[str, str]]:
    """(name, text) of each `mark NAME\n` section of `output`, in order."""
    for part in output.split(mark)[1:]:
        name, newline, text = part.partition("\n")
        if newline:
            yield name, text


def stdin_launcher(script: bytes) -> str:
    """A command that reads `script` from stdin and runs it only if all of it arrived: a
    controller that dies mid-send leaves a short read, which this refuses (exit 125)."""
    digest = hashlib.sha256(script).hexdigest()
    return (
        "umask 077; t=$(mktemp) || exit 125; "
        f'head -c {len(script)} > "$t"; '
        f'if [ "$(sha256sum < "$t")" = "{digest}  -" ]; then sh "$t"; rc=$?; '
        "else echo 'runc-rollout: the script arrived incomplete' >&2; rc=125; fi; "
        'rm -f "$t"; exit "$rc"'
    )


# ---------------------------------------------------------------------------------------------
# The package owning a swapped runc (hostside/steps/package.sh)

DIVERT_SUFFIX = ".distrib"  # dpkg-divert's own default name for a diverted file


def diverted_name(target: str) -> str:
    """Where a local diversion of `target` puts the package's copy of it."""
    return target + DIVERT_SUFFIX


def _package_step(name: str, timeout: float, **params: str) -> HostCommand:
    script = scripts.step("package", **params)
    return HostCommand(name, script, timeout, dict(params))


def divert_package(target: str, package: str, divert: str) -> HostCommand:
    """dpkg: the package's copy of `target` to `divert`, then a local diversion registered
    (nothing renamed): `target` is never missing; prints `diversion=added` (or `present`)."""
    return _package_step(
        "divert", 60, ACTION="divert", TARGET=target, PKG=package, DIVERT=divert, MANAGER="dpkg"
    )


def restore_package(target: str, package: str, divert: str, before_sha256: str) -> HostCommand:
    """dpkg rollback: the package's own file (or the backup of `before_sha256`) back at
    `target` by rename, the diversion removed; prints `restored=`, `sha256=`, `md5=`, `verify=`."""
    return _package_step(
        "restore-binary",
        60,
        ACTION="restore",
        TARGET=target,
        PKG=package,
        DIVERT=divert,
        BEFORE=before_sha256,
        BACKUP=f"{BACKUP_DIR}/{before_sha256}",
        MANAGER="dpkg",
    )


def prepare_hold(package: str) -> HostCommand:
    """rpm: the dnf/yum configuration file a hold of `package` will change, kept in the file
    backup store; changes nothing; prints `file=PATH before=SHA` (`parse_file_lines`)."""
    return _package_step(
        "hold-prepare", 60, ACTION="hold-prepare", PKG=package, FILES=FILE_BACKUP_DIR, MANAGER="rpm"
    )


def hold_package(package: str, conf: str, before_sha256: str) -> HostCommand:
    """rpm: an `exclude=` of `package` in `conf` (still `before_sha256`, else nothing changes);
    prints `file=PATH before=SHA after=SHA` (`parse_file_lines`)."""
    return _package_step(
        "hold",
        60,
        ACTION="hold",
        PKG=package,
        CONF=conf,
        BEFORE=before_sha256,
        MANAGER="rpm",
    )


def verify_package(target: str, package: str, manager: str) -> HostCommand:
    """What `dpkg --verify` / `rpm -V` say of `target` now: `verify=clean` or `verify=changed`."""
    return _package_step(
        "verify-package", 60, ACTION="verify", TARGET=target, PKG=package, MANAGER=manager
    )
