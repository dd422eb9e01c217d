"""Binding apply to the reviewers' approval: --expect-hash, SSH-signed plans, re-sealed plans,
and the run directory's copy of the plan (first review, finding 4)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import BadInput, ExitCode, JournalWriteFailed
from orchestrator.models import Plan, RunApproval
from orchestrator.plan.render import plan_json
from orchestrator.run.journal import EVENTS_FILE, PLAN_FILE, STATE_FILE, Journal
from tests.run.test_journal import small_plan


def reviewer(tmp_path: Path, name: str) -> tuple[Path, str]:
    """A reviewer's new key and their allowed_signers line."""
    key = tmp_path / f"{name}_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    public = (tmp_path / f"{name}_key.pub").read_text().split()
    return key, f'{name}@example.org namespaces="runc-rollout-plan" {public[0]} {public[1]}\n'


def resealed(plan: Plan) -> Plan:
    """The attack: a different artifact, and plan_hash recomputed so the plan is "valid"."""
    artifact = plan.artifact.model_copy(update={"path": "/tmp/evil", "sha256": "e" * 64})
    return plan.model_copy(update={"artifact": artifact}).sealed()


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A plan file, the allowed_signers of alice and bob, and bob's key (alice has signed)."""
    plan = tmp_path / "plan.json"
    plan.write_bytes(plan_json(small_plan()))
    alice, alice_line = reviewer(tmp_path, "alice")
    bob, bob_line = reviewer(tmp_path, "bob")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(alice_line + bob_line)
    assert main(["sign", str(plan), "--key", str(alice)]) == 0
    return plan, allowed, bob


