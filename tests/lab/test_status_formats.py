"""`lab status --format text|markdown|json`: every format, from statuses made here (what the
lab measures of real hosts is tests/lab/test_lab.py's) and with no lab at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.errors import ExitCode
from orchestrator.lab.records import LabHostStatus
from orchestrator.lab.text import format_status, status_json, status_markdown

ROWS = [
    LabHostStatus(
        name="lab-1", address="127.0.9.11", zone="zone-a", kind="full", holder=True, sshd=True,
        containerd=True, dockerd=True, runc_version="runc version 1.0.0-rc93",
        runc_sha256="ab" * 32, sysctl=16384, hung=[], pids={"sshd": 10},
    ),
    LabHostStatus(
        name="lab-2", address="127.0.9.12", zone="zone-b", kind="light", holder=True, sshd=False,
        containerd=None, dockerd=None, runc_version="1.0|\x1b[31mred", runc_sha256=None,
        sysctl=None, hung=None, pids={},
    ),
]  # fmt: skip


def test_text_markdown_and_json_say_the_same_hosts() -> None:
    text = format_status(ROWS).splitlines()
    assert text[0].split() == ["HOST", "ADDRESS", "ZONE", "KIND", "SSHD", "CONTAINERD",
                               "DOCKERD", "SYSCTL", "RUNC", "SHA256", "HUNG"]  # fmt: skip
    assert text[1].split() == ["lab-1", "127.0.9.11", "zone-a", "full", "up", "up", "up",
                               "16384", "1.0.0-rc93", "abababababab", "0"]  # fmt: skip
    assert "\x1b" not in text[2] and "DOWN" in text[2]
    markdown = status_markdown(ROWS).splitlines()
    assert markdown[0] == "| host | address | zone | kind | sshd | containerd | dockerd | " \
        "sysctl | runc | sha256 | hung |"  # fmt: skip
    assert markdown[1] == "|---" * 11 + "|"
    assert markdown[2].startswith("| lab-1 | 127.0.9.11 | zone-a | full | up |")
    assert "1.0\\|" in markdown[3] and "\x1b" not in markdown[3]  # a host's text ends no cell
    hosts = json.loads(status_json(ROWS))
    assert [host["name"] for host in hosts] == ["lab-1", "lab-2"]
    assert hosts[0]["pids"] == {"sshd": 10} and hosts[1]["containerd"] is None


@pytest.mark.parametrize(
    ("fmt", "said"), [("text", "no lab running"), ("markdown", "No lab running."), ("json", "[]")]
)
def test_every_format_says_there_is_no_lab(
    fmt: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["lab", "status", "--state-dir", str(tmp_path / "none"), "--format", fmt]
    assert main(argv) == ExitCode.OK
    assert capsys.readouterr().out.strip() == said
