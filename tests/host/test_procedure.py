"""The host procedure's every path on a fake host (`fakehost.FakeHost`): fresh, noop, drift, each
failure before and after the swap, resume from each phase, rollback. Seconds, no host."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from orchestrator.diagnose.advisories import RC93_HANG, load_advisories
from orchestrator.host import commands
from orchestrator.host.facts import facts_to_before, parse_facts
from orchestrator.host.procedure import (
    PHASE_ORDER,
    HostOutcome,
    HostProcedure,
    StepFailed,
    decide,
    rollback_host,
)
from orchestrator.host.session import ConnectionLost
from orchestrator.host.steps import Payload
from orchestrator.models import (
    Artifact,
    HostBefore,
    HostPhase,
    HostRecord,
    PlannedHost,
    SshTarget,
    TargetRefusal,
    VerifySpec,
)
from orchestrator.run.engine import changes
from tests.host.fakehost import (
    CRI_RUNC,
    INCIDENT_FILE,
    INCIDENT_TEXT,
    NEW,
    OLD,
    RUNC,
    FakeHost,
    runc_content,
    sha,
)

RUN = "run-1"
STAGED = commands.staging_path(RUNC, RUN)


@pytest.fixture
def artifact(tmp_path: Path) -> Artifact:
    path = tmp_path / "runc"
    path.write_text(NEW)
    return Artifact(path=str(path), sha256=sha(NEW), size=len(NEW), version="1.1.5")


def planned(before: HostBefore | None = None, **verify: object) -> PlannedHost:
    spec = VerifySpec(image="lab/busybox", **verify)  # type: ignore[arg-type]
    return PlannedHost(
        name="fake", domain="a", ssh=SshTarget(address="fake"), verify=spec, before=before
    )


class Phases(list[HostPhase]):
    def __call__(self, host: str, phase: HostPhase, sha: str | None) -> None:
        self.append(phase)


PACKED = Payload(lambda: gzip.compress(NEW.encode()))


def upgrade(
    host: FakeHost, artifact: Artifact, plan: PlannedHost | None = None, **packed: Payload
) -> tuple[HostOutcome, Phases]:
    outcome, phases, _ = upgrade_with(host, artifact, plan, **packed)
    return outcome, phases


def upgrade_with(
    host: FakeHost,
    artifact: Artifact,
    plan: PlannedHost | None = None,
    packed: Payload | None = None,
) -> tuple[HostOutcome, Phases, HostProcedure]:
    phases = Phases()
    procedure = HostProcedure(
        host,
        plan or planned(),
        artifact,
        packed=packed,
        run_id=RUN,
        plan_id="plan-1",
        sysctl_target=16384,
        on_phase=phases,
        clock=lambda: 1700000000.0,
    )
    return procedure.upgrade(), phases, procedure


def assert_untouched(host: FakeHost) -> None:
    assert host.files[RUNC] == OLD and host.sysctl == 163840
    assert host.files[INCIDENT_FILE] == INCIDENT_TEXT
    assert STAGED not in host.files and host.lock_owner is None


def assert_rolled_back(host: FakeHost) -> None:
    assert_untouched(host)
    assert host.record_data()["phase"] == "finished"
    assert host.record_data()["outcome"] == "rolled_back"


def test_a_fresh_upgrade_pushes_the_gzip_when_the_host_has_no_copy(artifact: Artifact) -> None:
    host = FakeHost()
    outcome, phases, procedure = upgrade_with(host, artifact, packed=PACKED)
    assert outcome.status == "done" and outcome.runc_sha256 == sha(NEW), outcome
    assert outcome.probe is not None and outcome.probe.outcome == "passed"
    assert outcome.message == "docker exec checked in container keepalive"
    assert phases == list(PHASE_ORDER[1:])
    assert host.files[RUNC] == NEW and host.backups[sha(OLD)] == OLD
    assert host.sysctl == 16384 and "= 16384" in host.files[INCIDENT_FILE]
    assert STAGED not in host.files and host.lock_owner is None
    record = host.record_data()
    assert (record["phase"], record["outcome"]) == ("finished", "done")
    assert record["files"] == [
        {
            "path": INCIDENT_FILE,
            "before_sha256": sha(INCIDENT_TEXT),
            "after_sha256": sha(host.files[INCIDENT_FILE]),
        }
    ]
    assert procedure.delivery == "push-gzip" and host.puts == 0
    stage = ["lock", "check-staged", "backup", "backup-files"]
    assert host.batches[:4] == [["facts"], ["obtain", *stage], ["push"], stage], host.batches
    assert len(host.batches) == 7  # five round trips, and two for the push


def test_a_host_without_gunzip_gets_the_artifact_as_it_is(artifact: Artifact) -> None:
    host = FakeHost(gunzip=False)
    outcome, _, procedure = upgrade_with(host, artifact, packed=PACKED)
    assert outcome.status == "done" and host.files[RUNC] == NEW
    assert procedure.delivery == "push" and host.puts == 1


def test_a_host_whose_backup_store_holds_the_artifact_gets_no_push(artifact: Artifact) -> None:
    """Say a host went back to rc93 by hand after an earlier rollout: its store has the new one."""
    host = FakeHost(backups={sha(NEW): NEW})
    outcome, _, procedure = upgrade_with(host, artifact, packed=PACKED)
    assert outcome.status == "done" and host.files[RUNC] == NEW
    assert procedure.delivery == "backup" and host.puts == 0 and ["push"] not in host.batches
    assert host.batches[1] == ["obtain", "lock", "check-staged", "backup", "backup-files"]


def test_a_resume_keeps_what_the_cut_run_staged(artifact: Artifact) -> None:
    host = FakeHost()
    host.files[STAGED] = NEW  # the push arrived; the connection went before the lock
    outcome, _, procedure = upgrade_with(host, artifact, packed=PACKED)
    assert outcome.status == "done" and procedure.delivery == "staged"
    assert ["push"] not in host.batches


URL = "http://mirror.example/runc"


def test_hosts_fetch_from_the_plans_url(artifact: Artifact) -> None:
    host = FakeHost(served={URL: NEW})
    outcome, _, procedure = upgrade_with(
        host, artifact.model_copy(update={"url": URL}), packed=PACKED
    )
    assert outcome.status == "done" and host.files[RUNC] == NEW
    assert procedure.delivery == "url" and ["push"] not in host.batches


def test_an_unanswering_url_falls_back_to_the_push(artifact: Artifact) -> None:
    host = FakeHost(served={})
    outcome, _, procedure = upgrade_with(
        host, artifact.model_copy(update={"url": URL}), packed=PACKED
    )
    assert outcome.status == "done" and procedure.delivery == "push-gzip"


@pytest.mark.parametrize(
    ("served", "said"),
    [
        (runc_content("1.1.6"), r"served sha256 [0-9a-f]{64}, not the plan's [0-9a-f]{64}"),
        (
            runc_content("1.0.0-rc93-evil"),
            rf"served more than {len(NEW)} bytes, not the plan's {len(NEW)} bytes",
        ),
    ],
)
def test_a_url_serving_another_file_is_refused_before_anything(
    artifact: Artifact, served: str, said: str
) -> None:
    host = FakeHost(served={URL: served})
    with pytest.raises(StepFailed, match=said):
        upgrade(host, artifact.model_copy(update={"url": URL}), packed=PACKED)
    assert_untouched(host)
    assert host.batches[1][0] == "obtain" and ["push"] not in host.batches


def test_a_host_at_the_target_is_noop_and_untouched(artifact: Artifact) -> None:
    host = FakeHost(files={RUNC: NEW})
    outcome, _ = upgrade(host, artifact)
    assert outcome.status == "noop" and host.batches == [["facts"]] and host.puts == 0


@pytest.mark.parametrize(
    "before",
    [
        HostBefore(runc_path=RUNC, runc_sha256="0" * 64, sysctl_runtime=163840),
        HostBefore(runc_path="/usr/bin/runc", runc_sha256=sha(OLD), sysctl_runtime=163840),
        HostBefore(runc_path=RUNC, runc_sha256=sha(OLD), sysctl_runtime=4096),
    ],
)
def test_a_host_that_changed_since_the_plan_is_drift(
    artifact: Artifact, before: HostBefore
) -> None:
    host = FakeHost()
    outcome, _ = upgrade(host, artifact, planned(before))
    assert outcome.status == "drift" and "host changed since the plan" in str(outcome.message)
    assert_untouched(host)
    assert host.batches == [["facts"]]


def test_decide_is_what_the_dry_run_shows(artifact: Artifact) -> None:
    """`apply --dry-run` and apply judge by the same function: the sysctl counts for drift."""
    host = FakeHost()
    facts = HostProcedure(
        host, planned(), artifact, run_id=RUN, plan_id="p", sysctl_target=16384, on_phase=Phases()
    ).facts()
    before = HostBefore(runc_path=RUNC, runc_sha256=sha(OLD), sysctl_runtime=4096)
    assert decide(planned(before), artifact, facts, None).action == "drift"
    assert decide(planned(), artifact, facts, None).action == "swap"
    unreadable = facts.model_copy(update={"record_json": "{"})
    assert decide(planned(), artifact, unreadable, None).action == "fail"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lock_owner": "other-run"}, "host is locked by run other-run; not touched"),
        ({"fail": {"put": 1}}, "upload to"),
        ({"fail": {"check-staged": commands.EXIT_WONT_RUN}}, "staged runc does not run"),
        ({"fail": {"backup": 1}}, "could not back up"),
        ({"fail": {"backup-files": 1}}, "backing up the sysctl files failed"),
        ({"fail": {"record-backed-up": 1}}, "could not write"),
    ],
)
def test_a_failure_before_the_swap_leaves_the_host_untouched(
    artifact: Artifact, change: dict[str, object], message: str
) -> None:
    host = FakeHost(**change)  # type: ignore[arg-type]
    with pytest.raises(StepFailed, match=message):
        upgrade(host, artifact)
    assert host.files[RUNC] == OLD and host.sysctl == 163840 and STAGED not in host.files
    assert host.lock_owner == change.get("lock_owner")


def test_a_staged_file_that_arrived_changed_is_refused(artifact: Artifact, tmp_path: Path) -> None:
    wrong = artifact.model_copy(update={"sha256": sha("something else")})
    host = FakeHost()
    with pytest.raises(StepFailed, match="staged file arrived with sha256"):
        upgrade(host, wrong)
    assert_untouched(host)


def test_a_staged_runc_of_another_version_is_refused(artifact: Artifact) -> None:
    host = FakeHost()
    with pytest.raises(StepFailed, match=r"reports version 1\.1\.5, the plan says 9\.9"):
        upgrade(host, artifact.model_copy(update={"version": "9.9"}))
    assert_untouched(host)


def test_a_staged_runc_the_plan_refuses_is_not_swapped(tmp_path: Path) -> None:
    """A plan that did not know the version carries its refusals: the host checks the staged
    file's own --version before its swap."""
    content = runc_content("1.0.0-rc93+patched")  # another file than the host's own rc93
    path = tmp_path / "runc"
    path.write_text(content)
    unknown = Artifact(path=str(path), sha256=sha(content), size=len(content))
    hang = next(a for a in load_advisories() if a.id == RC93_HANG)
    refuse = [TargetRefusal(id=hang.id, affected=list(hang.affected), commits=list(hang.commits))]
    host = FakeHost()
    procedure = HostProcedure(
        host, planned(), unknown, run_id=RUN, plan_id="plan-1", sysctl_target=16384,
        on_phase=Phases(), refuse=refuse,
    )  # fmt: skip
    with pytest.raises(
        StepFailed, match=r"staged runc 1\.0\.0-rc93\+patched has runc-rc93-pipe-hang"
    ):
        procedure.upgrade()
    assert_untouched(host)
    accepted = FakeHost()
    outcome, _ = upgrade(accepted, unknown)  # no refusals: accepted at plan time
    assert outcome.status == "done" and accepted.files[RUNC] == content


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"probe": "hung"}, "probe (docker): hung in pipe_write"),
        ({"probe": "undecidable"}, "probe (docker): cannot decide"),
        (
            {"fail": {"verify-docker": commands.EXIT_KILLED}},
            "verification container (verify-docker) timed out",
        ),
        ({"fail": {"verify-exec": 1}}, "docker exec into a running container failed"),
        ({"fail": {"runc-version": 1}}, "runc --version reports"),
        ({"on_swap": ["restart-dockerd"]}, "dockerd restarted or stopped during the swap"),
        ({"on_swap": ["stick"]}, "1 new stuck `runc init` after the swap"),
        (
            {"mount_ns": "mnt:[7]", "on_swap": ["diverge"]},
            "the daemons' mount namespace mnt:[7] still sees another /usr/local/sbin/runc",
        ),
        ({"fail": {"set-sysctl": 1}}, "restoring fs.pipe-user-pages-soft failed"),
        ({"fail": {"record-swapped": 1}}, "record.json after the swap"),
    ],
)
def test_a_failure_after_the_swap_rolls_the_host_back(
    artifact: Artifact, change: dict[str, object], message: str
) -> None:
    host = FakeHost(**change)  # type: ignore[arg-type]
    outcome, phases = upgrade(host, artifact)
    assert outcome.status == "failed" and outcome.runc_sha256 == sha(OLD)
    assert str(outcome.message).endswith("; rolled back to old runc")
    assert message in str(outcome.message), outcome.message
    assert_rolled_back(host)
    assert phases[-1] == "finished"


