"""A run's local journal: the reviewed plan, an append-only event log, and a state file.

`runs/<run-id>/plan.json` is the plan as applied, `events.jsonl` gets one fsync'd line per event,
and `state.json` is a snapshot of the state folded from those events (its `last_seq` says up to
which), replaced atomically at every run event (started, paused, halted, finished...) and in
between once `SNAPSHOT_SECONDS` have passed and the log has grown by `SNAPSHOT_GROWTH` of the
snapshot's size: rewriting all hosts after every event made a run quadratic in its hosts; this
way its rewrites cost at most 4 times the log's bytes (and one per run event), however many
hosts and however long the run. The events are the truth: opening a run folds them, so a
snapshot that is missing or behind (a crash between two) loses nothing, and a last line cut in
half by a crash is ignored (and reported) rather than fatal.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from orchestrator.errors import BadInput, JournalWriteFailed
from orchestrator.models import HOSTS_PER_CHUNK, Event, HostState, Plan, RunApproval, RunState
from orchestrator.util.fsutil import MiB, open_input, read_input, too_large, write_atomic

PLAN_FILE = "plan.json"
EVENTS_FILE = "events.jsonl"
STATE_FILE = "state.json"
SIGNATURES_FILE = "plan.json.sig"  # the reviewers' signatures the plan was applied with
APPROVAL_FILE = "approval.json"
PLAN_LIMIT = 1024 * MiB  # a plan of 100k hosts is ~50 MB
EVENTS_LIMIT = 1024 * MiB  # ~10 events of ~150 bytes per host: 150 MB at 100k hosts
SNAPSHOT_SECONDS = 5.0  # between two snapshots while hosts run, at least...
SNAPSHOT_GROWTH = 0.25  # ...and at least this share of the last snapshot's size in new events
# Digits of the plan hash a run id names: 96 bits, out of reach of a forger's search (8 digits,
# 32 bits, were not). Not all 64: hosts name containers after the run id, and containerd refuses
# ids over 76 characters ("runc-rollout-verify-" + a 48-character run id + "-" + a pid).
RUN_ID_HASH_DIGITS = 24


def new_run_id(plan: Plan, now: float) -> str:
    """Time, plan and a random part: the host lock is taken by run id, so two applies of one
    plan started in the same second (from two run directories or machines) must differ. The
    id the operator types is what binds the run folder to its plan (`RUN_ID_HASH_DIGITS`)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{plan.plan_hash[:RUN_ID_HASH_DIGITS]}-{secrets.token_hex(3)}"


def _check_run_folder(run_dir: Path, *, private: bool) -> None:
    """A run folder is never a symbolic link; one to be changed (or to change hosts from) is
    the operator's own and nobody else's to read or write."""
    try:
        info = run_dir.lstat()
    except OSError:
        raise BadInput(f"{run_dir}: no such run directory") from None
    if stat.S_ISLNK(info.st_mode):
        raise BadInput(f"{run_dir}: a symbolic link; run folders are never followed")
    if not stat.S_ISDIR(info.st_mode):
        raise BadInput(f"{run_dir}: not a run directory")
    if not private:
        return
    if info.st_uid != os.geteuid():
        raise BadInput(f"{run_dir}: owned by uid {info.st_uid}, not by you (uid {os.geteuid()})")
    if stat.S_IMODE(info.st_mode) != 0o700:
        mode = stat.S_IMODE(info.st_mode)
        raise BadInput(f"{run_dir}: mode {mode:04o}, not 0700: others could change the run")


def _check_binding(name: str, plan: Plan, plan_path: Path, old_form_allowed: bool) -> None:
    """The run's id (its folder's name) names its plan's hash (`RUN_ID_HASH_DIGITS`); the 8
    digits an older version named (32 bits: a re-sealed plan that matches is easy to find)
    only when the caller merely reads the run or knows the full hash (`old_form_allowed`)."""
    named = name.split("-")[1:2]
    if named == [plan.plan_hash[:RUN_ID_HASH_DIGITS]]:
        return
    if named == [plan.plan_hash[:8]]:
        if old_form_allowed:
            return
        raise BadInput(
            f"{plan_path}: the run's id names only 8 digits of its plan hash (a run of an older "
            "runc-rollout): pass --expect-hash with the reviewed plan's full hash to change it"
        )
    raise BadInput(
        f"{plan_path}: plan_hash {plan.plan_hash[:12]} is not the hash this run was started "
        f"with (its id names {name}): the plan was replaced"
    )


