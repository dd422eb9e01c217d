"""A host for the host procedure's unit tests: its files live under a temporary root, and every
step that changes a host runs its real script there (`sh`, the host's paths moved under the
root), so the tests exercise the same shell a host runs. What this keeps of its own is what
fault injection needs: a step's failure or a connection lost after it, the daemons (and a
restart of one), stuck `runc init` processes, the probe's and the verifications' verdicts, what
a URL serves, a host without gunzip, the operator's host check; and the facts, which it writes
in the facts script's format from its files. The scripts' own behaviour is tested in
tests/host/test_hostside.py and on real hosts by the lab tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path

import pytest

from orchestrator.host import commands, constants
from orchestrator.host.commands import HostCommand, StepResult
from orchestrator.host.session import ConnectionLost
from tests.host.test_facts_parse import output, stat

RUNC = "/usr/local/sbin/runc"
CRI_RUNC = "/usr/local/bin/runc"  # containerd CRI's BinaryName, on hosts that have one
INCIDENT_FILE = "/etc/sysctl.d/90-runc-incident.conf"
INCIDENT_TEXT = "# raised during the incident\nfs.pipe-user-pages-soft = 163840\n"
# Where the host's paths are, under the root (the steps' scripts name nothing else).
MOVED = ("/usr/local/", "/etc/", constants.STATE_DIR, constants.SYSCTL_PROC)


def sha(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def runc_content(version: str) -> str:
    """A runc as a host runs it here: a script answering `--version` as runc does."""
    return (
        f"#!/bin/sh\n# runc binary {version}\n"
        f"printf 'runc version %s\\ncommit: test\\nspec: 1.0.2-dev\\n' '{version}'\n"
    )


OLD = runc_content("1.0.0-rc93")
NEW = runc_content("1.1.5")


def version_output(content: str) -> str:
    found = re.search(r"^# runc binary (\S+)$", content, re.M)
    version = found.group(1) if found else "?"
    return f"runc version {version}\ncommit: test\nspec: 1.0.2-dev\n"


class RootFiles(MutableMapping[str, str]):
    """The host's files (under /usr/local and /etc) by their path on the host."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def __getitem__(self, path: str) -> str:
        try:
            return self._at(path).read_text()
        except FileNotFoundError:
            raise KeyError(path) from None

    def __setitem__(self, path: str, content: str) -> None:
        at = self._at(path)
        at.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        at.write_text(content)
        at.chmod(0o755 if "/sbin/" in path or "/bin/" in path else 0o644)

    def __delitem__(self, path: str) -> None:
        try:
            self._at(path).unlink()
        except FileNotFoundError:
            raise KeyError(path) from None

    def __iter__(self) -> Iterator[str]:
        for top in ("usr", "etc"):
            for found in sorted((self.root / top).rglob("*")):
                if found.is_file():
                    yield "/" + str(found.relative_to(self.root))

    def __len__(self) -> int:
        return sum(1 for _ in self)


