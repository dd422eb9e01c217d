"""Bad input never ends in a traceback: random inventories, host patterns, wave specs, plan files
(also edited and re-sealed), facts files, hostile facts output and run directories through
`orchestrator.cli.app.main`, which must either accept them (exit 0) or refuse them with exit 2 and
one clear error line. No lab, no host is ever contacted: plans are
made without --gather, and apply only gets plan files that fail their checks."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from orchestrator.cli.app import main
from orchestrator.diagnose.facts_report import facts_json, facts_table
from orchestrator.errors import ExitCode, FactsError
from orchestrator.host.facts import facts_to_before, parse_facts
from orchestrator.models import Plan
from orchestrator.plan.artifact import sha256_file
from tests.host.test_facts_parse import FULL_HOST

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
GOOD_INVENTORY = """\
[zone_a]
node-a1 zone=zone-a
node-a2 zone=zone-a ansible_host=10.0.0.2
[zone_b]
node-b1 zone=zone-b ansible_port=2222
node-b[2:4] zone=zone-b
[workers:children]
zone_a
zone_b
[all:vars]
ansible_user=root
"""
ERROR_PREFIXES = ("runc-rollout: error: ", "Error: ")

names = st.text(alphabet="abz019-_.[]:!&*~@ ,", min_size=0, max_size=12)
values = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True),
)
yaml_data = st.recursive(
    values,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(names, values), inner, max_size=4)
    ),
    max_leaves=20,
)
ini_lines = st.one_of(
    names.map(lambda name: f"[{name}]"),
    names.map(lambda name: f"[{name}:children]"),
    names.map(lambda name: f"[{name}:vars]"),
    st.tuples(names, names, st.text(max_size=8)).map(lambda t: f"{t[0]} {t[1]}={t[2]}"),
    st.tuples(names, st.integers(-5, 70000)).map(lambda t: f"{t[0]} ansible_port={t[1]}"),
    st.tuples(st.integers(0, 99), st.integers(0, 99)).map(lambda t: f"n[{t[0]}:{t[1]}]"),
    st.text(max_size=30),
)
inventory_texts = st.one_of(
    st.lists(ini_lines, max_size=12).map("\n".join),
    yaml_data.map(lambda data: yaml.safe_dump(data, allow_unicode=True)),
    st.fixed_dictionaries(
        {"all": st.fixed_dictionaries({"hosts": st.dictionaries(names, yaml_data, max_size=3)})}
    ).map(yaml.safe_dump),
    st.binary(max_size=200).map(lambda data: data.decode("latin-1")),
)
patterns = st.one_of(
    st.lists(
        st.one_of(names, st.sampled_from(["all", "*", "zone_a", "~node-a.*", "node-b[2:3]"]))
    ).map(":".join),
    st.text(max_size=20),
)
sizes = st.one_of(
    st.integers(-3, 200).map(str),
    st.integers(-50, 250).map(lambda n: f"{n}%"),
    st.sampled_from(["", " ", "%", "1.5", "1e3", "0x10", "10%%", "-0", "∞", "1_0"]),
    st.text(max_size=6),
)
wave_specs = st.lists(sizes, min_size=0, max_size=5).map(",".join)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="runc-rollout-fuzz-"))
    artifact = path / "runc"
    artifact.write_text("#!/bin/sh\necho 'runc version 1.1.5'\n")
    artifact.chmod(0o755)
    (path / "hosts.ini").write_text(GOOD_INVENTORY)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(args: list[str]) -> tuple[int, str]:
    """`main(args)` with its output captured; an exception escaping it fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, err.getvalue()


def assert_clean(code: int, stderr: str, *, accept: tuple[int, ...] = (0, 2)) -> None:
    assert "Traceback" not in stderr, stderr
    assert code in accept, f"exit {code}: {stderr}"
    if code == ExitCode.BAD_INPUT:
        errors = [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIXES)]
        assert len(errors) == 1, f"not one error line: {stderr!r}"
        assert len(errors[0]) > len("runc-rollout: error: ") + 5, stderr


def plan_args(workdir: Path, inventory: Path, *extra: str) -> list[str]:
    artifact = workdir / "runc"
    output = workdir / "out" / "plan.json"
    return [
        "plan", "-i", str(inventory), "--runc", str(artifact),
        "--sha256", sha256_file(artifact), "-o", str(output), *extra,
    ]  # fmt: skip


@FUZZ
@given(text=inventory_texts, suffix=st.sampled_from(["", ".ini", ".yml", ".yaml", ".json"]))
def test_random_inventories(workdir: Path, text: str, suffix: str) -> None:
    inventory = workdir / f"inventory{suffix}"
    inventory.write_text(text, errors="surrogateescape")
    try:
        assert_clean(*run(plan_args(workdir, inventory)))
    finally:
        inventory.unlink()


