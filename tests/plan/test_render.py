"""What the reviewer reads: every ssh and verify setting that signatures cover, flagged where it
runs something on the controller or changes whose keys are trusted; and host-derived text in the
Markdown shown as text, never as links, images, emphasis or HTML."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from markdown_it import MarkdownIt
from markdown_it.token import Token

from orchestrator.models import HostBefore, Plan, Skipped, VerifySpec
from orchestrator.plan.render import plan_markdown, plan_table
from tests.run.test_journal import small_plan

HOSTILE = "/usr/bin/runc`](http://evil.example/x) ![i](http://evil.example/i.png) *fake* <b>x</b>"
MARKUP = {"link_open", "image", "em_open", "strong_open", "html_inline", "html_block"}


def _reached(plan: Plan) -> Plan:
    """h1 plain; h2 behind a ProxyCommand with its own key and known_hosts; h3 with -F."""
    h1, h2, h3 = plan.hosts
    hosts = {
        "h1": h1,
        "h2": replace(
            h2,
            ssh=replace(
                h2.ssh,
                address="10.0.0.2",
                user="deploy",
                port=2222,
                private_key_file="/keys/deploy",
                known_hosts_file="/tmp/other_known_hosts",
                become=True,
                ssh_args=("-o", "ProxyCommand=ssh -W %h:%p bastion"),
            ),
            verify=VerifySpec(image="busybox:1", command="sh -c true", exec_container="web"),
        ),
        "h3": replace(h3, ssh=replace(h3.ssh, ssh_args=("-F", "/home/x/ssh_config"))),
    }
    waves = [
        wave.model_copy(update={"hosts": [hosts[h.name] for h in wave.hosts]})
        for wave in plan.waves
    ]
    return plan.model_copy(update={"waves": waves}).sealed()


def test_every_ssh_and_verify_setting_is_shown_and_the_risky_ones_flagged() -> None:
    plan = _reached(small_plan())
    text = plan_markdown(plan)
    for shown in ("10.0.0.2", "deploy", "2222", "/keys/deploy", "/tmp/other_known_hosts",
                  "ProxyCommand=ssh -W %h:%p bastion", "/home/x/ssh_config", "busybox:1",
                  "sh -c true", "web", "a free uid drawn for each run"):  # fmt: skip
        assert shown in text, shown
    attention = text.split("### Needs attention", 1)[1].split("\n## ", 1)[0]
    assert "ProxyCommand" in attention and "`h2`" in attention
    assert "-F" in attention and "`h3`" in attention
    assert "known_hosts" in attention
    table = plan_table(plan, width=400)
    for shown in ("10.0.0.2", "/keys/deploy", "ProxyCommand=ssh -W %h:%p bastion", "busybox:1"):
        assert shown in table, shown
    assert "needs attention: ProxyCommand" in table and "needs attention: -F" in table


def _reporting(text: str) -> Plan:
    """A plan whose host- and inventory-derived strings (target path, a failure domain,
    held-back and unreachable reasons, a note) are `text`."""
    plan = small_plan()
    h1 = plan.hosts[0]
    before = HostBefore(runc_path=text, runc_sha256="b" * 64)
    changed = replace(h1, before=before)
    waves = [
        wave.model_copy(update={"hosts": [changed if h.name == "h1" else h for h in wave.hosts]})
        for wave in plan.waves
    ]
    return plan.model_copy(
        update={
            "waves": waves,
            "skipped": [Skipped(name="h9", reason=f"held: {text}")],
            "unreachable": [Skipped(name="h8", reason=f"unreachable: {text}")],
            "notes": [text],
            "domains": {**plan.domains, text: 0},
        }
    ).sealed()


def test_host_derived_text_is_text_in_the_markdown() -> None:
    parser = MarkdownIt("commonmark").enable("table")
    benign = _flat(parser, plan_markdown(_reporting("/usr/bin/runc")))
    tokens = _flat(parser, plan_markdown(_reporting(HOSTILE)))
    count = Counter(t.type for t in tokens if t.type in MARKUP)
    assert count == Counter(t.type for t in benign if t.type in MARKUP)  # the template's only
    shown = "".join(t.content for t in tokens if t.type in ("text", "code_inline"))
    assert shown.count(HOSTILE) == 6  # target, held back, unreachable, note, domain twice


def _flat(parser: MarkdownIt, text: str) -> list[Token]:
    tokens: list[Token] = []
    for token in parser.parse(text):
        tokens.append(token)
        tokens.extend(token.children or [])
    return tokens


def test_the_terminal_names_a_few_addresses_and_counts_the_rest() -> None:
    """Every host at an address of its own (a real inventory's ansible_host): the table shows
    NAMED of them and a count, not a line per host; the Markdown and the plan file have all."""
    from orchestrator.plan.review import NAMED

    plan = small_plan()
    many = [
        replace(
            plan.hosts[0],
            name=f"n{index}",
            ssh=replace(plan.hosts[0].ssh, address=f"10.9.0.{index}"),
        )
        for index in range(NAMED + 5)
    ]
    wave = plan.waves[0].model_copy(update={"hosts": many, "domains": {"a": len(many)}})
    plan = plan.model_copy(update={"waves": [wave], "domains": {"a": len(many)}}).sealed()
    lines = [
        line for line in plan_table(plan, width=400).splitlines() if line.startswith("address")
    ]
    assert lines[:NAMED] == [f"address: n{index} at 10.9.0.{index}" for index in range(NAMED)]
    assert lines[NAMED:] == [
        "address: 5 more hosts at addresses of their own (the plan file lists them all; so does "
        "--format markdown)"
    ]
    assert f"`n{NAMED + 4}` at `10.9.0.{NAMED + 4}`" in plan_markdown(plan)


def test_the_probe_uid_is_named_or_said_to_be_drawn_for_each_run() -> None:
    """A plan whose inventory forces no probe uid says the run draws one, not "uid None"."""
    plan = small_plan()
    assert plan.hosts[0].verify.probe_uid is None
    for text in (plan_markdown(plan), plan_table(plan, width=400)):
        assert "uid None" not in text
        assert "a free uid drawn for each run" in text
    forced = plan.hosts[0].verify.model_copy(update={"probe_uid": 4242})
    assert "as uid 4242" in plan_markdown(_with_verify(plan, forced))


def _with_verify(plan: Plan, verify: VerifySpec) -> Plan:
    waves = [
        wave.model_copy(update={"hosts": [replace(host, verify=verify) for host in wave.hosts]})
        for wave in plan.waves
    ]
    return plan.model_copy(update={"waves": waves}).sealed()
