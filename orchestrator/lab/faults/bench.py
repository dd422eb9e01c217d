"""What every fault trial shares: `Bench` (one running lab, an artifact, plans and baselines,
the command line run in this process or spawned), and the small checks trials make."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.backends.ssh.backend import SshBackend
from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.cli.app import main
from orchestrator.lab.faults.inject import Fault, FaultyExecutor, SetupFailed
from orchestrator.lab.fleet import lab_reset
from orchestrator.lab.handle import RUNC_ROLLOUT, LabFleet
from orchestrator.lab.invariant import HostSnapshot, check_runs, load_run, snapshot_hosts
from orchestrator.models import HostState, Plan
from orchestrator.plan.artifact import sha256_file
from orchestrator.run.engine import ApplyEnv, Rollout, load_plan
from orchestrator.run.journal import Journal


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


# ---------------------------------------------------------------------------------------------
# The bench: one lab, an artifact, plans, and helpers to run the command line


@dataclass
class Bench:
    """What trials share: the lab, the artifact (Debian's runc) and a scratch directory."""

    fleet: LabFleet
    workdir: Path
    plans: dict[str, Path] = field(default_factory=dict)
    baselines: dict[str, dict[str, HostSnapshot]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.artifact = self.workdir / "artifact" / "runc"
        if not self.artifact.exists():
            self.artifact.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy("/usr/sbin/runc", self.artifact)

    @property
    def full(self) -> list[str]:
        return [host.name for host in self.fleet.full_hosts]

    @property
    def containerd(self) -> list[str]:
        return [host.name for host in self.fleet.containerd_hosts]

    @property
    def light(self) -> list[str]:
        return [host.name for host in self.fleet.light_hosts]

    @property
    def names(self) -> list[str]:
        return [host.name for host in self.fleet.hosts]

    def scratch(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))

    def reset(self, hosts: Sequence[str]) -> None:
        lab_reset(self.fleet.state_dir, list(hosts))

    def cli(self, *args: str | Path) -> CliResult:
        """`runc-rollout ARGS` in this process, its output captured."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(arg) for arg in args])
        return CliResult(code, out.getvalue(), err.getvalue())

    def spawn(
        self,
        *args: str | Path,
        log: Path,
        env: Mapping[str, str] | None = None,
        enter: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        """`runc-rollout ARGS` as its own process (to kill it, or run two at once), with `env`
        added to this one's environment, through the command `enter` (e.g. an `nsenter`)."""
        with log.open("wb") as handle:
            return subprocess.Popen(
                [*enter, RUNC_ROLLOUT, *map(str, args)],
                env={**os.environ, **(env or {})},
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )

    def plan(
        self,
        hosts: Sequence[str],
        *options: str,
        artifact: Path | None = None,
        inventory: Path | None = None,
        cache: bool = True,
    ) -> Path:
        """A plan made with `plan --gather` over `hosts` (reset first); cached when the hosts
        are in the lab's reset state, since a reset host always has the same facts."""
        artifact = artifact or self.artifact
        key = json.dumps([list(hosts), list(options), str(artifact), str(inventory)])
        if cache and key in self.plans:
            return self.plans[key]
        self.reset(hosts)
        path = self.scratch("plan") / "plan.json"
        result = self.cli(
            "plan",
            "-i",
            inventory or self.fleet.inventory,
            "--runc",
            artifact,
            "--sha256",
            sha256_file(artifact),
            "--gather",
            "--domain-key",
            "zone",
            "--limit",
            ":".join(hosts),
            "-o",
            path,
            *options,
        )
        if result.code != 0:
            raise SetupFailed(f"plan failed ({result.code}): {result.stderr.strip()[-500:]}")
        if cache:
            self.plans[key] = path
        return path

    def baseline(self, plan_path: Path) -> dict[str, HostSnapshot]:
        """The plan's hosts as a reset leaves them (taken once per plan)."""
        key = str(plan_path)
        if key not in self.baselines:
            plan = load_plan(plan_path)
            self.reset([host.name for host in plan.hosts])
            with SshExecutor() as executor:
                snapshots = snapshot_hosts(executor, plan.hosts)
            found = {n: s for n, s in snapshots.items() if isinstance(s, HostSnapshot)}
            if len(found) != len(snapshots):
                raise SetupFailed(f"baseline: hosts unreadable: {snapshots}")
            self.baselines[key] = found
        return self.baselines[key]

    def check(
        self,
        run_dirs: Sequence[Path],
        baseline: Mapping[str, HostSnapshot],
        *,
        settled: bool = True,
    ) -> list[str]:
        with SshExecutor() as executor:
            return check_runs(run_dirs, executor, baseline=baseline, settled=settled)

    def apply_with(self, plan_path: Path, runs: Path, fault: Fault) -> tuple[int, Path]:
        """Apply in this process through a faulty executor; returns (exit code, run dir)."""
        plan = load_plan(plan_path)
        journal = Journal.create(runs, plan)
        with SshExecutor() as ssh:
            executor = FaultyExecutor(ssh, fault)
            code = Rollout(journal, SshBackend(executor, 8), env=ApplyEnv()).run()
        return int(code), journal.run_dir


def only_run(runs: Path) -> Path:
    found = sorted(path for path in runs.iterdir() if path.is_dir()) if runs.is_dir() else []
    if len(found) != 1:
        raise SetupFailed(f"expected one run in {runs}, found {len(found)}")
    return found[0]


def host_states(run_dir: Path) -> dict[str, HostState]:
    return load_run(run_dir).state.hosts


def expect(condition: bool, problem: str, problems: list[str]) -> None:
    if not condition:
        problems.append(problem)


def expect_code(what: str, result: CliResult | int, allowed: Sequence[int], out: list[str]) -> None:
    code = result if isinstance(result, int) else result.code
    if code not in allowed:
        tail = "" if isinstance(result, int) else f": {result.output.strip()[-300:]}"
        out.append(f"{what} exited {code}, expected {' or '.join(map(str, allowed))}{tail}")


def no_traceback(result: CliResult, problems: list[str]) -> None:
    expect("Traceback" not in result.output, f"traceback: {result.output[-300:]}", problems)


def pick(rng: random.Random, names: Sequence[str], count: int) -> list[str]:
    return sorted(rng.sample(list(names), count))


def untouched(bench: Bench, plan_path: Path, baseline: Mapping[str, HostSnapshot]) -> list[str]:
    """Every host of the plan exactly as in `baseline` (no run to compare with)."""
    plan: Plan = load_plan(plan_path)
    with SshExecutor() as executor:
        now = snapshot_hosts(executor, plan.hosts)
    return [
        f"{name}: changed: {now.get(name)}"
        for name, snapshot in baseline.items()
        if now.get(name) != snapshot
    ]
