"""Wave sizing (Ansible `serial` semantics) and domain-aware placement."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import BadInput
from orchestrator.plan.waves import Size, parse_size, parse_sizes, place_in_waves, serial_batches


def sizes(text: str) -> tuple[Size, ...]:
    return parse_sizes(text, option="--waves")


@pytest.mark.parametrize(
    ("spec", "total", "expected"),
    [
        ("1,10%,50%", 7, [1, 1, 3, 2]),  # the brief's example
        ("30%", 20, [6, 6, 6, 2]),
        ("1,10%,50%,100%", 40, [1, 4, 20, 15]),
        ("100%", 5, [5]),
        ("0", 5, [5]),  # Ansible: 0 means all remaining
        ("1,0", 5, [1, 4]),
        ("10%", 3, [1, 1, 1]),  # rounded down to 0, at least 1
        ("2", 5, [2, 2, 1]),
        ("50", 5, [5]),
        ("1,2,3", 1, [1]),
    ],
)
def test_serial_batches_match_ansible(spec: str, total: int, expected: list[int]) -> None:
    assert serial_batches(sizes(spec), total) == expected


@pytest.mark.parametrize("bad", ["", "1,,2", "x", "-1", "10%%", "1.5", "%"])
def test_bad_wave_specs_are_refused(bad: str) -> None:
    with pytest.raises(BadInput, match="--waves"):
        sizes(bad)


def test_percent_resolves_against_total() -> None:
    assert parse_size("10%", option="x").of(7) == 1
    assert parse_size("10%", option="x").of(7, at_least_one=False) == 0
    assert parse_size("50%", option="x").of(7) == 3


def test_canary_waves_span_domains() -> None:
    by_domain = {"a": list(range(10)), "b": list(range(10, 20)), "c": list(range(20, 30))}
    waves = place_in_waves(by_domain, sizes("1,1,3,100%"))
    assert [w.domains for w in waves[:3]] == [{"a": 1}, {"b": 1}, {"a": 1, "b": 1, "c": 1}]
    assert [len(w.items) for w in waves] == [1, 1, 3, 25]


def test_cap_adds_waves_and_says_why() -> None:
    by_domain = {"a": list(range(8)), "b": [100, 101]}
    waves = place_in_waves(by_domain, sizes("100%"), parse_size("2", option="x"))
    assert [len(w.items) for w in waves] == [4, 2, 2, 2]
    assert waves[0].note is not None and "holds 4 of 10" in waves[0].note
    assert all(w.note and "added" in w.note for w in waves[1:])
    assert all(count <= 2 for w in waves for count in w.domains.values())


domain_maps = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "(no zone)"]), st.integers(1, 40), min_size=1
)
size_lists = st.lists(
    st.one_of(st.integers(0, 30).map(str), st.integers(1, 100).map(lambda p: f"{p}%")),
    min_size=1,
    max_size=4,
)


@given(domain_maps, size_lists, st.one_of(st.none(), st.integers(1, 5)))
def test_placement_properties(counts: dict[str, int], spec: list[str], cap: int | None) -> None:
    by_domain = {d: [(d, i) for i in range(n)] for d, n in counts.items()}
    total = sum(counts.values())
    parsed = parse_sizes(spec, option="--waves")
    waves = place_in_waves(by_domain, parsed, None if cap is None else Size(cap, False, str(cap)))
    placed = [item for wave in waves for item in wave.items]
    # every host in exactly one wave
    assert sorted(placed) == sorted(item for items in by_domain.values() for item in items)
    for wave in waves:
        assert wave.items
        assert sum(wave.domains.values()) == len(wave.items)
        if cap is not None:
            assert max(wave.domains.values()) <= cap
    if cap is None:  # with no cap, exactly Ansible's sizes
        assert [len(w.items) for w in waves] == serial_batches(parsed, total)
    else:  # never larger than asked
        expected = serial_batches(parsed, total)
        for index, wave in enumerate(waves[: len(expected)]):
            assert len(wave.items) <= max(expected[index], wave.target)
