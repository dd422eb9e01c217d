"""The target policy: which runc versions a plan refuses, lists, or leaves to each host."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.diagnose.advisories import RC93_HANG, load_advisories
from orchestrator.errors import BadInput, ExitCode, PlanError
from orchestrator.models import Artifact, InventoryHost, Severity, TargetPolicy
from orchestrator.plan.target import (
    check_runc_version,
    refuse_severity,
    staged_refusal,
    target_policy,
)
from orchestrator.run.engine import load_plan
from tests.plan.test_plan_cli import stand_in_runc

ROOT = Path(__file__).resolve().parents[2]
FLEET40 = ROOT / "inventories" / "fleet40" / "hosts.ini"
ADVISORIES = load_advisories()
RC93_COMMIT = "12644e614e25b05da6fd08a38ffa0cfe1903fdec"


def policy(
    version: str | None,
    commit: str | None = None,
    *,
    accepted: Iterable[str] = (),
    severity: Severity | None = None,
) -> TargetPolicy:
    target = Artifact(path="/x/runc", sha256="0" * 64, size=1, version=version, commit=commit)
    return target_policy(target, ADVISORIES, "shipped", accepted=accepted, severity=severity)


@pytest.mark.parametrize("text", ["banana", "", "1", "v", "1.1.12\n", "1.1.12 extra", "9" * 70])
def test_a_string_that_is_not_a_runc_version_is_refused(text: str) -> None:
    with pytest.raises(BadInput, match="is not a runc version"):
        check_runc_version(text)


@pytest.mark.parametrize("text", ["1.1.12", "1.0.0-rc93", "v1.4.0-rc.3", "1.1.5+ds1"])
def test_runc_versions_pass(text: str) -> None:
    assert check_runc_version(text) == text


def test_rc93_is_refused_unless_accepted() -> None:
    with pytest.raises(BadInput, match=f"runc-rc93-pipe-hang.*--accept-advisory {RC93_HANG}"):
        policy("1.0.0-rc93")
    with pytest.raises(BadInput, match=RC93_HANG):  # known by its commit alone
        policy(None, RC93_COMMIT)
    accepted = policy("1.0.0-rc93", accepted=[RC93_HANG])
    by_id = {advisory.id: advisory for advisory in accepted.advisories}
    assert by_id[RC93_HANG].accepted and not by_id["CVE-2024-21626"].accepted
    assert accepted.accepted == (RC93_HANG,) and not accepted.refuse


def test_other_advisories_are_listed_not_refused_by_default() -> None:
    found = policy("1.0.0-rc95")
    ids = [advisory.id for advisory in found.advisories]
    assert "CVE-2024-21626" in ids and "CVE-2023-27561" in ids
    assert "CVE-2021-30465" not in ids  # fixed in rc95
    assert all(advisory.fixed_in for advisory in found.advisories)
    assert policy("1.4.0").advisories == ()


def test_refuse_severity_refuses_each_until_accepted() -> None:
    with pytest.raises(BadInput, match=r"CVE-2023-27561 \(and CVE-2024-21626"):
        policy("1.0.0-rc95", severity="high")
    high = [a.id for a in ADVISORIES if a.severity == "high" and a.id != RC93_HANG]
    with pytest.raises(BadInput, match="CVE-2024-45310"):  # low: refused at low only
        policy("1.1.13", severity="low", accepted=high)
    assert policy("1.1.13", severity="medium", accepted=high).advisories


def test_an_unknown_advisory_cannot_be_accepted() -> None:
    with pytest.raises(BadInput, match="--accept-advisory: no advisory is called CVE-1"):
        policy("1.1.12", accepted=["CVE-1"])


def test_without_a_version_the_refusals_travel_to_the_hosts() -> None:
    found = policy(None)
    assert [item.id for item in found.refuse] == [RC93_HANG]
    assert staged_refusal("1.0.0-rc93", RC93_COMMIT, found.refuse) is not None
    assert staged_refusal("1.0.0-rc93+ds1", "1.0.0~rc93+ds1-5", found.refuse) is not None
    assert staged_refusal("1.1.12", "v1.1.12-0-g51d5e94", found.refuse) is None
    assert policy(None, accepted=[RC93_HANG]).refuse == []
    strict = policy(None, severity="high")
    assert "CVE-2024-21626" in {item.id for item in strict.refuse}
    refusal = staged_refusal("1.0.0-rc95", None, strict.refuse)
    assert refusal is not None and "CVE-2024-21626" in refusal and "not touched" in refusal


def test_refuse_severity_from_the_inventory_the_strictest_wins() -> None:
    hosts = [
        InventoryHost(name="a", vars={"runc_rollout_refuse_severity": "High"}),
        InventoryHost(name="b", vars={"runc_rollout_refuse_severity": "medium"}),
        InventoryHost(name="c"),
    ]
    assert refuse_severity(None, hosts) == "medium"
    assert refuse_severity("low", hosts) == "low"
    assert refuse_severity(None, hosts[2:]) is None
    bad = InventoryHost(name="d", vars={"runc_rollout_refuse_severity": "severe"})
    with pytest.raises(BadInput, match="host d: runc_rollout_refuse_severity: 'severe'"):
        refuse_severity(None, [bad])
    with pytest.raises(BadInput, match="--refuse-severity: 'urgent' is not one of"):
        refuse_severity("urgent", [])


# ---------------------------------------------------------------------------------------------
# The command


@pytest.fixture
def runc(tmp_path: Path) -> tuple[Path, str]:
    return stand_in_runc(tmp_path / "runc", "1.0.0-rc93", "12644e61")


def plan(runc: tuple[Path, str], out: Path, *extra: str) -> int:
    path, digest = runc
    args = ["plan", "-i", str(FLEET40), "--runc", str(path), "--sha256", digest, "-o", str(out)]
    return main([*args, *extra])


def test_plan_refuses_rc93_with_exit_2_and_no_file(
    runc: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan.json"
    for how in (["--runc-version", "1.0.0-rc93"], ["--run-artifact"]):
        assert plan(runc, out, *how) == ExitCode.BAD_INPUT
        assert not out.exists()
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "runc-rc93-pipe-hang" in line and "--accept-advisory" in line


def test_an_accepted_rc93_is_in_the_plan_its_hash_and_the_review(
    runc: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan.json"
    args = ("--run-artifact", "--accept-advisory", RC93_HANG, "--format", "markdown")
    assert plan(runc, out, *args) == ExitCode.OK
    review = capsys.readouterr().out
    top = review[: review.index("## Summary")]
    assert f"`{RC93_HANG}` (accepted" in top and "**high** `CVE-2024-21626`" in top
    assert "fixed in 1.1.12" in top and "Provenance:** not checked" in top
    body = json.loads(out.read_text())
    assert body["target"]["accepted"] == [RC93_HANG]
    body["target"]["accepted"] = []
    out.write_text(json.dumps(body))
    with pytest.raises(PlanError, match="hash"):
        load_plan(out)


def test_refuse_severity_high_refuses_rc95(runc: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    assert plan(runc, out, "--runc-version", "1.0.0-rc95") == ExitCode.OK
    refused = ("--runc-version", "1.0.0-rc95", "--refuse-severity", "high")
    assert plan(runc, out, *refused) == ExitCode.BAD_INPUT
    assert plan(runc, out, "--runc-version", "banana") == ExitCode.BAD_INPUT


def test_a_plan_without_a_version_carries_the_refusals(
    runc: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan.json"
    assert plan(runc, out, "--format", "markdown") == ExitCode.OK
    assert "refuses, before its swap, a target with: `runc-rc93-pipe-hang`" in (
        capsys.readouterr().out
    )
    assert [item["id"] for item in json.loads(out.read_text())["target"]["refuse"]] == [RC93_HANG]


def test_a_distribution_build_is_named_beside_its_advisories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runc = stand_in_runc(tmp_path / "runc", "1.1.5+ds1", "1.1.5+ds1-1+deb12u1")
    assert plan(runc, tmp_path / "plan.json", "--run-artifact", "--format", "markdown") == 0
    top = capsys.readouterr().out.split("## Summary")[0]
    assert "**high** `CVE-2024-21626`" in top
    assert "it is the distribution build 1.1.5+ds1-1+deb12u1: its changelog may name" in top


def test_the_terminal_view_lists_them_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runc = stand_in_runc(tmp_path / "runc", "1.1.5+ds1", "1.1.5+ds1-1+deb12u1")
    assert plan(runc, tmp_path / "plan.json", "--run-artifact") == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    assert "advisory high CVE-2024-21626: fixed in 1.1.12" in lines
    assert "provenance: not checked: the sha256 was given on the command line, no signature" in (
        lines
    )
