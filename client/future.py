"""A ``concurrent.futures.Future`` whose state is a declared lifecycle.

The future holds no rule of its own: every state change is a step of its
manager's lifecycle (``taskfate.client.runtime``), run under the manager's
lock; the step calls the callbacks the declaration names, which are methods
of this class (or of a subclass, for a lifecycle's own callbacks). This
module implements the library's callbacks and the stdlib ``Future`` surface
on top of the state, reading what a state *means* from the lifecycle's tags:
an outcome (``result``, ``exception``, ``cancelled``) for a final state,
``running`` for a live one.

Lock discipline
---------------
One lock per manager (an ``RLock``) guards the state of all its futures. A
future allocates no lock of its own: only when somebody first waits on it
(``result()``, ``cancel()``, ``concurrent.futures.wait``, ``as_completed``)
does it get a ``Condition`` on the manager's lock and the stdlib's waiter
list, together. Done callbacks always run after the lock is released,
exactly once each.

How future and manager talk
---------------------------
The future uses its manager's public surface only: ``lock``, ``lifecycle``,
``serializer``, ``cancel_timeout``, ``stats``, ``deadlines``,
``dispatch``/``expire`` and, from callbacks under the lock, ``send_later``
and the callbacks it implements itself (``send_cancel``, ``cancel_group``,
the confirm deadline). The runtime (``taskfate.client.runtime``) writes the
future's state fields, takes its done callbacks when it ends, and calls
``_wake`` when somebody waits on it.

Guarantees
----------
* ``cancelled()``, ``done()`` and ``running()`` never block.
* ``result()`` and ``exception()`` block at most ``timeout`` seconds, as in
  the stdlib.
* ``cancel()`` blocks at most ``timeout`` seconds (by default the manager's
  ``cancel_timeout``, after which the lifecycle itself ends the future), and
  never blocks on a thread that delivers messages, runs done callbacks or
  lifecycle callbacks, or runs an asyncio event loop: there it sends the
  request and returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Collection, Generator
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar

from taskfate.client.errors import ResultDecodeError, TaskFailed, WorkerDied
from taskfate.client.runtime import history_of
from taskfate.fsm.declare import CANCEL, CANCELLED, EXCEPTION, RESULT
from taskfate.protocol import TaskID, TaskResultType

if TYPE_CHECKING:
    from taskfate.client.manager import FutureManager

_log = logging.getLogger("taskfate.client")

_UNSET: Any = object()

if TYPE_CHECKING:
    import typing_extensions

    #: The type of the task's value, what ``result()`` returns. Its default
    #: (PEP 696) makes a bare ``Future`` mean ``Future[Any]``, so a
    #: lifecycle's own ``class MyFuture(Future)`` stays valid under ``mypy
    #: --strict``. Only type checkers read the default (typing's own
    #: ``TypeVar`` takes one from Python 3.13): nothing is installed for it.
    T = typing_extensions.TypeVar("T", default=Any)
else:
    T = TypeVar("T")

#: What the stdlib's ``wait``/``as_completed`` see for each outcome.
_STDLIB_OUTCOME = {RESULT: FINISHED, EXCEPTION: FINISHED, CANCELLED: CANCELLED_AND_NOTIFIED}


class Step(NamedTuple):
    """One entry of a future's history: ``event`` moved it ``source`` -> ``dest``
    at ``time``, a reading of the manager's clock (``time.monotonic`` by
    default: seconds since an arbitrary point, for intervals, not dates).
    ``FutureManager.wall_time(step.time)`` gives the date, in
    ``time.time()`` seconds."""

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


class Future(concurrent.futures.Future[T]):
    """The client's handle on one submitted task, generic in its value ``T``.

    Create futures through :meth:`FutureManager.submit` (or ``track``), never
    directly: the manager is what routes the scheduler's messages to them.
    The manager does not know what a task returns, so its futures are
    ``Future[Any]``; ``Client.submit(fn, ...)`` returns ``Future[R]`` for an
    ``fn`` returning ``R``. A lifecycle's own callbacks are methods of a
    subclass, taking the event's one argument, called under the manager's
    lock.
    """

    # Slots for everything the common paths touch: a slot store costs less
    # than creating an instance dict later. Rare attributes (discarded
    # results) are class-level defaults, shadowed per instance when used.
    __slots__ = ("task_id", "group_id", "_manager", "_fsm", "_outcome", "_message", "_resolved", "_callbacks", "_history", "_waiting")

    _discarded: list[Any] | None = None

    def __init__(self, task_id: TaskID, manager: FutureManager, group_id: TaskID | None = None) -> None:
        # The stdlib __init__ is deliberately not called: it allocates a
        # Condition and lists that most futures never use.
        self.task_id = task_id
        self.group_id: TaskID | None = group_id
        self._manager = manager
        # The runtime's fields (taskfate.client.runtime).
        self._fsm: str = manager.lifecycle.initial
        self._outcome: str | None = None
        self._history: tuple[Any, ...] = ()
        # What keep_result stored: the message that ended the future.
        self._message: Any = None
        # The decoded value once read (a result), or the exception once built
        # or handed over by a lost connection; _UNSET until then.
        self._resolved: Any = _UNSET
        # None, one callable, or a list once a second callback arrives: most
        # futures have at most one, and a list per future is not free.
        self._callbacks: Callable[[Future[T]], object] | list[Callable[[Future[T]], object]] | None = None
        self._waiting: _Waiting | None = None

    # -- What the lifecycle says ---------------------------------------------

    @property
    def state(self) -> str:
        """The lifecycle state's name (for the stock lifecycle ``pending``,
        ``cancel_requested``, ``done``, ``failed`` or ``cancelled``)."""
        return self._fsm

    @property
    def outcome(self) -> str | None:
        """The final state's outcome tag (``result``, ``exception`` or
        ``cancelled``), or ``None`` while the future is live."""
        return self._outcome

    @property
    def history(self) -> tuple[Step, ...]:
        """The transitions this future went through, oldest first (the most
        recent ``FutureManager.history_limit`` of them)."""
        with self._manager.lock:
            entries = self._history
        return tuple(Step(*entry) for entry in history_of(entries))

    @property
    def discarded_results(self) -> tuple[Any, ...]:
        """Results that reached this future after a cancel had won, kept so
        that no result disappears without a record."""
        with self._manager.lock:
            return tuple(self._discarded or ())

    # -- The stdlib surface ----------------------------------------------------

    def cancel(self, timeout: float | None = None, *, force: bool = True) -> bool:
        """Ask the scheduler to cancel the task; True iff the future ends cancelled.

        Fires the lifecycle's ``cancel`` event (the stock one sends one
        ``TaskCancel``, none if a cancel is already in flight), then waits
        while the future sits in a state that awaits the scheduler's answer,
        until it answers, a result arrives, the manager's confirm timeout
        passes, or the client closes; then returns whether the future ended
        with the ``cancelled`` outcome. ``timeout`` bounds this call only:
        when it runs out first the request stays in flight, the lifecycle
        still ends the future, and the return value is ``False`` (not
        cancelled yet). ``timeout=0`` sends the request and returns at once.

        On a thread that delivers messages, runs done callbacks or lifecycle
        callbacks, and on a thread running an asyncio event loop, it never
        waits: waiting there would block the very answer it waits for.

        ``force`` asks the scheduler to interrupt a task that is already
        running; without it a running task refuses (cancel fails) and the
        future goes back to waiting for its result.
        """
        outcome = self._outcome
        if outcome is not None:
            return outcome == CANCELLED
        manager = self._manager
        manager.dispatch(self, CANCEL, force)
        if timeout is not None and timeout <= 0 or not manager.may_block():
            return self._outcome == CANCELLED
        awaiting = manager.lifecycle.awaiting
        self._wait_while_in(awaiting, manager.cancel_timeout if timeout is None else timeout)
        if timeout is None and self._fsm in awaiting:
            # Our wait was as long as the lifecycle's own timeout; if no timer
            # serviced it (a manager run without one), service it now.
            manager.expire()
        return self._outcome == CANCELLED

    def cancelled(self) -> bool:
        """True if the future ended with the ``cancelled`` outcome. Never blocks."""
        return self._outcome == CANCELLED

    def running(self) -> bool:
        """True while the future is in a state tagged ``running`` (for
        taskfate's own client: a worker has started the task and no answer
        has ended it). Never blocks."""
        return self._fsm in self._manager.lifecycle.running

    def done(self) -> bool:
        """True once the future is in a final state. Never blocks."""
        return self._outcome is not None

    def result(self, timeout: float | None = None) -> T:
        """The task's value; blocks up to ``timeout`` seconds for it.

        Raises ``CancelledError`` if cancelled, the task's exception if it
        failed, ``TimeoutError`` if still live after ``timeout``, and
        ``ResultDecodeError`` if the value cannot be deserialized.
        """
        outcome = self._outcome
        if outcome is None:
            self._wait_until_done(timeout)
            outcome = self._outcome
        if outcome == RESULT:
            value = self._resolved
            return value if value is not _UNSET else self._decoded_value()
        if outcome == CANCELLED:
            raise concurrent.futures.CancelledError(self._cancel_reason())
        raise self._failure()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's exception (None if it succeeded); blocks like ``result``.

        A success whose value cannot be deserialized reports the
        ``ResultDecodeError`` that ``result()`` raises, so code that asks
        ``exception()`` first (asyncio, ``as_completed`` loops) sees it too.
        """
        if self._outcome is None:
            self._wait_until_done(timeout)
        outcome = self._outcome
        if outcome == RESULT:
            try:
                self._decoded_value()
            except ResultDecodeError as error:
                return error
            return None
        if outcome == CANCELLED:
            raise concurrent.futures.CancelledError(self._cancel_reason())
        return self._failure()

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        """Call ``fn(future)`` once the future is final, exactly once.

        If it already is, ``fn`` runs now, in this thread. Otherwise it runs in
        the thread that ends the future, after the manager's lock is released.
        Exceptions it raises are logged and otherwise ignored.
        """
        lock = self._manager.lock
        lock.acquire()
        try:
            if self._outcome is None:
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
        self._manager.run_callbacks(self, (fn,))

    def set_running_or_notify_cancel(self) -> bool:
        raise RuntimeError("a taskfate future is driven by its lifecycle, not by an executor")

    def set_result(self, result: object) -> None:
        raise RuntimeError("a taskfate future is driven by its lifecycle; results come from the scheduler")

    def set_exception(self, exception: BaseException | None) -> None:
        raise RuntimeError("a taskfate future is driven by its lifecycle; failures come from the scheduler")

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self).__await__()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task_id.hex()[:12]} {self._fsm}>"

    # What concurrent.futures.wait / as_completed / the stdlib's internals
    # reach for, derived from the lifecycle's tags. Built on first use only.
    # The stdlib declares them as attributes; the setters, which refuse, say
    # so to type checkers (as_completed takes any object that has them).

    @property
    def _state(self) -> str:
        outcome = self._outcome
        if outcome is not None:
            return _STDLIB_OUTCOME[outcome]
        return RUNNING if self._fsm in self._manager.lifecycle.running else PENDING

    @_state.setter
    def _state(self, value: str) -> None:
        self._refuse_stdlib_field("_state")

    @property
    def _condition(self) -> threading.Condition:
        return (self._waiting or self._start_waiting()).condition

    @_condition.setter
    def _condition(self, value: threading.Condition) -> None:
        self._refuse_stdlib_field("_condition")

    @property
    def _waiters(self) -> list[Any]:
        return (self._waiting or self._start_waiting()).waiters

    @_waiters.setter
    def _waiters(self, value: list[Any]) -> None:
        self._refuse_stdlib_field("_waiters")

    @staticmethod
    def _refuse_stdlib_field(name: str) -> NoReturn:
        raise AttributeError(f"{name} of a taskfate future is derived from its lifecycle; it cannot be set")

    def _start_waiting(self) -> _Waiting:
        lock = self._manager.lock
        with lock:
            if self._waiting is None:
                self._waiting = _Waiting(lock)
            return self._waiting

    # -- What the manager calls, under its lock ---------------------------------

    def _wake(self, outcome: str) -> None:
        """The future just entered a final state with ``outcome`` and
        somebody waits on it: tell the stdlib's waiters (``wait``,
        ``as_completed``) and wake every thread blocked in ``result()`` or
        ``cancel()``. Called by the runtime, under the lock."""
        waiting = self._waiting
        assert waiting is not None
        for waiter in waiting.waiters:
            if outcome == CANCELLED:
                waiter.add_cancelled(self)
            elif outcome == EXCEPTION:
                waiter.add_exception(self)
            else:
                waiter.add_result(self)
        waiting.condition.notify_all()

    # -- Waiting ----------------------------------------------------------------

    def _wait_while_in(self, states: Collection[str], timeout: float | None) -> None:
        condition = self._condition
        deadline = None if timeout is None else time.monotonic() + timeout
        with condition:
            while self._fsm in states:
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
            while self._outcome is None:
                if deadline is None:
                    condition.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise concurrent.futures.TimeoutError()
                    condition.wait(remaining)

    # -- Reading what ended the future -------------------------------------------

    def value_of(self, message: Any) -> Any:
        """The task's value, from the message ``keep_result`` stored.

        The stock form unpickles a ``TaskResult``'s payload with the
        manager's serializer; a library whose results are other messages (or
        references to fetch) overrides it. Raising is fine: ``result()``
        reports it as ``ResultDecodeError``.
        """
        return self._manager.serializer.loads(message.payload)

    def error_of(self, message: Any) -> BaseException:
        """The task's exception, from the message ``keep_result`` stored in a
        future that ended with the ``exception`` outcome. Overridable like
        :meth:`value_of`; the stock form reads a ``TaskResult``."""
        if getattr(message, "result_type", None) == TaskResultType.WORKER_DIED:
            detail = message.payload.decode("utf-8", "replace") or "no detail"
            return WorkerDied(f"worker died running task {self.task_id.hex()}: {detail}")
        try:
            decoded = self._manager.serializer.loads(message.payload)
        except Exception as exc:
            return TaskFailed(f"task {self.task_id.hex()} failed; its error could not be decoded: {exc!r}")
        return decoded if isinstance(decoded, BaseException) else TaskFailed(repr(decoded))

    def _decoded_value(self) -> T:
        value: T = self._resolved
        if value is _UNSET:
            try:
                value = self.value_of(self._message)
            except Exception as exc:
                raise ResultDecodeError(f"task {self.task_id.hex()} result could not be decoded: {exc!r}") from exc
            # Two first readers may both decode; the lock makes them agree on
            # one object, as the stdlib's result() always returns the same.
            lock = self._manager.lock
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
        if message is None:
            error = TaskFailed(f"task {self.task_id.hex()} ended in {self._fsm!r} with no result kept")
        else:
            error = self.error_of(message)
        with self._manager.lock:
            if self._resolved is _UNSET:
                self._resolved = error
            kept: BaseException = self._resolved
            return kept

    def _cancel_reason(self) -> str:
        history = self._history
        return f"task {self.task_id.hex()} cancelled ({history[-2][0] if history else 'unknown'})"

    # -- The library's lifecycle callbacks ----------------------------------------
    # Named in taskfate.fsm.declare (the vocabulary a declaration may use) and
    # called by the runtime, under the manager's lock, with the event's
    # argument. Outside effects (messages to send, callbacks to run) are
    # queued on the manager and released after the lock.

    def keep_result(self, message: Any) -> None:
        self._message = message

    def discard_result(self, message: Any) -> None:
        if self._discarded is None:
            self._discarded = [message]
        else:
            self._discarded.append(message)
        self._manager.stats["discarded_results"] += 1
        if _log.isEnabledFor(logging.INFO):
            _log.info("task %s: result %r discarded in state %s", self.task_id.hex(), getattr(message, "result_type", message), self._fsm)

    # These four forward to the manager, which keeps the messages and the
    # deadlines; the runtime calls the manager's directly unless a subclass
    # overrides them (taskfate.client.runtime.HOST_CALLBACKS).

    def send_cancel(self, force: object) -> None:
        self._manager.send_cancel(self, force)

    def cancel_group(self, force: object) -> None:
        self._manager.cancel_group(self, force)

    def arm_confirm_timeout(self, argument: object) -> None:
        self._manager.arm_confirm_timeout(self, argument)

    def disarm_confirm_timeout(self, argument: object) -> None:
        self._manager.disarm_confirm_timeout(self, argument)

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
            _log.debug("task %s: scheduler refused to cancel; the task runs on", self.task_id.hex())

    def note_started(self, _: object) -> None:
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("task %s: a worker started it", self.task_id.hex())
