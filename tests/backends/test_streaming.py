"""Execution nodes without a host: the `--execution-node` values, the split of a wave by node,
and what the transmit stream carries (captured by a node command that only stores it)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shlex
import signal
import stat
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ansible_runner.utils.streaming import unstream_dir

from orchestrator.backends.ansible.runner import AnsibleBackend, JobSpec, run_job
from orchestrator.backends.ansible.streaming import (
    ARTIFACT_NAME,
    KNOWN_HOSTS_NAME,
    ExecutionNode,
    parse_execution_nodes,
    split_by_node,
)
from orchestrator.backends.base import WaveContext
from orchestrator.errors import BadInput
from orchestrator.host.procedure import HostOutcome
from orchestrator.models import Artifact, Wave
from tests.run.test_journal import small_plan


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


def _worker_stream(entries: list[tuple[str, int, bytes]], events: list[dict[str, Any]]) -> bytes:
    """What a hostile worker could send: artifacts zipped from `entries` (name, file mode,
    content), then `events`, then its last status."""
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        for name, mode, content in entries:
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # unix: the mode is in external_attr
            info.external_attr = mode << 16
            archive.writestr(info, content)
    after = [*events, {"status": "successful"}, {"eof": True}]
    # The zip's base64 follows its line with no newline of its own, as a worker sends it.
    return (
        json.dumps({"zipfile": len(packed.getvalue())}).encode()
        + b"\n"
        + base64.b64encode(packed.getvalue())
        + b"".join(json.dumps(line).encode() + b"\n" for line in after)
    )


def _run_hostile_node(tmp_path: Path, stream: bytes) -> tuple[str, list[dict[str, Any]]]:
    """One job on a node whose command answers with `stream` whatever it is sent."""
    answer = tmp_path / "answer"
    answer.write_bytes(stream)
    command = f"cat > /dev/null; cat {shlex.quote(str(answer))}"
    spec = JobSpec(
        playbook="upgrade.yml",
        inventory={"all": {"hosts": {"h1": {}}}},
        hosts=["h1"],
        extravars={},
        forks=1,
        node=ExecutionNode("zone-a", ("sh", "-c", command)),
    )
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any]) -> bool:
        events.append(event)
        return True

    status, _ = run_job(tmp_path / "jobs", spec, handler)
    return status, events


def test_a_node_cannot_write_outside_its_job_through_a_link_in_its_artifacts(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    entries = [
        ("evil", stat.S_IFLNK | 0o777, str(outside).encode()),
        ("evil/planted.txt", stat.S_IFREG | 0o644, b"planted"),
    ]
    status, events = _run_hostile_node(tmp_path, _worker_stream(entries, []))

    assert list(outside.iterdir()) == []
    assert status == "error"
    (lost,) = [e for e in events if e["event"] == "runner_on_unreachable"]
    assert "entry 'evil' refused: a symbolic link" in lost["event_data"]["res"]["msg"]


@pytest.mark.parametrize(
    ("name", "mode", "says"),
    [
        ("../escaped.txt", stat.S_IFREG | 0o644, "'..'"),
        ("/tmp/absolute.txt", stat.S_IFREG | 0o644, "an absolute name"),
        ("fifo", stat.S_IFIFO | 0o644, "not a regular file"),
    ],
)
def test_a_nodes_artifacts_are_only_files_and_folders_inside_the_job(
    tmp_path: Path, name: str, mode: int, says: str
) -> None:
    status, events = _run_hostile_node(tmp_path, _worker_stream([(name, mode, b"x")], []))

    assert status == "error"
    (lost,) = [e for e in events if e["event"] == "runner_on_unreachable"]
    assert says in lost["event_data"]["res"]["msg"]
    assert not (tmp_path / "jobs" / "escaped.txt").exists()


def test_a_nodes_event_cannot_name_a_file_outside_the_job(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # A folder its artifacts may hold, then an event whose name climbs out through it.
    climb = "x/" + "../" * 30 + str(outside).lstrip("/") + "/event"
    event = {"event": "verbose", "counter": 1, "uuid": climb, "stdout": ""}
    entries = [("job_events/1-x/", stat.S_IFDIR | 0o755, b"")]
    _run_hostile_node(tmp_path, _worker_stream(entries, [event]))

    assert list(outside.iterdir()) == []


def test_each_node_gets_its_own_domains_hosts_and_no_url_in_a_command_line(
    tmp_path: Path,
) -> None:
    """Two domains on two nodes that store what they are sent: each stream's inventory holds
    that domain's hosts only; the artifact URL (a presigned token) is in the inventory, never in
    the extra vars, which ansible-runner puts on ansible-playbook's command line."""
    url = "https://mirror.internal/runc?X-Amz-Signature=s3cr3t"
    plan = small_plan()
    hosts = [replace(host, domain="a" if host.name == "h1" else "b") for host in plan.hosts]
    artifact = tmp_path / "runc"
    artifact.write_bytes(b"\x7fELF not really runc")
    sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    plan = plan.model_copy(
        update={
            "waves": [Wave(index=0, hosts=hosts, max_failures=3, domains={"a": 1, "b": 2})],
            "domains": {"a": 1, "b": 2},
            "artifact": Artifact(path=str(artifact), sha256=sha, size=20, url=url),
        }
    ).sealed()
    streams = {domain: tmp_path / f"stream-{domain}" for domain in ("a", "b")}
    nodes = {
        domain: ExecutionNode(domain, ("sh", "-c", f"cat > {shlex.quote(str(path))}"))
        for domain, path in streams.items()
    }
    backend = AnsibleBackend(tmp_path / "jobs", 4, execution_nodes=nodes)
    outcomes: dict[str, HostOutcome] = {}
    context = WaveContext(
        plan=plan,
        run_id="run-1",
        on_phase=lambda *args: None,
        on_outcome=outcomes.__setitem__,
        phase_of=lambda name: "none",
    )
    backend.run_wave({host.name: host for host in hosts}, context)

    assert {outcome.status for outcome in outcomes.values()} == {"unreachable"}
    for domain, names in (("a", {"h1"}), ("b", {"h2", "h3"})):
        reader = io.BytesIO(streams[domain].read_bytes())
        options = json.loads(reader.readline())["kwargs"]
        unpacked = tmp_path / f"unpacked-{domain}"
        unpacked.mkdir()
        unstream_dir(reader, json.loads(reader.readline())["zipfile"], str(unpacked))
        inventory = json.loads((unpacked / options["inventory"]).read_text())
        assert set(inventory["all"]["hosts"]) == names
        assert url not in json.dumps(options["extravars"])
        assert json.dumps(url) in json.dumps(inventory)


def test_a_job_on_a_node_leaves_ctrl_c_to_the_controller(tmp_path: Path) -> None:
    """ansible-runner's streamers, made in the main thread without a cancel callback, replace
    the process's SIGINT handler with one that only sets a flag: Ctrl-C would then never
    interrupt a run (it completed, exit 0, in a lab test)."""
    before = signal.getsignal(signal.SIGINT)
    _run_hostile_node(tmp_path, b"")  # in this (the main) thread
    assert signal.getsignal(signal.SIGINT) is before
