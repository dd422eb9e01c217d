"""Execution nodes: a wave's job, or each failure domain's part of it, run elsewhere through
ansible-runner's streaming protocol.

`transmit` here writes the job's options and its whole private data dir (playbooks, inventory,
known_hosts, the runc artifact) as one stream into the stdin of a command the user configured
(`ssh exec-zone-a ansible-runner worker`); the `worker` at the other end runs ansible-playbook
there and streams back events, status and its artifacts on stdout; `process` here feeds each
event to the same handler as a local job. Paths in the job are relative to the project dir (the
job's working directory on the node), so nothing in it names a file of the controller.

A worker that goes away before its job ends (the node died, its command was killed) leaves its
hosts unreachable: each one the job had not finished gets a `runner_on_unreachable` event naming
the node, and `resume` finishes them. Ctrl-C ends the node's command; the worker stops its job
at its next event, when it finds nobody reads it.

What travels: the become password (when given) in the options line, as AWX sends it; the worker
keeps it in memory (`suppress_env_files`), so it is in no file on either side. The worker's own
environment comes back in its `command` artifact: only what a local job would keep is kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ansible_runner.interface import init_runner
from ansible_runner.utils.base64io import Base64IO

from orchestrator.errors import BadInput

if TYPE_CHECKING:
    from orchestrator.backends.ansible.runner import JobSpec

POLL = 0.25  # seconds between looks at the node's command and at Ctrl-C
STOP_GRACE = 5.0  # seconds the node's command gets to end after SIGTERM
ARTIFACT_NAME = "runc-rollout-artifact"  # the runc artifact, in the project dir of a node's job
PACKED_NAME = "runc-rollout-artifact.gz"  # its gzip, beside it
KNOWN_HOSTS_NAME = "known_hosts"  # --known-hosts, in the project dir of a node's job
ENDED = frozenset({"successful", "failed", "canceled", "timeout"})  # a worker's last statuses
NODE_PERSIST = "15s"  # ControlPersist of a node job's SSH masters
_ERROR_TAIL = 300  # characters of the node's stderr kept in a host's message
_CHUNK = 1 << 20  # bytes of a node's artifacts spooled at a time
_UUID = re.compile(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}")  # a worker event's uuid


@dataclass(frozen=True)
class ExecutionNode:
    """Where a failure domain's hosts are worked on: a command whose stdin takes the transmit
    stream and whose stdout is the worker's stream."""

    domain: str
    command: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"execution node {self.domain}"


def parse_execution_nodes(values: Iterable[str]) -> dict[str, ExecutionNode]:
    """`--execution-node DOMAIN=COMMAND` values, by domain; one error naming the bad value."""
    nodes: dict[str, ExecutionNode] = {}
    for value in values:
        domain, sep, command = value.partition("=")
        where = f"--execution-node {value!r}"
        if not sep or not domain.strip():
            example = "zone-a='ssh exec-a ansible-runner worker'"
            raise BadInput(f"{where}: expected DOMAIN=COMMAND, e.g. {example}")
        try:
            words = tuple(shlex.split(command))
        except ValueError as error:
            raise BadInput(f"{where}: the command cannot be split into words: {error}") from None
        if not words:
            raise BadInput(f"{where}: no command for domain {domain!r}")
        if shutil.which(words[0]) is None:
            raise BadInput(f"{where}: {words[0]}: no such program")
        if domain in nodes:
            raise BadInput(f"{where}: domain {domain!r} is given twice")
        nodes[domain] = ExecutionNode(domain, words)
    return nodes


def check_domains(nodes: Mapping[str, ExecutionNode], domains: Iterable[str], what: str) -> None:
    """Every node must name a failure domain of `what` (a typo would run its hosts locally)."""
    known = set(domains)
    unknown = sorted(set(nodes) - known)
    if unknown:
        raise BadInput(
            f"--execution-node: {', '.join(map(repr, unknown))}: no such failure domain in {what} "
            f"(its domains: {', '.join(sorted(known)) or 'none'})"
        )


