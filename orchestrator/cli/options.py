"""The options several commands share (typer `Annotated` types), and their enums."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrator.choices import ExecutorName, PushName, SummaryFormat
from orchestrator.errors import BadInput


class Format(StrEnum):
    """What a command prints its report as: `--format text|markdown|json`, one vocabulary for
    every command. `table` is accepted as another name of `text` (plan's, audit's and facts'
    word for it before there was one vocabulary)."""

    text = "text"
    markdown = "markdown"
    json = "json"


FORMAT_ALIASES = {"table": Format.text}
FORMAT_METAVAR = "[text|markdown|json]"


def parse_format(value: str) -> Format:
    """`--format`'s parser: a format's name, or `table` for text; anything else is a usage
    error (exit 2) naming the choices."""
    word = str(value).strip().lower()
    if word in FORMAT_ALIASES:
        return FORMAT_ALIASES[word]
    try:
        return Format(word)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not one of text, markdown, json (table is text)"
        ) from None


def format_option(help_text: str) -> Any:
    """`--format` with the one vocabulary; `help_text` says what each format prints here."""
    return typer.Option(
        "--format", parser=parse_format, metavar=FORMAT_METAVAR, help=help_text + " (table: text)"
    )


def deprecated_json_option() -> Any:
    """The old `--json` flag, kept working for scripts and hidden from --help: `--format json`
    is its name now."""
    return typer.Option("--json", hidden=True, help="Deprecated: --format json.")


def chosen_format(fmt: Format, json_flag: bool, command: str) -> Format:
    """`--format`, or json for the deprecated `--json` (with a warning on stderr)."""
    if not json_flag:
        return fmt
    typer.echo(f"runc-rollout: warning: {command} --json is deprecated: --format json", err=True)
    return Format.json


KnownHostsOption = Annotated[
    Path | None,
    typer.Option(
        "--known-hosts",
        metavar="FILE",
        help="known_hosts file (else the inventory's, else ~/.ssh).",
    ),
]


AskBecomePassOption = Annotated[
    bool,
    typer.Option(
        "--ask-become-pass",
        "-K",
        help="Ask once for the sudo password of hosts with ansible_become (never stored).",
    ),
]


BecomeFromInventoryOption = Annotated[
    bool,
    typer.Option(
        "--become-password-from-inventory",
        help="Use a host's ansible_become_password from the inventory (the plan's, read again; "
        "kept in memory only). Without it, a host that sets one is refused.",
    ),
]


ConcurrencyOption = Annotated[
    int,
    typer.Option(
        "--concurrency", "-f", "--forks", min=1, help="Hosts worked on at once (Ansible's forks)."
    ),
]


RunsDirOption = Annotated[
    Path,
    typer.Option("--runs-dir", envvar="RUNC_ROLLOUT_RUNS", help="Where run journals are kept."),
]


InventoryOption = Annotated[
    list[Path],
    typer.Option(
        "-i",
        "--inventory",
        metavar="INVENTORY",
        help="Ansible inventory file, dir or script, or a host list ('a,b,').",
    ),
]


ProbeTimeoutOption = Annotated[
    float, typer.Option("--probe-timeout", min=1, max=3600, help="Seconds the probe may take.")
]


LIMIT_FILE_MAX = 16 * 1024 * 1024


def expand_limit(value: str | None) -> str | None:
    """`--limit @FILE`, as Ansible reads a retry file: one host or pattern a line (blank lines
    and `#` comments skipped), joined into one pattern."""
    if value is None or not value.startswith("@"):
        return value
    from orchestrator.util.fsutil import read_input

    path = Path(value[1:])
    text = read_input(path, LIMIT_FILE_MAX, "--limit file").decode(errors="replace")
    entries = [line.strip() for line in text.splitlines()]
    names = [entry for entry in entries if entry and not entry.startswith("#")]
    if not names:
        raise BadInput(f"--limit {value}: {path} names no host")
    return ":".join(names)


LimitOption = Annotated[
    str | None,
    typer.Option(
        "-l",
        "--limit",
        callback=expand_limit,
        metavar="PATTERN",
        help="Ansible host pattern (a:b, a:&b, a:!b), or @FILE: a host or pattern a line.",
    ),
]


VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also show each host's phases as it reaches them.")
]


RunFormatOption = Annotated[
    Format,
    format_option(
        "text or markdown: the summary at the end on stdout (markdown to paste into the change "
        "ticket); json: every journal event as one JSON line on stdout, the summary (text) on "
        "stderr"
    ),
]


JsonFlagOption = Annotated[bool, deprecated_json_option()]


NoWaitOption = Annotated[
    bool,
    typer.Option(
        "--no-wait",
        help="Outside the plan's maintenance windows, pause the run and exit 5 (for a scheduler "
        "to `resume` later) instead of waiting for the next window to open.",
    ),
]


NotifyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--notify",
        envvar="RUNC_ROLLOUT_NOTIFY",
        help="Webhook URL (repeatable; or in RUNC_ROLLOUT_NOTIFY, space-separated, which other "
        "local users cannot read in `ps`): a JSON POST, with a Slack-compatible `text`, at the "
        "start, each wave's end, every halt, pause and failed host, and the end. A secret: only "
        "its host name is ever shown or recorded; one that is down never holds up the run.",
    ),
]


@dataclass(frozen=True)
class ShowOptions:
    """How a run is shown: phases too, the summary's format, JSON events on stdout."""

    verbose: bool = False
    fmt: SummaryFormat = SummaryFormat.text
    json_events: bool = False

    @classmethod
    def of(cls, verbose: bool, fmt: Format) -> ShowOptions:
        """`--format json` streams the journal's events on stdout, the summary in text on
        stderr; text and markdown are the summary's format."""
        if fmt is Format.json:
            return cls(verbose, SummaryFormat.text, json_events=True)
        return cls(verbose, SummaryFormat(fmt.value), json_events=False)

    @classmethod
    def of_run(cls, verbose: bool, fmt: Format, json_flag: bool, command: str) -> ShowOptions:
        """apply's and resume's: as `of`, and the deprecated `--json` as it always was (the
        events on stdout, the summary on stderr in --format's text or markdown)."""
        if not json_flag:
            return cls.of(verbose, fmt)
        chosen_format(fmt, json_flag, command)  # the warning
        summary = SummaryFormat.markdown if fmt is Format.markdown else SummaryFormat.text
        return cls(verbose, summary, json_events=True)


