"""Fuzz your own message handling against the declared lifecycle.

A library that embeds taskfate (its own socket loop, its own wire framing, its
own routing of groups) can get every ordering bug the lifecycle rules out
back again in the few lines around ``FutureManager.on_message``. This module
gives such a library the same tools taskfate's own tests use:

* Hypothesis strategies for protocol messages (:func:`task_ids`,
  :func:`tasks`, :func:`task_results`, :func:`cancel_confirms`,
  :func:`messages`, ...) and for the orderings in which a scheduler's answers
  about a set of tasks may reach a client (:func:`orderings`: one outcome per
  task, cancel answers, duplicates, losses, any interleaving).
* :class:`ReferenceClient`, a pure executor of the declared lifecycle with the
  routing the docs promise (a group's confirm reaches its live members,
  finished futures get no more messages, a confirm timer per cancel).
* :class:`ClientMachine`, a Hypothesis rule-based state machine. Subclass it,
  say how to build your client, submit through it and hand it a message; the
  machine submits tasks, delivers results and confirms in every order (for
  tasks and groups, duplicated, late, unsolicited), cancels, lets time pass,
  clears, closes and drops the connection, and after every step checks that
  your futures and your outgoing messages agree with the reference.

``docs/fuzzing.md`` walks through a complete example. This module imports
Hypothesis (install the ``fuzz`` extra); it does no I/O, and starts threads
only for a machine with ``blocking = True`` (one per blocking call it makes).
"""

from __future__ import annotations

import collections
import concurrent.futures
import inspect
import logging
import pickle
import sys
import threading
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple, TypeVar, cast

import hypothesis.errors
import hypothesis.stateful
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.errors import FailedHealthCheck, Flaky, InvalidArgument, InvalidDefinition, Unsatisfiable
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, precondition, rule, run_state_machine_as_test

from taskfate.fsm import lifecycle as lc
from taskfate.fsm.declare import CANCEL, CANCELLED, CLEAR, CLOSE, CONFIRM_TIMEOUT, CONNECTION_LOST, EXCEPTION, GROUP_CANCEL, RESULT
from taskfate.fsm.table import Executor, Lifecycle, get_lifecycle
from taskfate.protocol import (
    CancelConfirmType,
    ClientDisconnect,
    Heartbeat,
    Message,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskID,
    TaskResult,
    TaskResultType,
    TaskStarted,
)

__all__ = [
    "AFTER_AN_ANSWER",
    "AFTER_A_HEARTBEAT",
    "AFTER_A_NOTICE",
    "AFTER_A_RESULT",
    "AFTER_TIME_PASSES",
    "CANCEL_SENT",
    "GRAPH_SENT",
    "PROMISES",
    "TASK_SENT",
    "BrokenPromise",
    "ClientMachine",
    "FakeClock",
    "MessageKinds",
    "ObjectStore",
    "ReferenceClient",
    "Sent",
    "as_coroutine",
    "broken_promise",
    "classify_by",
    "drive",
    "findings",
    "cancel_confirms",
    "messages",
    "orderings",
    "payloads",
    "scheduler_messages",
    "task_cancels",
    "task_ids",
    "task_results",
    "tasks",
]

_log = logging.getLogger(__name__)

# -- Strategies ------------------------------------------------------------------


def task_ids() -> st.SearchStrategy[TaskID]:
    """Task (and group) ids: 16 arbitrary bytes."""
    return st.binary(min_size=16, max_size=16).map(TaskID)


def payloads(max_size: int = 64) -> st.SearchStrategy[bytes]:
    """Opaque payload bytes, empty included."""
    return st.binary(max_size=max_size)


def _ids(ids: Sequence[TaskID] | None) -> st.SearchStrategy[TaskID]:
    return st.sampled_from(list(ids)) if ids else task_ids()


def tasks(ids: Sequence[TaskID] | None = None, group_ids: Sequence[TaskID] | None = None) -> st.SearchStrategy[Task]:
    """``Task`` messages, for ``ids`` if given, in a group from ``group_ids`` or none."""
    groups: st.SearchStrategy[TaskID | None] = st.none() | (_ids(group_ids) if group_ids else task_ids())
    return st.builds(Task, _ids(ids), payloads(), groups, st.lists(task_ids(), max_size=3).map(tuple))


def task_cancels(ids: Sequence[TaskID] | None = None) -> st.SearchStrategy[TaskCancel]:
    return st.builds(TaskCancel, _ids(ids), st.booleans())


def task_results(ids: Sequence[TaskID] | None = None) -> st.SearchStrategy[TaskResult]:
    return st.builds(TaskResult, _ids(ids), st.sampled_from(TaskResultType), payloads())


def cancel_confirms(ids: Sequence[TaskID] | None = None) -> st.SearchStrategy[TaskCancelConfirm]:
    return st.builds(TaskCancelConfirm, _ids(ids), st.sampled_from(CancelConfirmType))


def scheduler_messages(ids: Sequence[TaskID] | None = None) -> st.SearchStrategy[TaskResult | TaskCancelConfirm]:
    """What a scheduler may send about ``ids``: results and cancel confirms."""
    return st.one_of(task_results(ids), cancel_confirms(ids))


def messages(ids: Sequence[TaskID] | None = None) -> st.SearchStrategy[Message]:
    """Any message of the protocol, in either direction."""
    return st.one_of(
        tasks(ids),
        task_cancels(ids),
        task_results(ids),
        cancel_confirms(ids),
        st.just(Heartbeat()),
        st.just(ClientDisconnect()),
    )


@st.composite
def _ordering(draw: Any, ids: Sequence[TaskID], group_id: TaskID | None, max_copies: int, faithful: bool) -> list[TaskResult | TaskCancelConfirm]:
    sent: list[TaskResult | TaskCancelConfirm] = []
    for task_id in ids:
        kind = draw(st.sampled_from(TaskResultType))
        for _ in range(draw(st.integers(0, max_copies))):  # 0 copies: lost; more: duplicated
            if not faithful:
                kind = draw(st.sampled_from(TaskResultType))
            sent.append(TaskResult(task_id, kind, draw(payloads(8))))
        targets = [task_id] if group_id is None else [task_id, group_id]
        for confirm in draw(st.lists(st.sampled_from(CancelConfirmType), max_size=2)):
            sent.append(TaskCancelConfirm(draw(st.sampled_from(targets)), confirm))
    return list(draw(st.permutations(sent)))


def orderings(
    ids: Sequence[TaskID], *, group_id: TaskID | None = None, max_copies: int = 2, faithful: bool = True
) -> st.SearchStrategy[list[TaskResult | TaskCancelConfirm]]:
    """Orderings in which a scheduler's answers about ``ids`` may arrive.

    For each task the scheduler settles one result type (any type per copy
    with ``faithful=False``) and sends it up to ``max_copies`` times (zero:
    the result is lost; more: the channel duplicated it), plus up to two
    cancel confirms of any type, addressed to the task or, if ``group_id``
    is given, to its group. The whole lot arrives in any order.
    """
    if not ids:
        raise ValueError("orderings needs at least one task id")
    return _ordering(list(ids), group_id, max_copies, faithful)


# -- Promises ------------------------------------------------------------------------

#: What :class:`ClientMachine` holds a client to, by name. A broken promise is
#: raised as a :class:`BrokenPromise` naming it and the lifecycle event after
#: which it broke, so two bugs that break different promises, or the same
#: promise after different events, are two failures to Hypothesis (it tells
#: failures apart by exception type and place) and each is shrunk on its own.
PROMISES: Final[dict[str, str]] = {
    "one-task-per-submit": "a submit sends one task (a graph submit: one graph naming its members), in the group asked for",
    "done": "done() is True exactly when the lifecycle has ended the future",
    "cancelled": "cancelled() is True exactly when the future ended with the cancelled outcome",
    "running": "running() is True exactly in the states the lifecycle tags running (held only by a lifecycle that tags one)",
    "result": "result() returns the value the scheduler sent",
    "exception": "exception() is the task's own error once the future ended failed",
    "cancel-returns": "cancel() returns whether the future is now cancelled",
    "sends": "the client sends exactly what the lifecycle calls for: its tasks and one cancel request per request the lifecycle makes",
    "callbacks-once": "every done callback runs exactly once, once the future ended",
    "cancel-wait-ends": "a cancel(timeout) blocked in a thread returns once the lifecycle no longer awaits the answer",
    "clear-wait-ends": "a clear() blocked in a thread returns once no future it cleared awaits an answer",
    "close-wait-ends": "a close() blocked in a thread returns once close has ended every future",
}


