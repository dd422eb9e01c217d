"""How the new runc reaches real lab hosts: fetched by each host from the plan's URL
(a local HTTP server on a loopback address), refused on the host when the URL serves another
file, taken from the host's own backup store, else pushed as gzip; with the bytes the
controller sent each host in the journal. Both backends."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from tests.conftest import LabFleet
from tests.host.test_commands import Flood, serving_flood
from tests.run.test_apply_lab import host_state, make_plan, sha256

PUSH_OVERHEAD = 200_000  # bytes a host gets besides the artifact: scripts and records


class Mirror:
    """An HTTP server on a loopback address serving one directory; counts the GETs per path."""

    def __init__(self, root: Path) -> None:
        self.gets: dict[str, int] = {}
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

            def do_GET(self) -> None:
                mirror.gets[self.path] = mirror.gets.get(self.path, 0) + 1
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def mirror(artifact: Path, tmp_path: Path) -> Iterator[Mirror]:
    root = tmp_path / "mirror"
    root.mkdir()
    (root / "runc").write_bytes(artifact.read_bytes())
    tail = b"\n# not the reviewed binary\n"  # as long as the artifact: its sha256 tells
    (root / "other").write_bytes(artifact.read_bytes()[: -len(tail)] + tail)
    served = Mirror(root)
    yield served
    served.close()


def apply(plan: Path, runs: Path, executor: str) -> tuple[int, dict[str, dict[str, object]]]:
    code = main(["apply", str(plan), "--yes", "--executor", executor, "--runs-dir", str(runs)])
    (run_dir,) = runs.iterdir()
    return code, json.loads((run_dir / "state.json").read_text())["hosts"]


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_hosts_fetch_the_artifact_from_the_plans_url(
    clean_lab: LabFleet, artifact: Path, mirror: Mirror, tmp_path: Path, executor: str
) -> None:
    plan = tmp_path / "plan.json"
    make_plan(clean_lab, artifact, plan, "--artifact-url", f"{mirror.url}/runc")
    assert json.loads(plan.read_text())["artifact"]["url"] == f"{mirror.url}/runc"
    code, hosts = apply(plan, tmp_path / "runs", executor)
    assert code == ExitCode.OK
    for name, host in hosts.items():
        assert (host["status"], host["delivery"]) == ("done", "url"), (name, host)
        assert 0 < int(str(host["sent_bytes"])) < PUSH_OVERHEAD, (name, host)
        assert host_state(clean_lab, name)["runc"] == sha256(artifact)
    assert mirror.gets == {"/runc": len(clean_lab.hosts)}


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_a_url_serving_another_file_is_refused_on_the_host_before_the_swap(
    clean_lab: LabFleet, artifact: Path, mirror: Mirror, tmp_path: Path, executor: str
) -> None:
    before = {host.name: host_state(clean_lab, host.name) for host in clean_lab.hosts}
    plan = tmp_path / "plan.json"
    make_plan(clean_lab, artifact, plan, "--artifact-url", f"{mirror.url}/other")
    code, hosts = apply(plan, tmp_path / "runs", executor)
    assert code == ExitCode.BUDGET_EXCEEDED  # the canary failed: the run halts there
    (canary,) = [name for name, host in hosts.items() if host["status"] == "failed"]
    message = str(hosts[canary]["message"])
    assert f"{mirror.url}/other served sha256 {sha256(tmp_path / 'mirror' / 'other')}" in message
    assert message.endswith("; not touched")
    assert hosts[canary]["phase"] == "none"
    assert mirror.gets == {"/other": 1}
    for name, state in before.items():
        assert host_state(clean_lab, name) == state, name  # nothing staged, locked or swapped


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_a_url_serving_an_endless_file_fills_no_host(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, executor: str
) -> None:
    """The host cuts what the URL serves at the artifact's size + 1: the canary fails, not
    touched, having taken a few MB at most of the 1 GiB on offer, and nothing is left."""
    before = {host.name: host_state(clean_lab, host.name) for host in clean_lab.hosts}
    plan = tmp_path / "plan.json"
    with serving_flood(limit=1 << 30) as flood:
        make_plan(clean_lab, artifact, plan, "--artifact-url", f"{flood}/runc")
        code, hosts = apply(plan, tmp_path / "runs", executor)
    assert code == ExitCode.BUDGET_EXCEEDED
    (canary,) = [name for name, host in hosts.items() if host["status"] == "failed"]
    size = artifact.stat().st_size
    message = str(hosts[canary]["message"])
    assert f"{flood}/runc served more than {size} bytes, not the plan's {size} bytes" in message
    assert message.endswith("; not touched") and hosts[canary]["phase"] == "none"
    assert Flood.sent < size + (32 << 20)
    for name, state in before.items():
        assert host_state(clean_lab, name) == state, name  # nothing staged, locked or swapped


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_the_push_is_gzip_and_skips_a_host_that_holds_the_artifact(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, executor: str
) -> None:
    holder = clean_lab.light_hosts[0]
    store = "/var/lib/runc-rollout/backup"
    clean_lab.ssh(holder, f"mkdir -p {store} && cp /usr/sbin/runc {store}/{sha256(artifact)}")
    plan = tmp_path / "plan.json"
    make_plan(clean_lab, artifact, plan)
    code, hosts = apply(plan, tmp_path / "runs", executor)
    assert code == ExitCode.OK
    size = artifact.stat().st_size
    for name, host in hosts.items():
        sent = int(str(host["sent_bytes"]))
        assert host["status"] == "done", (name, host)
        if name == holder.name:
            assert host["delivery"] == "backup" and sent < PUSH_OVERHEAD, host
        else:  # Debian's runc packs to about 40%
            assert host["delivery"] == "push-gzip" and size * 0.3 < sent < size * 0.5, host
        assert host_state(clean_lab, name)["runc"] == sha256(artifact)


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_push_plain_sends_the_artifact_as_it_is(
    clean_lab: LabFleet, artifact: Path, tmp_path: Path, executor: str
) -> None:
    plan = tmp_path / "plan.json"
    make_plan(clean_lab, artifact, plan)
    runs = tmp_path / "runs"
    argv = ["apply", str(plan), "--yes", "--executor", executor, "--runs-dir", str(runs)]
    assert main([*argv, "--push", "plain"]) == ExitCode.OK
    (run_dir,) = runs.iterdir()
    size = artifact.stat().st_size
    for name, host in json.loads((run_dir / "state.json").read_text())["hosts"].items():
        assert host["delivery"] == "push", (name, host)
        assert size < int(host["sent_bytes"]) < size + PUSH_OVERHEAD, (name, host)
