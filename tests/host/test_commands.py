"""Host steps run by a real `sh` on copies under tmp (the host paths moved there)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

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


@pytest.fixture
def trusted_dir() -> Iterator[Path]:
    """A folder only root can write, and every folder above it (the file steps trust nothing
    else, as on a host): in root's home, not in /tmp, which anyone can write."""
    if os.geteuid() != 0:
        pytest.skip("the file steps trust only root's files: run as root")
    directory = Path(tempfile.mkdtemp(prefix="rr-trusted-", dir=Path.home()))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_file_names_are_data_in_every_file_step(trusted_dir: Path) -> None:
    """A name with `$(...)` runs nothing, a name with spaces is not cut: backed up, rewritten,
    reported and restored under its whole name, and nothing stray is created."""
    (trusted_dir / "files").mkdir()
    (trusted_dir / "proc").write_text("163840\n")
    mark = trusted_dir / "ran"  # what `$(touch ran)` in a name would create, run in trusted_dir
    conf = trusted_dir / "etc"
    conf.mkdir()
    names = [str(conf / "a b.conf"), str(conf / "$(touch ran).conf")]
    for name in names:
        Path(name).write_text("fs.pipe-user-pages-soft = 163840\n")
    before = hashlib.sha256(b"fs.pipe-user-pages-soft = 163840\n").hexdigest()
    backed = sysctl_here(commands.backup_files(names).script, trusted_dir)
    changed = sysctl_here(commands.set_sysctl(16384, names).script, trusted_dir)
    assert backed.returncode == 0 and changed.returncode == 0, changed.stderr
    reported = commands.parse_file_lines(changed.stdout, names)
    assert set(reported) == set(names)
    assert {sums["before"] for sums in reported.values()} == {before}
    assert commands.parse_file_lines(backed.stdout, names).keys() == set(names)
    for name in names:
        assert Path(name).read_text() == "fs.pipe-user-pages-soft = 16384\n"
    restore = [(name, before, reported[name]["after"]) for name in names]
    restored = sysctl_here(commands.restore_files(restore).script, trusted_dir)
    assert restored.returncode == 0, restored.stderr
    assert not mark.exists()
    assert sorted(p.name for p in conf.iterdir()) == sorted(Path(n).name for n in names)
    for name in names:
        assert Path(name).read_text() == "fs.pipe-user-pages-soft = 163840\n"


def test_rollback_keeps_a_file_edited_since_and_says_so(trusted_dir: Path) -> None:
    """An admin edited the file after the rollout rewrote it: the rollback keeps the edit and
    puts the old version beside it; an untouched file is restored."""
    (trusted_dir / "files").mkdir()
    (trusted_dir / "proc").write_text("163840\n")
    edited, untouched = trusted_dir / "edited.conf", trusted_dir / "untouched.conf"
    for path in (edited, untouched):
        path.write_text("fs.pipe-user-pages-soft = 163840\n")
    files = [str(edited), str(untouched)]
    sysctl_here(commands.backup_files(files).script, trusted_dir)
    reported = commands.parse_file_lines(
        sysctl_here(commands.set_sysctl(16384, files).script, trusted_dir).stdout, files
    )
    edited.write_text("fs.pipe-user-pages-soft = 16384\nvm.admin = 1\n")
    restore = [(path, sums["before"], sums["after"]) for path, sums in reported.items()]
    done = sysctl_here(commands.restore_files(restore).script, trusted_dir)
    assert done.returncode == 0, done.stderr
    lines = commands.parse_file_lines(done.stdout, files)
    assert lines[str(edited)].get("kept") == "1" and "kept" not in lines[str(untouched)]
    assert edited.read_text() == "fs.pipe-user-pages-soft = 16384\nvm.admin = 1\n"
    kept = Path(str(edited) + commands.KEPT_SUFFIX)
    assert kept.read_text() == "fs.pipe-user-pages-soft = 163840\n"
    assert untouched.read_text() == "fs.pipe-user-pages-soft = 163840\n"


RAISED = "fs.pipe-user-pages-soft = 163840\n"


