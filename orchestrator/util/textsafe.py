"""Text from hosts, inventories and plans on the operator's terminal: shown, never obeyed.

A host can put terminal escape sequences (cursor moves, colours, a whole fake line such as
"h1: done") or rich markup (`[/]`, `[red]`) into anything it reports. Every such string is
passed through `terminal_safe` (control and format characters, newlines included, become
visible escapes) and, where rich renders it, `markup_safe` (markup escaped as well).
"""

from __future__ import annotations

import unicodedata

from rich.markup import escape

_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})  # controls, format (bidi), separators


def _visible(char: str) -> str:
    if unicodedata.category(char) not in _UNSAFE_CATEGORIES:
        return char
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def terminal_safe(text: object) -> str:
    """`text` on one line with nothing a terminal would act on (tabs, newlines, ESC, bidi
    controls...): each such character is shown as `\\xNN` or `\\uNNNN`."""
    string = str(text)
    return string if string.isprintable() else "".join(map(_visible, string))


def one_line(text: str, limit: int) -> str:
    """A command's output as a reason: its lines joined, nothing a terminal would obey, at
    most `limit` characters (and "..." when cut)."""
    lines = (line.strip() for line in text.splitlines())
    joined = terminal_safe(" / ".join(line for line in lines if line))
    return joined if len(joined) <= limit else joined[:limit] + "..."


def markup_safe(text: object) -> str:
    """`terminal_safe(text)` with rich markup escaped, for `Console.print` and table cells."""
    return escape(terminal_safe(text))
