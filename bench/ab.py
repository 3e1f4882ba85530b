"""``lifecycle.py``'s timed lines for two or more source trees, in one process.

Run: ``python bench/ab.py before=/path/to/old/checkout after=.`` (any number
of ``name=tree`` pairs; ``--running`` for the lifecycle with a ``running``
state; ``--rounds``). Each tree is imported as ``taskfate`` in turn, straight
from its folders (the package mapping of ``pyproject.toml``), and keeps its
own copy of ``bench/lifecycle.py``'s functions; then every side runs
interleaved round by round against one bare ``concurrent.futures.Future``
baseline, the order reversed every other round, and each side's median
round-by-round ratio is printed. Across processes a machine that drifts by
2x over seconds makes before/after ratios meaningless; within one run they
compare.

A tree whose layout predates the ``root/`` folder gets an empty root
package. Nothing here is installed or written outside the trees.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import os
import statistics
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

#: Import names and the folders they come from (pyproject's package-dir).
PACKAGES = {"taskfate": "root", "taskfate.protocol": "protocol", "taskfate.fsm": "fsm", "taskfate.client": "client", "taskfate.scheduler": "scheduler"}


class _TreeFinder:
    """Finds the ``taskfate`` packages in one source tree."""

    def __init__(self, tree: str) -> None:
        self.tree = tree

    def find_spec(self, name: str, path: Any, target: Any = None) -> ModuleSpec | None:
        folder = PACKAGES.get(name)
        if folder is None:
            return None
        directory = os.path.join(self.tree, folder)
        init = os.path.join(directory, "__init__.py")
        if not os.path.exists(init):
            if name != "taskfate":
                return None
            # An older layout: the root package had no folder of its own.
            return importlib.util.spec_from_loader(name, loader=None, is_package=True)
        return importlib.util.spec_from_file_location(name, init, submodule_search_locations=[directory])


def load(tree: str) -> tuple[ModuleType, dict[str, ModuleType]]:
    """``tree``'s ``bench/lifecycle.py``, importing ``tree``'s taskfate, and
    the modules that import put in ``sys.modules``.

    Those modules are returned because the runtime
    imports some names when it first builds a lifecycle's steps, not at
    import, and a tree that found the last-loaded tree's ``Future`` there
    took its general step instead of its fast path (about 15% slower, for
    every tree but the last). ``main`` puts a tree's own modules back in
    ``sys.modules`` before each of its rounds."""
    for name in _ours():
        del sys.modules[name]
    finder = _TreeFinder(os.path.abspath(tree))
    bench = os.path.join(os.path.abspath(tree), "bench")
    sys.meta_path.insert(0, finder)
    sys.path.insert(0, bench)
    try:
        module = importlib.import_module("lifecycle")
    finally:
        sys.meta_path.remove(finder)
        sys.path.remove(bench)
    return module, {name: sys.modules[name] for name in _ours()}


def _ours() -> list[str]:
    """The names in ``sys.modules`` that belong to one tree."""
    return [name for name in sys.modules if name.split(".")[0] == "taskfate" or name in ("lifecycle", "_harness")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trees", nargs="+", metavar="NAME=TREE")
    parser.add_argument("--n", type=int, default=10_000, help="futures per round")
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--running", action="store_true", help="run the lifecycle with a running state (TaskStarted delivered)")
    args = parser.parse_args()
    benches: dict[str, ModuleType] = {}
    modules: dict[str, dict[str, ModuleType]] = {}
    for pair in args.trees:
        name, _, tree = pair.partition("=")
        bench, modules[name] = load(tree)
        if args.running:
            setattr(bench, "LIFECYCLE", bench.get_lifecycle("cancel", started=True))
            setattr(bench, "STARTED", True)
        benches[name] = bench
    baseline = next(iter(benches.values()))
    for label, bare_name, ours_name in (
        ("full lifecycle", "bare_lifecycle", "taskfate_lifecycle"),
        ("cancelled lifecycle", "bare_cancelled", "taskfate_cancelled"),
    ):
        samples: dict[str, list[float]] = {name: [] for name in ["bare", *benches]}
        for round_number in range(args.rounds):
            order = list(benches.items())
            if round_number % 2:
                order.reverse()
            gc.collect()
            samples["bare"].append(getattr(baseline, bare_name)(args.n) / args.n)
            for name, bench in order:
                sys.modules.update(modules[name])
                gc.collect()
                samples[name].append(getattr(bench, ours_name)(args.n) / args.n)
        ratios = "   ".join(
            f"{name} {statistics.median(ours / bare for ours, bare in zip(samples[name], samples['bare'])):.2f}x" for name in benches
        )
        print(f"{label:20s} bare {statistics.median(samples['bare']) * 1e6:5.2f} us   {ratios}")


if __name__ == "__main__":
    main()
