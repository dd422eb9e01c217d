"""Host facts, pyinfra-style, long because the one script and its parser stay side by side:
one POSIX shell script per host, one round trip, a pure parser.

The script (`facts_script`) prints sections, each headed by a line `@@NONCE@@ KIND ARG`; the
nonce is random per call, so no file the script prints (daemon.json, record.json) can forge a
section. `parse_facts` turns that output into `HostFacts` and decides, from the raw material, which
runc the container runtime actually executes:

- Docker's default runtime (`--default-runtime`, daemon.json `default-runtime`, else `runc`): a
  named runtime resolves through daemon.json `runtimes{name:{path}}`; plain `runc` is looked up
  on the runtime's PATH.
- Without Docker, containerd's CRI `BinaryName` for its default runtime, if set.
- The runtime's PATH is dockerd's (from /proc/PID/environ), else containerd's, else systemd's
  default. Every other `runc` on that PATH is reported as shadowed.

`runc init` processes count as this host's when the session runs in the machine's initial mount
namespace; otherwise (a lab host is a mount namespace of its own) those in the session's mount
or UTS namespace, and those whose parent is. A dockerd or containerd is the host's own when it
runs as root in the session's mount namespace, or in another one that keeps the session's UTS
and PID namespaces with no container runtime among its ancestors (a snap's, a systemd unit's
with ProtectSystem= or PrivateTmp=): its configuration and runc are then read as it sees them,
through /proc/PID/root, under the same trust rules, and its runc is swapped only if it is the
very file the session sees at that path (`RuncBinary.namespace_problem`). One inside a container
is skipped, one of another user reported and ignored (its PATH, flags and binary never used).

Nothing an unprivileged user or a container could have placed is ever executed: a binary is run
(`--version`) only when it, and every directory above it, is owned by root and not group or
world writable; otherwise its version is unknown and it is never a swap target.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.errors import FactsError
from orchestrator.host import constants
from orchestrator.host.commands import HostCommand, StepResult
from orchestrator.host.runcinfo import (
    PIPE_WCHANS,
    is_runc_init,
    parse_runc_version,
    runtime_banner,
)
from orchestrator.host.scripts import hostside_script, render
from orchestrator.host.session import (
    CommandResult,
    HostSession,
    send_script,
)
from orchestrator.models import (
    DEFAULT_PACKAGE_POLICY,
    PACKAGE_NAME_PATTERN,
    BeforeRunc,
    Daemon,
    ExecutedRunc,
    HostBefore,
    HostFacts,
    Model,
    PackagedRunc,
    PackageManager,
    RuncBinary,
    RuncInit,
    SysctlSetting,
)
from orchestrator.util.fsutil import MiB
from orchestrator.util.textsafe import terminal_safe

SYSTEMD_DEFAULT_PATH = constants.SYSTEMD_PATH
RECORD_PATH = constants.RECORD
SYSCTL_DIRS = constants.SYSCTL_DIRS  # highest precedence first
SYSCTL_CONF = constants.SYSCTL_CONF  # read last, after every sysctl.d file
FACTS_TIMEOUT = 60.0
FACTS_LIMIT = 1024 * MiB  # a facts file of 100k hosts is a few hundred MB
_RUNC_RUNTIMES = ("runc", "io.containerd.runc.v2")
# NVIDIA's Container Runtime: a shim that adds its hook to the spec and execs a runtime it finds
# by its config file (read here as data), never runc itself.
NVIDIA_SHIMS = frozenset(
    {"nvidia-container-runtime", "nvidia-container-runtime.cdi", "nvidia-container-runtime.legacy"}
)
NVIDIA_BANNER = "NVIDIA Container Runtime"
NVIDIA_CONFIG = "/etc/nvidia-container-runtime/config.toml"
NVIDIA_DEFAULT_RUNTIMES = ("docker-runc", "runc")
_PATH_SOURCES: dict[str, Literal["dockerd", "containerd", "default"]] = {
    "dockerd": "dockerd",
    "containerd": "containerd",
}


def facts_script(nonce: str) -> str:
    """The facts script (`hostside/facts.sh`) for one call; `nonce` (hex) delimits its sections."""
    if not re.fullmatch(r"[0-9a-f]{8,64}", nonce):
        raise ValueError("nonce must be 8-64 lowercase hex digits")
    return render(_script_text(), NONCE=nonce, NVIDIA_CONFIG=NVIDIA_CONFIG)


@functools.cache
def _script_text() -> str:
    return hostside_script("facts.sh")


# ---------------------------------------------------------------------------------------------
# The parser


def parse_facts(host: str, output: str) -> HostFacts:
    """`HostFacts` from the output of `facts_script`. Pure; raises `FactsError` if incomplete."""
    sections = _sections(host, output)
    warnings: list[str] = []
    info = _kv(_first(sections, "host"))
    clk_tck = _int(info.get("clk_tck")) or 100
    boot_time = _int(info.get("btime")) or 0
    uid = _int(info.get("uid"))
    if uid != 0:
        warnings.append(f"facts gathered as uid {uid}: other users' processes may be hidden")

    dockerd, containerd, runc_init = _processes(sections, boot_time, clk_tck, warnings)

    runtime = _kv(_first(sections, "runtime-path"))
    path_source = _PATH_SOURCES.get(runtime.get("source", ""), "default")
    runtime_path = [
        entry for entry in runtime.get("path", SYSTEMD_DEFAULT_PATH).split(":") if entry
    ]
    if dockerd is not None and containerd is not None and dockerd.path != containerd.path:
        warnings.append(
            f"dockerd's PATH ({dockerd.path}) differs from containerd's ({containerd.path}); "
            "the shim inherits containerd's"
        )

    docker = _docker_config(sections, dockerd, warnings)
    containerd_default, containerd_runtimes = _containerd_config(sections, warnings)
    binaries = _binaries(sections)
    docker_in_play = dockerd is not None or bool(_files(sections, "docker"))
    cri = containerd_runtimes.get(containerd_default or "runc")
    name, how = _runtime_binary(
        docker if docker_in_play else None, cri, path_source, dockerd, warnings
    )
    lookup = _Lookup(runtime_path, binaries, _nvidia_runtimes(sections, warnings))
    runc, how, via, unused = lookup.executed(name, how, warnings)
    if unused is not None and docker_in_play:
        # The default wraps no runc: runc still runs where another configured path names it.
        others = [("containerd CRI BinaryName", cri)] if cri else []
        others += [(f"Docker runtime {n!r}", path) for n, path in docker.runtimes.items()]
        for source, configured in others:
            found = lookup.executed(configured, source, [])[0]
            if found is not None and found.version is not None:
                warnings.append(f"{unused}; runc is still used by {source}")
                runc, how, via, unused = found, f"{source} ({unused})", None, None
                break
    if runc is None and unused is None:
        warnings.append(f"no {name} found ({how}; PATH {':'.join(runtime_path)})")
    elif runc is None:
        warnings.append(unused or "")
    elif runc.untrusted is not None:
        warnings.append(f"{runc.path} was not run: {runc.untrusted}")
    elif runc.version_exit != 0:
        warnings.append(f"{runc.path} --version failed (exit {runc.version_exit})")
    also = _also_executed(runc, lookup, cri if docker_in_play else None, docker, docker_in_play)
    shadowed: list[RuncBinary] = []
    files = {runc.file} if runc is not None else set()
    files |= {item.runc.file for item in also}
    for entry in runtime_path:
        other = binaries.get(f"{entry}/runc")
        if other is not None and other.file not in files:
            files.add(other.file)
            shadowed.append(other)

    settings, persistent = _sysctl(sections)
    runtime_value = _first(sections, "sysctl-runtime").strip()
    record = next((body for kind, _, body in sections if kind == "record"), None)
    return HostFacts(
        host=host,
        gathered_at=_int(info.get("now")) or 0,
        boot_time=boot_time,
        arch=info.get("arch", ""),
        kernel=info.get("kernel", ""),
        uid=uid if uid is not None else -1,
        runtime_path=runtime_path,
        path_source=path_source,
        runc=runc,
        runc_source=how,
        runc_via=via,
        runc_unused=unused,
        also_runc=also,
        shadowed=shadowed,
        docker_default_runtime=docker.default_runtime,
        docker_runtimes=docker.runtimes,
        containerd_default_runtime=containerd_default,
        containerd_runtimes=containerd_runtimes,
        dockerd=dockerd,
        containerd=containerd,
        sysctl_runtime=_int(runtime_value),
        sysctl_settings=settings,
        sysctl_persistent=persistent,
        runc_init=runc_init,
        record_json=record,
        warnings=warnings,
    )


def facts_to_before(facts: HostFacts) -> HostBefore:
    """The plan's "before" of a host: the file to swap, its checksum and version, the sysctl."""
    if facts.runc_unused is not None:
        raise FactsError(facts.host, facts.runc_unused)
    if facts.runc is None or facts.runc.sha256 is None:
        raise FactsError(facts.host, f"no runc binary found ({facts.runc_source})")
    problem = facts.runc.target_problem
    if problem is not None:
        raise FactsError(facts.host, f"{problem}; it is not swapped")
    for item in facts.also_runc:
        if item.runc.target_problem is not None or item.runc.sha256 is None:
            why = item.runc.target_problem or "no sha256"
            raise FactsError(facts.host, f"{item.source}: {why}; nothing is swapped")
    return HostBefore(
        packages=packaged_runcs(facts),
        runc_path=facts.runc.file,
        runc_sha256=facts.runc.sha256,
        runc_version=facts.runc.version,
        sysctl_runtime=facts.sysctl_runtime,
        runc_via=facts.runc_via,
        also=[
            BeforeRunc(path=item.runc.file, sha256=item.runc.sha256, version=item.runc.version)
            for item in facts.also_runc
            if item.runc.sha256 is not None
        ],
    )


