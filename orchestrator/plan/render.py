"""Views of a plan: JSON for scripts, Markdown for the reviewer, a rich table for the terminal."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from orchestrator.diagnose.changelog import distribution_build
from orchestrator.models import Artifact, PackagedRunc, Plan, TargetAdvisory, Wave
from orchestrator.plan.controls import (
    change_markdown,
    change_table_lines,
    gates_markdown,
    windows_markdown,
    windows_table_lines,
)
from orchestrator.plan.review import settings_lines, settings_markdown
from orchestrator.util.textsafe import markdown_code, markdown_text, markup_safe, terminal_safe

HOST_STEPS = (
    "re-read facts; stop with *drift* if runc or the sysctl no longer match the plan",
    "stage the artifact at a temporary name beside the runc the runtime executes: the host's "
    "own copy (staged by this run already, or in its backup store), else fetched by the host "
    "from the artifact URL (if the plan has one), else pushed by the controller (gzip)",
    "take the host-side lock",
    "check its sha256 on the host and run its `--version` there",
    "keep the old runc in the host-side backup store, named by its sha256",
    "write the host-side record of the *before* state",
    "swap: one `rename()` over the old path (dockerd, containerd and containers keep running)",
    "verify: `runc --version`, dockerd/containerd PIDs unchanged, a no-new-privileges container "
    "within a hard timeout, `docker exec` into a running container, no stuck `runc init`",
    "the incident probe: a probe uid pushed over `fs.pipe-user-pages-soft` by a helper holding "
    "pipes, then a no-new-privileges container as that uid with a seccomp program well over "
    "8 KiB (docker, else containerd's `ctr`, else an OCI bundle run by the new runc); rc93 hangs "
    "there, a fixed runc passes in about a second; anything but a pass rolls the host back",
    "restore `fs.pipe-user-pages-soft` at runtime and in the file that raised it (backup kept)",
    "record the outcome on the host and in the local journal",
)


def plan_json_chunks(plan: Plan) -> Iterator[bytes]:
    """The plan file's content in pieces: a 100k-host plan is ~70 MB of JSON."""
    yield from plan.json_chunks(indent=2)
    yield b"\n"


def plan_json(plan: Plan) -> bytes:
    """The plan file's content, whole."""
    return b"".join(plan_json_chunks(plan))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _budget(wave: Wave) -> str:
    return f"halt if more than {wave.max_failures} fail"


def _domain_cells(wave: Wave, domains: Iterable[str]) -> list[str]:
    return [str(wave.domains.get(domain, 0) or "") for domain in domains]


UNKNOWN_TARGET = "(chosen on the host at apply: plan without --gather)"


def _targets(plan: Plan) -> list[tuple[str, list[str]]]:
    """Each file to be swapped (the plan's "before"), and the hosts that have it."""
    targets: dict[str, list[str]] = {}
    for host in plan.hosts:
        before = host.before
        path = before.runc_path if before is not None else UNKNOWN_TARGET
        if before is not None and before.runc_via:
            shim = before.runc_via.rpartition("/")[2]
            path += f" (runc behind {shim} `{before.runc_via}`, which is left as it is)"
        targets.setdefault(path, []).append(host.name)
    return list(targets.items())


