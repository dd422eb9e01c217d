"""`unstick`: free `runc init` processes hung the incident's way, and nothing else.

Each host runs `hostside/unstick.sh` (POSIX sh, sent on stdin through the checksummed launcher; no
Python needed) which examines every `runc init` process against the whole signature: asleep in
pipe_write, inside one write(2) of a seccomp program's size on a pipe whose read end it also
holds and that no other process holds. sh cannot measure the pipe's capacity (8192 in the
incident) without reading it; the script's header says what it proves instead. Without `drain`
it only reports; with it, it reads that one pipe while the process is still inside that write,
bounded in bytes and time, and reports whether the process exited or moved on. `parse_scan`
turns its output into `HostScan`, bounding and sanitising what the host said.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Literal

from pydantic import ValidationError

from orchestrator.diagnose.fleet import DiagnosticFleet
from orchestrator.errors import FactsError
from orchestrator.host.scripts import hostside_script, render
from orchestrator.host.session import HostSession, send_script
from orchestrator.models import HostTask, Model, SshTarget
from orchestrator.util.textsafe import markdown_text, terminal_safe

SETTLE_SECONDS = 1.0
DEADLINE = 240.0  # seconds the host script may spend draining; later drains are skipped
_OVERHEAD = 30.0  # seconds for the scan and the connection beyond that
STUCK_CAPACITY = 8192  # the incident's pipe: two pages
MAX_PROGRAM = 4096 * 8  # a seccomp program: at most 4096 BPF instructions of 8 bytes
# write(2) and writev(2) by architecture, as /proc/PID/syscall numbers them.
WRITE_SYSCALLS = {"x86_64": (1, 20), "aarch64": (64, 66)}
_VALUE_LIMIT = 512  # characters kept of any value a host reports
_HEADER = "runc-rollout-unstick"


class ExaminedProcess(Model):
    """One `runc init` process as the host script saw it."""

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
    write_bytes: int | None  # the length of the write(2) it is blocked in
    shared_with: list[int]  # other processes holding that pipe
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
    schema_version: Literal[2]
    uid: int
    arch: str
    drain: bool
    processes: list[ExaminedProcess]


@functools.cache
def _script_text() -> str:
    return hostside_script("unstick.sh")


def unstick_script(*, drain: bool, max_bytes: int, max_seconds: float, deadline: float) -> str:
    """The host script with its parameters in its header."""
    calls = " ".join(f"{arch}:{write}:{writev}" for arch, (write, writev) in WRITE_SYSCALLS.items())
    return render(
        _script_text(),
        DRAIN="1" if drain else "0",
        MAX_BYTES=str(max_bytes),
        MAX_CS=str(math.ceil(max_seconds * 100)),
        SETTLE_CS=str(math.ceil(SETTLE_SECONDS * 100)),
        DEADLINE_CS=str(math.ceil(deadline * 100)),
        WRITE_CALLS=calls,
        CAPACITY=str(STUCK_CAPACITY),
        MAX_PROGRAM=str(MAX_PROGRAM),
    )


# ---------------------------------------------------------------------------------------------
# The parser


def parse_scan(host: str, output: str) -> HostScan:
    """`HostScan` from the script's output; `FactsError` if it is not one. Pure."""
    lines = output.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith(_HEADER + " ")), None)
    if first is None:
        raise FactsError(host, "unstick: unexpected output from the host (no report)")
    words = lines[first].split()
    head = dict(word.partition("=")[::2] for word in words[2:])
    records: list[dict[str, str]] = []
    for line in lines[first + 1 :]:
        if line.startswith("@proc "):
            records.append({"pid": line[6:].strip()})
        elif records:
            key, sep, value = line.partition("=")
            if sep:
                records[-1][key] = terminal_safe(value[:_VALUE_LIMIT])
    try:
        limits = (int(head["max_bytes"]), int(head["max_cs"]))
        scan = HostScan.model_validate(
            {
                "schema_version": int(words[1]),
                "uid": int(head["uid"]),
                "arch": terminal_safe(head.get("arch", "")[:_VALUE_LIMIT]),
                "drain": head.get("drain") == "1",
                "processes": [_process(record, limits, head.get("arch", "")) for record in records],
            }
        )
    except (KeyError, ValueError, ValidationError) as error:
        raise FactsError(host, f"unstick: unexpected output from the host: {error}") from None
    if scan.uid != 0:
        raise FactsError(host, f"unstick needs root on the host (ran as uid {scan.uid})")
    return scan


def _number(text: str | None) -> int | None:
    return int(text) if text else None


