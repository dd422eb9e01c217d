"""The plan's JSON written piece by piece: the same bytes pydantic writes whole, and the same
plan_hash, whatever the chunk size and whatever the plan holds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orchestrator import models
from orchestrator.inventory.read import load_inventory
from orchestrator.models import Artifact, HostBefore, Plan, Skipped, WaveOptions
from orchestrator.plan import planner
from orchestrator.plan.planner import build_plan
from orchestrator.plan.render import plan_json

FLEET40 = Path(__file__).resolve().parents[2] / "inventories" / "fleet40"
ARTIFACT = Artifact(path="/x/runc", sha256="a" * 64, size=1, version="1.1.12")
OPTIONS = [
    WaveOptions(),
    WaveOptions(waves=("1", "10%", "25%"), domain_key="zone", max_per_domain="2", seed=7),
    WaveOptions(waves=("3",), max_failures="50%", probe=False, verify_image="busybox:1"),
]


def whole(plan: Plan, indent: int | None) -> bytes:
    return plan.__pydantic_serializer__.to_json(plan, indent=indent)


def odd_plan() -> Plan:
    """A plan whose text holds what the pieces are cut at: keys named waves and hosts, empty
    arrays in strings, a wave without hosts, a quote and non-ASCII text."""
    plan = build_plan(load_inventory([FLEET40]), ARTIFACT, OPTIONS[1])
    first, *rest = plan.waves
    empty = first.model_copy(update={"hosts": [], "domains": {"waves": 0}, "note": '"hosts":[]'})
    return plan.model_copy(
        update={
            "waves": [first, empty, *rest],
            "domains": {"waves": 1, 'zo"ne\n': 2, "hosts": 3},
            "skipped": [Skipped(name="waves", reason='"waves": [] é')],
            "notes": ['"waves":[]', "\u2028"],
            "inventory_readers": {},
        }
    )


def plans() -> list[Plan]:
    inventory = load_inventory([FLEET40])
    before = {
        name: HostBefore(runc_path="/usr/bin/runc", runc_sha256="a" * 64, runc_version="1.1.12")
        for name in list(inventory.hosts)[:5]
    }
    built = [build_plan(inventory, ARTIFACT, options, before) for options in OPTIONS]
    return [*built, odd_plan(), built[0].model_copy(update={"waves": []})]


@pytest.mark.parametrize("chunk", [1, 3, 2000])
def test_pieces_are_the_bytes_pydantic_writes(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "HOSTS_PER_CHUNK", chunk)
    for plan in plans():
        for indent in (None, 2, 4):
            assert b"".join(plan.json_chunks(indent=indent)) == whole(plan, indent)
        body = plan.model_dump_json(exclude={"plan_id", "plan_hash"}).encode()
        assert b"".join(plan.json_chunks(body=True)) == body
        # plan_hash is what it always was: a plan written before the pieces still checks out.
        assert plan.computed_hash() == hashlib.sha256(body).hexdigest()


def test_plan_file_reads_back_with_its_hash() -> None:
    for plan in plans():
        sealed = plan.sealed()
        loaded = Plan.model_validate_json(plan_json(sealed))
        assert loaded == sealed
        assert loaded.computed_hash() == sealed.plan_hash


def test_hosts_validated_in_chunks_make_the_same_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = load_inventory([FLEET40])
    expected = [build_plan(inventory, ARTIFACT, options) for options in OPTIONS]
    monkeypatch.setattr(planner, "HOSTS_PER_CHUNK", 3)
    assert [build_plan(inventory, ARTIFACT, options) for options in OPTIONS] == expected


def test_hosts_that_share_variables_keep_their_own_address(tmp_path: Path) -> None:
    """Connection settings are worked out once per dict of variables; the address is still
    each host's name unless the variables give one."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[a]\nh1 ansible_user=u\nh2 ansible_user=u\n[b]\nj1\nj2\n[b:vars]\nansible_host=10.0.0.9\n"
    )
    plan = build_plan(load_inventory([inventory]), ARTIFACT, WaveOptions(waves=("100%",)))
    addresses = {host.name: (host.ssh.address, host.ssh.user) for host in plan.hosts}
    assert addresses == {
        "h1": ("h1", "u"),
        "h2": ("h2", "u"),
        "j1": ("10.0.0.9", None),
        "j2": ("10.0.0.9", None),
    }
