"""What a binary says about itself: runc only when its `--version` starts with runc's own block.

The outputs are real: NVIDIA Container Runtime v1.12.1 (built from NVIDIA's source) wrapping
Debian's runc, Debian bookworm's crun 1.8.1 and runsc (gVisor) packages, Debian's runc and the
lab's rc93 build.
"""

from __future__ import annotations

import pytest

from orchestrator.host.runcinfo import RuncVersion, parse_runc_version, runtime_banner

DEBIAN_RUNC = """runc version 1.1.5+ds1
commit: 1.1.5+ds1-1+deb12u1
spec: 1.0.2-dev
go: go1.19.8
libseccomp: 2.5.4
"""
RC93 = """runc version 1.0.0-rc93
commit: 12644e614e25b05da6fd08a38ffa0cfe1903fdec
spec: 1.0.2-dev
go: go1.19.8
libseccomp: 2.5.4
"""
# NVIDIA's shim prints its own banner, then the whole version block of the runc it wraps.
NVIDIA = "NVIDIA Container Runtime version unknown\nspec: 1.0.2-dev\n\n" + DEBIAN_RUNC
CRUN = """crun version 1.8.1
commit: f8a096be060b22ccd3d5f3ebe44108517fbf6c30
rundir: /run/crun
spec: 1.0.0
+SYSTEMD +SELINUX +APPARMOR +CAP +SECCOMP +EBPF +YAJL
"""
RUNSC = "runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (DEBIAN_RUNC, RuncVersion("1.1.5+ds1", "1.1.5+ds1-1+deb12u1")),
        (RC93, RuncVersion("1.0.0-rc93", "12644e614e25b05da6fd08a38ffa0cfe1903fdec")),
        ("\n" + RC93, RuncVersion("1.0.0-rc93", "12644e614e25b05da6fd08a38ffa0cfe1903fdec")),
        ("runc version 1.1.12\n", RuncVersion("1.1.12", None)),
    ],
)
def test_runc_is_read_from_its_own_block(output: str, expected: RuncVersion) -> None:
    assert parse_runc_version(output) == expected
    assert runtime_banner(output) == f"runc version {expected.version}"


@pytest.mark.parametrize(
    ("output", "banner"),
    [
        (NVIDIA, "NVIDIA Container Runtime version unknown"),
        (CRUN, "crun version 1.8.1"),
        (RUNSC, "runsc version 0.0~20221219.0"),
        ("Usage: something else\nrunc version 1.1.5\n", "Usage: something else"),
        ("", None),
    ],
)
def test_anything_that_does_not_start_as_runc_is_not_runc(output: str, banner: str) -> None:
    """NVIDIA's shim contains a whole runc block, crun a `commit:` line: neither is runc."""
    assert parse_runc_version(output) == RuncVersion(None, None)
    assert runtime_banner(output) == banner


def test_the_commit_is_runc_blocks_not_a_later_one() -> None:
    text = "runc version 1.1.5\nspec: 1.0.2-dev\n\nsomething version 2\ncommit: other\n"
    assert parse_runc_version(text) == RuncVersion("1.1.5", None)


def test_a_banner_is_bounded_and_single_line() -> None:
    banner = runtime_banner("x" * 500 + "\nmore")
    assert banner is not None and len(banner) <= 120 and "\n" not in banner