def test_a_signed_plan_verifies_and_needs_as_many_signers_as_asked(
    signed: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    plan, allowed, bob = signed
    assert main(["verify-plan", str(plan), "--allowed-signers", str(allowed)]) == 0
    assert "signed by alice@example.org" in capsys.readouterr().out
    two = ["verify-plan", str(plan), "--allowed-signers", str(allowed)]
    two += ["--required-signatures", "2"]
    assert main(two) == ExitCode.BAD_INPUT
    assert "signed by alice@example.org" in capsys.readouterr().err
    assert main(["sign", str(plan), "--key", str(bob)]) == 0
    assert main(two) == 0
    # The same reviewer twice is one signer.
    first = (plan.parent / "plan.json.sig").read_text().split("-----END SSH SIGNATURE-----")[0]
    (plan.parent / "twice.sig").write_text(2 * (first + "-----END SSH SIGNATURE-----\n"))
    assert main([*two, "--signatures", str(plan.parent / "twice.sig")]) == ExitCode.BAD_INPUT


def test_unsigned_and_resealed_plans_are_refused(
    signed: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, allowed, _ = signed
    runs = tmp_path / "runs"
    policy = ["--allowed-signers", str(allowed), "--runs-dir", str(runs), "--yes"]
    # Re-sealed: its hash is consistent, so only the approval can tell.
    forged = tmp_path / "forged.json"
    forged.write_bytes(plan_json(resealed(Plan.model_validate_json(plan.read_bytes()))))
    (tmp_path / "forged.json.sig").write_text((tmp_path / "plan.json.sig").read_text())
    assert main(["apply", str(forged), *policy]) == ExitCode.BAD_INPUT
    assert "signed by nobody" in capsys.readouterr().err
    # Unsigned.
    (tmp_path / "forged.json.sig").unlink()
    assert main(["apply", str(forged), *policy]) == ExitCode.BAD_INPUT
    assert "not approved" in capsys.readouterr().err
    # --expect-hash names the reviewed plan: the forged one is refused even without signatures.
    reviewed = Plan.model_validate_json(plan.read_bytes()).plan_hash
    expect = ["--expect-hash", reviewed, "--runs-dir", str(runs), "--yes"]
    assert main(["apply", str(forged), *expect]) == ExitCode.BAD_INPUT
    assert f"not the approved {reviewed}" in capsys.readouterr().err
    assert main(["apply", str(forged), "--expect-hash", "abc"]) == ExitCode.BAD_INPUT
    assert not runs.exists()  # nothing was started


def test_a_signature_by_someone_not_allowed_does_not_count(
    signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    plan, _, _ = signed
    _, carol_line = reviewer(tmp_path, "carol")
    only_carol = tmp_path / "carol_signers"
    only_carol.write_text(carol_line)
    assert main(["verify-plan", str(plan), "--allowed-signers", str(only_carol)]) == 2


def test_journal_refuses_a_resealed_or_relabelled_copy_of_the_plan(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, small_plan())
    copy = journal.run_dir / PLAN_FILE
    copy.write_bytes(plan_json(resealed(journal.plan)))
    with pytest.raises(BadInput, match="not the hash this run was started with"):
        Journal.open(journal.run_dir)
    relabelled = journal.plan.model_copy(update={"plan_id": "plan-000000000000"})
    copy.write_bytes(plan_json(relabelled))
    with pytest.raises(BadInput, match="does not match plan_hash"):
        Journal.open(journal.run_dir)


def test_resume_checks_the_approval_the_run_was_applied_with(
    signed: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan, allowed, _ = signed
    from orchestrator.models import RunApproval
    from orchestrator.plan.approval import read_signatures

    loaded = Plan.model_validate_json(plan.read_bytes())
    signatures = (tmp_path / "plan.json.sig").read_bytes()
    approval = RunApproval(plan_hash=loaded.plan_hash, required_signatures=1, signers=["a"])
    runs = tmp_path / "runs"
    journal = Journal.create(runs, loaded, approval=approval, signatures=signatures)
    assert read_signatures(journal.signatures)
    assert main(["resume", str(journal.run_dir), "--yes"]) == ExitCode.BAD_INPUT
    assert "applied with 1 required signatures" in capsys.readouterr().err
    # With the policy, the run's plan and signatures check out; the artifact is what is missing.
    args = ["resume", str(journal.run_dir), "--yes", "--allowed-signers", str(allowed)]
    assert main(args) == ExitCode.BAD_INPUT
    assert "the plan's artifact is missing" in capsys.readouterr().err
    wrong = "--expect-hash", "f" * 64
    assert main([*args, *wrong]) == ExitCode.BAD_INPUT
    assert "not the approved" in capsys.readouterr().err


def test_status_writes_nothing_and_run_files_are_never_followed(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path / "runs", small_plan())
    journal.record("run.started")
    state = journal.run_dir / STATE_FILE
    state.unlink()
    assert main(["status", str(journal.run_dir)]) == 0
    assert not state.exists()  # status rebuilt it in memory only
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    events = journal.run_dir / EVENTS_FILE
    events.unlink()
    os.symlink(victim, events)
    for command in (["status"], ["resume", "--yes"], ["rollback", "--yes"]):
        assert main([*command[:1], str(journal.run_dir), *command[1:]]) == ExitCode.BAD_INPUT
    assert victim.read_text() == "precious\n"
    # The append itself never follows a link either: the journal stops there.
    with pytest.raises(JournalWriteFailed, match=r"symbolic links; .*fix that, then"):
        journal.record("run.paused")
    assert victim.read_text() == "precious\n"


def _hijacked(plan: Plan, marker: Path, artifact: Path) -> Plan:
    """The attack on a run folder: the plan re-sealed with a ProxyCommand that runs on the
    controller as soon as a host is reached, and an artifact the attacker has at hand."""
    artifact.write_bytes(b"not runc")
    sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    hosts = []
    for wave in plan.waves:
        proxy = ("-o", f"ProxyCommand=touch {marker}")
        changed = [replace(h, ssh=replace(h.ssh, ssh_args=proxy)) for h in wave.hosts]
        hosts.append(wave.model_copy(update={"hosts": changed}))
    stolen = plan.artifact.model_copy(update={"path": str(artifact), "sha256": sha, "size": 8})
    return plan.model_copy(update={"waves": hosts, "artifact": stolen}).sealed()


def _signed_run(signed: tuple[Path, Path, Path], runs: Path) -> Journal:
    """A run applied with one required signature (alice's)."""
    plan, _, _ = signed
    loaded = Plan.model_validate_json(plan.read_bytes())
    approval = RunApproval(plan_hash=loaded.plan_hash, required_signatures=1, signers=["a"])
    signatures = (plan.parent / "plan.json.sig").read_bytes()
    return Journal.create(runs, loaded, approval=approval, signatures=signatures)


def test_a_run_folder_replaced_by_a_link_runs_nothing(
    signed: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = _signed_run(signed, tmp_path / "runs")
    marker = tmp_path / "proxy-command-ran"
    forged = _hijacked(journal.plan, marker, tmp_path / "artifact")
    # The attacker's own run folder, named for the forged plan, approving it with nothing.
    theirs = tmp_path / "elsewhere" / f"20260101T000000Z-{forged.plan_hash[:8]}-000000"
    theirs.mkdir(parents=True, mode=0o700)
    Journal.create(theirs.parent, forged)  # only to get its files
    (made,) = [p for p in theirs.parent.iterdir() if p != theirs]
    for name in (PLAN_FILE, EVENTS_FILE, STATE_FILE, "approval.json"):
        (made / name).rename(theirs / name)
    shutil.rmtree(journal.run_dir)
    journal.run_dir.symlink_to(theirs)

    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    for command in ("rollback", "resume"):
        code = main([command, str(journal.run_dir), "--yes", "--known-hosts", str(known_hosts)])
        assert (command, code) == (command, ExitCode.BAD_INPUT)
        assert "a symbolic link" in capsys.readouterr().err
    assert not marker.exists()


def test_a_run_binds_96_bits_of_the_plan_hash(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path / "runs", small_plan())
    assert f"-{journal.plan.plan_hash[:24]}-" in journal.run_id
    assert len(journal.run_id) <= 48  # containerd's ids: "runc-rollout-verify-" + it + "-PID"
    # A plan whose hash agrees with the run's name in 8 digits (32 bits: a forger can find one)
    # is not the run's plan.
    forged = resealed(journal.plan)
    short = tmp_path / "runs" / f"20260101T000000Z-{forged.plan_hash[:8]}-000000"
    journal.run_dir.rename(short)
    (short / PLAN_FILE).write_bytes(plan_json(forged))
    with pytest.raises(BadInput, match="8 digits of its plan hash"):
        Journal.open(short)
    assert Journal.open(short, read_only=True).plan == forged  # status still shows an old run
    assert Journal.open(short, expect_hash=forged.plan_hash).plan == forged


def test_a_run_folder_must_be_the_operators_own_and_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = Journal.create(tmp_path / "runs", small_plan())
    journal.run_dir.chmod(0o750)
    for command in ("rollback", "resume"):
        assert main([command, str(journal.run_dir), "--yes"]) == ExitCode.BAD_INPUT
        assert "mode 0750, not 0700" in capsys.readouterr().err
    journal.run_dir.chmod(0o700)
    os.chown(journal.run_dir, 65534, 65534)
    assert main(["resume", str(journal.run_dir), "--yes"]) == ExitCode.BAD_INPUT
    assert "owned by uid 65534" in capsys.readouterr().err


def test_resume_and_rollback_check_the_command_lines_policy_not_the_run_folders(
    signed: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run folder forged whole (plan, approval lowered to nothing, and a name bound to the
    forged plan, as if the binding had been beaten): the policy on the command line still
    demands signatures the forged plan lacks, for rollback as for resume."""
    _, allowed, _ = signed
    journal = _signed_run(signed, tmp_path / "runs")
    marker = tmp_path / "proxy-command-ran"
    forged = _hijacked(journal.plan, marker, tmp_path / "artifact")
    (journal.run_dir / PLAN_FILE).write_bytes(plan_json(forged))
    lowered = RunApproval(plan_hash=forged.plan_hash)
    (journal.run_dir / "approval.json").write_text(lowered.model_dump_json())
    run_dir = journal.run_dir.rename(journal.run_dir.with_name(f"x-{forged.plan_hash[:24]}-0"))
    for command in ("rollback", "resume"):
        code = main([command, str(run_dir), "--yes", "--allowed-signers", str(allowed)])
        assert (command, code) == (command, ExitCode.BAD_INPUT)
        assert "signed by nobody" in capsys.readouterr().err
    assert not marker.exists()
    # Without a policy, the run's own record can only ask for more, never for less.
    two = RunApproval(plan_hash=forged.plan_hash, required_signatures=2)
    (run_dir / "approval.json").write_text(two.model_dump_json())
    assert main(["rollback", str(run_dir), "--yes"]) == ExitCode.BAD_INPUT
    assert "applied with 2 required signatures" in capsys.readouterr().err
    assert not marker.exists()


def test_one_key_is_one_signer_however_many_principals_it_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_bytes(plan_json(small_plan()))
    alice, line = reviewer(tmp_path, "alice")
    key = line.split(" ", 1)[1]
    allowed = tmp_path / "allowed_signers"
    # One key under two names, on one line and again on a line of its own.
    allowed.write_text(f"alice@example.org,bob@example.org {key}carol@example.org {key}")
    assert main(["sign", str(plan), "--key", str(alice)]) == 0
    two = ["verify-plan", str(plan), "--allowed-signers", str(allowed)]
    assert main([*two, "--required-signatures", "2"]) == ExitCode.BAD_INPUT
    assert "signed by alice@example.org in" in capsys.readouterr().err
    assert main(two) == 0
