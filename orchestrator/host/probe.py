"""The incident probe: the rc93 hang's own trigger, run against one runc on one host.

A pipe holder (`hostside/pipe_holder.sh`, POSIX sh) puts a probe uid, one nothing else on the host
uses, over `fs.pipe-user-pages-soft`; a no-new-privileges container then runs `true` as that uid
with a seccomp profile that compiles well over 8 KiB (`trigger.seccomp_profile`). runc
1.0.0-rc93 hangs in pipe_write exporting that program into its 2-page pipe; a fixed runc starts
the container at once. The sysctl is never touched. Three ways to start the container, whichever
the host has:

- `docker`: `docker run` of the configured verification image (dockerd runs the runtime's runc);
- `containerd`: `ctr run --runc-binary RUNC --config SPEC` with a rootfs made on the host;
- `bundle`: `RUNC run` of an OCI bundle with that rootfs (neither daemon runs).

The rootfs made on the host holds only its own `true` and the libraries `ldd` names, so no image
is needed. On a hang the probe kills exactly its own processes (every process of the probe uid,
and the runtime processes naming its container), removes the container and releases the pipes:
the holder's stdin is a FIFO this script holds open, so the pipes go when the script ends, however
it ends (a dropped connection too), and the holder has a lifetime of its own besides.

The script prints `key=value` lines (`probe=passed|hung|failed|undecidable|unavailable`) and exits
0 only when the probe passed. Nothing here does I/O.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from orchestrator.host import trigger
from orchestrator.host.commands import HostCommand, parse_kv
from orchestrator.host.scripts import hostside_script, render
from orchestrator.models import ProbeMethod, ProbeOutcome, ProbeResult

PROBE_PREFIX = "runc-rollout-probe-"
CONTAINERD_NAMESPACE = "runc-rollout"
EXIT_PROBE_FAILED = 70  # the probe did not pass: see its probe= line
HOLDER_READY_SECONDS = 60  # how long the holder may take to create its pipes
# Where each run draws its probe uids: far above login uids, the usual subordinate-id ranges
# (/etc/subuid) and systemd's dynamic users, below 2^31 (some tools take uids as signed), and
# below the lab's per-host uids (`lab.hostdef.probe_uid`), which random ones never meet.
PROBE_UID_RANGE = range(2_000_000_000, 2_147_000_000)
PROBE_UID_CANDIDATES = 8  # the probe takes the first free one: no user, no group, no process


def oci_spec() -> dict[str, Any]:
    """A minimal OCI runtime spec: no-new-privileges, no capabilities, its own namespaces (no
    network), running the rootfs's `/true`. The host script fills in its three blanks (no JSON
    tool needed there): the probe uid, the rootfs (absolute, as `ctr run --config` wants it) and
    the seccomp profile of its machine."""
    namespaces = ["pid", "ipc", "uts", "mount", "network"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": "@UID@", "gid": "@UID@"},
            "args": ["/true"],
            "env": ["PATH=/usr/bin:/bin"],
            "cwd": "/",
            "noNewPrivileges": True,
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
        },
        "root": {"path": "@ROOTFS@", "readonly": True},
        "hostname": "runc-rollout-probe",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {
            "namespaces": [{"type": name} for name in namespaces],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"],
            "seccomp": "@SECCOMP@",
        },
    }


def _compact(data: object) -> str:
    return json.dumps(data, separators=(",", ":"))


@functools.cache
def constants() -> dict[str, str]:
    """The probe's parameters that are the same on every host (the playbooks bake them in)."""
    return {
        "HOLDER": trigger.holder_source(),
        "SPEC": _compact(oci_spec()),
        "PREFIX": PROBE_PREFIX,
        "NAMESPACE": CONTAINERD_NAMESPACE,
        "READY_SECONDS": str(HOLDER_READY_SECONDS),
        "EXIT_FAILED": str(EXIT_PROBE_FAILED),
    }


