"""taskfate mutants: how much the explorer's promises are worth for a lifecycle.

Derives every declaration that differs from the given one at exactly one
point (a destination changed, a rule dropped, a callback dropped or moved
between before and after, an on_enter or on_exit removed, an outcome tag
swapped), explores each, and prints how many declare refused, how many an
invariant caught (and which), how many are equivalent to the original, and
every one that survived: a change no promise noticed.

Exit status: 0 when no non-equivalent mutant survived, 1 when one did, 2 for
bad arguments or a lifecycle that cannot be loaded (or that already breaks a
promise: its mutants would measure nothing).

examples:
  taskfate mutants                                        the stock lifecycle (late_result=cancel)
  taskfate mutants --policy deliver --futures 3 --depth 8
  taskfate mutants --declaration mylib.fates:LIFECYCLE
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from taskfate.client.commands.explore import load_target
from taskfate.fsm import lifecycle as lc
from taskfate.fsm.explore import SCHEDULERS, load_lifecycle
from taskfate.fsm.mutate import mutation_report


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "mutants",
        help="explore every single-point mutant of a lifecycle and list those no promise notices",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--policy", choices=lc.POLICIES, default=lc.DEFAULT_POLICY, help="stock late-result policy (default: cancel)")
    parser.add_argument("--declaration", metavar="MODULE:NAME", help="this lifecycle instead: a Lifecycle, a declaration dict, or a function returning one")
    parser.add_argument(
        "--futures", type=int, default=2, metavar="N", help="explore each mutant alone and in graphs of up to N futures (default 2)"
    )
    parser.add_argument("--depth", type=int, default=10, metavar="N", help="longest ordering explored per mutant (default 10)")
    parser.add_argument("--scheduler", choices=SCHEDULERS, default="any", help="the peer the mutants face (default: any, the harshest)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.depth < 0 or args.futures < 1:
        print("taskfate mutants: --depth must be 0 or more and --futures 1 or more", file=sys.stderr)
        return 2
    try:
        source = load_target(args.declaration) if args.declaration else args.policy
        lifecycle = load_lifecycle(source, name=args.declaration or args.policy)
        report = mutation_report(
            lifecycle,
            depth=args.depth,
            futures=range(1, args.futures + 1),
            scheduler=args.scheduler,
            progress=lambda line: print(line, file=sys.stderr),
        )
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        print(f"taskfate mutants: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0 if report.ok else 1