def plan_markdown(plan: Plan, *, now: float | None = None) -> str:
    """The reviewer's document; `now`: list the maintenance windows' next openings after it."""
    opts = plan.options
    swaps = sum(1 for host in plan.hosts if host.action == "swap")
    noops = len(plan.hosts) - swaps
    art = plan.artifact
    domains = list(plan.domains)
    code, text = markdown_code, markdown_text  # for everything an inventory or a host gave
    out = [
        f"# runc rollout change plan `{plan.plan_id}`",
        "",
        *change_markdown(plan),
        *target_markdown(plan),
        "## Summary",
        "",
        f"- **Hosts:** {len(plan.hosts)} selected ({swaps} to swap, {noops} already at target), "
        f"{len(plan.skipped)} held back, {len(plan.unreachable)} unreachable at plan time",
        f"- **Waves:** {len(plan.waves)} (`--waves {','.join(opts.waves)}`)",
        f"- **Failure domains** ({code(opts.domain_key or '-')}): "
        + ", ".join(f"{text(name)} ({count})" for name, count in plan.domains.items()),
        f"- **Artifact:** {code(art.path)} ({art.size} bytes), version "
        f"{code(art.version or 'unknown (did not run here)')}, commit {code(art.commit or '-')}",
        f"- **sha256:** `{art.sha256}`",
        f"- **Hosts fetch it from:** {code(art.url)} (a host that cannot gets it pushed)"
        if art.url
        else "- **Hosts get it:** pushed by the controller (gzip)",
        f"- **Inventory:** {', '.join(_source(plan, source) for source in plan.inventory)}"
        + (f", limited to {code(opts.limit)}" if opts.limit else ""),
        f"- **Plan hash:** `{plan.plan_hash}` (apply refuses the plan if its body changes)",
        "",
    ]
    if plan.notes:
        out += ["Notes:", "", *[f"- {text(note)}" for note in plan.notes], ""]
    if plan.unreachable:
        left_out = [item.name for item in plan.unreachable]
        out += [
            f"> **WARNING: {_plural(len(left_out), 'selected host')} could not be reached at "
            "plan time and will not be changed by this plan** (see *Unreachable at plan time*): "
            + ", ".join(code(name) for name in left_out[:20])
            + (f" and {len(left_out) - 20} more" if len(left_out) > 20 else ""),
            "",
        ]
    unproven = unprobed_hosts(plan)
    if unproven:
        out += [
            f"> **WARNING: the fix is NOT proven on {_plural(len(unproven), 'host')}**: the "
            "incident probe is off (`--no-probe` or `runc_rollout_probe: false`), so nothing "
            "shows that the new runc does not hang the way rc93 does: "
            + ", ".join(code(name) for name in unproven[:20])
            + (f" and {len(unproven) - 20} more" if len(unproven) > 20 else ""),
            "",
        ]
    out += packages_markdown(plan)
    out += [
        "## Waves",
        "",
        "| wave | hosts | " + " | ".join(map(text, domains)) + " | error budget | note |",
        "|---:|---:|" + "---:|" * len(domains) + "---|---|",
    ]
    for wave in plan.waves:
        cells = [str(wave.index), str(len(wave.hosts)), *_domain_cells(wave, domains)]
        out.append("| " + " | ".join([*cells, _budget(wave), text(wave.note or "")]) + " |")
    out += ["", "### Hosts by wave", ""]
    for wave in plan.waves:
        names = ", ".join(
            code(host.name) + ("" if host.action == "swap" else f" (noop: {text(host.reason)})")
            for host in wave.hosts
        )
        out.append(f"- wave {wave.index}: {names}")
    out += ["", "### The runc each host gets swapped", ""]
    out += [f"- {code(path)}: {', '.join(map(code, names))}" for path, names in _targets(plan)]
    out += ["", *settings_markdown(plan)]
    out += ["## Steps on each host", ""]
    out += [f"{number}. {step}" for number, step in enumerate(HOST_STEPS, 1)]
    out += [
        "",
        f"The sysctl target is `fs.pipe-user-pages-soft = {opts.sysctl_target}`; it is restored "
        "only after the host's new runc has been verified.",
        "",
        "## Error budget and gates",
        "",
        f"- `--max-failures {opts.max_failures}` per wave: a failed or **unreachable** host "
        "counts; a wave with more failures than its budget halts the rollout (exit 3) and no "
        "further wave starts.",
        "- A wave in which no host succeeded (none upgraded, none already at the target) halts "
        "the rollout too (exit 3), whatever its budget allows.",
        "- A host that fails verification is rolled back at once.",
        f"- Bake time between waves: {opts.bake_seconds:g} s.",
        (
            f"- Pause after wave {opts.pause_after} for a human to promote (`runc-rollout resume`)."
            if opts.pause_after is not None
            else "- No pause between waves."
        ),
        *gates_markdown(plan),
        *windows_markdown(plan, now),
        "",
        "## Rolling back",
        "",
        "- A host that fails is rolled back automatically: the raised sysctl first, then the old "
        "runc by rename from the host-side backup store, then verified.",
        "- `runc-rollout rollback RUN [--host H]...` returns hosts to their recorded *before*; "
        "the host-side records alone are enough (`rollback -i INVENTORY --limit P`) if the machine "
        "that ran the rollout is gone.",
        "",
        "## Held back",
        "",
    ]
    out += [f"- {code(item.name)}: {text(item.reason)}" for item in plan.skipped] or ["- none"]
    out += ["", "## Unreachable at plan time", ""]
    out += [f"- {code(item.name)}: {text(item.reason)}" for item in plan.unreachable] or ["- none"]
    return "\n".join(out) + "\n"


