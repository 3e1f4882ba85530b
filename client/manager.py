"""The sans-I/O owner of a client's futures.

``FutureManager`` turns incoming protocol messages and local events into
lifecycle events, executes the compiled declaration for the future each one
concerns, and hands outgoing messages to a ``send`` callable. It opens no
socket: a transport (``taskfate.client.Client``), a test, or another
library's client decides how messages travel.

Effects are released after the lock: callbacks run under the manager's lock
only record what should happen (a ``TaskCancel`` to send, a future whose done
callbacks are due); the public method that caused them sends and runs them
once the lock is free, so a ``send`` that blocks or a callback that calls back
into the manager cannot deadlock it.

What happens to bad input, never raised into the delivering thread:

* a message for an unknown task id (never submitted, or already finished and
  forgotten) is counted in ``stats["unknown_task"]`` and logged; a result
  among them is also kept in ``late_results`` (bounded), so none vanishes
  without a record;
* a message the lifecycle has no rule for in the future's state is counted in
  ``stats["ignored"]`` and logged at debug level;
* a message that is not for futures (a heartbeat) is counted in
  ``stats["not_for_futures"]``.
"""

from __future__ import annotations

import asyncio
import collections
import bisect
import logging
import operator
import sys
import threading
import time
from types import CodeType, FrameType
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from taskfate.client.errors import ConnectionLost
from taskfate.client.future import _UNSET, Future
from taskfate.client.serializer import PickleSerializer, Serializer
from taskfate.client.steps import DEFAULT_HISTORY_LIMIT, Effect, Step, ignore_step, steps_for
from taskfate.fsm import lifecycle as lc
from taskfate.fsm.table import Lifecycle, get_lifecycle
from taskfate.protocol import Message, Task, TaskCancelConfirm, TaskID, TaskResult

_log = logging.getLogger("taskfate.client")

#: Default seconds a cancel may wait for the scheduler's answer before the
#: lifecycle gives up and ends the future cancelled.
DEFAULT_CANCEL_TIMEOUT = 30.0
#: How many results for unknown tasks the manager keeps for inspection.
DEFAULT_LATE_RESULTS = 1024

_new_object = object.__new__

_RESULT_EVENTS = tuple(lc.MESSAGE_EVENTS[(TaskResult, kind)] for kind in sorted(k for t, k in lc.MESSAGE_EVENTS if t is TaskResult))
_CONFIRM_EVENTS = tuple(
    lc.MESSAGE_EVENTS[(TaskCancelConfirm, kind)] for kind in sorted(k for t, k in lc.MESSAGE_EVENTS if t is TaskCancelConfirm)
)


