"""The incident probe as data: which way it starts its container, what its script is given, how
its output is read, and what the plan says of it. (Lab tests run it on real hosts.)"""

from __future__ import annotations

import json
import subprocess

import pytest

from orchestrator.host import probe, trigger
from orchestrator.host.procedure import probe_command
from orchestrator.models import HostFacts, ProbeResult, VerifySpec


def test_method_is_docker_with_an_image_else_containerd_else_bundle() -> None:
    assert probe.choose_method(True, True, "lab/busybox") == "docker"
    assert probe.choose_method(True, True, None) == "containerd"
    assert probe.choose_method(False, True, "lab/busybox") == "containerd"
    assert probe.choose_method(False, False, "lab/busybox") == "bundle"


def test_spec_runs_without_privileges() -> None:
    spec = probe.oci_spec()
    process = spec["process"]
    assert process["noNewPrivileges"] is True
    assert all(not caps for caps in process["capabilities"].values())
    assert spec["root"]["readonly"] is True
    assert {"type": "network"} in spec["linux"]["namespaces"]


PARAMS = ("TARGET", "PROBE_UIDS", "STALE", "MACHINE", "PROFILE", "SPEC", "HOLDER")


def _params(script: str) -> dict[str, str]:
    """The script's parameters, as the shell sees them once its header has run."""
    header = script.split("\n# The incident probe's host script")[0]
    printed = " ".join(f'"${name}"' for name in PARAMS)
    shown = subprocess.run(
        ["sh", "-c", f"{header}\nprintf '%s\\0' {printed}"], capture_output=True, check=True
    )
    return dict(zip(PARAMS, shown.stdout.decode().split("\0"), strict=False))


def test_script_carries_profile_spec_and_holder_as_quoted_data() -> None:
    hostile = "/usr/local/sbin/$(touch /tmp/owned) runc"
    command = probe.probe(
        "bundle",
        hostile,
        uids=(2_147_000_007,),
        timeout=10,
        run_id="r1",
        holds_lock=True,
        machine="aarch64",
    )
    params = _params(command.script)
    assert params["TARGET"] == hostile
    assert params["PROBE_UIDS"] == "2147000007"
    assert params["STALE"] == "remove"
    # Only the host's own machine's profile is sent.
    assert params["MACHINE"] == "aarch64"
    assert json.loads(params["PROFILE"])["architectures"][0] == "SCMP_ARCH_AARCH64"
    assert "SCMP_ARCH_X86_64" not in command.script
    assert json.loads(params["SPEC"])["process"]["noNewPrivileges"] is True
    assert params["HOLDER"] == trigger.holder_source()
    assert command.timeout > 10
    # The whole script is valid POSIX sh, and nothing a host reports is ever in it.
    checked = subprocess.run(["sh", "-n"], input=command.script, text=True, capture_output=True)
    assert checked.returncode == 0, checked.stderr


def test_a_machine_without_a_profile_gets_none_and_the_probe_says_so() -> None:
    command = probe.probe(
        "bundle", "/usr/bin/runc", uids=(5,), timeout=5, run_id="r", holds_lock=False,
        machine="riscv64",
    )  # fmt: skip
    assert _params(command.script)["PROFILE"] == ""
    assert 'give_up unavailable "no seccomp profile for machine $machine"' in command.script


def test_audit_probe_keeps_what_others_left() -> None:
    command = probe.probe(
        "docker", "/usr/bin/runc", uids=(5,), timeout=5, run_id="audit", image="img",
        holds_lock=False, machine="x86_64",
    )  # fmt: skip
    assert _params(command.script)["STALE"] == "keep"


