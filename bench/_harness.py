"""What the benchmarks share: in-process baselines, interleaved rounds, medians.

Every benchmark here compares taskfate with something measured in the same
process and the same minute (a bare ``concurrent.futures.Future``, the raw
codec, a smaller size of the same workload) and prints the ratio. A shared,
noisy machine moves both sides of a ratio alike; it does not move an
absolute number's meaning. Rounds alternate between the two sides so that a
burst of load elsewhere lands on both, and the median of the rounds is kept.
"""

from __future__ import annotations

import functools
import gc
import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any


class Identity:
    """A serializer that does nothing: what a payload means is the user's
    cost, not the lifecycle's, so the lifecycle benchmarks leave it out."""

    def dumps(self, obj: Any) -> bytes:
        return obj  # type: ignore[no-any-return]

    def loads(self, data: bytes) -> Any:
        return data


def noop(future: Any) -> None:
    """The done callback every benchmark registers."""


def counting_send() -> tuple[Callable[[Any], object], Callable[[], int]]:
    """The cheapest ``send`` there is, and a way to read how often it ran.

    It counts each message and lets it go, as a transport does once the
    frames are out (``taskfate.client.Client`` encodes on ``send`` and keeps
    only the frames, until the socket takes them). Both are C calls:
    ``next(counter, message)`` returns the count and drops the message.
    Keeping every message instead (a list's ``append``) keeps tens of
    thousands of objects alive that the garbage collector walks again and
    again, a cost of the benchmark rather than of the lifecycle, and one
    only taskfate's side would pay: ``lifecycle.py`` shows it on its own line.
    """
    counter = itertools.count()
    return functools.partial(next, counter), functools.partial(next, counter)


def per_item(run: Callable[[int], float], n: int) -> float:
    """Seconds per item of ``run(n)``, which returns its own elapsed time
    (set-up such as building ids and messages stays outside the clock).

    A full collection first, so garbage left by the previous round is not
    charged to this one; the collector stays on, as in a real client.
    """
    gc.collect()
    return run(n) / n


class Rounds:
    """Per-item seconds of each side, one sample per round."""

    def __init__(self, samples: dict[str, list[float]]) -> None:
        self.samples = samples

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratio(self, name: str, baseline: str) -> float:
        """The median of the round-by-round ratios ``name / baseline``: each
        ratio compares two runs a few milliseconds apart, so a slow spell of
        the machine lands on both sides of it, and the median drops the
        rounds a burst split unevenly."""
        return statistics.median(ours / base for ours, base in zip(self.samples[name], self.samples[baseline]))


def interleaved(sides: dict[str, Callable[[int], float]], n: int, rounds: int) -> Rounds:
    """Every side once per round, the order reversed every other round (so
    a machine slowing down or speeding up during a round favours no side)."""
    samples: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides.items())
    for index in range(rounds):
        for name, run in order if index % 2 == 0 else reversed(order):
            samples[name].append(per_item(run, n))
    return Rounds(samples)


def clock() -> float:
    return time.perf_counter()


def verdict(ratio: float, limit: float) -> str:
    return "meets" if ratio <= limit else "MISSES"