def test_daemons_in_a_mount_namespace_of_their_own_get_the_swap_here(
    artifact: Artifact,
) -> None:
    """Their runc is this session's file: swapped here, and their namespace sees it after."""
    host = FakeHost(mount_ns="mnt:[7]")
    outcome, _ = upgrade(host, artifact)
    assert outcome.status == "done", outcome.message
    assert host.files[RUNC] == NEW


def test_a_failed_swap_keeps_the_old_runc(artifact: Artifact) -> None:
    host = FakeHost(fail={"swap": 1})
    with pytest.raises(StepFailed, match="swap failed: error=injected; old runc kept"):
        upgrade(host, artifact)
    assert host.files[RUNC] == OLD and host.lock_owner is None and STAGED not in host.files
    assert host.record_data()["outcome"] == "failed"


@pytest.mark.parametrize(
    ("lost_after", "phase"),
    [
        ("check-staged", None),
        ("record-backed-up", "backed_up"),
        ("swap", "backed_up"),
        ("record-swapped", "swapped"),
        ("probe", "swapped"),
        ("record-verified", "verified"),
        ("set-sysctl", "verified"),
    ],
)
def test_a_run_cut_at_any_step_is_finished_by_a_resume(
    artifact: Artifact, lost_after: str, phase: str | None
) -> None:
    host = FakeHost(lose_connection_after=lost_after)
    with pytest.raises(ConnectionLost):
        upgrade(host, artifact)
    assert (host.record_data()["phase"] if host.record else None) == phase
    host.down = False
    outcome, _ = upgrade(host, artifact)  # the same run id: a resume
    assert outcome.status == "done", outcome
    assert host.files[RUNC] == NEW and host.sysctl == 16384 and host.lock_owner is None
    record = host.record_data()
    assert record["outcome"] == "done"
    # Cut after the file was rewritten but before the record said so, the resume finds nothing
    # left to change and cannot know the "after": a rollback then restores the file as it was.
    after = None if lost_after == "set-sysctl" else sha(host.files[INCIDENT_FILE])
    assert record["files"] == [
        {"path": INCIDENT_FILE, "before_sha256": sha(INCIDENT_TEXT), "after_sha256": after}
    ]
    again, _ = upgrade(host, artifact)
    assert (again.status, again.message) == ("done", "already finished by this run")


