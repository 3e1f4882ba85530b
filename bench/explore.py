"""How fast the explorer covers every ordering, and what deduplication buys.

Run: ``python bench/explore.py``. Prints, for one future at depths 6, 8, 10,
for a 3-future graph, for the Client's lifecycle with a ``running`` state,
and for client and scheduler explored together: the
distinct states, the edges (actions applied), states per second, and how
many orderings (action sequences) those states stand for. The in-process
baseline is the same model enumerated as a tree, every ordering separately,
without remembering states (timed at depth 6, where that is still
feasible); the ratio says how much work deduplication saves.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from taskfate.fsm import STARTED_LIFECYCLES
from taskfate.fsm.explore import Explorer, _Step
from taskfate.fsm.explore_system import SystemExplorer


def orderings(explorer: Explorer, depth: int) -> int:
    """How many action sequences of length at most ``depth`` exist: counted
    over distinct states, level by level, never enumerated one by one."""
    level: Counter[Any] = Counter({explorer.initial(): 1})
    total = 1
    for _ in range(depth):
        following: Counter[Any] = Counter()
        for state, count in level.items():
            for action in explorer._actions(state):
                following[explorer._apply(state, action, _Step(False, state[1], set()))] += count
        level = following
        total += sum(level.values())
    return total


def tree(explorer: Explorer, depth: int) -> int:
    """The baseline: every ordering walked separately, invariants checked on
    each step, no state remembered."""
    visited = 0
    stack = [(explorer.initial(), 0)]
    while stack:
        state, length = stack.pop()
        visited += 1
        if length == depth:
            continue
        for action in explorer._actions(state):
            step = _Step(False, state[1], set())
            successor = explorer._apply(state, action, step)
            explorer._state_problems(successor)
            stack.append((successor, length + 1))
    return visited


def row(label: str, explorer: Explorer, depth: int, count: bool = True) -> None:
    report = explorer.run(depth)
    rate = report.states / report.seconds
    paths = f"{orderings(explorer, depth):>16,}" if count else f"{'-':>16}"
    scope = f"{depth}{'*' if report.exhausted else ' '}"
    print(f"{label:<34}{scope:>6}{report.states:>10,}{report.edges:>12,}{report.seconds:>9.3f}{rate:>12,.0f}{paths}  {'ok' if report.ok else 'VIOLATED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policy", default="cancel")
    parser.add_argument("--system-depth", type=int, default=12, help="depth for the 2-node client+scheduler row")
    args = parser.parse_args()

    print(f"{'exploration':<34}{'depth':>6}{'states':>10}{'edges':>12}{'seconds':>9}{'states/s':>12}{'orderings':>16}")
    for depth in (6, 8, 10):
        row(f"1 future, {args.policy}", Explorer(args.policy), depth)
    row("1 future, any scheduler", Explorer(args.policy, scheduler="any"), 10)
    row("3-future graph", Explorer(args.policy, futures=3), 10)
    row("3-future graph, any scheduler", Explorer(args.policy, futures=3, scheduler="any"), 10)
    # The Client's lifecycle: a running state and a started notice to send.
    running = STARTED_LIFECYCLES[args.policy]
    row("1 future, with running", Explorer(running), 10)
    row("3-future graph, with running", Explorer(running, futures=3), 8)

    from taskfate.scheduler import lifecycle as scheduler

    row("client + scheduler, 1 future", SystemExplorer(args.policy, scheduler.compiled()), 16, count=False)
    row("client + scheduler, 2-node graph", SystemExplorer(args.policy, scheduler.compiled(), futures=2), args.system_depth, count=False)
    row("client + scheduler, 3-node graph", SystemExplorer(args.policy, scheduler.compiled(), futures=3), 9, count=False)
    row("running client + scheduler", SystemExplorer(running, scheduler.compiled()), 14, count=False)
    print("* every reachable state was visited before the depth bound")

    # Baseline in the same process: the depth-6 single-future orderings one
    # by one, against the deduplicating explorer over the same model.
    explorer = Explorer(args.policy)
    started = time.perf_counter()
    walked = tree(explorer, 6)
    baseline = time.perf_counter() - started
    started = time.perf_counter()
    report = explorer.run(6)
    deduplicated = time.perf_counter() - started
    print()
    print(f"depth 6, one future: tree walk visits {walked:,} nodes in {baseline:.3f}s; "
          f"the explorer visits {report.states} states in {deduplicated:.4f}s "
          f"(x{baseline / deduplicated:,.0f} less time)")
    ten = Explorer(args.policy).run(10)
    print(f"depth 10, one future: {ten.seconds:.4f}s (target: under 2 s; ratio to target {ten.seconds / 2.0:.4f})")


if __name__ == "__main__":
    main()
