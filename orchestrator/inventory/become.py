"""A host's sudo password from its inventory variables (`ansible_become_password`), used only when
the operator opts in (`--become-password-from-inventory`).

The plan records only *that* a host's inventory sets one (`SshTarget.inventory_become_password`),
never the value: `apply`, `resume` and `rollback` read the plan's inventory again for it, and the
value lives in memory only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.errors import BadInput
from orchestrator.inventory.common import EncryptedValue
from orchestrator.inventory.read import load_inventory
from orchestrator.models import BecomePasswords, Inventory, InventoryHost, SshTarget

# The variables Ansible's sudo become plugin reads, in its order: the last one set wins.
BECOME_PASSWORD_VARS = ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass")
OPT_IN = "--become-password-from-inventory"


def sets_become_password(variables: dict[str, Any]) -> bool:
    """Whether the variables set a become password (None and "" do not, as in Ansible)."""
    return any(variables.get(name) not in (None, "") for name in BECOME_PASSWORD_VARS)


def become_password_of(host: InventoryHost) -> str | None:
    """The host's become password, or None; `BadInput` for a value this tool cannot use. Error
    messages name the variable, never its value."""
    found: tuple[str, Any] | None = None
    for name in BECOME_PASSWORD_VARS:
        if host.vars.get(name) not in (None, ""):
            found = (name, host.vars[name])
    if found is None:
        return None
    name, value = found
    where = f"host {host.name}: {name}"
    if isinstance(value, EncryptedValue) or (
        isinstance(value, dict) and "__ansible_vault" in value
    ):
        raise BadInput(f"{where} is vault-encrypted, which this tool does not decrypt; use -K")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadInput(f"{where} is not text")
    text = str(value)
    if "{{" in text or "{%" in text:
        raise BadInput(f"{where} is a template, which this tool does not evaluate; use -K")
    return text


def become_passwords(
    ask: Callable[[], str | None],
    from_inventory: bool,
    targets: Mapping[str, SshTarget],
    inventory: Sequence[str] | Inventory,
) -> BecomePasswords:
    """The password `ask` gives (asked once; `-K`'s prompt on the command line) and, with
    `from_inventory`, each host's own from `inventory` (a plan's sources are read again). A
    host whose inventory sets one without the opt-in is refused: it would otherwise be ignored
    without a word."""
    flagged = [name for name, target in targets.items() if target.inventory_become_password]
    if flagged and not from_inventory:
        more = f" (and {len(flagged) - 1} more hosts)" if len(flagged) > 1 else ""
        raise BadInput(
            f"host {flagged[0]}{more}: the inventory sets ansible_become_password, which is used "
            f"only with {OPT_IN} (or remove it and use -K)"
        )
    asked = ask()
    if not flagged:
        return BecomePasswords(asked)
    if not isinstance(inventory, Inventory):
        try:
            inventory = load_inventory([Path(source) for source in inventory])
        except BadInput as error:
            raise BadInput(f"{OPT_IN}: the plan's inventory: {error}") from None
    per_host: dict[str, str] = {}
    for name in flagged:
        host = inventory.hosts.get(name)
        password = None if host is None else become_password_of(host)
        if password is None:
            raise BadInput(f"{OPT_IN}: host {name}: the inventory no longer sets a become password")
        per_host[name] = password
    return BecomePasswords(asked, per_host)
