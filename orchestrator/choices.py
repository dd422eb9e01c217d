"""The enums and defaults the command line's options name, importable without pydantic or rich:
every command's options are built for `--help` and `--version` too, so what they name must cost
nothing to import. `orchestrator.models` and `orchestrator.view` re-export them."""

from __future__ import annotations

from enum import StrEnum

PIPE_USER_PAGES_SOFT_DEFAULT = 16384  # pages: the kernel's default fs.pipe-user-pages-soft
HOST_CHECK_TIMEOUT = 60.0  # seconds
GATE_TIMEOUT = 300.0  # seconds
DEFAULT_CONCURRENCY = 16  # hosts at once, every command's; Ansible's `forks` is 5


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


class ExecutorName(StrEnum):
    """How hosts are worked on: the built-in SSH backend, or Ansible through ansible-runner."""

    ssh = "ssh"
    ansible = "ansible"


class PushName(StrEnum):
    """How the controller sends the new runc to a host: gzip through its shell, or plain SFTP."""

    gzip = "gzip"
    plain = "plain"
