"""Make the record-compatibility fixtures in this directory from the code of this commit.

On a running lab (`runc-rollout lab up --hosts 3 --docker 1 ...`): for each phase, reset the
first full host, upgrade it with `HostProcedure` through a session that dies (like a SIGKILLed
orchestrator: nothing more reaches the host) right after the host-side record of that phase is
written, and save what the host was left with. `done` runs to the end; `rolled_back` is a done
host rolled back from its record. Usage:

    PYTHONPATH=. .venv/bin/python tests/data/records/make_records.py STATE_DIR INVENTORY
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from orchestrator.backends.ssh.executor import SshExecutor
from orchestrator.cli.app import main as cli
from orchestrator.host import commands
from orchestrator.host.procedure import HostProcedure
from orchestrator.host.session import CommandResult, HostSession
from orchestrator.lab.fleet import lab_reset
from orchestrator.models import HostPhase
from orchestrator.run.engine import load_plan
from orchestrator.run.journal import new_run_id
from orchestrator.run.rollback import rollback_host

HERE = Path(__file__).parent
KILLED_AT: tuple[HostPhase, ...] = ("backed_up", "swapped", "verified", "sysctl_restored")
INCIDENT_FILE = "/etc/sysctl.d/90-runc-incident.conf"


class Killed(BaseException):
    """The orchestrator died: not an Exception, so no clean-up step catches it."""


class DyingSession:
    """Passes everything through until the record of `phase` is on the host, then dies."""

    def __init__(self, inner: HostSession, phase: str | None) -> None:
        self.inner, self.phase, self.dead = inner, phase, False

    @property
    def host(self) -> str:
        return self.inner.host

    def run(self, command: str, *, timeout: float, stdin: bytes | None = None) -> CommandResult:
        if self.dead:
            raise Killed
        result = self.inner.run(command, timeout=timeout, stdin=stdin)
        if (
            self.phase is not None
            and commands.RECORD in command
            and (f'"phase": "{self.phase}"' in command and "mv -f" in command)
        ):
            self.dead = True
            raise Killed
        return result

    def put(self, local: Path, remote: str, *, mode: int) -> None:
        if self.dead:
            raise Killed
        self.inner.put(local, remote, mode=mode)

    def close(self) -> None:
        self.inner.close()


class PhaseLog:
    """The phases a host reported: what the journal holds when the orchestrator dies."""

    def __init__(self, seen: list[HostPhase]) -> None:
        self.seen = seen

    def __call__(self, host: str, phase: HostPhase, runc_sha256: str | None) -> None:
        self.seen.append(phase)


def host_side(session: HostSession) -> dict[str, object]:
    """What a crash left on the host, besides the record itself."""
    script = (
        f"cd {commands.STATE_DIR} && find . -mindepth 1 | sort; echo ---; "
        f"cat {commands.LOCK_DIR}/owner 2>/dev/null; echo ---; "
        "ls -a /usr/local/sbin | grep runc-rollout; echo ---; "
        "sha256sum /usr/local/sbin/runc | cut -d' ' -f1; "
        f"cat {commands.SYSCTL_PROC}; sha256sum {INCIDENT_FILE} | cut -d' ' -f1"
    )
    out = session.run(script, timeout=30).stdout
    tree, owner, staged, rest = out.split("---\n")
    runc, sysctl, incident = rest.split()
    return {
        "state_dir": [line.removeprefix("./") for line in tree.split()],
        "lock_owner": owner.strip() or None,
        "staged": staged.split(),
        "runc_sha256": runc,
        "sysctl_runtime": int(sysctl),
        "incident_file_sha256": incident,
    }


def main(state_dir: Path, inventory: Path) -> None:
    work = Path(tempfile.mkdtemp())
    artifact = work / "runc"
    shutil.copy("/usr/sbin/runc", artifact)
    target = hashlib.sha256(artifact.read_bytes()).hexdigest()
    plan_path = work / "plan.json"
    argv = ["plan", "-i", str(inventory), "--runc", str(artifact), "--sha256", target,
            "--gather", "--limit", "lab-01", "--waves", "100%", "-o", str(plan_path),
            "--format", "json"]  # fmt: skip
    assert cli(argv) == 0
    plan = load_plan(plan_path)
    planned = plan.waves[0].hosts[0]
    layout: dict[str, object] = {"commit": sys.argv[3] if len(sys.argv) > 3 else None}
    contents: dict[str, str] = {}
    hosts: dict[str, object] = {}
    with SshExecutor() as executor:
        session = executor.session(planned.ssh, name=planned.name)
        for name in (*KILLED_AT, "done", "rolled_back"):
            lab_reset(state_dir, [planned.name])
            before = host_side(session)
            incident = session.run(f"cat {INCIDENT_FILE}", timeout=30).stdout
            contents[str(before["incident_file_sha256"])] = incident
            layout["before"] = before
            phases: list[HostPhase] = []
            dying = DyingSession(session, name if name in KILLED_AT else None)
            run_id = new_run_id(plan, time.time())
            procedure = HostProcedure(
                dying, planned, plan.artifact, run_id=run_id, plan_id=plan.plan_id,
                sysctl_target=plan.options.sysctl_target,
                on_phase=PhaseLog(phases),
            )  # fmt: skip
            try:
                outcome = procedure.upgrade()
                assert outcome.status == "done", outcome
            except Killed:
                assert name in KILLED_AT
            if name == "rolled_back":
                outcome = rollback_host(
                    session, planned.name, run_id=None, on_phase=PhaseLog(phases)
                )
                assert outcome.status == "rolled_back", outcome
            record = session.run(f"cat {commands.RECORD}", timeout=30).stdout
            (HERE / f"{name}.json").write_text(record)
            state = host_side(session)
            incident = session.run(f"cat {INCIDENT_FILE}", timeout=30).stdout
            contents[str(state["incident_file_sha256"])] = incident
            hosts[name] = {"run_id": run_id, "journal_phases": phases, **state}
            print(name, shlex.join(phases), flush=True)
        lab_reset(state_dir, [planned.name])
    layout |= {"before_sha256": planned.before and planned.before.runc_sha256}
    layout |= {"target_sha256": target, "incident_file": INCIDENT_FILE}
    layout |= {"incident_file_contents": contents, "hosts": hosts}
    (HERE / "layout.json").write_text(json.dumps(layout, indent=2) + "\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
