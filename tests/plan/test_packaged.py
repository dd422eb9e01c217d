"""A runc that a package owns (issue 26), the pure parts: facts name the package manager and a
diversion; the plan carries each packaged runc with its policy (and older plans keep their
hash); the review shows it; the host steps that divert, hold and give back, run by a real `sh`
on copies; what the procedure records and how rollback is told it worked; audit's
`runc-reverted` and `package-newer`."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.diagnose.findings import host_findings
from orchestrator.errors import BadInput, FactsError
from orchestrator.host import commands
from orchestrator.host.commands import StepResult
from orchestrator.host.facts import facts_to_before, packaged_runcs, parse_facts
from orchestrator.host.procedure import (
    Results,
    _restore_runc,
    _restored,
    package_steps,
    record_packages,
)
from orchestrator.inventory.read import load_inventory
from orchestrator.models import (
    HostBefore,
    HostRecord,
    PackagedRunc,
    RecordedPackage,
    WaveOptions,
)
from orchestrator.plan.planner import build_plan
from orchestrator.plan.render import plan_json, plan_markdown, plan_table
from tests.diagnose.test_audit import facts as audit_facts
from tests.diagnose.test_audit import runc_binary
from tests.host.test_facts_parse import DEBIAN_HOST, DEBIAN_SHA
from tests.plan.test_plan_stream import ARTIFACT, FLEET40

DPKG_RUNC = PackagedRunc(
    path="/usr/sbin/runc", package="runc", version="1.1.5+ds1-1", manager="dpkg", policy="divert"
)
RPM_RUNC = PackagedRunc(
    path="/usr/bin/runc", package="containerd.io", version="1.4.4-3.1.el7", manager="rpm",
    policy="hold",
)  # fmt: skip
TARGET = ARTIFACT.sha256


def packaged_host(extra: str = "") -> str:
    """This build machine's capture (Debian's runc package), as the new facts.sh reports it."""
    line = "package_version=1.1.5+ds1-1+deb12u1\n"
    return DEBIAN_HOST.replace(line, f"{line}package_intact=1\npackage_manager=dpkg\n{extra}", 1)


# -- facts --------------------------------------------------------------------------------


def test_facts_name_the_package_manager_and_a_diversion() -> None:
    facts = parse_facts("h", packaged_host())
    assert facts.runc is not None
    assert (facts.runc.package, facts.runc.package_manager) == ("runc", "dpkg")
    assert facts.runc.diverted_to is None
    (item,) = packaged_runcs(facts)
    assert (item.path, item.package, item.manager, item.policy) == (
        "/usr/sbin/runc", "runc", "dpkg", "divert",
    )  # fmt: skip
    diverted = parse_facts(
        "h", packaged_host("diverted_by=LOCAL\ndiverted_to=/usr/sbin/runc.distrib\n")
    )
    assert diverted.runc is not None
    assert (diverted.runc.diverted_by, diverted.runc.diverted_to) == (
        "LOCAL", "/usr/sbin/runc.distrib",
    )  # fmt: skip


def test_a_package_name_that_is_not_one_never_reaches_the_plan() -> None:
    hostile = packaged_host().replace("package=runc\n", "package=runc;reboot\n", 1)
    with pytest.raises(FactsError, match="its package name is not a package name"):
        facts_to_before(parse_facts("h", hostile))


def test_without_a_package_manager_line_nothing_is_packaged() -> None:
    """Facts from a host whose facts.sh predates the package manager line: no policy guessed."""
    old = DEBIAN_HOST
    assert packaged_runcs(parse_facts("h", old)) == []


# -- the plan ---------------------------------------------------------------------------------


def plan_with(before: HostBefore, options: WaveOptions | None = None, **host_vars: Any) -> Any:
    inventory = load_inventory([FLEET40])
    first = next(iter(inventory.hosts))
    inventory.hosts[first].vars.update(host_vars)
    return build_plan(inventory, ARTIFACT, options or WaveOptions(), {first: before})


BEFORE = HostBefore(runc_path="/usr/sbin/runc", runc_sha256=DEBIAN_SHA)


def test_plans_without_a_packaged_runc_keep_their_hash() -> None:
    plain = plan_with(BEFORE)
    text = plan_json(plain)
    assert b'"packages"' not in text and b"package_policy" not in text
    packaged = plan_with(BEFORE.model_copy(update={"packages": [DPKG_RUNC]}))
    assert b'"packages"' in plan_json(packaged)
    assert packaged.plan_hash != plain.plan_hash  # the policy is covered by the hash
    leave = plan_with(
        BEFORE.model_copy(update={"packages": [DPKG_RUNC]}), WaveOptions(package_policy="leave")
    )
    assert leave.plan_hash not in (plain.plan_hash, packaged.plan_hash)


def test_policy_from_option_then_host_var_then_the_managers_default() -> None:
    before = BEFORE.model_copy(update={"packages": [DPKG_RUNC]})

    def policy(plan: Any) -> str:
        return str(plan.hosts[0].before.packages[0].policy)

    assert policy(plan_with(before)) == "divert"
    assert policy(plan_with(before, runc_rollout_package_policy="leave")) == "leave"
    option = WaveOptions(package_policy="divert")
    assert policy(plan_with(before, option, runc_rollout_package_policy="leave")) == "divert"
    rpm = BEFORE.model_copy(update={"runc_path": "/usr/bin/runc", "packages": [RPM_RUNC]})
    assert policy(plan_with(rpm)) == "hold"


@pytest.mark.parametrize(
    ("packaged", "value", "message"),
    [
        (DPKG_RUNC, "freeze", "runc_rollout_package_policy: 'freeze' is not one of divert"),
        (DPKG_RUNC, "hold", "hold is not for dpkg"),
        (RPM_RUNC, "divert", "divert is not for rpm"),
    ],
)
def test_a_policy_the_package_manager_cannot_do_is_refused(
    packaged: PackagedRunc, value: str, message: str
) -> None:
    before = BEFORE.model_copy(update={"runc_path": packaged.path, "packages": [packaged]})
    with pytest.raises(BadInput, match=message):
        plan_with(before, runc_rollout_package_policy=value)


def test_the_review_shows_the_package_and_warns_of_leave() -> None:
    divert = plan_with(BEFORE.model_copy(update={"packages": [DPKG_RUNC]}))
    markdown = plan_markdown(divert)
    assert "## Packaged runc (1 host)" in markdown
    assert "| `/usr/sbin/runc` | `runc` | `1.1.5+ds1-1` | dpkg | **divert** |" in markdown
    assert markdown.index("## Packaged runc") < markdown.index("## Waves")
    assert "WARNING" not in markdown.split("## Packaged runc")[1].split("## Waves")[0]
    leave = plan_with(
        BEFORE.model_copy(update={"packages": [DPKG_RUNC]}), WaveOptions(package_policy="leave")
    )
    assert "WARNING: the package manager will undo the swap on 1 host" in plan_markdown(leave)
    assert "policy leave (WARNING: the package manager will undo the swap)" in plan_table(
        leave, width=300
    )
    assert "## Packaged runc" not in plan_markdown(plan_with(BEFORE))


# -- the host steps, by a real sh on copies ------------------------------------------------


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(step: commands.HostCommand) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", step.script], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        ("[main]\ngpgcheck=1\n", "[main]\ngpgcheck=1\nexclude=containerd.io\n"),
        (
            "[main]\nexclude=kernel*\ngpgcheck=1\n[other]\nx=1\n",
            "[main]\nexclude=kernel* containerd.io\ngpgcheck=1\n[other]\nx=1\n",
        ),
        ("[main]\nexcludepkgs=containerd.io\n", "[main]\nexcludepkgs=containerd.io\n"),
        (
            "[main]\na=1\n\n[updates]\nb=2\n",
            "[main]\na=1\n\nexclude=containerd.io\n[updates]\nb=2\n",
        ),
        ("# nothing\n", "# nothing\n[main]\nexclude=containerd.io\n"),
    ],
)
def test_hold_adds_one_exclude_word_to_main(tmp_path: Path, conf: str, expected: str) -> None:
    path = tmp_path / "dnf.conf"
    path.write_text(conf)
    before = sha(path)
    done = run(commands.hold_package("containerd.io", str(path), before))
    assert done.returncode == 0, done.stdout + done.stderr
    assert path.read_text() == expected
    said = commands.parse_file_lines(done.stdout, [str(path)])[str(path)]
    assert said == {"before": before, "after": sha(path)}
    assert not list(tmp_path.glob("dnf.conf.runc-rollout.*"))


def test_hold_changes_nothing_in_a_file_changed_since_its_backup(tmp_path: Path) -> None:
    path = tmp_path / "dnf.conf"
    path.write_text("[main]\n")
    done = run(commands.hold_package("containerd.io", str(path), "0" * 64))
    assert done.returncode == 1 and "changed since it was backed up" in done.stdout
    assert path.read_text() == "[main]\n"


def test_hold_leaves_a_symlink_alone(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.write_text("[main]\n")
    (tmp_path / "dnf.conf").symlink_to(real)
    done = run(commands.hold_package("containerd.io", str(tmp_path / "dnf.conf"), sha(real)))
    assert done.returncode == 1 and "is not a plain file" in done.stdout
    assert real.read_text() == "[main]\n"


def test_the_package_script_travels_with_its_parameters_quoted() -> None:
    """A name is data: the step sets it once, quoted, and the script only reads it."""
    step = commands.divert_package("/usr/sbin/run c", "runc", "/usr/sbin/run c.distrib")
    assert "TARGET='/usr/sbin/run c'\n" in step.script
    assert "DIVERT='/usr/sbin/run c.distrib'\n" in step.script
    assert step.params["PKG"] == "runc"


# -- the record and the rollback's reading of it --------------------------------------------


def record(**changes: Any) -> HostRecord:
    values: dict[str, Any] = {
        "run_id": "r1",
        "plan_id": "p1",
        "phase": "finished",
        "outcome": "done",
        "runc_path": "/usr/sbin/runc",
        "before_sha256": DEBIAN_SHA,
        "before_version": "1.1.5+ds1",
        "target_sha256": TARGET,
        "sysctl_target": 16384,
        "updated": 1.0,
    }
    values.update(changes)
    return HostRecord.model_validate(values)


def test_a_record_without_packages_is_written_as_before() -> None:
    assert '"packages"' not in record().model_dump_json()


def test_the_record_names_the_diversion_before_it_is_made() -> None:
    facts = parse_facts("h", packaged_host())
    (item,) = record_packages([DPKG_RUNC], facts, None, {})
    assert (item.diverted_to, item.diversion_added) == ("/usr/sbin/runc.distrib", True)
    steps = package_steps(record(packages=[item]))
    assert [step.name for step in steps] == ["divert"]
    assert steps[0].params["DIVERT"] == "/usr/sbin/runc.distrib"


def test_a_diversion_already_there_is_not_this_runs_to_remove() -> None:
    ours = parse_facts("h", packaged_host("diverted_by=LOCAL\ndiverted_to=/usr/sbin/runc.old\n"))
    (item,) = record_packages([DPKG_RUNC], ours, None, {})
    assert (item.diverted_to, item.diversion_added) == ("/usr/sbin/runc.old", False)
    assert package_steps(record(packages=[item])) == []
    # ... unless this very run added it before a crash (its own earlier record says so)
    previous = record(packages=[item.model_copy(update={"diversion_added": True})])
    (again,) = record_packages([DPKG_RUNC], ours, previous, {})
    assert again.diversion_added is True
    other = parse_facts("h", packaged_host("diverted_by=dash\ndiverted_to=/usr/sbin/runc.x\n"))
    with pytest.raises(Exception, match="diverted by dash already; not touched"):
        record_packages([DPKG_RUNC], other, None, {})


def test_rollback_gives_the_package_back_only_where_this_run_diverted() -> None:
    added = RecordedPackage(
        path="/usr/sbin/runc", package="runc", manager="dpkg", policy="divert",
        diverted_to="/usr/sbin/runc.distrib", diversion_added=True,
    )  # fmt: skip
    step = _restore_runc(record(packages=[added]), "/usr/sbin/runc", DEBIAN_SHA)
    assert step.params["ACTION"] == "restore" and step.name == "restore-binary"
    kept = added.model_copy(update={"diversion_added": False})
    step = _restore_runc(record(packages=[kept]), "/usr/sbin/runc", DEBIAN_SHA)
    assert "ACTION" not in step.params  # the old runc from the backup store, as always
    # The package's file may differ from the old runc (upgraded while diverted): still restored.
    said = Results([StepResult("restore-binary", 0, f"restored=package\nsha256={'e' * 64}\n", "")])
    assert _restored(record(packages=[added]), "/usr/sbin/runc", DEBIAN_SHA, said, "restore-binary")
    failed = Results([StepResult("restore-binary", 1, "why=neither\n", "")])
    assert not _restored(
        record(packages=[added]), "/usr/sbin/runc", DEBIAN_SHA, failed, "restore-binary"
    )


# -- audit -----------------------------------------------------------------------------------


def audited(runc: dict[str, Any], rec: HostRecord) -> dict[str, str]:
    facts = audit_facts(
        runc=runc_binary(**runc).model_dump(),
        record_json=rec.model_dump_json(),
        runtime_path=["/usr/sbin"],
    )
    return {finding.id: finding.detail for finding in host_findings(facts, ())}


DIVERTED = RecordedPackage(
    path="/usr/sbin/runc", package="runc", version="1.0.0~rc93+ds1-1", manager="dpkg",
    policy="divert", diverted_to="/usr/sbin/runc.distrib", diversion_added=True,
)  # fmt: skip
ROLLED_OUT = {
    "path": "/usr/sbin/runc", "sha256": TARGET, "version": "1.1.5+ds1", "commit": "x",
    "package": "runc", "package_manager": "dpkg", "package_intact": False,
}  # fmt: skip


def test_package_newer_with_the_command_that_drops_the_diversion() -> None:
    newer = audited({**ROLLED_OUT, "package_version": "1.1.12+ds1-1"}, record(packages=[DIVERTED]))
    assert "package-newer" in newer
    assert "dpkg-divert --local --no-rename --remove /usr/sbin/runc" in newer["package-newer"]
    assert "runc-reverted" not in newer
    # the changed checksum is explained, not reported as a hand swap
    assert "runc-rollout run r1 replaced it" in newer["runc-not-package-content"]
    older = audited(
        {**ROLLED_OUT, "package_version": "1.0.0~rc93+ds1-1"}, record(packages=[DIVERTED])
    )
    assert "package-newer" not in older
    epoch = audited({**ROLLED_OUT, "package_version": "1:1.2.0-1"}, record(packages=[DIVERTED]))
    assert "package-newer" in epoch


def test_hold_package_newer_says_where_the_exclude_is() -> None:
    held = RecordedPackage(
        path="/usr/sbin/runc", package="containerd.io", manager="rpm", policy="hold",
        hold_file="/etc/yum.conf", hold_before_sha256="a" * 64,
    )  # fmt: skip
    runc = {**ROLLED_OUT, "package": "containerd.io", "package_manager": "rpm"}
    found = audited({**runc, "package_version": "1.6.9-3.1.el7"}, record(packages=[held]))
    assert "exclude= line of /etc/yum.conf" in found["package-newer"]
    assert "rpm -V reports it changed" in found["runc-not-package-content"]


def test_runc_reverted_by_the_package_or_by_a_person() -> None:
    rc93 = {**ROLLED_OUT, "sha256": "c" * 64, "version": "1.0.0-rc93", "package_intact": True,
            "package_version": "1.0.0~rc93+ds1-1"}  # fmt: skip
    left = DIVERTED.model_copy(update={"policy": "leave", "diverted_to": None})
    found = audited(rc93, record(packages=[left]))
    assert "its package runc 1.0.0~rc93+ds1-1 put its own file back" in found["runc-reverted"]
    assert "policy was leave" in found["runc-reverted"]
    by_hand = audited({**rc93, "package_intact": False}, record())
    assert "a person or another tool replaced it" in by_hand["runc-reverted"]
    facts = audit_facts(
        runc=runc_binary(**rc93).model_dump(),
        record_json=record(target_version="1.1.5").model_dump_json(),
    )
    (reverted,) = [f for f in host_findings(facts, ()) if f.id == "runc-reverted"]
    assert reverted.severity == "high"  # rc93 back where 1.1.5 was rolled out
    newer = {**rc93, "version": "1.1.12", "package_version": "1.1.12+ds1-1"}
    facts = audit_facts(
        runc=runc_binary(**newer).model_dump(),
        record_json=record(target_version="1.1.5").model_dump_json(),
    )
    (reverted,) = [f for f in host_findings(facts, ()) if f.id == "runc-reverted"]
    assert reverted.severity == "low" and "no older" in reverted.title
    rolled_back = audited(rc93, record(outcome="rolled_back"))
    assert "runc-reverted" not in rolled_back


def test_plan_json_of_a_packaged_host_round_trips() -> None:
    plan = plan_with(BEFORE.model_copy(update={"packages": [DPKG_RUNC]}))
    data = json.loads(plan_json(plan))
    (host,) = [h for w in data["waves"] for h in w["hosts"] if h.get("before")]
    assert host["before"]["packages"][0]["policy"] == "divert"


# -- the lab's packaged hosts: their own dpkg / rpm state, never the machine's ----------------


def test_a_packaged_lab_host_has_its_own_package_database_and_usr_sbin() -> None:
    from orchestrator.lab import hostdef
    from orchestrator.lab import packaged as lab_packaged

    common = {"state_dir": "/s", "host_dir": "/s/h", "kind": "full", "sysctl_conf_exists": True}
    plain = hostdef.holder_ops(**common)  # type: ignore[arg-type]
    assert not [op for op in plain if "/usr/sbin" in (op.get("path"), op.get("target"))]
    dpkg = hostdef.holder_ops(**common, packaged=True)  # type: ignore[arg-type]
    assert {"op": "bind", "source": "/s/h/var-lib-dpkg", "target": "/var/lib/dpkg"} in dpkg
    assert {"op": "shadow", "path": "/usr/sbin", "except": ["runc"]} in dpkg
    shadow_var_lib = dpkg.index({"op": "shadow", "path": "/var/lib"})
    assert dpkg.index(dpkg[[op.get("target") for op in dpkg].index("/var/lib/dpkg")]) > (
        shadow_var_lib
    )  # bound after /var/lib is shadowed, so it is not hidden again
    rpm = hostdef.holder_ops(**common, packaged=True, rpm=True)  # type: ignore[arg-type]
    assert {"op": "bind", "source": "/s/h/etc-dnf", "target": "/etc/dnf"} in rpm
    assert {"op": "bind", "source": "/s/h/var-lib-rpm", "target": "/var/lib/rpm"} in rpm
    # dpkg and rpm run in a host only where its own database and /usr/sbin are in place
    (deb_reset,) = lab_packaged.reset_commands("/x.deb")
    assert f"[ -f /var/lib/dpkg/{lab_packaged.MARKER} ]" in deb_reset[2]
    assert 'stat -f -c %T /usr/sbin)" = tmpfs' in deb_reset[2]
    assert deb_reset[2].index("tmpfs") < deb_reset[2].index("dpkg -i")
    (rpm_reset,) = lab_packaged.rpm_reset_commands("/x.rpm")
    assert rpm_reset[2].index(f"{lab_packaged.RPM_DB}/{lab_packaged.DNF_MARKER}") < (
        rpm_reset[2].index("-i --nodeps")
    )