@functools.cache
def profile_for(machine: str) -> str:
    """The trigger's seccomp profile for a host whose `uname -m` is `machine`, as compact JSON;
    '' for a machine it has none for (the probe then says so on the host, and changes nothing).
    Only that host's own is sent: the two would double the script."""
    try:
        return _compact(trigger.seccomp_profile(trigger.architectures_for(machine)))
    except ValueError:
        return ""


def probe_uids(run_id: str) -> tuple[int, ...]:
    """The uids a run's probes try, in order: drawn from `PROBE_UID_RANGE` by the run id's hash
    (its random part makes them the run's own; a resumed run has the same, so its probe finds
    what an earlier one of the run left). No uid is public, so a tenant cannot block the probe
    by running as it; one that is busy anyway is skipped for the next."""
    uids: list[int] = []
    counter = 0
    while len(uids) < PROBE_UID_CANDIDATES:
        digest = hashlib.sha256(f"{run_id}/probe-uid/{counter}".encode()).digest()
        uid = PROBE_UID_RANGE[int.from_bytes(digest[:8], "big") % len(PROBE_UID_RANGE)]
        if uid not in uids:
            uids.append(uid)
        counter += 1
    return tuple(uids)


def probe(
    method: ProbeMethod,
    runc_path: str,
    *,
    uids: Sequence[int],
    timeout: float,
    run_id: str,
    image: str | None = None,
    holds_lock: bool,
    machine: str,
) -> HostCommand:
    """The probe of `runc_path` on one host whose `uname -m` is `machine` (`method` as chosen by
    `choose_method`), as the first of `uids` nothing on the host uses. A probe that `holds_lock`
    (apply's) also removes what an earlier probe whose connection died left."""
    params = {
        "METHOD": method,
        "TARGET": runc_path,
        "IMAGE": image or "",
        "PROBE_UIDS": " ".join(str(uid) for uid in uids),
        "RUN_ID": run_id,
        "TIMEOUT": str(int(timeout)),
        "STALE": "remove" if holds_lock else "keep",
        "MACHINE": machine,
        "PROFILE": profile_for(machine),
        **constants(),
    }
    script = render(probe_script(), **params)
    timeout += HOLDER_READY_SECONDS + 90
    return HostCommand("probe", script, timeout=timeout, params={"target": runc_path})


@functools.cache
def probe_script() -> str:
    """The probe's host script, `orchestrator/hostside/probe.sh`, without its parameters."""
    return hostside_script("probe.sh")


def choose_method(dockerd: bool, containerd: bool, image: str | None) -> ProbeMethod:
    """docker where dockerd runs and an image is configured; else containerd's own client where
    containerd runs; else an OCI bundle run by the runc itself."""
    if dockerd and image:
        return "docker"
    if containerd:
        return "containerd"
    return "bundle"


_OUTCOMES: tuple[ProbeOutcome, ...] = ("passed", "hung", "failed", "undecidable", "unavailable")
_METHODS: tuple[ProbeMethod, ...] = ("docker", "containerd", "bundle")


def parse_probe(stdout: str, exit_status: int, method: ProbeMethod | None = None) -> ProbeResult:
    """The probe's result from its output (host output: data, length-capped). `method` is what
    the caller asked for; the script's own `method=` line wins."""
    values = parse_kv(stdout)
    said = values.get("method")
    if said in _METHODS:
        method = said
    outcome = values.get("probe", "")
    seconds_text = values.get("seconds")
    try:
        seconds = None if seconds_text is None else float(seconds_text)
    except ValueError:
        seconds = None
    if outcome not in _OUTCOMES or (outcome == "passed") != (exit_status == 0):
        return ProbeResult(
            outcome="failed",
            method=method,
            seconds=seconds,
            detail=f"probe script ended with exit {exit_status} and no result",
        )
    detail = values.get("reason") or values.get("wchan") or ""
    return ProbeResult(
        outcome=outcome,
        method=method,
        seconds=seconds,
        detail=detail[:200],
        holder=values.get("probe_holder", "")[:200] or None,
    )