ExpectHashOption = Annotated[
    str | None,
    typer.Option(
        "--expect-hash",
        help="Refuse any plan whose plan_hash is not this one (what the merge request approved).",
    ),
]


AllowedSignersOption = Annotated[
    Path | None,
    typer.Option(
        "--allowed-signers",
        envvar="RUNC_ROLLOUT_ALLOWED_SIGNERS",
        help="Reviewers' SSH keys, in git's allowed_signers format: the plan must carry "
        "--required-signatures of theirs (see `sign`).",
    ),
]


RequiredSignaturesOption = Annotated[
    int | None,
    typer.Option(
        "--required-signatures",
        envvar="RUNC_ROLLOUT_REQUIRED_SIGNATURES",
        min=0,
        help="Distinct reviewers (keys) who must have signed the plan (default: 1 with "
        "--allowed-signers, else 0).",
    ),
]


SignaturesOption = Annotated[
    Path | None,
    typer.Option("--signatures", help="The plan's signatures file (default: PLAN.sig)."),
]


ExecutorOption = Annotated[
    ExecutorName,
    typer.Option(
        "--executor",
        help="How hosts are worked on: ssh (built in), or ansible (playbooks/ through "
        "ansible-runner, one job per wave). Both keep the same host-side record.",
    ),
]


PushOption = Annotated[
    PushName,
    typer.Option(
        "--push",
        help="How the controller sends the new runc to a host that has no copy and cannot "
        "fetch the plan's URL: gzip (through the host's shell; 8.7 MB of runc is 3.4 MB), or "
        "plain (as it is, by SFTP: for hosts whose CPU is scarcer than the link).",
    ),
]


WAVES_HELP = (
    "Wave sizes, Ansible `serial` semantics: a comma list of counts or percentages of ALL "
    "selected hosts (rounded down, at least 1); the last entry repeats until every host is "
    "placed; 0 means all remaining. 7 hosts with 1,10%,50% -> 1,1,3,2."
)


ExecutionNodeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--execution-node",
        metavar="DOMAIN=COMMAND",
        help="With --executor ansible: run failure domain DOMAIN's hosts on an execution node "
        "through ansible-runner's streaming (COMMAND's stdin takes the job, its stdout is the "
        "worker's stream), e.g. zone-a='ssh exec-a ansible-runner worker'. Repeatable; each "
        "wave's parts run at once; domains without one run on the controller.",
    ),
]