POLICY_WORDS = {
    "divert": "local diversion (`dpkg-divert --local`): the package's next install or upgrade "
    "puts its runc beside the rolled-out one, not over it; rollback gives the package its own "
    "file back and removes the diversion",
    "hold": "held: an `exclude=` of the package in the dnf/yum configuration, so the package "
    "manager cannot bring its runc back; `rpm -V` reports the file changed (audit explains "
    "it); rollback restores the file and removes the exclude",
    "leave": "**left as it is: the next install, reinstall or upgrade of the package puts its "
    "own runc back over the rolled-out one, silently**",
}


def packaged_hosts(plan: Plan) -> list[tuple[str, PackagedRunc]]:
    """(host, packaged runc) of every host to swap whose runc a package owns, in wave order."""
    return [
        (host.name, item)
        for host in plan.hosts
        if host.action == "swap" and host.before is not None
        for item in host.before.packages
    ]


def packages_markdown(plan: Plan) -> list[str]:
    """The packaged runc files, their packages and what the rollout does about them: where the
    reviewer sees them, before the waves."""
    packaged = packaged_hosts(plan)
    if not packaged:
        return []
    code = markdown_code
    left = [name for name, item in packaged if item.policy == "leave"]
    out = [
        f"## Packaged runc ({_plural(len({name for name, _ in packaged}), 'host')})",
        "",
        "A package owns the runc these hosts' runtimes execute: its next install, reinstall or "
        "upgrade would put the package's runc back.",
        "",
    ]
    if left:
        out += [
            f"> **WARNING: the package manager will undo the swap on {_plural(len(left), 'host')}"
            "** (package policy `leave`): "
            + ", ".join(code(name) for name in left[:20])
            + (f" and {len(left) - 20} more" if len(left) > 20 else ""),
            "",
        ]
    out += ["| host | runc | package | version | manager | policy |", "|---|---|---|---|---|---|"]
    for name, item in packaged[:200]:
        cells = [code(name), code(item.path), code(item.package), code(item.version or "?")]
        out.append("| " + " | ".join([*cells, item.manager, f"**{item.policy}**"]) + " |")
    if len(packaged) > 200:
        out.append(f"| and {len(packaged) - 200} more | | | | | |")
    out += ["", "Policies:", ""]
    for policy in sorted({item.policy for _, item in packaged}):
        out.append(f"- **{policy}**: {POLICY_WORDS[policy]}")
    return [*out, ""]


def plan_table(plan: Plan, width: int = 120, *, now: float | None = None) -> str:
    """The terminal view, rendered to text so the caller decides where it goes."""
    from rich.console import Console  # (here: the plan file and Markdown need no rich)
    from rich.markup import escape
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, highlight=False)
    art = plan.artifact
    console.print(
        f"[bold]{plan.plan_id}[/]  {_plural(len(plan.hosts), 'host')} in "
        f"{_plural(len(plan.waves), 'wave')}, {len(plan.skipped)} held back, "
        f"{len(plan.unreachable)} unreachable\n"
        + escape(f"artifact {art.path} version {art.version or '?'} sha256 {art.sha256}")
        + (escape(f"\nhosts fetch it from {art.url}") if art.url else "")
    )
    for line in change_table_lines(plan) + windows_table_lines(plan, now):
        console.print(line, markup=False)
    domains = list(plan.domains)
    table = Table(show_lines=False)
    table.add_column("wave", justify="right")
    table.add_column("hosts", justify="right")
    for domain in domains:
        table.add_column(markup_safe(domain), justify="right")
    table.add_column("budget")
    table.add_column("note")
    for wave in plan.waves:
        table.add_row(
            str(wave.index),
            str(len(wave.hosts)),
            *_domain_cells(wave, domains),
            f"≤{wave.max_failures} fail",
            markup_safe(wave.note or ""),
        )
    console.print(table)
    for line in target_lines(plan):
        console.print(line, markup=False)
    for path, names in _targets(plan):
        console.print(terminal_safe(f"target {path}: {_plural(len(names), 'host')}"), markup=False)
    for name, packaged in packaged_hosts(plan):
        line = f"package: {name}: {packaged.path} of {packaged.package} {packaged.version or '?'}"
        line += f" ({packaged.manager}), policy {packaged.policy}"
        if packaged.policy == "leave":
            line += " (WARNING: the package manager will undo the swap)"
        console.print(terminal_safe(line), markup=False)
    for item in plan.skipped:
        console.print(terminal_safe(f"held back: {item.name}: {item.reason}"), markup=False)
    for item in plan.unreachable:
        console.print(
            terminal_safe(f"UNREACHABLE at plan time, in no wave: {item.name}: {item.reason}"),
            markup=False,
        )
    for note in plan.notes:
        console.print(terminal_safe(f"note: {note}"), markup=False)
    for line in settings_lines(plan):
        console.print(line, markup=False)
    unproven = unprobed_hosts(plan)
    if unproven:
        console.print(
            f"[bold red]WARNING: incident probe off on {_plural(len(unproven), 'host')}: "
            "the fix is NOT proven there[/]"
        )
    return buffer.getvalue()


