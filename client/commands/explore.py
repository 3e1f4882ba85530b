"""``taskfate explore``: every ordering of the protocol up to a bound, checked.

:data:`DESCRIPTION` is what ``taskfate explore --help`` prints: how the
exploration runs, its exit status and examples.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from taskfate.fsm import lifecycle as lc
from taskfate.fsm.declare import Table
from taskfate.fsm.explore import SCHEDULERS, Explorer, load_lifecycle, load_table
from taskfate.fsm.explore_system import SystemExplorer, parse_system_trace

#: The command's help, in plain text: argparse prints it as written.
DESCRIPTION = """\
Check every ordering of the protocol's messages, up to a bound, against the
promises of a declared lifecycle: each stock policy's, or the one
--declaration names. Prints a summary on stdout and, for each broken
promise, the shortest trace and the command that replays it. Progress goes
to stderr on long runs.

--declaration MODULE:NAME names a Lifecycle (made by taskfate.fsm.declare),
a declaration dict (declared with the stock message classifier), or a
function returning either. The peer sends every peer event the lifecycle
declares: a faithful one decides one result, confirms only what was asked
(or what the lifecycle accepts unasked), and sends each other notice at
most once, before the result; --scheduler any sends anything at any time.

Exit status: 0 when every invariant held (and, with --strict, every
declared transition was exercised); 1 when one did not; 2 for bad
arguments or a lifecycle that cannot be loaded.

examples:
  taskfate explore                                  both stock policies, one future
  taskfate explore --futures 3 --scheduler any      a 3-node graph, any message at any time
  taskfate explore --declaration mylib.fates:LIFECYCLE --depth 12 --strict
  taskfate explore --system --futures 2             with the declared scheduler and a lossy channel
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explore",
        help="check every ordering of messages up to a depth against the lifecycle's promises",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to explore")
    what.add_argument(
        "--policy",
        choices=(*lc.POLICIES, "all"),
        default="all",
        help="stock late-result policy to explore (default: all of them)",
    )
    what.add_argument(
        "--declaration",
        metavar="MODULE:NAME",
        help="explore this lifecycle instead: a Lifecycle, a declaration dict, or a function returning one",
    )
    what.add_argument("--futures", type=int, default=1, metavar="N", help="futures in one graph (default 1)")
    how = parser.add_argument_group("how far, and how strictly")
    how.add_argument("--depth", type=int, default=10, metavar="N", help="longest ordering explored, in actions (default 10)")
    how.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default="faithful",
        help="faithful: one outcome per task, confirms answer requests, notices once before the result; any: every message at any time",
    )
    how.add_argument("--strict", action="store_true", help="fail (exit 1) when a declared transition is never exercised")
    system = parser.add_argument_group("both sides together")
    system.add_argument(
        "--system",
        action="store_true",
        help="explore client futures with the declared scheduler and a channel that loses, duplicates and reorders both ways",
    )
    system.add_argument(
        "--scheduler-declaration",
        metavar="MODULE:NAME",
        help="with --system: this scheduler declaration instead of taskfate.scheduler.lifecycle",
    )
    system.add_argument(
        "--no-timeouts",
        action="store_true",
        help="with --system: take the client's confirm timer away, to see what the scheduler alone guarantees",
    )
    system.add_argument(
        "--no-epochs",
        action="store_true",
        help="with --system: confirms carry no request number (as in Scaler's protocol), so a stale answer is acted on",
    )
    system.add_argument(
        "--ordered-requests",
        action="store_true",
        help="with --system: the client's messages keep their order and are lost only with the connection (one ZeroMQ connection)",
    )
    parser.add_argument("--replay", metavar="TRACE", help="replay one trace step by step instead of exploring")
    parser.set_defaults(handler=run)


