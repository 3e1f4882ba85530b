"""Cost of one future's whole lifecycle, against a bare stdlib future.

Measured in one process, interleaved in rounds, and reported as ratios so a
noisy machine shifts both sides alike. Run: ``python bench/lifecycle.py``.

* full lifecycle: create, result delivered, ``result()`` read, one done
  callback run. taskfate's result goes through ``FutureManager.on_message``
  with a pre-built ``TaskResult`` (decoding is measured by the message-path
  bench) and an identity serializer (payload deserialization is the user's
  choice, not the lifecycle's cost). The bare future does ``Future()``,
  ``add_done_callback``, ``set_result``, ``result()``.
* memory: bytes allocated per live pending future, its manager entry included,
  measured with tracemalloc over many futures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import statistics
import time
import tracemalloc
from typing import Any

from taskfate.client import FutureManager
from taskfate.protocol import TaskID, TaskResult, TaskResultType


class Identity:
    def dumps(self, obj: Any) -> bytes:
        return obj  # type: ignore[no-any-return]

    def loads(self, data: bytes) -> Any:
        return data


def _noop(future: Any) -> None:
    pass


def bare_lifecycle(n: int) -> float:
    Future = concurrent.futures.Future
    started = time.perf_counter()
    for _ in range(n):
        future: concurrent.futures.Future[Any] = Future()
        future.add_done_callback(_noop)
        future.set_result(b"v")
        future.result()
    return (time.perf_counter() - started) / n


def taskfate_lifecycle(n: int) -> float:
    manager = FutureManager(lambda message: None, serializer=Identity())
    ids = [TaskID.new() for _ in range(n)]
    results = [TaskResult(task_id, TaskResultType.SUCCESS, b"v") for task_id in ids]
    track, deliver = manager.track, manager.on_message
    started = time.perf_counter()
    for task_id, message in zip(ids, results):
        future = track(task_id)
        future.add_done_callback(_noop)
        deliver(message)
        future.result()
    elapsed = (time.perf_counter() - started) / n
    assert len(manager) == 0
    return elapsed


def bytes_per_future(make: Any, n: int) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    keep = make(n)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del keep
    return (after - before) / n


def make_bare(n: int) -> list[concurrent.futures.Future[Any]]:
    return [concurrent.futures.Future() for _ in range(n)]


def make_taskfate(n: int) -> Any:
    manager = FutureManager(lambda message: None)
    ids = [TaskID.new() for _ in range(n)]
    futures = [manager.track(task_id) for task_id in ids]
    return manager, futures, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="futures per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    bare, ours = [], []
    for _ in range(args.rounds):
        bare.append(bare_lifecycle(args.n))
        ours.append(taskfate_lifecycle(args.n))
    b, t = statistics.median(bare), statistics.median(ours)
    print(f"full lifecycle   bare {b * 1e6:6.2f} us   taskfate {t * 1e6:6.2f} us   ratio {t / b:.2f}x")

    n = 20_000
    ids_cost = bytes_per_future(lambda k: [TaskID.new() for _ in range(k)], n)
    bare_bytes = bytes_per_future(make_bare, n)
    ours_bytes = bytes_per_future(make_taskfate, n) - ids_cost
    print(
        f"live pending     bare {bare_bytes:6.0f} B    taskfate {ours_bytes:6.0f} B    ratio {ours_bytes / bare_bytes:.2f}x"
        "  (taskfate: future + manager entry, task id excluded)"
    )


if __name__ == "__main__":
    main()
