"""`runc-rollout lab up|build-runc|trigger|status|down`: the local lab fleet."""

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.helptext import ReadableGroup
from orchestrator.cli.options import Format, format_option
from orchestrator.errors import BadInput, ExitCode
from orchestrator.lab.defaults import DEFAULT_INVENTORY, DEFAULT_STATE_DIR, FIRST_ADDRESS_ENV
from orchestrator.lab.defaults import STATE_DIR_ENV as LAB_STATE_DIR_ENV

lab_app = typer.Typer(
    cls=ReadableGroup,
    rich_markup_mode=None,
    help="A local fleet of real hosts (own sshd per 127.0.0.x; full hosts also dockerd and "
    "containerd, containerd-only hosts containerd alone), in the incident's state. Needs root.",
    no_args_is_help=True,
)


StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        envvar=LAB_STATE_DIR_ENV,
        help=f"Lab state (default {DEFAULT_STATE_DIR}).",
    ),
]


LabInventoryOption = Annotated[
    Path | None,
    typer.Option("--inventory", help=f"Inventory to write (default {DEFAULT_INVENTORY})."),
]


@lab_app.command("up")
def lab_up(
    hosts: Annotated[int | None, typer.Option("--hosts", min=1, help="Hosts (default 4).")] = None,
    docker: Annotated[
        int | None,
        typer.Option(
            "--docker", min=0, help="Of which full hosts: dockerd and containerd (default 2)."
        ),
    ] = None,
    containerd: Annotated[
        int | None,
        typer.Option(
            "--containerd",
            min=0,
            help="Of which containerd-only hosts after the full ones, as Kubernetes 1.24+ nodes "
            "(CRI, runc by BinaryName, no dockerd; default 0).",
        ),
    ] = None,
    state_dir: StateDirOption = None,
    inventory: LabInventoryOption = None,
    first_address: Annotated[
        str | None,
        typer.Option("--first-address", envvar=FIRST_ADDRESS_ENV, help="e.g. 127.0.0.11"),
    ] = None,
    stuck: Annotated[
        bool,
        typer.Option(
            "--stuck",
            help="Also hang one container on the first full host for real (container lab-stuck, "
            "its runc init blocked writing its seccomp pipe), as on the incident's nodes.",
        ),
    ] = False,
    no_python: Annotated[
        int,
        typer.Option(
            "--no-python",
            min=0,
            help="Of which hosts, the first ones, without Python (python3 cannot run there), "
            "as a minimal CentOS 7, Flatcar or Fedora CoreOS node (default 0).",
        ),
    ] = 0,
    packaged_runc: Annotated[
        int,
        typer.Option(
            "--packaged-runc",
            min=0,
            help="Of which hosts, the first ones, with runc as a Debian package's file, as on a "
            "docker.io host: /usr/sbin/runc of the lab's `runc` package (its rc93 build), "
            "installed by dpkg into the host's own dpkg database and /usr/sbin (default 0).",
        ),
    ] = 0,
    rpm_runc: Annotated[
        int,
        typer.Option(
            "--rpm-runc",
            min=0,
            help="Of which hosts, the next ones after --packaged-runc's, with runc as an rpm "
            "package's file (/usr/sbin/runc of the lab's `runc` rpm, rc93), installed by rpm "
            "into the host's own rpm database, with its own /etc/dnf and no dpkg database "
            "(default 0; needs Debian's rpm).",
        ),
    ] = 0,
    busybox: Annotated[
        int,
        typer.Option(
            "--busybox",
            min=0,
            help="Of which hosts, the first ones, with a busybox userland (sh, awk, sed, "
            "coreutils are busybox's applets; util-linux stays) and no Python (default 0).",
        ),
    ] = 0,
    read_only: Annotated[
        int,
        typer.Option(
            "--read-only",
            min=0,
            help="Of which hosts, the last ones, with their runc's folder mounted read-only, as "
            "/usr on Flatcar and Fedora CoreOS: plan holds them back (default 0).",
        ),
    ] = 0,
    link_runc: Annotated[
        bool,
        typer.Option(
            "--link-runc",
            help="Light hosts' rc93 is a hard link to the lab's one copy, not a 13 MB copy each "
            "(for labs of hundreds of hosts; runc-rollout replaces a runc by rename, never in "
            "place, so hosts stay apart; a tool that wrote into one would change them all).",
        ),
    ] = False,
    runtime: Annotated[
        list[str] | None,
        typer.Option(
            "--runtime",
            help="Docker's default runtime on the next full host, once per host from the first: "
            "runc, nvidia (NVIDIA's Container Runtime shim in front of runc), crun or runsc "
            "(Debian's), or mountns (dockerd and containerd in a mount namespace of their own).",
        ),
    ] = None,
) -> None:
    """Start the lab (idempotent: a running lab only gets what died restarted). Every host's
    runc is a real 1.0.0-rc93 build (Debian's runc source with rc93's pipe hang), built once
    and cached in /var/cache/runc-rollout-lab."""
    from orchestrator.lab import fleet, text
    from orchestrator.lab.records import RUNTIMES, LabRuntime

    by_name: dict[str, LabRuntime] = {name: name for name in RUNTIMES}
    unknown = [name for name in runtime or [] if name not in by_name]
    if unknown:
        raise BadInput(f"--runtime: {unknown[0]!r} is not one of {', '.join(RUNTIMES)}")
    info = fleet.lab_up(
        hosts,
        docker,
        containerd,
        state_dir=state_dir,
        inventory_path=inventory,
        first_address=first_address,
        stuck=stuck,
        no_python=no_python,
        packaged_runc=packaged_runc,
        rpm_runc=rpm_runc,
        busybox=busybox,
        read_only=read_only,
        link_runc=link_runc,
        runtimes=[by_name[name] for name in runtime or []],
    )
    typer.echo(text.format_up(info))


