"""A distribution's changelog as the audit reads it: Debian's real one for its runc, an rpm
one, the script on this machine, and what happens when it cannot be read."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.diagnose.advisories import RC93_HANG, load_advisories
from orchestrator.diagnose.audit import audit_host
from orchestrator.diagnose.changelog import (
    CHANGELOG_LIMIT,
    Changelog,
    changelog_script,
    compare_package_versions,
    package_of,
    parse_changelog,
)
from orchestrator.models import HostFacts, RuncBinary

DATA = Path(__file__).resolve().parents[1] / "data"
# The newest entries of /usr/share/doc/runc/changelog.Debian.gz of Debian 12's runc, and its
# 1.0.0~rc94+ds1 backport of CVE-2021-30465.
DEBIAN_EXCERPT = (DATA / "runc-changelog.Debian.excerpt").read_text()
DEBIAN_INSTALLED = "1.1.5+ds1-1+deb12u1"
ADVISORIES = {advisory.id: advisory for advisory in load_advisories()}
RPM_CHANGELOG = """\
* Thu Feb 01 2024 Packager Name <packager@example.org> - 2:1.1.12-1.el9
- update to https://github.com/opencontainers/runc/releases/tag/v1.1.12
- Resolves: CVE-2024-21626

* Tue Mar 28 2023 Packager Name <packager@example.org> - 2:1.1.5-1.el9
- update to 1.1.5 (fixes CVE-2023-27561, CVE-2023-25809, CVE-2023-28642)
"""


def output(fmt: str, version: str, body: str, status: str = "ok") -> str:
    return f"format={fmt}\nversion={version}\nstatus={status}\n--changelog--\n{body}"


def debian(version: str = DEBIAN_INSTALLED, build: str | None = None) -> Changelog:
    return parse_changelog("runc", output("debian", version, DEBIAN_EXCERPT), build)


def test_debian_names_its_backports_at_or_below_the_installed_version() -> None:
    changelog = debian()
    assert changelog.problem is None and changelog.entries[0][0] == DEBIAN_INSTALLED
    assert changelog.fixed_at(ADVISORIES["CVE-2024-21626"]) == DEBIAN_INSTALLED
    assert changelog.fixed_at(ADVISORIES["CVE-2023-27561"]) == "1.1.5+ds1-1"
    assert changelog.fixed_at(ADVISORIES["CVE-2021-30465"]) == "1.0.0~rc94+ds1-2"
    for unnamed in ("CVE-2024-45310", "CVE-2025-31133", RC93_HANG):
        assert changelog.fixed_at(ADVISORIES[unnamed]) is None
    # The same changelog of an older install: the deb12u1 fix is above it, so not applied.
    assert debian("1.1.5+ds1-1").fixed_at(ADVISORIES["CVE-2024-21626"]) is None


def test_a_cve_id_is_matched_whole() -> None:
    advisory = ADVISORIES["CVE-2024-21626"].model_copy(update={"id": "CVE-2024-2162"})
    assert debian().fixed_at(advisory) is None


def test_rpm_changelog() -> None:
    changelog = parse_changelog("runc", output("rpm", "1.1.12-1.el9", RPM_CHANGELOG))
    # The epoch is dropped: the installed version is read without it.
    assert [version for version, _ in changelog.entries] == ["1.1.12-1.el9", "1.1.5-1.el9"]
    assert changelog.fixed_at(ADVISORIES["CVE-2024-21626"]) == "1.1.12-1.el9"
    older = parse_changelog("runc", output("rpm", "1.1.5-1.el9", RPM_CHANGELOG))
    assert older.fixed_at(ADVISORIES["CVE-2024-21626"]) is None
    assert older.fixed_at(ADVISORIES["CVE-2023-27561"]) == "1.1.5-1.el9"


@pytest.mark.parametrize(
    ("fmt", "older", "newer"),
    [
        ("debian", "1.1.5+ds1-1", "1.1.5+ds1-1+deb12u1"),
        ("debian", "1.0.0~rc93+ds1-5", "1.0.0+ds1-1"),
        ("debian", "1.0.0~rc93+ds1-5+deb11u4", "1.0.0~rc93+ds1-5+deb11u5"),
        ("debian", "2.0-1", "1:1.0-1"),
        ("debian", "1.0a-1", "1.0+b-1"),
        ("rpm", "1.1.12-1.el9", "1.1.12-2.el9"),
        ("rpm", "1.0~rc1-1", "1.0-1"),
        ("rpm", "1.0-1", "1.0^git1-1"),
        ("rpm", "1.0^git1-1", "1.0.1-1"),
        ("rpm", "1.9-1", "1.10-1"),
        ("rpm", "1.0-1", "1.0a-1"),
    ],
)
def test_package_versions_compare_as_their_tools_do(fmt: Any, older: str, newer: str) -> None:
    assert compare_package_versions(fmt, older, newer) == -1
    assert compare_package_versions(fmt, newer, older) == 1
    assert compare_package_versions(fmt, newer, newer) == 0


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (output("debian", DEBIAN_INSTALLED, "", "missing"), "no changelog.Debian.gz"),
        (output("debian", DEBIAN_INSTALLED, "", "no-gzip"), "no gzip"),
        (output("debian", "", DEBIAN_EXCERPT), "not installed"),
        (output("rpm", "package runc is not installed", ""), "not installed"),
        (output("debian", DEBIAN_INSTALLED, "garbage\n\x1b[2J"), "no entry it can read"),
        ("", "changelog not read"),
    ],
)
def test_what_cannot_be_used_says_why(text: str, problem: str) -> None:
    changelog = parse_changelog("runc", text)
    assert changelog.problem is not None and problem in changelog.problem
    assert changelog.fixed_at(ADVISORIES["CVE-2024-21626"]) is None


def test_a_copy_is_spoken_for_only_by_the_package_at_its_build() -> None:
    assert debian(build=DEBIAN_INSTALLED).problem is None
    assert "not this build's 1.1.5+ds1-1" in (debian(build="1.1.5+ds1-1").problem or "")
    copy = RuncBinary.model_validate(RUNC | {"path": "/usr/local/sbin/runc"})
    assert package_of(copy) == ("runc", DEBIAN_INSTALLED)
    owned = RuncBinary.model_validate(RUNC | {"package": "runc", "package_version": "x"})
    assert package_of(owned) == ("runc", None)
    upstream = RuncBinary.model_validate(
        RUNC | {"version": "1.1.12", "commit": "v1.1.12-0-g51d5e946"}
    )
    assert package_of(upstream) is None
    hostile = RuncBinary.model_validate(RUNC | {"package": "runc; reboot"})
    assert package_of(hostile) is None
    with pytest.raises(ValueError):
        changelog_script("runc; reboot")


RUNC: dict[str, Any] = {
    "path": "/usr/sbin/runc",
    "executable": True,
    "size": 1,
    "sha256": "0" * 64,
    "version": "1.1.5+ds1",
    "commit": DEBIAN_INSTALLED,
    "version_output": f"runc version 1.1.5+ds1\ncommit: {DEBIAN_INSTALLED}",
    "version_exit": 0,
    "free_bytes": None,
}


def facts_with(runc: dict[str, Any]) -> HostFacts:
    return HostFacts.model_validate(
        {
            "host": "node-1", "gathered_at": 0, "boot_time": 0, "arch": "x86_64", "kernel": "5.4",
            "uid": 0, "runtime_path": ["/usr/local/sbin"], "path_source": "dockerd",
            "runc": runc, "runc_source": "docker", "shadowed": [],
            "docker_default_runtime": None, "docker_runtimes": {},
            "containerd_default_runtime": None, "containerd_runtimes": {}, "dockerd": None,
            "containerd": None, "sysctl_runtime": 16384, "sysctl_settings": [],
            "sysctl_persistent": None, "runc_init": [], "record_json": None, "warnings": [],
        }
    )  # fmt: skip


def test_the_audit_of_debians_runc_has_no_false_highs() -> None:
    host = audit_host(facts_with(RUNC), "all", ADVISORIES.values(), changelog=debian())
    found = {finding.id: finding for finding in host.findings}
    assert "CVE-2024-21626" not in found
    assert any(
        line.startswith("CVE-2024-21626 (high): fixed by the distribution (changelog of package "
                        f"runc {DEBIAN_INSTALLED}: {DEBIAN_INSTALLED})")
        for line in host.fixed_by_distribution
    )  # fmt: skip
    assert set(found) == {"CVE-2024-45310", "CVE-2025-31133", "CVE-2025-52565", "CVE-2025-52881"}
    for finding in found.values():
        assert "by upstream version; the distribution may have fixed it" in finding.detail
        assert f"the changelog of package runc {DEBIAN_INSTALLED} does not name it" in (
            finding.detail
        )
    assert host.changelog == f"package runc {DEBIAN_INSTALLED}: 5 entries read"


def test_rc93_named_by_the_changelog_stays_for_the_probe() -> None:
    rc93 = RUNC | {"version": "1.0.0-rc93+ds1", "commit": "1.0.0~rc93+ds1-5+deb11u5"}
    body = (
        "runc (1.0.0~rc93+ds1-5+deb11u5) bullseye; urgency=medium\n\n"
        "  * Backport runc/pull/2871: drain the seccomp export pipe\n\n"
        " -- Someone <someone@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n"
    )
    changelog = parse_changelog("runc", output("debian", "1.0.0~rc93+ds1-5+deb11u5", body))
    host = audit_host(facts_with(rc93), "all", ADVISORIES.values(), changelog=changelog)
    hang = next(finding for finding in host.findings if finding.id == RC93_HANG)
    assert "names a fix at 1.0.0~rc93+ds1-5+deb11u5; the probe decides" in hang.detail
    assert not any(line.startswith(RC93_HANG) for line in host.fixed_by_distribution)


# ---------------------------------------------------------------------------------------------
# The script, on this machine (Debian, with its runc package installed)

needs_debian_runc = pytest.mark.skipif(
    not Path("/usr/share/doc/runc/changelog.Debian.gz").is_file(), reason="no Debian runc here"
)


def run_script(package: str, path: str | None = None) -> str:
    env = {**os.environ, "PATH": path} if path else None
    return subprocess.run(
        ["sh", "-c", changelog_script(package)], capture_output=True, text=True, env=env, check=True
    ).stdout


@needs_debian_runc
def test_the_script_reads_this_machines_changelog() -> None:
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "runc"], capture_output=True, text=True
    ).stdout
    changelog = parse_changelog("runc", run_script("runc"))
    assert changelog.problem is None and changelog.version == installed
    assert len(changelog.entries) > 20 and changelog.entries[0][0] == installed
    assert changelog.fixed_at(ADVISORIES["CVE-2023-27561"]) == "1.1.5+ds1-1"
    missing = parse_changelog("no-such-package", run_script("no-such-package"))
    assert missing.problem is not None


@needs_debian_runc
def test_without_gzip_the_script_says_so(tmp_path: Path) -> None:
    for tool in ("sh", "dpkg-query", "head"):
        found = shutil.which(tool)
        assert found is not None
        (tmp_path / tool).symlink_to(found)
    changelog = parse_changelog("runc", run_script("runc", str(tmp_path)))
    assert changelog.problem is not None and "no gzip" in changelog.problem


def test_the_read_is_bounded() -> None:
    huge = DEBIAN_EXCERPT + "  * filler\n" * (CHANGELOG_LIMIT // 8)
    script = changelog_script("runc")
    assert "LIMIT=262144\n" in script and script.count('head -c "$LIMIT"') == 2
    changelog = parse_changelog("runc", output("debian", DEBIAN_INSTALLED, huge))
    assert changelog.fixed_at(ADVISORIES["CVE-2024-21626"]) == DEBIAN_INSTALLED
