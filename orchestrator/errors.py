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
    PAUSED = 5  # paused (for promotion, or outside the maintenance windows): `resume` later
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


class JournalWriteFailed(RolloutError):
    """The run's journal could not be written (a full or failing disk): the run stops there;
    each host in flight keeps its own record of how far it got, and `resume` goes on."""


class UnreachableAtPlan(RolloutError):
    """`plan --gather`: selected hosts whose facts could not be gathered (exit 1, no plan
    written) unless the operator allows planning without them."""


class ExecutorError(RolloutError):
    """Something went wrong talking to one host."""

    def __init__(self, host: str, address: str, message: str) -> None:
        super().__init__(f"{host} ({address}): {message}")
        self.host = host
        self.address = address
        self.detail = message


class HostUnreachable(ExecutorError):
    """No session could be opened (transient errors are retried first); the host is unchanged."""


class HostKeyRejected(HostUnreachable):
    """The host's key is unknown or differs from known_hosts; never retried, nothing was run."""


class AuthenticationFailed(HostUnreachable):
    """The host refused our credentials; never retried, nothing was run."""


class ConnectionLost(ExecutorError):
    """The connection dropped during a command or transfer: its effect on the host is unknown."""


class CommandTimeout(ExecutorError):
    """A command ran past its timeout; it was killed on the host."""

    def __init__(self, host: str, address: str, command: str, timeout: float) -> None:
        super().__init__(host, address, f"command timed out after {timeout:g}s: {command}")
        self.command = command
        self.timeout = timeout


class FactsError(RolloutError):
    """A host's facts could not be gathered or do not say what is needed."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
        self.detail = message


class LabError(RolloutError):
    """The lab could not be brought up or down (exit 1); the message says what to do."""