def test_a_resume_that_finds_the_old_runc_after_the_swap_rolls_back(artifact: Artifact) -> None:
    host = FakeHost(lose_connection_after="probe")
    with pytest.raises(ConnectionLost):
        upgrade(host, artifact)
    host.down = False
    host.files[RUNC] = OLD  # a rollback cut short put the old binary back
    outcome, _ = upgrade(host, artifact)
    assert outcome.status == "failed" and "not the target, after the swap" in str(outcome.message)
    assert_rolled_back(host)


def test_a_record_of_the_earlier_layout_is_finished(artifact: Artifact) -> None:
    """Records the earlier procedure wrote: phase `sysctl_restored` (no longer written) and a
    record without files; both are resumed by this one."""
    host = FakeHost()
    first, _ = upgrade(host, artifact)
    assert first.status == "done"
    record = host.record_data()
    record.update(phase="sysctl_restored", outcome="in_progress")
    host.record = json.dumps(record)
    host.lock_owner = RUN
    outcome, phases = upgrade(host, artifact)
    assert outcome.status == "done" and phases == ["finished"] and host.lock_owner is None


def rollback(host: FakeHost, run_id: str | None = RUN) -> HostOutcome:
    return rollback_host(host, "fake", run_id=run_id, on_phase=Phases(), clock=lambda: 1.0)


