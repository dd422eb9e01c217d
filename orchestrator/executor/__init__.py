"""Executors: run commands and put files on hosts (`base` is the interface, `ssh` a backend)."""

from orchestrator.executor.base import (
    AuthenticationFailed,
    CommandResult,
    CommandTimeout,
    ConnectionLost,
    Executor,
    ExecutorError,
    HostKeyRejected,
    HostSession,
    HostUnreachable,
    run_on_hosts,
)

__all__ = [
    "AuthenticationFailed",
    "CommandResult",
    "CommandTimeout",
    "ConnectionLost",
    "Executor",
    "ExecutorError",
    "HostKeyRejected",
    "HostSession",
    "HostUnreachable",
    "run_on_hosts",
]
