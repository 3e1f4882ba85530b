"""Confirm deadlines, in order, and the one timer thread that services them.

A future that asks to cancel enters a state that awaits the scheduler's
answer, and entering it arms a deadline ``cancel_timeout`` away; leaving it
disarms the deadline. When a deadline passes with its future still waiting,
the manager fires ``confirm_timeout`` on it. This class keeps the deadlines
and decides when the manager must look; the manager decides what firing
means.

Why a deque and not a heap: every deadline is "now + cancel_timeout" on a
clock that does not run backwards, so appending keeps the queue sorted and
arming is O(1). A clock that stepped back, or a shorter timeout set between
two cancels, is handled by an ordered insert. Disarming removes the entry at
once when it is first (answers mostly come in the order cancels went out);
any other entry becomes stale, recognised because the armed map no longer
holds that very deadline for its future, and is dropped when it reaches the
front.

Every method but :meth:`run` is called with the owner's lock held.
"""

from __future__ import annotations

import bisect
import collections
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
        self._queue: collections.deque[tuple[float, T]] = collections.deque()
        self._armed: dict[T, float] = {}
        self._wakeup = threading.Condition(lock)
        self._thread: threading.Thread | None = None
        # What the timer thread sleeps until, None while it is awake: arming
        # wakes it only when the new deadline comes sooner.
        self._sleeps_until: float | None = None
        self._closed = False
        self.timeout = timeout

    def arm(self, item: T) -> float:
        """Give ``item`` a deadline ``timeout`` from now (replacing any it had)
        and make sure something will service it; returns the deadline."""
        deadline = self._clock() + self.timeout
        self._armed[item] = deadline
        queue = self._queue
        armed = self._armed
        # Drop stale entries at the front, so the queue holds about the
        # cancels in flight rather than every cancel of the last timeout.
        while queue and armed.get(queue[0][1]) is not queue[0][0]:
            queue.popleft()
        if queue and queue[-1][0] > deadline:
            index = bisect.bisect_right(queue, deadline, key=lambda entry: entry[0])
            queue.insert(index, (deadline, item))
        else:
            queue.append((deadline, item))
        # The timer sleeps until the deadline that was first when it went to
        # sleep; a later one needs no word. Start it, or wake it if this one
        # comes sooner.
        if self._use_timer and not self._closed:
            if self._thread is None:
                self._start_thread()
            elif self._sleeps_until is not None and deadline < self._sleeps_until:
                self._wakeup.notify()
        return deadline

    def disarm(self, item: T) -> None:
        """Take ``item``'s deadline back (nothing if it had none)."""
        if self._armed.pop(item, None) is not None:
            queue = self._queue
            if queue and queue[0][1] is item:
                queue.popleft()

    def armed(self, item: T) -> bool:
        return item in self._armed

    def pop_due(self, now: float | None = None) -> list[T]:
        """The items whose deadline passed by ``now`` (default: the clock),
        in deadline order, each disarmed."""
        if now is None:
            now = self._clock()
        queue = self._queue
        armed = self._armed
        due: list[T] = []
        while queue and queue[0][0] <= now:
            deadline, item = queue.popleft()
            if armed.get(item) is deadline:
                del armed[item]
                due.append(item)
        return due

    def next(self) -> float | None:
        """The earliest deadline still armed, or ``None``."""
        queue = self._queue
        armed = self._armed
        while queue and armed.get(queue[0][1]) is not queue[0][0]:
            queue.popleft()
        return queue[0][0] if queue else None

    def close(self) -> None:
        """Forget every deadline and let the timer thread leave."""
        self._closed = True
        self._queue.clear()
        self._armed.clear()
        self._wakeup.notify_all()

    def __len__(self) -> int:
        return len(self._armed)

    # -- The timer thread ----------------------------------------------------------

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
                        return
                    now = self._clock()
                    idle = upcoming is None
                    due = now + self.timeout if upcoming is None else upcoming
                    if due > now:
                        self._sleeps_until = due
                        try:
                            self._wakeup.wait(due - now)
                        finally:
                            self._sleeps_until = None
                        continue
                self._expire()
        finally:
            self._service_threads.discard(ident)
