"""Every command's `--help` as a user reads it: readable metavars (no Python type names, no
doubled brackets), no option it does not have, no format it refuses; and `--format` as one
vocabulary across the commands that print a report."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from orchestrator.cli.app import app
from orchestrator.cli.helptext import readable_type
from orchestrator.cli.lab import lab_app
from orchestrator.cli.options import Format, parse_format

# typer's own labels: `<bool>`, `<str>`, `<list[Path]>`, `<int range>`, `<text|markdown>`.
TYPE_LABEL = re.compile(r"<[\w\[\]|, ]+>")
OPTION_WORD = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")

# Options a command's help names that belong to another command or program, on purpose.
CROSS_REFERENCES = {
    "plan": {"--check", "--version"},  # `advisories --check FILE`; the artifact's --version
    "facts": {"--facts"},  # what `plan --facts` reads
    "audit": {"--check"},  # `advisories --check FILE`
    "sign": {"--allowed-signers"},  # `apply --allowed-signers` then accepts it
}

JSON_FLAG_BEFORE = {"unstick", "apply", "resume", "status"}
REPORT_COMMANDS = ["plan", "facts", "audit", "unstick", "apply", "resume", "status", "rollback",
                   "advisories", "lab status"]  # fmt: skip


def _commands() -> list[list[str]]:
    words = [[command.name or getattr(command.callback, "__name__", "")] for command in
             app.registered_commands]  # fmt: skip
    words += [["lab", command.name or ""] for command in lab_app.registered_commands]
    return [[], ["lab"], *words]


def _help(words: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "220")  # one row per option: nothing wrapped mid-label
    done = CliRunner().invoke(app, [*words, "--help"], prog_name="runc-rollout")
    assert done.exit_code == 0, (words, done.output)
    assert "Usage: runc-rollout" in done.output
    return done.output


def _options_of(words: list[str]) -> set[str]:
    command = typer.main.get_command(app)
    ctx = command.make_context("runc-rollout", ["--help"], resilient_parsing=True)
    for word in words:
        found = command.get_command(ctx, word)  # type: ignore[attr-defined]
        assert found is not None, words
        command = found
    names: set[str] = set()
    for param in command.get_params(ctx):
        names |= {*param.opts, *param.secondary_opts}
    return names


def test_typers_own_labels_are_what_the_check_looks_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pattern below catches what typer prints when nothing makes it readable."""
    plain = typer.Typer()

    @plain.command()
    def demo(name: str = typer.Option("x"), flag: bool = typer.Option(False)) -> None:
        """Demo."""

    monkeypatch.setenv("COLUMNS", "220")
    output = CliRunner().invoke(plain, ["--help"]).output
    assert {"<str>", "<bool>"} <= set(TYPE_LABEL.findall(output))


@pytest.mark.parametrize("words", _commands(), ids=lambda words: " ".join(words) or "app")
def test_every_help_has_readable_metavars(
    words: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _help(words, monkeypatch)
    assert TYPE_LABEL.findall(output) == [], output
    assert "[[" not in output and "{" not in output.splitlines()[1], output
    # Rich takes "[word: ...]" in a help text for markup and drops it, leaving "text ." behind.
    assert re.search(r"\w \.(\s|$)", output) is None, output


@pytest.mark.parametrize("words", _commands(), ids=lambda words: " ".join(words) or "app")
def test_help_is_wrapped_at_spaces_only(words: list[str]) -> None:
    """An option name (`--sha256-file`) or a setting (`fs.pipe-user-pages-soft`) is never cut
    at a hyphen where a line wraps (typer's plain screen, as it comes, does that)."""
    output = CliRunner().invoke(app, [*words, "--help"], prog_name="runc-rollout").output
    assert "Usage: runc-rollout" in output
    cut = [line for line in output.splitlines() if re.search(r"\w-$", line)]
    assert not cut, cut


@pytest.mark.parametrize("words", _commands()[2:], ids=lambda words: " ".join(words))
def test_no_help_names_an_option_its_command_lacks(
    words: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _help(words, monkeypatch)
    named = set(OPTION_WORD.findall(output))
    extra = named - _options_of(words) - CROSS_REFERENCES.get(words[0], set())
    assert not extra, f"runc-rollout {' '.join(words)} --help names {sorted(extra)}"
    assert "--json" not in named  # the deprecated alias works and is not offered


@pytest.mark.parametrize("command", REPORT_COMMANDS)
def test_every_report_command_offers_the_one_vocabulary(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _help(command.split(), monkeypatch)
    row = next(line for line in output.splitlines() if "--format" in line)
    assert "[text|markdown|json]" in row, row
    if command in JSON_FLAG_BEFORE:  # the old flag still works for the scripts that use it
        assert "--json" in _options_of([command])


def test_format_words() -> None:
    assert [parse_format(word) for word in ("text", "markdown", "json", "table", "JSON")] == [
        Format.text, Format.markdown, Format.json, Format.text, Format.json,
    ]  # fmt: skip
    with pytest.raises(typer.BadParameter, match="'yaml' is not one of text, markdown, json"):
        parse_format("yaml")


def test_readable_types() -> None:
    assert [
        readable_type(label)
        for label in ("<str>", "<list[Path]>", "<int range>", "<float>", "<ssh|ansible>", "<path>")
    ] == ["TEXT", "PATH", "INTEGER", "NUMBER", "[ssh|ansible]", "PATH"]
