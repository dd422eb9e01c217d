"""The fault trials that interrupt, damage or race a rollout: a SIGKILLed orchestrator, a cut
SSH connection, a full or read-only disk, a bad artifact, a hanging candidate, a racing apply,
a changed host key, a damaged journal (secrets and hostile hosts: `exposure`).

Each gets a `Bench` and a seeded `random.Random`, resets the lab hosts it uses, injects one
fault, lets runc-rollout resume or roll back where the scenario calls for it, and returns every
problem it saw: its own expectations that failed, then the invariant's violations
(`orchestrator.lab.invariant`). An empty list means the trial ended safely."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from orchestrator.host.probe import PROBE_PREFIX
from orchestrator.lab.faults.bench import (
    Bench,
    expect,
    expect_code,
    host_states,
    no_traceback,
    only_run,
    pick,
    untouched,
)
from orchestrator.lab.faults.inject import (
    FAILING_RUNC,
    AtStep,
    Fault,
    SetupFailed,
    cut_connections,
    start_sshd,
    stop_sshd,
)
from orchestrator.lab.handle import HANGING_RUNC
from orchestrator.lab.invariant import load_run
from orchestrator.lab.rc93 import ensure_rc93_runc
from orchestrator.run.engine import load_plan
from orchestrator.run.journal import EVENTS_FILE, PLAN_FILE, STATE_FILE

# ---------------------------------------------------------------------------------------------
# Trials


def kill_and_recover(
    bench: Bench, rng: random.Random, *, then: str, executor: str = "ssh"
) -> list[str]:
    """SIGKILL `apply` over every lab host at a random event (then a random few ms), then
    `resume` (all done) or `rollback` (all back to before); nothing done twice."""
    hosts = bench.names
    plan_path = bench.plan(hosts, "--waves", "1,30%,100%")
    baseline = bench.baseline(plan_path)
    bench.reset(hosts)
    scratch = bench.scratch(f"kill-{then}")
    runs = scratch / "runs"
    expected_events = 2 + 2 * 3 + 8 * len(hosts)
    kill_at = rng.randint(1, expected_events)
    delay = rng.uniform(0, 0.05)
    via = ("--executor", executor)
    proc = bench.spawn(
        "apply", plan_path, "--yes", "--runs-dir", runs, *via, log=scratch / "apply.log"
    )
    events = None
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            found = list(runs.glob(f"*/{EVENTS_FILE}")) if runs.is_dir() else []
            if found:
                events = found[0]
                if events.read_bytes().count(b"\n") >= kill_at:
                    time.sleep(delay)
                    break
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if events is None:
        raise SetupFailed(
            f"apply never started a run: {(scratch / 'apply.log').read_text()[-500:]}"
        )
    run_dir = events.parent
    problems: list[str] = []
    if then == "resume":
        result = bench.cli("resume", run_dir, "--yes", *via)
        expect_code("resume", result, [0], problems)
        states = host_states(run_dir)
        undone = sorted(name for name, state in states.items() if state.status != "done")
        expect(not undone, f"not done after resume: {undone}", problems)
    else:
        result = bench.cli("rollback", run_dir, "--yes", *via)
        expect_code("rollback", result, [0], problems)
    no_traceback(result, problems)
    return problems + bench.check([run_dir], baseline)


def connection_cut(bench: Bench, rng: random.Random, *, step: str) -> list[str]:
    """Cut one host's SSH connection during `step`: it is reported unreachable and counted
    against the budget (the run halts), and a later `resume` finishes it."""
    hosts = [bench.full[0], rng.choice(bench.light)]
    plan_path = bench.plan(hosts, "--waves", "100%")
    baseline = bench.baseline(plan_path)
    bench.reset(hosts)
    victim = rng.choice(hosts)
    delay = {"stage": rng.uniform(0, 0.05), "swap": rng.uniform(0, 0.02)}.get(
        step, rng.uniform(0.05, 0.4)
    )
    fault = AtStep(victim, step, delay, partial(cut_connections, bench.fleet, victim))
    scratch = bench.scratch(f"cut-{step}")
    code, run_dir = bench.apply_with(plan_path, scratch / "runs", fault)
    problems: list[str] = []
    expect(fault.fired.is_set(), f"the {step} step of {victim} never ran", problems)
    state = host_states(run_dir)[victim]
    expect_code("apply", code, [3], problems)
    expect(state.status == "unreachable", f"{victim} is {state.status}, not unreachable", problems)
    expect(load_run(run_dir).state.status == "halted", "the run did not halt", problems)
    problems += bench.check([run_dir], baseline, settled=False)
    result = bench.cli("resume", run_dir, "--yes")
    expect_code("resume", result, [0], problems)
    expect(host_states(run_dir)[victim].status == "done", f"{victim} not done by resume", problems)
    return problems + bench.check([run_dir], baseline)


def connection_cut_ansible(bench: Bench, rng: random.Random, *, step: str) -> list[str]:
    """`apply --executor ansible` with one host's sshd killed (connections and listener) while
    `step` runs, right after the journal shows the phase before it: Ansible's own retries fail,
    the host is reported unreachable and the budget halts the run; once sshd is back, a
    `resume` finishes it. (Cutting only the connections is no fault for Ansible: it retries.)"""
    hosts = [bench.full[0], rng.choice(bench.light)]
    plan_path = bench.plan(hosts, "--waves", "100%")
    baseline = bench.baseline(plan_path)
    bench.reset(hosts)
    victim = rng.choice(hosts)
    trigger = {"stage": "locked", "swap": "backed_up", "verify": "swapped"}[step]
    delay = rng.uniform(0, 0.3 if step == "verify" else 0.05)
    scratch = bench.scratch(f"ansible-cut-{step}")
    runs = scratch / "runs"
    via = ("--executor", "ansible")
    proc = bench.spawn("apply", plan_path, "--yes", "--runs-dir", runs, *via, log=scratch / "log")
    cut = False
    try:
        while proc.poll() is None and not cut:
            found = list(runs.glob(f"*/{EVENTS_FILE}")) if runs.is_dir() else []
            if found and f'"host":"{victim}","phase":"{trigger}"' in found[0].read_text():
                time.sleep(delay)
                stop_sshd(bench.fleet, victim)
                cut = True
            time.sleep(0.005)
        code = proc.wait(timeout=600)
    finally:
        start_sshd(bench.fleet)
    problems: list[str] = []
    expect(cut, f"{victim} never reached {trigger}", problems)
    log = (scratch / "log").read_text()
    expect("Traceback" not in log, f"apply: traceback: {log[-300:]}", problems)
    run_dir = only_run(runs)
    state = host_states(run_dir)[victim]
    if state.status != "done":  # else its last step had finished before sshd died
        expect_code("apply", code, [3], problems)
        expect(state.status == "unreachable", f"{victim} is {state.status}", problems)
        problems += bench.check([run_dir], baseline, settled=False)
        result = bench.cli("resume", run_dir, "--yes", *via)
        expect_code("resume", result, [0], problems)
    expect(host_states(run_dir)[victim].status == "done", f"{victim} not done", problems)
    return problems + bench.check([run_dir], baseline)


def sshd_down(bench: Bench, rng: random.Random) -> list[str]:
    """A host's sshd dies during verify: unreachable, the budget halts the run; a resume while it
    is still down says so again; once sshd is back, a resume finishes it."""
    hosts = [bench.full[0], *pick(rng, bench.light, 1)]
    plan_path = bench.plan(hosts, "--waves", "100%")
    baseline = bench.baseline(plan_path)
    bench.reset(hosts)
    victim = rng.choice(hosts)
    stop = partial(stop_sshd, bench.fleet, victim)
    fault = AtStep(victim, "verify", rng.uniform(0.05, 0.3), stop)
    code, run_dir = bench.apply_with(plan_path, bench.scratch("sshd-down") / "runs", fault)
    problems: list[str] = []
    try:
        expect_code("apply", code, [3], problems)
        result = bench.cli("resume", run_dir, "--yes")
        expect_code("resume while sshd is down", result, [3], problems)
        state = host_states(run_dir)[victim]
        expect(state.status == "unreachable", f"{victim}: {state.status} while down", problems)
    finally:
        start_sshd(bench.fleet)
    result = bench.cli("resume", run_dir, "--yes")
    expect_code("resume", result, [0], problems)
    return problems + bench.check([run_dir], baseline)


def refused_before_swap(
    bench: Bench,
    rng: random.Random,
    *,
    name: str,
    words: Sequence[str],
    artifact: Path | None = None,
    fault: Callable[[Path], Fault] | None = None,
    around: Callable[[str], contextlib.AbstractContextManager[None]] | None = None,
    host: str | None = None,
) -> list[str]:
    """A one-host apply (on `host`, else a light one) that must fail before the swap: host
    untouched, a message with one of `words`, no lock or temporary file left."""
    host = host or rng.choice(bench.light)
    plan_path = bench.plan([host], "--waves", "100%", artifact=artifact)
    baseline = bench.baseline(plan_path)
    bench.reset([host])
    scratch = bench.scratch(name)
    problems: list[str] = []
    with around(host) if around else contextlib.nullcontext():
        if fault is not None:
            code, run_dir = bench.apply_with(plan_path, scratch / "runs", fault(scratch))
        else:
            result = bench.cli("apply", plan_path, "--yes", "--runs-dir", scratch / "runs")
            no_traceback(result, problems)
            code, run_dir = result.code, only_run(scratch / "runs")
        state = host_states(run_dir)[host]
        expect_code("apply", code, [3], problems)
        expect(state.status == "failed", f"{host} is {state.status}, not failed", problems)
        message = state.message or ""
        expect(
            any(word in message for word in words),
            f"message {message!r} says none of {list(words)}",
            problems,
        )
        expect(load_run(run_dir).swaps.get(host, 0) == 0, "swapped anyway", problems)
        problems += bench.check([run_dir], baseline)
    return problems


def bad_candidate(bench: Bench, rng: random.Random, *, hangs: bool) -> list[str]:
    """A candidate that hangs (budget 0) or fails to create containers (budget 1 per wave): the
    run halts after the canary either way (a wave without a success halts whatever its budget),
    and the canary is rolled back within its verification timeout."""
    hosts = [bench.full[0], rng.choice(bench.light)]
    scratch = bench.scratch("hang" if hangs else "error")
    artifact = scratch / "runc"
    artifact.write_text(HANGING_RUNC if hangs else FAILING_RUNC)
    artifact.chmod(0o755)
    budget = "0" if hangs else "1"
    options = ["--waves", "1,100%", "--verify-timeout", "3", "--probe-timeout", "3"]
    options += ["--max-failures", budget]
    plan_path = bench.plan(hosts, *options, artifact=artifact, cache=False)
    plan = load_plan(plan_path)
    baseline = bench.baseline(plan_path)
    bench.reset(hosts)
    started = time.monotonic()
    result = bench.cli("apply", plan_path, "--yes", "--runs-dir", scratch / "runs")
    elapsed = time.monotonic() - started
    problems: list[str] = []
    no_traceback(result, problems)
    expect_code("apply", result, [3], problems)
    expect(elapsed < 90, f"apply took {elapsed:.0f}s with a 3s verification timeout", problems)
    run_dir = only_run(scratch / "runs")
    states = host_states(run_dir)
    canary = plan.waves[0].hosts[0].name
    expect(states[canary].status == "failed", f"canary {canary}: {states[canary].status}", problems)
    word = "timed out" if hangs else "failed"
    expect(word in (states[canary].message or ""), f"canary message lacks {word!r}", problems)
    expect("rolled back" in (states[canary].message or ""), "canary not rolled back", problems)
    others = [state.status for name, state in states.items() if name != canary]
    expect(set(others) == {"pending"}, f"other hosts {others}", problems)
    return problems + bench.check([run_dir], baseline)


def killed_during_probe(bench: Bench, rng: random.Random) -> list[str]:
    """SIGKILL `apply` while a host's incident probe holds its pipes (the candidate is the rc93
    build, so the probe hangs), then `resume`: the probe runs again, hangs again, the host is
    rolled back, and no process of a probe uid, no probe container and no pipe is left. The
    host is a full, a containerd-only (if the lab has one) or a light one: each probe path
    (docker, ctr, bundle) alike."""
    host = rng.choice([bench.full[0], *bench.containerd[:1], rng.choice(bench.light)])
    scratch = bench.scratch("kill-probe")
    artifact = scratch / "runc"
    # The lab's own rc93 with a byte appended: still the bug, but another sha256 to swap in.
    artifact.write_bytes(Path(ensure_rc93_runc().path).read_bytes() + b"\0")
    artifact.chmod(0o755)
    options: tuple[str, ...] = (
        "--waves",
        "100%",
        "--probe-timeout",
        "10",
        "--verify-timeout",
        "20",
    )
    # Accepted, so the host runs it: the probe, not its version, is what must catch the bug.
    options = (*options, "--accept-advisory", "runc-rc93-pipe-hang")
    plan_path = bench.plan([host], *options, artifact=artifact, cache=False)
    baseline = bench.baseline(plan_path)
    bench.reset([host])
    runs = scratch / "runs"
    proc = bench.spawn("apply", plan_path, "--yes", "--runs-dir", runs, log=scratch / "apply.log")
    probing = False
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and not probing:
            probing = bool(bench.fleet.probe_processes())
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 3))  # somewhere in the probe's 10 s
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if not probing:
        raise SetupFailed(f"no probe was seen: {(scratch / 'apply.log').read_text()[-500:]}")
    problems: list[str] = []
    run_dir = only_run(runs)
    result = bench.cli("resume", run_dir, "--yes")
    no_traceback(result, problems)
    expect_code("resume", result, [3], problems)
    state = host_states(run_dir)[host]
    expect(state.status == "failed", f"{host}: {state.status} after resume", problems)
    expect("hung in" in (state.message or ""), f"{host}: {state.message!r}", problems)
    time.sleep(1)  # the holder exits within a second of its stdin closing
    left = bench.fleet.probe_processes()
    expect(not left, f"processes of a probe uid left: {left}", problems)
    name = f"{PROBE_PREFIX}{run_dir.name}-*"  # a bundle's cgroup, or one under ctr's namespace
    cgroups = sorted(
        [*Path("/sys/fs/cgroup").glob(f"*/{name}"), *Path("/sys/fs/cgroup").glob(f"*/*/{name}")]
    )
    expect(not cgroups, f"probe cgroups left: {[str(c) for c in cgroups[:3]]}", problems)
    return problems + bench.check([run_dir], baseline)


def overlapping_applies(bench: Bench, rng: random.Random, *, same_plan: bool) -> list[str]:
    """Two applies at once over shared hosts (two overlapping plans, or one plan applied twice
    from two run directories): on each shared host one run wins, the other is refused or sees
    it already done; nothing is swapped twice."""
    chosen = pick(rng, bench.light, 4)
    first = chosen[:3]
    second = first if same_plan else chosen[1:]
    plans = [bench.plan(first, "--waves", "100%"), bench.plan(second, "--waves", "100%")]
    baseline = {**bench.baseline(plans[0]), **bench.baseline(plans[1])}
    bench.reset(chosen)
    scratch = bench.scratch("same-plan" if same_plan else "overlap")
    procs = [
        bench.spawn(
            "apply", plan, "--yes", "--runs-dir", scratch / f"runs{i}", log=scratch / f"{i}"
        )
        for i, plan in enumerate(plans)
    ]
    codes = [proc.wait(timeout=300) for proc in procs]
    problems: list[str] = []
    for index, code in enumerate(codes):
        expect_code(f"apply {index}", code, [0, 1, 3, 4], problems)
        log = (scratch / str(index)).read_text()
        expect("Traceback" not in log, f"apply {index}: traceback: {log[-300:]}", problems)
    run_dirs = [only_run(scratch / f"runs{i}") for i in range(2)]
    ids = {load_run(run_dir).run_id for run_dir in run_dirs}
    expect(len(ids) == 2, f"both applies got the run id {ids}", problems)
    for host in sorted(set(first) & set(second)):
        statuses = [host_states(run_dir)[host] for run_dir in run_dirs]
        winners = [state for state in statuses if state.status == "done"]
        expect(len(winners) == 1, f"{host}: {[s.status for s in statuses]}", problems)
        for state in statuses:
            if state.status == "failed":
                expect(
                    "locked by run" in (state.message or ""),
                    f"{host}: refused with {state.message!r}",
                    problems,
                )
    return problems + bench.check(run_dirs, baseline)


def changed_host_key(bench: Bench, rng: random.Random) -> list[str]:
    """A host whose key no longer matches known_hosts fails before any command runs on it."""
    victim, other = pick(rng, bench.light, 2)
    scratch = bench.scratch("host-key")
    known_hosts = scratch / "known_hosts"
    good = bench.fleet.known_hosts.read_text()
    known_hosts.write_text(good)
    inventory = scratch / "hosts.yml"
    inventory.write_text(
        bench.fleet.inventory.read_text().replace(str(bench.fleet.known_hosts), str(known_hosts))
    )
    plan_path = bench.plan([victim, other], "--waves", "100%", inventory=inventory, cache=False)
    baseline = bench.baseline(plan_path)
    bench.reset([victim, other])
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(scratch / "other_key")],
        check=True,
        capture_output=True,
    )
    address = bench.fleet.host(victim).address
    forged = (scratch / "other_key.pub").read_text().split()
    known_hosts.write_text(
        "".join(
            f"{address} {forged[0]} {forged[1]}\n" if line.startswith(f"{address} ") else line
            for line in good.splitlines(keepends=True)
        )
    )
    sshd_log = bench.fleet.state_dir / "hosts" / victim / "var-log" / "sshd.log"
    logins_before = sshd_log.read_text().count("Accepted publickey")
    result = bench.cli("apply", plan_path, "--yes", "--runs-dir", scratch / "runs")
    problems: list[str] = []
    no_traceback(result, problems)
    expect_code("apply", result, [3], problems)
    run_dir = only_run(scratch / "runs")
    state = host_states(run_dir)[victim]
    expect(state.status == "unreachable", f"{victim}: {state.status}", problems)
    expect("HOST KEY CHANGED" in (state.message or ""), f"message {state.message!r}", problems)
    logins = sshd_log.read_text().count("Accepted publickey") - logins_before
    expect(logins == 0, f"{logins} logins on {victim} despite its changed key", problems)
    known_hosts.write_text(good)  # so the checker can read the host
    return problems + bench.check([run_dir], baseline, settled=False)


PLAN_COPY_DAMAGES = {
    "bad-plan": ("bad-plan",),
    "edited-plan": ("edited-plan",),
    "plan-copy": ("bad-plan", "edited-plan"),
}


def damaged_journal(bench: Bench, rng: random.Random, *, damage: str) -> list[str]:
    """Kill an apply mid-way, damage its journal; `status` and `resume` still work, or say
    exactly what they cannot do (an unreadable or edited plan copy), and the run still ends
    clean."""
    hosts = pick(rng, bench.light, 2)
    plan_path = bench.plan(hosts, "--waves", "1,100%")
    baseline = bench.baseline(plan_path)
    bench.reset(hosts)
    scratch = bench.scratch(f"journal-{damage}")
    runs = scratch / "runs"
    kill_at = rng.randint(3, 14)
    proc = bench.spawn("apply", plan_path, "--yes", "--runs-dir", runs, log=scratch / "log")
    events: Path | None = None
    try:
        while proc.poll() is None:
            found = list(runs.glob(f"*/{EVENTS_FILE}")) if runs.is_dir() else []
            if found and found[0].read_bytes().count(b"\n") >= kill_at:
                events = found[0]
                break
            time.sleep(0.005)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    events = events or only_run(runs) / EVENTS_FILE
    run_dir = events.parent
    problems: list[str] = []
    if damage == "cut":
        data = events.read_bytes().rstrip(b"\n")
        last = data.rfind(b"\n") + 1
        events.write_bytes(data[: last + (len(data) - last) // 2])
    elif damage == "no-state":
        (run_dir / STATE_FILE).unlink()
    elif damage == "no-events":
        events.unlink()
    elif damage in PLAN_COPY_DAMAGES:
        copy = run_dir / PLAN_FILE
        # "plan-copy": one damage, then the other, in one killed run (the quick subset's: the
        # apply and resume around them are what takes the time, and they are the same).
        for each in PLAN_COPY_DAMAGES[damage]:
            if each == "bad-plan":
                copy.write_text(plan_path.read_text()[:100])
            else:
                body = json.loads(plan_path.read_text())
                body["options"]["max_failures"] = "100%"
                copy.write_text(json.dumps(body))
            for command in ("status", "resume"):
                extra = ("--yes",) if command == "resume" else ()
                result = bench.cli(command, run_dir, *extra)
                no_traceback(result, problems)
                expect_code(f"{command} ({each})", result, [2], problems)
                expect(PLAN_FILE in result.stderr, f"{command} does not name {PLAN_FILE}", problems)
        shutil.copy(plan_path, copy)  # the operator puts the reviewed plan back
    status = bench.cli("status", run_dir)
    no_traceback(status, problems)
    expect_code("status", status, [0], problems)
    if damage in ("cut", "no-events"):
        expect("warning" in status.stderr, "status does not warn about the journal", problems)
    result = bench.cli("resume", run_dir, "--yes")
    no_traceback(result, problems)
    expect_code("resume", result, [0], problems)
    return problems + bench.check([run_dir], baseline)


def artifact_refused(bench: Bench, rng: random.Random) -> list[str]:
    """No plan for an artifact whose sha256 is not the one given; no apply of a plan whose
    artifact changed since; nothing changes on any host."""
    host = rng.choice(bench.light)
    scratch = bench.scratch("artifact-sha")
    artifact = scratch / "runc"
    shutil.copy(bench.artifact, artifact)
    problems: list[str] = []
    wrong = f"{rng.getrandbits(256):064x}"
    result = bench.cli(
        "plan", "-i", bench.fleet.inventory, "--runc", artifact, "--sha256", wrong,
        "--limit", host, "-o", scratch / "refused.json",
    )  # fmt: skip
    no_traceback(result, problems)
    expect_code("plan with a wrong sha256", result, [2], problems)
    expect(not (scratch / "refused.json").exists(), "a plan was written anyway", problems)
    plan_path = bench.plan([host], "--waves", "100%", artifact=artifact, cache=False)
    baseline = bench.baseline(plan_path)
    bench.reset([host])
    with artifact.open("ab") as handle:
        handle.write(b"\0")
    result = bench.cli("apply", plan_path, "--yes", "--runs-dir", scratch / "runs")
    no_traceback(result, problems)
    expect_code("apply of a changed artifact", result, [2], problems)
    expect("sha256" in result.stderr, f"message: {result.stderr.strip()!r}", problems)
    expect(not (scratch / "runs").exists(), "a run was started anyway", problems)
    return problems + untouched(bench, plan_path, baseline)


def edited_plan_refused(bench: Bench, rng: random.Random) -> list[str]:
    """A plan edited after review is refused before any host is touched."""
    host = rng.choice(bench.light)
    plan_path = bench.plan([host], "--waves", "100%")
    baseline = bench.baseline(plan_path)
    bench.reset([host])
    scratch = bench.scratch("edited")
    body = json.loads(plan_path.read_text())
    edit = rng.choice(["max_failures", "verify_timeout", "sysctl_target"])
    body["options"][edit] = {"max_failures": "100%", "verify_timeout": 1.0}.get(edit, 4096)
    edited = scratch / "plan.json"
    edited.write_text(json.dumps(body))
    result = bench.cli("apply", edited, "--yes", "--runs-dir", scratch / "runs")
    problems: list[str] = []
    no_traceback(result, problems)
    expect_code("apply of an edited plan", result, [2], problems)
    expect("edited after review" in result.stderr, f"message: {result.stderr!r}", problems)
    expect(not (scratch / "runs").exists(), "a run was started anyway", problems)
    return problems + untouched(bench, plan_path, baseline)
