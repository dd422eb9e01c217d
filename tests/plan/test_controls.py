"""`plan` with what surrounds a rollout: ticket and reason, in the plan, its hash and its
review documents; bad values refused with the option named."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.run.engine import load_plan

ROOT = Path(__file__).resolve().parents[2]
FLEET40 = ROOT / "inventories" / "fleet40" / "hosts.ini"


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "runc"
    path.write_bytes(b"not run: plan never executes it unless asked\n")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def make(artifact: tuple[Path, str], out: Path, *extra: str, fmt: str = "json") -> int:
    path, digest = artifact
    args = ["plan", "-i", str(FLEET40), "--runc", str(path), "--sha256", digest,
            "-o", str(out), "--format", fmt, *extra]  # fmt: skip
    return main(args)


def test_ticket_and_reason_are_in_the_plan_its_hash_and_first_in_the_markdown(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain, ticketed = tmp_path / "plain.json", tmp_path / "ticketed.json"
    assert make(artifact, plain) == ExitCode.OK
    assert "ticket" not in json.loads(plain.read_text())["options"]  # old plans keep their hash
    capsys.readouterr()
    reason = "rc93 hangs runc init under no-new-privileges *now*"
    assert make(artifact, ticketed, "--ticket", "CHG-1234", "--reason", reason) == ExitCode.OK
    body = json.loads(ticketed.read_text())
    assert (body["options"]["ticket"], body["options"]["reason"]) == ("CHG-1234", reason)
    assert body["plan_hash"] != json.loads(plain.read_text())["plan_hash"]
    edited = ticketed.read_text().replace("CHG-1234", "CHG-9999")
    (tmp_path / "edited.json").write_text(edited)
    with pytest.raises(Exception, match="plan_hash does not match"):
        load_plan(tmp_path / "edited.json")
    capsys.readouterr()
    assert make(artifact, ticketed, "--ticket", "CHG-1234", "--reason", reason,
                fmt="markdown") == ExitCode.OK  # fmt: skip
    markdown = capsys.readouterr().out.splitlines()
    assert markdown[2:4] == [
        "- **Ticket:** `CHG-1234`",
        "- **Reason:** rc93 hangs runc init under no-new-privileges \\*now\\*",
    ]
    assert markdown.index("## Summary") > 4  # after them (and the target's advisories)
    assert make(artifact, ticketed, "--ticket", "CHG-1234", fmt="table") == ExitCode.OK
    assert "ticket CHG-1234" in capsys.readouterr().out


def test_canary_fills_the_first_waves_and_last_keeps_the_final_waves(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan.json"
    canary = "node-a0[2-4]*"  # a wildcard, as Ansible matches it
    assert make(artifact, out, "--waves", "2,10%,50%", "--canary", canary,
                "--last", "masters", "--domain-key", "zone") == ExitCode.OK  # fmt: skip
    plan = load_plan(out)
    names = [[host.name for host in wave.hosts] for wave in plan.waves]
    assert names[0] == ["node-a02.k8s.invalid", "node-a03.k8s.invalid"]
    assert names[1][0] == "node-a04.k8s.invalid"  # the third canary, first of the next wave
    assert len(names[1]) == 1
    assert "holds the --canary hosts alone: 1 of 3" in str(plan.waves[1].note)
    masters = {"node-a01.k8s.invalid", "node-b01.k8s.invalid", "node-c01.k8s.invalid"}
    assert set(names[-1]) == masters  # a wave of their own, at the end
    assert not masters & {name for wave in names[:-1] for name in wave}
    assert "--canary 'node-a0[2-4]*': 3 hosts in waves 0-1 (node-a02" in " ".join(plan.notes)
    assert f"--last 'masters': 3 hosts in wave {len(names) - 1}" in " ".join(plan.notes)
    capsys.readouterr()
    assert make(artifact, out, "--canary", canary, "--last", "masters", fmt="markdown") == 0
    markdown = capsys.readouterr().out
    assert "- --canary 'node-a0[2-4]*': 3 hosts in waves 0-1 (" in markdown


def test_the_markdown_shows_the_host_check_gates_and_windows_with_their_next_openings(
    artifact: tuple[Path, str], tmp_path: Path
) -> None:
    from orchestrator.plan.render import plan_markdown, plan_table

    out = tmp_path / "plan.json"
    assert make(artifact, out, "--host-check", "systemctl is-active kubelet",
                "--pre-gate", "kubectl get nodes", "--wave-gate", "check `nodes`",
                "--gate-timeout", "120", "--window", "Mon-Fri 22:00-06:00 Europe/Berlin",
                "--window", "Sat 10:00-12:00") == ExitCode.OK  # fmt: skip
    plan = load_plan(out)
    assert plan.options.windows == ("Mon-Fri 22:00-06:00 Europe/Berlin", "Sat 10:00-12:00")
    assert {host.verify.host_check for host in plan.hosts} == {"systemctl is-active kubelet"}
    saturday_noon = dt.datetime(2026, 12, 12, 12, 0, tzinfo=dt.UTC).timestamp()
    markdown = plan_markdown(plan, now=saturday_noon)
    assert (
        "- Host check on every host, after the tool's own verification (timeout 60 s; a "
        "non-zero exit fails the host and rolls it back): `systemctl is-active kubelet`"
    ) in markdown
    assert "- Pre-gate, here, before the first wave and at every resume (timeout 120 s;" in markdown
    assert "exit 3): `` check `nodes` ``" in markdown
    assert (
        "- A wave starts only inside a maintenance window (one that started finishes): "
        "`Mon-Fri 22:00-06:00 Europe/Berlin`, `Sat 10:00-12:00`"
    ) in markdown
    assert (
        "- Next openings, as of the plan: Mon 2026-12-14 21:00 UTC (Mon-Fri 22:00-06:00 "
        "Europe/Berlin); Tue 2026-12-15 21:00 UTC"
    ) in markdown
    table = plan_table(plan, now=saturday_noon)
    assert "next opening: Mon 2026-12-14 21:00 UTC (Mon-Fri 22:00-06:00 Europe/Berlin)" in table
    assert make(artifact, tmp_path / "plain.json") == ExitCode.OK
    assert "No maintenance windows" in plan_markdown(load_plan(tmp_path / "plain.json"))


def test_apply_takes_webhooks_from_the_environment_and_refuses_a_bad_one_unshown(
    artifact: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "plan.json"
    assert make(artifact, out) == ExitCode.OK
    capsys.readouterr()
    monkeypatch.setenv("RUNC_ROLLOUT_NOTIFY", "https://hooks.example/T/t0ken ftp://x/t0ken2")
    runs = tmp_path / "runs"
    assert main(["apply", str(out), "--yes", "--runs-dir", str(runs)]) == ExitCode.BAD_INPUT
    error = capsys.readouterr().err
    assert "--notify #2: not an http(s) URL" in error and "t0ken" not in error
    assert not runs.exists()  # refused before any run began


def test_a_wave_added_by_the_tiers_alone_says_so(
    artifact: tuple[Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "plan.json"
    assert make(artifact, out, "--canary", "workers[0]", "--last", "masters") == ExitCode.OK
    plan = load_plan(out)
    assert plan.waves[-1].note == "added because --canary/--last kept earlier waves smaller"
    assert "--canary 'workers[0]': 1 host in wave 0 (node-a02.k8s.invalid)" in plan.notes