def test_rollback_returns_the_recorded_before(artifact: Artifact) -> None:
    host = FakeHost()
    upgrade(host, artifact)
    outcome = rollback(host)
    assert outcome.status == "rolled_back" and outcome.runc_sha256 == sha(OLD)
    assert "WARNING: rolled back to runc 1.0.0-rc93" in str(outcome.message)
    assert_rolled_back(host)
    assert rollback(host).message == "already rolled back"
    assert len(host.batches) == 6 + 3 + 1


def test_rollback_keeps_a_file_edited_since_and_puts_the_old_one_beside_it(
    artifact: Artifact,
) -> None:
    host = FakeHost()
    upgrade(host, artifact)
    host.files[INCIDENT_FILE] = "fs.pipe-user-pages-soft = 4096\n"  # an admin's edit
    outcome = rollback(host)
    assert "kept as it is" in str(outcome.message)
    assert host.files[INCIDENT_FILE + commands.KEPT_SUFFIX] == INCIDENT_TEXT


def test_rollback_of_a_run_that_never_recorded_releases_what_it_left(artifact: Artifact) -> None:
    host = FakeHost(lose_connection_after="check-staged")
    with pytest.raises(ConnectionLost):
        upgrade(host, artifact)
    host.down = False
    assert host.lock_owner == RUN and STAGED in host.files
    outcome = rollback(host)
    assert outcome.phase == "none" and "never changed this host" in str(outcome.message)
    assert_untouched(host)
    with pytest.raises(StepFailed, match="no host-side record"):
        rollback(host, run_id=None)


