"""End-to-end throughput and cancel latency through real sockets.

Starts the reference scheduler (2 workers) and a client on loopback in this
process, and prints, each beside a baseline measured in the same run:

* no-op tasks per second for ``--tasks`` tasks submitted at once, against a
  stdlib ``ProcessPoolExecutor`` with as many worker processes running the
  same calls (the same machine doing the same work without a scheduler);
* the lifecycle's own share: one ``FutureManager`` track + result delivery,
  in-process, per task;
* cancel latency (``cancel()`` call to return) for a queued task and for a
  running task (forced), median of ``--cancels`` runs each.

Run: ``python bench/e2e.py``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import operator
import statistics
import time

from taskfate.client import Client, FutureManager
from taskfate.protocol import TaskID, TaskResult, TaskResultType
from taskfate.scheduler import Scheduler


def throughput(client: Client, n: int) -> float:
    started = time.perf_counter()
    futures = [client.submit(operator.add, i, 1) for i in range(n)]
    for future in futures:
        future.result(timeout=120)
    return n / (time.perf_counter() - started)


def pool_throughput(n: int, workers: int) -> float:
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        list(pool.map(operator.add, range(100), range(100)))  # start the workers
        started = time.perf_counter()
        futures = [pool.submit(operator.add, i, 1) for i in range(n)]
        for future in futures:
            future.result(timeout=120)
        return n / (time.perf_counter() - started)


def lifecycle_share(n: int) -> float:
    manager = FutureManager(lambda message: None)
    ids = [TaskID.new() for _ in range(n)]
    started = time.perf_counter()
    for task_id in ids:
        manager.track(task_id)
        manager.on_message(TaskResult(task_id, TaskResultType.SUCCESS, b""))
    return (time.perf_counter() - started) / n


def cancel_latencies(client: Client, workers: int, runs: int) -> tuple[float, float]:
    queued, running = [], []
    for _ in range(runs):
        busy = [client.submit(time.sleep, 30) for _ in range(workers)]
        waiting = client.submit(time.sleep, 30)
        time.sleep(0.15)  # the sleeps are running; the last one is queued
        started = time.perf_counter()
        assert waiting.cancel(timeout=30) is True
        queued.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert busy[0].cancel(timeout=30) is True
        running.append(time.perf_counter() - started)
        for future in busy[1:]:
            future.cancel(timeout=30)
        time.sleep(0.5)  # replaced workers come up
    return statistics.median(queued), statistics.median(running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cancels", type=int, default=5)
    args = parser.parse_args()

    with Scheduler("tcp://127.0.0.1:*", workers=args.workers) as scheduler:
        with Client(scheduler.address, cancel_timeout=10) as client:
            throughput(client, 200)  # warm up: workers started, sockets connected
            ours = statistics.median(throughput(client, args.tasks) for _ in range(3))
            pool = pool_throughput(args.tasks, args.workers)
            share = lifecycle_share(args.tasks)
            print(f"throughput       taskfate {ours:8.0f} tasks/s   ProcessPoolExecutor {pool:8.0f} tasks/s   ratio {ours / pool:.2f}x")
            print(f"lifecycle share  {share * 1e6:6.2f} us per task in-process = {share * ours * 100:.1f}% of the end-to-end time per task")
            queued, running = cancel_latencies(client, args.workers, args.cancels)
            print(f"cancel latency   queued {queued * 1e3:6.2f} ms   running (force) {running * 1e3:6.2f} ms   (median of {args.cancels})")


if __name__ == "__main__":
    main()
