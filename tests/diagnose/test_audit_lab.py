"""`audit` on the lab: the rc93 hosts, their raised sysctl and the real hung `runc init` of rc93
(`lab.stick`) are reported; an upgraded host (Debian's runc swapped in, sysctl restored) shows
none of that."""

from __future__ import annotations

import pytest

from orchestrator.cli.app import main
from orchestrator.diagnose.audit import AuditReport
from orchestrator.errors import ExitCode
from tests.conftest import LabFleet

INCIDENT = {"runc-rc93-pipe-hang", "sysctl-raised", "sysctl-raised-at-boot", "shadowed-runc"}
UPGRADE = (
    "cp /usr/sbin/runc /usr/local/sbin/.runc.new && mv /usr/local/sbin/.runc.new "
    "/usr/local/sbin/runc && sysctl -q -w fs.pipe-user-pages-soft=16384 && "
    "rm /etc/sysctl.d/90-runc-incident.conf"
)
# What Debian's runc 1.1.5 matches by upstream version that its changelog does not name (it
# names CVE-2024-21626, fixed in 1.1.5+ds1-1+deb12u1).
DEBIAN_ADVISORIES = [
    "CVE-2024-45310",
    "CVE-2025-31133",
    "CVE-2025-52565",
    "CVE-2025-52881",
]


def test_audit_reports_the_incident_and_not_the_upgraded_host(
    lab: LabFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    hung, upgraded = lab.full_hosts[0], lab.light_hosts[-1]
    inventory = str(lab.inventory)
    seed = lab.stick(hung)
    try:
        lab.ssh(upgraded, UPGRADE)
        assert main(["audit", "-i", inventory]) == ExitCode.OK  # --fail-on none
        assert "runc-rc93-pipe-hang" in capsys.readouterr().out
        assert main(["audit", "-i", inventory, "--format", "json"]) == ExitCode.OK
        report = AuditReport.model_validate_json(capsys.readouterr().out)
        assert [host.host for host in report.hosts] == [host.name for host in lab.hosts]
        for host in report.hosts:
            found = {finding.id: finding for finding in host.findings}
            if host.host == upgraded.name:
                assert not set(found) & (INCIDENT | {"stuck-runc-init"})
                assert (host.runc_version, host.sysctl_runtime) == ("1.1.5+ds1", 16384)
                assert sorted(found) == DEBIAN_ADVISORIES  # no false CVE-2024-21626
                assert all(finding.check_changelog for finding in found.values())
                assert host.fixed_by_distribution[0].startswith(
                    "CVE-2024-21626 (high): fixed by the distribution (changelog of package runc"
                )
                continue
            assert set(found) >= INCIDENT, host.host
            assert (host.runc_version, host.sysctl_runtime) == ("1.0.0-rc93", 163840)
            assert host.sysctl_at_boot == "163840 /etc/sysctl.d/90-runc-incident.conf:2"
            assert not found["runc-rc93-pipe-hang"].check_changelog
            if host.host == hung.name:
                assert host.stuck_pids == [seed.pid]
                detail = found["stuck-runc-init"].detail
                assert f"PID {seed.pid} (S in anon_pipe_write" in detail
            else:
                assert host.stuck_pids == [] and "stuck-runc-init" not in found
        summary = report.summary
        assert summary.by_version == {"1.0.0-rc93": 3, "1.1.5+ds1": 1}
        hang = next(item for item in summary.by_finding if item.id == "runc-rc93-pipe-hang")
        assert sorted(hang.hosts) == sorted(h.name for h in lab.hosts if h != upgraded)
        assert {zone: count.hosts for zone, count in summary.by_zone.items()} == {
            "zone-a": 2,
            "zone-b": 2,
        }

        # --fail-on: the hung process is the only critical finding.
        assert main(["audit", "-i", inventory, "--fail-on", "critical"]) == ExitCode.HOST_FAILED
        assert f"{hung.name}: stuck-runc-init (--fail-on critical)" in capsys.readouterr().out
        only_upgraded = ["audit", "-i", inventory, "--limit", upgraded.name, "--fail-on", "low"]
        assert main(only_upgraded) == ExitCode.HOST_FAILED
        ignored = [arg for cve in DEBIAN_ADVISORIES for arg in ("--ignore", cve)]
        assert main([*only_upgraded, *ignored, "--format", "markdown"]) == ExitCode.OK
        assert "- pass" in capsys.readouterr().out
    finally:
        lab.reset()


def test_a_packaged_runc_is_audited_with_its_changelog(
    lab: LabFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no runc in /usr/local/sbin the runtime executes Debian's packaged /usr/sbin/runc:
    its changelog.Debian.gz names CVE-2024-21626 as fixed, so that is no finding."""
    host = lab.light_hosts[0]
    try:
        lab.ssh(host, "rm /usr/local/sbin/runc")
        args = ["audit", "-i", str(lab.inventory), "--limit", host.name, "--format", "json"]
        assert main(args) == ExitCode.OK
        (audited,) = AuditReport.model_validate_json(capsys.readouterr().out).hosts
        assert (audited.runc_path, audited.runc_package) == ("/usr/sbin/runc", "runc")
        assert sorted(f.id for f in audited.findings if f.id.startswith("CVE")) == (
            DEBIAN_ADVISORIES
        )
        assert [line.split(" ")[0] for line in audited.fixed_by_distribution] == ["CVE-2024-21626"]
        assert audited.changelog is not None and "entries read" in audited.changelog
        assert main([*args[:-2], "--format", "markdown"]) == ExitCode.OK
        review = capsys.readouterr().out
        assert "CVE-2024-21626 (high): fixed by the distribution" in review
        assert "by upstream version; the distribution may have fixed it" in review
    finally:
        lab.reset(host)
