"""Wave sizing and placement: pure functions, no I/O.

Sizes follow Ansible's `serial` exactly: each entry is a count or a percentage of *all* hosts
(rounded down, at least 1), the last entry repeats until every host is placed, and a count of 0
means "all remaining hosts". Placement adds what Ansible lacks: failure domains. Inside a wave,
hosts are drawn round-robin across domains (the domain with the most hosts left first), so canary
waves span as many domains as possible, and `--max-per-domain` caps how many hosts of one domain a
wave may hold. A wave the cap keeps below its size, and any wave added because of it, carries a
note.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from orchestrator.errors import BadInput

T = TypeVar("T")


@dataclass(frozen=True)
class Size:
    """A count (`5`) or a percentage (`10%`) as written by the operator."""

    value: int
    percent: bool
    text: str

    def of(self, total: int, *, at_least_one: bool = True) -> int:
        """Resolve against `total` the way Ansible's pct_to_int does."""
        if not self.percent:
            return self.value
        resolved = self.value * total // 100
        return max(resolved, 1) if at_least_one else resolved


def parse_size(text: str, *, option: str) -> Size:
    raw = text.strip()
    digits = raw[:-1] if raw.endswith("%") else raw
    if not digits.isdigit():
        raise BadInput(f"{option}: {text!r} is not a count or a percentage such as 5 or 10%")
    return Size(int(digits), raw.endswith("%"), raw)


def parse_sizes(text: str | Sequence[str], *, option: str) -> tuple[Size, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    if not items or any(not item.strip() for item in items):
        raise BadInput(f"{option}: {text!r} has an empty entry; write e.g. 1,10%,50%,100%")
    return tuple(parse_size(item, option=option) for item in items)


def _target_sizes(sizes: Sequence[Size], total: int) -> Iterator[int]:
    """Ansible's batch size for each successive batch; 0 stands for 'all remaining'."""
    for index in range(len(sizes)):
        yield sizes[index].of(total)
    while True:
        yield sizes[-1].of(total)


def serial_batches(sizes: Sequence[Size], total: int) -> list[int]:
    """Batch sizes exactly as Ansible's `serial` produces them for `total` hosts."""
    batches: list[int] = []
    remaining = total
    targets = _target_sizes(sizes, total)
    while remaining > 0:
        size = next(targets)
        take = remaining if size <= 0 else min(size, remaining)
        batches.append(take)
        remaining -= take
    return batches


@dataclass
class WaveDraft(Generic[T]):
    items: list[T]
    domains: dict[str, int]
    target: int
    note: str | None = None


def place_in_waves(
    by_domain: Mapping[str, Sequence[T]],
    sizes: Sequence[Size],
    max_per_domain: Size | None = None,
) -> list[WaveDraft[T]]:
    """Place every item of every domain in exactly one wave.

    `by_domain` keeps its own order (the inventory's, or a seeded shuffle): that order breaks ties.
    """
    return place_in_tiers([Tier(None, by_domain)], sizes, max_per_domain)


@dataclass(frozen=True)
class Tier(Generic[T]):
    """Hosts that go before all later tiers' (`--canary` first, `--last` at the end); a tier's
    hosts never share a wave with another tier's. `label` names them in a wave's note."""

    label: str | None
    by_domain: Mapping[str, Sequence[T]]


def place_in_tiers(
    tiers: Sequence[Tier[T]], sizes: Sequence[Size], max_per_domain: Size | None = None
) -> list[WaveDraft[T]]:
    """Place every item of every tier in exactly one wave, tier after tier; the wave sizes run
    on across tiers as if there were one, and the cap counts each domain's hosts of all tiers."""
    totals: dict[str, int] = {}
    for tier in tiers:
        for domain, items in tier.by_domain.items():
            totals[domain] = totals.get(domain, 0) + len(items)
    total = sum(totals.values())
    baseline = len(serial_batches(sizes, total))
    caps = {
        domain: (max_per_domain.of(count) if max_per_domain else total)
        for domain, count in totals.items()
    }
    order = {domain: index for index, domain in enumerate(totals)}
    waves: list[WaveDraft[T]] = []
    remaining = total
    targets = _target_sizes(sizes, total)
    for tier in tiers:
        queues = {domain: deque(items) for domain, items in tier.by_domain.items() if items}
        left = sum(len(queue) for queue in queues.values())
        while left > 0:
            size = next(targets)
            asked = remaining if size <= 0 else min(size, remaining)
            target = min(asked, left)
            wave = _fill_wave(queues, caps, order, target)
            left -= len(wave.items)
            remaining -= len(wave.items)
            notes = []
            if target < asked:
                notes.append(f"holds {tier.label} alone: {target} of {asked} hosts")
            if len(wave.items) < target:
                notes.append(
                    f"holds {len(wave.items)} of {target} hosts: --max-per-domain "
                    f"{max_per_domain.text if max_per_domain else ''} caps each domain"
                )
            if len(waves) >= baseline:
                causes = ["--max-per-domain"] if max_per_domain else []
                causes += [] if len(tiers) == 1 else ["--canary/--last"]
                notes.append(f"added because {' or '.join(causes)} kept earlier waves smaller")
            wave.note = "; ".join(notes) or None
            waves.append(wave)
    return waves


def _fill_wave(
    queues: Mapping[str, deque[T]], caps: Mapping[str, int], order: Mapping[str, int], target: int
) -> WaveDraft[T]:
    # Heap entries: (taken in this wave, -hosts left, inventory order, domain): the domain with
    # the fewest hosts in this wave comes first, then the one with the most left.
    heap = [
        (0, -len(queue), order[domain], domain)
        for domain, queue in queues.items()
        if queue and caps[domain] > 0
    ]
    heapq.heapify(heap)
    items: list[T] = []
    domains: dict[str, int] = {}
    while heap and len(items) < target:
        taken, _, rank, domain = heapq.heappop(heap)
        queue = queues[domain]
        items.append(queue.popleft())
        domains[domain] = taken + 1
        if queue and taken + 1 < caps[domain]:
            heapq.heappush(heap, (taken + 1, -len(queue), rank, domain))
    ordered = dict(sorted(domains.items(), key=lambda kv: order[kv[0]]))
    return WaveDraft(items=items, domains=ordered, target=target)
