"""The sans-I/O owner of a client's futures.

``FutureManager`` turns incoming protocol messages (through its lifecycle's
classifier) and local events into lifecycle events, runs the declared rule
for the future each one concerns (``taskfate.client.runtime``), and hands
outgoing messages to a ``send`` callable. It runs any
:class:`~taskfate.fsm.Lifecycle`: everything it does differently per
lifecycle (the initial state, which states end a future and how, which await
the scheduler's answer, which messages are for futures) it reads from the
lifecycle, never from stock names. It opens no
socket: a transport (``taskfate.client.Client``), a test, or another
library's client decides how messages travel.

Effects are released after the lock: callbacks run under the manager's lock
only record what should happen (a ``TaskCancel`` to send, a future whose done
callbacks are due); the public method that caused them sends and runs them
once the lock is free, so a ``send`` that blocks or a callback that calls back
into the manager cannot deadlock it. That holds for a lifecycle callback too:
one that calls back into the manager under the lock (cancelling another
future, say) only queues, and the outermost call releases everything.

What happens to bad input, never raised into the delivering thread:

* a message for an unknown task id (never submitted, or already finished and
  forgotten) is counted in ``stats["unknown_task"]`` and logged; a result
  among them is also kept in ``late_results`` (bounded), so none vanishes
  without a record;
* a message the lifecycle has no rule for in the future's state is counted in
  ``stats["ignored"]`` and logged at debug level;
* a cancel confirm that answers an earlier request than the latest one sent
  for its task (or group) is dropped before the lifecycle sees it, counted
  in ``stats["stale_confirms"]`` and logged at debug level (the epoch rule,
  :meth:`FutureManager.answers_earlier_request`);
* a message that is not for futures (a heartbeat; anything the classifier
  maps to ``None``) is counted in ``stats["not_for_futures"]``;
* a classifier that raises is counted in ``stats["unclassifiable"]`` and
  logged; the message is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import operator
import threading
import time
from collections.abc import Callable
from threading import get_ident
from typing import Any

from taskfate.client.deadlines import Deadlines
from taskfate.client.errors import ConnectionLost
from taskfate.client.future import Future
from taskfate.client.runtime import DEFAULT_HISTORY_LIMIT, Due, PlainEnding, Rules, compile_steps, plain_endings
from taskfate.client.serializer import PickleSerializer, Serializer
from taskfate.fsm.declare import CLEAR, CLOSE, CONFIRM_TIMEOUT, CONNECTION_LOST, GROUP_CANCEL, Lifecycle
from taskfate.fsm.lifecycle import DEFAULT_POLICY, Policy
from taskfate.fsm.table import get_lifecycle
from taskfate.protocol import MAX_EPOCH, CancelConfirmType, Message, Task, TaskID
from taskfate.protocol.codec import _new_cancel

_log = logging.getLogger("taskfate.client")

#: Default seconds a cancel may wait for the scheduler's answer before the
#: lifecycle gives up and ends the future cancelled.
DEFAULT_CANCEL_TIMEOUT = 30.0
#: How many results for unknown tasks the manager keeps for inspection.
DEFAULT_LATE_RESULTS = 1024


class FutureManager:
    """Routes protocol messages to the futures of one client.

    ``send`` receives every outgoing message (a ``Task`` on submit, a
    ``TaskCancel`` on cancel or clear); it is called without the manager's lock
    held, from whichever thread caused the message.

    ``lifecycle`` is the :class:`~taskfate.fsm.Lifecycle` the futures run
    (made by :func:`taskfate.fsm.declare`); without it, ``late_result`` picks
    a stock one (``"cancel"``: a result racing a cancel is recorded as
    discarded and the future ends cancelled; ``"deliver"``: the result wins;
    the two names are :data:`taskfate.fsm.Policy`).
    ``future_class`` is the class of its futures; a lifecycle's own callbacks
    are its methods, and one it lacks is refused here (``TypeError``).
    ``cancel_timeout`` bounds how long a cancel waits for the scheduler
    before the lifecycle ends the future anyway. With ``timer=True`` (the
    default) one daemon thread per manager, started on the first cancel and
    gone when no deadline is left, services those timeouts; with
    ``timer=False`` the owner calls :meth:`expire` itself (a transport's
    loop, or a test with an injected ``clock``).
    """

    def __init__(
        self,
        send: Callable[[Message], object],
        *,
        lifecycle: Lifecycle | None = None,
        late_result: Policy | Lifecycle = DEFAULT_POLICY,
        serializer: Serializer | None = None,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        timer: bool = True,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        late_results_limit: int = DEFAULT_LATE_RESULTS,
        future_class: type[Future] = Future,
    ) -> None:
        if not cancel_timeout > 0:
            raise ValueError("cancel_timeout must be a positive number of seconds")
        if lifecycle is None:
            lifecycle = late_result if isinstance(late_result, Lifecycle) else get_lifecycle(late_result)
        elif not isinstance(lifecycle, Lifecycle):
            raise TypeError(f"lifecycle must be a taskfate.fsm.Lifecycle (made by declare), got {type(lifecycle).__name__}")
        history_limit = operator.index(history_limit)
        if history_limit < 0:
            raise ValueError("history_limit must be 0 or more")
        self.lifecycle = lifecycle
        self.serializer: Serializer = serializer if serializer is not None else PickleSerializer()
        self.cancel_timeout = float(cancel_timeout)
        self.clock = clock
        # time.time() minus the clock, measured once, by the first wall_time().
        self._wall_offset: float | None = None
        self.stats: collections.Counter[str] = collections.Counter()
        self.late_results: collections.deque[Any] = collections.deque(maxlen=late_results_limit)
        #: The one lock over every future of this manager (see future.py).
        self.lock = threading.RLock()
        self._history_limit = history_limit
        self._history_cap = 2 * history_limit  # history entries are flat pairs
        self._send = send
        self._classify = lifecycle.messages
        self._result_events = frozenset(lifecycle.result_events())
        # The events the epoch rule applies to: answers to a cancel request.
        self._confirm_events = frozenset(lifecycle.confirm_events())
        # The epoch of the latest TaskCancel sent per target (a task id, or a
        # group id for a group's one request). An entry is made by the first
        # cancel sent for the target and dropped when its future (or its
        # group's last member) ends, so a future nobody cancels never
        # touches it and the dict stays empty, and cheap to test, while no
        # cancel is outstanding.
        self._epochs: dict[TaskID, int] = {}
        self._future_class = future_class
        #: The live futures by task id: what messages are routed to. Read
        #: only, under the lock; the steps remove a future when it ends.
        self.routes: dict[TaskID, Future] = {}
        self._groups: dict[TaskID, dict[TaskID, Future]] = {}
        # What the steps queue under the lock, released after it by _unlock:
        # messages to send, then the done callbacks of futures ended by steps
        # fired from inside other steps or broadcasts (a step's caller runs
        # the ones it is handed back). Each list lives as long as the
        # manager, emptied in place, so that send_later can be an append.
        self._outbox: list[Message] = []
        self._due: list[Due] = []
        # How many steps are running on the thread that holds the lock (one
        # inside another when a lifecycle callback calls back into the
        # manager: cancels another future, adds a done callback, clears).
        # While one runs, whatever a nested call causes stays queued for the
        # step's caller to release once the lock is free (_unlock). Read and
        # written under the lock only.
        self._stepping = 0
        #: For callbacks under the lock: queue a message to be sent once the
        #: lock is released, after the messages queued before it.
        self.send_later: Callable[[Message], None] = self._outbox.append
        self._closed = False
        # Threads on which cancel() must not wait: transports register their
        # I/O thread, the timer registers itself; a thread running done
        # callbacks is recorded while it does (run_callbacks).
        self._service_threads: set[int] = set()
        self._callback_threads: set[int] = set()
        self.deadlines: Deadlines[Future] = Deadlines(
            self.lock, clock, self.expire, timeout=self.cancel_timeout, timer=timer, service_threads=self._service_threads
        )
        #: The confirm deadline, as the library callbacks that keep it (see
        #: "For the steps" below).
        self.arm_confirm_timeout: Callable[[Future, object], None] = self.deadlines.arm
        self.disarm_confirm_timeout: Callable[[Future, object], None] = self.deadlines.disarm
        # state -> event -> step, for the declared rules; any other event
        # gets the step that counts it as ignored.
        self._steps: dict[str, Rules] = compile_steps(lifecycle, future_class, self, history_limit)
        # The rules on_message runs in place (its fast path, see there).
        self._plain_endings: dict[str, dict[str, PlainEnding]] = plain_endings(lifecycle, future_class)

    # -- Public surface -----------------------------------------------------------

    @property
    def late_result(self) -> str:
        """The lifecycle's name (for a stock one, its late-result policy)."""
        return self.lifecycle.name

    @property
    def history_limit(self) -> int:
        """How many transitions each future remembers (fixed at construction)."""
        return self._history_limit

    def wall_time(self, reading: float) -> float:
        """``reading``, a time on this manager's clock (a ``Step.time`` of
        one of its futures' histories), as wall-clock seconds since the
        epoch, the scale of ``time.time()``.

        The two clocks are paired once, by the first call, so every step
        converts with the same offset and intervals are kept exactly; a
        later adjustment of the system clock (an NTP step, say), or time the
        machine spends suspended, is not followed. With a clock of one's own
        (a test's fake clock), the answer is only as meaningful as that
        clock.
        """
        offset = self._wall_offset
        if offset is None:
            with self.lock:
                if self._wall_offset is None:
                    self._wall_offset = time.time() - self.clock()
                offset = self._wall_offset
        return reading + offset

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        """How many futures are live (not yet final)."""
        return len(self.routes)

    def get(self, task_id: TaskID) -> Future | None:
        """The live future of ``task_id``, if any."""
        return self.routes.get(task_id)

    def addresses_live(self, task_id: TaskID) -> bool:
        """Whether a message for ``task_id`` would reach a live future: its
        own, or (a group's id) a live member's. Never blocks."""
        return task_id in self.routes or bool(self._groups.get(task_id))

    def live_futures(self) -> list[Future]:
        """A snapshot of the live futures."""
        with self.lock:
            return list(self.routes.values())

    def track(self, task_id: TaskID, group_id: TaskID | None = None) -> Future:
        """A new future for ``task_id`` in the lifecycle's initial state,
        routed but not sent.

        For embedding: when another client library sends its own task
        messages, it still lets taskfate own the futures.
        """
        # Built before taking the lock: a new future is nobody else's yet.
        future = self._future_class(task_id, self, group_id)
        # acquire/release rather than ``with`` on the hot paths: the same
        # lock for less than half the interpreter overhead.
        lock = self.lock
        lock.acquire()
        try:
            if self._closed:
                raise RuntimeError("the future manager is closed")
            if self.routes.setdefault(task_id, future) is not future:
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
            with self.lock:
                self.forget(future)
            raise
        return future

    def on_message(self, message: Any) -> None:
        """Deliver one incoming message. Never raises for bad or late input.

        The lifecycle's classifier names the event; the message's
        ``task_id`` names the future (or, for a graph, the group whose live
        members all take it). A cancel confirm that answers an earlier
        request than the latest is dropped first
        (:meth:`answers_earlier_request`).
        """
        try:
            event = self._classify(message)
        except Exception:
            self.stats["unclassifiable"] += 1
            _log.exception("the lifecycle's classifier raised on %r; message dropped", message)
            return
        if event is None:
            self.stats["not_for_futures"] += 1
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("message not for futures: %r", message)
            return
        future = done = None
        lock = self.lock
        lock.acquire()
        try:
            routes = self.routes
            future = routes.get(message.task_id)
            epochs = self._epochs
            if epochs and event in self._confirm_events and self.answers_earlier_request(message, future):
                pass  # the epoch rule: counted and dropped there
            elif future is None:
                self._deliver_elsewhere(message, event)
            else:
                plain = self._plain_endings[future._fsm].get(event)
                if plain is None:
                    ended = self._run_step(future, event, message)
                    if ended is not None:
                        done = ended[1]
                else:
                    # The fast path (runtime.plain_endings): this rule's step,
                    # done in place. Every effect here is the step's.
                    dest, outcome, entry, store, disarm = plain
                    if store is not None:
                        store(future, message)
                    if disarm:
                        self.disarm_confirm_timeout(future, message)
                    future._fsm = dest
                    future._outcome = outcome
                    cap = self._history_cap
                    if cap:
                        history = future._history
                        if history:
                            history += (entry, self.clock())
                            future._history = history if len(history) <= cap else history[-cap:]
                        else:
                            future._history = (entry, self.clock())
                    del routes[message.task_id]
                    if future.group_id is not None:
                        self._leave_group(future)
                    elif epochs:
                        epochs.pop(message.task_id, None)  # as forget()
                    if future._waiting is not None:
                        future._wake(outcome)
                    done = future._callbacks
                    future._callbacks = None
        finally:
            if done is not None and self._stepping:
                # Delivered from inside a step: its caller runs them.
                self._due.append((future, done))  # type: ignore[arg-type]
                done = None
            if self._outbox or self._due:
                self._unlock()
            else:
                lock.release()
        if done is not None:
            self._run_done(future, done)  # type: ignore[arg-type]

    def dispatch(self, future: Future, event: str, argument: Any = None) -> None:
        """Fire lifecycle ``event`` on ``future`` now, and release what it
        caused (messages sent, done callbacks run) before returning.

        ``Future.cancel`` fires ``cancel`` through here; tools and tests that
        speak in events rather than messages use it too.
        """
        ended = None
        self.lock.acquire()
        stepping = self._stepping
        try:
            if stepping:
                # Called from inside a step (a lifecycle callback): as from
                # any step, everything this causes is the step's caller's
                # to release.
                self.fire(future, event, argument)
            else:
                # _run_step, written out: this is every cancel()'s path.
                self._stepping = 1
                ended = self._steps[future._fsm][event](future, argument)
        finally:
            self._stepping = stepping
            self._unlock()
        if ended is not None:
            self._run_done(*ended)

    def clear(self) -> list[Future]:
        """Fire ``clear`` on every live future (the stock lifecycle asks the
        scheduler to cancel each, forcefully).

        Returns the futures now awaiting an answer; each ends when the
        scheduler answers, a result arrives, or the confirm timeout passes.
        """
        return self._broadcast(CLEAR, True)

    def close(self) -> None:
        """Fire ``close`` on every live future (the declaration must end each)
        and refuse new ones. Idempotent."""
        with self.lock:
            self._closed = True
        self._broadcast(CLOSE, None)
        with self.lock:
            self.deadlines.close()

    def connection_lost(self, error: BaseException | None = None) -> None:
        """Fire ``connection_lost`` on every live future with ``error``
        (the declaration must end each): nothing more can arrive for them."""
        if error is None:
            error = ConnectionLost("the connection to the scheduler was lost")
        self._broadcast(CONNECTION_LOST, error)

    def expire(self, now: float | None = None) -> int:
        """Fire ``confirm_timeout`` on every future whose confirm deadline is
        due at ``now`` (default: the clock) and that still awaits an answer.

        Returns how many it fired. The timer thread calls this; transports
        that run their own loop, and tests with a fake clock, call it too.
        """
        fired = 0
        awaiting = self.lifecycle.awaiting
        self.lock.acquire()
        try:
            for future in self.deadlines.pop_due(now):
                if future._fsm in awaiting:
                    self.fire(future, CONFIRM_TIMEOUT, None)
                    fired += 1
        finally:
            self._unlock()
        return fired

    def next_deadline(self) -> float | None:
        """The earliest pending confirm deadline on the manager's clock."""
        with self.lock:
            return self.deadlines.next()

    def mark_service_thread(self, ident: int | None = None) -> None:
        """Declare that ``ident`` (default: this thread) delivers messages, so
        ``cancel()`` called there sends without waiting."""
        self._service_threads.add(threading.get_ident() if ident is None else ident)

    def may_block(self) -> bool:
        """Whether the calling thread may wait for the scheduler's answer:
        not while it holds this manager's lock (inside a lifecycle callback),
        runs its done callbacks, is a registered service thread, or runs an
        asyncio event loop."""
        if self.lock._is_owned():  # type: ignore[attr-defined]
            return False
        ident = get_ident()
        if ident in self._service_threads or ident in self._callback_threads:
            return False
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return True
        return False

    # -- For futures and their callbacks, under the lock -----------------------------

    def fire(self, future: Future, event: str, argument: Any) -> None:
        """Run ``event``'s rule on ``future``; an event its state has no rule
        for is counted as ignored. Caller holds the lock; effects are queued
        and released by the public method that took the lock."""
        ended = self._run_step(future, event, argument)
        if ended is not None:
            self._due.append(ended)

    def _run_step(self, future: Future, event: str, argument: Any) -> Due | None:
        """``event``'s step on ``future``, counted in ``_stepping`` while it
        runs. Caller holds the lock."""
        self._stepping += 1
        try:
            return self._steps[future._fsm][event](future, argument)
        finally:
            self._stepping -= 1


    def send_cancel(self, future: Future, force: object) -> None:
        """Queue one ``TaskCancel`` for ``future``'s task, or for its whole
        group. Anything but an explicit ``False`` asks for a forced cancel
        (``clear()`` passes ``True``, a tool may pass ``None``).

        Each request carries the next epoch of its target (1, 2, 3 ...,
        wrapping to 1 past ``MAX_EPOCH``), so that the scheduler's echo of
        it tells which request a confirm answers."""
        group_id = future.group_id
        target = future.task_id if group_id is None else group_id
        epochs = self._epochs
        epoch = epochs.get(target, 0) % MAX_EPOCH + 1
        epochs[target] = epoch
        self._outbox.append(_new_cancel(target, force is not False, epoch))

    def answers_earlier_request(self, message: Any, future: Future | None) -> bool:
        """Whether ``message``, a cancel confirm for ``future`` (``None``: it
        names no live future, maybe a group), answers a cancel request older
        than the latest one sent for its target; if so it is counted in
        ``stats["stale_confirms"]`` and logged, and the caller drops it.

        The epoch rule, in its one place. Without it a late or duplicated
        answer to an earlier request (a refusal of a gentle cancel, say)
        would be taken for the answer to the latest one (a forced cancel
        that followed) and send the future back to waiting for a result.
        Only a refusal is dropped: "cancelled" and "not found" say the task
        is gone whichever request found it so, and dropping them can leave a
        future waiting for a task that no longer exists (two requests
        reordered on the way: the later refused first, the earlier answered
        "cancelled"; ``taskfate explore --system`` finds it). An unnumbered
        confirm (epoch 0: the scheduler spoke on its own, or the peer's
        protocol has no epochs) is always accepted, and so is a numbered one
        for a target with no request on record: there is nothing to compare
        it with. Caller holds the lock.
        """
        epoch = getattr(message, "epoch", 0)
        if not epoch or getattr(message, "confirm_type", None) != CancelConfirmType.CANCEL_FAILED:
            return False
        target = message.task_id if future is None or future.group_id is None else future.group_id
        latest = self._epochs.get(target)
        if latest is None or latest == epoch:
            return False
        self.stats["stale_confirms"] += 1
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("task %s: confirm %r answers cancel request %d, not the latest (%d); dropped", target.hex(), message, epoch, latest)
        return True

    def cancel_group(self, future: Future, force: object) -> None:
        """Fire ``group_cancel`` on the other live members of ``future``'s group."""
        group_id = future.group_id
        members = self._groups.get(group_id) if group_id is not None else None
        if members:
            for sibling in list(members.values()):
                if sibling is not future:
                    self.fire(sibling, GROUP_CANCEL, None)

    def _leave_group(self, future: Future) -> None:
        """Stop routing group messages to ``future`` (it ended)."""
        group_id = future.group_id
        members = self._groups.get(group_id) if group_id is not None else None
        if members is not None:
            members.pop(future.task_id, None)
            if not members:
                del self._groups[group_id]  # type: ignore[arg-type]
                if self._epochs:
                    self._epochs.pop(group_id, None)  # type: ignore[arg-type]

    def run_callbacks(self, future: Future, callbacks: tuple[Callable[[Future], object], ...]) -> None:
        """Run ``callbacks`` for ``future`` on this thread, after the lock is
        released (now, unless the caller holds the lock), as every done
        callback runs: see :meth:`_unlock`."""
        self.lock.acquire()
        self._due.append((future, list(callbacks)))
        self._unlock()

    # -- Inside --------------------------------------------------------------------

    def _deliver_elsewhere(self, message: Any, event: str) -> None:
        """A message whose task id has no live future: for a group's members,
        or for nobody (counted, and a result kept in ``late_results``).
        A result is one task's outcome, never a group's: addressed to a
        group id (a graph's umbrella answered twice) it reaches no member.
        Caller holds the lock."""
        task_id = message.task_id
        result = event in self._result_events
        members = None if result else self._groups.get(task_id)
        if not members:
            self.stats["unknown_task"] += 1
            if result:
                self.late_results.append(message)
                if _log.isEnabledFor(logging.INFO):
                    _log.info("result for unknown or finished task %s kept in late_results", task_id.hex())
            elif _log.isEnabledFor(logging.DEBUG):
                _log.debug("message for unknown or finished task %s: %r", task_id.hex(), message)
            return
        for member in list(members.values()):
            self.fire(member, event, message)

    def ignored(self, future: Future, event: str) -> None:
        """Count ``event`` as ignored by ``future``'s state (no rule for it)."""
        self.stats["ignored"] += 1
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("task %s: %s ignored in state %s", future.task_id.hex(), event, future._fsm)

    def forget(self, future: Future) -> None:
        """Stop routing messages (its own and its group's) to ``future``: the
        steps call it when a future ends, ``submit`` when its task never
        left. A tool may have dispatched on a future no longer routed, so
        only this very future is removed."""
        routes = self.routes
        other = routes.pop(future.task_id, None)
        if other is not future and other is not None:
            routes[future.task_id] = other  # a different future a tool dispatched around
        elif future.group_id is None and self._epochs:
            self._epochs.pop(future.task_id, None)  # its cancels' record (a group's goes with the group)
        if future.group_id is not None:
            self._leave_group(future)

    def _broadcast(self, event: str, argument: Any) -> list[Future]:
        awaiting = self.lifecycle.awaiting
        self.lock.acquire()
        try:
            targets = list(self.routes.values())
            for future in targets:
                # A group sibling's rule may have ended this one already.
                if future._outcome is None:
                    self.fire(future, event, argument)
            remaining = [future for future in targets if future._fsm in awaiting]
        finally:
            self._unlock()
        return remaining

    def _unlock(self) -> None:
        """Release the lock a public method took, then what the steps run
        under it queued: the messages sent in order, then the done callbacks
        run in order (:meth:`_run_done`).

        The queue is emptied into a batch of this caller's before the lock
        goes: once it is free another thread may queue more, and releases
        its own. Called from inside a step (a lifecycle callback that called
        back into the manager) it only releases that call's hold: the lock
        is still the step's, and the step's caller releases the queue."""
        if self._stepping:
            self.lock.release()
            return
        outbox = self._outbox
        due = self._due
        if not due:
            if not outbox:
                self.lock.release()
                return
            finished = None
        else:
            finished = due.copy()
            due.clear()
        messages = outbox.copy()
        outbox.clear()
        self.lock.release()
        if messages:
            send = self._send
            for message in messages:
                try:
                    send(message)
                except Exception:
                    # The lifecycle already moved; the confirm timeout ends
                    # the future if this request never reaches the scheduler.
                    _log.exception("sending %r failed", message)
        if finished is not None:
            for future, done in finished:
                self._run_done(future, done)

    def _run_done(self, future: Future, done: Callable[[Future], object] | list[Callable[[Future], object]]) -> None:
        """Run a finished future's done callbacks (one, or a list), in order,
        the lock not held.

        While they run, this thread is recorded as one that runs them, so a
        ``cancel()`` in one sends and returns rather than waiting for an
        answer this very thread may be the one to deliver. A callback that
        raises is logged; the others still run."""
        ident = get_ident()
        running = self._callback_threads
        outermost = ident not in running
        if outermost:
            running.add(ident)
        callbacks: list[Callable[[Future], object]] | tuple[Callable[[Future], object]] = done if isinstance(done, list) else (done,)
        try:
            for callback in callbacks:
                try:
                    callback(future)
                except Exception:
                    _log.exception("done callback %r of %r raised", callback, future)
        finally:
            if outermost:
                running.discard(ident)