def test_a_sysctl_folder_others_can_write_is_refused_and_its_links_never_followed(
    trusted_dir: Path,
) -> None:
    """A sysctl folder anyone can write: links planted at the names the file steps write
    beside a file (pointing at a file of root's) are never followed; every file step refuses
    the folder, as the facts refuse such a folder's binaries, and changes nothing."""
    (trusted_dir / "files").mkdir()
    (trusted_dir / "proc").write_text("163840\n")
    victim = trusted_dir / "shadow"
    victim.write_text("root's own file\n")
    folder = trusted_dir / "sysctl.d"
    folder.mkdir()
    folder.chmod(0o1777)
    conf = folder / "90-raised.conf"
    conf.write_text(RAISED)
    for suffix in (".runc-rollout.tmp", commands.KEPT_SUFFIX):
        os.symlink(victim, f"{conf}{suffix}")
    before = hashlib.sha256(RAISED.encode()).hexdigest()
    (trusted_dir / "files" / before).write_text(RAISED)
    steps = [
        commands.backup_files([str(conf)]),
        commands.set_sysctl(16384, [str(conf)]),
        commands.restore_files([(str(conf), before, "0" * 64)]),  # edited since: kept
        commands.restore_files([(str(conf), before, None)]),
    ]
    for step in steps:
        conf.write_text("fs.pipe-user-pages-soft = 16384\n")
        done = sysctl_here(step.script, trusted_dir)
        assert done.returncode != 0, (step.name, done.stdout)
        assert f"{folder} is writable by others" in done.stdout, (step.name, done.stdout)
        assert victim.read_text() == "root's own file\n", step.name
        assert conf.read_text() == "fs.pipe-user-pages-soft = 16384\n", step.name
    assert (trusted_dir / "proc").read_text() == "163840\n"


@pytest.mark.parametrize(
    ("kind", "why"),
    [("link", "is a symbolic link"), ("others", "is writable by others")],
)
def test_a_sysctl_file_that_is_a_link_or_writable_by_others_is_refused(
    trusted_dir: Path, kind: str, why: str
) -> None:
    (trusted_dir / "files").mkdir()
    (trusted_dir / "proc").write_text("163840\n")
    conf = trusted_dir / "90-raised.conf"
    if kind == "link":
        (trusted_dir / "elsewhere").write_text(RAISED)
        os.symlink(trusted_dir / "elsewhere", conf)
    else:
        conf.write_text(RAISED)
        conf.chmod(0o666)
    for step in (commands.backup_files([str(conf)]), commands.set_sysctl(16384, [str(conf)])):
        done = sysctl_here(step.script, trusted_dir)
        assert done.returncode != 0 and f"{conf} {why}" in done.stdout, (step.name, done.stdout)
        assert conf.read_text() == RAISED
    assert not list((trusted_dir / "files").iterdir())


def test_links_at_the_names_beside_a_file_are_replaced_never_followed(trusted_dir: Path) -> None:
    """In a folder only root can write, a link at the name a rollback keeps the old version
    under, or at a temporary name of an earlier version, is replaced by a rename (temporary
    files are made by mktemp): the file it points at is never written."""
    (trusted_dir / "files").mkdir()
    (trusted_dir / "backup").mkdir()
    victim = trusted_dir / "shadow"
    victim.write_text("root's own file\n")
    conf = trusted_dir / "90-raised.conf"
    conf.write_text("fs.pipe-user-pages-soft = 16384\nvm.admin = 1\n")  # edited since
    before = hashlib.sha256(RAISED.encode()).hexdigest()
    (trusted_dir / "files" / before).write_text(RAISED)
    kept = Path(f"{conf}{commands.KEPT_SUFFIX}")
    for name in (kept, Path(f"{conf}.runc-rollout.tmp")):
        os.symlink(victim, name)
    done = sysctl_here(commands.restore_files([(str(conf), before, "0" * 64)]).script, trusted_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not kept.is_symlink() and kept.read_text() == RAISED
    assert victim.read_text() == "root's own file\n"
    runc = trusted_dir / "runc"
    runc.write_bytes(b"new runc")
    old = b"old runc"
    (trusted_dir / "backup" / hashlib.sha256(old).hexdigest()).write_bytes(old)
    os.symlink(victim, trusted_dir / ".runc-rollout-restore.tmp")
    step = commands.restore_binary(str(runc), hashlib.sha256(old).hexdigest())
    done = run_here(step.script, trusted_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert runc.read_bytes() == old and victim.read_text() == "root's own file\n"
    left = {path.name for path in trusted_dir.iterdir()} - {"files", "backup", "shadow", "runc"}
    assert left == {
        conf.name,
        kept.name,
        "90-raised.conf.runc-rollout.tmp",
        ".runc-rollout-restore.tmp",
    }  # the planted names only: no temporary left


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


def obtain_here(
    root: Path, sha: str, url: str | None, size: int = 2000, env: dict[str, str] | None = None
) -> tuple[int, dict[str, str]]:
    staged = str(root / ".runc-rollout-run.tmp")
    script = commands.obtain_staged(staged, sha, size, url, 20).script
    script = script.replace(commands.STATE_DIR, str(root))
    done = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env
    )
    return done.returncode, commands.parse_kv(done.stdout)


def test_obtain_takes_the_hosts_own_copy_then_the_url(tmp_path: Path) -> None:
    new = b"\x7fELF new runc".ljust(2000, b"\0")  # longer than an error page
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
        _Served.content = b"\x7fELF other".ljust(2000, b"\0")  # as long as the artifact
        code, said = obtain_here(tmp_path, sha, url)
        assert code == commands.EXIT_MISMATCH and not staged.exists()
        assert said["actual"] == hashlib.sha256(_Served.content).hexdigest()
        _Served.content = new[:-1]
        assert obtain_here(tmp_path, sha, url) == (commands.EXIT_MISMATCH, {"bytes": "1999"})
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
    tools = ["sh", "sha256sum", "cut", "rm", "cp", "timeout", "tr", "head", "cat", "printf", "wc"]
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
            script = commands.obtain_staged(str(staged), sha, len(new), url, 20).script
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
    step = commands.push_gzip(str(staged), len(packed), len(content))
    done = subprocess.run(["sh", "-c", step.script], input=packed, capture_output=True)
    assert done.returncode == 0 and staged.read_bytes() == content
    assert staged.stat().st_mode & 0o777 == 0o700
    short = subprocess.run(["sh", "-c", step.script], input=packed[:-100], capture_output=True)
    assert short.returncode != 0


class Flood(http.server.BaseHTTPRequestHandler):
    """Serves far more than any artifact (at most `limit` bytes: it stops itself), with an
    honest Content-Length, or none (a server that does not say, or lies by omission); counts
    requests and what it managed to send."""

    limit = 256 << 20
    honest = False
    paths: ClassVar[list[str]] = []
    sent = 0

    def do_GET(self) -> None:
        served = type(self)
        served.paths.append(self.path)
        self.send_response(200)
        if served.honest:
            self.send_header("Content-Length", str(served.limit))
        self.end_headers()
        block = b"\x7fELF" + bytes(65532)
        try:
            while served.sent < served.limit:
                self.wfile.write(block)
                served.sent += len(block)
        except OSError:
            pass  # the host stopped reading

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def serving_flood(limit: int = 256 << 20) -> Iterator[str]:
    """A `Flood` server on 127.0.0.1 serving at most `limit` bytes a request: its URL."""
    Flood.paths, Flood.sent, Flood.honest, Flood.limit = [], 0, False, limit
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flood)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def flood() -> Iterator[str]:
    with serving_flood() as url:
        yield url