@lab_app.command("build-runc")
def lab_build_runc() -> None:
    """Build the lab's runc 1.0.0-rc93 (Debian's runc source with rc93's pipe hang) unless it
    is cached for today's inputs (source package version, recipe, Go version); print its path."""
    from orchestrator.lab import rc93

    build = rc93.ensure_rc93_runc()
    how = f"built in {build.seconds:.1f}s" if build.built else "cached"
    typer.echo(f"runc {rc93.VERSION} ({how}): {build.path}")


@lab_app.command("trigger")
def lab_trigger(
    hosts: Annotated[
        list[str] | None,
        typer.Option("--host", help="A full lab host (repeatable; default: every full host)."),
    ] = None,
    state_dir: StateDirOption = None,
) -> int:
    """Run the rc93 trigger once on full lab hosts: a no-new-privileges container with a seccomp
    program over 8 KiB, as a uid a pipe holder put over fs.pipe-user-pages-soft. rc93 hangs in
    runc init (killed at once, container removed; exit 1), a fixed runc passes."""
    from orchestrator.lab import fleet

    runs = fleet.lab_trigger(state_dir, hosts)
    typer.echo(fleet.format_trigger(runs))
    return ExitCode.HOST_FAILED if any(run.outcome != "passed" for run in runs) else ExitCode.OK


@lab_app.command("status")
def lab_status(
    state_dir: StateDirOption = None,
    fmt: Annotated[
        Format,
        format_option(
            "text: a table; markdown: the same for a ticket; json: every host's status, its "
            "processes' PIDs too"
        ),
    ] = Format.text,
) -> None:
    """Each lab host: address, runc version and checksum, sysctl, daemons alive."""
    from orchestrator.lab import fleet, text

    views = {
        Format.text: text.format_status,
        Format.markdown: text.status_markdown,
        Format.json: text.status_json,
    }
    typer.echo(views[fmt](fleet.lab_status(state_dir)))


@lab_app.command("down")
def lab_down(state_dir: StateDirOption = None, inventory: LabInventoryOption = None) -> None:
    """Stop the lab's own processes (by recorded PID), unmount, remove its files. Safe twice."""
    from orchestrator.lab import fleet, text

    typer.echo(text.format_down(fleet.lab_down(state_dir, inventory)))