@FUZZ
@given(pattern=patterns)
def test_random_host_patterns(workdir: Path, pattern: str) -> None:
    assert_clean(*run(plan_args(workdir, workdir / "hosts.ini", "--limit", pattern)))


@FUZZ
@given(
    waves=wave_specs,
    failures=sizes,
    per_domain=st.one_of(st.none(), sizes),
    pause=st.one_of(st.none(), st.integers(-3, 9)),
    bake=st.floats(allow_nan=True, allow_infinity=True),
    timeout=st.floats(allow_nan=True, allow_infinity=True),
)
def test_random_wave_specs(
    workdir: Path,
    waves: str,
    failures: str,
    per_domain: str | None,
    pause: int | None,
    bake: float,
    timeout: float,
) -> None:
    extra = ["--waves", waves, "--max-failures", failures, "--domain-key", "zone"]
    extra += ["--bake", str(bake), "--verify-timeout", str(timeout)]
    if per_domain is not None:
        extra += ["--max-per-domain", per_domain]
    if pause is not None:
        extra += ["--pause-after", str(pause)]
    assert_clean(*run(plan_args(workdir, workdir / "hosts.ini", *extra)))


def _good_plan(workdir: Path) -> dict[str, Any]:
    path = workdir / "good-plan.json"
    if not path.exists():
        args = plan_args(workdir, workdir / "hosts.ini", "--waves", "1,50%")
        args[args.index("-o") + 1] = str(path)
        code, stderr = run(args)
        assert code == 0, stderr
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _mutate(data: Any, path: list[Any], value: Any) -> Any:
    """`data` with the element at `path` replaced by `value` (an int picks the nth key or item,
    modulo their number; a string names a key, possibly a new one)."""
    if not path or not isinstance(data, dict | list) or not data:
        return value
    step, rest = path[0], path[1:]
    if isinstance(data, dict):
        key = list(data)[step % len(data)] if isinstance(step, int) else step
        return {**data, key: _mutate(data.get(key), rest, value)}
    index = step % len(data) if isinstance(step, int) else 0
    return [*data[:index], _mutate(data[index], rest, value), *data[index + 1 :]]


@FUZZ
@given(
    where=st.lists(st.one_of(st.integers(0, 50), names), max_size=5),
    value=yaml_data,
    cut=st.one_of(st.none(), st.integers(0, 5000)),
    raw=st.one_of(st.none(), st.binary(max_size=300)),
)
def test_random_plan_files(
    workdir: Path, where: list[Any], value: Any, cut: int | None, raw: bytes | None
) -> None:
    plan = workdir / "fuzzed-plan.json"
    good = _good_plan(workdir)
    data = raw if raw is not None else json.dumps(_mutate(good, where, value), allow_nan=True)
    if isinstance(data, str) and cut is not None:
        data = data[:cut]
    with contextlib.suppress(ValueError):  # the same plan in other words (1 as true) is no edit
        original = Plan.model_validate_json(json.dumps(good)).model_dump_json()
        assume(Plan.model_validate_json(data).model_dump_json() != original)
    plan.write_bytes(data.encode() if isinstance(data, str) else data)
    runs = Path(tempfile.mkdtemp(dir=workdir)) / "runs"
    code, stderr = run(["apply", str(plan), "--yes", "--runs-dir", str(runs)])
    assert_clean(code, stderr, accept=(2,))
    assert not runs.exists(), "a run was started"


def test_plan_path_that_is_no_file(workdir: Path) -> None:
    for path in (workdir, workdir / "missing.json", Path("/dev/null")):
        assert_clean(
            *run(["apply", str(path), "--yes", "--runs-dir", str(workdir / "r")]), accept=(2,)
        )


@FUZZ
@given(
    events=st.lists(
        st.one_of(
            st.text(max_size=60),
            st.dictionaries(st.sampled_from(["seq", "time", "type", "host", "status"]), values).map(
                json.dumps
            ),
        ),
        max_size=6,
    ),
    state=st.one_of(st.none(), st.text(max_size=40)),
)
def test_random_run_directories(workdir: Path, events: list[str], state: str | None) -> None:
    """`status` of a run whose event log and state file hold anything: the events it cannot
    read are reported, never fatal."""
    plan = _good_plan(workdir)
    # A run's id names its plan's hash (Journal.open checks it).
    run_dir = Path(
        tempfile.mkdtemp(dir=workdir, prefix=f"20260101T000000Z-{plan['plan_hash'][:8]}-")
    )
    try:
        (run_dir / "plan.json").write_text(json.dumps(plan))
        (run_dir / "events.jsonl").write_text("\n".join(events))
        if state is not None:
            (run_dir / "state.json").write_text(state)
        code, stderr = run(["status", str(run_dir)])
        assert_clean(code, stderr, accept=(0,))
    finally:
        shutil.rmtree(run_dir)


hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
plan_edits = st.one_of(
    st.tuples(st.just(["artifact", "path"]), st.text(min_size=1, max_size=20)),
    st.tuples(st.just(["artifact", "sha256"]), hex64),
    st.tuples(st.just(["options", "sysctl_target"]), st.integers(0, 2**31 - 1)),
    st.tuples(st.just(["options", "bake_seconds"]), st.floats(0, 1000)),
    st.tuples(st.just(["waves", 0, "hosts", 0, "ssh", "address"]), st.text(max_size=20)),
    st.tuples(st.just(["waves", 0, "hosts", 0, "ssh", "user"]), st.text(max_size=20)),
    st.tuples(
        st.just(["waves", 1, "hosts", 0, "verify", "command"]),
        st.sampled_from(["id", "sh -c 'touch /tmp/x'", "true; id"]),
    ),
    st.tuples(st.just(["waves", 0, "max_failures"]), st.integers(0, 9)),
)


@FUZZ
@given(edit=plan_edits)
def test_random_resealed_plans_are_refused_by_the_approved_hash(
    workdir: Path, edit: tuple[list[Any], Any]
) -> None:
    """A plan edited anywhere and re-sealed (its hash recomputed) is a valid plan: only the
    approval tells it apart, and `apply --expect-hash` of the reviewed plan refuses it."""
    good = _good_plan(workdir)
    where, value = edit
    edited = Plan.model_validate_json(json.dumps(_mutate(good, where, value))).sealed()
    assume(edited.plan_hash != good["plan_hash"])
    plan = workdir / "resealed-plan.json"
    plan.write_text(edited.model_dump_json())
    runs = Path(tempfile.mkdtemp(dir=workdir)) / "runs"
    args = ["apply", str(plan), "--yes", "--runs-dir", str(runs), "--expect-hash"]
    code, stderr = run([*args, good["plan_hash"]])
    assert_clean(code, stderr, accept=(2,))
    assert "not the approved" in stderr
    assert not runs.exists(), "a run was started"


def _good_facts(workdir: Path) -> dict[str, Any]:
    facts = parse_facts("node-a1", FULL_HOST)
    data: dict[str, Any] = json.loads(facts_json({"node-a1": facts, "node-a2": facts}))
    return data


@FUZZ
@given(
    where=st.lists(st.one_of(st.integers(0, 50), names), max_size=6),
    value=yaml_data,
    cut=st.one_of(st.none(), st.integers(0, 5000)),
    raw=st.one_of(st.none(), st.binary(max_size=300)),
)
def test_random_facts_files(
    workdir: Path, where: list[Any], value: Any, cut: int | None, raw: bytes | None
) -> None:
    """`plan --facts FILE` with a facts report edited anywhere, cut short, or noise."""
    facts = workdir / "fuzzed-facts.json"
    data = raw if raw is not None else json.dumps(_mutate(_good_facts(workdir), where, value))
    if isinstance(data, str) and cut is not None:
        data = data[:cut]
    facts.write_bytes(data.encode() if isinstance(data, str) else data)
    code, stderr = run(plan_args(workdir, workdir / "hosts.ini", "--facts", str(facts)))
    assert_clean(code, stderr, accept=(0, 1, 2))
    if code == ExitCode.HOST_FAILED:  # a host the report has no usable facts for
        assert stderr.count("could not be gathered") == 1, stderr


SECTIONS = ["host", "proc 1", "foreign 2", "file docker /etc/docker/daemon.json", "runtime-path",
            "binary /usr/sbin/runc", "version /usr/sbin/runc", "alias /bin/runc", "sysctl-runtime",
            "sysctl-files", "sysctl-lines", "record", "end"]  # fmt: skip


@FUZZ
@given(
    sections=st.lists(
        st.tuples(
            st.one_of(st.sampled_from(SECTIONS), st.text(max_size=20)),
            st.one_of(
                st.text(max_size=80),
                st.lists(
                    st.tuples(
                        st.sampled_from(
                            ["stat", "comm", "path", "real", "sha256", "df", "trusted", "why"]
                        ),
                        st.text(max_size=30),
                    ),
                    max_size=5,
                ).map(lambda pairs: "".join(f"{k}={v}\n" for k, v in pairs)),
            ),
        ),
        max_size=10,
    )
)
def test_hostile_facts_output_is_parsed_or_refused(sections: list[tuple[str, str]]) -> None:
    """Whatever a compromised host prints as facts: `HostFacts` or a `FactsError`."""
    nonce = "0123456789abcdef"
    text = f"runc-rollout-facts 1 {nonce}\n" + "".join(
        f"\n@@{nonce}@@ {header}\n{body}" for header, body in sections
    )
    try:
        facts = parse_facts("h", text)
    except FactsError:
        return
    with contextlib.suppress(FactsError):
        facts_to_before(facts)
    facts_table({"h": facts})
