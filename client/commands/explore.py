"""``taskfate explore``: every ordering of the protocol up to a bound, checked.

Runs :mod:`taskfate.fsm.explore` over the declared lifecycle (each policy, or
a declaration named on the command line), prints a summary on stdout and, for
each broken promise, the shortest trace and the command that replays it.
Progress goes to stderr on long runs. Exit status 0 only when every
invariant held; 1 when one did not; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from taskfate.fsm import lifecycle as lc
from taskfate.fsm.explore import SCHEDULERS, Explorer, load_lifecycle, parse_trace
from taskfate.fsm.explore_system import SystemExplorer, parse_system_trace
from taskfate.fsm.table import Lifecycle


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "explore",
        help="check every ordering of messages up to a depth against the lifecycle's promises",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--depth", type=int, default=10, help="longest ordering explored, in actions (default 10)")
    parser.add_argument(
        "--policy",
        choices=(*lc.POLICIES, "all"),
        default="all",
        help="late-result policy to explore (default: all of them)",
    )
    parser.add_argument("--futures", type=int, default=1, help="futures in one graph (default 1)")
    parser.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default="faithful",
        help="faithful: one outcome per task, confirms answer requests; any: every message at any time",
    )
    parser.add_argument(
        "--declaration",
        metavar="MODULE:NAME",
        help="explore this declaration instead (a dict, a function returning one, or a compiled Lifecycle)",
    )
    parser.add_argument(
        "--system",
        action="store_true",
        help="explore client futures with the declared scheduler and a lossy, duplicating, reordering channel",
    )
    parser.add_argument(
        "--scheduler-declaration",
        metavar="MODULE:NAME",
        help="with --system: this scheduler declaration instead of taskfate.scheduler.lifecycle",
    )
    parser.add_argument(
        "--no-timeouts",
        action="store_true",
        help="with --system: take the client's confirm timer away, to see what the scheduler alone guarantees",
    )
    parser.add_argument("--replay", metavar="TRACE", help="replay one trace step by step instead of exploring")
    parser.set_defaults(handler=run)


def _load(spec: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--declaration wants MODULE:NAME, got {spec!r}")
    target = getattr(importlib.import_module(module_name), attribute)
    return target() if callable(target) and not hasattr(target, "events") else target


def _scheduler_lifecycle(spec: str | None) -> tuple[Lifecycle, str]:
    # Imported here: only --system needs the scheduler's declaration.
    from taskfate.scheduler import lifecycle as scheduler

    if spec is None:
        return scheduler.compiled(), ""
    return load_lifecycle(_load(spec), spec), f" --scheduler-declaration {spec}"


def run(args: argparse.Namespace) -> int:
    if args.depth < 0 or args.futures < 1:
        print("taskfate explore: --depth must be >= 0 and --futures >= 1", file=sys.stderr)
        return 2
    if (args.scheduler_declaration or args.no_timeouts) and not args.system:
        print("taskfate explore: --scheduler-declaration and --no-timeouts go with --system", file=sys.stderr)
        return 2
    explorers: list[Explorer] = []
    try:
        if args.declaration:
            sources: list[tuple[Any, str]] = [(load_lifecycle(_load(args.declaration), args.declaration), f"--declaration {args.declaration}")]
        else:
            policies = lc.POLICIES if args.policy == "all" else (args.policy,)
            sources = [(policy, f"--policy {policy}") for policy in policies]
        if args.system:
            scheduler_lifecycle, scheduler_option = _scheduler_lifecycle(args.scheduler_declaration)
            for source, option in sources:
                replay = f"taskfate explore --system {option}{scheduler_option} --futures {args.futures}{' --no-timeouts' if args.no_timeouts else ''} --replay '{{trace}}'"
                explorers.append(SystemExplorer(source, scheduler_lifecycle, futures=args.futures, timeouts=not args.no_timeouts, replay=replay))
        else:
            for source, option in sources:
                replay = f"taskfate explore {option} --futures {args.futures} --scheduler {args.scheduler} --replay '{{trace}}'"
                explorers.append(Explorer(source, futures=args.futures, scheduler=args.scheduler, replay=replay))
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
        trace = parse_system_trace(text) if isinstance(explorers[0], SystemExplorer) else parse_trace(text)
    except ValueError as exc:
        print(f"taskfate explore: {exc}", file=sys.stderr)
        return 2
    status = 0
    for explorer in explorers:
        print(f"replaying on lifecycle {explorer.lifecycle.policy!r}:")
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
