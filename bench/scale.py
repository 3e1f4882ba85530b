"""Time per future as the number of live futures grows.

Run: ``python bench/scale.py`` (10k and 100k live futures; about half a
minute), or ``python bench/scale.py --full`` to add 1M (a few more minutes
and about 2 GB of memory).

For each size n, in one process, each phase runs over n live futures:

* create: ``track`` n futures (all stay live);
* resolve: deliver a ``TaskResult`` to each through ``on_message`` (routing
  and removal from the live table);
* cancel: ``track`` n futures, ``cancel(timeout=0)`` each (a confirm
  deadline armed per future), then a ``TaskCancelConfirm`` to each;
* close: ``track`` n futures and ``close()`` the manager with all of them
  live.

and, as the yardstick, the same sizes of bare ``concurrent.futures.Future``:
create n, then ``set_result`` on each.

Each phase prints microseconds per future and the ratio to the smallest size.
More live objects cost CPython itself more per object (the cyclic garbage
collector walks the older generations, the working set outgrows the caches),
and the bare futures show how much: so each ratio is also divided by the
bare futures' ratio at the same size. No step of ours may be O(n) per future:
an O(n) step would show as a normalized ratio near 10x per size step; the
goal is at most 1.5x. The best of ``--rounds`` runs is kept at each size,
since a slow round here is other load on the machine, not the workload.
"""

from __future__ import annotations

import argparse
import gc

import concurrent.futures
from typing import Any

from _harness import Identity, clock, verdict

from taskfate.client import FutureManager
from taskfate.protocol import CancelConfirmType, TaskCancelConfirm, TaskID, TaskResult, TaskResultType

LIMIT = 1.5


def _ids(n: int) -> list[TaskID]:
    return [TaskID.new() for _ in range(n)]


def bare(n: int) -> float:
    gc.collect()
    Future = concurrent.futures.Future
    started = clock()
    futures: list[concurrent.futures.Future[Any]] = [Future() for _ in range(n)]
    for future in futures:
        future.set_result(b"v")
    elapsed = clock() - started
    assert futures[-1].done()
    return elapsed / n


def create_and_resolve(n: int) -> tuple[float, float]:
    manager = FutureManager(lambda message: None, serializer=Identity())
    ids = _ids(n)
    results = [TaskResult(task_id, TaskResultType.SUCCESS, b"v") for task_id in ids]
    gc.collect()
    track = manager.track
    started = clock()
    futures = [track(task_id) for task_id in ids]
    created = clock() - started
    assert len(manager) == n
    deliver = manager.on_message
    started = clock()
    for message in results:
        deliver(message)
    resolved = clock() - started
    assert len(manager) == 0 and futures[-1].done()
    return created / n, resolved / n


def cancel(n: int) -> float:
    manager = FutureManager(lambda message: None)
    futures = [manager.track(task_id) for task_id in _ids(n)]
    confirms = [TaskCancelConfirm(future.task_id, CancelConfirmType.CANCELED) for future in futures]
    gc.collect()
    started = clock()
    for future in futures:
        future.cancel(0)
    deliver = manager.on_message
    for message in confirms:
        deliver(message)
    elapsed = clock() - started
    assert len(manager) == 0 and futures[-1].cancelled()
    manager.close()
    return elapsed / n


def close(n: int) -> float:
    manager = FutureManager(lambda message: None)
    futures = [manager.track(task_id) for task_id in _ids(n)]
    gc.collect()
    started = clock()
    manager.close()
    elapsed = clock() - started
    assert len(manager) == 0 and futures[0].cancelled()
    return elapsed / n




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="add the 1,000,000-future size")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = [10_000, 100_000] + ([1_000_000] if args.full else [])

    best: dict[str, dict[int, float]] = {}
    for n in sizes:
        for _ in range(args.rounds):
            created, resolved = create_and_resolve(n)
            samples = {
                "create": created,
                "resolve": resolved,
                "cancel": cancel(n),
                "close": close(n),
                "stdlib (yardstick)": bare(n),
            }
            for phase, value in samples.items():
                by_size = best.setdefault(phase, {})
                by_size[n] = min(by_size.get(n, value), value)
    base = sizes[0]
    yardstick = best["stdlib (yardstick)"]
    worst = 0.0
    print(f"{'per future (us)':20s}" + "".join(f"{n:>11,}" for n in sizes) + "   ratio to the smallest (normalized by the yardstick's)")
    for phase, by_size in best.items():
        ratios = [by_size[n] / by_size[base] for n in sizes]
        normalized = [ratio / (yardstick[n] / yardstick[base]) for ratio, n in zip(ratios, sizes)]
        if phase != "stdlib (yardstick)":
            worst = max(worst, *normalized)
        cells = "".join(f"{by_size[n] * 1e6:11.2f}" for n in sizes)
        trend = " ".join(f"{r:.2f}x ({q:.2f}x)" for r, q in zip(ratios[1:], normalized[1:]))
        print(f"{phase:20s}{cells}   {trend}")
    print(f"largest normalized ratio {worst:.2f}x  goal <= {LIMIT}x (flat time per future): {verdict(worst, LIMIT)}")


if __name__ == "__main__":
    main()