def _process(record: dict[str, str], limits: tuple[int, int], arch: str) -> ExaminedProcess:
    fail, stop = record.get("fail", ""), record.get("drain_stop")
    return ExaminedProcess.model_validate(
        {
            "pid": int(record["pid"]),
            "start_ticks": int(record["start"]),
            "comm": record.get("comm", ""),
            "cmdline": record.get("cmdline", "").strip(),
            "state": record.get("state", ""),
            "wchan": record.get("wchan", ""),
            "syscall": record.get("syscall", "").strip(),
            "write_fd": _number(record.get("write_fd")),
            "read_fd": _number(record.get("read_fd")),
            "pipe_inode": _number(record.get("pipe_inode")),
            "write_bytes": _number(record.get("write_bytes")),
            "shared_with": [int(pid) for pid in record.get("shared_with", "").split()],
            "matched": not fail,
            "reason": _reason(fail, record, arch) if fail else None,
            "action": record.get("action", "none"),
            "drained_bytes": int(record.get("drained_bytes") or 0),
            "drain_stop": _stop(stop, record, limits) if stop else None,
            "outcome": record.get("outcome") or None,
            "after": record.get("after") or None,
        }
    )


def _reason(fail: str, record: dict[str, str], arch: str) -> str:
    """The first part of the signature a process failed, in words."""
    pid, fd = record.get("pid"), record.get("write_fd")
    reasons = {
        "state": f"not blocked in pipe_write (state {record.get('state')}, "
        f"wchan {record.get('wchan')})",
        "arch": f"cannot tell which fd it writes on {arch}",
        "nosyscall": f"cannot read /proc/{pid}/syscall (ptrace restrictions?)",
        "notwrite": f"not inside write(2) (/proc/{pid}/syscall: {record.get('syscall')})",
        "notpipe": f"fd {fd} it writes is not the write end of a pipe",
        "noread": f"it does not hold the read end of the pipe it writes (fd {fd})",
        "writev": "it writes with writev(2), whose length /proc does not show",
        "length": f"it writes {record.get('write_bytes')} bytes at once: not a seccomp program "
        f"overflowing a {STUCK_CAPACITY}-byte pipe (a multiple of 8, "
        f"{STUCK_CAPACITY + 1}-{MAX_PROGRAM} bytes)",
        "shared": f"its pipe is also held by PID {record.get('shared_with', '').strip()}",
        "changed": "it moved on while it was examined",
    }
    return reasons.get(fail, f"unknown check {fail!r} failed")


def _stop(stop: str, record: dict[str, str], limits: tuple[int, int]) -> str:
    """Why a drain stopped, in words; `limits` are the bytes and centiseconds allowed."""
    stops = {
        "exited": "process exited",
        "unblocked": "writer unblocked",
        "bytes": f"byte limit ({limits[0]}) reached",
        "time": f"time limit ({limits[1] / 100:g}s) reached",
        "changed": f"fd {record.get('read_fd')} was no longer its pipe",
        "budget": "not drained: this run's time budget is spent",
    }
    return stops.get(stop, f"stopped: {stop}")


def scan_host(session: HostSession, *, drain: bool, max_bytes: int, max_seconds: float) -> HostScan:
    """Examine (and with `drain`, free) one host's hung `runc init` processes."""
    script = unstick_script(
        drain=drain, max_bytes=max_bytes, max_seconds=max_seconds, deadline=DEADLINE
    )
    result = send_script(session, script, timeout=DEADLINE + _OVERHEAD)
    if result.exit_status != 0:
        detail = result.stderr.strip().splitlines()[-1:] or ["no error output"]
        raise FactsError(session.host, f"unstick failed (exit {result.exit_status}): {detail[0]}")
    return parse_scan(session.host, result.stdout)


def unstick_fleet(
    fleet: DiagnosticFleet,
    targets: Mapping[str, SshTarget],
    *,
    drain: bool,
    max_bytes: int = 65536,
    max_seconds: float = 10.0,
) -> dict[str, HostScan | Exception]:
    """Every host's scan (or the error that stopped it), in the order of `targets`."""
    task = HostTask(procedure="unstick", drain=drain, max_bytes=max_bytes, max_seconds=max_seconds)
    return fleet.run(targets, dict.fromkeys(targets, task), HostScan)


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


def report_markdown(results: Mapping[str, HostScan | Exception]) -> str:
    """`unstick --format markdown`: the same lines as a list, a host's processes under it, for
    the incident's ticket (host text escaped)."""
    items = [
        ("  - " if line.startswith("  ") else "- ") + markdown_text(line.strip())
        for line in report_lines(results)
    ]
    return "\n".join([f"### runc-rollout unstick: {len(results)} hosts", "", *items]) + "\n"


def _process_line(process: ExaminedProcess) -> str:
    where = f"PID {process.pid} ({process.comm}, {process.state} in {process.wchan or '-'})"
    if process.action == "would drain":
        return (
            f"{where}: would drain fd {process.read_fd} (pipe {process.pipe_inode}; it is "
            f"blocked writing {process.write_bytes} bytes to fd {process.write_fd}; no other "
            "process holds the pipe; capacity not measurable here)"
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
