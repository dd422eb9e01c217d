"""The lab's defaults, importable without the lab itself (the CLI's options name them)."""

from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/runc-rollout-lab")
STATE_DIR_ENV = "RUNC_ROLLOUT_LAB_DIR"
FIRST_ADDRESS_ENV = "RUNC_ROLLOUT_LAB_FIRST_ADDRESS"
DEFAULT_INVENTORY = Path("inventories/lab/hosts.yml")
DEFAULT_FIRST_ADDRESS = "127.0.0.11"
DEFAULT_HOSTS = 4
DEFAULT_FULL = 2
DEFAULT_CONTAINERD = 0
