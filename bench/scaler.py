"""Stock Scaler against taskfate-on-Scaler, same workload, one process, one cluster.

Starts Scaler's own ``SchedulerClusterCombo`` on 127.0.0.1 and runs each
workload through a stock ``scaler.Client`` and through
``taskfate.client.scaler.Client``, alternating in rounds so a noisy machine
shifts both alike, and prints taskfate / stock ratios (1.00 = same cost):

* ``submit``: a few hundred trivial tasks, each submitted then read;
* ``map``: the same tasks through ``Client.map``;
* ``cancel queued``: latency of ``cancel()`` on a task waiting behind busy workers;
* ``cancel running``: latency of ``cancel()`` on a running task (Scaler
  kills the processor after its grace period, so this is seconds);
* ``client-side result path``: no cluster; the cost of delivering one
  result message to the client's future manager and reading ``done()``,
  which is where the lifecycle sits, next to the end-to-end cost per task.

Run: ``python bench/scaler.py`` (needs ``pip install -e '.[scaler]'``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script, this file's folder leads sys.path and its name would hide
# the scaler package itself; the cluster helper lives with the tests.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent / "tests"))

import cloudpickle  # noqa: E402


def trivial(x: int) -> int:
    return x + 1


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _clients(address: str, cancel_timeout: float) -> dict[str, Callable[[], Any]]:
    import scaler

    from taskfate.client.scaler import Client

    return {
        "stock": lambda: scaler.Client(address=address),
        "taskfate": lambda: Client(address=address, cancel_timeout=cancel_timeout),
    }


def _submit_and_read(client: Any, tasks: int) -> float:
    started = time.perf_counter()
    futures = [client.submit(trivial, i) for i in range(tasks)]
    assert [f.result(timeout=120) for f in futures] == [i + 1 for i in range(tasks)]
    return time.perf_counter() - started


def _map(client: Any, tasks: int) -> float:
    started = time.perf_counter()
    assert client.map(trivial, range(tasks)) == [i + 1 for i in range(tasks)]
    return time.perf_counter() - started


def _cancel_queued(client: Any, workers: int) -> float:
    blockers = [client.submit(nap, 0.4) for _ in range(workers * 2)]
    time.sleep(0.1)
    queued = client.submit(trivial, 0)
    started = time.perf_counter()
    assert queued.cancel() is True
    seconds = time.perf_counter() - started
    for blocker in blockers:
        blocker.result(timeout=60)
    return seconds


def _cancel_running(client: Any) -> float:
    running = client.submit(nap, 30)
    time.sleep(0.5)
    started = time.perf_counter()
    assert running.cancel() is True
    return time.perf_counter() - started


def _client_side_result_path(messages: int) -> dict[str, float]:
    """Seconds per result delivered to each future manager, no network."""
    from scaler.client.agent.future_manager import ClientFutureManager
    from scaler.client.future import ScalerFuture
    from scaler.client.serializer.default import DefaultSerializer
    from scaler.protocol import capnp

    from taskfate.client.scaler import ScalerFutureManager

    object_id = os.urandom(32)
    ids = [os.urandom(16) for _ in range(messages)]
    results = [
        capnp.TaskResult(taskId=task_id, resultType=capnp.TaskResultType.success, metadata=b"", results=[object_id])
        for task_id in ids
    ]
    tasks = [types.SimpleNamespace(taskId=task_id) for task_id in ids]

    def deliver(manager: Any, make_future: Callable[[Any], Any]) -> float:
        """Seconds per result: the futures are made first, only delivery is timed."""
        futures = []
        for task in tasks:
            future = make_future(task)
            manager.add_future(future)
            futures.append(future)
        started = time.perf_counter()
        for result in results:
            manager.on_task_result(result)
        elapsed = time.perf_counter() - started
        assert all(f.done() for f in futures)
        return elapsed / messages

    def stock() -> float:
        return deliver(
            ClientFutureManager(DefaultSerializer()),
            lambda task: ScalerFuture(
                task=task, is_delayed=True, group_task_id=None, serializer=None, connector_agent=None, object_buffer=None
            ),
        )

    def ours() -> float:
        manager = ScalerFutureManager(lambda message: None, late_result="cancel", cancel_timeout=30)
        return deliver(manager, lambda task: manager.make_future(task=task, is_delayed=True, group_task_id=None))

    samples: dict[str, list[float]] = {"stock": [], "taskfate": []}
    for _ in range(5):
        samples["stock"].append(stock())
        samples["taskfate"].append(ours())
    return {name: min(values) for name, values in samples.items()}


def _row(name: str, stock: float, ours: float, unit: str, scale: float) -> None:
    print(f"{name:<34} stock {stock * scale:9.2f} {unit:<3} taskfate {ours * scale:9.2f} {unit:<3} ratio {ours / stock:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=300, help="trivial tasks per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per throughput workload")
    parser.add_argument("--queued-cancels", type=int, default=10)
    parser.add_argument("--running-cancels", type=int, default=2, help="each costs Scaler's kill grace (~3 s)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", choices=["ymq", "zmq"], default=os.environ.get("SCALER_NETWORK_BACKEND", "ymq"))
    args = parser.parse_args()

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    from scaler_cluster import running_cluster

    print(f"Scaler over {args.backend}, {args.workers} workers, 127.0.0.1; ratio = taskfate / stock")
    with running_cluster(args.backend, n_workers=args.workers) as cluster:
        makers = _clients(cluster.address, cancel_timeout=30.0)
        clients = {name: make() for name, make in makers.items()}
        try:
            for client in clients.values():
                _submit_and_read(client, 20)  # warm both: functions uploaded, processors started
            timings: dict[str, dict[str, list[float]]] = {}

            def measure(workload: str, repeat: int, run: Callable[[Any], float]) -> None:
                table = timings.setdefault(workload, {"stock": [], "taskfate": []})
                for _ in range(repeat):
                    for name, client in clients.items():
                        table[name].append(run(client))

            measure(f"submit+result x{args.tasks}", args.rounds, lambda c: _submit_and_read(c, args.tasks))
            measure(f"map x{args.tasks}", args.rounds, lambda c: _map(c, args.tasks))
            measure(f"cancel queued (median of {args.queued_cancels})", args.queued_cancels, lambda c: _cancel_queued(c, args.workers))
            measure(f"cancel running (median of {args.running_cancels})", args.running_cancels, _cancel_running)
        finally:
            for client in clients.values():
                client.disconnect()

    for workload, table in timings.items():
        stock, ours = statistics.median(table["stock"]), statistics.median(table["taskfate"])
        if workload.startswith(("submit", "map")):
            _row(workload, stock, ours, "s", 1.0)
            _row(f"  as tasks/s", args.tasks / stock, args.tasks / ours, "/s", 1.0)
        elif stock < 1:
            _row(workload, stock, ours, "ms", 1e3)
        else:
            _row(workload, stock, ours, "s", 1.0)

    path = _client_side_result_path(5000)
    _row("client-side result path", path["stock"], path["taskfate"], "us", 1e6)
    per_task = statistics.median(timings[f"submit+result x{args.tasks}"]["taskfate"]) / args.tasks
    print(f"{'  lifecycle share of a task':<34} {path['taskfate'] / per_task:.2%} of {per_task * 1e3:.2f} ms end to end")


if __name__ == "__main__":
    main()
