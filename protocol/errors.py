"""The single error type the protocol layer raises for bad input, and the
throttled report transports make of it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class ProtocolError(ValueError):
    """Frames or a message that do not follow the taskfate wire format.

    Every failure to decode untrusted input surfaces as this type, with a
    human-readable ``reason``, so a transport can catch one class, log it and
    drop the frame without ever losing its I/O thread to an unexpected
    ``IndexError`` or ``UnicodeDecodeError``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedInputLog:
    """Reports bad input from peers without letting a flood fill the log.

    The first bad message logs a WARNING at once; later ones within
    ``interval`` seconds are only counted, and the next WARNING (or
    :meth:`flush`, which a transport calls from its timer) says how many were
    passed over. ``total`` counts every one. A transport keeps one per kind
    of input, so one noisy peer's garbage cannot hide another kind.
    """

    def __init__(self, logger: logging.Logger, what: str, interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.what = what
        self.interval = interval
        self.total = 0
        self._clock = clock
        self._next = 0.0
        self._held = 0

    def report(self, peer: str, reason: str) -> None:
        """One bad message from ``peer``, refused for ``reason``."""
        self.total += 1
        now = self._clock()
        if now < self._next:
            self._held += 1
            return
        held, self._held = self._held, 0
        self._next = now + self.interval
        more = f" ({held} more not shown since the last report; {self.total} in all)" if held else ""
        self.logger.warning("%s from %s: %s%s", self.what, peer, reason, more)

    def flush(self) -> None:
        """Log the count of what was passed over, once its interval is up."""
        if self._held and self._clock() >= self._next:
            held, self._held = self._held, 0
            self._next = self._clock() + self.interval
            self.logger.warning("%s: %d more in the last %.0fs (%d in all)", self.what, held, self.interval, self.total)