# -- a host whose runtimes execute two runc files --------------------------------------------
# Docker's default runs /usr/local/sbin/runc, containerd CRI's BinaryName (kubelet's)
# /usr/local/bin/runc: both are swapped under one host record, one lock and one rollback, and
# each is proven by a container of its own.

OLDER = runc_content("1.0.0-rc92")


def two_runc_host() -> FakeHost:
    return FakeHost(files={RUNC: OLD, CRI_RUNC: OLDER, **FakeHost().files})


def test_facts_and_the_plan_name_both_runc_files() -> None:
    facts = parse_facts("fake", two_runc_host()._facts_()[1])
    assert facts.runc is not None and facts.runc.file == RUNC
    assert [(item.source, item.runc.file) for item in facts.also_runc] == [
        ("containerd CRI BinaryName", CRI_RUNC)
    ]
    before = facts_to_before(facts)
    assert [(b.path, b.sha256) for b in before.also] == [(CRI_RUNC, sha(OLDER))]


def test_both_are_swapped_under_one_record_and_each_is_proven(artifact: Artifact) -> None:
    host = two_runc_host()
    outcome, _ = upgrade(host, artifact)
    assert outcome.status == "done", outcome.message
    assert host.files[RUNC] == NEW and host.files[CRI_RUNC] == NEW
    assert host.backups[sha(OLD)] == OLD and host.backups[sha(OLDER)] == OLDER
    record = host.record_data()
    assert (record["runc_path"], record["outcome"]) == (RUNC, "done")
    assert record["also"] == [
        {"path": CRI_RUNC, "before_sha256": sha(OLDER), "before_version": "1.0.0-rc92"}
    ]
    (swapping,) = [batch for batch in host.batches if "swap" in batch]  # one round trip
    assert {"swap-1", "runc-version", "runc-version-1", "probe", "probe-1"} <= set(swapping)
    assert not [path for path in host.files if "/.runc-rollout-" in path]  # no staged copy left

    assert rollback(host).status == "rolled_back"
    assert host.files[RUNC] == OLD and host.files[CRI_RUNC] == OLDER
    assert host.lock_owner is None


def test_a_failing_container_through_the_cri_runc_rolls_both_back(artifact: Artifact) -> None:
    host = two_runc_host()
    host.probe_of[CRI_RUNC] = "hung"
    outcome, _ = upgrade(host, artifact)
    assert outcome.status == "failed"
    assert outcome.message is not None and outcome.message.startswith(f"{CRI_RUNC}: ")
    assert host.files[RUNC] == OLD and host.files[CRI_RUNC] == OLDER
    assert host.record_data()["outcome"] == "rolled_back" and host.lock_owner is None


def test_a_failed_second_rename_puts_the_first_back(artifact: Artifact) -> None:
    host = two_runc_host()
    host.fail["swap-1"] = 1
    with pytest.raises(StepFailed, match="swap failed"):
        upgrade(host, artifact)
    assert host.files[RUNC] == OLD and host.files[CRI_RUNC] == OLDER
    assert host.record_data()["outcome"] == "failed" and host.lock_owner is None


