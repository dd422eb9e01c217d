"""Host steps run by a real `sh` on copies under tmp (the host paths moved there)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from orchestrator.host import commands


def run_here(script: str, root: Path) -> subprocess.CompletedProcess[str]:
    script = script.replace(commands.STATE_DIR, str(root))
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


def test_write_record_installs_exactly_the_json_it_carries(tmp_path: Path) -> None:
    """The record is in the command itself: with stdin closed at once (a controller killed
    before sending anything), the host still gets the whole record, quotes and all."""
    record = json.dumps({"run_id": "r'1", "note": '$HOME `id` \\ "q"\nnext', "n": [1, 2]})
    done = run_here(commands.write_record(record).script, tmp_path)
    assert done.returncode == 0 and "record=written" in done.stdout, done.stderr
    assert (tmp_path / "record.json").read_text() == record + "\n"
    assert not (tmp_path / "record.json.tmp").exists()


def test_write_record_replaces_the_old_record(tmp_path: Path) -> None:
    (tmp_path / "record.json").write_text('{"old": true}\n')
    done = run_here(commands.write_record('{"new": true}').script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "record.json").read_text()) == {"new": True}


def sysctl_here(script: str, root: Path) -> subprocess.CompletedProcess[str]:
    """A file step run here in `root`, the backup store and the sysctl moved under it."""
    script = script.replace(commands.SYSCTL_PROC, str(root / "proc"))
    script = script.replace(commands.FILE_BACKUP_DIR, str(root / "files"))
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=root
    )


def test_file_names_are_data_in_every_file_step(tmp_path: Path) -> None:
    """A name with `$(...)` runs nothing, a name with spaces is not cut: backed up, rewritten,
    reported and restored under its whole name, and nothing stray is created."""
    (tmp_path / "files").mkdir()
    (tmp_path / "proc").write_text("163840\n")
    mark = tmp_path / "ran"  # what `$(touch ran)` in a name would create, run in tmp_path
    conf = tmp_path / "etc"
    conf.mkdir()
    names = [str(conf / "a b.conf"), str(conf / "$(touch ran).conf")]
    for name in names:
        Path(name).write_text("fs.pipe-user-pages-soft = 163840\n")
    before = hashlib.sha256(b"fs.pipe-user-pages-soft = 163840\n").hexdigest()
    backed = sysctl_here(commands.backup_files(names).script, tmp_path)
    changed = sysctl_here(commands.set_sysctl(16384, names).script, tmp_path)
    assert backed.returncode == 0 and changed.returncode == 0, changed.stderr
    reported = commands.parse_file_lines(changed.stdout, names)
    assert set(reported) == set(names)
    assert {sums["before"] for sums in reported.values()} == {before}
    assert commands.parse_file_lines(backed.stdout, names).keys() == set(names)
    for name in names:
        assert Path(name).read_text() == "fs.pipe-user-pages-soft = 16384\n"
    restore = [(name, before, reported[name]["after"]) for name in names]
    restored = sysctl_here(commands.restore_files(restore).script, tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert not mark.exists()
    assert sorted(p.name for p in conf.iterdir()) == sorted(Path(n).name for n in names)
    for name in names:
        assert Path(name).read_text() == "fs.pipe-user-pages-soft = 163840\n"


def test_rollback_keeps_a_file_edited_since_and_says_so(tmp_path: Path) -> None:
    """An admin edited the file after the rollout rewrote it: the rollback keeps the edit and
    puts the old version beside it; an untouched file is restored."""
    (tmp_path / "files").mkdir()
    (tmp_path / "proc").write_text("163840\n")
    edited, untouched = tmp_path / "edited.conf", tmp_path / "untouched.conf"
    for path in (edited, untouched):
        path.write_text("fs.pipe-user-pages-soft = 163840\n")
    files = [str(edited), str(untouched)]
    sysctl_here(commands.backup_files(files).script, tmp_path)
    reported = commands.parse_file_lines(
        sysctl_here(commands.set_sysctl(16384, files).script, tmp_path).stdout, files
    )
    edited.write_text("fs.pipe-user-pages-soft = 16384\nvm.admin = 1\n")
    restore = [(path, sums["before"], sums["after"]) for path, sums in reported.items()]
    done = sysctl_here(commands.restore_files(restore).script, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = commands.parse_file_lines(done.stdout, files)
    assert lines[str(edited)].get("kept") == "1" and "kept" not in lines[str(untouched)]
    assert edited.read_text() == "fs.pipe-user-pages-soft = 16384\nvm.admin = 1\n"
    kept = Path(str(edited) + commands.KEPT_SUFFIX)
    assert kept.read_text() == "fs.pipe-user-pages-soft = 163840\n"
    assert untouched.read_text() == "fs.pipe-user-pages-soft = 163840\n"
