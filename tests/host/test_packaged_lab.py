"""A packaged runc on a real lab host (issue 26): /usr/sbin/runc of the lab's Debian `runc`
package, installed by dpkg into the host's own dpkg database. Through both backends: the plan
names the package and its policy; the swap diverts the path without its ever being missing or
partly written (watched in a loop during apply and rollback); a reinstall or upgrade of the
package leaves the rolled-out runc in place; audit shows `package-newer`; rollback gives the
package its own file back, no diversion left, `dpkg --verify` clean."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.lab import packaged
from orchestrator.lab.hostdef import LAB_MOUNT
from tests.conftest import RUNC_ROLLOUT, LabFleet, running_lab
from tests.run.test_apply_lab import sha256

RUNC = packaged.RUNC_PATH
OLD_DEB = f"{LAB_MOUNT}/{packaged.DEBS_DIR}/{packaged.deb_name(packaged.OLD_VERSION)}"
NEW_DEB = f"{LAB_MOUNT}/{packaged.DEBS_DIR}/{packaged.deb_name(packaged.NEW_VERSION)}"
STOP = "/run/runc-rollout-test-watch.stop"  # the host's own /run
# Watches a path as fast as Python can stat it until STOP appears: how often it was missing,
# and how often its size was none of the complete files' sizes (partly written).
WATCHER = """
import os, sys
path, stop, sizes = sys.argv[1], sys.argv[2], {int(x) for x in sys.argv[3].split(",")}
checks = missing = partial = 0
while not os.path.exists(stop):
    checks += 1
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        missing += 1
        continue
    if size not in sizes:
        partial += 1
print(f"checks={checks} missing={missing} partial={partial}")
"""


@pytest.fixture(scope="module")
def pkg_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    """One full host whose runc is the old package's /usr/sbin/runc (rc93)."""
    with running_lab(tmp_path_factory.mktemp("pkglab"), 1, 1, packaged_runc=1) as fleet:
        yield fleet


@pytest.fixture
def lab(pkg_lab: LabFleet) -> Iterator[LabFleet]:
    pkg_lab.reset()
    yield pkg_lab
    pkg_lab.reset()


class PathWatch:
    """WATCHER on the host, over ssh, for the length of a `with` block."""

    def __init__(self, lab: LabFleet, sizes: list[int]) -> None:
        self.lab = lab
        self.host = lab.hosts[0]
        self.sizes = sizes
        self.result: dict[str, int] = {}

    def __enter__(self) -> PathWatch:
        self.lab.ssh(self.host, f"rm -f {STOP}")
        sizes = ",".join(map(str, self.sizes))
        argv = [*self.lab.ssh_argv(self.host), f"python3 - {RUNC} {STOP} {sizes}"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write(WATCHER)
        self.proc.stdin.close()
        time.sleep(1.0)  # python up and looking
        return self

    def __exit__(self, *exc: object) -> None:
        self.lab.ssh(self.host, f"touch {STOP}")
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.proc.wait(timeout=30)
        self.result = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out)}
        print(f"path watch: {self.result}")  # shown with -s / -rA


def host_sh(lab: LabFleet, command: str) -> str:
    return lab.ssh(lab.hosts[0], command).stdout


def package_md5(lab: LabFleet) -> str:
    return host_sh(lab, "awk '$2 == \"usr/sbin/runc\" {print $1}' /var/lib/dpkg/info/runc.md5sums")


def sizes(lab: LabFleet, artifact: Path) -> list[int]:
    state = lab.state_dir
    return [
        (state / "runc-rc93").stat().st_size,
        artifact.stat().st_size,
        (state / packaged.DEBS_DIR / "stand-in-runc").stat().st_size,
    ]


