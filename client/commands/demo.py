"""``taskfate demo``: watch the lifecycle handle the orderings that matter.

Runs in-process: a scripted scheduler answers through a ``FutureManager`` so
that every interesting ordering (a confirmed cancel, a result racing a cancel,
a refused cancel, a silent scheduler, a close) happens on cue, then prints
each future's history.
"""

from __future__ import annotations

import argparse
import pickle
import time
from typing import Any

from taskfate.client.manager import FutureManager
from taskfate.protocol import (
    CancelConfirmType,
    Message,
    Task,
    TaskCancelConfirm,
    TaskID,
    TaskResult,
    TaskResultType,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("demo", help="show futures living through racing messages")
    parser.add_argument("--cancel-timeout", type=float, default=0.2, help="seconds before a silent cancel gives up")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    sent: list[Message] = []
    manager = FutureManager(sent.append, cancel_timeout=args.cancel_timeout)

    def submit(label: str) -> Any:
        future = manager.submit(Task(TaskID.new(), pickle.dumps(label)))
        return label, future

    def result(future: Any, value: object) -> None:
        manager.on_message(TaskResult(future.task_id, TaskResultType.SUCCESS, pickle.dumps(value)))

    def confirm(future: Any, kind: CancelConfirmType) -> None:
        manager.on_message(TaskCancelConfirm(future.task_id, kind))

    cases = [submit(label) for label in ("finishes", "cancel confirmed", "result races cancel", "cancel refused", "scheduler silent", "closed while pending")]
    futures = dict(cases)

    result(futures["finishes"], 42)

    futures["cancel confirmed"].cancel(timeout=0)
    confirm(futures["cancel confirmed"], CancelConfirmType.CANCELED)

    futures["result races cancel"].cancel(timeout=0)
    result(futures["result races cancel"], "too late")

    futures["cancel refused"].cancel(timeout=0)
    confirm(futures["cancel refused"], CancelConfirmType.CANCEL_FAILED)
    result(futures["cancel refused"], "ran to the end")

    started = time.monotonic()
    cancelled = futures["scheduler silent"].cancel()  # waits for the confirm timeout
    waited = time.monotonic() - started

    manager.close()

    for label, future in cases:
        print(f"{label:>22}: {future.state}")
        for step in future.history:
            print(f"{'':>24}{step.source} --{step.event}--> {step.dest}")
    print(f"silent scheduler: cancel() returned {cancelled} after {waited:.2f}s (cancel_timeout {args.cancel_timeout}s)")
    print(f"messages sent: {', '.join(type(m).__name__ for m in sent)}")
    print(f"discarded results: {sum(len(f.discarded_results) for _, f in cases)}; stats: {dict(manager.stats)}")
    return 0
