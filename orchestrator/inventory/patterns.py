"""Ansible's host pattern language, as `--limit` evaluates it (checked against ansible-core 2.19).

A pattern is a list of terms separated by `,` (or by `:` when there is no comma): `web,db` and
`web:db` are unions, `web:&zone_a` an intersection, `web:!canary` an exclusion. Ansible applies
the plain terms first in order, then every `&` term, then every `!` term, whatever their place in
the pattern; a pattern of only `&`/`!` terms starts from `all`. A term is a group or host name, a
shell glob (`node-a*`, `node-?1`), or a regular expression after `~` (`~node-[ab]0[1-3]`), and may
end in a subscript selecting among its matches (`workers[0]`, `workers[2:5]`, `workers[-1]`).

Three choices are stricter than Ansible: a term without wildcards that names no host or group is
an error where Ansible warns (a typo in `--limit web:!canry` must not roll out to the canaries),
so is a selection with no host in it, and so is an empty pattern (Ansible would take all hosts).
"""

from __future__ import annotations

import fnmatch
import re

from orchestrator.errors import PatternError
from orchestrator.inventory.builder import group_hosts
from orchestrator.inventory.common import parse_address
from orchestrator.models import Inventory

# A term, or a whole `[...]` bracket in it, between `:` separators (Ansible's legacy syntax).
_COLON_TERM = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_SUBSCRIPT = re.compile(r"(.+)\[(?:(-?[0-9]+)|([0-9]+)[:-]([0-9]*))\]")


def select_hosts(inventory: Inventory, pattern: str | None) -> list[str]:
    """The hosts of `inventory` that `pattern` selects (None: all of them), in inventory order."""
    terms = split_pattern("all" if pattern is None else pattern)
    if not terms:
        raise PatternError(f"empty host pattern {pattern!r}")
    selected = set(_evaluate(inventory, terms))
    hosts = [name for name in inventory.hosts if name in selected]
    if not hosts:
        raise PatternError(f"host pattern {pattern or 'all'!r} selects no hosts")
    return hosts


def split_pattern(pattern: str) -> list[str]:
    """The terms of a pattern: split at commas if it has any, else at colons outside brackets.

    A colon is not a separator in a single host address such as `node[01:10]` or `fe80::1`.
    """
    if "," in pattern:
        terms = pattern.split(",")
    elif parse_address(pattern) is not None:
        terms = [pattern]
    else:
        terms = _COLON_TERM.findall(pattern)
    return [term.strip() for term in terms if term.strip()]


def _evaluate(inventory: Inventory, terms: list[str]) -> list[str]:
    plain = [term for term in terms if term[0] not in "&!"]
    ordered = (
        (plain or ["all"])
        + [term for term in terms if term[0] == "&"]
        + [term for term in terms if term[0] == "!"]
    )
    hosts: dict[str, None] = {}
    for term in ordered:
        if term in inventory.hosts:
            hosts[term] = None
            continue
        matches = _match_term(inventory, term[1:] if term[0] in "&!" else term)
        if term[0] == "&":
            keep = set(matches)
            hosts = {name: None for name in hosts if name in keep}
        elif term[0] == "!":
            drop = set(matches)
            hosts = {name: None for name in hosts if name not in drop}
        else:
            hosts.update(dict.fromkeys(matches))
    return list(hosts)


def _match_term(inventory: Inventory, term: str) -> list[str]:
    """Hosts of one term without its `&`/`!`: groups it names (with their descendants' hosts),
    then, if it named no group or has a wildcard, a regex or a dot, hosts it names."""
    if not term:
        raise PatternError("empty term after '&' or '!' in host pattern")
    expression, subscript = term, None
    if term[0] != "~":
        match = _SUBSCRIPT.fullmatch(term)
        if match:
            expression = match.group(1)
            subscript = (match.group(2), match.group(3), match.group(4))
    regex = expression[1:] if expression[0] == "~" else fnmatch.translate(expression)
    try:
        matcher = re.compile(regex)
    except re.error as exc:
        raise PatternError(f"invalid host pattern {term!r}: {exc}") from None
    groups = [name for name in inventory.groups if matcher.match(name)]
    hosts: list[str] = [host for name in groups for host in group_hosts(inventory.groups, name)]
    if not groups or expression[0] == "~" or any(char in expression for char in ".?*["):
        hosts.extend(name for name in inventory.hosts if matcher.match(name))
    if not hosts and not groups and not _is_wildcard(expression):
        raise PatternError(f"host pattern {term!r} matches no host or group in the inventory")
    # Duplicates stay: Ansible takes a subscript of this list as it is.
    return hosts if subscript is None else _subscript(hosts, term, *subscript)


def _is_wildcard(expression: str) -> bool:
    return expression[0] == "~" or any(char in expression for char in "?*[")


def _subscript(
    hosts: list[str], term: str, index: str | None, start: str | None, end: str | None
) -> list[str]:
    """`[i]`, `[start:end]` (inclusive) or `[start:]`, applied exactly as Ansible applies them."""
    if not hosts:
        return hosts
    try:
        if index is not None:
            return [hosts[int(index)]]
        first, last = int(start or 0), int(end) if end else -1
        if not last:  # Ansible reads [n:0] as [n]
            return [hosts[first]]
        return hosts[first : (len(hosts) - 1 if last == -1 else last) + 1]
    except IndexError:
        raise PatternError(f"no hosts match the subscripted pattern {term!r}") from None
