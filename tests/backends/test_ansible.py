"""The Ansible backend without a lab: the playbooks' syntax and lint, the action's arguments, the
event handler, the job's inventory and environment, nothing templated."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader

from orchestrator.backends.ansible.action import EVENT_PREFIX, run_task
from orchestrator.backends.ansible.runner import (
    PLAYBOOK_DIR,
    AnsibleBackend,
    HostEvents,
    host_vars,
    kept_environment,
    plan_inventory,
    upgrade_extravars,
)
from orchestrator.host.procedure import HostOutcome
from orchestrator.models import (
    Artifact,
    HostBefore,
    HostPhase,
    HostTask,
    SshTarget,
    TargetPolicy,
    TargetRefusal,
    VerifySpec,
    VersionRange,
)
from tests.run.test_journal import small_plan

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


@pytest.mark.parametrize("playbook", ["upgrade.yml", "rollback.yml", "facts.yml", "diagnose.yml"])
def test_playbooks_pass_syntax_check(playbook: str) -> None:
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "--syntax-check", "-i", "localhost,", str(PLAYBOOK_DIR / playbook)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _event(kind: str, host: str, res: dict[str, Any]) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": host, "task": "Upgrade runc", "res": res}}


def _display(nonce: str, host: str, phase: str, sha: str | None = None) -> dict[str, Any]:
    line = json.dumps({"host": host, "phase": phase, "runc_sha256": sha})
    return {"event": "verbose", "stdout": f"{EVENT_PREFIX} {nonce} {line}"}


def test_event_handler_maps_phases_and_outcomes() -> None:
    phases: list[tuple[str, HostPhase, str | None]] = []
    outcomes: dict[str, HostOutcome] = {}

    def on_outcome(name: str, outcome: HostOutcome) -> None:
        assert name not in outcomes, "an outcome is reported once"
        outcomes[name] = outcome

    nonce = "0123456789abcdef"
    events = HostEvents(
        ["a", "b", "c", "d"],
        nonce=nonce,
        on_phase=lambda host, phase, sha: phases.append((host, phase, sha)),
        on_outcome=on_outcome,
        phase_of=lambda name: "backed_up",
    )
    done = {"status": "done", "phase": "finished", "runc_sha256": "t" * 64, "message": None}
    failed = {"status": "failed", "phase": "none", "runc_sha256": None, "message": "it broke"}
    for event in [
        _display(nonce, "a", "locked"),
        _display(nonce, "a", "swapped", "t" * 64),
        _display("fedcba9876543210", "a", "verified"),  # not this job's nonce: host output
        _display(nonce, "zz", "locked"),  # not a host of the job
        {"event": "verbose", "stdout": f"{EVENT_PREFIX} {nonce} not json"},
        _event("runner_on_ok", "a", {"runc_rollout_outcome": done}),
        _event("runner_on_ok", "a", {"runc_rollout_outcome": failed}),
        _display(nonce, "a", "finished"),  # after its outcome: ignored
        _event("runner_on_failed", "b", {"runc_rollout_outcome": failed}),
        _event("runner_on_unreachable", "c", {"msg": "Host key verification failed."}),
        _event("runner_on_failed", "d", {"msg": "non-zero return code", "stdout": "boom"}),
    ]:
        assert events(event) is True
    events.finish("failed", 2)
    assert phases == [("a", "locked", None), ("a", "swapped", "t" * 64)]
    assert outcomes["a"] == HostOutcome("done", "finished", "t" * 64, None)
    assert outcomes["b"] == HostOutcome("failed", "backed_up", None, "it broke")
    assert outcomes["c"].status == "unreachable" and "Host key" in str(outcomes["c"].message)
    assert outcomes["d"] == HostOutcome("failed", "backed_up", None, "non-zero return code: boom")


class _NoHost:
    """An action whose connection must never be used: bad arguments fail before the host."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the host was reached ({name})")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"procedure": "dance"}, "procedure"),
        ({"procedure": "upgrade", "sha256": "nope"}, "sha256"),
        ({"procedure": "upgrade", "run_id": "../../etc"}, "run_id"),
        ({"procedure": "upgrade", "verify": {"timeout_seconds": -1}}, "verify.timeout_seconds"),
        ({"procedure": "upgrade", "unknown": 1}, "unknown"),
    ],
)
def test_action_refuses_bad_arguments_before_the_host(args: dict[str, Any], message: str) -> None:
    result = run_task(_NoHost(), args, {"inventory_hostname": "h1"})
    assert result["failed"] is True
    assert result["msg"].startswith(f"runc_rollout: {message}"), result["msg"]


def test_inventory_checks_host_keys_and_carries_the_plan() -> None:
    plan = small_plan()
    inventory = plan_inventory(plan, Path("/etc/kh"))
    hosts = inventory["all"]["hosts"]
    assert set(hosts) == {"h1", "h2", "h3"}
    common = hosts["h1"]["ansible_ssh_common_args"]["__ansible_unsafe"]
    assert "-o StrictHostKeyChecking=yes" in common
    assert "UserKnownHostsFile=/etc/kh" in common
    assert "ansible_user" not in hosts["h1"]  # ssh_config's User, else the local user
    assert hosts["h1"]["ansible_become"] is False
    target = SshTarget(
        address="10.0.0.1", port=2222, user="ops", known_hosts_file="/k", become=True
    )
    variables = host_vars(target, None)
    assert variables["ansible_become"] is True and variables["ansible_port"] == 2222
    assert "UserKnownHostsFile=/k" in variables["ansible_ssh_common_args"]
    assert not any("pass" in key for key in variables)


