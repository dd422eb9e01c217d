"""The lab's supervisor: the one long-lived parent (and reaper) of every lab process.

`lab up` starts it once per lab as `python3 -I supervisor.py STATE_DIR`; it then serves
requests on `STATE_DIR/supervisor.sock` (mode 0600, root only, peer uid checked), one JSON line
per connection:

    {"op": "ping"}                                        -> {"pid": N}
    {"op": "holder", "name": H, "ops": [...], "log": P}   -> {"pid": N} | {"error": "..."}
    {"op": "spawn", "argv": [...], "env": {...}, "log": P} -> {"pid": N} | {"error": "..."}
    {"op": "exited", "pid": N}                            -> {"exited": bool, "status": int|null}
    {"op": "shutdown"}                                    -> {"ok": true}, then it exits

Why it exists: every lab process must be reaped when it dies. Started from a short-lived command
(`runc-rollout lab up`) they would be orphans of PID 1, and a PID 1 that does not reap (as in some
sandboxes) would keep each of them as a zombie. The supervisor is a child subreaper
(PR_SET_CHILD_SUBREAPER): everything it starts, and everything those start and orphan (containerd
shims, sshd sessions), is reaped here.

A "holder" is a lab host's namespaces: the supervisor forks, the child unshares its mount and
UTS namespaces (the hostname is the host's name), makes every mount private, applies the host's
mount operations (`_Mounter`), and execs `sleep infinity` renamed `runc-rollout-lab-holder:NAME`,
which keeps the namespaces alive. sshd, containerd and dockerd of that host are "spawn"ed as
`nsenter --mount=/proc/HOLDER/ns/mnt --uts=/proc/HOLDER/ns/uts -- ...`.

Standard library only, so it runs under any python3 even while the project's venv changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

SOCKET_NAME = "supervisor.sock"
MAX_REQUEST = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None
) -> None:
    def enc(value: str | None) -> bytes | None:
        return None if value is None else value.encode()

    result = _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
    _check(result, f"mount {source or fstype or ''} on {target}")


# ---------------------------------------------------------------------------------------------
# A holder's mount operations (run in the forked child, inside its new mount namespace)


class _Mounter:
    """Applies mount operations; bind sources are opened first, so later mounts cannot hide them.

    Operations (dicts):
      {"op": "tmpfs", "target": T, "mode": "0755"}     a fresh tmpfs on T
      {"op": "mkdir", "path": P, "mode": 493}          mkdir (ignored if present), chmod
      {"op": "symlink", "path": P, "to": X}            symlink P -> X
      {"op": "bind", "source": S, "target": T}         bind S over T; T is created when missing
                                                       (the parent is shadowed if it is not ours)
      {"op": "shadow", "path": P}                      a tmpfs over P holding the same entries
                                                       (directories and files bound back,
                                                       symlinks copied): new entries can then be
                                                       created in P without touching the machine
                                                       ("except": [names] leaves those out)
      {"op": "readonly", "path": P}                    bind P over itself, read-only, noexec
      {"op": "readonly", "path": P, "exec": true}      the same, its programs still executable
    """

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}
        self.ours: set[str] = set()  # directories on a tmpfs of this namespace

    def open_source(self, path: str) -> None:
        if path not in self.fds:
            self.fds[path] = os.open(path, os.O_PATH | os.O_CLOEXEC)

    def via_fd(self, path: str) -> str:
        return f"/proc/self/fd/{self.fds[path]}"

    def shadow(self, path: str, leave_out: tuple[str, ...] = ()) -> None:
        original = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.stat(path)
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={stat.S_IMODE(st.st_mode):o}")
        self.ours.add(path)
        base = f"/proc/self/fd/{original}"
        for entry in sorted(os.listdir(base)):
            if entry in leave_out:
                continue
            src = f"{base}/{entry}"
            dst = os.path.join(path, entry)
            info = os.lstat(src)
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(src), dst)
                continue
            if stat.S_ISDIR(info.st_mode):
                os.mkdir(dst, stat.S_IMODE(info.st_mode))
            elif stat.S_ISREG(info.st_mode):
                os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
            else:
                continue
            _mount(src, dst, None, MS_BIND | MS_REC, None)
        os.close(original)

    def ensure_target(self, target: str, directory: bool) -> None:
        """Create a missing mount point without touching the machine: in a tmpfs of ours,
        shadowing (or creating) its parent first when needed."""
        if os.path.lexists(target):
            return
        parent = os.path.dirname(target)
        if parent not in self.ours:
            if os.path.lexists(parent):
                self.shadow(parent)
            else:
                self.ensure_target(parent, True)
        if directory:
            os.mkdir(target, 0o755)
            self.ours.add(target)
        else:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))

    def apply(self, ops: list[dict[str, Any]]) -> None:
        for op in ops:
            if op["op"] == "bind":
                self.open_source(op["source"])
        for op in ops:
            kind = op["op"]
            if kind == "tmpfs":
                _mount("tmpfs", op["target"], "tmpfs", MS_NOSUID | MS_NODEV, f"mode={op['mode']}")
                self.ours.add(op["target"])
            elif kind == "mkdir":
                with contextlib.suppress(FileExistsError):
                    os.mkdir(op["path"])
                os.chmod(op["path"], int(op["mode"]))
            elif kind == "symlink":
                os.symlink(op["to"], op["path"])
            elif kind == "bind":
                is_dir = os.path.isdir(self.via_fd(op["source"]))
                self.ensure_target(op["target"], is_dir)
                _mount(self.via_fd(op["source"]), op["target"], None, MS_BIND, None)
            elif kind == "shadow":
                self.shadow(op["path"], tuple(op.get("except", ())))
            elif kind == "readonly":
                path = op["path"]
                _mount(path, path, None, MS_BIND, None)
                flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV
                flags |= 0 if op.get("exec") else MS_NOEXEC
                _mount(None, path, None, flags, None)
            else:
                raise ValueError(f"unknown mount operation {kind!r}")
        for fd in self.fds.values():
            os.close(fd)


def _holder_child(name: str, ops: list[dict[str, Any]], log: str, report: int) -> None:
    """In the forked child: never returns (execs the holder or exits)."""
    try:
        os.setsid()
        devnull = os.open("/dev/null", os.O_RDONLY)
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(devnull, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(devnull)
        os.close(out)
        _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare --mount --uts")
        hostname = name.encode()
        _check(_libc.sethostname(hostname, len(hostname)), "sethostname")
        _mount(None, "/", None, MS_REC | MS_PRIVATE, None)
        _Mounter().apply(ops)
        os.chdir("/")
        os.write(report, b"ok\n")
        os.execv("/bin/sleep", [f"runc-rollout-lab-holder:{name}", "infinity"])
    except BaseException as exc:  # report anything, then leave without running parent cleanup
        with contextlib.suppress(OSError):
            os.write(report, f"error: {exc}\n".encode())
            os.write(2, f"runc-rollout-lab holder {name}: {exc}\n".encode())
    os._exit(1)


# ---------------------------------------------------------------------------------------------
# The server


class Supervisor:
    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.exited: dict[int, int] = {}
        self.running = True

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            child = self.children.pop(pid, None)
            if child is not None:
                child.returncode = code  # reaped here: keep Popen from waiting again
            self.exited[pid] = code
            if len(self.exited) > 4096:
                self.exited.pop(next(iter(self.exited)))

    def holder(self, request: dict[str, Any]) -> dict[str, Any]:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child execs or exits
            os.close(read_end)
            _holder_child(
                str(request["name"]), list(request["ops"]), str(request["log"]), write_end
            )
        os.close(write_end)
        chunks = []
        while chunk := os.read(read_end, 4096):
            chunks.append(chunk)
        os.close(read_end)
        answer = b"".join(chunks).decode(errors="replace").strip()
        if answer == "ok":
            return {"pid": pid}
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        return {"error": answer or "holder exited without a word"}

    def spawn(self, request: dict[str, Any]) -> dict[str, Any]:
        log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            child = subprocess.Popen(
                [str(arg) for arg in request["argv"]],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={str(k): str(v) for k, v in dict(request.get("env") or {}).items()},
                cwd="/",
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            return {"error": f"cannot start {request['argv'][0]}: {exc}"}
        finally:
            os.close(log)
        self.children[child.pid] = child
        return {"pid": child.pid}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ping":
            return {"pid": os.getpid()}
        if op == "holder":
            return self.holder(request)
        if op == "spawn":
            return self.spawn(request)
        if op == "exited":
            self.reap()
            pid = int(request["pid"])
            if pid in self.exited:
                return {"exited": True, "status": self.exited[pid]}
            return {"exited": not os.path.exists(f"/proc/{pid}"), "status": None}
        if op == "shutdown":
            self.running = False
            return {"ok": True}
        return {"error": f"unknown op {op!r}"}

    def serve_one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if uid != os.geteuid():
                return
            data = b""
            while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            try:
                request = json.loads(data)
                reply = self.handle(request) if isinstance(request, dict) else {"error": "bad"}
            except Exception as exc:  # a bad request must not end the supervisor
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")

    def run(self) -> None:
        _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")
        path = os.path.join(self.state_dir, SOCKET_NAME)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            server.bind(path)
        finally:
            os.umask(old_umask)
        server.listen(64)
        server.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(server, selectors.EVENT_READ)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        print(f"runc-rollout lab supervisor {os.getpid()} serving {path}", flush=True)
        while self.running:
            if selector.select(timeout=0.2):
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    conn, _ = server.accept()
                    conn.setblocking(True)
                    self.serve_one(conn)
            self.reap()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        server.close()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and self.children:
            self.reap()
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: supervisor.py STATE_DIR", file=sys.stderr)
        return 2
    Supervisor(argv[1]).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