#: What a broken promise is reported "after", for the scheduler's messages:
#: the kind of message, not the event, so one bug reached through each of
#: several result types (or answers) is one finding, not one per type.
#: Every other event (``cancel``, ``clear``, ``confirm_timeout``, ...) is
#: reported by its own name.
AFTER_A_RESULT: Final = "a result"
AFTER_AN_ANSWER: Final = "an answer"
AFTER_A_NOTICE: Final = "a notice"
#: The two steps that are no lifecycle event, as findings name them.
AFTER_A_HEARTBEAT: Final = "a heartbeat"
AFTER_TIME_PASSES: Final = "time passing"


class BrokenPromise(AssertionError):
    """A promise of :data:`PROMISES` the client broke.

    ``promise`` names it and ``event`` says after what it broke: the
    lifecycle event that ended the future, released the wait or asked for
    the message, with the scheduler's messages grouped by kind
    (:data:`AFTER_A_RESULT`, :data:`AFTER_AN_ANSWER`, :data:`AFTER_A_NOTICE`;
    :meth:`ClientMachine.finding` does the grouping). A promise broken at a
    step that fired no rule for the future (the lifecycle ignores that
    message for it, or time passed with nothing due) is reported after the
    step, marked so, unless a blocking call made earlier about the future
    is open (its thread may be what changed it): "after an answer the
    lifecycle ignores" is a client acting on an answer it should not have,
    a bug apart from mishandling one it should. Each ``(promise, event)`` pair is its own subclass, made
    once, so Hypothesis reports and shrinks each pair as a separate failure
    even though they are raised from one place.
    """

    promise: str = ""
    event: str = ""


_BROKEN: dict[tuple[str, str], type[BrokenPromise]] = {}


def broken_promise(promise: str, event: str) -> type[BrokenPromise]:
    """The :class:`BrokenPromise` subclass for ``promise`` broken after ``event``."""
    if promise not in PROMISES:
        raise ValueError(f"unknown promise {promise!r}; promises are {sorted(PROMISES)}")
    kind = _BROKEN.get((promise, event))
    if kind is None:
        made: Any = type(f"BrokenPromise[{promise} after {event}]", (BrokenPromise,), {"promise": promise, "event": event, "__module__": __name__})
        kind = _BROKEN[(promise, event)] = made
    return kind


# -- What a client sends, as the machine compares it ---------------------------------

TASK_SENT: Final = "task"
GRAPH_SENT: Final = "graph"
CANCEL_SENT: Final = "cancel"


class Sent(NamedTuple):
    """One outgoing message, as the machine counts it.

    ``kind`` is ``"task"`` (one task, in group ``group_id`` or none),
    ``"graph"`` (a whole graph: ``task_id`` is its umbrella id, ``members``
    the ids of its tasks) or ``"cancel"`` (a cancel request for a task or a
    group, forced or not). :meth:`ClientMachine.read_sent` turns a library's
    own outgoing messages into these, so the kit never needs the library's
    types to compare them.
    """

    kind: str
    task_id: bytes
    group_id: bytes | None = None
    force: bool = True
    members: tuple[bytes, ...] = ()

    def key(self) -> tuple[object, ...]:
        """What two messages must share to count as the same request."""
        if self.kind == CANCEL_SENT:
            return (CANCEL_SENT, bytes(self.task_id), self.force)
        if self.kind == GRAPH_SENT:
            return (GRAPH_SENT, bytes(self.task_id), tuple(bytes(m) for m in self.members))
        return (self.kind, bytes(self.task_id))


# -- Helpers for adapters ------------------------------------------------------------

