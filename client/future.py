"""A ``concurrent.futures.Future`` whose state is the declared lifecycle.

The future holds no rule of its own: every state change goes through its
manager, which runs the step generated (``taskfate.client.steps``) from the
table compiled from ``taskfate.fsm.lifecycle``; the step calls the callbacks
named there. This module
implements those callbacks (one method per name the declaration uses) and the
stdlib ``Future`` surface on top of the state.

Lock discipline
---------------
One lock per manager (an ``RLock``) guards the state of all its futures. A
future allocates no lock of its own: only when somebody first waits on it
(``result()``, ``cancel()``, ``concurrent.futures.wait``, ``as_completed``)
does it get a ``Condition`` on the manager's lock and the stdlib's waiter
list, together. Done callbacks always run after the lock is released,
exactly once each.

Guarantees
----------
* ``cancelled()``, ``done()`` and ``running()`` never block.
* ``result()`` and ``exception()`` block at most ``timeout`` seconds, as in
  the stdlib.
* ``cancel()`` blocks at most ``timeout`` seconds (by default the manager's
  ``cancel_timeout``, after which the lifecycle itself ends the future), and
  never blocks on a thread that delivers messages, runs done callbacks, or
  runs an asyncio event loop: there it sends the request and returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from typing import TYPE_CHECKING, Any, NamedTuple

from taskfate.client.errors import ResultDecodeError, TaskFailed, WorkerDied
from taskfate.fsm import lifecycle as lc
from taskfate.protocol import TaskID, TaskResult, TaskResultType
from taskfate.protocol.codec import _new_cancel

if TYPE_CHECKING:
    from taskfate.client.manager import FutureManager

_log = logging.getLogger("taskfate.client")

_UNSET: Any = object()

#: What the stdlib's ``wait``/``as_completed`` see for each lifecycle state.
_STDLIB_STATE = {
    lc.PENDING: PENDING,
    lc.CANCEL_REQUESTED: PENDING,
    lc.DONE: FINISHED,
    lc.FAILED: FINISHED,
    lc.CANCELLED: CANCELLED_AND_NOTIFIED,
}
_TERMINAL = frozenset(lc.TERMINAL)
_CANCEL = lc.CANCEL

class Step(NamedTuple):
    """One entry of a future's history: ``event`` moved it ``source`` -> ``dest``
    at ``time`` (the manager's clock, ``time.monotonic`` by default)."""

    event: str
    source: str
    dest: str
    time: float


class _Waiting:
    """What a future needs once somebody waits on it: a ``Condition`` on its
    manager's lock, and the waiter list ``concurrent.futures.wait`` and
    ``as_completed`` register with. Made on first wait, so that a future
    nobody waits on never pays for either."""

    __slots__ = ("condition", "waiters")

    def __init__(self, lock: Any) -> None:
        self.condition = threading.Condition(lock)
        self.waiters: list[Any] = []


class Future(concurrent.futures.Future[Any]):
    """The client's handle on one submitted task.

    Create futures through :meth:`FutureManager.submit` (or ``track``), never
    directly: the manager is what routes the scheduler's messages to them.
    """

    # Slots for everything the common paths touch: every future sets them in
    # __init__, and a slot store costs less than creating an instance dict
    # later (or than reading a class-level default through the instance).
    # Rare attributes (discarded results) are class-level defaults, shadowed
    # per instance only when used.
    __slots__ = ("task_id", "group_id", "_manager", "_fsm", "_message", "_resolved", "_callbacks", "_history", "_deadline", "_waiting")

    _discarded: list[TaskResult] | None = None

    def __init__(self, task_id: TaskID, manager: FutureManager, group_id: TaskID | None = None) -> None:
        # The stdlib __init__ is deliberately not called: it allocates a
        # Condition and lists that most futures never use.
        # FutureManager.track writes these same stores in place for this
        # class (tests/test_hot_path.py compares the two): change one, change both.
        self.task_id = task_id
        self.group_id: TaskID | None = group_id
        self._manager = manager
        self._fsm: str = lc.PENDING
        self._message: TaskResult | None = None
        # The decoded value once read (done), or the exception once built
        # or handed over by a lost connection (failed); _UNSET until then.
        self._resolved: Any = _UNSET
        # None, one callable, or a list once a second callback arrives: most
        # futures have at most one, and a list per future is not free.
        self._callbacks: Callable[[Future], object] | list[Callable[[Future], object]] | None = None
        # Flat pairs: (event, source, dest), time, (event, source, dest),
        # time, ... The first of each pair is a constant of the step that
        # recorded it, so a step allocates one tuple, not three.
        self._history: tuple[Any, ...] = ()
        self._deadline: float | None = None
        self._waiting: _Waiting | None = None

    # -- What the lifecycle says ---------------------------------------------

    @property
    def state(self) -> str:
        """The lifecycle state's name (``pending``, ``cancel_requested``,
        ``done``, ``failed`` or ``cancelled``)."""
        return self._fsm

    @property
    def history(self) -> tuple[Step, ...]:
        """The transitions this future went through, oldest first (the most
        recent ``FutureManager.history_limit`` of them)."""
        with self._manager._lock:
            entries = self._history
        return tuple(Step(step[0], step[1], step[2], time) for step, time in zip(entries[::2], entries[1::2]))

    @property
    def discarded_results(self) -> tuple[TaskResult, ...]:
        """Results that reached this future after a cancel had won, kept so
        that no result disappears without a record."""
        with self._manager._lock:
            return tuple(self._discarded or ())

    # -- The stdlib surface ----------------------------------------------------

    def cancel(self, timeout: float | None = None, *, force: bool = True) -> bool:
        """Ask the scheduler to cancel the task; True iff the future ends cancelled.

        Sends one ``TaskCancel`` (none if a cancel is already in flight), then
        waits until the scheduler answers, a result arrives, the manager's
        confirm timeout passes, or the client closes; then returns whether the
        future is cancelled. ``timeout`` bounds this call only: when it runs
        out first the request stays in flight, the lifecycle still ends the
        future, and the return value is ``False`` (not cancelled yet).
        ``timeout=0`` sends the request and returns at once.

        On a thread that delivers messages or runs done callbacks, and on a
        thread running an asyncio event loop, it never waits: waiting there
        would block the very answer it waits for.

        ``force`` asks the scheduler to interrupt a task that is already
        running; without it a running task refuses (cancel fails) and the
        future goes back to pending.
        """
        manager = self._manager
        lock = manager._lock
        lock.acquire()
        try:
            state = self._fsm
            if state in _TERMINAL:
                return state == lc.CANCELLED
            # The manager's _dispatch, inlined: this is the cancel hot path.
            # Every state has a step for cancel (an ignoring one where the
            # declaration has no rule), and a step hands back its effect.
            effect = manager._cancel_steps[state](manager, self, force)
            queued: list[Any] | None = manager._queue  # taken only if not empty: see on_message
            if queued:
                manager._queue = []
            else:
                queued = None
        finally:
            lock.release()
        if queued:
            manager._release_effects(queued, effect)
        elif effect is not None:
            # A cancel's step hands back only its TaskCancel (anything else
            # it causes is queued): the manager's _release_effects for one
            # message, inlined. (_send is an instance attribute: loaded, then
            # called, which CPython runs faster than a method-style call.)
            send = manager._send
            try:
                send(effect)  # type: ignore[arg-type]
            except Exception:
                _log.exception("sending %r failed", effect)
        if timeout is not None and timeout <= 0 or not manager._may_block():
            return self._fsm == lc.CANCELLED
        self._wait_while(lc.CANCEL_REQUESTED, manager.cancel_timeout if timeout is None else timeout)
        if self._fsm == lc.CANCEL_REQUESTED and timeout is None:
            # Our wait was as long as the lifecycle's own timeout; if no timer
            # serviced it (a manager run without one), service it now.
            manager.expire()
        return self._fsm == lc.CANCELLED

    def cancelled(self) -> bool:
        """True if the future ended cancelled. Never blocks."""
        return self._fsm == lc.CANCELLED

    def running(self) -> bool:
        """Always False: a client cannot observe when a worker starts a task,
        and a running task can still be cancelled (with ``force``)."""
        return False

    def done(self) -> bool:
        """True once the future is terminal (done, failed or cancelled)."""
        return self._fsm in _TERMINAL

    def result(self, timeout: float | None = None) -> Any:
        """The task's value; blocks up to ``timeout`` seconds for it.

        Raises ``CancelledError`` if cancelled, the task's exception if it
        failed, ``TimeoutError`` if still live after ``timeout``, and
        ``ResultDecodeError`` if the value cannot be deserialized.
        """
        state = self._fsm
        if state not in _TERMINAL:
            self._wait_until_done(timeout)
            state = self._fsm
        if state == lc.DONE:
            value = self._resolved
            return value if value is not _UNSET else self._decoded_value()
        if state == lc.CANCELLED:
            raise concurrent.futures.CancelledError(self._cancel_reason())
        raise self._failure()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's exception (None if it succeeded); blocks like ``result``.

        A success whose value cannot be deserialized reports the
        ``ResultDecodeError`` that ``result()`` raises, so code that asks
        ``exception()`` first (asyncio, ``as_completed`` loops) sees it too.
        """
        if self._fsm not in _TERMINAL:
            self._wait_until_done(timeout)
        if self._fsm == lc.DONE:
            try:
                self._decoded_value()
            except ResultDecodeError as error:
                return error
            return None
        if self._fsm == lc.CANCELLED:
            raise concurrent.futures.CancelledError(self._cancel_reason())
        return self._failure()

    def add_done_callback(self, fn: Callable[[Future], object]) -> None:
        """Call ``fn(future)`` once the future is terminal, exactly once.

        If it already is, ``fn`` runs now, in this thread. Otherwise it runs in
        the thread that ends the future, after the manager's lock is released.
        Exceptions it raises are logged and otherwise ignored.
        """
        lock = self._manager._lock
        lock.acquire()
        try:
            if self._fsm not in _TERMINAL:
                callbacks = self._callbacks
                if callbacks is None:
                    self._callbacks = fn
                elif isinstance(callbacks, list):
                    callbacks.append(fn)
                else:
                    self._callbacks = [callbacks, fn]
                return
        finally:
            lock.release()
        self._manager._run_callbacks(self, (fn,))

    def set_running_or_notify_cancel(self) -> bool:
        raise RuntimeError("a taskfate future is driven by its lifecycle, not by an executor")

    def set_result(self, result: object) -> None:
        raise RuntimeError("a taskfate future is driven by its lifecycle; results come from the scheduler")

    def set_exception(self, exception: BaseException | None) -> None:
        raise RuntimeError("a taskfate future is driven by its lifecycle; failures come from the scheduler")

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.wrap_future(self).__await__()

    def __repr__(self) -> str:
        return f"<Future {self.task_id.hex()[:12]} {self._fsm}>"

    # What concurrent.futures.wait / as_completed / the stdlib's internals
    # reach for. Built on first use only.

    @property
    def _state(self) -> str:  # type: ignore[override]
        return _STDLIB_STATE[self._fsm]

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        return (self._waiting or self._start_waiting()).condition

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        return (self._waiting or self._start_waiting()).waiters

    def _start_waiting(self) -> _Waiting:
        lock = self._manager._lock
        with lock:
            if self._waiting is None:
                self._waiting = _Waiting(lock)
            return self._waiting

    # -- Waiting ----------------------------------------------------------------

    def _wait_while(self, state: str, timeout: float | None) -> None:
        condition = self._condition
        deadline = None if timeout is None else time.monotonic() + timeout
        with condition:
            while self._fsm == state:
                if deadline is None:
                    condition.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    condition.wait(remaining)

    def _wait_until_done(self, timeout: float | None) -> None:
        condition = self._condition
        deadline = None if timeout is None else time.monotonic() + timeout
        with condition:
            while self._fsm not in _TERMINAL:
                if deadline is None:
                    condition.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise concurrent.futures.TimeoutError()
                    condition.wait(remaining)

    # -- Reading what ended the future -------------------------------------------

    def _decoded_value(self) -> Any:
        value = self._resolved
        if value is _UNSET:
            message = self._message
            assert message is not None
            try:
                value = self._manager.serializer.loads(message.payload)
            except Exception as exc:
                raise ResultDecodeError(f"task {self.task_id.hex()} result could not be decoded: {exc!r}") from exc
            # Two first readers may both decode; the lock makes them agree on
            # one object, as the stdlib's result() always returns the same.
            lock = self._manager._lock
            lock.acquire()
            try:
                if self._resolved is _UNSET:
                    self._resolved = value
                value = self._resolved
            finally:
                lock.release()
        return value

    def _failure(self) -> BaseException:
        if self._resolved is not _UNSET:
            error: BaseException = self._resolved
            return error
        message = self._message
        assert message is not None and message.result_type != TaskResultType.SUCCESS
        if message.result_type == TaskResultType.WORKER_DIED:
            detail = message.payload.decode("utf-8", "replace") or "no detail"
            error = WorkerDied(f"worker died running task {self.task_id.hex()}: {detail}")
        else:
            try:
                decoded = self._manager.serializer.loads(message.payload)
            except Exception as exc:
                error = TaskFailed(f"task {self.task_id.hex()} failed; its error could not be decoded: {exc!r}")
            else:
                error = decoded if isinstance(decoded, BaseException) else TaskFailed(repr(decoded))
        with self._manager._lock:
            if self._resolved is _UNSET:
                self._resolved = error
            kept: BaseException = self._resolved
            return kept

    def _cancel_reason(self) -> str:
        history = self._history
        return f"task {self.task_id.hex()} cancelled ({history[-2][0] if history else 'unknown'})"

    # -- Lifecycle callbacks -------------------------------------------------------
    # Named in taskfate.fsm.lifecycle and called by the manager, under its lock,
    # with the event's argument. Their outside effects (messages to send,
    # callbacks to run) are queued on the manager and released after the lock.
    # taskfate.client.steps writes the short ones' bodies in place of the call
    # for a class that does not override them (its _INLINE): change a body
    # here, change it there; tests/test_steps.py runs both forms side by side.

    def keep_result(self, message: TaskResult) -> None:
        self._message = message

    def discard_result(self, message: TaskResult) -> None:
        if self._discarded is None:
            self._discarded = [message]
        else:
            self._discarded.append(message)
        self._manager.stats["discarded_results"] += 1
        if _log.isEnabledFor(logging.INFO):
            _log.info("task %s: %s result discarded in state %s", self.task_id.hex(), message.result_type.name, self._fsm)

    def send_cancel(self, force: object) -> None:
        # Anything but an explicit False asks for a forced cancel (clear()
        # passes True, a tool may pass None).
        group_id = self.group_id
        self._manager._queue.append(_new_cancel(self.task_id if group_id is None else group_id, force is not False))

    def cancel_group(self, force: object) -> None:
        if self.group_id is not None:
            self._manager._cancel_siblings(self)

    def arm_confirm_timeout(self, _: object) -> None:
        self._manager._arm_confirm_timeout(self)

    def disarm_confirm_timeout(self, _: object) -> None:
        self._manager._disarm_confirm_timeout(self)

    def keep_connection_error(self, error: BaseException) -> None:
        self._resolved = error

    def note_not_found(self, _: object) -> None:
        if _log.isEnabledFor(logging.INFO):
            _log.info("task %s: scheduler does not know it; treated as cancelled", self.task_id.hex())

    def note_timeout(self, _: object) -> None:
        self._manager.stats["confirm_timeouts"] += 1
        if _log.isEnabledFor(logging.WARNING):
            _log.warning(
                "task %s: no answer to cancel within %ss; treated as cancelled",
                self.task_id.hex(),
                self._manager.cancel_timeout,
            )

    def note_refused(self, _: object) -> None:
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("task %s: scheduler refused to cancel; still pending", self.task_id.hex())