def packaged_runcs(facts: HostFacts) -> list[PackagedRunc]:
    """The runc files to swap that a package owns, each with its package manager's default
    policy (the planner applies the operator's). A package name or version that is not one
    (host data) makes the host unplannable rather than reach a plan or a command line."""
    found = []
    binaries = [facts.runc] if facts.runc is not None else []
    binaries += [item.runc for item in facts.also_runc]
    for runc in binaries:
        if runc.package is None or runc.package_manager is None:
            continue
        if not re.fullmatch(PACKAGE_NAME_PATTERN[1:-1], runc.package):
            raise FactsError(facts.host, f"{runc.file}: its package name is not a package name")
        version = runc.package_version
        if version is not None and not re.fullmatch(r"[0-9A-Za-z.+~:_-]{1,256}", version):
            raise FactsError(facts.host, f"{runc.file}: its package version is not a version")
        found.append(
            PackagedRunc(
                path=runc.file,
                package=runc.package,
                version=version,
                manager=runc.package_manager,
                policy=DEFAULT_PACKAGE_POLICY[runc.package_manager],
            )
        )
    return found


# ---------------------------------------------------------------------------------------------
# Gathering


def facts_command(timeout: float = FACTS_TIMEOUT) -> HostCommand:
    """The facts script as a host step (a fresh nonce each time)."""
    return HostCommand("facts", facts_script(secrets.token_hex(8)), timeout)


