"""Host steps run by a real `sh` on copies under tmp (the host paths moved there)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

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


def test_a_batch_splits_into_its_steps_up_to_the_first_failure() -> None:
    steps = [
        commands.HostCommand("one", "printf 'a\\n@@not-the-nonce rc 9\\n'; echo err >&2", 5),
        commands.HostCommand("two", "echo half; echo why >&2; exit 3", 5),
        commands.HostCommand("three", "echo never", 5),
    ]
    nonce = "0123456789abcdef"
    done = subprocess.run(
        ["sh", "-c", commands.batch(steps, nonce).script], capture_output=True, text=True
    )
    results = commands.split_batch(done.stdout, done.stderr, nonce)
    assert [(r.name, r.exit_status) for r in results] == [("one", 0), ("two", 3)]
    assert results[0].stdout == "a\n@@not-the-nonce rc 9\n" and results[0].stderr == "err\n"
    assert results[1].last_line() == "half"
    cut = commands.split_batch(done.stdout.split("@@" + nonce + " rc 3")[0], "", nonce)
    assert [(r.name, r.exit_status) for r in cut] == [("one", 0), ("two", -1)]


class _Served(http.server.BaseHTTPRequestHandler):
    content = b""

    asked: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.asked.append(self.path)
        if self.path.partition("?")[0] != "/runc":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.content)))
        self.end_headers()
        self.wfile.write(self.content)

    def log_message(self, *args: object) -> None:
        pass


def obtain_here(root: Path, sha: str, url: str | None) -> tuple[int, dict[str, str]]:
    staged = str(root / ".runc-rollout-run.tmp")
    done = run_here(commands.obtain_staged(staged, sha, url, 20).script, root)
    return done.returncode, commands.parse_kv(done.stdout)


def test_obtain_takes_the_hosts_own_copy_then_the_url(tmp_path: Path) -> None:
    new = b"\x7fELF new runc"
    sha = hashlib.sha256(new).hexdigest()
    staged = tmp_path / ".runc-rollout-run.tmp"
    assert obtain_here(tmp_path, sha, None) == (
        commands.EXIT_NEEDS_PUSH,
        {"why": "no copy on the host"},
    )
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / sha).write_bytes(new)
    assert obtain_here(tmp_path, sha, None) == (0, {"source": "backup"})
    assert staged.read_bytes() == new
    assert obtain_here(tmp_path, sha, None) == (0, {"source": "staged"})
    (tmp_path / "backup" / sha).unlink()
    staged.write_bytes(b"short")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Served)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/runc"
    try:
        _Served.content = new
        assert obtain_here(tmp_path, sha, url) == (0, {"source": "url"})
        assert staged.read_bytes() == new
        staged.unlink()
        _Served.content = b"\x7fELF something else"
        code, said = obtain_here(tmp_path, sha, url)
        assert code == commands.EXIT_MISMATCH and not staged.exists()
        assert said["actual"] == hashlib.sha256(_Served.content).hexdigest()
        code, said = obtain_here(tmp_path, sha, url.replace("/runc", "/gone"))
        assert code == commands.EXIT_NEEDS_PUSH and "404" in said["why"] and not staged.exists()
    finally:
        server.shutdown()
        server.server_close()


def test_the_url_reaches_curl_and_wget_on_stdin_never_in_their_arguments(tmp_path: Path) -> None:
    """A presigned URL's token is a secret: any user of the host sees a program's arguments
    (`ps`). curl and wget (each alone on the PATH) are given it on stdin."""
    new = b"\x7fELF new runc"
    sha = hashlib.sha256(new).hexdigest()
    staged = tmp_path / ".runc-rollout-run.tmp"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Served)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/runc?X-Amz-Signature=s3cr3t"
    tools = ["sh", "sha256sum", "cut", "rm", "cp", "timeout", "tr", "head", "cat", "printf"]
    try:
        _Served.content = new
        for fetcher in ("curl", "wget"):
            bin_dir = tmp_path / f"bin-{fetcher}"
            bin_dir.mkdir()
            for tool in tools:
                if real := shutil.which(tool):
                    (bin_dir / tool).symlink_to(real)
            argv = tmp_path / f"{fetcher}.argv"
            wrapper = bin_dir / fetcher
            wrapper.write_text(
                f'#!/bin/sh\nprintf "%s\\n" "$@" > {argv}\nexec {shutil.which(fetcher)} "$@"\n'
            )
            wrapper.chmod(0o755)
            script = commands.obtain_staged(str(staged), sha, url, 20).script
            done = subprocess.run(
                ["sh", "-c", script.replace(commands.STATE_DIR, str(tmp_path))],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                env={"PATH": str(bin_dir)},
            )
            assert commands.parse_kv(done.stdout) == {"source": "url"}, (fetcher, done)
            assert staged.read_bytes() == new
            assert "s3cr3t" not in argv.read_text(), argv.read_text()
            assert _Served.asked[-1] == "/runc?X-Amz-Signature=s3cr3t"  # the whole URL
            staged.unlink()
    finally:
        server.shutdown()
        server.server_close()


def test_a_gzip_push_arrives_whole_or_not_at_all(tmp_path: Path) -> None:
    content = bytes(range(256)) * 4000
    packed = gzip.compress(content)
    staged = tmp_path / "staged"
    step = commands.push_gzip(str(staged), len(packed))
    done = subprocess.run(["sh", "-c", step.script], input=packed, capture_output=True)
    assert done.returncode == 0 and staged.read_bytes() == content
    assert staged.stat().st_mode & 0o777 == 0o700
    short = subprocess.run(["sh", "-c", step.script], input=packed[:-100], capture_output=True)
    assert short.returncode != 0
