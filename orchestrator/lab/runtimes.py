"""Docker default runtimes a full lab host can have besides plain runc, as text (pure).

- `nvidia`: a GPU node as NVIDIA's documentation sets one up (`daemon.json`: runtime `nvidia` at
  the shim's path, `default-runtime: nvidia`). The shim stands in for NVIDIA's Container Runtime
  (nvidia-container-toolkit 1.12) and does what that one does: `--version` prints its own banner
  and then the wrapped runtime's whole output; it reads `[nvidia-container-runtime] runtimes` from
  /etc/nvidia-container-runtime/config.toml (default `["docker-runc", "runc"]`) and execs the
  first found on its PATH with its own arguments; on `create` it first adds its prestart hook to
  the bundle's config.json. Lab hosts are Debian with python3, so the shim is a Python script; its
  hook, instead of mounting GPU driver files, logs the container it ran for (HOOK_LOG).
- `cri`: Docker's default runtime is runc (/usr/local/sbin/runc, on PATH) and containerd's CRI
  plugin is on, its runc pinned by `BinaryName` to another copy of rc93 (CRI_RUNC), as on a
  Kubernetes node where kubelet's runc and Docker's are different files.
- `crun`: Debian's crun as the default runtime (a runtime that wraps no runc). crun refuses a
  hybrid cgroup layout, so the host's namespace hides the empty cgroup2 mount under a tmpfs
  (CGROUP2_MOUNT) and is pure cgroup v1, as CentOS 7 is. Its /proc/sys/net stays writable
  (NET_SYSCTLS): the host's own processes share the machine's network namespace and write
  nothing there (dockerd runs without bridge, iptables and IP forwarding).
- `runsc`: Debian's runsc (gVisor) as the default runtime, another runtime that wraps no runc.
- `mountns`: Docker's default runtime is plain runc, but dockerd and containerd run in a mount
  namespace of their own, not the one SSH sessions get, as a systemd unit with
  `ProtectSystem=`/`PrivateTmp=` or Ubuntu's snap-packaged docker runs them: a child of the
  host's namespace (DAEMON_NS_SCRIPT) where /usr/local/sbin, the runc's folder, is read-only
  and /tmp is private. The runc there is the same file as the one SSH sessions see.
"""

from __future__ import annotations

from typing import Any

from orchestrator.lab.records import LabRuntime

SHIM = "/usr/local/bin/nvidia-container-runtime"
HOOK = "/usr/local/bin/nvidia-container-runtime-hook"
HOOK_LOG = "/var/log/nvidia-container-runtime-hook.log"  # one line per container: "prestart ID"
NVIDIA_CONFIG_DIR = "/etc/nvidia-container-runtime"
CRUN = "/usr/bin/crun"
RUNSC = "/usr/bin/runsc"  # Debian 12's runsc package (gVisor 20221219)
CRI_RUNC = "/usr/local/bin/runc"
CGROUP2_MOUNT = "/sys/fs/cgroup/unified"
# crun writes the net sysctls Docker puts in every spec (ip_unprivileged_port_start,
# ping_group_range) in the container's network namespace, but through the /proc it starts with,
# where runc uses the container's own: on a crun host this directory stays writable.
NET_SYSCTLS = "/proc/sys/net"
# `mountns`: what makes the daemons' namespace (made by `unshare --mount --propagation private`)
# differ from the host's, as ProtectSystem= and PrivateTmp= would; then it only holds it open.
DAEMON_NS_READONLY = "/usr/local/sbin"
DAEMON_NS_SCRIPT = (
    f"mount -o remount,bind,ro {DAEMON_NS_READONLY} && mount -t tmpfs -o mode=1777 tmpfs /tmp "
    "&& exec sleep infinity"
)

SHIM_TEXT = f'''#!/usr/bin/python3
"""runc-rollout lab: NVIDIA Container Runtime's documented behaviour (orchestrator/lab)."""
import json, os, shutil, sys, tomllib

args = sys.argv[1:]
try:
    with open("{NVIDIA_CONFIG_DIR}/config.toml", "rb") as handle:
        config = tomllib.load(handle)
except FileNotFoundError:
    config = {{}}
names = config.get("nvidia-container-runtime", {{}}).get("runtimes", ["docker-runc", "runc"])
runtime = next((found for name in names if (found := shutil.which(name))), None)
if runtime is None:
    sys.exit("nvidia-container-runtime: none of " + ", ".join(names) + " found on PATH")
if "--version" in args:
    print("NVIDIA Container Runtime version 1.12.1-lab", flush=True)
    print("commit: lab\\nspec: 1.0.2-dev\\n", flush=True)
elif "create" in args:
    bundle = "."
    for index, arg in enumerate(args):
        if arg in ("--bundle", "-b") and index + 1 < len(args):
            bundle = args[index + 1]
        elif arg.startswith("--bundle="):
            bundle = arg.partition("=")[2]
    path = os.path.join(bundle, "config.json")
    with open(path) as handle:
        spec = json.load(handle)
    prestart = spec.setdefault("hooks", {{}}).setdefault("prestart", [])
    if not any(hook.get("path") == "{HOOK}" for hook in prestart):
        prestart.append({{"path": "{HOOK}", "args": ["{HOOK}", "prestart"]}})
    with open(path, "w") as handle:
        json.dump(spec, handle)
os.execv(runtime, [runtime, *args])
'''

HOOK_TEXT = f"""#!/bin/sh
# runc-rollout lab: NVIDIA's prestart hook stand-in: logs the container it ran for.
id=$(sed -n 's/.*"id" *: *"\\([^"]*\\)".*/\\1/p')
printf 'prestart %s\\n' "$id" >> {HOOK_LOG}
"""

NVIDIA_CONFIG_TEXT = """# runc-rollout lab: as nvidia-container-toolkit installs it
disable-require = false

[nvidia-container-cli]
ldconfig = "@/sbin/ldconfig"

[nvidia-container-runtime]
runtimes = ["docker-runc", "runc"]
mode = "auto"
"""


def docker_runtime(runtime: LabRuntime) -> dict[str, Any]:
    """The daemon.json keys that make `runtime` Docker's default."""
    if runtime == "nvidia":
        return {"runtimes": {"nvidia": {"path": SHIM}}, "default-runtime": "nvidia"}
    if runtime == "crun":
        return {"runtimes": {"crun": {"path": CRUN}}, "default-runtime": "crun"}
    if runtime == "runsc":
        # The lab hosts share the machine's network namespace: runsc sets up no network.
        runsc = {"path": RUNSC, "runtimeArgs": ["--network=none"]}
        return {"runtimes": {"runsc": runsc}, "default-runtime": "runsc"}
    return {}