T = TypeVar("T")


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end on this thread, without an event loop.

    For a library whose message handlers are coroutines that never actually
    suspend when their I/O is a stand-in (a send that records): the machine
    calls everything from one thread, and an event loop per message would
    only add latency. A coroutine that does suspend is closed and refused
    with ``RuntimeError``: it waits for something the machine cannot give.
    """
    try:
        coroutine.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coroutine.close()
    raise RuntimeError("drive() runs coroutines that finish without suspending; this one waited")


class MessageKinds:
    """A lifecycle classifier for messages that say what they are in one
    field, which can also build them: see :func:`classify_by`."""

    def __init__(self, kinds: Sequence[tuple[type, str, Mapping[str, object]]], task_id: str | None) -> None:
        self.kinds = tuple((kind, field, dict(events)) for kind, field, events in kinds)
        self.task_id = task_id
        self._tables = [(kind, field, {value: event for event, value in events.items()}) for kind, field, events in self.kinds]

    def __call__(self, message: Any) -> str | None:
        for kind, field, events in self._tables:
            if isinstance(message, kind):
                return events.get(getattr(message, field))
        return None

    def build(self, event: str, task_id: bytes, **fields: object) -> Any:
        """The message that fires ``event`` for ``task_id``: its class
        called with keyword arguments, the id under the ``task_id`` field
        name given to :func:`classify_by`, the kind field set, and
        ``fields`` for the rest the class requires."""
        if self.task_id is None:
            raise TypeError("classify_by(..., task_id=field name) is needed to build messages")
        for kind, field, events in self.kinds:
            if event in events:
                return kind(**{self.task_id: bytes(task_id), field: events[event]}, **fields)
        raise KeyError(f"no message kind fires {event!r}")


def classify_by(*kinds: tuple[type, str, Mapping[str, object]], task_id: str | None = None) -> MessageKinds:
    """A lifecycle classifier for messages that say what they are in one
    field: each kind is ``(message class, field name, {event: field value})``.

    Most protocols have a result message with a result-type field and a
    confirm message with a confirm-type field; the tables that build those
    messages for the machine (event -> value) are then the classifier too,
    read backwards, so the two cannot disagree. Field values of different
    kinds may be equal (two enums both starting at 0): each kind is looked
    up on its own. With ``task_id`` (the name of the messages' id field)
    the classifier also builds messages (:meth:`MessageKinds.build`), and
    :class:`ClientMachine` builds its cancel answers with it: a library
    whose answers carry nothing but the id and the kind writes no
    ``make_confirm``.
    """
    return MessageKinds(kinds, task_id)


def as_coroutine(function: Callable[..., T]) -> Callable[..., Coroutine[Any, Any, T]]:
    """``function`` as a coroutine function that calls it and returns: a
    recording ``send`` handed to an async library (its connector's ``await
    send(message)``), to be run by :func:`drive`."""

    async def call(*args: Any, **kwargs: Any) -> T:
        return function(*args, **kwargs)

    return call


class ObjectStore:
    """A stand-in object store for clients whose results are references.

    ``put`` keeps a value and returns a fresh reference of ``ref_size``
    bytes; ``fetch`` answers a reference with an already finished
    ``concurrent.futures.Future`` (the value, an exception instance
    included, is its result; an unknown reference fails it with
    ``KeyError``), as a client's object buffer would once the bytes arrived.
    """

    def __init__(self, ref_size: int = 32) -> None:
        self.ref_size = ref_size
        self.values: dict[bytes, object] = {}
        self._serial = 0

    def put(self, value: object) -> bytes:
        self._serial += 1
        ref = self._serial.to_bytes(self.ref_size, "big")
        self.values[ref] = value
        return ref

    def get(self, ref: bytes) -> object:
        return self.values[bytes(ref)]

    def fetch(self, ref: bytes, *_: object, **__: object) -> concurrent.futures.Future[object]:
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        try:
            future.set_result(self.values[bytes(ref)])
        except KeyError as missing:
            future.set_exception(missing)
        return future


# -- The reference ---------------------------------------------------------------


class _ReferenceFuture:
    """One task's future as the declaration says it evolves; the callbacks
    named in the declaration record their effects for comparison."""

    def __init__(self, client: ReferenceClient, task_id: TaskID, group_id: TaskID | None) -> None:
        self.client = client
        self.task_id = task_id
        self.group_id = group_id
        self.state: str = client.lifecycle.initial
        self.history: list[str] = []
        self.kept: Any = None
        self.kept_event: str | None = None
        self.discarded: list[Any] = []
        self.error: object = None
        self.deadline: float | None = None

    def keep_result(self, message: Any) -> None:
        self.kept = message
        self.kept_event = self.client.event

    def discard_result(self, message: Any) -> None:
        self.discarded.append(message)

    def send_cancel(self, force: object) -> None:
        target = self.group_id if self.group_id is not None else self.task_id
        self.client.record(Sent(CANCEL_SENT, target, force=force is not False))

    def cancel_group(self, force: object) -> None:
        self.client._cancel_siblings(self)

    def arm_confirm_timeout(self, _: object) -> None:
        self.deadline = self.client.now + self.client.cancel_timeout

    def disarm_confirm_timeout(self, _: object) -> None:
        self.deadline = None

    def keep_connection_error(self, error: object) -> None:
        self.error = error

    def note_not_found(self, _: object) -> None:
        pass

    def note_timeout(self, _: object) -> None:
        pass

    def note_refused(self, _: object) -> None:
        pass

    def note_started(self, _: object) -> None:
        pass


def _no_effect(model: _ReferenceFuture, _: object) -> None:
    """A library callback the reference cannot see into: the state change
    the declaration attaches it to is all the reference follows."""


def _model_class(lifecycle: Lifecycle) -> type[_ReferenceFuture]:
    """The reference future for ``lifecycle``: the stock callbacks' effects,
    and the declaration's own callbacks as no-ops."""
    if not lifecycle.user_callbacks:
        return _ReferenceFuture
    return type("_DeclaredReferenceFuture", (_ReferenceFuture,), dict.fromkeys(lifecycle.user_callbacks, _no_effect))


def _lifecycle(lifecycle: lc.Policy | Lifecycle) -> Lifecycle:
    return lifecycle if isinstance(lifecycle, Lifecycle) else get_lifecycle(lifecycle)


#: The classifiers that read taskfate's own messages, heartbeats included.
_TASKFATE_CLASSIFIERS: Final = (lc.stock_messages, lc.started_messages)


def _fires(classify: Callable[[Any], str | None], message: object) -> str | None:
    """The event ``classify`` says ``message`` (one of taskfate's) fires."""
    try:
        return classify(message)
    except Exception:  # a classifier that cannot read a message of ours: it fires nothing
        return None


def _valueless(lifecycle: Lifecycle) -> frozenset[str]:
    """The result events whose message carries no value of the task's: the
    stock worker-died event, and one that only a taskfate ``WORKER_DIED``
    result fires to ``lifecycle``'s classifier (one that a failure fires
    too carries the failure's value when the machine builds it)."""
    probe = TaskID(bytes(16))
    fired = {kind: _fires(lifecycle.messages, TaskResult(probe, kind, b"")) for kind in TaskResultType}
    died = fired.pop(TaskResultType.WORKER_DIED)
    only_died = {died} if died is not None and died not in fired.values() else set()
    return frozenset({lc.RESULT_WORKER_DIED, *only_died})


class ReferenceClient:
    """The declared lifecycle, executed for many tasks, with the manager's
    routing and nothing else: the yardstick :class:`ClientMachine` holds a
    client up to. Pure: time is whatever ``now`` is set to.

    Everything a future does comes from the declaration: which event a
    message fires (its classifier), what each event does in each state (its
    table, its late-result policy), where a cancel request goes and whether a
    graph's siblings follow (its ``send_cancel`` and ``cancel_group``
    callbacks). What is left is routing, as ``FutureManager`` does it: a
    message names a live future by its id, or else a group, whose live
    members all take it; a result names one task only, so a result for a
    group id (an umbrella answered twice) is a late result.
    """

    def __init__(self, lifecycle: lc.Policy | Lifecycle = lc.DEFAULT_POLICY, cancel_timeout: float = 30.0) -> None:
        self.lifecycle = _lifecycle(lifecycle)
        self.cancel_timeout = cancel_timeout
        self.now = 0.0
        #: What the lifecycle sent, and (same index) the event that sent it.
        self.sent: list[Sent] = []
        self.causes: list[str] = []
        self.futures: dict[TaskID, _ReferenceFuture] = {}
        self.late_results: list[Any] = []
        self.closed = False
        #: The event being fired (what a callback records as its cause).
        self.event = ""
        self._model = _model_class(self.lifecycle)
        self._executor = Executor(self.lifecycle, self._model)
        self._live: dict[TaskID, _ReferenceFuture] = {}
        self._result_events = frozenset(self.lifecycle.result_events())

    def state(self, task_id: TaskID) -> str:
        return self.futures[task_id].state

    def record(self, sent: Sent) -> None:
        self.sent.append(sent)
        self.causes.append(self.event)

    def track(self, task_id: TaskID, group_id: TaskID | None = None) -> _ReferenceFuture:
        """A new live future, sending nothing (see :meth:`submit`)."""
        if self.closed:
            raise RuntimeError("closed")
        future = self._model(self, task_id, group_id)
        self.futures[task_id] = self._live[task_id] = future
        return future

    def submit(self, task: Task) -> None:
        self.track(task.task_id, task.group_id)
        self.event = "submit"
        self.record(Sent(TASK_SENT, task.task_id, task.group_id))

    def submit_graph(self, graph_id: TaskID, members: Sequence[TaskID]) -> None:
        """A whole graph in one message: an umbrella future named by the
        graph's id and one future per member, all in the graph's group."""
        self.track(graph_id, graph_id)
        for member in members:
            self.track(member, graph_id)
        self.event = "submit"
        self.record(Sent(GRAPH_SENT, graph_id, members=tuple(members)))

    def on_message(self, message: Any) -> None:
        """Deliver a message that carries its ``task_id``; the lifecycle's
        own classifier says which event it fires, if any."""
        event = self.lifecycle.messages(message)
        if event is not None:
            self.deliver(message.task_id, event, message)

    def deliver(self, task_id: TaskID, event: str, message: object) -> None:
        """Deliver ``message``, addressed to ``task_id``, as ``event``."""
        future = self._live.get(task_id)
        if future is not None:
            self._fire(future, event, message)
            return
        result = event in self._result_events  # one task's outcome: never a group's
        members = [] if result else [f for f in self._live.values() if f.group_id == task_id]
        for member in members:
            self._fire(member, event, message)
        if not members and result:
            self.late_results.append(message)

    def cancel(self, task_id: TaskID, force: bool = True) -> bool:
        """What ``cancel(timeout=0)`` returns."""
        future = self.futures[task_id]
        if future.state not in self.lifecycle.terminal:
            self._fire(future, CANCEL, force)
        return self.lifecycle.outcome(future.state) == CANCELLED

    def clear(self) -> None:
        for future in list(self._live.values()):
            self._fire(future, CLEAR, True)

    def close(self) -> None:
        self.closed = True
        for future in list(self._live.values()):
            self._fire(future, CLOSE, None)

    def connection_lost(self) -> None:
        for future in list(self._live.values()):
            self._fire(future, CONNECTION_LOST, None)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass; fire the confirm timeouts now due, earliest first."""
        self.now += seconds
        if self.closed:
            return
        due = sorted(
            (f for f in self._live.values() if f.deadline is not None and f.deadline <= self.now),
            key=lambda f: f.deadline or 0.0,
        )
        for future in due:
            if future.state in self.lifecycle.awaiting and future.deadline is not None and future.deadline <= self.now:
                self._fire(future, CONFIRM_TIMEOUT, None)

    def _fire(self, future: _ReferenceFuture, event: str, argument: object) -> None:
        outer, self.event = self.event, event
        try:
            if self._executor.fire(future, event, argument):
                future.history.append(event)
        finally:
            self.event = outer
        if future.state in self.lifecycle.terminal:
            self._live.pop(future.task_id, None)

    def _cancel_siblings(self, future: _ReferenceFuture) -> None:
        if future.group_id is None:
            return
        for sibling in list(self._live.values()):
            if sibling is not future and sibling.group_id == future.group_id:
                self._fire(sibling, GROUP_CANCEL, None)


# -- The stateful test -------------------------------------------------------------


class FakeClock:
    """A clock the machine moves; hand it to your manager as ``clock``."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Call:
    """A blocking call the machine made on a thread of its own."""

    def __init__(self, kind: str, name: str, tasks: tuple[TaskID, ...], step: int) -> None:
        self.kind = kind
        self.name = name
        self.tasks = tasks
        self.step = step
        self.returned: object = None
        self.raised: BaseException | None = None
        self.thread: threading.Thread | None = None


def _parked(thread: threading.Thread) -> bool:
    """Whether ``thread`` sits in ``threading.Condition.wait`` (every stdlib
    wait, ``Event.wait`` and ``concurrent.futures.wait`` included, ends
    there) and nothing has woken it: a blocking call has done what it does
    before it waits.

    A notified thread is still inside ``Condition.wait`` until it runs
    again, so the frame alone would call a woken thread parked and the
    check after it would race the thread's next steps; ``notify`` takes the
    waiter's lock off the condition's list, so a waiter still listed is
    one nobody has woken yet.
    """
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None or frame.f_code is not _CONDITION_WAIT:
        return False
    local = frame.f_locals
    condition, waiter = local.get("self"), local.get("waiter")
    return waiter is not None and waiter in getattr(condition, "_waiters", ())


_CONDITION_WAIT: Final = threading.Condition.wait.__code__
_TIMEOUTS: Final = (TimeoutError, concurrent.futures.TimeoutError)
#: What Hypothesis raises for a search that cannot run, as against a failure.
_SEARCH_ERRORS: Final = (InvalidArgument, InvalidDefinition, Unsatisfiable, FailedHealthCheck)
#: A machine whose draws differ on replay (recent Hypothesis names it apart).
_FLAKY_DEFINITION: Final[tuple[type[BaseException], ...]] = tuple(
    kind for kind in (getattr(hypothesis.errors, "FlakyStrategyDefinition", None),) if kind is not None
)


def _settle(thread: threading.Thread, limit: float) -> None:
    """Wait until ``thread`` has finished or parked in a wait, at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while thread.is_alive() and not _parked(thread) and time.monotonic() < deadline:
        time.sleep(0.0005)


class ClientMachine(RuleBasedStateMachine):
    """Drive your client's ``send``/``on_message`` pair through every ordering.

    Implement :meth:`make_client`, :meth:`submit` and :meth:`deliver`; the
    optional :meth:`submit_graph`, :meth:`clear`, :meth:`close`,
    :meth:`connection_lost` and :meth:`expire` enable the rules that use
    them (a hook you do not override is simply never called). The machine
    checks, after every step, the promises of :data:`PROMISES`:

    * each future's ``done()``, ``cancelled()``, ``result()`` and
      ``exception()`` say what the reference lifecycle's state says, and a
      kept result is the one the scheduler sent;
    * the client sent one task per submit and exactly the cancel requests
      the lifecycle calls for (one per cancel, one per group);
    * ``cancel()`` returned whether the future is now cancelled;
    * every done callback ran exactly once, and only once the future ended;
    * with ``blocking = True``: a ``cancel(timeout)``, ``clear()`` or
      ``close()`` made on a thread returns once the lifecycle says nothing
      is awaited any more (waiting past that is a hang, and a failure).

    The reference is ``lifecycle``: a policy name or the library's own
    :class:`~taskfate.fsm.declare.Lifecycle` (from ``declare``), whose
    classifier, table and callbacks are the reference's. Messages are built
    by :meth:`make_result`, :meth:`make_confirm` and :meth:`make_notice` (by
    default taskfate's own protocol types) and outgoing ones are read by
    :meth:`read_sent`, so a library speaking its own types overrides those.

    ``only_events``, ``only_rules`` and ``only_promises`` limit what is
    generated and checked (``None``: everything), for chasing one bug at a
    time; they are read when the class is made, so set them on a subclass
    (:meth:`narrowed` makes one). A rule whose hook the class lacks is
    taken off it the same way.
    """

    lifecycle: lc.Policy | Lifecycle = lc.DEFAULT_POLICY
    cancel_timeout: float = 5.0
    max_tasks: int = 6
    #: Run the blocking rules: cancel(timeout) on a thread, and clear() and
    #: close() on a thread, each checked to return when the lifecycle says.
    blocking: bool = False
    #: The timeout a blocking cancel passes (its own bound, in real seconds;
    #: far above ``hang_seconds`` so that only the lifecycle releases it).
    wait_timeout: float = 30.0
    #: Real seconds a released call may take to return before it is a hang.
    hang_seconds: float = 1.0
    #: Real seconds at most to let a blocking call reach its wait.
    settle_seconds: float = 1.0
    #: Peer events to generate, rule names to run, promises to check (None: all).
    only_events: Collection[str] | None = None
    only_rules: Collection[str] | None = None
    only_promises: Collection[str] | None = None
    #: Result events whose message carries no value of the task's (a dead
    #: worker): the error is checked to exist, not to be the one sent.
    #: ``None``: the stock worker-died event, and any event that only a
    #: taskfate ``WORKER_DIED`` result fires to the lifecycle's classifier.
    valueless_results: Collection[str] | None = None

    tasks_bundle: Bundle[TaskID] = Bundle("tasks")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _install_event_rules(cls)
        _keep_rules(cls)

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.outbox: list[Any] = []
        self.reference = ReferenceClient(self.lifecycle, self.cancel_timeout)
        self.reference.now = self.clock.now
        self._valueless = frozenset(self.valueless_results) if self.valueless_results is not None else _valueless(self.reference.lifecycle)
        self.group_id = TaskID(b"\x01" * 16)
        self.futures: dict[TaskID, Any] = {}
        self.umbrellas: set[TaskID] = set()
        self.callback_runs: collections.Counter[TaskID] = collections.Counter()
        self.calls: list[_Call] = []
        self.last: tuple[TaskID, str, object, object] | None = None
        self.serial = 0
        self.steps = 0
        #: What the current step is, by kind (for a finding the lifecycle
        #: ignored), each future's history length when it began, and the
        #: blocking calls made in earlier steps that were open when its
        #: checks began (their threads may have acted in it).
        self.doing = "start"
        self._seen: dict[TaskID, int] = {}
        self._earlier: list[_Call] = []
        #: Blocked calls no promise judges any more, released at teardown.
        self._abandoned: list[_Call] = []
        self._values: dict[int, tuple[object, object]] = {}
        #: ``read_sent`` of each outgoing message, by its place in ``outbox``
        #: (each read once: a ``read_sent`` may cost, or count).
        self._read: list[Sent | None] = []
        #: Where a client whose results are references finds their values:
        #: :meth:`make_result` puts a value here and sends its reference.
        self.store = ObjectStore()
        self.make_client(self.outbox.append, self.clock)

    # -- What a subclass provides ------------------------------------------------

    def make_client(self, send: Callable[[Any], object], clock: Callable[[], float]) -> None:
        """Build the client under test; it must hand every outgoing message
        to ``send`` (in its own types: :meth:`read_sent` reads them) and may
        read time from ``clock``."""
        raise NotImplementedError

    def submit(self, task: Task) -> Any:
        """Submit a task like ``task`` through the client; return its future.

        Pass on ``task.group_id`` (and ``task.payload`` if the client sends
        one); the id may be the client's own: the machine reads it from what
        the client sends.
        """
        raise NotImplementedError

    def submit_graph(self, graph_id: TaskID, member_ids: Sequence[TaskID]) -> tuple[Any, Sequence[Any]]:
        """Submit one graph of ``len(member_ids)`` tasks as one message, with
        an umbrella future for the whole graph; return the umbrella future
        and the members' futures, in the order the sent graph names them.
        The ids are suggestions, as for :meth:`submit`. A client with this
        hook has graphs instead of loose groups: plain submits are ungrouped.
        """
        raise NotImplementedError

    def deliver(self, message: Any) -> None:
        """Hand ``message`` to the client as if it came from the scheduler."""
        raise NotImplementedError

    def cancel(self, future: Any) -> bool:
        """Cancel without waiting; the default calls ``future.cancel(timeout=0)``.
        A ``TimeoutError`` raised by it counts as ``False``: not cancelled yet."""
        return bool(future.cancel(timeout=0))

    def cancel_blocking(self, future: Any, timeout: float) -> bool:
        """Cancel and wait up to ``timeout`` (called on a thread of the
        machine's; only with ``blocking = True``)."""
        return bool(future.cancel(timeout=timeout))

    def clear(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def connection_lost(self) -> None:
        raise NotImplementedError

    def expire(self) -> None:
        """Fire the confirm timeouts due at ``clock()``. Without this hook
        time passes only with ``blocking = True``: a client with no timers
        of its own is then held to the lifecycle's bounds, and a wait that
        outlives one is a finding."""
        raise NotImplementedError

    def encode(self, value: object) -> bytes:
        """The payload bytes of ``value`` in taskfate's own messages."""
        return pickle.dumps(value)

    def make_result(self, task_id: TaskID, event: str, value: object) -> Any:
        """The scheduler's message that fires result ``event`` for
        ``task_id`` and carries ``value`` (an exception instance for a
        failure; ``None`` for a graph's umbrella, whose outcome is the whole
        graph's). The default builds the taskfate ``TaskResult`` that the
        lifecycle's classifier says fires ``event``, so a lifecycle that names
        taskfate's messages its own way needs no override."""
        payload = b"" if value is None else self.encode(value)
        candidates = (TaskResult(task_id, kind, b"worker lost" if kind == TaskResultType.WORKER_DIED else payload) for kind in TaskResultType)
        return self._taskfate_message("make_result", event, candidates)

    def make_confirm(self, task_id: TaskID, event: str) -> Any:
        """The scheduler's answer to a cancel that fires ``event``, addressed
        to ``task_id`` (a task or a group). The default builds it with the
        lifecycle's :func:`classify_by` classifier if that was given the id
        field's name, and otherwise the taskfate ``TaskCancelConfirm`` the
        classifier says fires ``event``."""
        classify = self.reference.lifecycle.messages
        if isinstance(classify, MessageKinds) and classify.task_id is not None:
            return classify.build(event, task_id)
        return self._taskfate_message("make_confirm", event, (TaskCancelConfirm(task_id, kind) for kind in CancelConfirmType))

    def make_notice(self, task_id: TaskID, event: str) -> Any:
        """Any other peer message the lifecycle declares: by default a
        taskfate ``TaskStarted`` if the classifier says it fires ``event``
        (a message of the library's own needs an override)."""
        return self._taskfate_message("make_notice", event, [TaskStarted(task_id)])

    def _taskfate_message(self, hook: str, event: str, candidates: Iterable[Any]) -> Any:
        """The first of taskfate's ``candidates`` that the lifecycle's
        classifier says fires ``event``: the defaults ask the declaration
        rather than assume the stock event names."""
        classify = self.reference.lifecycle.messages
        for message in candidates:
            if _fires(classify, message) == event:
                return message
        raise NotImplementedError(f"override {hook}: no taskfate message fires {event!r} to this lifecycle's classifier")

    def make_heartbeat(self) -> Any:
        """A message that is for no future (``None``: the rule is never run).
        The default is taskfate's ``Heartbeat`` for taskfate's classifiers."""
        classify = self.reference.lifecycle.messages
        return Heartbeat() if classify in _TASKFATE_CLASSIFIERS else None

    def read_sent(self, message: Any) -> Sent | None:
        """What an outgoing message is, as a :class:`Sent` (``None``: not a
        task or cancel request). The default reads taskfate's messages."""
        if isinstance(message, Task):
            return Sent(TASK_SENT, message.task_id, message.group_id)
        if isinstance(message, TaskCancel):
            return Sent(CANCEL_SENT, message.task_id, force=message.force)
        return None

    @classmethod
    def _has(cls, hook: str) -> bool:
        return getattr(cls, hook) is not getattr(ClientMachine, hook)

    @classmethod
    def _hooked_rules(cls) -> dict[str, bool]:
        """The rules that need a hook (or a setting), and whether this class
        has it. Known when the class is made, so a rule it cannot run is
        taken off rather than refused step by step."""
        return {
            "submit_a_graph": cls._has("submit_graph"),
            "a_thread_cancels_and_waits": cls.blocking,
            # A client with no timers of its own is held to the lifecycle's
            # bounds only if it blocks.
            "time_passes": cls.blocking or cls._has("expire"),
            "client_clears": cls._has("clear"),
            "client_closes": cls._has("close"),
            "connection_is_lost": cls._has("connection_lost"),
            "a_heartbeat_arrives": cls._has("make_heartbeat") or _lifecycle(cls.lifecycle).messages in _TASKFATE_CLASSIFIERS,
        }

    def _checks(self, promise: str) -> bool:
        return self.only_promises is None or promise in self.only_promises

    @classmethod
    def narrowed(
        cls,
        *,
        rules: Collection[str] | None = None,
        promises: Collection[str] | None = None,
        events: Collection[str] | None = None,
    ) -> type[ClientMachine]:
        """A subclass that runs only ``rules``, checks only ``promises`` and
        has the scheduler send only ``events`` (``None``: all), for chasing
        one finding: the rules left out are taken off the subclass, so
        Hypothesis shrinks in the smaller space."""
        peer_events = set(_lifecycle(cls.lifecycle).peer_events)
        for what, asked, known in (("rule", rules, _rule_names(cls)), ("promise", promises, set(PROMISES)), ("event", events, peer_events)):
            unknown = set(asked or ()) - set(known)
            if unknown:
                raise ValueError(f"unknown {what}s {sorted(unknown)}; this machine's are {sorted(known)}")
        namespace = {"only_rules": rules, "only_promises": promises, "only_events": events, "__module__": cls.__module__}
        return cast("type[ClientMachine]", type(f"{cls.__name__}Narrowed", (cls,), namespace))

    @classmethod
    def finding(cls, promise: str, event: str, *, ignored: bool = False) -> type[BrokenPromise]:
        """The :class:`BrokenPromise` this machine raises for ``promise``
        broken after lifecycle ``event``: the scheduler's messages are
        grouped by kind, so a result of any type is :data:`AFTER_A_RESULT`
        and an answer to a cancel of any type is :data:`AFTER_AN_ANSWER`.
        ``ignored``: broken at a step of that kind that fired no rule for
        the future (``event`` may then be :data:`AFTER_A_HEARTBEAT` or
        :data:`AFTER_TIME_PASSES` too)."""
        kind = cls._kind(event)
        return broken_promise(promise, f"{kind} the lifecycle ignores" if ignored else kind)

    @classmethod
    def _kind(cls, event: str) -> str:
        life = _lifecycle(cls.lifecycle)
        if event in life.result_events():
            return AFTER_A_RESULT
        if event in life.confirm_events():
            return AFTER_AN_ANSWER
        if event in life.notice_events():
            return AFTER_A_NOTICE
        return event

    def _broken(self, promise: str, event: str, detail: str, ignored: bool = False) -> BrokenPromise:
        kind = self.finding(promise, event, ignored=ignored)
        return kind(f"{promise} ({PROMISES[promise]}), after {kind.event}: {detail}")

    def _moved(self, task_id: TaskID) -> str | None:
        """The lifecycle event that last fired for ``task_id`` in this step
        ("submit" if it was submitted in it), or None if none did."""
        history = self.reference.futures[task_id].history
        seen = self._seen.get(task_id)
        if seen is None:
            return "submit"
        return history[-1] if len(history) > seen else None

    def _after(self, task_id: TaskID) -> tuple[str, bool]:
        """What a promise about ``task_id`` broke after, and whether the
        lifecycle ignored it: the event that last fired for the future in
        this step, or, if none did, this step's own kind, marked ignored.
        If a blocking call made in an earlier step is about the future (a
        clear or close, or a cancel of it) and open, its thread may be what
        changed it, woken by this step (a clear woken by another task's
        answer), and the step proves nothing: the finding is then named
        after what the lifecycle last did to the future, whichever step
        woke the thread."""
        moved = self._moved(task_id)
        if moved is not None:
            return moved, False
        if any(task_id in call.tasks for call in self._earlier):
            history = self.reference.futures[task_id].history
            return (history[-1] if history else "submit"), False
        return self.doing, True

    # -- Rules ------------------------------------------------------------------------

    def _can_submit(self) -> bool:
        return not self.reference.closed and len(self.futures) < self.max_tasks

    def _new_id(self) -> TaskID:
        self.serial += 1
        return TaskID(self.serial.to_bytes(16, "big"))

    def _sent_since(self, start: int) -> list[Sent]:
        """The tasks and graphs sent from ``outbox[start]`` on."""
        return [s for s in self._all_sent()[start:] if s is not None and s.kind != CANCEL_SENT]

    @precondition(lambda self: self._can_submit())
    @rule(target=tasks_bundle, grouped=st.booleans())
    def submit_a_task(self, grouped: bool) -> TaskID:
        self.doing = "submit"
        group = self.group_id if grouped and not self._has("submit_graph") else None
        wanted = Task(self._new_id(), self.encode(("task", self.serial)), group)
        already = len(self.outbox)
        future = self.submit(wanted)
        sent = self._sent_since(already)
        if [s.kind for s in sent] != [TASK_SENT]:
            raise self._broken("one-task-per-submit", "submit", f"submit sent {sent}, not one task")
        (task,) = sent
        if task.group_id != wanted.group_id:
            raise self._broken("one-task-per-submit", "submit", f"submit sent group {task.group_id!r}, not {wanted.group_id!r}")
        task_id = TaskID(task.task_id)
        if task_id in self.futures:
            raise self._broken("one-task-per-submit", "submit", f"submit reused task id {task_id.hex()}")
        self.reference.submit(Task(task_id, b"", group))
        self._watch(task_id, future)
        return task_id

    @precondition(lambda self: self._can_submit())
    @rule(target=tasks_bundle, size=st.integers(1, 3))
    def submit_a_graph(self, size: int) -> Any:
        self.doing = "submit"
        wanted = self._new_id()
        already = len(self.outbox)
        umbrella, members = self.submit_graph(wanted, [self._new_id() for _ in range(size)])
        sent = self._sent_since(already)
        if [s.kind for s in sent] != [GRAPH_SENT] or len(sent[0].members) != size or len(members) != size:
            raise self._broken("one-task-per-submit", "submit", f"a graph of {size} sent {sent} and made {len(members)} member futures")
        graph_id, member_ids = TaskID(sent[0].task_id), [TaskID(m) for m in sent[0].members]
        if graph_id in self.futures or any(m in self.futures for m in member_ids):
            raise self._broken("one-task-per-submit", "submit", "the graph reused a task id")
        self.reference.submit_graph(graph_id, member_ids)
        self.umbrellas.add(graph_id)
        for task_id, future in zip([graph_id, *member_ids], [umbrella, *members]):
            self._watch(task_id, future)
        return multiple(graph_id, *member_ids)

    def _watch(self, task_id: TaskID, future: Any) -> None:
        self.futures[task_id] = future

        def count(_: object) -> None:
            self.callback_runs[task_id] += 1

        future.add_done_callback(count)

    def _value_for(self, task_id: TaskID, event: str) -> object:
        """What the scheduler sends as ``task_id``'s outcome under ``event``:
        a value for an event that ends a fresh future with a result, an
        error otherwise; nothing for an umbrella."""
        if task_id in self.umbrellas:
            return None
        life = self.reference.lifecycle
        found = life.rule(life.initial, event)
        outcome = life.outcome(found.dest) if found is not None and found.dest is not None else None
        if outcome == RESULT:
            return ("value", self.serial)
        return ValueError(f"failure {self.serial}")

    def _send(self, task_id: TaskID, event: str, message: object, value: object = None) -> None:
        got = self.reference.lifecycle.messages(message)
        if got != event:
            raise TypeError(f"the message built for {event!r} is {got!r} to the lifecycle's classifier: {message!r}")
        self._values[id(message)] = (message, value)
        self.last = (task_id, event, message, value)
        self.doing = self._kind(event)
        self.reference.deliver(task_id, event, message)
        self.deliver(message)

    def _send_result(self, task_id: TaskID, event: str) -> None:
        self.serial += 1
        value = self._value_for(task_id, event)
        self._send(task_id, event, self.make_result(task_id, event, value), value)

    def _send_confirm(self, task_id: TaskID, event: str, to_group: bool) -> None:
        target = (self.reference.futures[task_id].group_id or self.group_id) if to_group else task_id
        self._send(target, event, self.make_confirm(target, event))

    def _send_notice(self, task_id: TaskID, event: str) -> None:
        self._send(task_id, event, self.make_notice(task_id, event))

    @precondition(lambda self: self.last is not None)
    @rule()
    def the_channel_duplicates_the_last_message(self) -> None:
        assert self.last is not None
        self._send(*self.last)

    @precondition(lambda self: self.make_heartbeat() is not None)
    @rule()
    def a_heartbeat_arrives(self) -> None:
        self.doing = AFTER_A_HEARTBEAT
        self.deliver(self.make_heartbeat())

    def _cancel_now(self, future: Any) -> bool:
        try:
            return self.cancel(future)
        except _TIMEOUTS:
            return False  # its own timeout ran out: not cancelled yet

    @rule(task_id=tasks_bundle)
    def user_cancels(self, task_id: TaskID) -> None:
        self.doing = CANCEL
        returned = self._cancel_now(self.futures[task_id])
        expected = self.reference.cancel(task_id)
        if returned != expected and self._checks("cancel-returns"):
            detail = f"cancel() returned {returned}; the lifecycle says {self.reference.state(task_id)}"
            raise self._broken("cancel-returns", CANCEL, detail, self._moved(task_id) is None)

    @rule(task_id=tasks_bundle)
    def a_thread_cancels_and_waits(self, task_id: TaskID) -> None:
        self.doing = CANCEL
        future = self.futures[task_id]
        self.reference.cancel(task_id)
        timeout = self.wait_timeout
        self._start_call(CANCEL, f"cancel(timeout={timeout}) of task {task_id.hex()}", (task_id,), lambda: self.cancel_blocking(future, timeout))

    def _time_passes(self, seconds: float) -> None:
        """The ``time_passes`` rule's body (the rule is made per class, its
        steps scaled to the class's ``cancel_timeout``)."""
        self.doing = AFTER_TIME_PASSES
        self.clock.now += seconds
        self.reference.advance(seconds)
        if self._has("expire"):
            self.expire()

    @rule()
    def client_clears(self) -> None:
        self.doing = CLEAR
        self.reference.clear()
        if not self.blocking:
            self.clear()
            return
        awaiting = self.reference.lifecycle.awaiting
        waiting = tuple(t for t, f in self.reference.futures.items() if f.state in awaiting)
        self._start_call(CLEAR, "clear()", waiting, self.clear)

    # Once a task exists: a close before is the trivial case, and it ends
    # what a run can do (nothing is submitted after it).
    @precondition(lambda self: bool(self.futures))
    @rule()
    def client_closes(self) -> None:
        self.doing = CLOSE
        self.reference.close()
        if not self.blocking:
            self.close()
            return
        self._start_call(CLOSE, "close()", tuple(self.futures), self.close)

    @rule()
    def connection_is_lost(self) -> None:
        self.doing = CONNECTION_LOST
        self.reference.connection_lost()
        self.connection_lost()

    def _start_call(self, kind: str, name: str, tasks: tuple[TaskID, ...], fn: Callable[[], object]) -> None:
        call = _Call(kind, name, tasks, self.steps)

        def run() -> None:
            try:
                call.returned = fn()
            except BaseException as exc:  # kept for the check, which reports it
                call.raised = exc

        call.thread = threading.Thread(target=run, name=f"taskfate-fuzz {name}", daemon=True)
        call.thread.start()
        _settle(call.thread, self.settle_seconds)
        self.calls.append(call)

    def teardown(self) -> None:
        """Release the blocked calls a run leaves, its hangs among them: the
        connection-lost hook, where the client has one, ends its futures
        (which wakes most waits), then each thread is given until it has
        returned or parked again (at most ``settle_seconds``), so a search
        pays nothing per example for a thread the client holds for good:
        such a thread is a daemon, left parked and logged. A subclass that
        overrides this calls it."""
        left = [call for call in (*self.calls, *self._abandoned) if call.thread is not None and call.thread.is_alive()]
        if left and self._has("connection_lost"):
            # On a thread of its own, bounded: a client whose blocked call
            # holds its lock (a deadlock, the very thing found) must not
            # stop the search here.
            releasing = threading.Thread(target=self._release, name="taskfate-fuzz teardown", daemon=True)
            releasing.start()
            releasing.join(self.settle_seconds)
        for call in left:
            assert call.thread is not None
            _settle(call.thread, self.settle_seconds)
        parked = [call.name for call in left if call.thread is not None and call.thread.is_alive()]
        if parked:
            _log.info("%d blocked call(s) still parked after teardown: %s", len(parked), ", ".join(parked))
        self.calls, self._abandoned = [], []
        super().teardown()

    def _release(self) -> None:
        try:
            self.connection_lost()
        except BaseException:  # the client is being thrown away; its error is no finding
            _log.debug("connection_lost() at teardown raised", exc_info=True)

    # -- Invariants ---------------------------------------------------------------------

    @invariant()
    def promises_hold(self) -> None:
        """Every promise, in a fixed order: a hang first (a wait that should
        have ended is the finding, whatever else it leaves wrong), then what
        the futures say, what a returned blocking cancel said, what was
        sent, the callbacks. The futures come before a blocking cancel's
        answer because two of the machine's threads may race to end one
        future (a clear and a cancel): what the future says once both
        returned is settled, which of them saw it first is not, and a
        finding must not change with the thread schedule."""
        self.steps += 1
        self._earlier = [call for call in (*self.calls, *self._abandoned) if call.step < self.steps - 1]
        try:
            returned = self.blocked_calls_return_when_released()
            self.futures_say_what_the_lifecycle_says()
            for call, released in returned:
                self._check_blocking_cancel(call, released)
            self.the_client_sends_what_the_lifecycle_sends()
            self.done_callbacks_ran_exactly_once()
        finally:
            self._seen = {task_id: len(future.history) for task_id, future in self.reference.futures.items()}
            self._earlier = []
            # A finished abandoned call can act no more; a parked one may.
            self._abandoned = [call for call in self._abandoned if call.thread is not None and call.thread.is_alive()]
            self.doing = "a rule of the subclass's"  # until a rule of the machine's says what it does

    def _released(self, call: _Call) -> tuple[str, bool] | None:
        """The event after which ``call`` should have returned, and whether
        the lifecycle ignored the call itself; None while the lifecycle
        still awaits what it waits for."""
        if call.kind == CLOSE:
            return CLOSE, False
        awaiting = self.reference.lifecycle.awaiting
        if any(self.reference.futures[t].state in awaiting for t in call.tasks):
            return None
        # The events that moved its futures in this step (the first by name,
        # so a finding does not change with the order of the tasks). None
        # did: released when made, because the lifecycle ignored the call
        # (a cancel of an ended future), or it waits on nothing.
        moved = sorted({event for event in map(self._moved, call.tasks) if event not in (None, "submit")})
        return (moved[0], False) if moved else (call.kind, bool(call.tasks))

    def blocked_calls_return_when_released(self) -> list[tuple[_Call, tuple[str, bool]]]:
        """Check that every released call returned; the blocking cancels
        among them, with the event that released each, for
        :meth:`_check_blocking_cancel`."""
        returned: list[tuple[_Call, tuple[str, bool]]] = []
        if self.calls or self._abandoned:
            time.sleep(0.002)  # let a thread woken by the last step run on to its next wait
            for open_call in (*self.calls, *self._abandoned):
                assert open_call.thread is not None
                _settle(open_call.thread, self.settle_seconds)
        for call in list(self.calls):
            released = self._released(call)
            if released is None:
                continue
            assert call.thread is not None
            call.thread.join(self.hang_seconds)
            self.calls.remove(call)
            if call.thread.is_alive():
                self._abandoned.append(call)  # still parked: teardown releases it
                if self._checks(f"{call.kind}-wait-ends"):
                    states = "; ".join(self._story(t) for t in call.tasks) or "no futures"
                    detail = f"{call.name}, made at step {call.step}, still waits {self.hang_seconds}s after the lifecycle released it ({states})"
                    raise self._broken(f"{call.kind}-wait-ends", released[0], detail, released[1])
            elif call.kind == CANCEL and self._checks("cancel-returns"):
                returned.append((call, released))
        return returned

    def _story(self, task_id: TaskID) -> str:
        """A task's way through the lifecycle, for a report."""
        future = self.reference.futures[task_id]
        return f"{task_id.hex()}: {' -> '.join(future.history) or 'submitted'}, now {future.state}"

    def _check_blocking_cancel(self, call: _Call, released: tuple[str, bool]) -> None:
        (task_id,) = call.tasks
        event, ignored = released
        raised = call.raised
        if raised is not None and not isinstance(raised, _TIMEOUTS):
            raise self._broken("cancel-returns", event, f"{call.name} raised {raised!r}", ignored)
        returned = False if raised is not None else bool(call.returned)
        expected = self.reference.lifecycle.outcome(self.reference.state(task_id)) == CANCELLED
        if returned != expected:
            raise self._broken("cancel-returns", event, f"{call.name} returned {returned}; the lifecycle says {self.reference.state(task_id)}", ignored)

    def futures_say_what_the_lifecycle_says(self) -> None:
        life = self.reference.lifecycle
        for task_id, future in self.futures.items():
            expected = self.reference.futures[task_id]
            state = expected.state
            event, ignored = self._after(task_id)
            role = " (a graph's umbrella)" if task_id in self.umbrellas else ""
            where = f"task {task_id.hex()}{role}: the lifecycle says {state} after {' -> '.join(expected.history) or 'submit'}"
            done = future.done()
            if done != (state in life.terminal) and self._checks("done"):
                raise self._broken("done", event, f"{where}, but done() is {done}", ignored)
            outcome = life.outcome(state)
            cancelled = future.cancelled()
            if cancelled != (outcome == CANCELLED) and self._checks("cancelled"):
                raise self._broken("cancelled", event, f"{where}, but cancelled() is {cancelled}", ignored)
            if life.running and self._checks("running"):
                running = future.running()
                if running != (state in life.running):
                    raise self._broken("running", event, f"{where}, but running() is {running}", ignored)
            if outcome == RESULT and self._checks("result"):
                self._check_result(task_id, future, expected, event, ignored, where)
            elif outcome == EXCEPTION and self._checks("exception"):
                self._check_exception(task_id, future, expected, event, ignored, where)

    def _sent_value(self, task_id: TaskID, expected: _ReferenceFuture) -> tuple[bool, object]:
        if task_id in self.umbrellas or expected.kept is None or id(expected.kept) not in self._values:
            return False, None
        return True, self._values[id(expected.kept)][1]

    def _check_result(self, task_id: TaskID, future: Any, expected: _ReferenceFuture, event: str, ignored: bool, where: str) -> None:
        value = future.result(timeout=0)
        known, sent = self._sent_value(task_id, expected)
        if known and value != sent:
            raise self._broken("result", event, f"{where}: result() is {value!r}, not the {sent!r} sent", ignored)

    def _check_exception(self, task_id: TaskID, future: Any, expected: _ReferenceFuture, event: str, ignored: bool, where: str) -> None:
        error = future.exception(timeout=0)
        if not isinstance(error, BaseException):
            raise self._broken("exception", event, f"{where}, but exception() is {error!r}", ignored)
        known, sent = self._sent_value(task_id, expected)
        if known and expected.kept_event not in self._valueless and isinstance(sent, BaseException) and str(error) != str(sent):
            raise self._broken("exception", event, f"{where}: exception() is {error!r}, not the {sent!r} sent", ignored)

    def _all_sent(self) -> list[Sent | None]:
        """What each outgoing message so far is (``None``: not counted)."""
        for message in self.outbox[len(self._read) :]:
            self._read.append(self.read_sent(message))
        return self._read

    def the_client_sends_what_the_lifecycle_sends(self) -> None:
        if not self._checks("sends"):
            return
        sent = collections.Counter(s.key() for s in self._all_sent() if s is not None)
        expected = collections.Counter(s.key() for s in self.reference.sent)
        if sent == expected:
            return
        missing = expected - sent
        # After the event that asked for a message not sent; a message sent
        # unasked, after the kind of step that made the client send it.
        # (while calls made earlier run on threads, after those calls, as
        # their threads may be what sent it, whichever step woke them)
        earlier = sorted({call.kind for call in self._earlier})
        cause = f"{' and '.join(earlier)} on a thread, unasked" if earlier else f"{self.doing}, unasked"
        for message, why in zip(self.reference.sent, self.reference.causes):
            if message.key() in missing:
                cause = why
                break
        raise self._broken("sends", cause, f"the client sent {_describe(sent)}; the lifecycle calls for {_describe(expected)}")

    def done_callbacks_ran_exactly_once(self) -> None:
        if not self._checks("callbacks-once"):
            return
        for task_id, future in self.futures.items():
            runs = self.callback_runs[task_id]
            if runs != (1 if future.done() else 0):
                event, ignored = self._after(task_id)
                raise self._broken("callbacks-once", event, f"task {task_id.hex()}: done callbacks ran {runs} times", ignored)


def _describe(counts: collections.Counter[tuple[object, ...]]) -> str:
    parts = []
    for key, n in sorted(counts.items(), key=repr):
        kind, task_id = key[0], key[1]
        name = f"{kind} {task_id.hex() if isinstance(task_id, bytes) else task_id}"
        if kind == CANCEL_SENT:
            name += " (forced)" if key[2] else " (gentle)"
        parts.append(name if n == 1 else f"{name} x{n}")
    return "[" + ", ".join(parts) + "]"


def _install_event_rules(cls: type[ClientMachine]) -> None:
    """Give ``cls`` the rules that send the scheduler's messages, one per
    kind of peer event its lifecycle declares (results, answers to a
    cancel, other notices), drawing only the events ``cls.only_events`` allows,
    and the rule that moves time in steps of its ``cancel_timeout``. Made
    per class because the events are the declaration's."""
    life = _lifecycle(cls.lifecycle)
    allowed = cls.only_events

    def pick(events: Sequence[str]) -> list[str]:
        return [event for event in events if allowed is None or event in allowed]

    results, confirms, notices = pick(life.result_events()), pick(life.confirm_events()), pick(life.notice_events())
    bundle = cls.tasks_bundle

    @rule(task_id=bundle, event=st.sampled_from(results or [""]))
    def scheduler_sends_a_result(self: ClientMachine, task_id: TaskID, event: str) -> None:
        self._send_result(task_id, event)

    @rule(task_id=bundle, event=st.sampled_from(confirms or [""]), to_group=st.booleans())
    def scheduler_sends_a_confirm(self: ClientMachine, task_id: TaskID, event: str, to_group: bool) -> None:
        self._send_confirm(task_id, event, to_group)

    @rule(task_id=bundle, event=st.sampled_from(notices or [""]))
    def scheduler_sends_a_notice(self: ClientMachine, task_id: TaskID, event: str) -> None:
        self._send_notice(task_id, event)

    for made, events in ((scheduler_sends_a_result, results), (scheduler_sends_a_confirm, confirms), (scheduler_sends_a_notice, notices)):
        setattr(cls, made.__name__, made if events else None)

    # Only once a task exists: before, time passing changes nothing checked,
    # and a shrinker left to delete such steps sometimes cannot. Hypothesis
    # shrinks towards the first value: a little past the confirm timeout,
    # so a shrunk ordering waits once, not six times.
    timeout = cls.cancel_timeout

    @precondition(lambda self: bool(self.futures))
    @rule(seconds=st.sampled_from([round(timeout * share, 3) for share in (1.2, 0.8, 0.2)]))
    def time_passes(self: ClientMachine, seconds: float) -> None:
        self._time_passes(seconds)

    setattr(cls, "time_passes", time_passes)


def _keep_rules(cls: type[ClientMachine]) -> None:
    """Leave ``cls`` only the rules it can run and ``only_rules`` names:
    every other one is taken off, so Hypothesis never draws it, and one a
    parent class took off for want of a hook this class has is put back.
    A precondition refusing a rule is not the same: Hypothesis still draws
    it and draws again, and those wasted draws stop its shrinker from
    deleting steps, so searches report orderings padded with steps that do
    nothing."""
    for name, available in cls._hooked_rules().items():
        if not available:
            setattr(cls, name, None)
        elif getattr(cls, name) is None:
            setattr(cls, name, getattr(ClientMachine, name))
    if cls.only_rules is not None:
        for name in _rule_names(cls) - set(cls.only_rules):
            setattr(cls, name, None)


def _rule_names(cls: type[ClientMachine]) -> set[str]:
    """The names of ``cls``'s rules, found as Hypothesis finds them (by the
    marker its ``@rule`` leaves on a function)."""
    marker = getattr(hypothesis.stateful, "RULE_MARKER", "hypothesis_stateful_rule")
    return {name for name, member in inspect.getmembers(cls) if getattr(member, marker, None) is not None}


_install_event_rules(ClientMachine)


def findings(machine: type[ClientMachine], search: settings | None = None) -> list[BaseException]:
    """Search ``machine`` under ``search`` (Hypothesis settings; default
    ones if ``None``) and return what it found, each finding shrunk and
    reported on its own, or ``[]``.

    One search can break several promises; Hypothesis is told to keep them
    apart (``report_multiple_bugs``), and the one failure or the group of
    them it raises is unpacked here, so a caller counts and tells findings
    apart by their :class:`BrokenPromise` subclasses. An exception that is
    no promise's (the client's own crash) is returned as it was raised, and
    so is Hypothesis's report of a failure that did not repeat (``Flaky``:
    with threads, a finding that hangs on their timing), whole: on recent
    Hypothesis a ``FlakyFailure`` holding the failures in ``exceptions``, on
    older ones a bare ``Flaky`` whose message is all it says. A
    search that cannot run (a machine left with no rule, settings
    Hypothesis refuses, a failed health check) raises: that is no finding.
    """
    try:
        run_state_machine_as_test(machine, settings=settings(search or settings(deadline=None), report_multiple_bugs=True))
    except (KeyboardInterrupt, SystemExit, *_SEARCH_ERRORS):
        raise
    except Flaky as failure:  # a failure that did not repeat: reported whole, as itself
        if isinstance(failure, _FLAKY_DEFINITION):
            raise  # the machine draws differently on replay: no finding
        return [failure]
    except BaseException as failure:  # an ExceptionGroup for several findings
        return list(getattr(failure, "exceptions", [failure]))
    return []