@dataclass(frozen=True)
class RunLimit:
    """`apply --limit PATTERN`: the pattern as given and the plan's hosts it selected."""

    pattern: str
    hosts: tuple[str, ...]


def initial_state(run_id: str, plan: Plan) -> RunState:
    hosts = {host.name: HostState(wave=wave.index) for wave in plan.waves for host in wave.hosts}
    return RunState(run_id=run_id, plan_id=plan.plan_id, hosts=hosts)


def fold(state: RunState, event: Event) -> None:
    """Fold `event` into `state`, in place: its cost does not grow with the number of hosts."""
    state.last_seq = event.seq
    if event.type in ("host.phase", "host.finished"):
        host = state.hosts.get(event.host) if event.host is not None else None
        if host is None:
            return
        if event.phase is not None:
            host.phase = event.phase
        if event.type == "host.phase":
            host.status = "running"
        elif event.status is not None:
            host.status = event.status  # type: ignore[assignment]
        if event.runc_sha256 is not None:
            host.runc_sha256 = event.runc_sha256
        if event.message is not None or event.type == "host.finished":
            host.message = event.message
        if event.probe is not None:
            host.probe = event.probe
        if event.delivery is not None:
            host.delivery = event.delivery
        if event.sent_bytes:
            host.sent_bytes += event.sent_bytes
    elif event.type == "wave.finished" and event.wave is not None:
        state.next_wave = max(state.next_wave, event.wave + 1)
    elif event.type == "run.limited":
        keep = set(event.hosts or ())
        state.limit = event.limit
        state.hosts = {name: host for name, host in state.hosts.items() if name in keep}
    elif event.type in ("run.started", "run.resumed"):
        state.status = "running"
    elif event.type == "run.paused":
        state.status = "paused"
        if event.until is None:  # paused for promotion (a window's pause says until when)
            state.paused_after = event.wave
    elif event.type == "run.halted":
        state.status = "halted"
    elif event.type == "gate.passed" and event.gate == "wave-gate" and event.wave is not None:
        state.gates_passed.append(event.wave)
    elif event.type == "run.finished" and event.status is not None:
        state.status = event.status  # type: ignore[assignment]


def fold_all(state: RunState, events: Iterable[Event]) -> RunState:
    """`state` with every event folded in (in place)."""
    for event in events:
        fold(state, event)
    return state


