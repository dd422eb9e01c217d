"""An operator's own advisories file: checked by `advisories --check`, used by plan and audit."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.app import main
from orchestrator.diagnose.advisories import (
    RC93_HANG,
    Advisory,
    load_advisories,
    shipped_advisories,
)
from orchestrator.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
FLEET40 = ROOT / "inventories" / "fleet40" / "hosts.ini"
SHIPPED: dict[str, Any] = json.loads(
    resources.files("orchestrator").joinpath("data/advisories.json").read_text()
)
OWN = {
    "id": "SEC-2026-7",
    "kind": "security",
    "title": "our security team's finding in runc 1.1.x",
    "severity": "high",
    "affected": [{"introduced": "1.1.0", "fixed": "1.1.13"}],
    "fixed_in": ["1.1.13"],
    "source": "https://security.example.org/SEC-2026-7",
}


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_the_shipped_table_says_its_date() -> None:
    assert shipped_advisories().date == SHIPPED["date"]


def test_check_accepts_a_good_file_and_lists_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = write(tmp_path / "own.json", SHIPPED | {"advisories": [*SHIPPED["advisories"], OWN]})
    assert main(["advisories", "--check", str(own)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert f"{own} (11 advisories, dated {SHIPPED['date']}): valid" in out
    assert "SEC-2026-7" in out
    assert main(["advisories"]) == ExitCode.OK
    assert "the shipped table (10 advisories" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"advisories": [*SHIPPED["advisories"], OWN | {"severity": "urgent"}]},
         "advisories.10.severity: Input should be"),
        ({"advisories": [*SHIPPED["advisories"], OWN | {"affected": [{"fixed": "soon"}]}]},
         "not a version: 'soon'"),
        ({"advisories": [*SHIPPED["advisories"], SHIPPED["advisories"][1]]},
         "advisory ids appear more than once: CVE-2019-5736"),
        ({"advisories": SHIPPED["advisories"][1:]}, f"has no {RC93_HANG} entry"),
        ({"date": "28.11.2026"}, "date: String should match pattern"),
        ({"schema_version": 2}, "schema_version: Input should be 1"),
    ],
)  # fmt: skip
def test_check_refuses_a_bad_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], problem: str
) -> None:
    bad = write(tmp_path / "bad.json", SHIPPED | change)
    assert main(["advisories", "--check", str(bad)]) == ExitCode.BAD_INPUT
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"runc-rollout: error: {bad}: ") and problem in line


def test_check_refuses_what_is_not_a_json_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "text").write_text("not json")
    link = tmp_path / "link.json"
    link.symlink_to(write(tmp_path / "real.json", SHIPPED))
    for path, problem in ((tmp_path / "text", "Invalid JSON"), (link, "symbolic link")):
        assert main(["advisories", "--check", str(path)]) == ExitCode.BAD_INPUT
        assert problem in capsys.readouterr().err


def test_plan_uses_the_operators_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    own = write(tmp_path / "own.json", SHIPPED | {"advisories": [*SHIPPED["advisories"], OWN]})
    runc = tmp_path / "runc"
    runc.write_text("#!/bin/sh\necho runc\n")
    digest = hashlib.sha256(runc.read_bytes()).hexdigest()
    out = tmp_path / "plan.json"
    args = ["plan", "-i", str(FLEET40), "--runc", str(runc), "--sha256", digest, "-o", str(out),
            "--runc-version", "1.1.12", "--advisories", str(own)]  # fmt: skip
    assert main([*args, "--format", "markdown"]) == ExitCode.OK
    review = capsys.readouterr().out
    assert "**high** `SEC-2026-7`: our security team's finding" in review
    assert f"**Advisory table:** {own} (11 advisories, dated {SHIPPED['date']})" in review
    assert main([*args, "--refuse-severity", "high"]) == ExitCode.BAD_INPUT
    assert "CVE-2025-52881, SEC-2026-7): high" in capsys.readouterr().err
    accepted = [*args, "--refuse-severity", "high", "--accept-advisory", "SEC-2026-7"]
    assert main(accepted) == ExitCode.BAD_INPUT  # 1.1.12's 2025 escapes are high as well
    refused = capsys.readouterr().err
    assert "runc 1.1.12 has CVE-2025-31133" in refused and "SEC-2026-7" not in refused


def test_audit_takes_the_operators_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    own = write(tmp_path / "own.json", SHIPPED | {"advisories": [*SHIPPED["advisories"], OWN]})
    assert [a.id for a in load_advisories(own)][-1] == "SEC-2026-7"
    missing = str(tmp_path / "no-inventory")
    assert main(["audit", "-i", missing, "--ignore", "SEC-2026-7"]) == ExitCode.BAD_INPUT
    assert "--ignore: no finding is called SEC-2026-7" in capsys.readouterr().err
    ignored = ["audit", "-i", missing, "--ignore", "SEC-2026-7", "--advisories", str(own)]
    assert main(ignored) == ExitCode.BAD_INPUT  # past the ids: the inventory is what is missing
    assert "no-inventory" in capsys.readouterr().err


def test_every_format_lists_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    ids = [advisory["id"] for advisory in SHIPPED["advisories"]]
    assert main(["advisories", "--format", "json"]) == ExitCode.OK
    listed = json.loads(capsys.readouterr().out)
    assert listed["valid"] is True and listed["table"].startswith("the shipped table (10")
    assert [advisory["id"] for advisory in listed["advisories"]] == ids
    shipped = list(shipped_advisories().advisories)
    assert [Advisory.model_validate_json(json.dumps(a)) for a in listed["advisories"]] == shipped
    assert main(["advisories", "--format", "markdown"]) == ExitCode.OK
    rows = capsys.readouterr().out.splitlines()
    assert rows[2:4] == ["| id | kind | severity | fixed in | title |", "|---|---|---|---|---|"]
    assert [row.split(" | ")[0].removeprefix("| ").replace("\\", "") for row in rows[4:]] == ids
    assert main(["advisories", "--format", "text"]) == ExitCode.OK
    assert capsys.readouterr().out.splitlines()[1].startswith(ids[0])


def test_a_bad_file_is_refused_in_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(tmp_path / "bad.json", SHIPPED | {"schema_version": 2})
    for fmt in ("text", "markdown", "json"):
        assert main(["advisories", "--check", str(bad), "--format", fmt]) == ExitCode.BAD_INPUT
        assert capsys.readouterr().out == ""
