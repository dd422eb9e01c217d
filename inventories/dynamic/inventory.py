#!/usr/bin/env python3
"""A tiny dynamic inventory for tests: six nodes in two zones, printed as static JSON.

Ansible runs it with `--list` (groups plus `_meta.hostvars`) or `--host NAME`.
Every name is under .invalid (RFC 2606): nothing here is ever contacted.
"""

import json
import sys

HOSTVARS = {
    "edge-a1.dyn.invalid": {"ansible_host": "edge-a1.mgmt.dyn.invalid"},
    "edge-a2.dyn.invalid": {},
    "edge-a3.dyn.invalid": {"runc_rollout_skip": "retiring this week"},
    "edge-b1.dyn.invalid": {"ansible_port": 2222, "ansible_user": "ops"},
    "edge-b2.dyn.invalid": {},
    "edge-b3.dyn.invalid": {},
}

INVENTORY = {
    "all": {"vars": {"ansible_user": "core"}},
    "zone_a": {
        "hosts": ["edge-a1.dyn.invalid", "edge-a2.dyn.invalid", "edge-a3.dyn.invalid"],
        "vars": {"zone": "zone-a"},
    },
    "zone_b": {
        "hosts": ["edge-b1.dyn.invalid", "edge-b2.dyn.invalid", "edge-b3.dyn.invalid"],
        "vars": {"zone": "zone-b"},
    },
    "canary": {"hosts": ["edge-a1.dyn.invalid"]},
    "edge": {"children": ["zone_a", "zone_b"], "vars": {"container_runtime": "docker"}},
    "_meta": {"hostvars": HOSTVARS},
}


def main() -> int:
    if sys.argv[1:] == ["--list"]:
        print(json.dumps(INVENTORY, indent=2))
    elif len(sys.argv) == 3 and sys.argv[1] == "--host":
        print(json.dumps(HOSTVARS.get(sys.argv[2], {})))
    else:
        print("usage: inventory.py --list | --host NAME", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
