"""Shared fixtures. `lab`: one small lab fleet for the whole session (real sshd, dockerd,
containerd in mount namespaces on loopback addresses); tests that use it are marked `lab`
automatically and are skipped, with the reason, where the lab cannot run (not Linux, not root,
packages missing). The lab handle (`LabFleet`, `start_lab`) lives in
`orchestrator/lab/handle.py`; it is imported here for the tests that name it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

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
    lab.reset()
    yield lab
    lab.reset()


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A candidate runc: a copy of Debian's."""
    path = tmp_path / "artifact" / "runc"
    path.parent.mkdir()
    shutil.copy("/usr/sbin/runc", path)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses a lab (the `lab` fixture, or a file's own `..._lab` fixture) gets
    the `lab` marker (`-m 'not lab'` skips them). Files with lab tests run first, in their
    order: on several workers (scripts/test.sh) the long ones start at once and the quick
    files fill the gaps at the end."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if any(name == "lab" or name.endswith("_lab") for name in names):
            item.add_marker(pytest.mark.lab)
    lab_files = {item.path for item in items if item.get_closest_marker("lab")}
    items.sort(key=lambda item: item.path not in lab_files)
