"""What runc-rollout does on a host, as data: POSIX shell commands an executor runs.

Each function returns a `HostCommand`: a short script with its parameters quoted into it (data
too: nothing travels on stdin, where a controller dying mid-send would leave a short read), and
a timeout. Scripts print `key=value` lines (`parse_kv`) and exit with one of the `EXIT_*` codes
below. Nothing here does I/O; the apply engine runs these through an executor.

Host-side layout (shared by every backend, so one can roll back what another did):

    /var/lib/runc-rollout/            0700
        lock/owner                    run id holding the host (mkdir is the atomic test-and-set)
        record.json                   the current rollout's "before" state and phase
        backup/<sha256>               every runc binary replaced, named by its checksum
        files/<sha256>                every sysctl file changed, as it was, named by its checksum
"""

from __future__ import annotations

import functools
import hashlib
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.host.scripts import hostside_script

STATE_DIR = "/var/lib/runc-rollout"
RECORD = f"{STATE_DIR}/record.json"
LOCK_DIR = f"{STATE_DIR}/lock"
BACKUP_DIR = f"{STATE_DIR}/backup"
FILE_BACKUP_DIR = f"{STATE_DIR}/files"
SYSCTL_KEY = "fs.pipe-user-pages-soft"
SYSCTL_PROC = "/proc/sys/fs/pipe-user-pages-soft"

EXIT_LOCKED = 75  # another run holds the host
EXIT_MISMATCH = 65  # a checksum did not match
EXIT_WONT_RUN = 66  # a binary did not run, or did not report itself as runc
EXIT_NEEDS_PUSH = 67  # the host holds no copy of the artifact and could not fetch it
EXIT_NO_GUNZIP = 68  # the host cannot take a compressed push
EXIT_TIMEOUT = 124  # `timeout` killed the command (124, or 137 for SIGKILL)
EXIT_KILLED = 137

VERIFY_CONTAINER_PREFIX = "runc-rollout-verify-"
EXEC_OUTPUT_CAP = 65536  # bytes of a `docker exec`'d container's output kept on the host


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


def _script(body: str, **params: str) -> str:
    header = "".join(f"{key}={shlex.quote(value)}\n" for key, value in params.items())
    return "set -u\numask 077\n" + header + body.strip() + "\n"


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
    body = f"""
mkdir -p {BACKUP_DIR} {FILE_BACKUP_DIR} && chmod 0700 {STATE_DIR} || exit 1
if mkdir {LOCK_DIR} 2>/dev/null; then
    printf '%s\\n' "$RUN_ID" > {LOCK_DIR}/owner && echo lock=taken
elif [ "$(cat {LOCK_DIR}/owner 2>/dev/null)" = "$RUN_ID" ]; then
    echo lock=resumed
else
    echo "owner=$(cat {LOCK_DIR}/owner 2>/dev/null || echo unknown)"
    exit {EXIT_LOCKED}
fi
"""
    return HostCommand("lock", _script(body, RUN_ID=run_id), 30, {"run_id": run_id})


def unlock(run_id: str) -> HostCommand:
    """Release the host if this run holds it; never removes another run's lock."""
    body = f"""
if [ "$(cat {LOCK_DIR}/owner 2>/dev/null)" = "$RUN_ID" ]; then
    rm -f {LOCK_DIR}/owner && rmdir {LOCK_DIR} && echo lock=released
else
    echo lock=not-ours
fi
"""
    return HostCommand("unlock", _script(body, RUN_ID=run_id), 30, {"run_id": run_id})


