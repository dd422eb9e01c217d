# runc-rollout's host procedure as an Ansible action: the same Python code the SSH backend runs
# (orchestrator.host.procedure), over this play's connection. The Python that runs
# ansible-playbook must have runc-rollout installed (`pip install runc-rollout`, or its wheel,
# into the controller's or the execution environment's Python).
from __future__ import annotations

from typing import Any

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):  # type: ignore[misc]
    TRANSFERS_FILES = False  # it uploads the artifact itself: no remote tmp dir (a round trip)

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = super().run(tmp, task_vars)
        try:
            from orchestrator.backends.ansible.action import run_task
        except ImportError as error:
            result.update(
                failed=True,
                msg=f"runc_rollout needs runc-rollout in the Python that runs Ansible: {error}",
            )
            return result
        result.update(run_task(self, dict(self._task.args), task_vars or {}))
        return result
