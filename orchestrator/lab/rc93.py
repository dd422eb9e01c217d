"""The lab's old runc: a real runc with rc93's pipe hang, built from Debian's packages alone.

Debian's `golang-github-opencontainers-runc-dev` carries runc 1.1.5's full source in GOPATH
layout, and its Go dependencies come as `-dev` packages beside it. The only change is the order
in `disassembleFilter` (libcontainer/seccomp/patchbpf/enosys_linux.go): since rc94 (runc PR
#2871) a goroutine drains the scratch pipe while `filter.ExportBPF(wtr)` writes the compiled
seccomp program into it; rc93 let the export finish first and read the pipe afterwards, so a
program larger than the pipe blocks `runc init` in pipe_write for ever. `RC93_ORDER` puts the
read after the export again; `-ldflags` makes it report rc93's version and commit.

The binary is cached under `/var/cache/runc-rollout-lab` (`RUNC_ROLLOUT_LAB_CACHE`), keyed by
its inputs: the source package's version, this recipe (the edit, tags, ldflags) and `go version`.
A build takes ~20-25 s on 2 cores (its Go build cache is thrown away: every build is cold).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator.errors import BadInput, LabError

VERSION = "1.0.0-rc93"
COMMIT = "12644e614e25b05da6fd08a38ffa0cfe1903fdec"
SOURCE_PACKAGE = "golang-github-opencontainers-runc-dev"
GOPATH_SHARED = Path("/usr/share/gocode")
IMPORT_PATH = "github.com/opencontainers/runc"
PATCHED_FILE = "libcontainer/seccomp/patchbpf/enosys_linux.go"
CACHE_ENV = "RUNC_ROLLOUT_LAB_CACHE"
DEFAULT_CACHE = Path("/var/cache/runc-rollout-lab")
GO = "/usr/bin/go"
BUILD_TAGS = "seccomp"
LDFLAGS = f"-X main.version={VERSION} -X main.gitCommit={COMMIT}"
# (path, Debian package) needed to build it; none is needed once it is cached.
BUILD_REQUIREMENTS = (
    (GO, "golang-go"),
    ("/usr/include/seccomp.h", "libseccomp-dev"),
    (str(GOPATH_SHARED / "src" / IMPORT_PATH / PATCHED_FILE), SOURCE_PACKAGE),
)

# disassembleFilter as runc >= rc94 has it (Debian's 1.1.5): the pipe is read while exporting.
FIXED_ORDER = """\
	readerBuffer := new(bytes.Buffer)
	errChan := make(chan error, 1)
	go func() {
		_, err := io.Copy(readerBuffer, rdr)
		errChan <- err
		close(errChan)
	}()

	if err := filter.ExportBPF(wtr); err != nil {
		return nil, fmt.Errorf("error exporting BPF: %w", err)
	}
	// Close so that the reader actually gets EOF.
	_ = wtr.Close()

	if copyErr := <-errChan; copyErr != nil {
		return nil, fmt.Errorf("error reading from ExportBPF pipe: %w", copyErr)
	}
"""

# rc93's order: export the whole program into the pipe, and only then read it back.
RC93_ORDER = """\
	// runc-rollout lab: rc93's order. The export must fit in the pipe before anything reads.
	if err := filter.ExportBPF(wtr); err != nil {
		return nil, fmt.Errorf("error exporting BPF: %w", err)
	}
	// Close so that the reader actually gets EOF.
	_ = wtr.Close()

	readerBuffer := new(bytes.Buffer)
	if _, err := io.Copy(readerBuffer, rdr); err != nil {
		return nil, fmt.Errorf("error reading from ExportBPF pipe: %w", err)
	}
"""


def rc93_source(text: str) -> str:
    """enosys_linux.go with rc93's order; LabError unless the fixed order is there exactly once."""
    if text.count(FIXED_ORDER) != 1:
        raise LabError(
            f"{PATCHED_FILE} of {SOURCE_PACKAGE} does not read the pipe as runc 1.1.5 does; "
            "the lab's rc93 recipe needs updating for this version"
        )
    return text.replace(FIXED_ORDER, RC93_ORDER)


