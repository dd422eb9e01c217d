"""Every data model of runc-rollout, in one place.

All models reject unknown fields, so a typo in a plan file or a facts file is an error, not a silent
default. The plan is what a reviewer approves: `plan_hash` covers its whole body.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SHA256_PATTERN = r"^[0-9a-f]{64}$"
PIPE_USER_PAGES_SOFT_DEFAULT = 16384


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# ---------------------------------------------------------------------------------------------
# Inventory


class InventoryHost(Model):
    """A host with its variables merged the way Ansible merges them."""

    name: str
    groups: tuple[str, ...] = ()  # every group it belongs to, ancestors included, `all` excluded
    vars: dict[str, Any] = Field(default_factory=dict)

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host", self.name))

    @property
    def port(self) -> int:
        return int(self.vars.get("ansible_port", 22))

    @property
    def user(self) -> str | None:
        user = self.vars.get("ansible_user")
        return None if user is None else str(user)


class InventoryGroup(Model):
    name: str
    hosts: tuple[str, ...] = ()  # direct members only
    children: tuple[str, ...] = ()
    vars: dict[str, Any] = Field(default_factory=dict)


class Inventory(Model):
    sources: tuple[str, ...]
    hosts: dict[str, InventoryHost]  # in the order Ansible would list them
    groups: dict[str, InventoryGroup]


# ---------------------------------------------------------------------------------------------
# Plan inputs


class Artifact(Model):
    """The runc binary to roll out."""

    path: str
    sha256: str = Field(pattern=SHA256_PATTERN)
    size: int
    version: str | None = None  # e.g. "1.1.5+ds1", from `runc --version` when it runs here
    commit: str | None = None
    version_output: str | None = None


class WaveOptions(Model):
    """What the operator asked for; recorded in the plan so `apply` enforces exactly this."""

    waves: tuple[str, ...] = ("1", "10%", "50%", "100%")
    domain_key: str | None = None
    max_per_domain: str | None = None
    max_failures: str = "0"
    bake_seconds: float = 0.0
    pause_after: int | None = None
    seed: int | None = None
    limit: str | None = None
    sysctl_target: int = PIPE_USER_PAGES_SOFT_DEFAULT


# ---------------------------------------------------------------------------------------------
# Facts about a host, as far as the plan needs them


class HostBefore(Model):
    """A host's state when the plan was made; `apply` refuses a host that no longer matches."""

    runc_path: str
    runc_sha256: str = Field(pattern=SHA256_PATTERN)
    runc_version: str | None = None
    sysctl_runtime: int | None = None


class SshTarget(Model):
    """How to reach a host, taken from the inventory. Never holds a password."""

    address: str
    port: int = 22
    user: str | None = None
    private_key_file: str | None = None
    known_hosts_file: str | None = None
    become: bool = False


# ---------------------------------------------------------------------------------------------
# The plan

HostAction = Literal["swap", "noop"]


class PlannedHost(Model):
    name: str
    domain: str
    action: HostAction = "swap"
    reason: str | None = None  # why a host is noop
    ssh: SshTarget
    before: HostBefore | None = None


class Wave(Model):
    index: int
    hosts: list[PlannedHost]
    max_failures: int  # more failed or unreachable hosts than this halts the rollout
    domains: dict[str, int]  # hosts of each failure domain in this wave
    note: str | None = None  # why the wave is smaller than asked or was added


class Skipped(Model):
    name: str
    reason: str


class Plan(Model):
    schema_version: Literal[1] = 1
    plan_id: str
    plan_hash: str = Field(pattern=SHA256_PATTERN)
    inventory: tuple[str, ...]
    artifact: Artifact
    options: WaveOptions
    waves: list[Wave]
    skipped: list[Skipped]
    domains: dict[str, int]  # selected hosts per failure domain
    notes: list[str] = Field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The reviewed content: everything but the fields derived from it."""
        return self.model_dump(mode="json", exclude={"plan_id", "plan_hash"})

    def computed_hash(self) -> str:
        return canonical_hash(self.body())

    @property
    def hosts(self) -> list[PlannedHost]:
        return [host for wave in self.waves for host in wave.hosts]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
