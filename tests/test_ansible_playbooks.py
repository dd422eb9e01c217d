"""The playbooks without a lab: generated host steps in sync with hostside, syntax, the Jinja
facts parser against orchestrator.host.facts, the sysctl step against hostside's, the event handler,
the job's inventory and environment."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.backends.ansible.playbooks import FILES_DIR, PLAYBOOK_DIR, rendered_files
from orchestrator.backends.ansible.runner import (
    HostEvents,
    host_vars,
    kept_environment,
    plan_inventory,
    upgrade_extravars,
)
from orchestrator.host import commands
from orchestrator.host.facts import SYSTEMD_DEFAULT_PATH, parse_facts
from orchestrator.host.procedure import HostOutcome
from orchestrator.models import HostBefore, HostPhase, SshTarget, VerifySpec
from tests.test_facts_parse import (
    DEBIAN_HOST,
    DEBIAN_SHA,
    DEBIAN_VERSION,
    FULL_HOST,
    LAB_FULL_HOST,
    RC93_SHA,
    RC93_VERSION,
    binary,
    output,
    stat,
)
from tests.test_journal import small_plan

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


def test_generated_host_steps_match_hostside() -> None:
    """playbooks/files/ is what `python -m orchestrator.backends.ansible.playbooks` renders."""
    expected = rendered_files()
    on_disk = {path.name: path.read_text() for path in FILES_DIR.iterdir()}
    assert on_disk == expected, "run `python -m orchestrator.backends.ansible.playbooks`"


@pytest.mark.parametrize("playbook", ["upgrade.yml", "rollback.yml", "facts.yml"])
def test_playbooks_pass_syntax_check(playbook: str) -> None:
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "--syntax-check", "-i", "localhost,", str(PLAYBOOK_DIR / playbook)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _fixtures() -> dict[str, str]:
    daemon_json = (
        '{"default-runtime": "docker-runc",\n'
        ' "runtimes": {"docker-runc": {"path": "/usr/sbin/docker-runc"}}}\n'
    )
    flags = "/usr/bin/dockerd --add-runtime=custom=/opt/bin/runc --default-runtime custom "
    cri = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n'
        '  default_runtime_name = "runc"\n'
        '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n'
        '  BinaryName = "/usr/local/bin/runc"\n'
    )
    cri3 = (
        "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n"
        "  BinaryName = '/usr/bin/runc'\n"
    )
    sysctl_files = (
        "/etc/sysctl.d/10-local.conf\n/etc/sysctl.d/99-sysctl.conf\t/etc/sysctl.conf\n"
        "/run/sysctl.d/70-runtime.conf\n/etc/sysctl.conf\n"
    )
    sysctl_lines = (
        "/etc/sysctl.d/10-local.conf:1:fs.pipe-user-pages-soft=1000\n"
        "/etc/sysctl.d/99-sysctl.conf:7:fs.pipe-user-pages-soft = 163840\n"
        "/run/sysctl.d/70-runtime.conf:2: fs/pipe-user-pages-soft = 16384\n"
        "/etc/sysctl.conf:7:fs.pipe-user-pages-soft = 163840\n"
    )
    return {
        "debian": DEBIAN_HOST,
        "lab-full": LAB_FULL_HOST,
        "incident": FULL_HOST,
        "login-noise": "Welcome!\n" + FULL_HOST,
        "incomplete": FULL_HOST.rsplit("\n@@0123456789abcdef@@ end", 1)[0],
        "symlink": output(
            ("runtime-path", f"source=default\npath={SYSTEMD_DEFAULT_PATH}\n"),
            *binary("/usr/local/bin/runc", RC93_SHA, RC93_VERSION, real="/opt/runc/bin/runc"),
        ),
        "no-runc": output(("runtime-path", "source=default\npath=/usr/bin:/bin\n")),
        "docker-path": output(
            ("file docker /etc/docker/daemon.json", daemon_json),
            ("runtime-path", f"source=default\npath={SYSTEMD_DEFAULT_PATH}\n"),
            *binary("/usr/sbin/runc", DEBIAN_SHA, DEBIAN_VERSION),
            *binary("/usr/sbin/docker-runc", RC93_SHA, RC93_VERSION),
        ),
        "dockerd-flags": output(
            (
                "proc 10",
                f"comm=dockerd\nstat={stat(10, 'dockerd', 'S', 1, 100)}\ncmdline={flags}\n"
                "exe=/usr/bin/dockerd\npath=/usr/bin:/bin\nversion=Docker version 24.0.5\n",
            ),
            ("file docker /etc/docker/daemon.json", '{"default-runtime": "runc"}'),
            ("runtime-path", "source=dockerd\npath=/usr/bin:/bin\n"),
            *binary("/opt/bin/runc", RC93_SHA, RC93_VERSION),
        ),
        "containerd-cri": output(
            (
                "proc 500",
                f"comm=containerd\nstat={stat(500, 'containerd', 'S', 1, 100)}\n"
                "cmdline=/usr/local/bin/containerd\nexe=/x\npath=/usr/sbin:/usr/bin\nversion=\n",
            ),
            ("file containerd /etc/containerd/config.toml", cri),
            ("runtime-path", "source=containerd\npath=/usr/sbin:/usr/bin\n"),
            *binary("/usr/sbin/runc", DEBIAN_SHA, DEBIAN_VERSION),
            *binary("/usr/local/bin/runc", RC93_SHA, RC93_VERSION),
        ),
        "containerd-v3": output(
            ("file containerd /etc/containerd/config.toml", cri3),
            ("runtime-path", "source=default\npath=/usr/bin\n"),
            *binary("/usr/bin/runc", DEBIAN_SHA, DEBIAN_VERSION),
        ),
        "sysctl": output(
            ("sysctl-runtime", "163840\n"),
            ("sysctl-files", sysctl_files),
            ("sysctl-lines", sysctl_lines),
        ),
        "stuck-and-daemons": output(
            *[
                (
                    f"proc {pid}",
                    f"comm={name}\nstat={stat(pid, name, 'S', 1, pid * 10)}\ncmdline={name}\n"
                    f"exe=/usr/bin/{name}\npath=/usr/bin\nversion=\n",
                )
                for pid, name in ((300, "dockerd"), (200, "dockerd"), (100, "containerd"))
            ],
            (
                "proc 9",
                f"comm=runc:[2:INIT]\nstat={stat(9, 'runc:[2:INIT]', 'S', 8, 1)}\n"
                "cmdline=runc init\nwchan=pipe_wait\n",
            ),
            (
                "proc 11",
                f"comm=exe\nstat={stat(11, 'exe', 'D', 8, 1)}\ncmdline=/usr/bin/runc init\n"
                "wchan=pipe_write\n",
            ),
        ),
    }


def _expected(text: str) -> dict[str, Any]:
    """What the playbooks' parser must say, from orchestrator.host.facts."""
    try:
        facts = parse_facts("h", text)
    except Exception:
        return {"complete": False}
    runc = facts.runc
    return {
        "complete": True,
        "runc": None
        if runc is None
        else {
            "path": runc.path,
            "file": runc.file,
            "sha256": runc.sha256,
            "version": runc.version,
            "free_bytes": runc.free_bytes,
            "untrusted": runc.untrusted,
        },
        "runc_source": facts.runc_source,
        "sysctl_runtime": facts.sysctl_runtime,
        "sysctl_settings": sorted(
            (s.file, s.real_file, s.real_file or s.file, s.value) for s in facts.sysctl_settings
        ),
        "daemons": {
            name: [daemon.pid, daemon.start_ticks]
            for name, daemon in (("dockerd", facts.dockerd), ("containerd", facts.containerd))
            if daemon is not None
        },
        "dockerd": facts.dockerd is not None,
        "stuck": len(facts.stuck),
        "record_json": facts.record_json,
    }