@pytest.mark.parametrize(
    ("stdout", "status", "outcome", "detail", "seconds"),
    [
        ("probe_holder=held=1033 soft=16384\nprobe=passed\nmethod=docker\nseconds=0.41\n", 0,
         "passed", "", 0.41),
        ("probe=hung\nmethod=bundle\nseconds=10.01\nwchan=anon_pipe_write\n", 70,
         "hung", "anon_pipe_write", 10.01),
        ("probe=failed\nmethod=bundle\nseconds=0.2\nrc=1\nreason=exec failed\n", 70,
         "failed", "exec failed", 0.2),
        ("probe=undecidable\nmethod=docker\nreason=fs.pipe-user-pages-soft is 0\n", 70,
         "undecidable", "fs.pipe-user-pages-soft is 0", None),
        ("probe=unavailable\nmethod=docker\nreason=no python3 on the host\n", 70,
         "unavailable", "no python3 on the host", None),
    ],
)  # fmt: skip
def test_parse(stdout: str, status: int, outcome: str, detail: str, seconds: float | None) -> None:
    result = probe.parse_probe(stdout, status, "docker")
    assert (result.outcome, result.detail, result.seconds) == (outcome, detail, seconds)


@pytest.mark.parametrize(
    ("stdout", "status"),
    [
        ("", 0),  # passed without saying so
        ("probe=passed\nseconds=0.1\n", 70),  # says passed, but the script failed
        ("probe=hung\n", 0),  # says hung, but exit 0
        ("probe=splendid\n", 0),
        ("garbage\x1b[2J\n", 137),  # killed by the connection's timeout
    ],
)
def test_anything_unclear_is_a_failure(stdout: str, status: int) -> None:
    result = probe.parse_probe(stdout, status, "bundle")
    assert result.outcome == "failed"
    assert f"exit {status}" in result.detail


def test_detail_from_the_host_is_cut_short() -> None:
    result = probe.parse_probe(f"probe=failed\nreason={'x' * 5000}\n", 70, "bundle")
    assert len(result.detail) == 200


def test_summaries_say_what_was_proven() -> None:
    passed = ProbeResult(outcome="passed", method="docker", seconds=0.4)
    hung = ProbeResult(outcome="hung", method="docker", seconds=10, detail="pipe_write")
    unsure = ProbeResult(outcome="undecidable", method="bundle", detail="soft limit is 0")
    assert passed.summary() == "probe (docker): passed in 0.4 s"
    assert hung.summary() == "probe (docker): hung in pipe_write after 10 s"
    assert unsure.summary() == "probe (bundle): cannot decide: soft limit is 0"


def test_verify_spec_defaults_to_probing_as_uids_of_the_run() -> None:
    spec = VerifySpec()
    assert spec.probe and spec.probe_uid is None
    assert "probe_uid" not in spec.model_dump(mode="json")  # plans keep their hash
    assert VerifySpec.model_validate({"probe_uid": 2_147_000_000}).probe_uid == 2_147_000_000


def test_each_run_probes_as_uids_of_its_own_from_a_high_range() -> None:
    """No public default a tenant could run as: each run draws its own candidates (a resumed
    run the same ones), from a range documented in the README, above every login and
    subordinate id range and below the lab's own per-host uids."""
    first, again, other = (
        probe.probe_uids("run-a"),
        probe.probe_uids("run-a"),
        probe.probe_uids("run-b"),
    )
    assert first == again and not set(first) & set(other)
    assert len(set(first)) == len(first) == probe.PROBE_UID_CANDIDATES
    assert all(uid in probe.PROBE_UID_RANGE for uid in first + other)
    assert probe.PROBE_UID_RANGE.stop <= 2_147_000_000 and probe.PROBE_UID_RANGE.start >= 1 << 30


@pytest.mark.parametrize(("forced", "expected"), [(None, "run"), (2_147_000_009, "forced")])
def test_the_probe_tries_the_runs_uids_unless_a_host_forces_one(
    forced: int | None, expected: str
) -> None:
    facts = HostFacts.model_construct(  # a light host
        dockerd=None, containerd=None, runc=None, arch="x86_64"
    )
    spec = VerifySpec(probe_uid=forced)
    command, _ = probe_command(facts, "/usr/sbin/runc", spec, run_id="run-a", holds_lock=True)
    uids = _params(command.script)["PROBE_UIDS"].split()
    runs = [str(uid) for uid in probe.probe_uids("run-a")]
    assert uids == (runs if expected == "run" else ["2147000009"])
