"""The `runc-rollout` command line: the app, its commands (`plan.py`, `diagnose.py`, `runs.py`,
`lab.py`; shared options in `options.py`, shared steps in `support.py`), and every error mapped
to its exit code. The commands parse options, call the library and render.

The backends (paramiko, ansible-runner, the lab, the apply engine) are imported inside the
commands that use them, so `plan` and `status` start without their import cost."""

import sys
from typing import Annotated

import typer

from orchestrator import __version__
from orchestrator.cli.helptext import ReadableGroup
from orchestrator.errors import ExitCode, RolloutError

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 a host or wave failed; 2 bad usage or bad input (nothing changed); "
    "3 rollout halted (a wave over its error budget, or without a success), or a gate said no; "
    "4 the plan no longer matches the fleet (drift), nothing changed; 5 paused (for promotion, "
    "or outside the maintenance windows with --no-wait): resume later; 130 interrupted."
)

app = typer.Typer(
    name="runc-rollout",
    cls=ReadableGroup,
    help="Fleet-wide runc upgrade orchestrator: plan canary waves, swap runc alone, verify, "
    "restore fs.pipe-user-pages-soft, roll back.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # the plain help screen (cli/helptext.py): rich imports markdown
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"runc-rollout {__version__}")
        raise typer.Exit()


def _print_help(context: typer.Context, value: bool) -> None:
    """The app's own `--help`, a plain flag: typer's implicit one is coerced through a pydantic
    adapter on every command, which would import pydantic for `status --help` alone."""
    if value:
        typer.echo(context.get_help())
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    show_help: Annotated[
        bool,
        typer.Option(
            "--help",
            callback=_print_help,
            is_eager=True,
            help="Show this message and exit.",
        ),
    ] = False,
) -> None:
    """Options that come before the subcommand."""


from orchestrator.cli import advisories, diagnose, lab, plan, runs  # noqa: E402 (the app first)

app.command()(plan.plan)
app.command()(diagnose.facts)
app.command()(diagnose.audit)
app.command()(diagnose.unstick)
app.command()(runs.apply)
app.command()(runs.sign)
app.command("verify-plan")(runs.verify_plan)
app.command()(runs.status)
app.command()(runs.resume)
app.command()(runs.rollback)
app.command()(advisories.advisories)
app.add_typer(lab.lab_app, name="lab")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every `RolloutError` becomes one line on stderr and its exit code."""
    try:
        result = app(args=argv, prog_name="runc-rollout", standalone_mode=False)
    except RolloutError as error:
        typer.echo(f"runc-rollout: error: {error}", err=True)
        return int(error.exit_code)
    except typer.Exit as done:
        return int(done.exit_code)
    except typer.TyperException as error:  # usage errors: typer's own usage screen
        show = getattr(error, "show", None)
        if show is not None:
            show()
        else:
            typer.echo(f"runc-rollout: error: {error.message}", err=True)
        return ExitCode.BAD_INPUT
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("runc-rollout: interrupted", err=True)
        return ExitCode.INTERRUPTED
    return result if isinstance(result, int) else ExitCode.OK


def run() -> None:
    sys.exit(main())
