"""Shared fixtures. `lab`: one small lab fleet for the whole session (real sshd, dockerd,
containerd in mount namespaces on loopback addresses); `no_python_lab` another, for the files
whose hosts must not run Python; tests that use a lab are marked `lab` automatically and are
skipped, with the reason, where the lab cannot run (not Linux, not root, packages missing). The
lab handle (`LabFleet`, `start_lab`) lives in `orchestrator/lab/handle.py`; it is imported here
for the tests that name it. Under pytest-xdist (scripts/test.sh) the files are handed out in the
order sorted here, the files sharing a lab other than `lab` together."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from xdist.remote import Producer  # type: ignore[import-untyped]
from xdist.scheduler import LoadFileScheduling  # type: ignore[import-untyped]

from orchestrator.lab.fleet import lab_down
from orchestrator.lab.handle import (
    HANGING_RUNC,
    RUNC_ROLLOUT,
    LabFleet,
    NoFreeAddresses,
    lab_unavailable,
    start_lab,
)
from orchestrator.lab.records import LabRuntime

# A suite started in the background by a non-interactive shell inherits SIGINT ignored, and so
# would every `apply` a test interrupts with it (Python keeps an inherited SIG_IGN): the tests of
# Ctrl-C would see it ignored. A handler of our own is reset to the default in each child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

__all__ = ["HANGING_RUNC", "RUNC_ROLLOUT", "LabFleet", "lab_unavailable", "start_lab"]

LAB_HOSTS = 4
LAB_FULL = 2


@contextmanager
def running_lab(
    base: Path,
    hosts: int,
    full: int,
    containerd: int = 0,
    no_python: int = 0,
    runtimes: Sequence[LabRuntime] = (),
    packaged_runc: int = 0,
    rpm_runc: int = 0,
    busybox: int = 0,
    read_only: int = 0,
) -> Iterator[LabFleet]:
    """A lab of its own under `base` (`full` full hosts, the first with Docker default
    `runtimes`, then `containerd` containerd-only ones; the first `no_python` hosts without
    Python, the first `busybox` with a busybox userland, the last `read_only` with their runc's
    folder read-only), down on exit; skips the test where no
    lab can run."""
    reason = lab_unavailable()
    if reason:
        pytest.skip(f"lab unavailable: {reason}")
    inventory = base / "inventory" / "hosts.yml"
    try:
        fleet = start_lab(
            base / "state",
            inventory,
            hosts,
            full,
            containerd=containerd,
            no_python=no_python,
            runtimes=runtimes,
            packaged_runc=packaged_runc,
            rpm_runc=rpm_runc,
            busybox=busybox,
            read_only=read_only,
        )
    except NoFreeAddresses as exc:
        pytest.skip(str(exc))
    try:
        yield fleet
    finally:
        lab_down(fleet.state_dir, fleet.inventory)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    """4 hosts (lab-1/lab-2 full, in zone-a and zone-b) for the whole session; down at the end."""
    with running_lab(tmp_path_factory.mktemp("lab"), LAB_HOSTS, LAB_FULL) as fleet:
        yield fleet


@pytest.fixture
def clean_lab(lab: LabFleet) -> Iterator[LabFleet]:
    """The session's lab in the incident's state, and put back in it afterwards."""
    yield from reset_around(lab)


def reset_around(fleet: LabFleet) -> Iterator[LabFleet]:
    """`fleet` reset to the incident's state for one test, and reset again after it."""
    fleet.reset()
    yield fleet
    fleet.reset()


@pytest.fixture(scope="session")
def no_python_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabFleet]:
    """3 hosts, none of which can run Python (as a minimal CentOS 7, Flatcar or CoreOS node):
    lab-1 full, lab-2 containerd-only, lab-3 light; for the whole session (its files are one
    xdist work unit: `SHARED_LAB_FILES`), down at the end."""
    base = tmp_path_factory.mktemp("no-python-lab")
    with running_lab(base, 3, 1, containerd=1, no_python=3) as fleet:
        for host in fleet.hosts:
            ran = fleet.ssh(host, "python3 -c 'print(1)' || echo no-python")
            assert "no-python" in ran.stdout, (host.name, ran.stdout)
        yield fleet


@pytest.fixture
def clean_no_python_lab(no_python_lab: LabFleet) -> Iterator[LabFleet]:
    """`no_python_lab` in the incident's state, and put back in it afterwards."""
    yield from reset_around(no_python_lab)


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A candidate runc: a copy of Debian's."""
    path = tmp_path / "artifact" / "runc"
    path.parent.mkdir()
    shutil.copy("/usr/sbin/runc", path)
    return path


# Lab files that take longest, longest first (measured: `--durations`, summed per file): on two
# workers they start at once and the rest fills in around them. Only the order depends on it.
LONGEST_LAB_FILES = (
    "tests/run/test_faults_lab.py",
    "tests/host/test_packaged_lab.py",
    "tests/backends/test_exec_nodes_lab.py",
    "tests/run/test_runtimes_lab.py",
    "tests/host/test_hostside_lab.py",
    "tests/host/test_probe_lab.py",
)

# Files that share a session lab other than `lab`: one work unit for xdist, so that one worker
# brings that lab up once for all of them.
SHARED_LAB_FILES = {
    "tests/host/test_probe_lab.py": "no_python_lab",
    "tests/diagnose/test_unstick_lab.py": "no_python_lab",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses a lab (the `lab` fixture, or a file's own `..._lab` fixture) gets
    the `lab` marker (`-m 'not lab'` skips them). Files with lab tests run first: the longest
    (`LONGEST_LAB_FILES`) first, then the others with the most lab tests first; then the rest,
    those with the most tests first. On several workers (scripts/test.sh) the long ones start at
    once and the quick files fill the gaps at the end."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if any(name == "lab" or name.endswith("_lab") for name in names):
            item.add_marker(pytest.mark.lab)
    tests: dict[Path, int] = {}
    lab_tests: dict[Path, int] = {}
    for item in items:
        tests[item.path] = tests.get(item.path, 0) + 1
        if item.get_closest_marker("lab"):
            lab_tests[item.path] = lab_tests.get(item.path, 0) + 1
    root = Path(__file__).parent.parent

    def rank(path: Path) -> tuple[int, int, str]:
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        if name in LONGEST_LAB_FILES:
            return (0, LONGEST_LAB_FILES.index(name), name)
        if path in lab_tests:
            return (1, -lab_tests[path], name)
        return (2, -tests[path], name)

    items.sort(key=lambda item: rank(item.path))


class SharedLabScheduling(LoadFileScheduling):  # type: ignore[misc]  # xdist has no types
    """`--dist loadfile` with the files of `SHARED_LAB_FILES` one unit per shared lab."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return SHARED_LAB_FILES.get(path, path)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> object | None:
    """For `--dist loadfile` (scripts/test.sh): the files in the order sorted above (xdist would
    sort them by their number of tests, which put the long lab files, with few tests each,
    last), and the files sharing a lab on one worker."""
    if config.getoption("dist") != "loadfile":
        return None
    config.option.loadscopereorder = False
    return SharedLabScheduling(config, log)
