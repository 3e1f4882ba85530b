"""End-to-end throughput and cancel latency through real sockets.

Starts the reference scheduler (2 workers) and a client on loopback in this
process, and prints, each beside a baseline measured in the same run:

* no-op tasks per second for ``--tasks`` tasks submitted at once, against a
  stdlib ``ProcessPoolExecutor`` with as many worker processes running the
  same calls (the same machine doing the same work without a scheduler);
* the lifecycle's own share: one ``FutureManager`` track + result delivery,
  in-process, per task;
* cancel latency (``cancel()`` call to return) for a queued task and for a
  running task (forced), median of ``--cancels`` runs each;
* the cost of worker isolation (a worker runs one client's code, and is
  replaced before it serves another): throughput of one client, and of two
  clients submitting at once, with ``isolate_clients`` on and off, each
  against its own scheduler started in this process;
* fairness: how long one client's single task takes while another client
  has ``--backlog`` tasks queued, against the same task with nothing else
  queued.

Run: ``python bench/e2e.py`` (``--skip-isolation``, ``--skip-fairness`` to
leave those out).
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


def two_clients_throughput(address: str, n: int) -> float:
    """Tasks per second when two clients each submit ``n // 2`` at once."""
    with Client(address) as first, Client(address) as second:
        throughput(first, 20)
        throughput(second, 20)
        started = time.perf_counter()
        futures = [client.submit(operator.add, i, 1) for i in range(n // 2) for client in (first, second)]
        for future in futures:
            future.result(timeout=300)
        return n / (time.perf_counter() - started)


def isolation_cost(n: int, workers: int) -> None:
    rates: dict[bool, tuple[float, float]] = {}
    for isolate in (False, True):
        with Scheduler("tcp://127.0.0.1:*", workers=workers, isolate_clients=isolate) as scheduler:
            with Client(scheduler.address) as client:
                throughput(client, 200)
                one = statistics.median(throughput(client, n) for _ in range(3))
            two = statistics.median(two_clients_throughput(scheduler.address, n) for _ in range(3))
            rates[isolate] = (one, two)
            recycled = scheduler.stats["recycled"]
        print(
            f"isolate_clients={isolate!s:5}  one client {one:8.0f} tasks/s   two clients at once {two:8.0f} tasks/s"
            f"   workers replaced {recycled}"
        )
    (shared_one, shared_two), (own_one, own_two) = rates[False], rates[True]
    print(f"isolation cost   one client {own_one / shared_one:.2f}x   two clients {own_two / shared_two:.2f}x the shared-worker throughput")


def single_task_latency(client: Client) -> float:
    started = time.perf_counter()
    client.submit(operator.add, 1, 1).result(timeout=300)
    return time.perf_counter() - started


def fairness(backlog: int, workers: int, isolate: bool) -> None:
    with Scheduler("tcp://127.0.0.1:*", workers=workers, isolate_clients=isolate) as scheduler:
        with Client(scheduler.address) as busy, Client(scheduler.address) as other:
            throughput(busy, 100)
            throughput(other, 100)
            alone = statistics.median(single_task_latency(other) for _ in range(5))
            queued = [busy.submit(operator.add, i, 1) for i in range(backlog)]
            time.sleep(0.2)  # the backlog is on the scheduler
            behind = single_task_latency(other)
            left = sum(not future.done() for future in queued)
            for future in queued:
                future.result(timeout=300)
    print(
        f"fairness         isolate_clients={isolate!s:5} one task behind another client's {backlog} queued: {behind * 1e3:7.1f} ms"
        f"   alone {alone * 1e3:6.1f} ms   ratio {behind / alone:.1f}x   ({left} of the backlog still unfinished then)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cancels", type=int, default=5)
    parser.add_argument("--backlog", type=int, default=20_000, help="another client's queued tasks, for fairness")
    parser.add_argument("--skip-isolation", action="store_true")
    parser.add_argument("--skip-fairness", action="store_true")
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
    if not args.skip_isolation:
        isolation_cost(args.tasks, args.workers)
    if not args.skip_fairness:
        for isolate in (False, True):
            fairness(args.backlog, args.workers, isolate)


if __name__ == "__main__":
    main()