class Journal:
    """Appends events and keeps the state, with a snapshot of it on disk. Safe to call from
    worker threads."""

    def __init__(self, run_dir: Path, plan: Plan, state: RunState, clock: Callable[[], float]):
        self.run_dir = run_dir
        self.approved_plan = plan  # the reviewed plan, as in the run folder (approval checks)
        self.plan = plan  # what the run works on: the approved plan, or its --limit subset
        self.state = state
        self._clock = clock
        self._lock = threading.Lock()
        self._next_snapshot = 0.0  # time (on `clock`) and log growth (bytes) before the next
        self._growth_needed = 0
        self._grown = 0
        self._events = os.fsencode(run_dir / EVENTS_FILE)  # joined once, not per event
        self.problems: list[str] = []  # what could not be read when the run was opened
        self._stopped: JournalWriteFailed | None = None  # a write failed: nothing more is written

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @classmethod
    def create(
        cls,
        runs_root: Path,
        plan: Plan,
        clock: Callable[[], float] = time.time,
        *,
        approval: RunApproval | None = None,
        signatures: bytes | None = None,
        limit: RunLimit | None = None,
    ) -> Journal:
        """A new run of `plan` (the reviewed plan, written whole into the run folder). With
        `limit`, its first event records the pattern and the hosts it selected, and the run
        works on those alone (`journal.plan`); `journal.approved_plan` stays the whole plan."""
        run_id = new_run_id(plan, clock())
        run_dir = runs_root / run_id
        try:
            run_dir.mkdir(parents=True, mode=0o700)
            # In pieces, as `plan` writes it: a 100k-host plan is ~70 MB of JSON.
            plan_file = itertools.chain(plan.json_chunks(indent=2), [b"\n"])
            write_atomic(run_dir / PLAN_FILE, plan_file, mode=0o600)
            if signatures is not None:
                write_atomic(run_dir / SIGNATURES_FILE, signatures, mode=0o600)
            approval = approval or RunApproval(plan_hash=plan.plan_hash)
            write_atomic(run_dir / APPROVAL_FILE, approval.model_dump_json(indent=2), mode=0o600)
            fd = os.open(run_dir / EVENTS_FILE, _APPEND | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        except OSError as error:
            raise JournalWriteFailed(
                f"cannot write the run folder {run_dir}: {error.strerror or error}; "
                "no host was touched"
            ) from None
        journal = cls(run_dir, plan, initial_state(run_id, plan), clock)
        if limit is not None:
            total = len(plan.hosts)
            said = f"limited to {limit.pattern}: {len(limit.hosts)} of the plan's {total} hosts"
            hosts = list(limit.hosts)
            journal.record("run.limited", limit=limit.pattern, hosts=hosts, message=said)
            journal.plan = plan.limited_to(journal.state.hosts)
        journal._save_state()
        return journal

    @classmethod
    def open(
        cls,
        run_dir: Path,
        clock: Callable[[], float] = time.time,
        *,
        read_only: bool = False,
        expect_hash: str | None = None,
    ) -> Journal:
        """Open an existing run; the state is rebuilt from the events. Run files are input:
        read bounded and never through a symbolic link. `read_only` writes nothing (status);
        otherwise the run folder must be the operator's own, mode 0700. A run of an older
        version, whose id names 8 digits of its plan hash, needs `expect_hash` to be changed."""
        _check_run_folder(run_dir, private=not read_only)
        plan_path = run_dir / PLAN_FILE
        for name in (PLAN_FILE, EVENTS_FILE, STATE_FILE, SIGNATURES_FILE, APPROVAL_FILE):
            if (run_dir / name).is_symlink():
                raise BadInput(f"{run_dir / name}: a symbolic link; run files are never followed")
        if not plan_path.is_file():
            raise BadInput(f"{run_dir}: not a run directory (no {PLAN_FILE})")
        try:
            data = read_input(plan_path, PLAN_LIMIT, "run's plan", follow=False)
            plan = Plan.model_validate_json(data)
        except ValidationError as error:
            raise BadInput(f"{plan_path}: unreadable plan ({error.error_count()} errors)") from None
        if plan.computed_hash() != plan.plan_hash:
            raise BadInput(
                f"{plan_path}: plan_hash does not match the plan's body: the run's copy of the "
                "reviewed plan was edited; put the reviewed plan file back there"
            )
        if plan.plan_id != plan.sealed().plan_id:
            raise BadInput(f"{plan_path}: plan_id {plan.plan_id!r} does not match plan_hash")
        old_form_allowed = read_only or expect_hash == plan.plan_hash
        _check_binding(run_dir.resolve().name, plan, plan_path, old_form_allowed)
        if not read_only:
            _end_with_newline(run_dir / EVENTS_FILE)
        problems: list[str] = []
        events = iter_events(run_dir / EVENTS_FILE, problems)
        state = fold_all(initial_state(run_dir.resolve().name, plan), events)
        journal = cls(run_dir, plan, state, clock)
        if state.limit is not None:  # apply --limit: the run's hosts alone
            journal.plan = plan.limited_to(state.hosts)
        journal.problems = problems
        if not read_only:
            journal._save_state()
        return journal

    @property
    def signatures(self) -> Path:
        return self.run_dir / SIGNATURES_FILE

    def approval(self) -> RunApproval:
        """How the run's plan was approved when it was applied (a run from before approvals
        were recorded: by its hash alone)."""
        path = self.run_dir / APPROVAL_FILE
        if not path.exists():
            return RunApproval(plan_hash=self.plan.plan_hash)
        try:
            return RunApproval.model_validate_json(read_input(path, MiB, "approval", follow=False))
        except ValidationError:
            raise BadInput(f"{path}: unreadable; put back the file apply wrote") from None

    def record(self, type_: str, **fields: object) -> Event:
        """Append one event (fsync'd) and fold it into the state; snapshot the state when due."""
        with self._lock:
            event = Event.model_validate(
                {"seq": self.state.last_seq + 1, "time": self._clock(), "type": type_, **fields}
            )
            line = (event.model_dump_json(exclude_none=True) + "\n").encode()
            self._write(partial(_append_whole, self._events, line))
            fold(self.state, event)
            self._grown += len(line)
            due = event.time >= self._next_snapshot and self._grown >= self._growth_needed
            if due or event.type.startswith("run."):
                self._save_state()
            return event

    def snapshot(self) -> None:
        """Bring state.json up to date, if events came since the last one (after events that
        end without a run event: a rollback's, or a run cut off by an error)."""
        with self._lock:
            if self._grown and self._stopped is None:
                self._save_state()

    def _write(self, write: Callable[[], None]) -> None:
        """Do one write to the run folder; the first that fails (a full disk) stops the
        journal: that write and every later one raise `JournalWriteFailed`, so the journal
        never has a gap, and the run stops where it is (`resume` opens it again)."""
        if self._stopped is None:
            try:
                write()
                return
            except OSError as error:
                remedy = "make room" if error.errno in (errno.ENOSPC, errno.EDQUOT) else "fix that"
                self._stopped = JournalWriteFailed(
                    f"cannot write the journal in {self.run_dir}: {error.strerror or error}; "
                    "the run stopped there, and each host it was working on keeps its own "
                    f"record of how far it got: {remedy}, then "
                    f"`runc-rollout resume {self.run_dir}`"
                )
        raise self._stopped

    def _save_state(self) -> None:
        path = self.run_dir / STATE_FILE
        self._write(partial(write_atomic, path, state_chunks(self.state), mode=0o600))
        self._next_snapshot = self._clock() + SNAPSHOT_SECONDS
        self._growth_needed = int(path.stat().st_size * SNAPSHOT_GROWTH)
        self._grown = 0


def state_chunks(state: RunState) -> Iterator[bytes]:
    """The bytes `state.model_dump_json(indent=2)` writes, `HOSTS_PER_CHUNK` hosts at a time:
    at 100k hosts ~50 MB, never held at once."""
    head = state.model_copy(update={"hosts": {}}).model_dump_json(indent=2).encode()
    cut = head.rindex(b"{}")  # `hosts`, the last field
    yield head[:cut]
    names = list(state.hosts)
    if not names:
        yield b"{}"
    for start in range(0, len(names), HOSTS_PER_CHUNK):
        chunk = {name: state.hosts[name] for name in names[start : start + HOSTS_PER_CHUNK]}
        text = _HOST_STATES.dump_json(chunk, indent=2).replace(b"\n", b"\n  ")  # a level deeper
        inner = text[1 : text.rindex(b"}")].rstrip(b" \n")
        yield (b"{" if start == 0 else b",") + inner
        if start + HOSTS_PER_CHUNK >= len(names):
            yield text[1 + len(inner) :]  # the object's end, as the last chunk lays it out
    yield head[cut + 2 :]


_HOST_STATES = TypeAdapter(dict[str, HostState])


def _append_whole(path: bytes, line: bytes) -> None:
    """Append `line` and fsync it, or leave the file as it was: a write the disk cut short
    is undone, so no half event stays behind to swallow the next one."""
    fd = os.open(path, _APPEND)
    try:
        size = os.fstat(fd).st_size
        try:
            rest = memoryview(line)
            while rest:
                rest = rest[os.write(fd, rest) :]
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def read_events(path: Path) -> tuple[list[Event], list[str]]:
    """Events in order, and a warning for each line that could not be read (e.g. cut by a crash)."""
    problems: list[str] = []
    return list(iter_events(path, problems)), problems


def iter_events(path: Path, problems: list[str]) -> Iterator[Event]:
    """The events of `path` in order, read a line at a time (a 100k-host run's log is ~150 MB,
    its events as objects several times that); each line that cannot be read (e.g. cut by a
    crash) is ignored and noted in `problems`."""
    if not path.is_file():
        problems.append(f"{path}: missing; no events recorded")
        return
    size = 0
    with open_input(path, EVENTS_LIMIT, "event log", follow=False) as handle:
        for number, line in enumerate(handle, 1):
            size += len(line)
            if size > EVENTS_LIMIT:  # it grew since it was opened
                raise too_large(path, EVENTS_LIMIT, "event log")
            if not line.strip():
                continue
            try:
                yield Event.model_validate(json.loads(line.decode(errors="replace")))
            except (ValueError, ValidationError):
                problems.append(f"{path}:{number}: unreadable event ignored")


class EventTail:
    """The events appended to a run's log since the last `read`, for `status --watch`: read
    only, never through a symbolic link; a line not yet complete waits for the next read."""

    CHUNK = 16 * MiB

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[Event]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        try:
            data = os.pread(fd, self.CHUNK, self.offset)
        finally:
            os.close(fd)
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MiB:  # no event is that long: not a journal line
            self.partial = b""
        events = []
        for line in lines:
            try:
                events.append(Event.model_validate(json.loads(line)))
            except (ValueError, ValidationError):
                continue  # an unreadable line; `status` reports it
        return events


def _end_with_newline(path: Path) -> None:
    """After a crash mid-write, start the next event on a line of its own."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.pread(fd, 1, os.fstat(fd).st_size - 1) != b"\n":
            os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, b"\n")
            os.fsync(fd)
    finally:
        os.close(fd)


# The event log is appended to without following a symbolic link put in its place.
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
