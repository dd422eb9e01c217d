"""The fault trials of exposure: planted secrets that must appear nowhere, a run folder and
host-side store only their owner can read, and a hostile host whose binaries and reported
values must never run or be templated."""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import tempfile
from pathlib import Path

import yaml

from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.lab.faults.bench import (
    Bench,
    expect,
    expect_code,
    no_traceback,
    only_run,
)
from orchestrator.lab.faults.inject import (
    SetupFailed,
    in_host,
)
from orchestrator.lab.invariant import HostSnapshot, load_run, snapshot_hosts
from orchestrator.lab.procs import proc_start, send_signal
from orchestrator.lab.records import ProcRef
from orchestrator.plan.artifact import sha256_file

SECRET_ENV = (
    "RUNC_ROLLOUT_FAULT_TOKEN"  # a credential the orchestrator's environment happens to hold
)
SECRET_VARS = (
    "ansible_password",
    "ansible_ssh_pass",
    "ansible_become_password",
    "ansible_become_pass",
    "ansible_ssh_private_key_passphrase",
)


def secrets_stay_out(bench: Bench, rng: random.Random, *, executor: str = "ssh") -> list[str]:
    """Passwords planted in the inventory (and, for Ansible, a token in the environment) appear
    nowhere: not in the plan, the journal, Ansible's runner artifacts, the output of
    plan/apply/status/rollback, nor on the hosts."""
    hosts = [rng.choice(bench.light)]
    scratch = bench.scratch("secrets")
    secret = f"S3cret-{rng.getrandbits(64):016x}"
    document = yaml.safe_load(bench.fleet.inventory.read_text())
    for hostvars in document["all"]["children"]["lab"]["hosts"].values():
        hostvars.update({name: f"{secret}-{name}" for name in SECRET_VARS})
    document["all"]["vars"] = {"ansible_become_password": secret}
    inventory = scratch / "hosts.yml"
    inventory.write_text(yaml.safe_dump(document))
    plan_path = bench.plan(hosts, "--waves", "100%", inventory=inventory, cache=False)
    baseline = bench.baseline(plan_path)
    bench.reset(hosts)
    runs = scratch / "runs"
    via = ("--executor", executor)
    os.environ[SECRET_ENV] = secret
    try:
        outputs = [bench.cli("apply", plan_path, "--yes", "--runs-dir", runs, "--json", *via)]
        run_dir = only_run(runs)
        outputs.append(bench.cli("status", run_dir, "--json"))
        outputs.append(bench.cli("rollback", run_dir, "--yes", *via))
    finally:
        del os.environ[SECRET_ENV]
    problems: list[str] = []
    expect_code("apply", outputs[0], [0], problems)
    expect_code("rollback", outputs[2], [0], problems)
    written = [path for path in [plan_path, *run_dir.rglob("*")] if path.is_file()]
    for path in written:
        expect(secret not in path.read_text(errors="replace"), f"secret in {path}", problems)
    for result in outputs:
        expect(secret not in result.output, "secret in command output", problems)
    for host in hosts:
        found = bench.fleet.ssh(
            bench.fleet.host(host), f"grep -rl {secret} /var/lib/runc-rollout", check=False
        ).stdout.strip()
        expect(not found, f"secret on {host}: {found}", problems)
    return problems + bench.check([run_dir], baseline)