def facts_from(host: str, result: StepResult | CommandResult) -> HostFacts:
    """The facts a finished facts step reported; `FactsError` if it failed."""
    if result.exit_status != 0:
        detail = result.stderr.strip().splitlines()[-1:] or ["no error output"]
        raise FactsError(
            host,
            f"facts script failed (exit {result.exit_status}): {terminal_safe(detail[0][:300])}",
        )
    return parse_facts(host, result.stdout)


def gather_facts(session: HostSession, *, timeout: float = FACTS_TIMEOUT) -> HostFacts:
    """Run the facts script on one host (one round trip) and parse its output."""
    command = facts_command(timeout)
    return facts_from(session.host, send_script(session, command.script, timeout=command.timeout))


# ---------------------------------------------------------------------------------------------
# Parsing helpers

Section = tuple[str, str, str]  # kind, argument, body


def _sections(host: str, output: str) -> list[Section]:
    # Anything before the first line (a login shell's rc file printing) is ignored.
    match = re.search(r"^runc-rollout-facts 1 ([0-9a-f]+)$", output, re.MULTILINE)
    if match is None:
        raise FactsError(host, f"not facts output: {output[:80]!r}")
    parts = re.split(rf"\n@@{match.group(1)}@@ ([^\n]*)\n", output[match.end() :])
    sections: list[Section] = []
    for header, body in zip(parts[1::2], parts[2::2], strict=True):
        kind, _, argument = header.partition(" ")
        sections.append((kind, argument, body))
    if not sections or sections[-1][0] != "end":
        raise FactsError(host, "facts output is incomplete (no end marker)")
    return sections


