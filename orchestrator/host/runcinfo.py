"""What a runc binary says about itself: pure parsers of `runc --version` output."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuncVersion:
    version: str | None
    commit: str | None


def parse_runc_version(output: str) -> RuncVersion:
    """Parse `runc --version`, e.g. 'runc version 1.1.5+ds1' and 'commit: 1.1.5+ds1-1+deb12u1'."""
    version = commit = None
    for line in output.splitlines():
        key, _, value = line.strip().partition(" version ")
        if key == "runc" and value and version is None:
            version = value.strip()
        elif line.strip().startswith("commit:") and commit is None:
            commit = line.split(":", 1)[1].strip() or None
    return RuncVersion(version, commit)
