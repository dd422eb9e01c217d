"""`runc-rollout plan` on the sample inventories: the contract, determinism, and bad input."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode, PlanError
from orchestrator.run.engine import load_plan

ROOT = Path(__file__).resolve().parents[2]
FLEET40 = ROOT / "inventories" / "fleet40" / "hosts.ini"
FLEET40_YAML = ROOT / "inventories" / "fleet40-yaml" / "hosts.yml"


def stand_in_runc(path: Path, version: str, commit: str) -> tuple[Path, str]:
    """A stand-in runc that runs here and reports a version, like the real one; its sha256."""
    path.write_text(f"#!/bin/sh\nprintf 'runc version {version}\\ncommit: {commit}\\n'\n")
    path.chmod(0o755)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def artifact(tmp_path: Path) -> tuple[Path, str]:
    return stand_in_runc(tmp_path / "runc", "1.1.12", "v1.1.12-0-g51d5e94")


def plan_args(artifact: tuple[Path, str], out: Path, *extra: str) -> list[str]:
    path, digest = artifact
    return ["plan", "-i", str(FLEET40), "--runc", str(path), "--sha256", digest, "-o", str(out),
            *extra]  # fmt: skip


def test_plan_json_follows_the_contract(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan.json"
    args = plan_args(artifact, out, "--domain-key", "zone", "--max-per-domain", "3",
                     "--waves", "1,10%,50%", "--max-failures", "10%",
                     "--format", "json", "--run-artifact")  # fmt: skip
    assert main(args) == ExitCode.OK
    printed = capsys.readouterr().out
    body = json.loads(out.read_text())
    assert json.loads(printed) == body
    assert body["artifact"]["sha256"] == artifact[1]
    assert body["artifact"]["version"] == "1.1.12"
    assert body["plan_id"] == f"plan-{body['plan_hash'][:12]}"
    placed = [host["name"] for wave in body["waves"] for host in wave["hosts"]]
    skipped = [item["name"] for item in body["skipped"]]
    assert len(placed) + len(skipped) == 40 and not set(placed) & set(skipped)
    assert skipped and all(item["reason"] for item in body["skipped"])
    assert body["waves"][0]["hosts"][0].keys() >= {"name", "domain", "action"}
    assert {host["domain"] for wave in body["waves"] for host in wave["hosts"]} == {
        "zone-a", "zone-b", "zone-c"
    }  # fmt: skip
    assert all(max(wave["domains"].values()) <= 3 for wave in body["waves"])
    assert len(body["waves"][2]["domains"]) == 3  # the first multi-host wave spans every zone
    assert any("added" in (wave["note"] or "") for wave in body["waves"])
    load_plan(out)  # the hash checks out


def test_plan_is_deterministic_and_yaml_equals_ini(
    artifact: tuple[Path, str], tmp_path: Path
) -> None:
    outputs = []
    for index, inventory in enumerate([FLEET40, FLEET40, FLEET40_YAML]):
        out = tmp_path / f"plan{index}.json"
        args = plan_args(artifact, out, "--domain-key", "zone", "--seed", "7", "--format", "json")
        args[2] = str(inventory)
        assert main(args) == ExitCode.OK
        outputs.append(json.loads(out.read_text()))
    first = (tmp_path / "plan0.json").read_bytes()
    assert (tmp_path / "plan1.json").read_bytes() == first
    assert outputs[2]["waves"] == outputs[0]["waves"]


def test_markdown_is_a_change_document(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = plan_args(artifact, tmp_path / "p.json", "--domain-key", "zone", "--pause-after", "0",
                     "--format", "markdown")  # fmt: skip
    assert main(args) == ExitCode.OK
    text = capsys.readouterr().out
    for heading in ("## Summary", "## Waves", "## Steps on each host", "## Error budget",
                    "## Rolling back", "## Held back"):  # fmt: skip
        assert heading in text
    assert artifact[1] in text and "| wave | hosts | zone-a | zone-b | zone-c |" in text
    assert "Pause after wave 0" in text


def test_the_plan_says_what_the_probe_proves_and_where_it_is_off(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(plan_args(artifact, tmp_path / "a.json", "--format", "markdown")) == 0
    text = capsys.readouterr().out
    assert "the incident probe" in text and "NOT proven" not in text
    plan = json.loads((tmp_path / "a.json").read_text())
    hosts = [host for wave in plan["waves"] for host in wave["hosts"]]
    assert {host["verify"]["probe"] for host in hosts} == {True}
    assert main(plan_args(artifact, tmp_path / "b.json", "--no-probe", "--format", "markdown")) == 0
    text = capsys.readouterr().out
    assert "WARNING: the fix is NOT proven on" in text
    assert main(plan_args(artifact, tmp_path / "c.json", "--no-probe")) == 0
    assert "NOT proven" in capsys.readouterr().out  # the table says it too


def test_a_probe_uid_that_is_not_a_uid_is_bad_input(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = tmp_path / "extra.yml"
    extra.write_text("all:\n  vars:\n    runc_rollout_probe_uid: root\n")
    args = plan_args(artifact, tmp_path / "p.json", "-i", str(extra))
    assert main(args) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "runc_rollout_probe_uid 'root' is not a uid" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "p.json").exists()


def test_edited_plan_is_refused(artifact: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    assert main(plan_args(artifact, out, "--format", "json")) == ExitCode.OK
    body = json.loads(out.read_text())
    body["waves"][0]["max_failures"] = 5
    out.write_text(json.dumps(body))
    with pytest.raises(PlanError, match="edited after review"):
        load_plan(out)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--waves", "1,,5"], "--waves"),
        (["--waves", "ten"], "--waves"),
        (["--limit", "no_such_group"], "no_such_group"),
        (["--limit", "zone_a:&zone_b"], "selects no hosts"),
        (["--max-per-domain", "0", "--domain-key", "zone"], "--max-per-domain"),
        (["--max-failures", "x"], "--max-failures"),
        (["--pause-after", "99"], "--pause-after"),
        (["--ticket", "CHG 1234"], "error: --ticket: 'CHG 1234'"),
        (["--ticket", "-rf"], "error: --ticket: '-rf'"),
        (["--reason", "two\nlines"], "error: --reason: 'two\\nlines'"),
        (["--reason", "\x1b[2Jcleared"], "error: --reason: '\\x1b[2Jcleared'"),
        (["--reason", "x" * 1001], "at most 1000 characters"),
        (["--canary", "nosuch"], "error: --canary: host pattern 'nosuch' matches no host"),
        (["--canary", "masters", "--last", "zone_a"], "error: --canary and --last: both match"),
        (["--limit", "workers", "--last", "masters"], "error: --last: 'masters' matches none"),
        (["--window", "Mon 22:00-06:00 Europe/Nowhere"], "'Europe/Nowhere' is not an IANA"),
        (["--host-check", "true\nreboot"], "error: --host-check: 'true\\nreboot'"),
        (["--wave-gate", ""], "error: --wave-gate: ''"),
        (["--artifact-url", "ftp://mirror/runc"], "--artifact-url: 'ftp://mirror/runc' is not"),
        (["--artifact-url", "https://mirror/a b"], "--artifact-url"),
        (["--artifact-url", "http://m/\x1b[2Jrunc"], "--artifact-url"),
        (["--artifact-url", "https://ci:t0k3n@mirror/runc"], "credentials (user@) in a URL"),
        (["--artifact-url", "https://mirror@evil/runc"], "credentials (user@) in a URL"),
        (["--artifact-url", 'https://mirror/runc"q'], "--artifact-url"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(
    artifact: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "plan.json"
    assert main(plan_args(artifact, out, *extra)) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists() and os.listdir(tmp_path) == ["runc"]


def test_the_artifact_url_is_in_the_plan_and_its_hash_only_when_given(
    artifact: tuple[Path, str], tmp_path: Path
) -> None:
    plain, fetched = tmp_path / "plain.json", tmp_path / "fetched.json"
    assert main(plan_args(artifact, plain)) == ExitCode.OK
    url = "https://mirror.internal/runc/1.1.12/runc"
    assert main(plan_args(artifact, fetched, "--artifact-url", url)) == ExitCode.OK
    without, with_url = json.loads(plain.read_text()), json.loads(fetched.read_text())
    assert "url" not in without["artifact"]  # plans from before keep their plan_hash
    assert with_url["artifact"]["url"] == url
    assert with_url["plan_hash"] != without["plan_hash"]
    assert load_plan(fetched).artifact.url == url


def test_a_plan_whose_artifact_url_carries_credentials_is_refused(
    artifact: tuple[Path, str], tmp_path: Path
) -> None:
    plan = tmp_path / "plan.json"
    assert main(plan_args(artifact, plan, "--artifact-url", "https://mirror/runc")) == 0
    data = json.loads(plan.read_text())
    data["artifact"]["url"] = "https://ci:t0k3n@mirror/runc"
    plan.write_text(json.dumps(data))
    with pytest.raises(PlanError, match="credentials"):
        load_plan(plan)


def test_checksum_mismatch_and_missing_artifact(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = artifact
    out = tmp_path / "plan.json"
    wrong = ["plan", "-i", str(FLEET40), "--runc", str(path), "--sha256", "0" * 64, "-o", str(out)]
    assert main(wrong) == ExitCode.BAD_INPUT
    assert "not the expected" in capsys.readouterr().err
    missing = [*wrong[:4], str(tmp_path / "nope"), *wrong[5:]]
    assert main(missing) == ExitCode.BAD_INPUT
    assert "does not exist" in capsys.readouterr().err
    assert main([*wrong[:6], "abc", *wrong[7:]]) == ExitCode.BAD_INPUT
    assert "64 hexadecimal" in capsys.readouterr().err
    assert not out.exists()


def test_malformed_inventory_names_file_and_line(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.ini"
    bad.write_text("[web]\nnode[01:\n")
    args = plan_args(artifact, tmp_path / "p.json")
    args[2] = str(bad)
    assert main(args) == ExitCode.BAD_INPUT
    assert f"{bad}:2:" in capsys.readouterr().err


def test_help_documents_exit_codes_and_wave_semantics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == ExitCode.OK
    shown = " ".join(capsys.readouterr().out.split())
    assert "3 rollout halted (a wave over its error budget, or without a success)" in shown
    assert "5 paused (for promotion, or outside the maintenance windows with --no-wait)" in shown
    assert main(["plan", "--help"]) == ExitCode.OK
    assert "serial" in capsys.readouterr().out


def gathered(tmp_path: Path, down: list[str]) -> tuple[Path, Path]:
    """An inventory of web1..web3 and a facts report (as `facts --format json` writes it) in
    which the hosts `down` could not be reached."""
    from orchestrator.diagnose.facts_report import facts_json
    from orchestrator.errors import HostUnreachable
    from orchestrator.host.facts import parse_facts
    from tests.host.test_facts_parse import FULL_HOST

    names = ["web1", "web2", "web3"]
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[web]\n" + "".join(f"{n} ansible_host=127.0.0.{i}\n" for i, n in
                                             enumerate(names, 1)))  # fmt: skip
    results: dict[str, object] = {
        name: HostUnreachable(name, "127.0.0.9", "connection refused")
        if name in down
        else parse_facts(name, FULL_HOST)
        for name in names
    }
    facts = tmp_path / "facts.json"
    facts.write_text(facts_json(results))  # type: ignore[arg-type]
    return inventory, facts


def test_an_unreachable_host_fails_the_plan_unless_allowed(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A selected host whose facts could not be gathered is never dropped silently: the plan
    fails (exit 1, nothing written) unless --allow-unreachable, and then lists it apart from
    the hosts held back, in every view."""
    inventory, facts = gathered(tmp_path, ["web2"])
    out = tmp_path / "plan.json"
    path, digest = artifact
    args = ["plan", "-i", str(inventory), "--runc", str(path), "--sha256", digest,
            "-o", str(out), "--facts", str(facts)]  # fmt: skip
    assert main(args) == ExitCode.HOST_FAILED
    error = capsys.readouterr().err
    assert "1 of 3 selected hosts could not be gathered (web2; web2:" in error
    assert "--allow-unreachable" in error and not out.exists()

    assert main([*args, "--allow-unreachable", "--format", "json"]) == ExitCode.OK
    body = json.loads(out.read_text())
    assert body["skipped"] == []
    assert [item["name"] for item in body["unreachable"]] == ["web2"]
    assert "connection refused" in body["unreachable"][0]["reason"]
    placed = [host["name"] for wave in body["waves"] for host in wave["hosts"]]
    assert placed == ["web1", "web3"]
    capsys.readouterr()
    assert main([*args, "--allow-unreachable", "--format", "markdown"]) == ExitCode.OK
    markdown = capsys.readouterr().out
    assert "0 held back, 1 unreachable at plan time" in markdown
    assert "WARNING: 1 selected host could not be reached" in markdown
    assert "## Unreachable at plan time\n\n- `web2`: " in markdown
    assert main([*args, "--allow-unreachable", "--format", "table"]) == ExitCode.OK
    assert "UNREACHABLE at plan time, in no wave: web2: " in capsys.readouterr().out


