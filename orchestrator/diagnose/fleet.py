"""How the diagnostics (`facts`, `audit`, `unstick`) reach a fleet, whichever backend: one
`HostTask` per host, each host's result or the error that stopped it (like `run_on_hosts`).

Over SSH, `onhost.SshFleet` runs `onhost.diagnose_host` on the executor's sessions; with
`--executor ansible`, `backends/ansible/diagnostics.py` runs it as the `runc_rollout` action of an
ansible-runner job, over Ansible's connection. Either way the host runs the same scripts of
`hostside/`, sent the same way, and the controller judges the same results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar

from pydantic import BaseModel

from orchestrator.models import HostTask, SshTarget

Result = TypeVar("Result", bound=BaseModel)


class DiagnosticFleet(Protocol):
    def run(
        self,
        targets: Mapping[str, SshTarget],
        tasks: Mapping[str, HostTask],
        result: type[Result],
    ) -> dict[str, Result | Exception]:
        """`tasks[name]` on each host of `targets`: its `result`, or the error that stopped it,
        in the order of `targets`."""
        ...