def split_by_node(
    domains: Mapping[str, str], nodes: Mapping[str, ExecutionNode]
) -> list[tuple[ExecutionNode | None, list[str]]]:
    """Hosts (name: failure domain) by where they run: on their domain's node, else on the
    controller (None), in the order of their first host."""
    parts: dict[str | None, list[str]] = {}
    for name, domain in domains.items():
        parts.setdefault(domain if domain in nodes else None, []).append(name)
    return [(nodes[d] if d is not None else None, names) for d, names in parts.items()]


def shipped_known_hosts(
    node: ExecutionNode | None, known_hosts: Path | None
) -> tuple[dict[str, Path], Path | None]:
    """The files a job gets for `--known-hosts` and the path its inventory names: on a node,
    a copy in the project dir (the job's working directory), named relatively."""
    if node is None or known_hosts is None:
        return {}, known_hosts
    return {KNOWN_HOSTS_NAME: known_hosts}, Path(KNOWN_HOSTS_NAME)


def describe_part(node: ExecutionNode | None, hosts: list[str]) -> str:
    where = f"{node.label} ({shlex.join(node.command)})" if node is not None else "the controller"
    return f"{', '.join(hosts)} on {where}"


def run_parts(parts: list[Callable[[threading.Event], None]]) -> None:
    """Run each part in its own thread, all at once; Ctrl-C sets the event every part watches,
    waits for them, and is raised again. A part's exception is raised once all have ended."""
    cancel = threading.Event()
    errors: list[BaseException] = []

    def guarded(part: Callable[[threading.Event], None]) -> None:
        try:
            part(cancel)
        except BaseException as error:  # raised again in the calling thread
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(part,), daemon=True) for part in parts]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(POLL)
    except KeyboardInterrupt:
        cancel.set()
        for thread in threads:
            thread.join()
        raise
    if errors:
        raise errors[0]


