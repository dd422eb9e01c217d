"""The package as a user installs it: a wheel, without the dev extras, into a fresh virtual
environment made from Debian's own Python, then the console script run as a process."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLEET40 = ROOT / "inventories" / "fleet40" / "hosts.ini"
DEBIAN_PYTHON = Path("/usr/bin/python3")


def _run(argv: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [str(arg) for arg in argv], capture_output=True, text=True, timeout=600, **kwargs
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`runc-rollout` from a wheel installed alone (no dev extras) in a fresh venv."""
    if not DEBIAN_PYTHON.exists() or _run([DEBIAN_PYTHON, "-m", "venv", "--help"]).returncode:
        pytest.skip("needs Debian's /usr/bin/python3 with python3-venv")
    base = tmp_path_factory.mktemp("install")
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", base, ROOT])
    assert built.returncode == 0, built.stderr
    (wheel,) = base.glob("runc_rollout-*.whl")
    venv = base / "venv"
    assert _run([DEBIAN_PYTHON, "-m", "venv", venv]).returncode == 0
    pip: list[str | Path] = [
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    done = _run([*pip, wheel])
    assert done.returncode == 0, done.stderr
    return venv / "bin" / "runc-rollout"


def test_wheel_alone_runs_help_version_and_plan(installed: Path, tmp_path: Path) -> None:
    helped = _run([installed, "--help"])
    assert helped.returncode == 0, helped.stderr
    assert "Exit codes" in helped.stdout
    version = _run([installed, "--version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("runc-rollout ")

    artifact = tmp_path / "runc"
    artifact.write_text("#!/bin/sh\nprintf 'runc version 1.1.12\\ncommit: v1.1.12-0-g51d5e94\\n'\n")
    artifact.chmod(0o755)
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    out = tmp_path / "plan.json"
    argv: list[str | Path] = [
        installed,
        "plan",
        "-i",
        FLEET40,
        "--runc",
        artifact,
        "--sha256",
        digest,
        "-o",
        out,
    ]
    planned = _run([*argv, "--format", "json"], cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(out.read_text())
    assert plan["artifact"]["sha256"] == digest
    assert sum(len(wave["hosts"]) for wave in plan["waves"]) > 0


def test_the_installed_package_imports_nothing_from_the_checkout(installed: Path) -> None:
    """The venv's `orchestrator` is the wheel's, not this source tree on sys.path."""
    python = installed.parent / "python"
    where = _run([python, "-c", "import orchestrator; print(orchestrator.__file__)"], cwd="/")
    assert where.returncode == 0, where.stderr
    assert "site-packages" in where.stdout and str(ROOT) not in where.stdout