def private_modes(bench: Bench, rng: random.Random) -> list[str]:
    """The run directory and the host-side store are readable by their owner (root) only."""
    host = rng.choice(bench.light)
    plan_path = bench.plan([host], "--waves", "100%")
    baseline = bench.baseline(plan_path)
    bench.reset([host])
    runs = bench.scratch("modes") / "runs"
    result = bench.cli("apply", plan_path, "--yes", "--runs-dir", runs)
    problems: list[str] = []
    expect_code("apply", result, [0], problems)
    run_dir = only_run(runs)
    for path in [run_dir, *run_dir.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        expect(mode & 0o077 == 0, f"{path} has mode {mode:o}", problems)
    plan = load_run(run_dir).plan
    with SshExecutor() as executor:
        snapshot = snapshot_hosts(executor, plan.hosts)[host]
    if isinstance(snapshot, HostSnapshot):
        for where, bits in snapshot.modes.items():
            expect(bits & 0o077 == 0, f"{host}:{where} has mode {bits:o}", problems)
        expect(len(snapshot.modes) == 4, f"store incomplete: {snapshot.modes}", problems)
    else:
        problems.append(f"{host}: {snapshot}")
    return problems + bench.check([run_dir], baseline)


def hostile_host(bench: Bench, rng: random.Random) -> list[str]:
    """A compromised node: a root "dockerd" running from a world-writable directory that is
    first on its PATH, with a `runc` there; then a daemon.json whose runtime path is an Ansible
    template. Nothing may run (markers), the first host is held back, and the template reaches
    the Ansible backend only as data; the host ends as it began."""
    host = rng.choice(bench.light)
    bench.reset([host])
    host_dir = bench.fleet.state_dir / "hosts" / host
    scratch = bench.scratch("hostile")
    open_dir = Path(tempfile.mkdtemp(prefix="rr-hostile-", dir="/tmp"))  # shared with the host
    open_dir.chmod(0o1777)
    ran = open_dir / "ran"
    evil = open_dir / "runc"
    evil.write_text(f"#!/bin/sh\ntouch {ran}\necho 'runc version 9.9.9'\n")
    evil.chmod(0o755)
    shutil.copy("/bin/sleep", open_dir / "dockerd")
    problems: list[str] = []
    pid = int(
        in_host(
            bench.fleet,
            host,
            f"(exec env PATH={open_dir}:/usr/bin {open_dir}/dockerd 300 </dev/null >/dev/null "
            "2>&1 &) ; sleep 0.3; pgrep -n -f " + shlex.quote(f"{open_dir}/dockerd"),
        ).split()[-1]
    )
    fake_dockerd = ProcRef(pid=pid, start=proc_start(pid) or -1)
    templated = scratch / "templated"
    try:
        plan_path = scratch / "held.json"
        result = bench.cli(
            "plan", "-i", bench.fleet.inventory, "--runc", bench.artifact,
            "--sha256", sha256_file(bench.artifact), "--gather", "--limit", host,
            "-o", plan_path, "--format", "json",
        )  # fmt: skip
        no_traceback(result, problems)
        expect_code("plan of a host whose runc anyone could have placed", result, [2], problems)
        expect(not plan_path.exists(), "a plan was written for the host anyway", problems)
        result = bench.cli(
            "facts", "-i", bench.fleet.inventory, "--limit", host, "--format", "json"
        )
        runc = json.loads(result.stdout)["hosts"][host]["runc"] if result.code == 0 else None
        expect(
            runc is not None and "writable by others" in str(runc["untrusted"]),
            f"{host}'s runc not reported untrusted: {runc}",
            problems,
        )
        expect(not ran.exists(), "an untrusted binary was run by facts", problems)
    finally:
        send_signal(fake_dockerd, signal.SIGKILL)  # started by this trial
    # A runtime path that is an Ansible template: a real runc, in a directory only root owns.
    template = "{{lookup('pipe','touch${IFS}" + str(templated) + "')}}"
    nested = host_dir / "usr-local-sbin" / template.lstrip("/")
    nested.mkdir(parents=True)
    shutil.copy(host_dir / "usr-local-sbin" / "runc", nested / "runc")
    config = host_dir / "etc-docker" / "daemon.json"
    config.parent.mkdir(exist_ok=True)
    hostile_path = f"/usr/local/sbin/{template}/runc"
    config.write_text(
        json.dumps({"default-runtime": "x", "runtimes": {"x": {"path": hostile_path}}})
    )
    try:
        plan_path = scratch / "plan.json"
        result = bench.cli(
            "plan", "-i", bench.fleet.inventory, "--runc", bench.artifact,
            "--sha256", sha256_file(bench.artifact), "--gather", "--limit", host,
            "-o", plan_path,
        )  # fmt: skip
        if result.code != 0:
            raise SetupFailed(f"plan failed ({result.code}): {result.stderr.strip()[-300:]}")
        before = json.loads(plan_path.read_text())["waves"][0]["hosts"][0]["before"]
        expect(before["runc_path"] == hostile_path, f"before: {before}", problems)
        result = bench.cli(
            "apply", plan_path, "--yes", "--runs-dir", scratch / "runs", "--executor", "ansible"
        )
        no_traceback(result, problems)
        expect_code("apply --executor ansible", result, [0], problems)
        expect(not templated.exists(), "a host-reported value was templated", problems)
        result = bench.cli("rollback", only_run(scratch / "runs"), "--yes")
        expect_code("rollback", result, [0], problems)
        expect(not templated.exists(), "a host-reported value was templated", problems)
    finally:
        config.unlink()
        shutil.rmtree(host_dir / "usr-local-sbin" / template.split("/")[0], ignore_errors=True)
        shutil.rmtree(open_dir, ignore_errors=True)
        bench.reset([host])
    return problems
