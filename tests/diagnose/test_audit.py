"""`audit` without hosts: version comparison, the advisory table, findings from constructed facts,
the fleet summary, the verdict and the three views."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.cli.app import main
from orchestrator.diagnose.advisories import load_advisories
from orchestrator.diagnose.audit import AuditReport, audit_host, build_report
from orchestrator.diagnose.audit_fleet import audit_targets
from orchestrator.diagnose.audit_views import report_json, report_markdown, report_table
from orchestrator.diagnose.findings import CHECK_IDS, distribution_of, finding_ids, host_findings
from orchestrator.diagnose.versions import RELEASE, Version, compare_versions, parse_version
from orchestrator.errors import BadInput, ExitCode, HostUnreachable
from orchestrator.inventory.read import load_inventory
from orchestrator.models import FailOn, HostFacts, ProbeResult, RuncBinary

ADVISORIES = load_advisories()
RC93_COMMIT = "12644e614e25b05da6fd08a38ffa0cfe1903fdec"
DEBIAN_SHA = "9a87d5bcdd630ec420ec56a6c21b70aa6960edcefe1cf4bb181cee290bdd6b98"
RC93_SHA = "4406539868bc4ad8b82d3bc1803aa0d049fc5a0f05c9e1a383e3459edd20b39c"

# ---------------------------------------------------------------------------------------------
# Versions

ORDERED = [
    "1.0.0-rc1",
    "1.0.0-rc6",
    "1.0.0-rc9",
    "1.0.0-rc10",
    "1.0.0-rc92",
    "1.0.0-rc93",
    "1.0.0-rc94",
    "1.0.0-rc95",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "1.1.5+ds1",
    "1.1.11",
    "1.1.12",
    "1.2.0-rc.1",
    "1.2.0",
    "1.2.8",
    "1.3.3",
    "1.4.0-rc.2",
    "1.4.0-rc.3",
    "1.4.0",
]


def test_known_versions_are_in_order() -> None:
    for older, newer in itertools.pairwise(ORDERED):
        assert compare_versions(older, newer) == -1, (older, newer)
        assert compare_versions(newer, older) == 1, (older, newer)


@pytest.mark.parametrize(
    ("text", "same_as"),
    [
        ("1.1.5+ds1", "1.1.5"),
        ("v1.1.12", "1.1.12"),
        ("1.0-rc6", "1.0.0-rc6"),
        ("1.0.0~rc93-0ubuntu1~20.04.2", "1.0.0-rc93"),
        ("1.4.0-rc.3", "1.4.0-rc3"),
        ("1.0.0-rc92+dev", "1.0.0-rc92"),
        ("1.1.12-0ubuntu2~22.04.1", "1.1.12"),
    ],
)
def test_spellings_of_one_version(text: str, same_as: str) -> None:
    assert compare_versions(text, same_as) == 0


@pytest.mark.parametrize("text", ["", "runc", "1", "x1.2.3", "1.2.3abc", "unknown"])
def test_not_versions(text: str) -> None:
    assert parse_version(text) is None
    with pytest.raises(ValueError):
        compare_versions(text, "1.0.0")


STAGES = ("alpha", "beta", "rc")
versions = st.builds(
    Version,
    major=st.integers(0, 3),
    minor=st.integers(0, 12),
    patch=st.integers(0, 15),
    stage=st.integers(0, RELEASE),
    number=st.integers(0, 120),
).map(lambda v: v if v.stage != RELEASE else Version(v.major, v.minor, v.patch))


def spell(version: Version, style: int, suffix: str) -> str:
    """`version` as one of the spellings runc, distributions and git builds use."""
    core = f"{version.major}.{version.minor}.{version.patch}"
    if version.stage != RELEASE:
        separator = ("-", "~", "-")[style % 3]
        dot = "." if style % 2 else ""
        core += f"{separator}{STAGES[version.stage]}{dot}{version.number}"
    return ("v" if style == 4 else "") + core + suffix


spellings = st.tuples(versions, st.integers(0, 5), st.sampled_from(["", "+ds1", "+dev", "-1"]))


@given(spellings)
def test_every_spelling_parses_back(case: tuple[Version, int, str]) -> None:
    version, style, suffix = case
    assert parse_version(spell(version, style, suffix)) == version


@given(spellings, spellings)
def test_comparison_is_numeric(a: tuple[Version, int, str], b: tuple[Version, int, str]) -> None:
    left, right = spell(*a), spell(*b)
    key = (a[0].major, a[0].minor, a[0].patch, a[0].stage, a[0].number)
    other = (b[0].major, b[0].minor, b[0].patch, b[0].stage, b[0].number)
    assert compare_versions(left, right) == (key > other) - (key < other)
    assert compare_versions(left, right) == -compare_versions(right, left)


@given(versions, versions, versions)
def test_order_is_transitive(a: Version, b: Version, c: Version) -> None:
    x, y, z = sorted([a, b, c])
    assert compare_versions(str(x), str(y)) <= 0
    assert compare_versions(str(y), str(z)) <= 0
    assert compare_versions(str(x), str(z)) <= 0


@given(versions.filter(lambda v: v.stage != RELEASE))
def test_a_pre_release_comes_before_its_release(version: Version) -> None:
    release = Version(version.major, version.minor, version.patch)
    assert compare_versions(str(version), str(release)) == -1


# ---------------------------------------------------------------------------------------------
# The advisory table


def affected_by(version: str, commit: str | None = None) -> set[str]:
    return {advisory.id for advisory in ADVISORIES if advisory.affects_build(version, commit)}


def test_advisory_table_is_complete() -> None:
    ids = {advisory.id for advisory in ADVISORIES}
    assert ids == {
        "runc-rc93-pipe-hang",
        "CVE-2019-5736",
        "CVE-2021-30465",
        "CVE-2022-29162",
        "CVE-2023-27561",
        "CVE-2024-21626",
        "CVE-2024-45310",
        "CVE-2025-31133",
        "CVE-2025-52565",
        "CVE-2025-52881",
    }
    for advisory in ADVISORIES:
        assert advisory.source.startswith("https://github.com/"), advisory.id
        assert advisory.fixed_in and advisory.affected, advisory.id
        for fixed in advisory.fixed_in:  # a fixed version is never affected itself
            assert advisory.id not in affected_by(fixed), (advisory.id, fixed)
    assert not ids & set(CHECK_IDS)


LATE_2025 = {"CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"}


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (
            "1.0.0-rc6",
            {"CVE-2019-5736", "CVE-2021-30465", "CVE-2022-29162", "CVE-2024-45310"} | LATE_2025,
        ),
        ("1.0.0-rc7", {"CVE-2021-30465", "CVE-2022-29162", "CVE-2024-45310"} | LATE_2025),
        (
            "1.0.0-rc93",
            {
                "runc-rc93-pipe-hang",
                "CVE-2021-30465",
                "CVE-2022-29162",
                "CVE-2024-21626",
                "CVE-2024-45310",
            }
            | LATE_2025,
        ),
        (
            "1.0.0-rc94",
            {"CVE-2021-30465", "CVE-2022-29162", "CVE-2024-21626", "CVE-2024-45310"} | LATE_2025,
        ),
        (
            "1.1.1",
            {"CVE-2022-29162", "CVE-2023-27561", "CVE-2024-21626", "CVE-2024-45310"} | LATE_2025,
        ),
        (
            "1.0.0-rc2",
            {"CVE-2019-5736", "CVE-2021-30465", "CVE-2022-29162", "CVE-2024-45310"}
            | {"CVE-2025-31133", "CVE-2025-52881"},
        ),
        ("1.1.5+ds1", {"CVE-2024-21626", "CVE-2024-45310"} | LATE_2025),
        ("1.1.12", {"CVE-2024-45310"} | LATE_2025),
        ("1.1.14", LATE_2025),
        ("1.2.0-rc.2", {"CVE-2024-45310"} | LATE_2025),
        ("1.2.8", set()),
        ("1.3.2", LATE_2025),
        ("1.3.3", set()),
        ("1.4.0-rc.2", LATE_2025),
        ("1.4.0-rc.3", set()),
    ],
)
def test_advisories_by_version(version: str, expected: set[str]) -> None:
    assert affected_by(version) == expected


def test_rc93_is_known_by_its_commit_whatever_its_version_string() -> None:
    assert "runc-rc93-pipe-hang" in affected_by("1.0.0-rc92+dev", commit=RC93_COMMIT)
    assert "runc-rc93-pipe-hang" in affected_by("?", commit="v1.0.0-rc93-0-g12644e61-dirty")
    assert "runc-rc93-pipe-hang" not in affected_by("1.0.0-rc92", commit="abcdef1")


# ---------------------------------------------------------------------------------------------
# Findings from facts


def runc_binary(**changes: Any) -> RuncBinary:
    values: dict[str, Any] = {
        "path": "/usr/local/sbin/runc",
        "executable": True,
        "size": 1000,
        "sha256": RC93_SHA,
        "version": "1.0.0-rc93",
        "commit": RC93_COMMIT,
        "version_output": f"runc version 1.0.0-rc93\ncommit: {RC93_COMMIT}",
        "version_exit": 0,
        "free_bytes": 10**9,
    }
    values.update(changes)
    return RuncBinary.model_validate(values)


DEBIAN_RUNC = {
    "path": "/usr/sbin/runc",
    "sha256": DEBIAN_SHA,
    "version": "1.1.5+ds1",
    "commit": "1.1.5+ds1-1+deb12u1",
    "package": "runc",
    "package_version": "1.1.5+ds1-1+deb12u1",
}


def facts(host: str = "node-1", **changes: Any) -> HostFacts:
    values: dict[str, Any] = {
        "host": host,
        "gathered_at": 1_800_000_000,
        "boot_time": 1_799_990_000,
        "arch": "x86_64",
        "kernel": "5.4.0",
        "uid": 0,
        "runtime_path": ["/usr/local/sbin", "/usr/sbin"],
        "path_source": "dockerd",
        "runc": runc_binary().model_dump(),
        "runc_source": "runc on dockerd's PATH",
        "shadowed": [],
        "docker_default_runtime": None,
        "docker_runtimes": {},
        "containerd_default_runtime": None,
        "containerd_runtimes": {},
        "dockerd": {
            "pid": 10,
            "start_ticks": 5,
            "start_time": 1_799_990_000.05,
            "exe": "/usr/bin/dockerd",
            "version": "20.10.6",
            "path": None,
        },
        "containerd": None,
        "sysctl_runtime": 16384,
        "sysctl_settings": [],
        "sysctl_persistent": None,
        "runc_init": [],
        "record_json": None,
        "warnings": [],
    }
    values.update(changes)
    return HostFacts.model_validate(values)


def ids(found: list[Any]) -> list[str]:
    return [finding.id for finding in found]


def test_an_rc93_host_in_the_incidents_state() -> None:
    raised = {"file": "/etc/sysctl.d/90-runc.conf", "line": 3, "value": "163840"}
    stuck = {
        "pid": 4242,
        "ppid": 4200,
        "state": "S",
        "wchan": "pipe_write",
        "cmdline": "runc init",
        "start_time": 1_799_999_000.0,
        "stuck": True,
    }
    found = host_findings(
        facts(
            sysctl_runtime=163840,
            sysctl_settings=[raised],
            sysctl_persistent=raised,
            runc_init=[stuck],
            shadowed=[runc_binary(**DEBIAN_RUNC).model_dump()],
        ),
        ADVISORIES,
    )
    by_id = {finding.id: finding for finding in found}
    assert found[0].id == "stuck-runc-init" and found[0].severity == "critical"
    assert "PID 4242 (S in pipe_write, for 16m40s)" in found[0].detail
    assert by_id["runc-rc93-pipe-hang"].severity == "high"
    assert not by_id["runc-rc93-pipe-hang"].check_changelog
    assert "fixed in 1.0.0-rc94" in by_id["runc-rc93-pipe-hang"].detail
    assert by_id["sysctl-raised"].title.startswith("fs.pipe-user-pages-soft is 163840")
    assert "/etc/sysctl.d/90-runc.conf:3" in by_id["sysctl-raised-at-boot"].title
    assert "/usr/sbin/runc 1.1.5+ds1" in by_id["shadowed-runc"].detail
    ranks = [("low", "medium", "high", "critical").index(f.severity) for f in found]
    assert ranks == sorted(ranks, reverse=True)


def test_a_distribution_package_is_not_asserted_vulnerable() -> None:
    found = host_findings(facts(runc=runc_binary(**DEBIAN_RUNC).model_dump()), ADVISORIES)
    assert set(ids(found)) == {"CVE-2024-21626", "CVE-2024-45310"} | LATE_2025
    for finding in found:
        assert finding.check_changelog
        assert (
            "(by upstream version; the distribution may have fixed it: distribution package runc "
            "1.1.5+ds1-1+deb12u1; its changelog was not read)"
        ) in finding.detail


def test_distribution_builds_and_upstream_builds() -> None:
    assert distribution_of(runc_binary()) is None
    assert distribution_of(runc_binary(version="1.1.12", commit="v1.1.12-0-g51d5e946")) is None
    assert distribution_of(runc_binary(version="1.1.12", commit="51d5e946-dirty")) is None
    copied = runc_binary(**{**DEBIAN_RUNC, "package": None, "package_version": None})
    assert distribution_of(copied) == "distribution build 1.1.5+ds1-1+deb12u1"
    assert distribution_of(runc_binary(**DEBIAN_RUNC)) == (
        "distribution package runc 1.1.5+ds1-1+deb12u1"
    )


def test_an_upgraded_host_has_no_incident_findings() -> None:
    upgraded = runc_binary(version="1.4.0", commit="v1.4.0-0-gabcdef12", sha256=DEBIAN_SHA)
    same_file_elsewhere = runc_binary(path="/usr/bin/runc", sha256=DEBIAN_SHA, version="1.4.0")
    setting = {"file": "/etc/sysctl.d/90-runc.conf", "line": 3, "value": "16384"}
    found = host_findings(
        facts(
            runc=upgraded.model_dump(),
            shadowed=[same_file_elsewhere.model_dump()],  # the same content: not worth a finding
            sysctl_settings=[setting],
            sysctl_persistent=setting,
        ),
        ADVISORIES,
    )
    assert found == []


def test_lowered_sysctl_missing_and_silent_runc() -> None:
    lowered = {"file": "/etc/sysctl.conf", "line": 1, "value": "1"}
    found = host_findings(facts(sysctl_runtime=1, sysctl_persistent=lowered), ADVISORIES)
    assert {"sysctl-lowered", "sysctl-lowered-at-boot"} <= set(ids(found))
    assert ids(host_findings(facts(runc=None), ADVISORIES)) == ["runc-not-found"]
    silent = runc_binary(version=None, commit=None, version_output="", version_exit=126)
    assert ids(host_findings(facts(runc=silent.model_dump()), ADVISORIES)) == [
        "runc-version-unknown"
    ]
    odd = runc_binary(version="custom-build", commit=RC93_COMMIT)
    assert ids(host_findings(facts(runc=odd.model_dump()), ADVISORIES)) == [
        "runc-rc93-pipe-hang",
        "runc-version-unknown",
    ]


# ---------------------------------------------------------------------------------------------
# Report, summary, verdict, views


def fleet() -> dict[str, HostFacts | Exception]:
    debian = runc_binary(**DEBIAN_RUNC).model_dump()
    return {
        "a1": facts("a1", sysctl_runtime=163840),
        "a2": facts("a2", runc=debian),
        "b1": facts("b1", runc=debian),
        "b2": HostUnreachable("b2", "10.0.0.4", "connection refused"),
    }


ZONES = {"a1": "zone-a", "a2": "zone-a", "b1": "zone-b", "b2": "zone-b"}


def test_summary_per_version_finding_and_zone() -> None:
    report = build_report(fleet(), ZONES, ADVISORIES)
    summary = report.summary
    assert (summary.hosts, summary.unreachable) == (4, 1)
    assert summary.by_version == {
        "1.1.5+ds1 [runc 1.1.5+ds1-1+deb12u1]": 2,
        "1.0.0-rc93": 1,
    }
    counts = {item.id: item.hosts for item in summary.by_finding}
    assert counts["CVE-2024-21626"] == ["a1", "a2", "b1"]
    assert counts["runc-rc93-pipe-hang"] == ["a1"]
    assert counts["sysctl-raised"] == ["a1"]
    assert summary.by_finding[0].severity == "high"
    zone_a, zone_b = summary.by_zone["zone-a"], summary.by_zone["zone-b"]
    assert (zone_a.hosts, zone_a.unreachable, zone_a.with_findings, zone_a.worst) == (
        2,
        0,
        2,
        "high",
    )
    assert (zone_b.hosts, zone_b.unreachable, zone_b.with_findings) == (2, 1, 1)
    # An unreachable host always fails the audit, whatever --fail-on says.
    assert report.failing == ["b2: not audited: b2 (10.0.0.4): connection refused"]
    assert report.unreachable[0].error.kind == "unreachable"


@pytest.mark.parametrize(
    ("fail_on", "failing_hosts"),
    [
        (FailOn.none, set()),
        (FailOn.critical, set()),
        (FailOn.high, {"a1", "a2"}),
        (FailOn.low, {"a1", "a2"}),
    ],
)
def test_fail_on(fail_on: FailOn, failing_hosts: set[str]) -> None:
    results = {name: r for name, r in fleet().items() if name in ("a1", "a2")}
    report = build_report(results, ZONES, ADVISORIES, fail_on=fail_on)
    assert {line.split(":")[0] for line in report.failing} == failing_hosts
    assert report.failed == bool(failing_hosts)


def test_ignored_findings_are_shown_but_never_fail() -> None:
    results = {"a2": fleet()["a2"]}
    debian_ids = ["CVE-2024-21626", "CVE-2024-45310", *sorted(LATE_2025)]
    report = build_report(results, ZONES, ADVISORIES, fail_on=FailOn.low, ignore=debian_ids)
    assert not report.failed
    assert all(finding.ignored for finding in report.hosts[0].findings)
    assert report.summary.by_finding == []
    assert report.summary.by_zone["zone-a"].with_findings == 0
    assert "(ignored)" in report_table(report)
    partly = build_report(results, ZONES, ADVISORIES, fail_on=FailOn.high, ignore=debian_ids[:1])
    assert partly.failed


def test_views() -> None:
    report = build_report(fleet(), ZONES, ADVISORIES, fail_on=FailOn.high, held=["b1"])
    table = report_table(report, width=250)
    for text in ("a1", "zone-a", "1.0.0-rc93", "runc-rc93-pipe-hang", "UNREACHABLE", "b1 (held"):
        assert text in table
    assert "hosts per runc version" in table and "hosts per zone" in table
    assert "audit: FAIL" in table
    markdown = report_markdown(report)
    assert markdown.startswith("# runc audit\n")
    assert "| runc-rc93-pipe-hang | high | 1 |" in markdown
    assert "### b1 (held back)" in markdown and "## Not audited" in markdown
    assert "the distribution may have fixed it" in markdown
    data = json.loads(report_json(report))
    assert data["summary"]["by_zone"]["zone-b"]["unreachable"] == 1
    assert AuditReport.model_validate_json(report_json(report)) == report


def test_audit_targets_keep_held_back_hosts(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n"
        "    n1: {zone: z1}\n"
        "    n2: {zone: z2, runc_rollout_skip: 'kernel too old'}\n"
        "    n3: {}\n"
    )
    targets, zones, held = audit_targets(load_inventory([inventory]), None, "zone")
    assert list(targets) == ["n1", "n2", "n3"]
    assert zones == {"n1": "z1", "n2": "z2", "n3": "(no zone)"}
    assert held == {"n2"}
    _, zones, _ = audit_targets(load_inventory([inventory]), None)  # no --domain-key
    assert set(zones.values()) == {"all"}
    with pytest.raises(BadInput, match="--domain-key zoen: none of the 3 selected hosts has"):
        audit_targets(load_inventory([inventory]), None, "zoen")


def test_cli_refuses_an_unknown_ignore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    n1: {}\n")
    assert "CVE-2024-21626" in finding_ids(ADVISORIES)
    code = main(["audit", "-i", str(inventory), "--ignore", "CVE-2024-2162"])
    assert code == ExitCode.BAD_INPUT
    assert "no finding is called CVE-2024-2162" in capsys.readouterr().err


# -- the incident probe decides the rc93 hang (audit --probe) --------------------------------


def _audited(runc: RuncBinary, probe: ProbeResult | None) -> dict[str, str]:
    host = audit_host(facts(runc=runc), "all", load_advisories(), probe=probe)
    return {finding.id: finding.detail for finding in host.findings}


HUNG = ProbeResult(outcome="hung", method="docker", seconds=10, detail="anon_pipe_write")
PASSED = ProbeResult(outcome="passed", method="docker", seconds=0.4)
UNSURE = ProbeResult(outcome="undecidable", method="bundle", detail="soft limit is 0")


def test_without_the_probe_the_version_decides_and_says_so() -> None:
    found = _audited(runc_binary(), None)
    assert "audit --probe" in found["runc-rc93-pipe-hang"]


def test_a_hung_probe_finds_the_bug_whatever_the_version_says() -> None:
    upgraded = runc_binary(version="1.1.12", commit="v1.1.12-0-g51d5e94", version_output="")
    found = _audited(upgraded, HUNG)
    assert "probe (docker): hung in anon_pipe_write" in found["runc-rc93-pipe-hang"]


def test_a_passed_probe_clears_an_rc93_version_string() -> None:
    """A distribution build that says rc93 but carries the fix does not hang."""
    found = _audited(runc_binary(), PASSED)
    assert "runc-rc93-pipe-hang" not in found
    assert "CVE-2021-30465" in found  # other advisories still go by version


def test_a_probe_that_cannot_decide_leaves_the_version_finding_and_says_why() -> None:
    found = _audited(runc_binary(), UNSURE)
    assert "cannot decide: soft limit is 0" in found["runc-rc93-pipe-hang"]


def test_the_probe_is_in_every_view() -> None:
    report = build_report(
        {"node-1": facts()}, {"node-1": "all"}, load_advisories(), probes={"node-1": HUNG}
    )
    assert json.loads(report_json(report))["hosts"][0]["probe"]["outcome"] == "hung"
    assert "probe (docker): hung in anon_pipe_write" in report_table(report)
    assert "probe (docker): hung in anon_pipe_write" in report_markdown(report)
