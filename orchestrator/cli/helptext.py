"""Readable `--help`: typer 0.29 labels every value with its Python type (`<str>`,
`<list[Path]>`, `<bool>` even on flags) and wraps a required argument in braces (`{RUN}`), an
optional one in brackets (`[RUN]`, `[[RUN]]` when the metavar already had them). The app's group
class gives every command's parameters the usual metavars instead: TEXT, INTEGER, NUMBER, PATH,
`[a|b]` for choices, an option's own metavar where it has one, nothing on a flag, and an
argument's name alone (`RUN`, `[RUN]` when it may be left out).

Only the display changes: the parameters parse exactly as typer made them."""

from __future__ import annotations

import re

import typer.core
from typer._click import Command, Context, Parameter

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


def make_readable(command: Command, ctx: Context) -> None:
    """Every parameter of `command` (its --help too), and of its subcommands, shown readably."""
    _readable(command.get_params(ctx))
    if isinstance(command, typer.core.TyperGroup):
        for sub in command.commands.values():
            make_readable(sub, ctx)


class ReadableGroup(typer.core.TyperGroup):
    """The app's group: its own parameters and every command's are made readable as they are
    looked up (for parsing and for --help alike)."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        params = super().get_params(ctx)
        _readable(params)
        return params

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            make_readable(command, ctx)
        return command