def test_job_environment_keeps_no_inherited_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("ANSIBLE_BECOME_PASS", "s3cr3t")
    env = {**os.environ, "ANSIBLE_STDOUT_CALLBACK": "awx_display", "ANSIBLE_PIPELINING": "True"}
    kept = kept_environment(env, {"ANSIBLE_PIPELINING": "True"})
    assert "s3cr3t" not in kept.values()
    assert kept["ANSIBLE_STDOUT_CALLBACK"] == "awx_display"
    assert kept["ANSIBLE_PIPELINING"] == "True" and "PATH" in kept


def test_playbooks_use_only_builtin_modules_and_the_action() -> None:
    """Every task's module is ansible.builtin or this project's own action (no Galaxy
    collection needed)."""
    keywords = {"name", "register", "when", "vars"}
    actions = {
        key
        for path in PLAYBOOK_DIR.glob("*.yml")
        for play in yaml.safe_load(path.read_text())
        for task in play["tasks"]
        for key in task
        if key not in keywords
    }
    assert "runc_rollout" in actions
    assert all(a == "runc_rollout" or a.startswith("ansible.builtin.") for a in actions), actions


def test_ansible_lint_passes() -> None:
    """ansible-lint is a dev dependency: its production profile must pass, offline."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-lint"), "--offline", str(PLAYBOOK_DIR)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


HOSTILE = "/x/{{ lookup('pipe', 'touch MARK') }}/runc"


def test_nothing_from_a_host_or_a_plan_is_templated_by_ansible(tmp_path: Path) -> None:
    """Hostile values in every field the backend writes (inventory and extra vars), read by
    Ansible itself and templated the way a playbook would: the pipe lookup never runs."""
    mark = tmp_path / "templated"
    hostile = HOSTILE.replace("MARK", str(mark))
    plan = small_plan()
    ssh = SshTarget(
        address=hostile,
        user=hostile,
        private_key_file=hostile,
        known_hosts_file=hostile,
    )
    host = dataclasses.replace(
        plan.waves[0].hosts[0],
        ssh=ssh,
        verify=VerifySpec(image="lab/busybox", command=hostile, exec_container="keepalive"),
        before=HostBefore(runc_path=hostile, runc_sha256="b" * 64),
    )
    wave = plan.waves[0].model_copy(update={"hosts": [host]})
    plan = plan.model_copy(
        update={
            "waves": [wave],
            "artifact": plan.artifact.model_copy(update={"path": hostile, "version": hostile}),
        }
    ).sealed()
    inventory = plan_inventory(plan, None)
    inventory["all"]["hosts"]["h1"]["ansible_connection"] = "local"
    (tmp_path / "hosts.json").write_text(json.dumps(inventory))  # as ansible-runner writes it
    extravars = upgrade_extravars(plan, hostile, "0123456789abcdef")
    play = {
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {"ansible.builtin.debug": {"msg": "{{ hostvars[inventory_hostname] | to_json }}"}},
            *[{"ansible.builtin.debug": {"msg": f"{{{{ {name} }}}}"}} for name in extravars],
        ],
    }
    (tmp_path / "play.yml").write_text(yaml.safe_dump([play]))
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "hosts.json", "play.yml", "-e", json.dumps(extravars)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert hostile in done.stdout
    assert not mark.exists()


def test_ssh_arguments_keep_their_quoting_for_ansible() -> None:
    """A known_hosts path with spaces stays one argument; one carrying an option adds none."""
    for known in ("/etc/my hosts", r"/x -o ProxyCommand=touch\ /tmp/pwned"):
        common = host_vars(SshTarget(address="h", known_hosts_file=known), None)
        words = shlex.split(common["ansible_ssh_common_args"])
        assert words == [
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ]


def test_the_plans_refusals_reach_the_action_as_its_arguments() -> None:
    """A plan that did not know its runc's version: the refusals go to each host's task as
    `runc_rollout_refuse`, which the action's arguments (`HostTask`) accept as they come."""
    plan = small_plan()
    assert "runc_rollout_refuse" not in upgrade_extravars(plan, "run-1", "0123456789abcdef")
    refuse = [TargetRefusal(id="runc-rc93-pipe-hang", affected=[VersionRange(fixed="1.0")])]
    policy = TargetPolicy(advisories_source="shipped", refuse=refuse)
    planned = plan.model_copy(update={"target": policy}).sealed()
    extravars = upgrade_extravars(planned, "run-1", "0123456789abcdef")
    as_ansible_reads_it = DataLoader().load(json.dumps(extravars))  # tagged unsafe strings
    args = {"procedure": "upgrade", "refuse": as_ansible_reads_it["runc_rollout_refuse"]}
    assert HostTask.model_validate(args).refuse == refuse


def test_a_gzip_this_process_did_not_write_is_never_pushed(tmp_path: Path) -> None:
    """The jobs' directory is a run's folder: a `runc-*.gz` found there (left by another
    process, or planted) is replaced by the gzip of the reviewed artifact, not reused."""
    runc = tmp_path / "runc"
    runc.write_bytes(b"\x7fELF the reviewed runc" * 100)
    sha = hashlib.sha256(runc.read_bytes()).hexdigest()
    artifact = Artifact(path=str(runc), sha256=sha, size=runc.stat().st_size)
    jobs = tmp_path / "ansible"
    jobs.mkdir()
    planted = jobs / f"runc-{sha[:16]}.gz"
    planted.write_bytes(gzip.compress(b"\x7fELF something else"))
    backend = AnsibleBackend(jobs, 1)
    (_, path) = backend._payload(jobs, artifact)["runc_rollout_artifact_gz"]
    assert path == planted and gzip.decompress(path.read_bytes()) == runc.read_bytes()
