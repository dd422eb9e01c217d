"""Host steps run by a real `sh` on copies under tmp (the host paths moved there)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from orchestrator import hostside


def run_here(script: str, root: Path) -> subprocess.CompletedProcess[str]:
    script = script.replace(hostside.STATE_DIR, str(root))
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


def test_write_record_installs_exactly_the_json_it_carries(tmp_path: Path) -> None:
    """The record is in the command itself: with stdin closed at once (a controller killed
    before sending anything), the host still gets the whole record, quotes and all."""
    record = json.dumps({"run_id": "r'1", "note": '$HOME `id` \\ "q"\nnext', "n": [1, 2]})
    done = run_here(hostside.write_record(record).script, tmp_path)
    assert done.returncode == 0 and "record=written" in done.stdout, done.stderr
    assert (tmp_path / "record.json").read_text() == record + "\n"
    assert not (tmp_path / "record.json.tmp").exists()


def test_write_record_replaces_the_old_record(tmp_path: Path) -> None:
    (tmp_path / "record.json").write_text('{"old": true}\n')
    done = run_here(hostside.write_record('{"new": true}').script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "record.json").read_text()) == {"new": True}
