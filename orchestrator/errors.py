"""Exit codes and the errors that map onto them.

Every error a user can cause or meet is a `RolloutError` carrying its exit code; the CLI prints its
message as one line on stderr and exits with that code. Anything else is a bug and keeps its
traceback.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    HOST_FAILED = 1
    BAD_INPUT = 2
    BUDGET_EXCEEDED = 3
    DRIFT = 4
    INTERRUPTED = 130


class RolloutError(Exception):
    exit_code: ExitCode = ExitCode.HOST_FAILED


class BadInput(RolloutError):
    """Bad usage or input: nothing was changed anywhere."""

    exit_code = ExitCode.BAD_INPUT


class InventoryError(BadInput):
    """An inventory that cannot be read; the message names the file (and line when known)."""


class PatternError(BadInput):
    """A `--limit` pattern that names nothing or cannot be parsed."""


class ArtifactError(BadInput):
    """The runc binary to roll out is missing or does not match its checksum."""


class PlanError(BadInput):
    """A plan file that cannot be used: unreadable, malformed or edited after review."""