def _files(sections: list[Section], which: str) -> list[tuple[str, str]]:
    """(path, content) of the configuration files of `which` ("docker", "containerd")."""
    found = []
    for kind, argument, body in sections:
        owner, _, path = argument.partition(" ")
        if kind == "file" and owner == which:
            found.append((path, body))
    return found


def _first(sections: list[Section], kind: str) -> str:
    return next((body for k, _, body in sections if k == kind), "")


def _kv(body: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in body.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    return values


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _processes(
    sections: list[Section], boot_time: int, clk_tck: int, warnings: list[str]
) -> tuple[Daemon | None, Daemon | None, list[RuncInit]]:
    daemons: dict[str, list[Daemon]] = {"dockerd": [], "containerd": []}
    runc_init: list[RuncInit] = []
    for kind, argument, body in sections:
        if kind == "foreign":
            values = _kv(body)
            warnings.append(
                f"ignored {values.get('comm', '?')} PID {argument}: {values.get('why', '?')}"
            )
        if kind != "proc":
            continue
        values = _kv(body)
        fields = values.get("stat", "").rpartition(")")[2].split()
        if len(fields) < 20 or not argument.isdigit():
            continue
        pid, ppid, ticks = int(argument), int(fields[1]), int(fields[19])
        started = boot_time + ticks / clk_tck if boot_time else None
        comm = values.get("comm", "")
        if comm in daemons:
            if values.get("untrusted"):
                warnings.append(f"{comm} PID {pid}: version not read: {values['untrusted']}")
            daemons[comm].append(
                Daemon(
                    pid=pid,
                    start_ticks=ticks,
                    start_time=started or 0.0,
                    exe=values.get("exe") or None,
                    version=_daemon_version(comm, values.get("version", "")),
                    path=values.get("path") or None,
                    mount_ns=values.get("mntns") or None,
                    root=values.get("root") or None,
                )
            )
            if values.get("mntns"):
                warnings.append(
                    f"{comm} PID {pid} runs in a mount namespace of its own "
                    f"({values['mntns']}, not this session's): its files are read as it sees "
                    f"them, through {values.get('root') or '?'}"
                )
            continue
        cmdline = values.get("cmdline", "").strip()
        if not is_runc_init(comm, cmdline.split()):
            continue
        state, wchan = fields[0], values.get("wchan", "").strip()
        runc_init.append(
            RuncInit(
                pid=pid,
                ppid=ppid,
                state=state,
                wchan=wchan,
                cmdline=cmdline,
                start_time=started,
                stuck=state in ("D", "S") and wchan in PIPE_WCHANS,
            )
        )
    chosen: dict[str, Daemon | None] = {}
    for name, found in daemons.items():
        found.sort(key=lambda daemon: daemon.pid)
        if len(found) > 1:
            others = ", ".join(str(daemon.pid) for daemon in found[1:])
            warnings.append(f"several {name} processes: using PID {found[0].pid}, not {others}")
        chosen[name] = found[0] if found else None
    return chosen["dockerd"], chosen["containerd"], sorted(runc_init, key=lambda p: p.pid)


def _daemon_version(name: str, line: str) -> str | None:
    """'Docker version 20.10.24+dfsg1, build 297e128' or 'containerd <url> 1.6.20~ds1 <rev>'."""
    if name == "dockerd":
        match = re.search(r"version ([^\s,]+)", line)
        return match.group(1) if match else None
    words = line.split()
    return words[2] if len(words) >= 3 and words[0] == "containerd" else None


class _DockerConfig(Model):
    default_runtime: str | None
    runtimes: dict[str, str]


def _docker_config(
    sections: list[Section], dockerd: Daemon | None, warnings: list[str]
) -> _DockerConfig:
    default: str | None = None
    runtimes: dict[str, str] = {}
    for path, body in _files(sections, "docker"):
        try:
            config: Any = json.loads(body) if body.strip() else {}
        except ValueError as error:
            warnings.append(f"{path} is not valid JSON: {error}")
            continue
        if not isinstance(config, dict):
            warnings.append(f"{path} is not a JSON object")
            continue
        if isinstance(config.get("default-runtime"), str):
            default = config["default-runtime"]
        for name, runtime in (config.get("runtimes") or {}).items():
            if isinstance(runtime, dict) and isinstance(runtime.get("path"), str):
                runtimes[str(name)] = runtime["path"]
    cmdline = _proc_cmdline(sections, dockerd)
    for index, word in enumerate(cmdline):
        flag, _, value = word.partition("=")
        if not value and index + 1 < len(cmdline):
            value = cmdline[index + 1]
        if flag == "--default-runtime":
            default = value
        elif flag == "--add-runtime" and "=" in value:
            name, _, path = value.partition("=")
            runtimes[name] = path
    return _DockerConfig(default_runtime=default, runtimes=runtimes)


def _runtime_binary(
    docker: _DockerConfig | None,
    cri_binary: str | None,
    path_source: str,
    dockerd: Daemon | None,
    warnings: list[str],
) -> tuple[str, str]:
    """The name or path of the binary the runtime executes, and how it was chosen."""
    runc = "docker-runc" if _ships_docker_runc(dockerd) else "runc"
    on_path = f"{runc} on {path_source}'s PATH"
    if path_source == "default":
        on_path = "runc on systemd's default PATH (no dockerd or containerd running)"
    if docker is None:
        if cri_binary:
            return cri_binary, "containerd CRI BinaryName"
        return "runc", on_path
    wanted = docker.default_runtime or "runc"
    if wanted in _RUNC_RUNTIMES:
        return runc, on_path
    if wanted in docker.runtimes:
        warnings.append(f"Docker's default runtime is {wanted!r}, not runc")
        return docker.runtimes[wanted], f"Docker default runtime {wanted!r}"
    warnings.append(f"Docker's default runtime {wanted!r} is not defined; assuming runc")
    return "runc", on_path


def _also_executed(
    runc: RuncBinary | None,
    lookup: _Lookup,
    cri: str | None,
    docker: _DockerConfig,
    docker_in_play: bool,
) -> list[ExecutedRunc]:
    """Every other runc file a configured runtime executes: containerd CRI's BinaryName (what
    kubelet uses) beside Docker's, and Docker's other named runtimes that are runc."""
    named = [("containerd CRI BinaryName", cri)] if cri else []
    if docker_in_play:
        named += [(f"Docker runtime {name!r}", path) for name, path in docker.runtimes.items()]
    seen = {runc.file} if runc is not None else set()
    found: list[ExecutedRunc] = []
    for source, configured in named:
        other = lookup.executed(configured, source, [])[0]
        if other is not None and other.version is not None and other.file not in seen:
            seen.add(other.file)
            found.append(ExecutedRunc(source=source, runc=other))
    return found


def _ships_docker_runc(dockerd: Daemon | None) -> bool:
    """Docker 18.06 and older run their runc as `docker-runc`."""
    match = re.match(r"(\d+)\.(\d+)", dockerd.version or "") if dockerd is not None else None
    return match is not None and (int(match.group(1)), int(match.group(2))) <= (18, 6)


def _nvidia_runtimes(sections: list[Section], warnings: list[str]) -> list[str] | None:
    """The runtimes NVIDIA's shim looks for, first found wins: `runtimes` under
    [nvidia-container-runtime] in its config.toml, else its default; None when the file is not
    TOML (the shim itself cannot start then)."""
    found = _files(sections, "nvidia")
    if not found:
        return list(NVIDIA_DEFAULT_RUNTIMES)
    path, body = found[-1]
    try:
        config = tomllib.loads(body)
    except tomllib.TOMLDecodeError as error:
        warnings.append(f"{path} is not valid TOML: {error}")
        return None
    section = config.get("nvidia-container-runtime")
    listed = section.get("runtimes") if isinstance(section, dict) else None
    if isinstance(listed, list) and listed and all(isinstance(n, str) for n in listed):
        return [str(n) for n in listed]
    return list(NVIDIA_DEFAULT_RUNTIMES)


def is_nvidia_shim(binary: RuncBinary) -> bool:
    """NVIDIA's Container Runtime, by its name (also the .cdi and .legacy variants) or banner."""
    names = {binary.path.rpartition("/")[2], binary.file.rpartition("/")[2]}
    banner = runtime_banner(binary.version_output) or ""
    return bool(names & NVIDIA_SHIMS) or banner.startswith(NVIDIA_BANNER)


@dataclass(frozen=True)
class _Lookup:
    """Binaries as the runtime finds them: on its PATH, and through NVIDIA's shim."""

    path: list[str]
    binaries: Mapping[str, RuncBinary]
    nvidia_runtimes: list[str] | None

    def executed(
        self, name: str, how: str, warnings: list[str]
    ) -> tuple[RuncBinary | None, str, str | None, str | None]:
        """The runc that running `name` executes, how it was found, the shim it is run through,
        and, when `name` is a runtime that runs no runc, why not."""
        binary = _resolve(name, self.path, self.binaries)
        if binary is None or not is_nvidia_shim(binary):
            answers = binary is not None and binary.untrusted is None and binary.version_exit == 0
            if binary is not None and answers and binary.version is None:
                what = (runtime_banner(binary.version_output) or "?").split()[0]
                return None, how, None, f"default runtime {what}: runc not used by default"
            return binary, how, None, None
        shim = binary.path
        if parse_runc_version(binary.version_output).version is not None:
            return (
                None,
                how,
                None,
                (
                    f"default runtime {shim} is NVIDIA's patched runc (a release before 2019): "
                    "upstream runc in its place would take the GPUs away"
                ),
            )
        if self.nvidia_runtimes is None:
            return None, how, shim, None
        behind = next(
            (n for n in self.nvidia_runtimes if _resolve(n, self.path, self.binaries)), None
        )
        via = f"{how}: {shim}, runtimes {self.nvidia_runtimes}"
        if behind is None:
            warnings.append(f"{shim} finds none of {self.nvidia_runtimes} on its PATH")
            return None, f"behind nvidia-container-runtime ({via})", shim, None
        runc, _, _, unused = _Lookup(self.path, self.binaries, None).executed(behind, how, [])
        if unused is not None:
            return None, how, shim, unused.replace("default runtime", f"{shim} runs", 1)
        return runc, f"runc behind nvidia-container-runtime ({via})", shim, None


def _proc_cmdline(sections: list[Section], daemon: Daemon | None) -> list[str]:
    if daemon is None:
        return []
    for kind, argument, body in sections:
        if kind == "proc" and argument == str(daemon.pid):
            return _kv(body).get("cmdline", "").split()
    return []


def _containerd_config(
    sections: list[Section], warnings: list[str]
) -> tuple[str | None, dict[str, str]]:
    """containerd's CRI default runtime and each runtime's BinaryName (config versions 1-3),
    unless the CRI plugin is in `disabled_plugins` (containerd then never runs them)."""
    default: str | None = None
    binaries: dict[str, str] = {}
    for path, body in _files(sections, "containerd"):
        try:
            config = tomllib.loads(body)
        except tomllib.TOMLDecodeError as error:
            warnings.append(f"{path} is not valid TOML: {error}")
            continue
        plugins = config.get("plugins")
        listed = config.get("disabled_plugins")
        disabled = [str(d) for d in listed] if isinstance(listed, list) else []
        for plugin_name, plugin in (plugins if isinstance(plugins, dict) else {}).items():
            section = plugin.get("containerd") if isinstance(plugin, dict) else None
            if "cri" not in plugin_name or not isinstance(section, dict):
                continue
            if any(_same_plugin(plugin_name, name) for name in disabled):
                continue
            if isinstance(section.get("default_runtime_name"), str):
                default = section["default_runtime_name"]
            runtimes = section.get("runtimes")
            for name, runtime in (runtimes if isinstance(runtimes, dict) else {}).items():
                options = runtime.get("options") if isinstance(runtime, dict) else None
                if isinstance(options, dict) and isinstance(options.get("BinaryName"), str):
                    binaries[str(name)] = options["BinaryName"]
    return default, binaries


def _same_plugin(configured: str, listed: str) -> bool:
    """Whether a `plugins` table and a `disabled_plugins` entry name the same plugin: a full
    id (`io.containerd.grpc.v1.cri`) or its last part (`cri`), either way round."""
    return configured.rsplit(".", 1)[-1] == listed.rsplit(".", 1)[-1]


_MANAGERS: dict[str, PackageManager] = {"dpkg": "dpkg", "rpm": "rpm"}


def _binaries(sections: list[Section]) -> dict[str, RuncBinary]:
    """Every binary the script examined, by path; aliases share their file's facts."""
    by_real: dict[str, RuncBinary] = {}
    found: dict[str, RuncBinary] = {}
    versions = {argument: body for kind, argument, body in sections if kind == "version"}
    for kind, argument, body in sections:
        values = _kv(body)
        real = values.get("real") or argument
        if kind == "binary":
            output = versions.get(argument, "").strip()
            parsed = parse_runc_version(output)
            sha256 = values.get("sha256", "")
            package = values.get("package") or None
            binary = RuncBinary(
                path=argument,
                real_path=real if real != argument else None,
                executable=values.get("executable") == "1",
                size=_int(values.get("size")),
                sha256=sha256 if re.fullmatch(r"[0-9a-f]{64}", sha256) else None,
                version=parsed.version,
                commit=parsed.commit,
                version_output=output,
                version_exit=_int(values.get("version_exit")),
                package=package,
                package_version=(values.get("package_version") or None) if package else None,
                package_intact={"1": True, "0": False}.get(values.get("package_intact", "")),
                package_manager=_MANAGERS.get(values.get("package_manager", ""))
                if package
                else None,
                diverted_to=(values.get("diverted_to") or None) if package else None,
                diverted_by=(values.get("diverted_by") or None) if package else None,
                free_bytes=_free_bytes(values.get("df", "")),
                read_only_mount=read_only_mount(
                    values.get("mount", ""), values.get("write_access", "")
                ),
                untrusted=None
                if values.get("trusted") == "1"
                else values.get("untrusted") or "ownership not checked",
                mount_ns=values.get("mntns") or None,
                seen_at=values.get("seen_at") or None,
                fs_type=values.get("fstype") or None,
                writable_there=_flag(values.get("writable_there")),
                same_here=_flag(values.get("same_here")),
            )
            by_real[real] = binary
            found[argument] = binary
        elif kind == "alias" and real in by_real:
            found[argument] = by_real[real].model_copy(
                update={"path": argument, "real_path": real if real != argument else None}
            )
    return found


def _flag(text: str | None) -> bool | None:
    return {"1": True, "0": False}.get(text or "")


def read_only_mount(mount: str, write_access: str) -> str | None:
    """The mount point of a read-only runc folder, from the facts' `mount=ro|rw MOUNTPOINT`
    line and its `write_access` (`ok`, or why root may not write there, from access(2)):
    read-only when the mount table says so, or when access(2) says EROFS although the table
    says rw (an overlay whose upper layer went read-only). None: writable, or not known (a
    refusal for another reason, a full disk or no permission, is not a read-only file system)."""
    mode, _, point = mount.partition(" ")
    if mode == "ro" or "read-only file system" in write_access.lower():
        return terminal_safe(point[:_MOUNT_MAX]) or "?"
    return None


_MOUNT_MAX = 300  # characters of a mount point kept (a host's output is data, and bounded)


def _free_bytes(df_line: str) -> int | None:
    """Available bytes from one `df -Pk` line: FS 1024-blocks used available capacity mount."""
    fields = df_line.split()
    return int(fields[3]) * 1024 if len(fields) >= 6 and fields[3].isdigit() else None


def _resolve(name: str, path: list[str], binaries: Mapping[str, RuncBinary]) -> RuncBinary | None:
    """`name` as the runtime would execute it: an absolute path, or the first on `path`."""
    if name.startswith("/"):
        return binaries.get(name)
    return next((binaries[f"{d}/{name}"] for d in path if f"{d}/{name}" in binaries), None)


def _sysctl(sections: list[Section]) -> tuple[list[SysctlSetting], SysctlSetting | None]:
    """Every line setting the key, in the order sysctl applies them, and the one that wins.

    sysctl.d files apply sorted by file name across directories; a name in a directory of higher
    precedence hides the same name further down. /etc/sysctl.conf applies last.
    """
    listed: list[str] = []
    real: dict[str, str] = {}
    chosen: dict[str, str] = {}
    for line in _first(sections, "sysctl-files").splitlines():
        path, _, target = line.partition("\t")
        listed.append(path)
        if target and target != path:
            real[path] = target
        directory, _, name = path.rpartition("/")
        if directory in SYSCTL_DIRS:
            current = chosen.get(name)
            rank = SYSCTL_DIRS.index(directory)
            if current is None or rank < SYSCTL_DIRS.index(current.rpartition("/")[0]):
                chosen[name] = path
    order = [chosen[name] for name in sorted(chosen)]
    order += [SYSCTL_CONF] if SYSCTL_CONF in listed else []
    position = {path: index for index, path in enumerate(order)}

    longest_first = sorted(listed, key=len, reverse=True)
    settings: list[SysctlSetting] = []
    for line in _first(sections, "sysctl-lines").splitlines():
        file = next((f for f in longest_first if line.startswith(f + ":")), None)
        number, _, text = line[len(file or "") + 1 :].partition(":")
        if file is None or not number.isdigit():
            continue
        settings.append(
            SysctlSetting(
                file=file,
                line=int(number),
                value=text.partition("=")[2].strip(),
                real_file=real.get(file),
                applied=file in position,
            )
        )
    settings.sort(key=lambda s: (not s.applied, position.get(s.file, 0), s.file, s.line))
    applied = [setting for setting in settings if setting.applied]
    return settings, applied[-1] if applied else None