def unprobed_hosts(plan: Plan) -> list[str]:
    """Hosts to swap whose verification will not run the incident probe."""
    return [host.name for host in plan.hosts if host.action == "swap" and not host.verify.probe]


def _source(plan: Plan, source: str) -> str:
    """An inventory source and what read it (native, or ansible-core for plugins)."""
    reader = plan.inventory_readers.get(source)
    return f"`{source}`" + (f" (read by {reader})" if reader else "")


# ---------------------------------------------------------------------------------------------
# The target's advisories and provenance


def _advisory_line(advisory: TargetAdvisory) -> str:
    accepted = " (accepted: `--accept-advisory`)" if advisory.accepted else ""
    return (
        f"**{advisory.severity}** `{advisory.id}`{accepted}: {advisory.title}; fixed in "
        f"{', '.join(advisory.fixed_in)}"
    )


def _provenance_line(artifact: Artifact) -> str:
    found = artifact.provenance
    if found is None or (found.sha256_file is None and found.signature is None):
        return "not checked: the sha256 was given on the command line, no signature"
    parts = []
    if found.sha256_file is not None:
        parts.append(f"sha256 from `{found.sha256_file}`, line `{found.sha256_name}`")
    if found.signature is not None:
        parts.append(
            f"good OpenPGP signature `{found.signature}` by key `{found.fingerprint}` "
            f"(keyring `{found.keyring}`, checked with gpgv)"
        )
    return "; ".join(parts)


def target_markdown(plan: Plan) -> list[str]:
    """The top of the review: what the target is known to carry, and where it comes from."""
    target = plan.target
    out = ["## Target: advisories and provenance", ""]
    if target is None:
        return [*out, "- not checked (a plan made before target checks)", ""]
    if plan.artifact.version is None and plan.artifact.commit is None:
        refused = ", ".join(f"`{r.id}`" for r in target.refuse) or "nothing"
        out.append(
            "- **Version unknown to the plan**: each host runs the staged file's `--version` "
            f"and refuses, before its swap, a target with: {refused}"
        )
    elif target.advisories:
        out.append(f"- **Advisories of runc {plan.artifact.version}** (by upstream version):")
        out += [f"  - {_advisory_line(advisory)}" for advisory in target.advisories]
        build = distribution_build(plan.artifact.version, plan.artifact.commit)
        if build is not None:
            out.append(
                f"  - it is the distribution build {build}: its changelog may name some of "
                "these fixed (`audit` reads it on hosts where its package is installed)"
            )
    else:
        out.append(f"- **Advisories of runc {plan.artifact.version}**: none known")
    refuses = f"severity {target.refuse_severity} and above, " if target.refuse_severity else ""
    out += [
        f"- **Refused:** {refuses}the rc93 pipe hang"
        + (
            f"; accepted: {', '.join(f'`{a}`' for a in target.accepted)}" if target.accepted else ""
        ),
        f"- **Advisory table:** {target.advisories_source}",
        f"- **Provenance:** {_provenance_line(plan.artifact)}",
        "",
    ]
    return out


def target_lines(plan: Plan) -> list[str]:
    """The target's advisories and provenance for the terminal, one line each."""
    target = plan.target
    if target is None:
        return []
    lines = [f"advisory {a.severity} {a.id}: fixed in {', '.join(a.fixed_in)}"
             + (" (accepted)" if a.accepted else "") for a in target.advisories]  # fmt: skip
    if target.refuse:
        lines.append("refused on each host: " + ", ".join(r.id for r in target.refuse))
    return [*lines, f"provenance: {_provenance_line(plan.artifact)}".replace("`", "")]