def plan(lab: LabFleet, artifact: Path, out: Path, *extra: str) -> str:
    """The plan file at `out`; its Markdown review returned."""
    review = out.with_suffix(".md")
    done = subprocess.run(
        [
            RUNC_ROLLOUT,
            "plan", "-i", str(lab.inventory), "--runc", str(artifact),
            "--sha256", sha256(artifact), "--gather", "-o", str(out), "--format", "markdown",
            *extra,
        ],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    review.write_text(done.stdout)
    return done.stdout


def audit_report(lab: LabFleet) -> dict[str, dict[str, str]]:
    """Each finding of `audit --format json` of the host, by id."""
    done = subprocess.run(
        [RUNC_ROLLOUT, "audit", "-i", str(lab.inventory), "--format", "json"],
        capture_output=True, text=True,
    )  # fmt: skip
    report = json.loads(done.stdout)
    return {f["id"]: f for host in report["hosts"] for f in host["findings"]}


def audit_ids(lab: LabFleet) -> dict[str, str]:
    """Each finding's id and its detail, from `audit --format json` of the host."""
    done = subprocess.run(
        [
            RUNC_ROLLOUT,
            "audit", "-i", str(lab.inventory), "--format", "json",
        ],
        capture_output=True, text=True,
    )  # fmt: skip
    report = json.loads(done.stdout)
    return {f["id"]: f["detail"] for host in report["hosts"] for f in host["findings"]}


@pytest.mark.parametrize("executor", ["ssh", "ansible"])
def test_divert_survives_the_package_manager_and_rollback_gives_the_package_back(
    lab: LabFleet, artifact: Path, tmp_path: Path, executor: str
) -> None:
    assert host_sh(lab, "dpkg-query -W -f '${Version}' runc") == packaged.OLD_VERSION
    package_file = package_md5(lab)
    plan_file = tmp_path / "plan.json"
    review = plan(lab, artifact, plan_file)
    assert "## Packaged runc (1 host)" in review
    assert "| `lab-01` | `/usr/sbin/runc` | `runc` | `1.0.0~rc93+ds1-1` | dpkg | **divert** |" in (
        review
    )
    (host,) = json.loads(plan_file.read_text())["waves"][0]["hosts"]
    assert host["before"]["packages"] == [
        {
            "path": RUNC,
            "package": "runc",
            "version": packaged.OLD_VERSION,
            "manager": "dpkg",
            "policy": "divert",
        }
    ]

    runs = tmp_path / "runs"
    with PathWatch(lab, sizes(lab, artifact)) as watch:
        code = main(
            ["apply", str(plan_file), "--yes", "--executor", executor, "--runs-dir", str(runs)]
        )
    assert code == ExitCode.OK
    assert watch.result["checks"] > 1000 and watch.result["missing"] == 0, watch.result
    assert watch.result["partial"] == 0, watch.result
    target = sha256(artifact)
    assert host_sh(lab, f"sha256sum {RUNC} | cut -d' ' -f1").strip() == target
    assert host_sh(lab, "dpkg-divert --list").strip() == (
        f"local diversion of {RUNC} to {RUNC}.distrib"
    )
    assert host_sh(lab, f"md5sum {RUNC}.distrib | cut -d' ' -f1") == package_file

    # A reinstall of the package, then its upgrade: the rolled-out runc stays.
    host_sh(lab, f"dpkg -i {OLD_DEB} >/dev/null")
    assert host_sh(lab, f"sha256sum {RUNC} | cut -d' ' -f1").strip() == target
    host_sh(lab, f"dpkg -i {NEW_DEB} >/dev/null")
    assert host_sh(lab, f"sha256sum {RUNC} | cut -d' ' -f1").strip() == target
    assert host_sh(lab, f"{RUNC}.distrib --version").startswith(
        f"runc version {packaged.NEW_UPSTREAM}"
    )
    findings = audit_ids(lab)
    assert "package-newer" in findings, findings
    assert "dpkg-divert --local --no-rename --remove /usr/sbin/runc" in findings["package-newer"]
    assert "runc-reverted" not in findings

    # Rollback: from the run's journal (ssh), from the host records alone (ansible).
    (run_dir,) = runs.iterdir()
    how = [str(run_dir)] if executor == "ssh" else ["-i", str(lab.inventory)]
    with PathWatch(lab, sizes(lab, artifact)) as watch:
        code = main(["rollback", *how, "--yes", "--executor", executor, "--runs-dir", str(runs)])
    assert code == ExitCode.OK
    assert watch.result["missing"] == 0 and watch.result["partial"] == 0, watch.result
    # The package's own file (the new package's, installed while diverted), as dpkg knows it.
    assert host_sh(lab, f"md5sum {RUNC} | cut -d' ' -f1") == package_md5(lab)
    assert package_md5(lab) != package_file
    assert host_sh(lab, "dpkg-divert --list") == ""
    assert host_sh(lab, f"ls {RUNC}.distrib 2>/dev/null; echo") == "\n"
    verify = lab.ssh(lab.hosts[0], "dpkg --verify runc", check=False)
    assert (verify.returncode, verify.stdout) == (0, "")


def test_leave_warns_and_audit_sees_the_package_undo_the_swap(
    lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    review = plan(lab, artifact, plan_file, "--package-policy", "leave")
    assert "WARNING: the package manager will undo the swap on 1 host" in review
    runs = tmp_path / "runs"
    assert main(["apply", str(plan_file), "--yes", "--runs-dir", str(runs)]) == ExitCode.OK
    assert host_sh(lab, "dpkg-divert --list") == ""
    host_sh(lab, f"dpkg -i {OLD_DEB} >/dev/null")  # what unattended-upgrades would do
    assert host_sh(lab, f"sha256sum {RUNC} | cut -d' ' -f1").strip() != sha256(artifact)
    findings = audit_ids(lab)
    assert "runc-reverted" in findings, findings
    assert "its package runc 1.0.0~rc93+ds1-1 put its own file back" in findings["runc-reverted"]
    assert "policy was leave" in findings["runc-reverted"]


def test_the_audits_command_drops_the_diversion_and_gives_the_package_back(
    lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    """What `package-newer` tells the operator to run works as it says, by itself."""
    plan_file = tmp_path / "plan.json"
    plan(lab, artifact, plan_file)
    runs = tmp_path / "runs"
    assert main(["apply", str(plan_file), "--yes", "--runs-dir", str(runs)]) == ExitCode.OK
    host_sh(lab, f"dpkg -i {NEW_DEB} >/dev/null")
    (command,) = re.findall(r"`([^`]+)`", audit_ids(lab)["package-newer"])
    host_sh(lab, command)
    assert host_sh(lab, "dpkg-divert --list") == ""
    assert host_sh(lab, f"md5sum {RUNC} | cut -d' ' -f1") == package_md5(lab)
    assert host_sh(lab, f"{RUNC} --version").startswith(f"runc version {packaged.NEW_UPSTREAM}")
    verify = lab.ssh(lab.hosts[0], "dpkg --verify runc", check=False)
    assert (verify.returncode, verify.stdout) == (0, "")
    report = audit_report(lab)
    assert "package-newer" not in report, report
    # the record's runc was replaced, by the operator, with a newer one: said, at low severity
    assert report["runc-reverted"]["severity"] == "low", report


# -- rpm: a host with its own rpm database, /etc/dnf and no dpkg database ---------------------

DNF = (
    "timeout -s KILL 120 dnf --setopt=cachedir=/root/dnf-cache --setopt=persistdir=/root/dnf-db "
    "--setopt=reposdir=/root/no-repos --releasever=lab"
)
NEW_RPM = f"{LAB_MOUNT}/{packaged.RPMS_DIR}/{packaged.rpm_name(packaged.RPM_NEW_VERSION)}"


@pytest.fixture(scope="module")
def rpm_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    """One full host whose runc is the old rpm's /usr/sbin/runc (rc93)."""
    if not (shutil.which("rpmbuild") and shutil.which("dnf")):
        pytest.skip("needs Debian's rpm and dnf (apt-get install -y rpm dnf)")
    with running_lab(tmp_path_factory.mktemp("rpmlab"), 1, 1, rpm_runc=1) as fleet:
        yield fleet


def test_hold_keeps_dnf_from_bringing_the_packages_runc_back_and_rollback_removes_it(
    rpm_lab: LabFleet, artifact: Path, tmp_path: Path
) -> None:
    lab = rpm_lab
    lab.reset()
    conf_before = host_sh(lab, "sha256sum /etc/dnf/dnf.conf | cut -d' ' -f1")
    plan_file = tmp_path / "plan.json"
    review = plan(lab, artifact, plan_file)
    assert "| `lab-01` | `/usr/sbin/runc` | `runc` | `1.0.0~rc93-1` | rpm | **hold** |" in review
    runs = tmp_path / "runs"
    with PathWatch(lab, sizes(lab, artifact)) as watch:
        code = main(
            ["apply", str(plan_file), "--yes", "--executor", "ansible", "--runs-dir", str(runs)]
        )
    assert code == ExitCode.OK
    assert watch.result["missing"] == 0 and watch.result["partial"] == 0, watch.result
    target = sha256(artifact)
    assert host_sh(lab, "grep -x 'exclude=runc' /etc/dnf/dnf.conf") == "exclude=runc\n"
    # dnf would upgrade the package (and its runc over the rolled-out one) but for the hold:
    blocked = lab.ssh(lab.hosts[0], f"{DNF} -y upgrade {NEW_RPM}", check=False)
    assert blocked.returncode != 0
    unheld = lab.ssh(
        lab.hosts[0], f"{DNF} --disableexcludes=all --assumeno upgrade {NEW_RPM}", check=False
    )
    assert "Upgrading:" in unheld.stdout, unheld.stdout + unheld.stderr
    assert host_sh(lab, "rpm -q runc") == "runc-1.0.0~rc93-1.x86_64\n"
    assert host_sh(lab, f"sha256sum {RUNC} | cut -d' ' -f1").strip() == target
    findings = audit_ids(lab)
    assert "rpm -V reports it changed" in findings["runc-not-package-content"]
    assert "held (exclude= in /etc/dnf/dnf.conf)" in findings["runc-not-package-content"]

    code = main(
        [
            "rollback",
            "-i",
            str(lab.inventory),
            "--yes",
            "--executor",
            "ssh",
            "--runs-dir",
            str(runs),
        ]
    )
    assert code == ExitCode.OK
    assert host_sh(lab, "sha256sum /etc/dnf/dnf.conf | cut -d' ' -f1") == conf_before
    verify = lab.ssh(lab.hosts[0], "rpm -V runc", check=False)
    assert (verify.returncode, verify.stdout) == (0, "")
    assert (
        "Upgrading:"
        in lab.ssh(lab.hosts[0], f"{DNF} --assumeno upgrade {NEW_RPM}", check=False).stdout
    )