class FakeHost:
    host = "fake"

    def __init__(
        self,
        *,
        files: dict[str, str] | None = None,
        sysctl: int = 163840,
        stuck: int = 0,
        lock_owner: str | None = None,
        backups: dict[str, str] | None = None,  # sha256 -> content
        probe: str = "passed",  # the probe's verdict on the new runc
        fail: dict[str, int] | None = None,  # step name -> exit status, once
        lose_connection_after: str | None = None,  # the connection drops once this step ran
        # "restart-dockerd", "stick", "diverge" (the daemons' namespace keeps seeing the old runc)
        on_swap: list[str] | None = None,
        served: dict[str, str] | None = None,  # URL -> what a fetch of it gets
        gunzip: bool = True,  # the host takes a compressed push
        host_check: tuple[int, str] = (0, "ok\n"),  # the operator's host check: status, output
        # The daemons run in a mount namespace of their own (a snap's, a ProtectSystem= unit's).
        mount_ns: str | None = None,
        # dpkg: the content of RUNC as the `runc` package ships it (None: RUNC is no package's),
        # and where a local diversion of RUNC puts the package's copy (None: not diverted).
        package_file: str | None = None,
        diverted_to: str | None = None,
    ) -> None:
        if os.geteuid() != 0:
            pytest.skip("the steps change sysctl files only root owns: run as root")
        self.root = Path(tempfile.mkdtemp(prefix="rr-fakehost-", dir=Path.home()))
        self.root.chmod(0o755)
        weakref.finalize(self, shutil.rmtree, str(self.root), True)
        self.files = RootFiles(self.root)
        for path, content in (files or {RUNC: OLD, INCIDENT_FILE: INCIDENT_TEXT}).items():
            self.files[path] = content
        self._state.mkdir(mode=0o700, parents=True)
        for sub in ("backup", "files"):
            (self._state / sub).mkdir(mode=0o700)
        for digest, content in (backups or {}).items():
            (self._state / "backup" / digest).write_text(content)
        self.sysctl = sysctl
        self.lock_owner = lock_owner
        self.daemons = {"dockerd": (977, 2300), "containerd": (812, 1500)}
        self.stuck = stuck
        self.probe = probe
        self.fail = fail or {}
        self.lose_connection_after = lose_connection_after
        self.down = False  # the connection is lost: every call fails until a test sets it back
        self.on_swap = on_swap or []
        self.served = served or {}
        self.gunzip = gunzip
        self.host_check = host_check
        self.host_checks: list[dict[str, object]] = []  # each host check's params
        self.probe_of: dict[str, str] = {}  # runc path -> the probe's verdict
        self.mount_ns = mount_ns
        # The runc files the daemons' namespace sees otherwise than this session (path -> content).
        self.ns_files: dict[str, str] = {}
        self.package_file = package_file
        self.diverted_to = diverted_to
        self.batches: list[list[str]] = []  # the step names of each round trip
        self.puts = 0

    # -- the host's state, as its files say ---------------------------------------------------

    @property
    def _state(self) -> Path:
        return self.root / constants.STATE_DIR.lstrip("/")

    @property
    def sysctl(self) -> int:
        return int((self.root / "proc-pipe-user-pages-soft").read_text())

    @sysctl.setter
    def sysctl(self, value: int) -> None:
        (self.root / "proc-pipe-user-pages-soft").write_text(f"{value}\n")

    @property
    def lock_owner(self) -> str | None:
        owner = self._state / "lock" / "owner"
        return owner.read_text().strip() if owner.exists() else None

    @lock_owner.setter
    def lock_owner(self, run_id: str | None) -> None:
        shutil.rmtree(self._state / "lock", ignore_errors=True)
        if run_id is not None:
            (self._state / "lock").mkdir()
            (self._state / "lock" / "owner").write_text(f"{run_id}\n")

    @property
    def record(self) -> str | None:
        path = self._state / "record.json"
        # (the record's paths went through the script moved under the root, as every value)
        return path.read_text().replace(f"{self.root}/", "/") if path.exists() else None

    @record.setter
    def record(self, text: str | None) -> None:
        path = self._state / "record.json"
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(text)

    @property
    def backups(self) -> dict[str, str]:
        return {path.name: path.read_text() for path in (self._state / "backup").iterdir()}

    # -- StepRunner ---------------------------------------------------------------------------

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
        status, stdout = self._script(step, payload)
        return StepResult(step.name, status, stdout, "")

    def put(self, local: Path, remote: str, *, mode: int) -> None:
        if self.down:
            raise ConnectionLost(self.host, "", "connection lost")
        self.puts += 1
        if self.fail.pop("put", 0):
            raise OSError("Failure")
        self.files[remote] = local.read_text()
        self.files._at(remote).chmod(mode)

    # -- the steps ----------------------------------------------------------------------------

    def _script(self, step: HostCommand, stdin: bytes = b"") -> tuple[int, str]:
        """The step's own script, run here with the host's paths moved under the root."""
        script = step.script
        for path in MOVED:
            here = "proc-pipe-user-pages-soft" if path == constants.SYSCTL_PROC else path[1:]
            script = script.replace(path, f"{self.root}/{here}")
        done = subprocess.run(["sh", "-c", script], input=stdin, capture_output=True, timeout=60)
        said = (done.stdout + done.stderr).decode().replace(f"{self.root}/", "/")
        return done.returncode, said

    def _step(self, step: HostCommand) -> tuple[int, str]:
        if step.name in self.fail:
            return self.fail.pop(step.name), "error=injected\n"
        # A step for the N-th other runc of a record is the step's own name and "-N".
        base, _, index = step.name.rpartition("-")
        first, _, rest = (base if index.isdigit() else step.name).partition("-")
        handler: Callable[..., tuple[int, str]] | None = getattr(
            self, f"_{first}_{rest.replace('-', '_')}", None
        )
        if first == "restore" and "DIVERT" in step.params:
            handler = self._restore_package
        if handler is not None:
            return handler(**step.params)
        before = {path: self.files.get(path) for path in (RUNC, CRI_RUNC) if first == "swap"}
        status, said = self._script(step)
        if first == "swap" and status == 0:
            for change in self.on_swap:
                if change == "diverge":
                    for path, old in before.items():
                        if old is not None and self.files.get(path) != old:
                            self.ns_files[path] = old
                elif change == "restart-dockerd":
                    self.daemons["dockerd"] = (1234, 99999)
                elif change == "stick":
                    self.stuck += 1
        return status, said

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

    def _obtain_(self, staged: str, sha256: str, size: int, url: str | None) -> tuple[int, str]:
        """A fetch from a URL (what it serves is set per test); without one, the script."""
        if url is None:
            return self._script(commands.obtain_staged(staged, sha256, size, None, 10))
        if staged in self.files and sha(self.files[staged]) == sha256:
            return 0, "source=staged\n"
        self.files.pop(staged, None)
        if sha256 in self.backups:
            self.files[staged] = self.backups[sha256]
            return 0, "source=backup\n"
        if url not in self.served:
            return commands.EXIT_NEEDS_PUSH, "why=fetch failed (exit 22)\n"
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

    def _divert_(self, **params: str) -> tuple[int, str]:
        """hostside/steps/package.sh ACTION=divert: copy, then record the diversion."""
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

    def _restore_package(self, **package: str) -> tuple[int, str]:
        """hostside/steps/package.sh ACTION=restore: the package's file back, the diversion gone."""
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

    # -- what a test looks at -----------------------------------------------------------------

    def record_data(self) -> dict[str, object]:
        assert self.record is not None
        data: dict[str, object] = json.loads(self.record)
        return data
