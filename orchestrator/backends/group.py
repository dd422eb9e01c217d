"""Run one function for many hosts at once and keep each host's result or error (fabric's
GroupResult): the caller judges the batch after it has finished."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def run_on_hosts(
    items: Mapping[str, T],
    fn: Callable[[str, T], R],
    *,
    concurrency: int,
    on_done: Callable[[str, R | Exception], None] | None = None,
) -> dict[str, R | Exception]:
    """`fn(name, item)` for every host, at most `concurrency` at a time, each outcome kept.

    Like fabric's GroupResult: one host's exception does not stop the others; the caller judges
    the batch afterwards. Results are in the order of `items`. `on_done` sees each outcome as it
    arrives (in the calling thread). On KeyboardInterrupt, hosts not yet started are cancelled.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    outcomes: dict[str, R | Exception] = {}
    if not items:
        return outcomes
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=min(concurrency, len(items)), thread_name_prefix="host"
    )
    try:
        futures = {pool.submit(fn, name, item): name for name, item in items.items()}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                outcome: R | Exception = future.result()
            except Exception as error:
                outcome = error
            outcomes[name] = outcome
            if on_done is not None:
                on_done(name, outcome)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return {name: outcomes[name] for name in items}
