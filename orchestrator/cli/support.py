"""What the commands share on the command line's side: wave options named by their options,
`-K`'s prompt, the confirmation question, the API's streams."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import typer

from orchestrator.errors import BadInput

# What the commands run is imported where they run it: every command's options are built for
# `--help` and `--version` too, which must not pay for pydantic, rich or the backends.
if TYPE_CHECKING:
    from orchestrator.models import BecomePasswords, Inventory, SshTarget, WaveOptions


_OPTION_OF_FIELD = {
    "bake_seconds": "--bake",
    "pause_after": "--pause-after",
    "sysctl_target": "--sysctl-target",
    "verify_timeout": "--verify-timeout",
}


def wave_options(**fields: object) -> WaveOptions:
    """`WaveOptions` from the command line; a value out of range names its option."""
    from pydantic import ValidationError

    from orchestrator.models import WaveOptions

    try:
        return WaveOptions.model_validate(fields)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "options"
        option = _OPTION_OF_FIELD.get(field, f"--{field.replace('_', '-')}")
        raise BadInput(f"{option}: {first['input']!r}: {first['msg']}") from None


def become_prompt(ask: bool) -> Callable[[], str | None] | None:
    """`--ask-become-pass`: a prompt for the sudo password, asked once on the terminal when a
    command first needs it, kept in memory only."""
    return _ask_become_password if ask else None


def _ask_become_password() -> str:
    import getpass

    try:
        return getpass.getpass("BECOME password: ", stream=sys.stderr)
    except EOFError:
        raise BadInput("--ask-become-pass: no password given (end of input)") from None


def become_passwords(
    ask: bool,
    from_inventory: bool,
    targets: Mapping[str, SshTarget],
    inventory: Sequence[str] | Inventory,
) -> BecomePasswords:
    """`-K`'s password and, with `--become-password-from-inventory`, each host's own."""
    from orchestrator.inventory.become import become_passwords as passwords

    return passwords(become_prompt(ask) or (lambda: None), from_inventory, targets, inventory)


def confirmation(yes: bool) -> Callable[[str], None] | None:
    """What the API asks before changing hosts: nothing with --yes, else the terminal."""
    return None if yes else _confirm


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise BadInput(f"{question} stdin is not a terminal: pass --yes to confirm")
    if not typer.confirm(question):
        raise typer.Abort()
