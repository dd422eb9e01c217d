"""The operator's host check in the one host procedure, on a fake host: it runs last of the
verification, its failure rolls the host back with its output (bounded, sanitised) as the
reason; the planner takes it from the plan option or the host's variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.host import commands
from orchestrator.models import Artifact, InventoryHost, WaveOptions
from orchestrator.plan.planner import host_verify_spec
from tests.host.fakehost import NEW, FakeHost
from tests.host.test_procedure import assert_rolled_back, planned, upgrade

CHECK = "curl -sf http://127.0.0.1:10248/healthz"


@pytest.fixture
def artifact(tmp_path: Path) -> Artifact:
    from tests.host.fakehost import sha

    path = tmp_path / "runc"
    path.write_text(NEW)
    return Artifact(path=str(path), sha256=sha(NEW), size=len(NEW), version="1.1.5")


def test_a_passing_host_check_runs_last_of_the_verification(artifact: Artifact) -> None:
    host = FakeHost()
    outcome, _ = upgrade(host, artifact, planned(host_check=CHECK))
    assert outcome.status == "done"
    (verification,) = [batch for batch in host.batches if "host-check" in batch]
    assert verification[-2:] == ["facts", "host-check"]  # after the tool's own checks
    assert host.host_checks == [{"CHECK": CHECK, "HOST": "fake", "RUNC": "/usr/local/sbin/runc"}]


def test_a_failing_host_check_rolls_the_host_back_with_its_output_as_the_reason(
    artifact: Artifact,
) -> None:
    noisy = "kubelet: PLEG is not healthy\n\x1b[31mred\x1b[0m\n" + "x" * 5000
    host = FakeHost(host_check=(1, noisy))
    outcome, _ = upgrade(host, artifact, planned(host_check=CHECK))
    assert outcome.status == "failed"
    assert outcome.message is not None
    assert outcome.message.startswith(
        "host check failed (exit 1): kubelet: PLEG is not healthy / \\x1b[31mred\\x1b[0m / xxx"
    )
    assert outcome.message.endswith("...; rolled back to old runc")
    assert len(outcome.message) < 600 and "\x1b" not in outcome.message
    assert_rolled_back(host)


def test_a_host_check_that_times_out_says_so(artifact: Artifact) -> None:
    host = FakeHost(host_check=(commands.EXIT_KILLED, ""))
    outcome, _ = upgrade(host, artifact, planned(host_check=CHECK, host_check_timeout_seconds=5))
    assert outcome.message == "host check failed (timed out after 5s); rolled back to old runc"
    assert_rolled_back(host)


def test_no_host_check_no_step(artifact: Artifact) -> None:
    host = FakeHost()
    assert upgrade(host, artifact)[0].status == "done"
    assert not any("host-check" in batch for batch in host.batches)


def test_the_plan_option_wins_over_the_hosts_variable() -> None:
    own = InventoryHost(name="a", vars={"runc_rollout_host_check": "systemctl is-active kubelet"})
    assert host_verify_spec(own, WaveOptions()).host_check == "systemctl is-active kubelet"
    assert host_verify_spec(own, WaveOptions(host_check=CHECK)).host_check == CHECK
    assert host_verify_spec(InventoryHost(name="b"), WaveOptions()).host_check is None
    spec = host_verify_spec(own, WaveOptions(host_check_timeout=7))
    assert spec.host_check_timeout_seconds == 7
    assert "host_check" not in host_verify_spec(InventoryHost(name="b"), WaveOptions()).model_dump(
        mode="json"
    )


def test_a_host_variable_with_a_newline_is_refused_naming_it() -> None:
    from orchestrator.errors import BadInput

    bad = InventoryHost(name="a", vars={"runc_rollout_host_check": "true\nrm -rf /"})
    with pytest.raises(BadInput, match="--host-check or runc_rollout_host_check"):
        host_verify_spec(bad, WaveOptions())
