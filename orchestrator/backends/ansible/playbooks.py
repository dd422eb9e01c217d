"""The host-side scripts of `playbooks/files/`, rendered from `hostside` and `facts`.

The playbooks run the SSH backend's own shell steps wherever a step is more than a file
operation (the lock, the staged-binary check, the backup, the verifications, the facts script),
so both backends act identically on a host. Each file is the step's script with its parameters
taken from the environment instead of being quoted into it; `python -m
orchestrator.backends.ansible.playbooks`
rewrites the files, and a test fails when they no longer match this rendering.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from orchestrator.host import commands, probe
from orchestrator.host.facts import facts_script

PLAYBOOK_DIR = Path(__file__).resolve().parents[3] / "playbooks"
FILES_DIR = PLAYBOOK_DIR / "files"
NONCE_ENV = "RUNC_ROLLOUT_NONCE"
_TIMEOUT = 987654321  # stands for "$TIMEOUT" where a step bakes a timeout into its text
_TIMEOUT_TEXT = str(_TIMEOUT)
_NONCE = "0" * 16
_PARAM = re.compile(r"^([A-Z_]+)=@\1@\n", re.MULTILINE)
_ARGV = "set -- @COMMAND@\n"


def _sentinel(name: str) -> str:
    return f"@{name}@"


def _from_environment(name: str, script: str) -> str:
    """`script` with its `KEY=@KEY@` parameter lines removed (`set -u` makes them required)."""
    params = _PARAM.findall(script)
    body = _PARAM.sub("", script)
    if _ARGV in body:  # the verification command: its words are the file's arguments
        body = body.replace(_ARGV, "")
        params.append("the command's words as arguments")
    if _TIMEOUT_TEXT in body:
        params.append("TIMEOUT")
        body = body.replace(_TIMEOUT_TEXT, '"$TIMEOUT"')
    if re.search(r"@[A-Z_]+@", body):
        raise ValueError(f"{name}: a parameter is used outside the script's header")
    return _header(name, ", ".join(params) or "none") + body


def _header(name: str, params: str) -> str:
    return (
        "#!/bin/sh\n"
        f"# runc-rollout host step `{name}`, rendered from orchestrator/host/commands.py by\n"
        "# `python -m orchestrator.backends.ansible.playbooks`: do not edit.\n"
        f"# Parameters (environment): {params}\n"
    )


_STEPS: dict[str, Callable[[], commands.HostCommand]] = {
    "lock.sh": lambda: commands.lock(_sentinel("RUN_ID")),
    "unlock.sh": lambda: commands.unlock(_sentinel("RUN_ID")),
    "check-staged.sh": lambda: commands.check_staged(
        _sentinel("STAGED"), _sentinel("SHA"), _TIMEOUT
    ),
    "backup.sh": lambda: commands.backup_binary(_sentinel("TARGET"), _sentinel("BEFORE")),
    "swap.sh": lambda: commands.swap(_sentinel("STAGED"), _sentinel("TARGET"), _sentinel("SHA")),
    "verify-docker.sh": lambda: commands.verify_docker(
        _sentinel("RUN_ID"), _sentinel("IMAGE"), _sentinel("COMMAND"), _TIMEOUT
    ),
    "verify-exec.sh": lambda: commands.verify_exec(
        _sentinel("COMMAND"), _TIMEOUT, _sentinel("CONTAINER")
    ),
    "verify-runc.sh": lambda: commands.verify_runc_bundle(
        _sentinel("TARGET"), _sentinel("RUN_ID"), _TIMEOUT
    ),
}


def _per_file(name: str, command: commands.HostCommand, params: str) -> str:
    """A file step for the files given as the script's arguments: its `set -- FILES` line
    (the files quoted into it) removed."""
    lines = command.script.splitlines()
    sets = [index for index, line in enumerate(lines) if line.startswith("set -- ")]
    if len(sets) != 1:
        raise ValueError(f"{name}: not one `set --` line for the files")
    del lines[sets[0]]
    return _header(name, params) + "\n".join(lines) + "\n"


def _set_sysctl() -> str:
    """`commands.set_sysctl` for any files, the value from $VALUE."""
    value = str(_TIMEOUT)
    command = commands.set_sysctl(_TIMEOUT, ["@FILE@"])
    script = command.script.replace(f"= {value}#'", "= '\"$VALUE\"'#'").replace(value, '"$VALUE"')
    command = commands.HostCommand(command.name, script, command.timeout)
    return _per_file("set-sysctl.sh", command, "VALUE; the files to change as arguments")


_PROBE_PARAMS = ("METHOD", "TARGET", "IMAGE", "PROBE_UID", "RUN_ID", "TIMEOUT", "STALE")


def _probe() -> str:
    """The probe with what is the same on every host (profiles, holder, spec) baked in."""
    sentinels = {name: _sentinel(name) for name in _PROBE_PARAMS}
    script = commands._script(probe.probe_script(), **sentinels, **probe.constants())
    return _from_environment("probe.sh", script)


def rendered_files() -> dict[str, str]:
    """File name -> content of every generated file in `playbooks/files/`."""
    files = {name: _from_environment(name, step().script) for name, step in _STEPS.items()}
    files["probe.sh"] = _probe()
    files["set-sysctl.sh"] = _set_sysctl()
    files["backup-files.sh"] = _per_file(
        "backup-files.sh", commands.backup_files(["@FILE@"]), "the files to keep as arguments"
    )
    files["restore-files.sh"] = _per_file(
        "restore-files.sh",
        commands.restore_files([("@FILE@", "@BEFORE@", "@AFTER@")]),
        "for each file its path, sha256 before and sha256 after (or empty), as arguments",
    )
    facts = facts_script(_NONCE)
    if facts.count(f"N={_NONCE}\n") != 1:
        raise ValueError("the facts script no longer sets its nonce on one `N=` line")
    files["runc-facts.sh"] = (
        "#!/bin/sh\n"
        "# runc-rollout facts script, rendered from orchestrator/host/facts.py by\n"
        "# `python -m orchestrator.backends.ansible.playbooks`: do not edit.\n"
        f"# Parameters (environment): {NONCE_ENV} (hex, delimits the output's sections)\n"
        + facts.replace(f"N={_NONCE}\n", f'N="${{{NONCE_ENV}:?}}"\n').lstrip("\n")
    )
    return files


def write_files(directory: Path = FILES_DIR) -> list[Path]:
    """Rewrite the generated files in `directory`; return those that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, content in rendered_files().items():
        path = directory / name
        if not path.exists() or path.read_text() != content:
            path.write_text(content)
            path.chmod(0o755)
            changed.append(path)
    return changed


if __name__ == "__main__":
    for written in write_files():
        sys.stdout.write(f"wrote {written}\n")
