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
Hypothesis (install the ``fuzz`` extra); it does no I/O and starts no thread.
"""

from __future__ import annotations

import collections
import pickle
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

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
)

__all__ = [
    "ClientMachine",
    "ReferenceClient",
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


# -- The reference ---------------------------------------------------------------


class _ReferenceFuture:
    """One task's future as the declaration says it evolves; the callbacks
    named in the declaration record their effects for comparison."""

    def __init__(self, client: ReferenceClient, task_id: TaskID, group_id: TaskID | None) -> None:
        self.client = client
        self.task_id = task_id
        self.group_id = group_id
        self.state: str = client.lifecycle.initial
        self.kept: TaskResult | None = None
        self.discarded: list[TaskResult] = []
        self.error: object = None
        self.deadline: float | None = None

    def keep_result(self, message: TaskResult) -> None:
        self.kept = message

    def discard_result(self, message: TaskResult) -> None:
        self.discarded.append(message)

    def send_cancel(self, force: object) -> None:
        target = self.group_id if self.group_id is not None else self.task_id
        self.client.sent.append(TaskCancel(target, force if isinstance(force, bool) else True))

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


class ReferenceClient:
    """The declared lifecycle, executed for many tasks, with the manager's
    routing and nothing else: the yardstick :class:`ClientMachine` holds a
    client up to. Pure: time is whatever ``now`` is set to."""

    def __init__(self, lifecycle: lc.Policy | Lifecycle = lc.DEFAULT_POLICY, cancel_timeout: float = 30.0) -> None:
        self.lifecycle = lifecycle if isinstance(lifecycle, Lifecycle) else get_lifecycle(lifecycle)
        self.cancel_timeout = cancel_timeout
        self.now = 0.0
        self.sent: list[Message] = []
        self.futures: dict[TaskID, _ReferenceFuture] = {}
        self.late_results: list[TaskResult] = []
        self.closed = False
        self._executor = Executor(self.lifecycle, _ReferenceFuture)
        self._live: dict[TaskID, _ReferenceFuture] = {}

    def state(self, task_id: TaskID) -> str:
        return self.futures[task_id].state

    def submit(self, task: Task) -> None:
        if self.closed:
            raise RuntimeError("closed")
        future = _ReferenceFuture(self, task.task_id, task.group_id)
        self.futures[task.task_id] = self._live[task.task_id] = future
        self.sent.append(task)

    def on_message(self, message: Message) -> None:
        # The lifecycle's own classifier says which messages are for futures.
        event = self.lifecycle.messages(message)
        if event is None:
            return
        task_id: TaskID = message.task_id  # type: ignore[union-attr]
        future = self._live.get(task_id)
        if future is not None:
            self._fire(future, event, message)
            return
        members = [f for f in self._live.values() if f.group_id == task_id]
        for member in members:
            self._fire(member, event, message)
        if not members and isinstance(message, TaskResult):
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
        self._executor.fire(future, event, argument)
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


class ClientMachine(RuleBasedStateMachine):
    """Drive your client's ``send``/``on_message`` pair through every ordering.

    Implement :meth:`make_client`, :meth:`submit` and :meth:`deliver`; the
    optional :meth:`clear`, :meth:`close`, :meth:`connection_lost` and
    :meth:`expire` enable the rules that use them (a hook you do not override
    is simply never called). The machine checks, after every step, that:

    * each future's ``done()``, ``cancelled()``, ``result()`` and
      ``exception()`` say what the reference lifecycle's state says, and a
      kept result is the one the scheduler sent;
    * the client sent one ``Task`` per submit and exactly the ``TaskCancel``
      messages the lifecycle calls for (one per cancel, one per group);
    * ``cancel()`` returned whether the future is now cancelled;
    * every done callback ran exactly once, and only once the future ended.

    Set ``lifecycle`` to the policy your client uses and ``cancel_timeout``
    to the one it was built with; the payloads it receives are
    ``encode(value)`` (pickle unless you override :meth:`encode`).
    """

    lifecycle: lc.Policy | Lifecycle = lc.DEFAULT_POLICY
    cancel_timeout: float = 5.0
    max_tasks: int = 6

    tasks_bundle: Bundle[TaskID] = Bundle("tasks")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.outbox: list[Message] = []
        self.reference = ReferenceClient(self.lifecycle, self.cancel_timeout)
        self.reference.now = self.clock.now
        self.group_id = TaskID(b"\x01" * 16)
        self.futures: dict[TaskID, Any] = {}
        self.callback_runs: collections.Counter[TaskID] = collections.Counter()
        self.values: dict[bytes, object] = {}
        self.last: Message | None = None
        self.serial = 0
        self.make_client(self.outbox.append, self.clock)

    # -- What a subclass provides ------------------------------------------------

    def make_client(self, send: Callable[[Message], object], clock: Callable[[], float]) -> None:
        """Build the client under test; it must hand every outgoing protocol
        message to ``send`` and may read time from ``clock``."""
        raise NotImplementedError

    def submit(self, task: Task) -> Any:
        """Submit a task like ``task`` through the client; return its future.

        Pass on ``task.payload`` and ``task.group_id``; the id may be the
        client's own: the machine reads it from the ``Task`` the client sends.
        """
        raise NotImplementedError

    def deliver(self, message: Message) -> None:
        """Hand ``message`` to the client as if it came from the scheduler."""
        raise NotImplementedError

    def cancel(self, future: Any) -> bool:
        """Cancel without waiting; the default calls ``future.cancel(timeout=0)``."""
        return bool(future.cancel(timeout=0))

    def clear(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def connection_lost(self) -> None:
        raise NotImplementedError

    def expire(self) -> None:
        """Fire the confirm timeouts due at ``clock()``."""
        raise NotImplementedError

    def encode(self, value: object) -> bytes:
        return pickle.dumps(value)

    def _has(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(ClientMachine, hook)

    # -- Rules ------------------------------------------------------------------------

    @precondition(lambda self: not self.reference.closed and len(self.futures) < self.max_tasks)
    @rule(target=tasks_bundle, grouped=st.booleans())
    def submit_a_task(self, grouped: bool) -> TaskID:
        self.serial += 1
        wanted = Task(TaskID(self.serial.to_bytes(16, "big")), self.encode(("task", self.serial)), self.group_id if grouped else None)
        already = len(self.outbox)
        future = self.submit(wanted)
        sent = [m for m in self.outbox[already:] if isinstance(m, Task)]
        assert len(sent) == 1, f"submit sent {len(sent)} Task messages, not one"
        (task,) = sent
        assert task.group_id == wanted.group_id, f"submit sent group {task.group_id!r}, not {wanted.group_id!r}"
        assert task.task_id not in self.futures, "submit reused a task id"
        self.reference.submit(task)
        self.futures[task.task_id] = future
        task_id = task.task_id

        def count(_: object) -> None:
            self.callback_runs[task_id] += 1

        future.add_done_callback(count)
        return task_id

    def _send(self, message: Message) -> None:
        self.last = message
        self.reference.on_message(message)
        self.deliver(message)

    @rule(task_id=tasks_bundle, kind=st.sampled_from(TaskResultType))
    def scheduler_sends_a_result(self, task_id: TaskID, kind: TaskResultType) -> None:
        self.serial += 1
        value: object = ("value", self.serial) if kind == TaskResultType.SUCCESS else ValueError(f"failure {self.serial}")
        payload = b"worker lost" if kind == TaskResultType.WORKER_DIED else self.encode(value)
        self.values[payload] = value
        self._send(TaskResult(task_id, kind, payload))

    @rule(task_id=tasks_bundle, kind=st.sampled_from(CancelConfirmType), to_group=st.booleans())
    def scheduler_sends_a_confirm(self, task_id: TaskID, kind: CancelConfirmType, to_group: bool) -> None:
        self._send(TaskCancelConfirm(self.group_id if to_group else task_id, kind))

    @precondition(lambda self: self.last is not None)
    @rule()
    def the_channel_duplicates_the_last_message(self) -> None:
        assert self.last is not None
        self._send(self.last)

    @rule()
    def a_heartbeat_arrives(self) -> None:
        self.deliver(Heartbeat())

    @rule(task_id=tasks_bundle)
    def user_cancels(self, task_id: TaskID) -> None:
        returned = self.cancel(self.futures[task_id])
        expected = self.reference.cancel(task_id)
        assert returned == expected, f"cancel() returned {returned}; the lifecycle says the future is {self.reference.state(task_id)}"

    @precondition(lambda self: self._has("expire"))
    @rule(seconds=st.sampled_from([1.0, 4.0, 6.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds
        self.reference.advance(seconds)
        self.expire()

    @precondition(lambda self: self._has("clear"))
    @rule()
    def client_clears(self) -> None:
        self.reference.clear()
        self.clear()

    @precondition(lambda self: self._has("close") and len(self.futures) >= 2)
    @rule()
    def client_closes(self) -> None:
        self.reference.close()
        self.close()

    @precondition(lambda self: self._has("connection_lost"))
    @rule()
    def connection_is_lost(self) -> None:
        self.reference.connection_lost()
        self.connection_lost()

    # -- Invariants ---------------------------------------------------------------------

    @invariant()
    def futures_say_what_the_lifecycle_says(self) -> None:
        for task_id, future in self.futures.items():
            expected = self.reference.futures[task_id]
            state = expected.state
            where = f"task {task_id.hex()}: the lifecycle says {state}"
            assert future.done() == (state in self.reference.lifecycle.terminal), f"{where}, but done() is {future.done()}"
            outcome = self.reference.lifecycle.outcome(state)
            assert future.cancelled() == (outcome == CANCELLED), f"{where}, but cancelled() is {future.cancelled()}"
            if outcome == RESULT:
                assert expected.kept is not None
                assert future.result(timeout=0) == self.values[expected.kept.payload], f"{where}: result() is not the result sent"
            elif outcome == EXCEPTION:
                error = future.exception(timeout=0)
                assert isinstance(error, BaseException), f"{where}, but exception() is {error!r}"
                kept = expected.kept
                if kept is not None and kept.result_type == TaskResultType.FAILED:
                    assert str(error) == str(self.values[kept.payload]), f"{where}: exception() is not the failure sent"

    @invariant()
    def the_client_sends_what_the_lifecycle_sends(self) -> None:
        sent = collections.Counter(self._comparable(m) for m in self.outbox if isinstance(m, (Task, TaskCancel)))
        expected = collections.Counter(self._comparable(m) for m in self.reference.sent)
        assert sent == expected, f"the client sent {dict(sent)}; the lifecycle calls for {dict(expected)}"

    @staticmethod
    def _comparable(message: Message) -> tuple[str, bytes, bool]:
        if isinstance(message, Task):
            return ("Task", message.task_id, False)
        assert isinstance(message, TaskCancel)
        return ("TaskCancel", message.task_id, message.force)

    @invariant()
    def done_callbacks_ran_exactly_once(self) -> None:
        for task_id, future in self.futures.items():
            runs = self.callback_runs[task_id]
            assert runs == (1 if future.done() else 0), f"task {task_id.hex()}: done callbacks ran {runs} times"
