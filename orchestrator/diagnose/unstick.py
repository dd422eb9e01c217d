"""`unstick`: free `runc init` processes hung the incident's way, and nothing else.

Each host runs `unstick_host.py` (sent on stdin to the host's python3, so nothing is
installed) which examines every `runc init` process against the whole signature: blocked in
pipe_write, inside write(2) on a pipe whose read end it also holds, that pipe 8192 bytes big and
holding data. Without `drain` it only reports; with it, it reads that one pipe while the process
is blocked writing it, bounded in bytes and time, and reports whether the process exited or moved
on. Hosts without python3 fail with a message (see the README for doing it by hand).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from importlib import resources
from typing import Literal

from pydantic import ValidationError

from orchestrator.backends.group import run_on_hosts
from orchestrator.errors import FactsError
from orchestrator.host.session import Executor, HostSession
from orchestrator.models import Model, SshTarget

HELPER = "unstick_host.py"
SETTLE_SECONDS = 1.0
DEADLINE = 240.0  # seconds the host-side program may spend draining; later drains are skipped
_OVERHEAD = 30.0  # seconds for the scan and the connection beyond that
_NO_PYTHON = 127


class ExaminedProcess(Model):
    """One `runc init` process as the host-side program saw it (its JSON record)."""

    pid: int
    start_ticks: int
    comm: str
    cmdline: str
    state: str
    wchan: str
    syscall: str
    write_fd: int | None
    read_fd: int | None
    pipe_inode: int | None
    capacity: int | None
    queued: int | None
    matched: bool
    reason: str | None  # the first part of the signature it failed
    action: Literal["none", "would drain", "drained", "skipped"]
    drained_bytes: int
    drain_stop: str | None
    outcome: Literal["exited", "moved on", "still blocked"] | None
    after: str | None

    @property
    def freed(self) -> bool:
        return self.outcome in ("exited", "moved on")


class HostScan(Model):
    schema_version: Literal[1]
    uid: int
    arch: str
    drain: bool
    processes: list[ExaminedProcess]


def helper_source() -> bytes:
    return resources.files("orchestrator.diagnose").joinpath(HELPER).read_bytes()


def helper_command(*, drain: bool, max_bytes: int, max_seconds: float, deadline: float) -> str:
    """The shell command that runs the helper (read from stdin) with the host's python3."""
    args = [
        "--max-bytes",
        str(max_bytes),
        "--max-seconds",
        f"{max_seconds:g}",
        "--settle",
        f"{SETTLE_SECONDS:g}",
        "--deadline",
        f"{deadline:g}",
    ]
    if drain:
        args.insert(0, "--drain")
    return (
        "command -v python3 >/dev/null 2>&1 || "
        f"{{ echo 'unstick needs python3 on the host' >&2; exit {_NO_PYTHON}; }}\n"
        f"exec python3 -I - {shlex.join(args)}"
    )


def parse_scan(host: str, output: str) -> HostScan:
    """The helper's JSON report; `FactsError` if it is not one."""
    text = output.strip().splitlines()[-1:] or [""]
    try:
        scan = HostScan.model_validate_json(text[0])
    except ValidationError as error:
        raise FactsError(host, f"unstick: unexpected output from the host: {error}") from None
    if scan.uid != 0:
        raise FactsError(host, f"unstick needs root on the host (ran as uid {scan.uid})")
    return scan


def scan_host(session: HostSession, *, drain: bool, max_bytes: int, max_seconds: float) -> HostScan:
    """Examine (and with `drain`, free) one host's hung `runc init` processes."""
    command = helper_command(
        drain=drain, max_bytes=max_bytes, max_seconds=max_seconds, deadline=DEADLINE
    )
    result = session.run(command, timeout=DEADLINE + _OVERHEAD, stdin=helper_source())
    if result.exit_status != 0:
        detail = result.stderr.strip().splitlines()[-1:] or ["no error output"]
        raise FactsError(session.host, f"unstick failed (exit {result.exit_status}): {detail[0]}")
    return parse_scan(session.host, result.stdout)


def unstick_fleet(
    executor: Executor,
    targets: Mapping[str, SshTarget],
    *,
    drain: bool,
    concurrency: int,
    max_bytes: int = 65536,
    max_seconds: float = 10.0,
) -> dict[str, HostScan | Exception]:
    """Every host's scan (or the error that stopped it), in the order of `targets`."""

    def one(name: str, target: SshTarget) -> HostScan:
        session = executor.session(target, name=name)
        return scan_host(session, drain=drain, max_bytes=max_bytes, max_seconds=max_seconds)

    return run_on_hosts(targets, one, concurrency=concurrency)


def failed_hosts(results: Mapping[str, HostScan | Exception]) -> list[str]:
    """Hosts not examined, or where a matching process was drained but did not go on, or was
    not drained for lack of time."""
    return [
        name
        for name, result in results.items()
        if isinstance(result, Exception)
        or any(
            p.action == "skipped" or (p.action == "drained" and not p.freed)
            for p in result.processes
        )
    ]


def report_lines(results: Mapping[str, HostScan | Exception]) -> list[str]:
    """What happened, one line per host and per `runc init` process."""
    lines: list[str] = []
    for name, result in results.items():
        if isinstance(result, Exception):
            lines.append(f"{name}: FAILED: {result}")
            continue
        matched = [p for p in result.processes if p.matched]
        lines.append(
            f"{name}: {len(result.processes)} runc init processes, {len(matched)} hung the "
            "incident's way" + ("" if result.drain else " (dry run: nothing changed)")
        )
        lines += [f"  {_process_line(process)}" for process in result.processes]
    return lines


def _process_line(process: ExaminedProcess) -> str:
    where = f"PID {process.pid} ({process.comm}, {process.state} in {process.wchan or '-'})"
    if process.action == "would drain":
        return (
            f"{where}: would drain fd {process.read_fd} (pipe {process.pipe_inode}, "
            f"{process.queued} of {process.capacity} bytes queued; it writes fd "
            f"{process.write_fd})"
        )
    if process.action == "drained":
        return (
            f"{where}: drained {process.drained_bytes} bytes from fd {process.read_fd} "
            f"(pipe {process.pipe_inode}; stopped: {process.drain_stop}); "
            f"then {process.outcome}"
            + (f": {process.after}" if process.outcome != "exited" else "")
        )
    if process.action == "skipped":
        return f"{where}: matches, {process.drain_stop}"
    return f"{where}: left alone: {process.reason}"


class UnstickReport(Model):
    """`unstick --json`: every host's scan, and why the others have none."""

    hosts: dict[str, HostScan]
    errors: dict[str, str]


def report_json(results: Mapping[str, HostScan | Exception]) -> str:
    report = UnstickReport(
        hosts={name: r for name, r in results.items() if isinstance(r, HostScan)},
        errors={name: str(r) for name, r in results.items() if isinstance(r, Exception)},
    )
    return report.model_dump_json(indent=2) + "\n"