def without_curl(root: Path) -> dict[str, str]:
    """An environment whose PATH has every command of this machine but curl (wget fetches)."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for folder in ("/usr/bin", "/bin"):
        for entry in os.scandir(folder):
            if entry.name != "curl" and not (bin_dir / entry.name).exists():
                os.symlink(entry.path, bin_dir / entry.name)
    return {"PATH": str(bin_dir)}


@pytest.mark.parametrize(("fetcher", "honest"), [("curl", True), ("curl", False), ("wget", False)])
def test_a_url_serving_more_than_the_artifact_is_cut_at_its_size(
    tmp_path: Path, flood: str, fetcher: str, honest: bool
) -> None:
    """What a URL serves is capped at the artifact's size + 1 on the host, however it comes
    (curl or wget, with or without a Content-Length; curl reads none of a length announced
    over it): more is refused as another file (the host fails, not touched), and nothing is
    left on the host."""
    Flood.honest = honest
    env = without_curl(tmp_path) if fetcher == "wget" else None
    code, said = obtain_here(tmp_path, "0" * 64, f"{flood}/runc", size=1000, env=env)
    assert (code, said.get("bytes")) == (commands.EXIT_MISMATCH, "more than 1000"), said
    assert not (tmp_path / ".runc-rollout-run.tmp").exists()
    assert Flood.sent < 16 << 20  # what the host took before it stopped reading
    assert Flood.paths == ["/runc"]


def test_a_url_is_fetched_as_it_is_never_as_a_glob(tmp_path: Path, flood: str) -> None:
    """curl expands `[1-5]` and `{a,b}` in a URL into several requests unless told not to."""
    code, _ = obtain_here(tmp_path, "0" * 64, f"{flood}/runc[1-3]{{a,b}}", size=1000)
    assert code == commands.EXIT_MISMATCH
    assert Flood.paths == ["/runc[1-3]{a,b}"]


def test_a_gzip_push_that_unpacks_to_more_than_the_artifact_is_cut(tmp_path: Path) -> None:
    """A gzip bomb (100 MiB of zeros in 100 KiB) stops at the artifact's size + 1 on the host."""
    packed = gzip.compress(bytes(100 << 20))
    staged = tmp_path / "staged"
    step = commands.push_gzip(str(staged), len(packed), 1000)
    done = subprocess.run(["sh", "-c", step.script], input=packed, capture_output=True)
    assert done.returncode != 0 and b"more than 1000 bytes" in done.stdout, done.stdout
    assert not staged.exists()