class FutureManager:
    """Routes protocol messages to the futures of one client.

    ``send`` receives every outgoing message (a ``Task`` on submit, a
    ``TaskCancel`` on cancel or clear); it is called without the manager's lock
    held, from whichever thread caused the message.

    ``late_result`` picks the policy for a result that races a cancel
    (``"cancel"``: the future ends cancelled and the result is recorded as
    discarded; ``"deliver"``: the result wins). It may also be a compiled
    :class:`~taskfate.fsm.Lifecycle`, for tools that run a declaration of
    their own (the explorer's deliberately broken copies, for instance). ``cancel_timeout`` bounds how
    long a cancel waits for the scheduler before the lifecycle ends the future
    anyway. With ``timer=True`` (the default) one daemon thread per manager,
    started on the first cancel and gone when no deadline is left, services
    those timeouts; with ``timer=False`` the owner calls :meth:`expire` itself
    (a transport's loop, or a test with an injected ``clock``).
    """

    def __init__(
        self,
        send: Callable[[Message], object],
        *,
        serializer: Serializer | None = None,
        late_result: str | Lifecycle = lc.DEFAULT_POLICY,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        timer: bool = True,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        late_results_limit: int = DEFAULT_LATE_RESULTS,
        future_class: type[Future] = Future,
    ) -> None:
        if not cancel_timeout > 0:
            raise ValueError("cancel_timeout must be a positive number of seconds")
        self.lifecycle = late_result if isinstance(late_result, Lifecycle) else get_lifecycle(late_result)
        self.serializer: Serializer = serializer if serializer is not None else PickleSerializer()
        self.cancel_timeout = float(cancel_timeout)
        history_limit = operator.index(history_limit)
        if history_limit < 0:
            raise ValueError("history_limit must be 0 or more")
        self._history_limit = history_limit
        self.stats: collections.Counter[str] = collections.Counter()
        self.late_results: collections.deque[TaskResult] = collections.deque(maxlen=late_results_limit)
        self._send = send
        self._clock = clock
        self._future_class = future_class
        # A plain Future is built in place by track() (see there); a
        # subclass with its own __init__ or __new__ is called.
        self._build_in_place = future_class.__init__ is Future.__init__ and future_class.__new__ is Future.__new__
        # Every (state, event) has a step: the declared rule's generated one
        # (taskfate.client.steps), or one that counts the event as ignored.
        # Indexed by state, and by event for the hot paths, so that a
        # dispatch is two subscripts and a call.
        declared = steps_for(future_class, self.lifecycle, history_limit, timer)
        events = tuple(dict.fromkeys(lc.EVENTS + self.lifecycle.events))
        self._steps: dict[str, dict[str, Step]] = {
            state: {event: declared[state].get(event) or ignore_step(event) for event in events}
            for state in self.lifecycle.states
        }
        by_event = {event: {state: self._steps[state][event] for state in self._steps} for event in events}
        self._result_steps = tuple(by_event[event] for event in _RESULT_EVENTS)
        self._confirm_steps = tuple(by_event[event] for event in _CONFIRM_EVENTS)
        self._cancel_steps = by_event[lc.CANCEL]
        self._lock = threading.RLock()
        self._live: dict[TaskID, Future] = {}
        self._groups: dict[TaskID, dict[TaskID, Future]] = {}
        # Effects queued under the lock, released after it (messages sent
        # first, then done callbacks run): the effects a step does not hand
        # back itself (taskfate.client.steps).
        self._queue: list[Message | Future] = []
        self._closed = False
        # Confirm deadlines in order: (deadline, future). Every deadline is
        # "now + cancel_timeout" on a clock that does not run backwards, so
        # appending keeps them sorted and a deque serves as the timer queue.
        # Entries whose future has moved on (answered, or re-armed) are stale
        # and skipped when they reach the front. An entry is current when its
        # deadline *is* the future's (the same float object, stored in both
        # by one arming): an identity test, cheaper than comparing a float
        # with the None of a disarmed future.
        self._deadlines: collections.deque[tuple[float, Future]] = collections.deque()
        self._use_timer = timer
        self._timer_wakeup = threading.Condition(self._lock)
        self._timer_thread: threading.Thread | None = None
        # The deadline the timer thread sleeps until, None while it is awake:
        # a cancel wakes it only when its own deadline comes sooner.
        self._timer_due: float | None = None
        # Threads on which cancel() must not wait: transports register their
        # I/O thread. A thread inside this manager's delivery or its done
        # callbacks is found on its call stack (_delivering), when a cancel
        # is about to wait, rather than marked on the way in: marking costs
        # every delivery a set insertion and removal, the check is needed
        # only by a cancel that would otherwise block.
        self._service_threads: set[int] = set()

    # -- Public surface -----------------------------------------------------------

    @property
    def late_result(self) -> str:
        return self.lifecycle.policy

    @property
    def history_limit(self) -> int:
        """How many transitions each future remembers (fixed at construction:
        the generated steps have it written in)."""
        return self._history_limit

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """How many futures are live (not yet terminal)."""
        return len(self._live)

    def get(self, task_id: TaskID) -> Future | None:
        """The live future of ``task_id``, if any."""
        return self._live.get(task_id)

    def live_futures(self) -> list[Future]:
        """A snapshot of the live futures."""
        with self._lock:
            return list(self._live.values())

    def track(self, task_id: TaskID, group_id: TaskID | None = None) -> Future:
        """A new pending future for ``task_id``, routed but not sent.

        For embedding: when another client library sends its own task
        messages, it still lets taskfate own the futures.
        """
        # Built before taking the lock: a new future is nobody else's yet.
        if self._build_in_place:
            # Future.__init__'s stores, written here: calling the class costs
            # a frame and the type's call protocol, more than the stores.
            # tests/test_hot_path.py checks that both build the same future.
            future = _new_object(self._future_class)
            future.task_id = task_id
            future.group_id = group_id
            future._manager = self
            future._fsm = lc.PENDING
            future._message = None
            future._resolved = _UNSET
            future._callbacks = None
            future._history = ()
            future._deadline = None
            future._waiting = None
        else:
            future = self._future_class(task_id, self, group_id)
        # acquire/release rather than ``with`` on the hot paths: the same
        # lock for less than half the interpreter overhead.
        lock = self._lock
        lock.acquire()
        try:
            if self._closed:
                raise RuntimeError("the future manager is closed")
            if self._live.setdefault(task_id, future) is not future:
                raise ValueError(f"task {task_id.hex()} already has a live future")
            if group_id is not None:
                self._groups.setdefault(group_id, {})[task_id] = future
        finally:
            lock.release()
        return future

    def submit(self, task: Task) -> Future:
        """Send ``task`` and return its future.

        The future is routable before the task leaves, so even an immediate
        answer finds it. If ``send`` raises, the future is forgotten and the
        error propagates: the task never left.
        """
        future = self.track(task.task_id, task.group_id)
        send = self._send  # an instance attribute: load, then call (cheaper)
        try:
            send(task)
        except BaseException:
            with self._lock:
                self._forget(future)
            raise
        return future

    def on_message(self, message: Message) -> None:
        """Deliver one incoming message. Never raises for bad or late input."""
        kind = type(message)
        if kind is TaskResult:
            steps = self._result_steps[message.result_type]  # type: ignore[union-attr]
        elif kind is TaskCancelConfirm:
            steps = self._confirm_steps[message.confirm_type]  # type: ignore[union-attr]
        else:
            self.stats["not_for_futures"] += 1
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("message not for futures: %r", message)
            return
        lock = self._lock
        lock.acquire()
        try:
            try:
                future = self._live[message.task_id]  # type: ignore[union-attr]
            except KeyError:
                self._deliver_elsewhere(message)  # type: ignore[arg-type]
                effect = None
            else:
                # _dispatch, inlined: this is the message hot path.
                effect = steps[future._fsm](self, future, message)
            # Take the queue only if something is in it, and otherwise keep
            # no reference to it: once the lock is released another thread
            # may fill that very list and release it itself.
            queued: list[Message | Future] | None = self._queue
            if queued:
                self._queue = []
            else:
                queued = None
        finally:
            lock.release()
        if queued:
            self._release_effects(queued, effect)
        elif effect is not None:
            # A message's step hands back only the future it ended (anything
            # else it causes is queued): its done callbacks are due.
            # _run_finished, inlined (this frame is one of _CALLBACK_RUNNERS).
            callbacks = effect._callbacks  # type: ignore[union-attr]
            if type(callbacks) is list:
                self._run_finished((effect,))  # type: ignore[arg-type]
                return
            effect._callbacks = None  # type: ignore[union-attr]
            try:
                callbacks(effect)  # type: ignore[arg-type,operator,misc]
            except Exception:
                _log.exception("done callback %r of %r raised", callbacks, effect)

    def _deliver_elsewhere(self, message: TaskResult | TaskCancelConfirm) -> None:
        """A message whose task id has no live future: for a group's members,
        or for nobody (counted, and a result kept in ``late_results``).
        Caller holds the lock; effects are queued."""
        task_id = message.task_id
        members = self._groups.get(task_id)
        if not members:
            self._unknown(task_id, message)
            return
        if type(message) is TaskResult:
            event = _RESULT_EVENTS[message.result_type]
        else:
            event = _CONFIRM_EVENTS[message.confirm_type]  # type: ignore[union-attr]
        for member in list(members.values()):
            self._dispatch(member, event, message)

    def dispatch(self, future: Future, event: str, argument: Any = None) -> None:
        """Fire lifecycle ``event`` on ``future`` directly.

        For tools and tests that speak in events rather than messages; the
        message path goes through :meth:`on_message`.
        """
        with self._lock:
            self._dispatch(future, event, argument)
            queued = self._take_effects()
        self._release_effects(queued)

    def clear(self) -> list[Future]:
        """Ask the scheduler to cancel every live future (forcefully).

        Returns the futures now waiting for an answer; each ends when the
        scheduler answers, a result arrives, or the confirm timeout passes.
        """
        return self._broadcast(lc.CLEAR, True)

    def close(self) -> None:
        """End every live future cancelled and refuse new ones. Idempotent."""
        with self._lock:
            self._closed = True
        self._broadcast(lc.CLOSE, None)
        with self._lock:
            self._deadlines.clear()
            self._timer_wakeup.notify_all()

    def connection_lost(self, error: BaseException | None = None) -> None:
        """Fail every live future: nothing more can arrive for them."""
        if error is None:
            error = ConnectionLost("the connection to the scheduler was lost")
        self._broadcast(lc.CONNECTION_LOST, error)

    def expire(self, now: float | None = None) -> int:
        """Fire every confirm timeout due at ``now`` (default: the clock).

        Returns how many futures it ended. The built-in timer thread calls
        this; transports that run their own loop, and tests with a fake
        clock, call it directly.
        """
        fired = 0
        with self._lock:
            if now is None:
                now = self._clock()
            queue = self._deadlines
            while queue and queue[0][0] <= now:
                deadline, future = queue.popleft()
                if future._deadline is deadline and future._fsm == lc.CANCEL_REQUESTED:
                    self._dispatch(future, lc.CONFIRM_TIMEOUT, None)
                    fired += 1
            queued = self._take_effects()
        self._release_effects(queued)
        return fired

    def next_deadline(self) -> float | None:
        """The earliest pending confirm deadline on the manager's clock."""
        with self._lock:
            return self._deadlines[0][0] if self._deadlines else None

    def mark_service_thread(self, ident: int | None = None) -> None:
        """Declare that ``ident`` (default: this thread) delivers messages, so
        ``cancel()`` called there sends without waiting."""
        self._service_threads.add(threading.get_ident() if ident is None else ident)

    # -- The interpreter ------------------------------------------------------------

    def _dispatch(self, future: Future, event: str, argument: Any) -> None:
        """Execute one event on one future. Caller holds the lock.

        The whole interpreter of the compiled declaration: look the rule's
        generated step up and run it (its callbacks in declared order, the
        state change and its history step, and for a terminal state the end
        of routing and the wake-ups), and queue the effect it hands back; an
        event the state has no rule for is counted as ignored.
        """
        step = self._steps[future._fsm].get(event)
        if step is None:
            self._ignored(future, event)
            return
        effect = step(self, future, argument)
        if effect is not None:
            self._queue.append(effect)

    def _ignored(self, future: Future, event: str) -> None:
        self.stats["ignored"] += 1
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("task %s: %s ignored in state %s", future.task_id.hex(), event, future._fsm)

    def _forget(self, future: Future) -> None:
        if self._live.get(future.task_id) is future:
            del self._live[future.task_id]
        if future.group_id is not None:
            self._leave_group(future)

    def _leave_group(self, future: Future) -> None:
        group_id = future.group_id
        members = self._groups.get(group_id) if group_id is not None else None
        if members is not None:
            members.pop(future.task_id, None)
            if not members:
                del self._groups[group_id]  # type: ignore[arg-type]

    @staticmethod
    def _wake(future: Future, dest: str) -> None:
        """Tell whoever waits on ``future`` that it ended in ``dest``: the
        stdlib's waiters (``wait``, ``as_completed``) and every thread blocked
        in ``result()`` or ``cancel()``. Caller holds the lock; the generated
        steps call this only once somebody has waited."""
        waiting = future._waiting
        assert waiting is not None
        for waiter in waiting.waiters:
            if dest == lc.CANCELLED:
                waiter.add_cancelled(future)
            elif dest == lc.FAILED:
                waiter.add_exception(future)
            else:
                waiter.add_result(future)
        waiting.condition.notify_all()

    def _broadcast(self, event: str, argument: Any) -> list[Future]:
        with self._lock:
            targets = list(self._live.values())
            for future in targets:
                self._dispatch(future, event, argument)
            queued = self._take_effects()
            remaining = [future for future in targets if future._fsm == lc.CANCEL_REQUESTED]
        self._release_effects(queued)
        return remaining

    def _cancel_siblings(self, future: Future) -> None:
        members = self._groups.get(future.group_id) if future.group_id is not None else None
        if members:
            for sibling in list(members.values()):
                if sibling is not future:
                    self._dispatch(sibling, lc.GROUP_CANCEL, None)

    def _unknown(self, task_id: TaskID, message: Message) -> None:
        self.stats["unknown_task"] += 1
        if type(message) is TaskResult:
            self.late_results.append(message)
            if _log.isEnabledFor(logging.INFO):
                _log.info("result for unknown or finished task %s kept in late_results", task_id.hex())
        elif _log.isEnabledFor(logging.DEBUG):
            _log.debug("message for unknown or finished task %s: %r", task_id.hex(), message)

    def _arm_confirm_timeout(self, future: Future, now: float | None = None) -> None:
        """Give ``future`` a confirm deadline ``cancel_timeout`` from ``now``
        (the reading of the step that entered cancel_requested, when the
        caller took one) and make sure something will service it.

        taskfate.client.steps writes this body in place of the call in the
        generated steps (its ``_ARM``): keep the two alike.
        """
        deadline = (self._clock() if now is None else now) + self.cancel_timeout
        future._deadline = deadline
        queue = self._deadlines
        # Drop stale entries at the front, so the queue holds about the
        # cancels in flight rather than every cancel of the last timeout.
        while queue:
            head = queue[0]
            if head[1]._deadline is head[0]:
                break
            queue.popleft()
        if queue and queue[-1][0] > deadline:
            self._insert_deadline(deadline, future)
        else:
            queue.append((deadline, future))
            # The timer sleeps until the deadline that was first when it
            # went to sleep (_timer_due), and every deadline queued since is
            # at least that late unless it was inserted out of order, which
            # wakes it. So a word is needed only when it is not asleep (not
            # started, or gone), or when a shorter cancel_timeout made this
            # deadline the sooner one.
            if self._use_timer and (self._timer_due is None or deadline < self._timer_due):
                self._wake_timer(deadline)

    def _disarm_confirm_timeout(self, future: Future) -> None:
        """Take ``future``'s confirm deadline back. Its queue entry goes at
        once when it is first (answers mostly come in the order cancels
        went out); any other becomes stale, and arming drops stale entries
        from the front. The generated steps write this body in place."""
        future._deadline = None
        queue = self._deadlines
        if queue and queue[0][1] is future:
            queue.popleft()

    def _insert_deadline(self, deadline: float, future: Future) -> None:
        # A clock that stepped back, or a shorter cancel_timeout: keep order.
        queue = self._deadlines
        index = bisect.bisect_right(queue, deadline, key=lambda entry: entry[0])
        queue.insert(index, (deadline, future))
        if self._use_timer:
            self._wake_timer(deadline)

    def _wake_timer(self, deadline: float) -> None:
        """Make sure the timer thread will be awake by ``deadline``: start it,
        or wake it if it sleeps past that. Caller holds the lock."""
        if self._closed:
            return
        if self._timer_thread is None:
            self._start_timer()
        elif self._timer_due is not None and deadline < self._timer_due:
            self._timer_wakeup.notify()

    def _start_timer(self) -> None:
        self._timer_thread = threading.Thread(target=self._run_timer, name="taskfate-timer", daemon=True)
        self._timer_thread.start()

    def _run_timer(self) -> None:
        """The manager's one timer thread: sleeps until the next deadline,
        fires what is due, and exits once nothing has been left to time for
        a whole ``cancel_timeout``.

        It lingers that long, rather than leaving the moment the queue
        empties, because answered cancels leave the queue at once: a client
        cancelling now and then would otherwise start a thread per cancel.
        Lingering costs no wake-up either: a deadline armed meanwhile is
        ``cancel_timeout`` away, no sooner than the linger ends.
        """
        self.mark_service_thread()
        try:
            idle = False
            while True:
                with self._lock:
                    if self._closed or idle and not self._deadlines:
                        self._timer_thread = None
                        return
                    now = self._clock()
                    idle = not self._deadlines
                    due = now + self.cancel_timeout if idle else self._deadlines[0][0]
                    if due > now:
                        self._timer_due = due
                        try:
                            self._timer_wakeup.wait(due - now)
                        finally:
                            self._timer_due = None
                        continue
                self.expire()
        finally:
            self._service_threads.discard(threading.get_ident())

    # -- Effects, released outside the lock --------------------------------------

    def _take_effects(self) -> Sequence[Message | Future]:
        """The queued effects, handed over and the queue emptied. Caller
        holds the lock. Never the live queue itself, even when empty: once
        the lock is released another thread may fill that list."""
        queued = self._queue
        if not queued:
            return ()
        self._queue = []
        return queued

    def _release_effects(self, queued: Sequence[Message | Future], last: Effect = None) -> None:
        """Send the queued messages, then ``last`` if it is a message, then
        run the queued futures' done callbacks, then ``last``'s if it is a
        future: the order the steps produced them in, messages first.
        Called without the lock."""
        effects = [*queued, last] if last is not None else queued
        messages = [effect for effect in effects if not isinstance(effect, Future)]
        if messages:
            self._send_all(messages)
        if len(messages) < len(effects):
            self._run_finished([effect for effect in effects if isinstance(effect, Future)])

    def _send_all(self, outbox: Iterable[Message]) -> None:
        send = self._send
        for message in outbox:
            try:
                send(message)
            except Exception:
                # The lifecycle already moved; the confirm timeout ends the
                # future if this request never reaches the scheduler.
                _log.exception("sending %r failed", message)

    def _run_finished(self, finished: Iterable[Future]) -> None:
        """Run the done callbacks of futures that just ended, each once.

        One of ``_CALLBACK_RUNNERS``: a subclass that overrides it must run
        callbacks through this method or ``_run_callbacks``, or cancels in
        them are no longer known not to wait."""
        for future in finished:
            callbacks = future._callbacks
            future._callbacks = None
            if callbacks is not None:
                self._run_callbacks(future, callbacks if isinstance(callbacks, list) else (callbacks,))

    def _run_callbacks(self, future: Future, callbacks: Iterable[Callable[[Future], object]]) -> None:
        """Run ``callbacks`` for ``future`` now (one of ``_CALLBACK_RUNNERS``:
        see ``_run_finished``)."""
        for callback in callbacks:
            try:
                callback(future)
            except Exception:
                _log.exception("done callback %r of %r raised", callback, future)

    def _delivering(self) -> bool:
        """Whether the calling thread is inside this manager's ``on_message``
        or running its done callbacks: there ``cancel()`` must not wait, since
        the answer it would wait for may need this very thread.

        Found by walking the call stack for the frames of the methods that
        deliver and run callbacks (``_CALLBACK_RUNNERS``) with this manager
        as ``self``: a cost paid only by a cancel about to wait, instead of
        a mark set and cleared around every callback.
        """
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame.f_code in _CALLBACK_RUNNERS and frame.f_locals.get("self") is self:
                return True
            frame = frame.f_back
        return False

    def _may_block(self) -> bool:
        """Whether the calling thread may wait for the scheduler's answer."""
        if threading.get_ident() in self._service_threads or self._delivering():
            return False
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return True
        return False


#: The code of the methods in which a thread delivers messages or runs done
#: callbacks (see ``FutureManager._delivering``).
_CALLBACK_RUNNERS: frozenset[CodeType] = frozenset(
    method.__code__
    for method in (FutureManager.on_message, FutureManager._run_finished, FutureManager._run_callbacks)
)
