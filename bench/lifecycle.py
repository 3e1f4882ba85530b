"""One future's lifecycle against a bare ``concurrent.futures.Future``.

Run: ``python bench/lifecycle.py`` (``--n`` futures per round, ``--rounds``;
``--running`` for the lifecycle with a ``running`` state, whose full
lifecycle also delivers a ``TaskStarted`` while the bare future is marked
running with ``set_running_or_notify_cancel``).
Each line is measured in this process, the sides interleaved round by round
(many short rounds: this machine's speed drifts over seconds), and reports
each side's median time per future and the median of the round-by-round
ratios taskfate / bare.

* full lifecycle (goal: at most 0.6x): create, result delivered,
  ``result()`` read, one done callback run. taskfate's result goes through
  ``FutureManager.on_message`` with a pre-built ``TaskResult`` (decoding is
  ``bench/messages.py``'s) and an identity serializer (what a payload means is
  the user's cost). The bare future does ``Future()``, ``add_done_callback``,
  ``set_result``, ``result()``.
* cancelled lifecycle (goal: at most 1.0x): create, one done callback,
  ``cancel(timeout=0)`` (the request leaves, the caller does not wait), the
  scheduler's ``TaskCancelConfirm`` delivered, the callback run. The bare
  future does ``Future()``, ``add_done_callback``, ``cancel()``. taskfate does
  two transitions, sends a ``TaskCancel`` and arms a confirm timeout on top.
  Its ``send`` counts each message and drops it, as a transport does once the
  frames are out (``_harness.counting_send``); the line under it keeps every
  message in a list instead (no goal), which shows what that costs: the
  garbage collector walking the kept messages, on taskfate's side only.
* cancel step alone (no goal; shown so the cost is not hidden in the
  creation): the same, with both sides' futures and callbacks made before
  the clock starts.
* live pending memory (goal: at most half a bare future, and at most 800 B):
  bytes tracemalloc sees per pending future, manager entry and history
  included, the task id excluded (a bare future has none).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import tracemalloc
from typing import Any

from _harness import Identity, Rounds, clock, counting_send, interleaved, noop, verdict

from taskfate.client import FutureManager
from taskfate.fsm import Lifecycle, get_lifecycle
from taskfate.protocol import CancelConfirmType, TaskCancel, TaskCancelConfirm, TaskID, TaskResult, TaskResultType, TaskStarted

#: The lifecycle taskfate's side runs: the stock one, or with ``--running``
#: the one with a ``running`` state (whose full lifecycle also delivers a
#: ``TaskStarted``, and the bare future is marked running to match).
LIFECYCLE: Lifecycle = get_lifecycle("cancel")
STARTED = False


def bare_lifecycle(n: int) -> float:
    Future = concurrent.futures.Future
    started = clock()
    for _ in range(n):
        future: concurrent.futures.Future[Any] = Future()
        future.add_done_callback(noop)
        if STARTED:
            future.set_running_or_notify_cancel()
        future.set_result(b"v")
        future.result()
    return clock() - started


def taskfate_lifecycle(n: int) -> float:
    manager = FutureManager(lambda message: None, serializer=Identity(), lifecycle=LIFECYCLE)
    ids = [TaskID.new() for _ in range(n)]
    results = [TaskResult(task_id, TaskResultType.SUCCESS, b"v") for task_id in ids]
    notices = [TaskStarted(task_id) for task_id in ids]
    track, deliver = manager.track, manager.on_message
    started = clock()
    if STARTED:
        for task_id, notice, message in zip(ids, notices, results):
            future = track(task_id)
            future.add_done_callback(noop)
            deliver(notice)
            deliver(message)
            future.result()
    else:
        for task_id, message in zip(ids, results):
            future = track(task_id)
            future.add_done_callback(noop)
            deliver(message)
            future.result()
    elapsed = clock() - started
    assert len(manager) == 0 and future.result() == b"v"
    return elapsed


def bare_cancelled(n: int) -> float:
    Future = concurrent.futures.Future
    started = clock()
    for _ in range(n):
        future: concurrent.futures.Future[Any] = Future()
        future.add_done_callback(noop)
        future.cancel()
    return clock() - started


def _cancels(sent: list[Any]) -> int:
    return sum(type(message) is TaskCancel for message in sent)


def _cancelled_lifecycles(n: int, send: Any) -> tuple[float, FutureManager]:
    manager = FutureManager(send, lifecycle=LIFECYCLE)
    ids = [TaskID.new() for _ in range(n)]
    confirms = [TaskCancelConfirm(task_id, CancelConfirmType.CANCELED) for task_id in ids]
    track, deliver = manager.track, manager.on_message
    started = clock()
    for task_id, confirm in zip(ids, confirms):
        future = track(task_id)
        future.add_done_callback(noop)
        future.cancel(0)
        deliver(confirm)
    elapsed = clock() - started
    assert future.cancelled() and len(manager) == 0
    manager.close()
    return elapsed, manager


def taskfate_cancelled(n: int) -> float:
    # The cheapest send there is (see _harness.counting_send); read after
    # the clock stops, to prove every request left.
    send, sends = counting_send()
    elapsed, _ = _cancelled_lifecycles(n, send)
    assert sends() == n
    return elapsed


def taskfate_cancelled_kept(n: int) -> float:
    """The same, with every TaskCancel kept in a list by ``send``."""
    sent: list[Any] = []
    elapsed, _ = _cancelled_lifecycles(n, sent.append)
    assert _cancels(sent) == n
    return elapsed


def bare_cancel_step(n: int) -> float:
    futures: list[concurrent.futures.Future[Any]] = [concurrent.futures.Future() for _ in range(n)]
    for future in futures:
        future.add_done_callback(noop)
    started = clock()
    for future in futures:
        future.cancel()
    return clock() - started


def taskfate_cancel_step(n: int) -> float:
    send, sends = counting_send()
    manager = FutureManager(send, lifecycle=LIFECYCLE)
    futures = [manager.track(TaskID.new()) for _ in range(n)]
    confirms = [TaskCancelConfirm(future.task_id, CancelConfirmType.CANCELED) for future in futures]
    for future in futures:
        future.add_done_callback(noop)
    deliver = manager.on_message
    started = clock()
    for future, confirm in zip(futures, confirms):
        future.cancel(0)
        deliver(confirm)
    elapsed = clock() - started
    assert all(future.cancelled() for future in futures) and sends() == n
    manager.close()
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


def make_ids(n: int) -> list[TaskID]:
    return [TaskID.new() for _ in range(n)]


def make_taskfate(n: int) -> Any:
    manager = FutureManager(lambda message: None, lifecycle=LIFECYCLE)
    ids = [TaskID.new() for _ in range(n)]
    futures = [manager.track(task_id) for task_id in ids]
    return manager, futures, ids


def line(label: str, rounds: Rounds, side: str, limit: float | None) -> None:
    bare, ours, ratio = rounds.median("bare"), rounds.median(side), rounds.ratio(side, "bare")
    goal = f"  goal <= {limit:.1f}x: {verdict(ratio, limit)}" if limit is not None else ""
    print(f"{label:22s} bare {bare * 1e6:7.2f} us   taskfate {ours * 1e6:7.2f} us   ratio {ratio:.2f}x{goal}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="futures per round")
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--running", action="store_true", help="run the lifecycle with a running state (TaskStarted delivered)")
    args = parser.parse_args()
    global LIFECYCLE, STARTED
    if args.running:
        LIFECYCLE, STARTED = get_lifecycle("cancel", started=True), True
    print(f"lifecycle {LIFECYCLE.name!r}")

    full = interleaved({"bare": bare_lifecycle, "taskfate": taskfate_lifecycle}, args.n, args.rounds)
    line("full lifecycle", full, "taskfate", 0.6)
    cancelled = interleaved(
        {"bare": bare_cancelled, "taskfate": taskfate_cancelled, "kept": taskfate_cancelled_kept}, args.n, args.rounds
    )
    line("cancelled lifecycle", cancelled, "taskfate", 1.0)
    line("  sent messages kept", cancelled, "kept", None)
    step = interleaved({"bare": bare_cancel_step, "taskfate": taskfate_cancel_step}, args.n, args.rounds)
    line("cancel step alone", step, "taskfate", None)

    n = 20_000
    ids_cost = bytes_per_future(make_ids, n)
    bare_bytes = bytes_per_future(make_bare, n)
    ours_bytes = bytes_per_future(make_taskfate, n) - ids_cost
    ratio = ours_bytes / bare_bytes
    print(
        f"{'live pending memory':22s} bare {bare_bytes:7.0f} B    taskfate {ours_bytes:7.0f} B    ratio {ratio:.2f}x"
        f"  goal <= 0.5x and <= 800 B: {verdict(max(ratio, ours_bytes / 1600), 0.5)}"
    )


if __name__ == "__main__":
    main()