def load_target(spec: str) -> Any:
    """What ``--declaration MODULE:NAME`` names: the attribute, or what it
    returns when it is a function (a Lifecycle or Table is used as it is).
    ``ValueError``, ``ImportError`` or ``AttributeError`` when it cannot be
    found; the caller turns them into one line and exit status 2."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--declaration wants MODULE:NAME, got {spec!r}")
    target = getattr(importlib.import_module(module_name), attribute)
    return target() if callable(target) and not isinstance(target, Table) else target


def _scheduler_lifecycle(spec: str | None) -> tuple[Table, str]:
    # Imported here: only --system needs the scheduler's declaration.
    from taskfate.scheduler import lifecycle as scheduler

    if spec is None:
        return scheduler.compiled(), ""
    return load_table(load_target(spec), spec), f" --scheduler-declaration {spec}"


def run(args: argparse.Namespace) -> int:
    if args.depth < 0 or args.futures < 1:
        print("taskfate explore: --depth must be >= 0 and --futures >= 1", file=sys.stderr)
        return 2
    if args.strict and args.system:
        print("taskfate explore: --strict goes without --system (the scheduler's own rules are listed, not judged)", file=sys.stderr)
        return 2
    if (args.scheduler_declaration or args.no_timeouts or args.no_epochs or args.ordered_requests) and not args.system:
        print("taskfate explore: --scheduler-declaration, --no-timeouts, --no-epochs and --ordered-requests go with --system", file=sys.stderr)
        return 2
    explorers: list[Explorer] = []
    try:
        if args.declaration:
            sources: list[tuple[Any, str]] = [(load_lifecycle(load_target(args.declaration), args.declaration), f"--declaration {args.declaration}")]
        else:
            policies = lc.POLICIES if args.policy == "all" else (args.policy,)
            sources = [(policy, f"--policy {policy}") for policy in policies]
        if args.system:
            scheduler_lifecycle, scheduler_option = _scheduler_lifecycle(args.scheduler_declaration)
            for source, option in sources:
                switches = "".join(
                    switch for switch, on in ((" --no-timeouts", args.no_timeouts), (" --no-epochs", args.no_epochs), (" --ordered-requests", args.ordered_requests)) if on
                )
                replay = f"taskfate explore --system {option}{scheduler_option} --futures {args.futures}{switches} --replay '{{trace}}'"
                explorers.append(
                    SystemExplorer(
                        source,
                        scheduler_lifecycle,
                        futures=args.futures,
                        timeouts=not args.no_timeouts,
                        epochs=not args.no_epochs,
                        lossy_requests=not args.ordered_requests,
                        replay=replay,
                    )
                )
        else:
            for source, option in sources:
                replay = f"taskfate explore {option} --futures {args.futures} --scheduler {args.scheduler} --replay '{{trace}}'"
                explorers.append(Explorer(source, futures=args.futures, scheduler=args.scheduler, replay=replay, strict=args.strict))
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        print(f"taskfate explore: cannot load the lifecycle: {exc}", file=sys.stderr)
        return 2

    if args.replay is not None:
        return _replay(explorers, args.replay)

    status = 0
    for explorer in explorers:
        report = explorer.run(args.depth, progress=lambda line: print(line, file=sys.stderr, flush=True))
        print(report.summary())
        for violation in report.violations.values():
            print(violation.describe(explorer))
        if not report.ok:
            status = 1
    return status


def _replay(explorers: list[Explorer], text: str) -> int:
    try:
        trace = parse_system_trace(text) if isinstance(explorers[0], SystemExplorer) else explorers[0].parse_trace(text)
    except ValueError as exc:
        print(f"taskfate explore: {exc}", file=sys.stderr)
        return 2
    status = 0
    for explorer in explorers:
        print(f"replaying on lifecycle {explorer.lifecycle.name!r}:")
        try:
            steps = explorer.replay(trace)
        except ValueError as exc:
            print(f"taskfate explore: {exc}", file=sys.stderr)
            return 2
        for number, (_, state, step) in enumerate(steps, 1):
            action, *effects = step.effects
            print(f"  {number:>2}. {action}")
            for effect in effects:
                print(f"        {effect}")
            print(f"        now: {explorer.describe_state(state)}")
            for invariant, message in step.problems:
                print(f"        VIOLATED {invariant}: {message}")
                status = 1
        if isinstance(explorer, SystemExplorer) and steps:
            stuck = explorer.stuck_futures(steps[-1][1])
            if stuck:
                print(f"  VIOLATED futures_can_end: from here {', '.join(f'f{n}' for n in stuck)} can never end")
                status = 1
    return status