def recipe_sha256() -> str:
    """What this module changes and how it builds, as one digest."""
    recipe = "\0".join((PATCHED_FILE, FIXED_ORDER, RC93_ORDER, BUILD_TAGS, LDFLAGS))
    return hashlib.sha256(recipe.encode()).hexdigest()


@dataclass(frozen=True)
class BuildInputs:
    """What the binary is made of; its digest names the cache entry."""

    source_package: str
    source_version: str
    recipe_sha256: str
    go_version: str

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Rc93Runc:
    path: Path  # the cached binary (never installed in place: copy it)
    inputs: BuildInputs
    built: bool  # False: it came from the cache
    seconds: float  # the build's wall time (0 when cached)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError(f"`{' '.join(argv)}` failed: {exc}") from None
    return done.stdout.strip()


def build_inputs() -> BuildInputs:
    """The inputs as installed now; BadInput (with the apt-get line) when packages are missing."""
    missing = [package for path, package in BUILD_REQUIREMENTS if not os.path.exists(path)]
    if missing:
        raise BadInput(
            "the lab builds its runc 1.0.0-rc93 from Debian's packages, which are missing: "
            f"apt-get install -y {' '.join(missing)}"
        )
    version = _output(["dpkg-query", "-W", "-f", "${Version}", SOURCE_PACKAGE])
    return BuildInputs(SOURCE_PACKAGE, version, recipe_sha256(), _output([GO, "version"]))


def check_version(binary: Path) -> None:
    """LabError unless `binary --version` reports rc93's version and commit."""
    text = _output([str(binary), "--version"])
    if f"runc version {VERSION}" not in text or f"commit: {COMMIT}" not in text:
        raise LabError(f"{binary} reports {text.splitlines()[:2]}, not runc {VERSION} {COMMIT}")


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One build at a time per cache (another `lab up` waits for it, then reuses it)."""
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def ensure_rc93_runc(directory: Path | None = None) -> Rc93Runc:
    """The cached build for today's inputs, built first when missing."""
    directory = directory or cache_dir()
    inputs = build_inputs()
    entry = directory / f"runc-{VERSION}-{inputs.key()}"
    binary = entry / "runc"
    if binary.is_file():
        return Rc93Runc(binary, inputs, built=False, seconds=0.0)
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    with _locked(directory):
        if binary.is_file():  # built meanwhile by whoever held the lock
            return Rc93Runc(binary, inputs, built=False, seconds=0.0)
        began = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=".build-", dir=directory) as work:
            built = _build(Path(work))
            staged = Path(work) / "entry"
            staged.mkdir()
            shutil.move(built, staged / "runc")
            (staged / "inputs.json").write_text(json.dumps(asdict(inputs), indent=1) + "\n")
            os.replace(staged, entry)
        return Rc93Runc(binary, inputs, built=True, seconds=time.monotonic() - began)


def _build(work: Path) -> Path:
    """Copy Debian's source into a GOPATH of its own, edit it and `go build` it (GOPATH mode)."""
    source = GOPATH_SHARED / "src" / IMPORT_PATH
    tree = work / "gopath" / "src" / IMPORT_PATH
    shutil.copytree(source, tree, symlinks=True)
    patched = tree / PATCHED_FILE
    patched.write_text(rc93_source(patched.read_text()))
    output = work / "runc"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(work),
        "GO111MODULE": "off",
        "GOPATH": f"{work / 'gopath'}:{GOPATH_SHARED}",
        "GOCACHE": str(work / "gocache"),
        "GOFLAGS": "",
        "CGO_ENABLED": "1",
    }
    argv = [GO, "build", "-trimpath", "-tags", BUILD_TAGS, "-ldflags", LDFLAGS, "-o", str(output)]
    try:
        done = subprocess.run(
            [*argv, "."], cwd=tree, env=env, capture_output=True, text=True, timeout=900
        )
    except subprocess.TimeoutExpired:
        raise LabError("building the lab's runc 1.0.0-rc93 took over 15 minutes") from None
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-5:])
        raise LabError(f"building the lab's runc 1.0.0-rc93 failed: {tail}")
    check_version(output)
    return output
