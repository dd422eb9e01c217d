"""Where ssh goes and as whom: plain names only.

ssh_config's `Match exec` runs a shell command with `%h` and `%r` filled in, and a ProxyCommand
is run the same way: an address such as `web1;touch${IFS}/tmp/x;#` would run on the controller
before any connection (CVE-2023-51385; OpenSSH 9.6 refuses such names on its command line).
Addresses and users from inventories and plans are held to plain names before any lookup.
"""

from __future__ import annotations

import ipaddress
import re

_HOST_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}")  # DNS labels, and `_` as ssh takes
_USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,255}")  # POSIX names, and `user@REALM`
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # an IPv6 scope: an interface name or number


def plain_host(text: str) -> bool:
    """A host name, or an IPv4 or IPv6 address (with an interface scope, `fe80::1%eth0`)."""
    if _HOST_NAME.fullmatch(text):
        return True
    address, percent, zone = text.partition("%")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not percent or (parsed.version == 6 and _ZONE.fullmatch(zone) is not None)


def plain_user(text: str) -> bool:
    return _USER_NAME.fullmatch(text) is not None


def destination_problem(address: str, user: str | None) -> str | None:
    """What is wrong with ssh's destination, or None."""
    if not plain_host(address):
        return f"address {address!r} is not a plain host name or IP address"
    if user is not None and not plain_user(user):
        return f"user {user!r} is not a plain user name"
    return None