def check_staged(staged: str, sha256: str, timeout: float) -> HostCommand:
    """Prove the uploaded file is intact and runs here; remove it if not."""
    body = f"""
actual=$(sha256sum "$STAGED" 2>/dev/null | cut -d' ' -f1)
if [ "$actual" != "$SHA" ]; then
    rm -f "$STAGED"; echo "actual=${{actual:-missing}}"; exit {EXIT_MISMATCH}
fi
# What the kernel would run: `--version` below would not tell, since a shell (and execvp)
# runs a file the kernel refuses (ENOEXEC) as a script, where containerd-shim would fail.
refuse() {{ rm -f "$STAGED"; echo "$1"; exit {EXIT_WONT_RUN}; }}
case "$(od -An -tx1 -N4 "$STAGED" | tr -d ' \\n')" in
7f454c46)
    machine=$(od -An -tu2 -j18 -N2 "$STAGED" | tr -d ' \\n')
    case "$machine" in 62) elf=x86_64;; 183) elf=aarch64;; 3) elf=i386;; 40) elf=arm;;
        21) elf=ppc64;; 22) elf=s390x;; 243) elf=riscv64;; *) elf="machine $machine";; esac
    here=$(uname -m)
    case "$here" in i?86) here=i386;; armv*) here=arm;; ppc64le) here=ppc64;;
        arm64) here=aarch64;; esac
    [ "$elf" = "$here" ] || refuse "an ELF binary for $elf, but this host is $(uname -m)";;
2321*) ;;
*) refuse "not an executable: neither an ELF binary nor a #! script";;
esac
chmod 0755 "$STAGED" || {{ rm -f "$STAGED"; exit 1; }}
if ! out=$(timeout -s KILL {int(timeout)} "$STAGED" --version 2>&1); then
    rm -f "$STAGED"; printf '%s\\n' "$out" | head -c 400; exit {EXIT_WONT_RUN}
fi
printf '%s\\n' "$out"
"""
    params = {"staged": staged, "sha256": sha256}
    return HostCommand(
        "check-staged", _script(body, STAGED=staged, SHA=sha256), timeout + 30, params
    )


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
    body = f"""
sha_of() {{ sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }}
size_of() {{ wc -c < "$1" 2>/dev/null | tr -d ' '; }}
whole() {{ [ -f "$1" ] && [ "$(size_of "$1")" = "$SIZE" ] && [ "$(sha_of "$1")" = "$SHA" ]; }}
if whole "$STAGED"; then echo source=staged; exit 0; fi
rm -f "$STAGED"
held={BACKUP_DIR}/$SHA
if whole "$held" && cp "$held" "$STAGED" 2>/dev/null && whole "$STAGED"; then
    echo source=backup; exit 0
fi
rm -f "$STAGED"
[ -n "$URL" ] || {{ echo "why=no copy on the host"; exit {EXIT_NEEDS_PUSH}; }}
# The URL goes on stdin (printf is built in), never in an argument: a token in its query
# would be in `ps` for any user of the host. curl reads it as a config line, wget as a list.
if command -v curl >/dev/null 2>&1; then
    set -- curl -fsS -L --globoff --max-redirs 5 --proto =http,https --proto-redir =http,https \\
        --max-filesize "$SIZE" -K -
    feed="url = \"$URL\""
elif command -v wget >/dev/null 2>&1; then
    set -- wget -q -O - -i -
    feed=$URL
else
    echo "why=neither curl nor wget on the host"; exit {EXIT_NEEDS_PUSH}
fi
# What it says goes to "said", its exit status last (rc=N); what it serves through head. curl
# refuses a Content-Length over the size before reading any (exit 63): another file too.
said=$({{ {{ printf '%s\\n' "$feed" | timeout -s KILL {int(timeout)} "$@" 2>&3 3>&-; \\
    echo "rc=$?" >&3; }} | head -c $((SIZE + 1)) > "$STAGED"; }} 3>&1)
rc=${{said##*rc=}}; said=${{said%rc=*}}
got=$(size_of "$STAGED")
if [ "${{got:-0}}" -gt "$SIZE" ] || {{ [ "$1" = curl ] && [ "$rc" = 63 ]; }}; then
    rm -f "$STAGED"; echo "bytes=more than $SIZE"; exit {EXIT_MISMATCH}
fi
if [ "$rc" != 0 ]; then
    rm -f "$STAGED"
    echo "why=fetch failed (exit $rc): $(printf '%s' "$said" | tr -s '\n' ' ' | head -c 200)"
    exit {EXIT_NEEDS_PUSH}
fi
if [ "$got" != "$SIZE" ]; then rm -f "$STAGED"; echo "bytes=$got"; exit {EXIT_MISMATCH}; fi
actual=$(sha_of "$STAGED")
if [ "$actual" != "$SHA" ]; then
    rm -f "$STAGED"; echo "actual=${{actual:-missing}}"; exit {EXIT_MISMATCH}
fi
echo source=url
"""
    params = {"staged": staged, "sha256": sha256, "size": size, "url": url}
    script = _script(body, STAGED=staged, SHA=sha256, SIZE=str(size), URL=url or "")
    return HostCommand("obtain", script, timeout + 30, params)