def test_nothing_to_plan_names_its_real_cause(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory, facts = gathered(tmp_path, ["web1", "web2", "web3"])
    path, digest = artifact
    args = ["plan", "-i", str(inventory), "--runc", str(path), "--sha256", digest,
            "-o", str(tmp_path / "plan.json"), "--facts", str(facts)]  # fmt: skip
    assert main([*args, "--allow-unreachable"]) == ExitCode.BAD_INPUT
    error = capsys.readouterr().err
    assert "nothing to plan: of 3 selected hosts, 3 unreachable at plan time" in error
    assert "runc_rollout_skip" not in error
    inventory.write_text(inventory.read_text().replace("web1 ", "web1 runc_rollout_skip=later "))
    assert main([*args, "--allow-unreachable"]) == ExitCode.BAD_INPUT
    assert (
        "nothing to plan: of 3 selected hosts, 1 held back by runc_rollout_skip and "
        "2 unreachable at plan time" in capsys.readouterr().err
    )


def test_limit_from_a_file_as_ansible_reads_a_retry_file(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-l @FILE`: a host or pattern a line, blank lines and comments skipped."""
    hosts = tmp_path / "upgrade.retry"
    hosts.write_text("# failed last time\nnode-a02.k8s.invalid\n\nnode-b02.k8s.invalid\n")
    out = tmp_path / "plan.json"
    assert main(plan_args(artifact, out, "-l", f"@{hosts}", "-f", "4")) == ExitCode.OK
    placed = {h["name"] for w in json.loads(out.read_text())["waves"] for h in w["hosts"]}
    assert placed == {"node-a02.k8s.invalid", "node-b02.k8s.invalid"}
    capsys.readouterr()
    hosts.write_text("# nothing\n")
    assert main(plan_args(artifact, out, "--limit", f"@{hosts}")) == ExitCode.BAD_INPUT
    assert f"--limit @{hosts}: {hosts} names no host" in capsys.readouterr().err
    assert main(plan_args(artifact, out, "-l", f"@{tmp_path}/none")) == ExitCode.BAD_INPUT
    assert "--limit file" in capsys.readouterr().err


def test_every_command_has_one_default_concurrency_and_ansibles_forks() -> None:
    import typer.main

    from orchestrator.choices import DEFAULT_CONCURRENCY
    from orchestrator.cli.app import app

    def commands(group: Any) -> Iterator[Any]:
        for command in getattr(group, "commands", {}).values():
            yield command
            yield from commands(command)

    found = []
    for command in commands(typer.main.get_command(app)):
        for param in command.params:
            if param.name == "concurrency":
                found.append(command.name)
                assert param.default == DEFAULT_CONCURRENCY, command.name
                assert {"-f", "--forks", "--concurrency"} <= set(param.opts), command.name
    assert {"plan", "apply", "resume", "rollback", "facts", "audit", "unstick"} <= set(found)
    apply = next(c for c in commands(typer.main.get_command(app)) if c.name == "apply")
    dry_run = next(param for param in apply.params if param.name == "dry_run")
    assert {"--dry-run", "--check", "-C"} <= set(dry_run.opts)  # Ansible's word for it
    diff = next(param for param in apply.params if param.name == "diff")
    assert {"--diff", "-D"} <= set(diff.opts)


def test_diff_goes_with_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--diff` shows what `--check` would change; alone, it is refused before anything is read."""
    assert main(["apply", str(tmp_path / "plan.json"), "--diff"]) == ExitCode.BAD_INPUT
    assert "--diff shows what --check would change" in capsys.readouterr().err


def test_a_new_plan_over_a_signed_one_sets_its_signatures_aside(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same plan again keeps its signatures (they sign its id and hash); a different plan
    written over it moves them to PLAN.sig.stale and says so, instead of leaving signatures
    that approve nothing of it beside it."""
    out = tmp_path / "plan.json"
    signatures = tmp_path / "plan.json.sig"
    assert main(plan_args(artifact, out)) == ExitCode.OK
    signatures.write_text("-----BEGIN SSH SIGNATURE-----\nabc=\n-----END SSH SIGNATURE-----\n")
    capsys.readouterr()
    assert main(plan_args(artifact, out)) == ExitCode.OK
    assert signatures.is_file() and "moved to" not in capsys.readouterr().err
    assert main(plan_args(artifact, out, "--waves", "2,100%")) == ExitCode.OK
    error = capsys.readouterr().err
    assert not signatures.exists() and (tmp_path / "plan.json.sig.stale").is_file()
    assert f"{signatures} signed an earlier plan written to {out}: moved to " in error


def test_a_domain_key_no_host_carries_is_refused(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan.json"
    assert main(plan_args(artifact, out, "--domain-key", "zoen")) == ExitCode.BAD_INPUT
    assert "--domain-key zoen: none of the 38 selected hosts has a 'zoen' variable" in (
        capsys.readouterr().err
    )
    assert not out.exists()


@pytest.mark.parametrize("connection", ["local", "docker", "winrm"])
def test_a_host_that_ansible_reaches_without_ssh_is_refused(
    artifact: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], connection: str
) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"web1 ansible_host=127.0.0.9\nbuild ansible_connection={connection}\n")
    path, digest = artifact
    out = tmp_path / "plan.json"
    args = ["plan", "-i", str(inventory), "--runc", str(path), "--sha256", digest, "-o", str(out)]
    assert main(args) == ExitCode.BAD_INPUT
    error = capsys.readouterr().err
    assert f"host build: ansible_connection={connection}: runc-rollout reaches hosts over SSH" in (
        error
    )
    assert not out.exists()
    inventory.write_text("web1 ansible_connection=ssh\n")
    assert main(args) == ExitCode.OK
