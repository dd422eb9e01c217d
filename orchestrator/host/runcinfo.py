"""What a binary says about itself: pure parsers of `--version` output.

A binary is runc only when its output starts with runc's own block ("runc version X", then
"commit: ..." and the rest up to a blank line). NVIDIA's Container Runtime prints its own banner
and then the whole block of the runc it wraps; crun prints a `commit:` line of its own: neither is
runc, whatever their output contains further down.
"""

from __future__ import annotations

from dataclasses import dataclass

BANNER_MAX = 120  # characters of a banner kept (a host's output is data, and bounded)


@dataclass(frozen=True)
class RuncVersion:
    version: str | None
    commit: str | None


def _own_block(output: str) -> list[str]:
    """The first block of `output`: its lines from the first non-blank one to the next blank."""
    block: list[str] = []
    for line in output.splitlines():
        if line.strip():
            block.append(line.strip())
        elif block:
            break
    return block


def parse_runc_version(output: str) -> RuncVersion:
    """Parse `runc --version`, e.g. 'runc version 1.1.5+ds1' and 'commit: 1.1.5+ds1-1+deb12u1';
    (None, None) unless the output starts with runc's own block."""
    block = _own_block(output)
    key, _, value = block[0].partition(" version ") if block else ("", "", "")
    if key != "runc" or not value.strip():
        return RuncVersion(None, None)
    commits = (line.split(":", 1)[1].strip() for line in block if line.startswith("commit:"))
    commit = next(commits, "")
    return RuncVersion(value.strip(), commit or None)


def runtime_banner(output: str) -> str | None:
    """The first line a binary printed for `--version` (what it says it is), bounded."""
    block = _own_block(output)
    return block[0][:BANNER_MAX] if block else None