def push_gzip(staged: str, size: int, unpacked_size: int) -> HostCommand:
    """Take `size` bytes of gzip on stdin and write what they decompress to at `staged`, cut
    at `unpacked_size` + 1 bytes (a gzip bomb fills no disk); anything but `unpacked_size`
    bytes is refused. The only step that reads stdin; `check_staged` proves the result."""
    body = f"""
command -v gunzip >/dev/null 2>&1 || {{ echo "why=no gunzip on the host"; exit {EXIT_NO_GUNZIP}; }}
head -c {size} | gunzip -c | head -c {unpacked_size + 1} > "$STAGED" || exit 1  # (read-only...)
got=$(wc -c < "$STAGED" | tr -d ' ')
[ "$got" -le {unpacked_size} ] || got="more than {unpacked_size}"
if [ "$got" != {unpacked_size} ]; then
    rm -f "$STAGED"; echo "why=the push unpacked to $got bytes"; exit 1
fi
chmod 0700 "$STAGED" && echo pushed=gzip
"""
    params = {"staged": staged, "size": size, "unpacked_size": unpacked_size}
    return HostCommand("push", _script(body, STAGED=staged), 300, params)


def probe_write(staged: str) -> HostCommand:
    """Why an upload to `staged` failed, in the shell's words (full, read-only, ...)."""
    body = 'head -c 65536 /dev/zero > "$STAGED"; rc=$?; rm -f "$STAGED"; exit "$rc"'
    return HostCommand("probe-write", _script(body, STAGED=staged), 30, {"staged": staged})


def discard_staged(staged: str) -> HostCommand:
    script = _script('rm -f "$STAGED"', STAGED=staged)
    return HostCommand("discard-staged", script, 30, {"staged": staged})


def backup_binary(target: str, before_sha256: str) -> HostCommand:
    """Keep the current runc in the backup store by its checksum (a copy, then a rename)."""
    body = f"""
actual=$(sha256sum "$TARGET" | cut -d' ' -f1)
[ "$actual" = "$BEFORE" ] || {{ echo "actual=$actual"; exit {EXIT_MISMATCH}; }}
dest={BACKUP_DIR}/$BEFORE
if [ ! -f "$dest" ] || [ "$(sha256sum "$dest" | cut -d' ' -f1)" != "$BEFORE" ]; then
    copy_to "$TARGET" "$dest" || exit 1
fi
echo "backup=$dest"
"""
    params = {"target": target, "sha256": before_sha256}
    script = _script(_COPY_TO + body, TARGET=target, BEFORE=before_sha256)
    return HostCommand("backup", script, 60, params)


def write_record(record_json: str) -> HostCommand:
    """Replace the host-side record atomically. The JSON travels inside the command, not on
    stdin: a controller killed mid-send would leave `cat` a short read to install as the record."""
    body = f"""
t=$(mktemp {RECORD}.XXXXXX) || exit 1
printf '%s\\n' "$RECORD" > "$t" && sync "$t" && mv -f "$t" {RECORD} && echo record=written \\
    || {{ rm -f "$t"; exit 1; }}
"""
    return HostCommand("write-record", _script(body, RECORD=record_json), 30, {"json": record_json})


def swap(staged: str, target: str, sha256: str) -> HostCommand:
    """The one rename that changes what every new container gets."""
    body = """
mv -f "$STAGED" "$TARGET" || exit 1
echo "sha256=$(sha256sum "$TARGET" | cut -d' ' -f1)"
"""
    params = {"staged": staged, "target": target, "sha256": sha256}
    return HostCommand("swap", _script(body, STAGED=staged, TARGET=target), 30, params)


def restore_binary(target: str, sha256: str) -> HostCommand:
    """Put the backed-up runc `sha256` back at `target`, by copy to a temporary name and rename."""
    body = f"""
src={BACKUP_DIR}/$SHA
[ -f "$src" ] || {{ echo "error=no backup $src"; exit 1; }}
tmp=$(mktemp "${{TARGET%/*}}/.runc-rollout-restore.XXXXXX") || exit 1
cp -p "$src" "$tmp" || {{ rm -f "$tmp"; exit 1; }}
[ "$(sha256sum "$tmp" | cut -d' ' -f1)" = "$SHA" ] || {{ rm -f "$tmp"; exit {EXIT_MISMATCH}; }}
mv -f "$tmp" "$TARGET" || {{ rm -f "$tmp"; exit 1; }}
echo "sha256=$(sha256sum "$TARGET" | cut -d' ' -f1)"
"""
    params = {"target": target, "sha256": sha256}
    return HostCommand("restore-binary", _script(body, TARGET=target, SHA=sha256), 60, params)


