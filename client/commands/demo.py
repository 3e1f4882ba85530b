"""``taskfate demo``: a scheduler, workers and a client, end to end, in seconds.

Starts an embedded reference scheduler on loopback, submits a mix of tasks,
cancels some while queued, some while running (forced and not) and one after
it finished, cancels a graph in the middle of its run, and prints each
future's lifecycle as it went.
"""

from __future__ import annotations

import argparse
import operator
import time
from collections.abc import Callable, Hashable
from typing import Any

from taskfate.client.client import Client
from taskfate.client.future import Future


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a scheduler and a client on loopback and watch futures live",
        description=(
            "Start a reference scheduler with worker processes and a client on loopback, submit tasks, "
            "cancel some while queued, some while running (forced and not), one after it finished and a "
            "graph in the middle of its run, and print each future's lifecycle as it went. Takes a few seconds."
        ),
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    parser.add_argument("--cancel-timeout", type=float, default=5.0, help="lifecycle bound on a cancel (s)")
    parser.set_defaults(handler=run)


def _timed(call: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    value = call()
    return value, time.monotonic() - started


def run(args: argparse.Namespace) -> int:
    from taskfate.scheduler import Scheduler

    started = time.monotonic()
    shown: list[tuple[str, Future, str]] = []
    with Scheduler("tcp://127.0.0.1:*", workers=args.workers) as scheduler:
        with Client(scheduler.address, cancel_timeout=args.cancel_timeout, heartbeat_timeout=5.0) as client:
            squares = list(client.map(operator.mul, range(8), range(8), timeout=30))
            shown.append(("map of 8 squares", client.submit(sum, squares), f"sum {sum(squares)}"))
            shown[-1][1].result(timeout=30)

            finished = client.submit(pow, 2, 10)
            finished.result(timeout=30)
            value, took = _timed(finished.cancel)
            shown.append(("cancel after it finished", finished, f"cancel() -> {value} in {took * 1e3:.1f} ms"))

            # Occupy every worker, then queue one more behind them.
            busy = [client.submit(time.sleep, 30) for _ in range(args.workers)]
            queued = client.submit(time.sleep, 30)
            time.sleep(0.3)
            value, took = _timed(queued.cancel)
            shown.append(("cancel while queued", queued, f"cancel() -> {value} in {took * 1e3:.1f} ms"))

            value, took = _timed(lambda: busy[0].cancel(force=False))
            note = f"cancel(force=False) -> {value} in {took * 1e3:.1f} ms"
            value, took = _timed(busy[0].cancel)
            shown.append(("cancel while running", busy[0], f"{note}; cancel() -> {value} in {took * 1e3:.1f} ms"))

            graph: dict[Hashable, Any] = {
                "a": 1,
                "b": (_slow_add, "a", 1),
                "c": (_slow_add, "b", 1),
                "d": (_slow_add, "c", 1),
            }
            nodes = client.submit_graph(graph, ["a", "b", "c", "d"])
            nodes["b"].result(timeout=30)
            time.sleep(0.1)  # c is running now
            value, took = _timed(nodes["d"].cancel)
            for key, future in nodes.items():
                extra = f"cancel() -> {value} in {took * 1e3:.1f} ms" if key == "d" else ""
                shown.append((f"graph node {key}", future, extra))

            for future in busy[1:]:
                future.cancel(timeout=0)
            client.clear()

    for label, future, note in shown:
        print(f"{label}: {future.state}{'  (' + note + ')' if note else ''}")
        for step in future.history:
            print(f"    {step.source} --{step.event}--> {step.dest}")
    # Counted by outcome, which every lifecycle's final states carry, so the
    # summary reads the same whatever the states are called.
    outcomes = [future.outcome for _, future, _ in shown]
    print(
        f"summary: {len(shown)} futures shown, "
        + ", ".join(f"{outcomes.count(o)} {word}" for o, word in _OUTCOME_WORDS.items() if outcomes.count(o))
        + f"; every future ended; {time.monotonic() - started:.1f}s in all"
    )
    return 0 if all(future.done() for _, future, _ in shown) else 1


#: How the summary names each outcome.
_OUTCOME_WORDS = {"result": "done", "exception": "failed", "cancelled": "cancelled"}


def _slow_add(x: int, y: int) -> int:
    time.sleep(0.3)
    return x + y