def test_a_resume_cut_between_the_two_renames_rolls_both_back(artifact: Artifact) -> None:
    host = two_runc_host()
    host.lose_connection_after = "swap"
    procedure = HostProcedure(
        host,
        planned(),
        artifact,
        run_id=RUN,
        plan_id="plan-1",
        sysctl_target=16384,
        on_phase=Phases(),
    )
    with pytest.raises(Exception, match="lost after swap"):
        procedure.upgrade()
    host.down = False
    assert host.files[RUNC] == NEW and host.files[CRI_RUNC] == OLDER  # one renamed, not both
    outcome = procedure.upgrade()  # the resume of the same run
    assert outcome.status == "failed" and "not the target" in (outcome.message or "")
    assert host.files[RUNC] == OLD and host.files[CRI_RUNC] == OLDER
    assert host.lock_owner is None and not [p for p in host.files if p.endswith(".tmp")]
    assert host.record_data()["outcome"] == "rolled_back"


def test_only_the_runc_not_at_the_target_is_swapped(artifact: Artifact) -> None:
    host = FakeHost(
        files={
            RUNC: NEW,
            CRI_RUNC: OLDER,
            **{k: v for k, v in FakeHost().files.items() if k != RUNC},
        }
    )
    outcome, _ = upgrade(host, artifact)
    assert outcome.status == "done", outcome.message
    assert host.record_data()["runc_path"] == CRI_RUNC
    assert host.files[CRI_RUNC] == NEW


# -- a packaged runc (dpkg, divert): the fake host models the package's file and a diversion ----

DIVERTED = RUNC + commands.DIVERT_SUFFIX


def packages_of(host: FakeHost) -> dict[str, object]:
    """The one packaged runc the host record names."""
    (package,) = HostRecord.model_validate_json(host.record or "").packages
    return package.model_dump()


def packaged_host(**changes: object) -> FakeHost:
    return FakeHost(package_file=OLD, **changes)  # type: ignore[arg-type]


def test_a_packaged_runc_is_diverted_in_the_swaps_round_trip(artifact: Artifact) -> None:
    host = packaged_host()
    outcome, _ = upgrade(host, artifact)
    assert outcome.status == "done", outcome
    assert host.files[RUNC] == NEW and host.files[DIVERTED] == OLD
    assert host.diverted_to == DIVERTED
    # recorded with the "before", diverted after it, then swapped: one round trip
    (swap_batch,) = [batch for batch in host.batches if "swap" in batch]
    assert swap_batch.index("record-backed-up") < swap_batch.index("divert")
    assert swap_batch.index("divert") < swap_batch.index("swap")
    package = packages_of(host)
    assert package["diverted_to"] == DIVERTED and package["diversion_added"] is True
    assert host.record_data()["target_version"] == "1.1.5"


def test_a_failed_divert_swaps_nothing_and_leaves_no_diversion(artifact: Artifact) -> None:
    host = packaged_host(fail={"divert": 1})
    with pytest.raises(StepFailed, match=r"divert runc failed.*runc not swapped, host rolled back"):
        upgrade(host, artifact)
    assert host.files[RUNC] == OLD and host.diverted_to is None and DIVERTED not in host.files
    assert host.record_data()["outcome"] == "rolled_back" and host.lock_owner is None


def test_a_failed_swap_of_a_packaged_runc_gives_the_package_back(artifact: Artifact) -> None:
    host = packaged_host(fail={"swap": 1})
    with pytest.raises(StepFailed, match=r"swap failed.*package given back"):
        upgrade(host, artifact)
    assert host.files[RUNC] == OLD and host.diverted_to is None and DIVERTED not in host.files


def test_a_failed_verification_gives_the_package_back(artifact: Artifact) -> None:
    host = packaged_host(probe="hung")
    outcome, _ = upgrade(host, artifact)
    assert outcome.status == "failed"
    assert host.files[RUNC] == OLD and host.diverted_to is None and DIVERTED not in host.files


