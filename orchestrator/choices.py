"""The enums and defaults the command line's options name, importable without pydantic or rich:
every command's options are built for `--help` and `--version` too, so what they name must cost
nothing to import. `orchestrator.models` and `orchestrator.view` re-export them."""

from __future__ import annotations

from enum import StrEnum

PIPE_USER_PAGES_SOFT_DEFAULT = 16384  # pages: the kernel's default fs.pipe-user-pages-soft
HOST_CHECK_TIMEOUT = 60.0  # seconds
GATE_TIMEOUT = 300.0  # seconds


class FailOn(StrEnum):
    """`--fail-on`: the lowest severity that makes `audit` exit 1; `none` never does."""

    none = "none"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class SummaryFormat(StrEnum):
    text = "text"
    markdown = "markdown"
