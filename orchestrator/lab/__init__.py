"""The lab: a local fleet of real hosts (mount namespaces with their own sshd, and on "full"
hosts their own containerd and dockerd) for demos and host-side tests. See `fleet`."""

from orchestrator.errors import LabError
from orchestrator.lab.fleet import (
    DEFAULT_FIRST_ADDRESS,
    DEFAULT_INVENTORY,
    DEFAULT_STATE_DIR,
    FIRST_ADDRESS_ENV,
    STATE_DIR_ENV,
    LabDownReport,
    LabHost,
    LabHostStatus,
    LabInfo,
    check_requirements,
    default_state_dir,
    format_down,
    format_status,
    format_up,
    lab_down,
    lab_memory,
    lab_reset,
    lab_status,
    lab_up,
)

__all__ = [
    "DEFAULT_FIRST_ADDRESS",
    "DEFAULT_INVENTORY",
    "DEFAULT_STATE_DIR",
    "FIRST_ADDRESS_ENV",
    "STATE_DIR_ENV",
    "LabDownReport",
    "LabError",
    "LabHost",
    "LabHostStatus",
    "LabInfo",
    "check_requirements",
    "default_state_dir",
    "format_down",
    "format_status",
    "format_up",
    "lab_down",
    "lab_memory",
    "lab_reset",
    "lab_status",
    "lab_up",
]