def test_jinja_facts_parser_agrees_with_orchestrator_facts(tmp_path: Path) -> None:
    fixtures = _fixtures()
    (tmp_path / "fixtures.json").write_text(json.dumps(list(fixtures.values())))
    (tmp_path / "one.yml").write_text(
        yaml.safe_dump(
            [
                {
                    "ansible.builtin.import_tasks": str(PLAYBOOK_DIR / "tasks/parse-facts.yml"),
                    "vars": {"rr_facts_run": {"stdout": "{{ item }}"}},
                },
                {"ansible.builtin.set_fact": {"parsed": "{{ parsed | default([]) + [rr_facts] }}"}},
            ]
        )
    )
    play = {
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {
                "ansible.builtin.include_tasks": "one.yml",
                "loop": "{{ lookup('ansible.builtin.file', 'fixtures.json') | from_json }}",
            },
            {"ansible.builtin.copy": {"content": "{{ parsed | to_json }}", "dest": "out.json"}},
        ],
    }
    (tmp_path / "play.yml").write_text(yaml.safe_dump([play]))
    interpreter = f"ansible_python_interpreter={sys.executable}"
    done = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "play.yml", "-e", interpreter],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    parsed = json.loads((tmp_path / "out.json").read_text())
    for (name, text), got in zip(fixtures.items(), parsed, strict=True):
        want = _expected(text)
        if not want["complete"]:
            assert got["complete"] is False, name
            continue
        got["sysctl_settings"] = sorted(
            (s["file"], s["real_file"], s["path"], s["value"]) for s in got["sysctl_settings"]
        )
        assert got == want, name


