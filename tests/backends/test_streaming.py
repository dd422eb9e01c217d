"""Execution nodes without a host: the `--execution-node` values, the split of a wave by node,
and what the transmit stream carries (captured by a node command that only stores it)."""

from __future__ import annotations

import io
import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from ansible_runner.utils.streaming import unstream_dir

from orchestrator.backends.ansible.runner import JobSpec, run_job
from orchestrator.backends.ansible.streaming import (
    ARTIFACT_NAME,
    KNOWN_HOSTS_NAME,
    ExecutionNode,
    parse_execution_nodes,
    split_by_node,
)
from orchestrator.errors import BadInput


def test_execution_node_values() -> None:
    nodes = parse_execution_nodes(["zone-a=ssh exec-a 'ansible-runner' worker", "b=w"])
    assert nodes == {
        "zone-a": ExecutionNode("zone-a", ("ssh", "exec-a", "ansible-runner", "worker")),
        "b": ExecutionNode("b", ("w",)),
    }
    for value, says in (
        ("ssh exec-a worker", "DOMAIN=COMMAND"),
        ("=ssh x", "DOMAIN=COMMAND"),
        ("zone-a=", "no command"),
        ("zone-a=ssh 'x", "cannot be split"),
        ("zone-a=/nonexistent/ansible-runner worker", "no such program"),
    ):
        with pytest.raises(BadInput, match=says):
            parse_execution_nodes([value])
    with pytest.raises(BadInput, match="given twice"):
        parse_execution_nodes(["a=ssh x", "a=ssh y"])


def test_a_wave_splits_by_its_hosts_domains() -> None:
    hosts = {"a1": "a", "b1": "b", "c1": "c", "a2": "a"}
    nodes = parse_execution_nodes(["a=ssh node-a", "b=ssh node-b"])
    assert split_by_node(hosts, nodes) == [
        (nodes["a"], ["a1", "a2"]),
        (nodes["b"], ["b1"]),
        (None, ["c1"]),  # no node for c: on the controller
    ]


def test_the_stream_carries_the_job_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, password = "controller-t0ken-9f3a", "become-pw-51c2"
    monkeypatch.setenv("RUNC_ROLLOUT_TEST_TOKEN", token)
    artifact = tmp_path / "runc"
    artifact.write_bytes(b"\x7fELF not really runc")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("h1 ssh-ed25519 AAAA\n")
    stream = tmp_path / "stream"
    # A "node" that stores the stream and never answers: the job is lost, its hosts unreachable.
    node = ExecutionNode("zone-a", ("sh", "-c", f"cat > {shlex.quote(str(stream))}"))
    spec = JobSpec(
        playbook="upgrade.yml",
        inventory={"all": {"hosts": {"h1": {"ansible_host": "192.0.2.1"}, "h2": {}}}},
        hosts=["h1", "h2"],
        extravars={"runc_rollout_artifact": ARTIFACT_NAME},
        forks=4,
        become_password=password,
        node=node,
        files={ARTIFACT_NAME: artifact, KNOWN_HOSTS_NAME: known_hosts},
    )
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any]) -> bool:
        events.append(event)
        return True

    status, _ = run_job(tmp_path / "jobs", spec, handler)

    assert status == "error"
    lost = {e["event_data"]["host"]: e for e in events if e["event"] == "runner_on_unreachable"}
    assert set(lost) == {"h1", "h2"}
    assert lost["h1"]["event_data"]["res"]["msg"].startswith("execution node zone-a lost: ")

    raw = stream.read_bytes()
    assert token.encode() not in raw
    reader = io.BytesIO(raw)
    options = json.loads(reader.readline())["kwargs"]
    assert options.pop("passwords") == {"^BECOME password.*:\\s*?$": password}
    (data_dir,) = (tmp_path / "jobs").iterdir()
    text = json.dumps(options)
    assert password not in text and str(data_dir) not in text and str(tmp_path) not in text
    assert options["playbook"] == "upgrade.yml" and options["limit"] == "h1,h2"
    assert not any(key == "PATH" for key in options["envvars"])  # the node's own
    length = json.loads(reader.readline())["zipfile"]
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    unstream_dir(reader, length, str(unpacked))
    assert json.loads(reader.readline()) == {"eof": True}
    project = unpacked / "project"
    assert (project / ARTIFACT_NAME).read_bytes() == artifact.read_bytes()
    assert (project / KNOWN_HOSTS_NAME).read_text() == known_hosts.read_text()
    assert (project / "upgrade.yml").is_file()
    assert not (unpacked / "env").exists()  # suppress_env_files: no passwords file
    for directory in (unpacked, data_dir):
        for path in directory.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert password.encode() not in content and token.encode() not in content, path
