"""Readable `--help`: typer 0.29 labels every value with its Python type (`<str>`,
`<list[Path]>`, `<bool>` even on flags) and wraps a required argument in braces (`{RUN}`), an
optional one in brackets (`[RUN]`, `[[RUN]]` when the metavar already had them). The app's group
class gives every command's parameters the usual metavars instead: TEXT, INTEGER, NUMBER, PATH,
`[a|b]` for choices, an option's own metavar where it has one, nothing on a flag, and an
argument's name alone (`RUN`, `[RUN]` when it may be left out).

Only the display changes: the parameters parse exactly as typer made them.

The screen is typer's plain one (`rich_markup_mode=None` on the apps): typer's rich screen
imports `rich.markdown` and markdown-it whatever the markup mode, which alone put `--help` over
its start-up budget. The plain screen's formatter here wraps at spaces only, never at a hyphen,
so an option name (`--sha256-file`) or a setting (`fs.pipe-user-pages-soft`) stays whole, and
a group lists each command with the first paragraph of its help, not a cut-off line."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

import typer.core
from typer._click import Command, Context, HelpFormatter, Parameter

_TYPE_WORDS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH"}
_LIST = re.compile(r"^list\[(.*)\]$")


def readable_type(label: str) -> str:
    """typer's `<label>` as a metavar: `<list[Path]>` -> PATH, `<int range>` -> INTEGER,
    `<text|markdown>` -> [text|markdown]."""
    word = label.strip().removeprefix("<").removesuffix(">")
    while match := _LIST.match(word):
        word = match.group(1)
    word = word.removesuffix(" range")
    if "|" in word:
        return f"[{word}]"
    return _TYPE_WORDS.get(word.lower(), word.upper())


class ReadableOption(typer.core.TyperOption):
    def display_type_rich(self, ctx: Context) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar is not None:
            return self.metavar
        return readable_type(self.display_type(ctx))


class ReadableArgument(typer.core.TyperArgument):
    def display_type_rich(self, ctx: Context) -> str | None:
        return None  # its name (RUN, PLAN) says what it is

    def _usage_display_name(self) -> str:
        name = self.display_name_raw.strip("[]{}")
        return name if self.required else f"[{name}]"


def _readable(params: list[Parameter]) -> None:
    for param in params:
        if type(param) is typer.core.TyperOption:
            param.__class__ = ReadableOption
        elif type(param) is typer.core.TyperArgument:
            if param.metavar:
                param.metavar = param.metavar.strip("[]{}")
            param.__class__ = ReadableArgument


def wrap(text: str, width: int) -> list[str]:
    """`text`'s paragraphs (split at blank lines) filled to `width` at spaces only, with an
    empty line between paragraphs; a word longer than `width` keeps a line of its own."""
    lines: list[str] = []
    for paragraph in text.split("\n\n"):
        if lines:
            lines.append("")
        lines += textwrap.wrap(
            " ".join(paragraph.split()), width, break_on_hyphens=False, break_long_words=False
        )
    return lines


class ReadableFormatter(HelpFormatter):
    """The plain help screen's layout, wrapped by `wrap`."""

    def write_text(self, text: str) -> None:
        indent = " " * self.current_indent
        for line in wrap(text, self.width - self.current_indent):
            self.write(f"{indent}{line}\n" if line else "\n")

    def write_dl(
        self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        """Terms in a column as wide as the longest (at most `col_max`), each definition
        beside it; a longer term has its definition start on the next line."""
        indent = " " * self.current_indent
        column = min(max((len(term) for term, _ in rows), default=0), col_max) + col_spacing
        hanging = " " * (self.current_indent + column)
        for term, definition in rows:
            lines = wrap(definition, max(self.width - self.current_indent - column, 20))
            if lines and len(term) <= column - col_spacing:
                self.write(f"{indent}{term:<{column}}{lines[0]}\n")
                lines = lines[1:]
            else:
                self.write(f"{indent}{term}\n")
            for line in lines:
                self.write(f"{hanging}{line}\n" if line else "\n")


class ReadableContext(Context):
    formatter_class = ReadableFormatter


def make_readable(command: Command, ctx: Context) -> None:
    """Every parameter of `command` (its --help too), and of its subcommands, shown readably."""
    command.context_class = ReadableContext
    _readable(command.get_params(ctx))
    if isinstance(command, typer.core.TyperGroup):
        for sub in command.commands.values():
            make_readable(sub, ctx)


class ReadableGroup(typer.core.TyperGroup):
    """The app's group: its own parameters and every command's are made readable as they are
    looked up (for parsing and for --help alike)."""

    context_class = ReadableContext

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                summary = command.short_help or (command.help or "").split("\n\n")[0]
                rows.append((name, summary))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_params(self, ctx: Context) -> list[Parameter]:
        params = super().get_params(ctx)
        _readable(params)
        return params

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            make_readable(command, ctx)
        return command