def run_on_node(
    spec: JobSpec,
    data_dir: Path,
    on_event: Callable[[dict[str, Any]], bool],
    cancel: threading.Event,
) -> tuple[str, int]:
    """Run `spec` on its execution node from the prepared private data dir `data_dir`; return
    the job's status and rc. Ctrl-C (or `cancel`) ends the node's command, then is raised."""
    from orchestrator.backends.ansible import runner  # runner imports this module

    node = spec.node
    assert node is not None
    project = data_dir / "project"
    for name, source in spec.files.items():
        _place(source, project / name)
    environment = runner._job_environment(Path("../ansible.cfg"), Path("../cp"), Path(".."))
    del environment["PATH"]  # the node's own, which finds its ansible-playbook
    # Nobody closes the job's SSH masters on the node when it ends: let them go soon.
    environment["ANSIBLE_SSH_ARGS"] = f"-o ControlMaster=auto -o ControlPersist={NODE_PERSIST}"
    options: dict[str, Any] = {
        "private_data_dir": str(data_dir),
        "playbook": str(project / spec.playbook),
        "inventory": spec.inventory,
        "limit": ",".join(spec.hosts),
        "extravars": spec.extravars,
        "forks": spec.forks,
        "envvars": environment,
        "settings": {"pexpect_timeout": runner.CANCEL_POLL, "suppress_ansible_output": True},
        "suppress_env_files": True,  # the worker keeps the password in memory only
        "quiet": True,
        "ident": "job",
    }
    if spec.become_password is not None:
        options["cmdline"] = "--ask-become-pass"
        options["passwords"] = {runner.BECOME_PROMPT: spec.become_password}
    statuses: list[dict[str, Any]] = []
    kept = runner.KEPT_ENVIRONMENT | set(environment)
    try:
        process = subprocess.Popen(
            runner._dies_with_us(list(node.command)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C is ours to pass on
        )
    except OSError as error:
        _lost(spec.hosts, f"{node.label} lost: its command did not start: {error}", on_event)
        return "error", -1
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    stderr: list[bytes] = []
    # A cancel callback of our own: without one, ansible-runner called from the main thread
    # replaces the process's SIGINT handler with one that only sets a flag, and Ctrl-C would
    # no longer interrupt the run.
    transmitter = init_runner(
        streamer="transmit", _output=process.stdin, cancel_callback=cancel.is_set, **options
    )
    processor = init_runner(
        streamer="process",
        cancel_callback=cancel.is_set,
        _input=process.stdout,
        private_data_dir=str(data_dir),
        ident="job",
        quiet=True,
        event_handler=partial(_kept_if_named_plainly, on_event),
        status_handler=lambda data, runner_config: statuses.append(data),
    )
    # ansible-runner's own unpacking follows the stream's links (a node could write anywhere
    # here): its artifacts go through `unpack_artifacts` instead.
    processor.artifacts_callback = partial(_unpack, processor, kept)
    threads = [
        threading.Thread(target=_transmit, args=(transmitter, process.stdin), daemon=True),
        threading.Thread(target=_drain, args=(process.stderr, stderr), daemon=True),
    ]
    failures: list[BaseException] = []

    def process_stream() -> None:
        try:
            processor.run()
        except BaseException as error:  # a broken stream: the node is lost
            failures.append(error)

    threads.append(threading.Thread(target=process_stream, daemon=True))
    for thread in threads:
        thread.start()
    try:
        while threads[-1].is_alive() and not cancel.is_set():
            threads[-1].join(POLL)
    except KeyboardInterrupt:
        cancel.set()
    if cancel.is_set():
        _stop(process)
        for thread in threads:
            thread.join()
        raise KeyboardInterrupt
    for thread in threads:
        thread.join()
    code = process.wait()
    status = str(statuses[-1].get("status")) if statuses else "error"
    if status not in ENDED or failures:
        explanation = statuses[-1].get("job_explanation") if statuses else None
        detail = b"".join(stderr).decode(errors="replace").strip()[-_ERROR_TAIL:]
        why = "; ".join(
            str(part)
            for part in (
                failures[0] if failures else explanation or "the stream ended early",
                f"its command exited {code}",
                detail,
            )
            if part
        )
        _lost(spec.hosts, f"{node.label} lost: {why}", on_event)
        return "error", code or -1
    return status, _rc(data_dir)


def _place(source: Path, target: Path) -> None:
    """`source` at `target`: a hard link where it can be (a runc artifact is 10 MB, and every
    part of every wave gets one), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy(source, target)


def _transmit(transmitter: Any, stdin: Any) -> None:
    """The job into the node's stdin; a node that stops reading just ends the stream."""
    try:
        transmitter.run()
    except (BrokenPipeError, ValueError, OSError):
        pass  # the worker is gone: `process` sees its stream end
    finally:
        with contextlib.suppress(OSError):
            stdin.close()


def _drain(stream: Any, into: list[bytes]) -> None:
    for line in stream:
        into.append(line)
        del into[:-20]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the node's command (and what it started here), SIGTERM then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue
    process.wait()


def _lost(hosts: Iterable[str], message: str, on_event: Callable[[dict[str, Any]], bool]) -> None:
    """What a lost worker leaves: each host unreachable, as Ansible says it (the handler keeps
    the first outcome of a host and ignores these for hosts already finished)."""
    for host in hosts:
        on_event(
            {
                "event": "runner_on_unreachable",
                "event_data": {"host": host, "res": {"msg": message, "unreachable": True}},
            }
        )


def _kept_if_named_plainly(on_event: Callable[[dict[str, Any]], bool], event: Any) -> bool:
    """Handle a node's event; keep it in the artifacts (a file named from its counter and uuid)
    only if those are what a worker sends: a number and a uuid, never a path."""
    keep = on_event(event)
    counter, uuid = str(event.get("counter")), str(event.get("uuid"))
    return keep and counter.isdigit() and _UUID.fullmatch(uuid) is not None


def _unpack(processor: Any, kept: frozenset[str] | set[str], data: dict[str, Any]) -> None:
    """The worker's artifacts into the job's artifact dir, its environment scrubbed."""
    artifact_dir = Path(processor.artifact_dir)
    unpack_artifacts(processor._input, data.get("zipfile"), artifact_dir)
    _scrub_command(artifact_dir, kept)


def unpack_artifacts(stream: BinaryIO, length: object, target: Path) -> None:
    """The zip of `length` bytes that follows in `stream` (base64), unpacked into `target`:
    only regular files and folders, each entry checked before anything is written (no link,
    no `..`, no absolute name), files made anew without following links. Raises
    `UnsafeArtifacts` naming the first bad entry."""
    if not isinstance(length, int) or isinstance(length, bool) or length < 0:
        raise UnsafeArtifacts(f"artifacts of length {length!r}")
    with tempfile.TemporaryFile() as spool:
        with Base64IO(stream) as source:  # does not close `stream`
            remaining = length
            while remaining:
                chunk = source.read(min(_CHUNK, remaining))
                if not chunk:
                    raise UnsafeArtifacts("the artifacts ended early")
                spool.write(chunk)
                remaining -= len(chunk)
        spool.seek(0)
        try:
            with zipfile.ZipFile(spool) as archive:
                entries = [(info, _entry_parts(info)) for info in archive.infolist()]
                for info, parts in entries:
                    _unpack_entry(archive, info, parts, target)
        except zipfile.BadZipFile as error:
            raise UnsafeArtifacts(f"the artifacts are not a zip: {error}") from None


class UnsafeArtifacts(Exception):
    """A worker's artifacts that are not plain files and folders inside the job."""


def _entry_parts(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """The path components of an entry, refused unless they name a regular file or a folder
    inside the target."""
    name = info.filename
    kind = stat.S_IFMT(info.external_attr >> 16)
    why = None
    if name.startswith("/"):
        why = "an absolute name"
    elif any(part in ("..", ".") for part in name.split("/")):
        why = "a name with '..' or '.'"
    elif "\\" in name or "\0" in name:
        why = "a name with a backslash or NUL"
    elif kind == stat.S_IFLNK:
        why = "a symbolic link"
    elif kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        why = "not a regular file or a folder"
    parts = tuple(part for part in name.split("/") if part)
    if why is None and not parts:
        why = "an empty name"
    if why is not None:
        raise UnsafeArtifacts(f"artifact entry {name!r} refused: {why}")
    return parts


def _unpack_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, parts: tuple[str, ...], target: Path
) -> None:
    """One checked entry: its folders made (a link or a file in their place is refused), then
    the file written through a descriptor opened with O_NOFOLLOW, mode 0600."""
    is_dir = info.is_dir() or stat.S_IFMT(info.external_attr >> 16) == stat.S_IFDIR
    folders = parts if is_dir else parts[:-1]
    here = target
    for part in folders:
        here = here / part
        with contextlib.suppress(FileExistsError):
            here.mkdir(mode=0o700)
        if not stat.S_ISDIR(here.lstat().st_mode):
            raise UnsafeArtifacts(
                f"artifact entry {info.filename!r} refused: {part!r} is no folder"
            )
    if is_dir:
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        descriptor = os.open(here / parts[-1], flags, 0o600)
    except OSError as error:
        raise UnsafeArtifacts(f"artifact entry {info.filename!r} refused: {error}") from None
    with os.fdopen(descriptor, "wb") as out, archive.open(info) as data:
        shutil.copyfileobj(data, out)


def _scrub_command(artifact_dir: Path, kept: frozenset[str] | set[str]) -> None:
    """The worker's `command` artifact records the node's whole environment: keep only what a
    local job keeps, so no token of the node lands here."""
    path = artifact_dir / "command"
    try:
        command = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    env = command.get("env")
    if isinstance(env, dict):
        command["env"] = {key: value for key, value in env.items() if key in kept}
        path.write_text(json.dumps(command))


def _rc(data_dir: Path) -> int:
    try:
        return int((data_dir / "artifacts" / "job" / "rc").read_text().strip())
    except (OSError, ValueError):
        return -1
