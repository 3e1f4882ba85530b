"""``taskfate scheduler``: run the reference scheduler in the foreground."""

from __future__ import annotations

import argparse
import logging
from typing import Any

_log = logging.getLogger("taskfate.scheduler")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("scheduler", help="run a reference scheduler with worker processes")
    parser.add_argument("--address", default="tcp://127.0.0.1:5560", help="where clients connect (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    parser.add_argument(
        "--faults",
        default="",
        help="seeded fault injection, e.g. 'seed=1,delay=0.2,duplicate=0.05,reorder=0.05,drop_confirm=0.1,silent_cancels'",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from taskfate.scheduler import FaultPlan, Scheduler

    try:
        faults = FaultPlan.parse(args.faults)
    except ValueError as error:
        print(f"taskfate scheduler: {error}")
        return 2
    if not args.address.startswith(("tcp://127.", "tcp://localhost", "ipc://", "inproc://")):
        _log.warning("serving %s beyond loopback without CURVE keys: anyone who can reach it can run code", args.address)
    scheduler = Scheduler(args.address, workers=args.workers, faults=faults)
    print(f"taskfate scheduler on {args.address} with {args.workers} workers; Ctrl-C stops it", flush=True)
    try:
        scheduler.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
