"""Confirm deadlines, in order, and the one timer thread that services them.

A future that asks to cancel enters a state that awaits the scheduler's
answer, and entering it arms a deadline ``cancel_timeout`` away; leaving it
disarms the deadline. When a deadline passes with its future still waiting,
the manager fires ``confirm_timeout`` on it. This class keeps the deadlines
and decides when the manager must look; the manager decides what firing
means.

Why one dict and not a heap: every deadline is "now + timeout" on a clock
that does not run backwards, so deadlines are armed in the order they fall
due, and a dict keeps insertion order. Arming is one store (a re-armed item
moves to the end), disarming one ``pop``, and the first entry is the next
deadline. A clock that stepped back, or a shorter timeout set between two
arms, breaks the order; that is noted, and the next reader sorts the dict
once (the rare case pays, not every arm).

Every method but :meth:`run` is called with the owner's lock held.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

T = TypeVar("T", bound=Hashable)


class Deadlines(Generic[T]):
    """Deadlines of ``T`` (futures), and the daemon thread that calls
    ``expire`` when one is due (``timer=True``); without a timer the owner
    calls its ``expire`` itself (a transport's loop, a test's fake clock).

    ``service_threads`` is the owner's set of thread idents on which nothing
    may wait for the scheduler; the timer thread registers itself there while
    it runs, since ``expire`` runs done callbacks on it.
    """

    def __init__(
        self,
        lock: threading.RLock,
        clock: Callable[[], float],
        expire: Callable[[], object],
        *,
        timeout: float,
        timer: bool,
        service_threads: set[int],
    ) -> None:
        self._lock = lock
        self._clock = clock
        self._expire = expire
        self._use_timer = timer
        self._service_threads = service_threads
        # item -> deadline, in deadline order while _ordered holds.
        self._armed: dict[T, float] = {}
        self._ordered = True
        self._last = -math.inf
        self._wakeup = threading.Condition(lock)
        self._thread: threading.Thread | None = None
        # The deadline the timer thread sleeps until; arming one sooner wakes
        # it. +inf while there is no thread (the next arm starts one), -inf
        # while nothing needs waking: the thread is awake and will look
        # before it sleeps again (it runs under the lock), there is no timer,
        # or the deadlines are closed.
        self._sleeps_until = math.inf if timer else -math.inf
        self._closed = False
        self.timeout = timeout

    def arm(self, item: T, _: object = None) -> None:
        """Give ``item`` a deadline ``timeout`` from now (replacing any it had)
        and make sure something will service it. (The second argument,
        ignored, lets this be a lifecycle callback.)"""
        deadline = self._clock() + self.timeout
        armed = self._armed
        if item in armed:
            del armed[item]
        armed[item] = deadline
        if deadline < self._last:
            self._ordered = False
        self._last = deadline
        if deadline < self._sleeps_until:
            self._poke()

    def disarm(self, item: T, _: object = None) -> None:
        """Take ``item``'s deadline back (nothing if it had none)."""
        self._armed.pop(item, None)

    def armed(self, item: T) -> bool:
        return item in self._armed

    def pop_due(self, now: float | None = None) -> list[T]:
        """The items whose deadline passed by ``now`` (default: the clock),
        in deadline order, each disarmed."""
        if now is None:
            now = self._clock()
        armed = self._in_order()
        due: list[T] = []
        for item, deadline in armed.items():
            if deadline > now:
                break
            due.append(item)
        for item in due:
            del armed[item]
        return due

    def next(self) -> float | None:
        """The earliest deadline still armed, or ``None``."""
        armed = self._in_order()
        return next(iter(armed.values())) if armed else None

    def close(self) -> None:
        """Forget every deadline and let the timer thread leave."""
        self._closed = True
        self._sleeps_until = -math.inf
        self._armed.clear()
        self._wakeup.notify_all()

    def __len__(self) -> int:
        return len(self._armed)

    # -- The timer thread ----------------------------------------------------------

    def _in_order(self) -> dict[T, float]:
        if not self._ordered:
            self._armed = dict(sorted(self._armed.items(), key=lambda entry: entry[1]))
            self._ordered = True
        return self._armed

    def _poke(self) -> None:
        """A deadline sooner than the timer's sleep was armed: start the
        thread, or wake it to look again."""
        if self._thread is None:
            self._sleeps_until = -math.inf
            self._start_thread()
        else:
            self._wakeup.notify()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self.run, name="taskfate-timer", daemon=True)
        self._thread.start()

    def run(self) -> None:
        """The timer thread: sleeps until the next deadline, calls ``expire``
        when one is due, and leaves once nothing has been armed for a whole
        timeout.

        It lingers that long, rather than leaving the moment the queue
        empties, because answered cancels leave the queue at once: a client
        cancelling now and then would otherwise start a thread per cancel.
        """
        ident = threading.get_ident()
        self._service_threads.add(ident)
        try:
            idle = False
            while True:
                with self._lock:
                    upcoming = self.next()
                    if self._closed or idle and upcoming is None:
                        self._thread = None
                        if not self._closed:
                            self._sleeps_until = math.inf
                        return
                    now = self._clock()
                    idle = upcoming is None
                    due = now + self.timeout if upcoming is None else upcoming
                    if due > now:
                        self._sleeps_until = due
                        try:
                            self._wakeup.wait(due - now)
                        finally:
                            if not self._closed:
                                self._sleeps_until = -math.inf
                        continue
                self._expire()
        finally:
            self._service_threads.discard(ident)