@pytest.mark.parametrize("step", ["set-sysctl.sh", "backup-files.sh"])
def test_per_file_steps_do_what_hostside_does(step: str, tmp_path: Path) -> None:
    """files/set-sysctl.sh and backup-files.sh (loops over their arguments) leave the same bytes,
    backups and report as commands.set_sysctl and backup_files (one block per file); both run
    here on copies, with the host paths moved under tmp."""
    content = (
        "# raised\n  fs.pipe-user-pages-soft=163840\n-fs/pipe-user-pages-soft = 1 \r\n"
        "kernel.x = 1\nfs.pipe-user-pages-soft\t=\t7 # comment\n"
    )
    runs: dict[str, tuple[str, list[str], list[str]]] = {}
    for kind in ("hostside", "playbook"):
        root = tmp_path / kind
        (root / "files").mkdir(parents=True)
        (root / "proc").write_text("163840\n")
        conf = [root / "a.conf", root / "b.conf"]
        for path in conf:
            path.write_text(content)
        args: list[str] = []
        if kind == "playbook":
            script = (FILES_DIR / step).read_text()
            args = ["step", *map(str, conf)]
        elif step == "set-sysctl.sh":
            script = commands.set_sysctl(16384, [str(path) for path in conf]).script
        else:
            script = commands.backup_files([str(path) for path in conf]).script
        script = script.replace(commands.SYSCTL_PROC, str(root / "proc"))
        script = script.replace(commands.FILE_BACKUP_DIR, str(root / "files"))
        done = subprocess.run(
            ["sh", "-c", script, *args],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "VALUE": "16384"},
        )
        runs[kind] = (
            "".join(path.read_text() for path in conf) + (root / "proc").read_text(),
            sorted(path.name for path in (root / "files").iterdir()),
            done.stdout.replace(str(root), "ROOT").splitlines(),
        )
    assert runs["hostside"] == runs["playbook"]
    assert len(runs["playbook"][1]) == 1  # both files had the same content: one backup
    if step == "set-sysctl.sh":
        assert "fs.pipe-user-pages-soft = 16384" in runs["playbook"][0]


def _event(kind: str, host: str, task: str, res: dict[str, Any]) -> dict[str, Any]:
    return {"event": kind, "event_data": {"host": host, "task": task, "res": res}}


def test_event_handler_maps_phases_and_outcomes() -> None:
    phases: list[tuple[str, HostPhase, str | None]] = []
    outcomes: dict[str, HostOutcome] = {}

    def on_outcome(name: str, outcome: HostOutcome) -> None:
        assert name not in outcomes, "an outcome is reported once"
        outcomes[name] = outcome

    events = HostEvents(
        ["a", "b", "c", "d"],
        on_phase=lambda host, phase, sha: phases.append((host, phase, sha)),
        on_outcome=on_outcome,
        phase_of=lambda name: "backed_up",
        target_sha256="t" * 64,
    )
    done = {"status": "done", "phase": "finished", "runc_sha256": "t" * 64, "message": None}
    failed = {"status": "failed", "phase": None, "runc_sha256": None, "message": "it broke"}

    def report(outcome: dict[str, Any]) -> dict[str, Any]:
        return {"msg": json.dumps({"runc_rollout_outcome": outcome})}

    stdout_boom = {"msg": "non-zero return code", "stdout": "boom"}
    for event in [
        _event("runner_on_ok", "a", "[locked] Take the host-side lock", {}),
        _event("runner_on_ok", "a", "[swapped] Swap in the new runc", {}),
        _event("runner_on_ok", "a", "[finished] Note", {"ansible_facts": {"rr_runc_now": "o"}}),
        _event("runner_on_ok", "a", "Report the outcome", report(done)),
        _event("runner_on_ok", "a", "Report the outcome", report(failed)),
        _event("runner_on_failed", "b", "Report the outcome", report(failed)),
        _event("runner_on_unreachable", "c", "Gather", {"msg": "Host key verification failed."}),
        _event("runner_on_failed", "d", "[staged] Check the staged runc", stdout_boom),
        _event("runner_on_ok", "zz", "[locked] Take the host-side lock", {}),
    ]:
        assert events(event) is True
    events.finish("failed", 2)
    assert phases == [("a", "locked", None), ("a", "swapped", "t" * 64), ("a", "finished", "o")]
    assert outcomes["a"] == HostOutcome("done", "finished", "t" * 64, None)
    assert outcomes["b"] == HostOutcome("failed", "backed_up", None, "it broke")
    assert outcomes["c"].status == "unreachable" and "Host key" in str(outcomes["c"].message)
    assert outcomes["d"] == HostOutcome("failed", "backed_up", None, "non-zero return code: boom")


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


def test_playbooks_use_only_builtin_modules() -> None:
    """Every task's module is ansible.builtin (no Galaxy collection needed)."""
    actions: set[str] = set()

    def walk(tasks: list[dict[str, Any]]) -> None:
        for task in tasks:
            for key in ("block", "rescue", "always", "tasks"):
                walk(task.get(key, []))
            actions.update(k for k in task if "." in k)

    for path in PLAYBOOK_DIR.rglob("*.yml"):
        if path.parent.name == "vars":
            continue
        walk(yaml.safe_load(path.read_text()))
    assert actions and all(action.startswith("ansible.builtin.") for action in actions), actions


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
    extravars = upgrade_extravars(plan, hostile)
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
