"""A host as data, for the host procedure's unit tests: it carries out each step by its name and
parameters (`HostCommand.params`) the way the step's script does on a real host, and answers
in the script's own output format (`key=value` lines, the facts script's sections). Failures,
a daemon restart, a stuck `runc init`, the probe's verdict and a connection lost after any step
are set per test. The scripts themselves are tested on real hosts by the lab tests.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.host import commands
from orchestrator.host.commands import HostCommand, StepResult
from orchestrator.host.session import ConnectionLost
from tests.host.test_facts_parse import output, stat

RUNC = "/usr/local/sbin/runc"
CRI_RUNC = "/usr/local/bin/runc"  # containerd CRI's BinaryName, on hosts that have one
INCIDENT_FILE = "/etc/sysctl.d/90-runc-incident.conf"
INCIDENT_TEXT = "# raised during the incident\nfs.pipe-user-pages-soft = 163840\n"


def sha(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def runc_content(version: str) -> str:
    return f"runc binary {version}\n"


OLD = runc_content("1.0.0-rc93")
NEW = runc_content("1.1.5")


def version_output(content: str) -> str:
    version = content.split()[-1]
    return f"runc version {version}\ncommit: test\nspec: 1.0.2-dev\n"


@dataclass
class FakeHost:
    files: dict[str, str] = field(default_factory=lambda: {RUNC: OLD, INCIDENT_FILE: INCIDENT_TEXT})
    sysctl: int = 163840
    daemons: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {"dockerd": (977, 2300), "containerd": (812, 1500)}
    )
    stuck: int = 0
    lock_owner: str | None = None
    record: str | None = None
    backups: dict[str, str] = field(default_factory=dict)  # sha256 -> content
    file_backups: dict[str, str] = field(default_factory=dict)
    probe: str = "passed"  # the probe's verdict on the new runc
    fail: dict[str, int] = field(default_factory=dict)  # step name -> exit status, once
    lose_connection_after: str | None = None  # the connection drops once this step ran
    down: bool = False  # the connection is lost: every call fails until a test sets it back
    # "restart-dockerd", "stick", "diverge" (the daemons' namespace keeps seeing the old runc)
    on_swap: list[str] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)  # the step names of each round trip
    puts: int = 0
    served: dict[str, str] = field(default_factory=dict)  # URL -> what a fetch of it gets
    gunzip: bool = True  # the host takes a compressed push
    host_check: tuple[int, str] = (0, "ok\n")  # the operator's host check: status, output
    host_checks: list[dict[str, object]] = field(default_factory=list)  # each one's params
    probe_of: dict[str, str] = field(default_factory=dict)  # runc path -> the probe's verdict
    # The daemons run in a mount namespace of their own (a snap's, a ProtectSystem= unit's):
    # its id, and the runc files it sees otherwise than this session (path -> content).
    mount_ns: str | None = None
    ns_files: dict[str, str] = field(default_factory=dict)
    # dpkg: the content of RUNC as the `runc` package ships it (None: RUNC is no package's),
    # and where a local diversion of RUNC puts the package's copy (None: not diverted).
    package_file: str | None = None
    diverted_to: str | None = None

    # -- StepRunner ---------------------------------------------------------------------------

    host = "fake"

    def run(self, *steps: HostCommand) -> list[StepResult]:
        if self.down:
            raise ConnectionLost(self.host, "", "connection lost")
        self.batches.append([step.name for step in steps])
        results = []
        for step in steps:
            status, stdout = self._step(step)
            results.append(StepResult(step.name, status, stdout, ""))
            if step.name == self.lose_connection_after:
                self.lose_connection_after = None
                self.down = True
                raise ConnectionLost(self.host, "", f"lost after {step.name}")
            if status != 0:
                break
        return results

    def send(self, step: HostCommand, payload: bytes) -> StepResult:
        if self.down:
            raise ConnectionLost(self.host, "", "connection lost")
        self.batches.append([step.name])
        assert step.name == "push", step.name  # the one step that reads stdin
        if step.name in self.fail:
            return StepResult(step.name, self.fail.pop(step.name), "error=injected\n", "")
        if not self.gunzip:
            return StepResult(step.name, commands.EXIT_NO_GUNZIP, "why=no gunzip\n", "")
        staged = str(step.params["staged"])
        self.files[staged] = gzip.decompress(payload[: int(str(step.params["size"]))]).decode()
        return StepResult(step.name, 0, "pushed=gzip\n", "")

    def put(self, local: Path, remote: str, *, mode: int) -> None:
        if self.down:
            raise ConnectionLost(self.host, "", "connection lost")
        self.puts += 1
        if self.fail.pop("put", 0):
            raise OSError("Failure")
        self.files[remote] = local.read_text()

    # -- the steps ----------------------------------------------------------------------------

    def _step(self, step: HostCommand) -> tuple[int, str]:
        if step.name in self.fail:
            return self.fail.pop(step.name), "error=injected\n"
        # A step for the N-th other runc of a record is the step's own name and "-N".
        base, _, index = step.name.rpartition("-")
        first, _, rest = (base if index.isdigit() else step.name).partition("-")
        handler: Callable[..., tuple[int, str]] = getattr(
            self, f"_{first}_{rest.replace('-', '_')}"
        )
        return handler(**step.params)

    def _host_check(self, **params: object) -> tuple[int, str]:
        self.host_checks.append(params)
        return self.host_check

    def _facts_(self) -> tuple[int, str]:
        sections: list[tuple[str, str]] = [("host", "uid=0\nclk_tck=100\nbtime=1700000000\n")]
        for name, (pid, ticks) in self.daemons.items():
            body = (
                f"comm={name}\nstat={stat(pid, name, 'S', 1, ticks)}\ncmdline=/usr/bin/{name}\n"
                f"exe=/usr/bin/{name}\npath=/usr/local/sbin:/usr/sbin:/usr/bin\nversion={name} 1\n"
            )
            if self.mount_ns is not None:
                body += f"mntns={self.mount_ns}\nroot=/proc/{pid}/root\n"
            sections.append((f"proc {pid}", body))
        for index in range(self.stuck):
            pid = 5000 + index
            body = (
                f"comm=runc:[2:INIT]\nstat={stat(pid, 'runc:[2:INIT]', 'S', 4000, 50000)}\n"
                "cmdline=runc init\nwchan=pipe_write\n"
            )
            sections.append((f"proc {pid}", body))
        if CRI_RUNC in self.files:
            config = (
                '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
                f'  BinaryName = "{CRI_RUNC}"\n'
            )
            sections.append(("file containerd /etc/containerd/config.toml", config))
        sections.append(("runtime-path", "source=dockerd\npath=/usr/local/sbin:/usr/sbin\n"))
        for path in (RUNC, CRI_RUNC):
            if path not in self.files:
                continue
            content = self.ns_files.get(path, self.files[path])
            body = (
                f"real={path}\nexecutable=1\ntrusted=1\nversion_exit=0\nsize={len(content)}\n"
                f"sha256={sha(content)}\ndf=/dev/sda1 100000000 500 90000000 1% /\n"
            )
            if self.mount_ns is not None:
                same = 0 if path in self.ns_files else 1
                body += (
                    f"mntns={self.mount_ns}\nseen_at=/proc/812/root{path}\nfstype=ext2/ext3\n"
                    f"writable_there=0\nsame_here={same}\n"
                )
            if path == RUNC and self.package_file is not None:
                intact = int(content == self.package_file)
                body += "package=runc\npackage_version=1.0.0~rc93+ds1-1\n"
                body += f"package_intact={intact}\npackage_manager=dpkg\n"
                if self.diverted_to:
                    body += f"diverted_by=LOCAL\ndiverted_to={self.diverted_to}\n"
            sections += [(f"binary {path}", body), (f"version {path}", version_output(content))]
        sections.append(("sysctl-runtime", f"{self.sysctl}\n"))
        confs = sorted(path for path in self.files if path.startswith("/etc/sysctl.d/"))
        sections.append(("sysctl-files", "".join(f"{path}\n" for path in confs)))
        lines = [
            f"{path}:{number}:{line}\n"
            for path in confs
            for number, line in enumerate(self.files[path].splitlines(), 1)
            if line.startswith("fs.pipe-user-pages-soft")
        ]
        sections.append(("sysctl-lines", "".join(lines)))
        if self.record is not None:
            sections.append(("record", self.record))
        return 0, output(*sections)

    def _lock_(self, run_id: str) -> tuple[int, str]:
        if self.lock_owner is None:
            self.lock_owner = run_id
            return 0, "lock=taken\n"
        if self.lock_owner == run_id:
            return 0, "lock=resumed\n"
        return commands.EXIT_LOCKED, f"owner={self.lock_owner}\n"

    def _unlock_(self, run_id: str) -> tuple[int, str]:
        if self.lock_owner == run_id:
            self.lock_owner = None
            return 0, "lock=released\n"
        return 0, "lock=not-ours\n"

    def _check_staged(self, staged: str, sha256: str) -> tuple[int, str]:
        actual = sha(self.files[staged]) if staged in self.files else "missing"
        if actual != sha256:
            self.files.pop(staged, None)
            return commands.EXIT_MISMATCH, f"actual={actual}\n"
        return 0, version_output(self.files[staged])

    def _obtain_(self, staged: str, sha256: str, size: int, url: str | None) -> tuple[int, str]:
        if staged in self.files and sha(self.files[staged]) == sha256:
            return 0, "source=staged\n"
        self.files.pop(staged, None)
        if sha256 in self.backups:
            self.files[staged] = self.backups[sha256]
            return 0, "source=backup\n"
        if url is None or url not in self.served:
            return commands.EXIT_NEEDS_PUSH, "why=no copy on the host\n"
        served = len(self.served[url].encode())
        if served != size:  # cut at size + 1 on its way
            cut = served if served < size else f"more than {size}"
            return commands.EXIT_MISMATCH, f"bytes={cut}\n"
        if sha(self.served[url]) != sha256:
            return commands.EXIT_MISMATCH, f"actual={sha(self.served[url])}\n"
        self.files[staged] = self.served[url]
        return 0, "source=url\n"

    def _probe_write(self, staged: str) -> tuple[int, str]:
        return 1, "No space left on device\n"

    def _discard_staged(self, staged: str) -> tuple[int, str]:
        self.files.pop(staged, None)
        return 0, ""

    def _backup_(self, target: str, sha256: str) -> tuple[int, str]:
        if sha(self.files[target]) != sha256:
            return commands.EXIT_MISMATCH, f"actual={sha(self.files[target])}\n"
        self.backups[sha256] = self.files[target]
        return 0, f"backup={commands.BACKUP_DIR}/{sha256}\n"

    def _record_(self, json: str) -> tuple[int, str]:
        self.record = json
        return 0, "record=written\n"

    _keep_new = _backup_  # the checked new runc to the backup store
    _write_record = _record_
    _record_backed_up = _record_
    _record_swapped = _record_
    _record_verified = _record_

    def _swap_(self, staged: str, target: str, sha256: str) -> tuple[int, str]:
        old = self.files.get(target)
        self.files[target] = self.files.pop(staged)
        for change in self.on_swap:
            if change == "diverge" and old is not None:
                self.ns_files[target] = old
            if change == "restart-dockerd":
                self.daemons["dockerd"] = (1234, 99999)
            elif change == "stick":
                self.stuck += 1
        return 0, f"sha256={sha(self.files[target])}\n"

    def _divert_(self, **params: str) -> tuple[int, str]:
        """hostside/package.sh ACTION=divert: copy, then record the diversion."""
        target, divert = params["TARGET"], params["DIVERT"]
        if self.diverted_to is not None:
            if self.diverted_to == divert and divert in self.files:
                return 0, "diversion=present\n"
            return 1, f"why={target} is diverted already\n"
        self.files[divert] = self.files[target]
        self.diverted_to = divert
        return 0, f"diversion=added\ndiverted_sha256={sha(self.files[divert])}\n"

    def _verify_package(self, **params: str) -> tuple[int, str]:
        clean = self.files.get(params["TARGET"]) == self.package_file
        return 0, "verify=clean\n" if clean else "verify=changed ??5??????\n"

    def _restore_binary(
        self, target: str = "", sha256: str = "", **package: str
    ) -> tuple[int, str]:
        if package:  # hostside/package.sh ACTION=restore
            target, divert = package["TARGET"], package["DIVERT"]
            if self.files.get(divert) == self.package_file:
                self.files[target], restored = self.files[divert], "package"
            elif package["BEFORE"] in self.backups:
                self.files[target], restored = self.backups[package["BEFORE"]], "before"
            else:
                return 1, "why=neither\n"
            if self.diverted_to is not None or restored == "package":
                self.files.pop(divert, None)
            self.diverted_to = None
            verify = "clean" if self.files[target] == self.package_file else "changed"
            return 0, f"restored={restored}\nsha256={sha(self.files[target])}\nverify={verify}\n"
        if sha256 not in self.backups:
            return 1, f"error=no backup {sha256}\n"
        self.files[target] = self.backups[sha256]
        return 0, f"sha256={sha(self.files[target])}\n"

    def _runc_version(self, target: str) -> tuple[int, str]:
        return 0, version_output(self.files[target])

    def _probe_(self, **params: object) -> tuple[int, str]:
        verdict = self.probe_of.get(str(params.get("target")), self.probe)
        status = 0 if verdict == "passed" else 1
        return status, f"probe={verdict}\nseconds=0.3\nwchan=pipe_write\n"

    def _verify_docker(self, **params: object) -> tuple[int, str]:
        return 0, "verify=ok\n"

    def _verify_runc(self, **params: object) -> tuple[int, str]:
        return 0, "verify=ok\n"

    def _verify_exec(self, **params: object) -> tuple[int, str]:
        return 0, "exec=ok container=keepalive\n"

    def _set_sysctl(self, value: int, files: list[str]) -> tuple[int, str]:
        self.sysctl = value
        lines = []
        for path in files:
            before = sha(self.files[path])
            self.file_backups.setdefault(before, self.files[path])
            self.files[path] = "".join(
                f"fs.pipe-user-pages-soft = {value}\n"
                if line.startswith("fs.pipe")
                else line + "\n"
                for line in self.files[path].splitlines()
            )
            lines.append(f"file={path} before={before} after={sha(self.files[path])}\n")
        return 0, "".join(lines) + f"runtime={value}\n"

    def _backup_files(self, files: list[str]) -> tuple[int, str]:
        lines = []
        for path in files:
            before = sha(self.files[path])
            self.file_backups[before] = self.files[path]
            lines.append(f"file={path} before={before}\n")
        return 0, "".join(lines)

    def _restore_files(self, files: list[tuple[str, str, str | None]]) -> tuple[int, str]:
        lines = []
        for path, before, after in files:
            now = sha(self.files[path])
            if now == before:
                lines.append(f"file={path} sha256={now}\n")
            elif after and now != after:
                self.files[path + commands.KEPT_SUFFIX] = self.file_backups[before]
                lines.append(f"file={path} sha256={now} kept=1\n")
            else:
                self.files[path] = self.file_backups[before]
                lines.append(f"file={path} sha256={before}\n")
        return 0, "".join(lines)

    def _set_runtime_sysctl(self, value: int) -> tuple[int, str]:
        self.sysctl = value
        return 0, f"runtime={value}\n"

    # -- what a test looks at -----------------------------------------------------------------

    def record_data(self) -> dict[str, object]:
        assert self.record is not None
        data: dict[str, object] = json.loads(self.record)
        return data