def runc_version(target: str, timeout: float) -> HostCommand:
    body = f'timeout -s KILL {int(timeout)} "$TARGET" --version'
    return HostCommand(
        "runc-version", _script(body, TARGET=target), timeout + 15, {"target": target}
    )


def verify_docker(run_id: str, image: str, command: str, timeout: float) -> HostCommand:
    """A no-new-privileges container must finish in time; a hung one is killed and removed.

    `docker run` ignores SIGTERM while runc init hangs, so the client gets SIGKILL, and the
    container it leaves "Created" is removed by name.
    """
    body = f"""
{_argv(command)}
name="$PREFIX$RUN_ID-$$"
cidfile={STATE_DIR}/$name.cid
rm -f "$cidfile"
timeout -s KILL {int(timeout)} docker run --rm --cidfile "$cidfile" --network none \\
    --security-opt no-new-privileges --name "$name" -- "$IMAGE" "$@"
rc=$?
if [ "$rc" -ne 0 ]; then
    # A hung container's runtime processes (runc create, its runc init) block even `docker
    # inspect`: find them by the container id docker wrote to the cidfile, kill them (never
    # the shim or the daemons), then remove the container.
    id=$(cat "$cidfile" 2>/dev/null)
    if [ -n "$id" ]; then
        for pid in $(grep -l -a -F "$id" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
            case "$(cat /proc/$pid/comm 2>/dev/null)" in containerd-shim*|dockerd|containerd) ;;
            *) pkill -KILL -P "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null;; esac
        done
    fi
    timeout -s KILL 30 docker rm -f "$name" >/dev/null 2>&1
    rm -f "$cidfile"
    echo "verify=failed rc=$rc"; exit "$rc"
fi
rm -f "$cidfile"
echo verify=ok
"""
    params = {"PREFIX": VERIFY_CONTAINER_PREFIX, "RUN_ID": run_id, "IMAGE": image}
    return HostCommand("verify-docker", _script(body, **params), timeout + 60, params)


def _argv(command: str) -> str:
    """The verification command's words (split as a shell would, on the controller) as the
    script's arguments, "$@": never word-split or evaluated on the host."""
    return f"set -- {shlex.join(shlex.split(command))}"


def verify_exec(command: str, timeout: float, container: str | None = None) -> HostCommand:
    """`docker exec` into a container that was running before the swap: `container` if given
    (it must be running), else the first running one; its name is reported."""
    body = f"""
{_argv(command)}
if [ -n "$CONTAINER" ]; then
    [ "$(docker inspect -f '{{{{.State.Running}}}}' -- "$CONTAINER" 2>/dev/null)" = true ] || {{
        echo "exec=failed container=$CONTAINER: not running"; exit 1; }}
    id=$CONTAINER
else
    id=$(docker ps --filter status=running --format '{{{{.Names}}}}' | while read -r c; do
        case "$c" in "$PREFIX"*) ;; *) printf '%s\\n' "$c"; break;; esac
    done)
fi
[ -n "$id" ] || {{ echo exec=none; exit 0; }}
# The container is a tenant's: its output (its `true` may print without end) goes to a file,
# {EXEC_OUTPUT_CAP} bytes of it, the rest read and dropped; its last line explains a failure.
out=$(mktemp {STATE_DIR}/exec.XXXXXX) || exit 1
rc=$({{ {{ timeout -s KILL {int(timeout)} docker exec -- "$id" "$@" 2>&1 3>&-; echo "$?" >&3; }} \\
    | {{ head -c {EXEC_OUTPUT_CAP} > "$out"; cat > /dev/null; }}; }} 3>&1)
said=$(tail -n 1 "$out" | tr -cd '[:print:]' | cut -c1-200); rm -f "$out"
[ "$rc" = 0 ] || {{ echo "exec=failed container=$id rc=$rc: $said"; exit "${{rc:-1}}"; }}
echo "exec=ok container=$id"
"""
    params = {"PREFIX": VERIFY_CONTAINER_PREFIX, "CONTAINER": container or ""}
    return HostCommand("verify-exec", _script(body, **params), timeout + 60, params)


HOST_CHECK_OUTPUT = 4096  # bytes of the host check's output brought back


