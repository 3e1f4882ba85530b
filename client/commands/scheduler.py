"""``taskfate scheduler``: run the reference scheduler in the foreground."""

from __future__ import annotations

import argparse
import logging
from typing import Any

_log = logging.getLogger("taskfate.scheduler")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scheduler",
        help="run a reference scheduler with worker processes",
        description=(
            "Run taskfate's reference scheduler in the foreground until Ctrl-C: clients connect at --address, "
            "each client's tasks run in worker processes of its own (unless --share-workers), with optional "
            "seeded fault injection and CURVE encryption with an allow-list of client keys."
        ),
    )
    parser.add_argument("--address", default="tcp://127.0.0.1:5560", help="where clients connect (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default: %(default)s)")
    parser.add_argument(
        "--faults",
        default="",
        help="seeded fault injection, e.g. 'seed=1,delay=0.2,duplicate=0.05,reorder=0.05,drop_confirm=0.1,silent_cancels'",
    )
    parser.add_argument(
        "--curve-certificate",
        metavar="SERVER.key_secret",
        help="the scheduler's secret CURVE certificate (from zmq.auth.create_certificates); needs --curve-clients",
    )
    parser.add_argument(
        "--curve-clients",
        metavar="DIR",
        help="directory of the public certificates of the clients to admit (read once, at start)",
    )
    parser.add_argument(
        "--share-workers",
        action="store_true",
        help="let one worker process run several clients' tasks (faster when clients alternate; "
        "any client's code can then affect another's results)",
    )
    parser.add_argument("--max-client-tasks", type=int, default=None, help="unfinished tasks one client may hold")
    parser.add_argument("--max-client-bytes", type=int, default=None, help="payload bytes one client may have queued")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from taskfate.scheduler import FaultPlan, Scheduler

    try:
        faults = FaultPlan.parse(args.faults)
    except ValueError as error:
        print(f"taskfate scheduler: {error}")
        return 2
    limits = {
        name: value
        for name, value in (("max_client_tasks", args.max_client_tasks), ("max_client_bytes", args.max_client_bytes))
        if value is not None
    }
    try:
        scheduler = Scheduler(
            args.address,
            workers=args.workers,
            faults=faults,
            isolate_clients=not args.share_workers,
            curve_certificate=args.curve_certificate,
            curve_clients=args.curve_clients,
            **limits,
        )
    except ValueError as error:
        print(f"taskfate scheduler: {error}")
        return 2
    if args.curve_certificate is None and not args.address.startswith(("tcp://127.", "tcp://localhost", "ipc://", "inproc://")):
        _log.warning("serving %s beyond loopback without CURVE: anyone who can reach it can run code", args.address)
    security = "CURVE, admitting the clients in " + args.curve_clients if args.curve_certificate else "no CURVE"
    print(f"taskfate scheduler on {args.address} with {args.workers} workers ({security}); Ctrl-C stops it", flush=True)
    try:
        scheduler.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