def test_rollback_gives_back_the_packages_file_even_after_its_upgrade(artifact: Artifact) -> None:
    host = packaged_host()
    upgrade(host, artifact)
    newer = runc_content("1.1.12")
    host.files[DIVERTED], host.package_file = newer, newer  # the package upgraded while diverted
    outcome = rollback(host)
    assert outcome.status == "rolled_back" and outcome.runc_sha256 == sha(newer)
    assert host.files[RUNC] == newer and host.diverted_to is None and DIVERTED not in host.files
    assert "the package's own file of runc put back, diversion removed" in str(outcome.message)
    assert "dpkg --verify: clean" in str(outcome.message)
    assert "rc93" not in str(outcome.message)  # not the old runc: no warning about it
    again = rollback(host)
    assert (again.status, again.message) == ("rolled_back", "already rolled back")
    assert host.files[RUNC] == newer


def test_rollback_from_the_record_alone_undoes_the_diversion(artifact: Artifact) -> None:
    host = packaged_host()
    upgrade(host, artifact)
    outcome = rollback(host, run_id=None)  # `rollback -i`: whichever run the record names
    assert outcome.status == "rolled_back" and host.files[RUNC] == OLD
    assert host.diverted_to is None


def test_a_run_cut_after_the_divert_is_resumed_and_its_diversion_stays_its_own(
    artifact: Artifact,
) -> None:
    host = packaged_host(lose_connection_after="divert")
    with pytest.raises(ConnectionLost):
        upgrade(host, artifact)
    assert host.diverted_to == DIVERTED and host.files[RUNC] == OLD
    host.down = False
    outcome, _ = upgrade(host, artifact)
    assert outcome.status == "done", outcome
    package = packages_of(host)
    assert package["diversion_added"] is True  # so rollback removes it
    rollback(host)
    assert host.diverted_to is None and host.files[RUNC] == OLD


def test_a_diversion_there_before_the_rollout_stays(artifact: Artifact) -> None:
    host = packaged_host(diverted_to=RUNC + ".old", files={RUNC: OLD, RUNC + ".old": OLD})
    host.files[INCIDENT_FILE] = INCIDENT_TEXT
    outcome, _ = upgrade(host, artifact)
    assert outcome.status == "done" and all("divert" not in batch for batch in host.batches)
    rollback(host)
    assert host.files[RUNC] == OLD and host.diverted_to == RUNC + ".old"


def test_the_dry_run_says_what_is_done_about_the_package(artifact: Artifact) -> None:
    from orchestrator.host.procedure import describe
    from orchestrator.models import PackagedRunc

    host = packaged_host()
    facts = parse_facts("fake", host._facts_()[1])
    package = PackagedRunc(
        path=RUNC, package="runc", version="1.0.0~rc93+ds1-1", manager="dpkg", policy="divert"
    )
    before = facts_to_before(facts).model_copy(update={"packages": [package]})
    decision = decide(planned(before), artifact, facts, None)
    line = describe(decision, artifact, facts, 16384, planned(before))
    assert line.endswith("; divert runc 1.0.0~rc93+ds1-1 (dpkg)"), line
    assert "divert" not in describe(decision, artifact, facts, 16384)


def test_check_diff_shows_each_change_as_before_and_after(artifact: Artifact) -> None:
    """`apply --check --diff`: the runc file, the runtime sysctl and the file's line, each as
    it is (-) and as a swap leaves it (+), from the facts alone."""
    host = FakeHost()
    facts = HostProcedure(
        host, planned(), artifact, run_id=RUN, plan_id="p", sysctl_target=16384, on_phase=Phases()
    ).facts()
    lines = changes(facts, artifact, 16384)
    old = facts.runc
    assert old is not None and old.sha256 is not None
    assert lines == [
        f"  --- {RUNC}",
        f"  +++ {RUNC}",
        f"  -runc {old.version or '?'} sha256 {old.sha256[:12]}",
        f"  +runc 1.1.5 sha256 {sha(NEW)[:12]}",
        "  --- /proc/sys/fs/pipe-user-pages-soft (runtime)",
        "  +++ /proc/sys/fs/pipe-user-pages-soft (runtime)",
        f"  -{facts.sysctl_runtime}",
        "  +16384",
        f"  --- {INCIDENT_FILE}",
        f"  +++ {INCIDENT_FILE}",
        "  @@ line 2 @@",
        "  -fs.pipe-user-pages-soft = 163840",
        "  +fs.pipe-user-pages-soft = 16384",
    ]
    # A file that already sets the target has nothing to show.
    assert not [line for line in changes(facts, artifact, 163840) if "@@" in line]