def host_check(command: str, timeout: float, *, host: str, runc: str) -> HostCommand:
    """The operator's own health check, `sh -c COMMAND` (e.g. kubelet's healthz), with a hard
    timeout, stdin closed, and the host's inventory name and runc path in its environment;
    the first `HOST_CHECK_OUTPUT` bytes of its output come back, its exit status is ours."""
    body = f"""
out=$(mktemp {STATE_DIR}/host-check.XXXXXX) || exit 1
RUNC_ROLLOUT_HOST=$HOST RUNC_ROLLOUT_RUNC=$RUNC \
    timeout -s KILL {int(timeout)} sh -c "$CHECK" </dev/null >"$out" 2>&1
rc=$?
head -c {HOST_CHECK_OUTPUT} "$out"
rm -f "$out"
exit "$rc"
"""
    params = {"CHECK": command, "HOST": host, "RUNC": runc}
    return HostCommand("host-check", _script(body, **params), timeout + 30, params)


def verify_runc_bundle(target: str, run_id: str, timeout: float) -> HostCommand:
    """Hosts without Docker: run a minimal OCI bundle (`noNewPrivileges: true`) with runc itself.

    The rootfs holds a static busybox when the host has one; the container runs `true`.
    """
    body = f"""
rm -rf {STATE_DIR}/verify.*  # bundles of a verification whose connection died (we hold the lock)
bundle=$(mktemp -d {STATE_DIR}/verify.XXXXXX) || exit 1
name="$PREFIX$RUN_ID-$$"
root={STATE_DIR}/runc-state
cleanup() {{ "$TARGET" --root "$root" delete -f "$name" >/dev/null 2>&1; rm -rf "$bundle"; }}
trap cleanup EXIT
trap 'exit 1' HUP INT PIPE TERM  # a dropped connection too: clean up on the way out
bb=$(command -v busybox) || {{ echo "error=no busybox for the verify bundle"; exit 1; }}
mkdir -p "$bundle/rootfs/bin" && cp "$bb" "$bundle/rootfs/bin/busybox" || exit 1
cd "$bundle" && "$TARGET" spec || exit 1
sed -i -e 's/"terminal": true/"terminal": false/' \\
    -e 's|"sh"|"/bin/busybox", "true"|' config.json
grep -q '"noNewPrivileges": true' config.json || {{ echo "error=no noNewPrivileges"; exit 1; }}
timeout -s KILL {int(timeout)} "$TARGET" --root "$root" run --bundle "$bundle" "$name" </dev/null
rc=$?
[ "$rc" -eq 0 ] || {{ echo "verify=failed rc=$rc"; exit "$rc"; }}
echo verify=ok
"""
    params = {"TARGET": target, "RUN_ID": run_id, "PREFIX": VERIFY_CONTAINER_PREFIX}
    return HostCommand("verify-runc", _script(body, **params), timeout + 60, params)


KEPT_SUFFIX = ".runc-rollout-before"  # beside a file changed since the rollout wrote it

# `copy_to SRC DEST`: a copy (`cp -p`, synced) to a new name made by mktemp beside DEST, then a
# rename over DEST: a link planted at DEST, or at a fixed temporary name, is replaced, never
# written through.
_COPY_TO = """
copy_to() {
    t=$(mktemp "$2.runc-rollout.XXXXXX") || return 1
    cp -p "$1" "$t" && sync "$t" && mv -f "$t" "$2" && return 0
    rm -f "$t"; return 1
}
"""


@functools.cache
def _untrusted() -> str:
    """`untrusted FILE`, the facts script's rule for what it runs (`hostside/facts.sh`): prints why
    FILE (after links), or a folder above it or above its name, is not root's alone."""
    text = hostside_script("facts.sh")
    start = text.index("untrusted() {")
    return text[start : text.index("\n}\n", start) + 3]


def _refuse_untrusted(files: Iterable[str]) -> str:
    """Sysctl files are changed only where only root can: the first of `files` that is a link
    or `untrusted` ends the step before anything changed. (A file gone since is written anew,
    by a rename, which replaces whatever is at its name.)"""
    args = " ".join(shlex.quote(path) for path in sorted(set(files)))
    check = f"""
{_untrusted()}set -- {args}
for f; do
    if [ -L "$f" ]; then why="$f is a symbolic link"
    elif [ -e "$f" ]; then why=$(untrusted "$f") || continue
    else continue
    fi
    printf 'refused: %s\\n' "$why"; exit 1
done
"""
    return check if args else ""


