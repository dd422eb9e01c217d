"""Text from hosts, inventories and plans on the operator's terminal: shown, never obeyed.

A host can put terminal escape sequences (cursor moves, colours, a whole fake line such as
"h1: done") or rich markup (`[/]`, `[red]`) into anything it reports. Every such string is
passed through `terminal_safe` (control and format characters, newlines included, become
visible escapes) and, where rich renders it, `markup_safe` (markup escaped as well). In the
plan's Markdown, `markdown_text` and `markdown_code` keep it from becoming links or emphasis.
"""

from __future__ import annotations

import re
import unicodedata

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
    from rich.markup import escape  # (here: most commands never render with rich)

    return escape(terminal_safe(text))


_MARKDOWN_PUNCTUATION = frozenset("\\`*_[]()!<>&|~#")  # what makes links, images, emphasis, HTML
_BACKTICKS = re.compile("`+")


def markdown_text(text: object) -> str:
    """`terminal_safe(text)` for Markdown prose: every character that could start a link, an
    image, emphasis, an HTML tag or entity, or end a table cell, backslash-escaped."""
    string = terminal_safe(text)
    return "".join(f"\\{char}" if char in _MARKDOWN_PUNCTUATION else char for char in string)


def markdown_code(text: object) -> str:
    """`terminal_safe(text)` as a Markdown code span, shown verbatim: fenced by more backticks
    than any run of them inside, padded when it starts or ends with one. Not for table cells
    (a `|` ends a cell even there)."""
    string = terminal_safe(text)
    longest = (
        max((len(run) for run in _BACKTICKS.findall(string)), default=0) if "`" in string else 0
    )
    fence = "`" * (longest + 1)
    if not string or string[0] in "` " or string[-1] in "` ":
        string = f" {string} "
    return f"{fence}{string}{fence}"