def _each_file(body: str, files: list[str], per_file: int = 1) -> str:
    """`body` run once per file, the file in "$f": the names travel as quoted arguments, so
    nothing in a name is ever evaluated. `per_file` arguments each (`$f`, then `$2`...)."""
    args = " ".join(shlex.quote(item) for item in files)
    loop = f"while [ $# -ge {per_file} ]; do\n    f=$1\n{body}\n    shift {per_file}\ndone"
    return f"set -- {args}\n{loop}" if files else "true"


def set_sysctl(value: int, files: list[str]) -> HostCommand:
    """Set the runtime value, and every line of `files` that sets the key, to `value`.

    Each file is backed up by its checksum before it is changed; one `file=` line per file reports
    its checksum before and after, for the host-side record.
    """
    body = f"""
    sum=$(sha256sum "$f" | cut -d' ' -f1) || exit 1
    [ -f {FILE_BACKUP_DIR}/$sum ] || copy_to "$f" {FILE_BACKUP_DIR}/$sum || exit 1
    sed -i -E 's#^([[:space:]]*-?)fs[./]pipe-user-pages-soft[[:space:]]*=.*$#\\1{SYSCTL_KEY} = {value}#' "$f" || exit 1
    printf 'file=%s before=%s after=%s\\n' "$f" "$sum" "$(sha256sum "$f" | cut -d' ' -f1)"
""".strip("\n")  # noqa: E501
    script = "\n".join(
        [
            _COPY_TO + _refuse_untrusted(files),
            f"printf '%s\\n' {value} > {SYSCTL_PROC} || exit 1",
            _each_file(body, sorted(files)),
            f"echo runtime=$(cat {SYSCTL_PROC})",
        ]
    )
    return HostCommand("set-sysctl", _script(script), 60, {"value": value, "files": sorted(files)})


def backup_files(files: list[str]) -> HostCommand:
    """Keep each file in the backup store by its checksum (a copy, then a rename); one
    `file=PATH before=SHA256` line each."""
    body = f"""
    sum=$(sha256sum "$f" | cut -d' ' -f1) || exit 1
    dest={FILE_BACKUP_DIR}/$sum
    [ "$(sha256sum "$dest" 2>/dev/null | cut -d' ' -f1)" = "$sum" ] || \\
        copy_to "$f" "$dest" || exit 1
    printf 'file=%s before=%s\\n' "$f" "$sum"
""".strip("\n")
    script = _script(_COPY_TO + _refuse_untrusted(files) + "\n" + _each_file(body, sorted(files)))
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
    body = f"""
    before=$2 after=$3
    now=$(sha256sum "$f" 2>/dev/null | cut -d' ' -f1)
    if [ "$now" = "$before" ]; then
        printf 'file=%s sha256=%s\\n' "$f" "$now"
    elif [ -n "$after" ] && [ "$now" != "$after" ]; then
        copy_to {FILE_BACKUP_DIR}/"$before" "$f{KEPT_SUFFIX}" || exit 1
        printf 'file=%s sha256=%s kept=1\\n' "$f" "$now"
    else
        copy_to {FILE_BACKUP_DIR}/"$before" "$f" || exit 1
        printf 'file=%s sha256=%s\\n' "$f" "$(sha256sum "$f" | cut -d' ' -f1)"
    fi
""".strip("\n")
    args = [item for path, before, after in sorted(files) for item in (path, before, after or "")]
    paths = [path for path, _, _ in files]
    script = _script(_COPY_TO + _refuse_untrusted(paths) + "\n" + _each_file(body, args, 3))
    return HostCommand("restore-files", script, 60, {"files": sorted(files)})


def set_runtime_sysctl(value: int) -> HostCommand:
    body = f"printf '%s\\n' {value} > {SYSCTL_PROC} || exit 1\necho runtime=$(cat {SYSCTL_PROC})"
    return HostCommand("set-runtime-sysctl", _script(body), 30, {"value": value})


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
# The package owning a swapped runc (hostside/package.sh)

DIVERT_SUFFIX = ".distrib"  # dpkg-divert's own default name for a diverted file


def diverted_name(target: str) -> str:
    """Where a local diversion of `target` puts the package's copy of it."""
    return target + DIVERT_SUFFIX


def _package_step(name: str, timeout: float, **params: str) -> HostCommand:
    script = _script(hostside_script("package.sh"), **params)
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
