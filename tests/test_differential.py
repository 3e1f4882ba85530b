"""The executed table against transitions itself.

The futures run a table compiled from the declaration rather than calling
``transitions`` per message. Here both forms receive the same arbitrary event
sequences, for every policy, for a lone future and for a graph group, and
must agree on every state, on the order of every callback and on every
outgoing message.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from helpers import Harness
from taskfate.client import ConnectionLost, Future
from taskfate.fsm import build_machine, lifecycle
from taskfate.protocol import (
    CancelConfirmType,
    TaskCancel,
    TaskCancelConfirm,
    TaskID,
    TaskResult,
    TaskResultType,
)

CONFIRMS = {
    lifecycle.CONFIRM_CANCELED: CancelConfirmType.CANCELED,
    lifecycle.CONFIRM_CANCEL_FAILED: CancelConfirmType.CANCEL_FAILED,
    lifecycle.CONFIRM_NOT_FOUND: CancelConfirmType.CANCEL_NOT_FOUND,
}
RESULTS = {
    lifecycle.RESULT_SUCCESS: TaskResultType.SUCCESS,
    lifecycle.RESULT_FAILED: TaskResultType.FAILED,
    lifecycle.RESULT_WORKER_DIED: TaskResultType.WORKER_DIED,
}
ERROR = ConnectionLost("gone")


def argument(event: str, task_id: TaskID, force: bool):
    if event in RESULTS:
        return TaskResult(task_id, RESULTS[event], b"")
    if event in CONFIRMS:
        return TaskCancelConfirm(task_id, CONFIRMS[event])
    if event in (lifecycle.CANCEL, lifecycle.CLEAR):
        return force
    if event == lifecycle.CONNECTION_LOST:
        return ERROR
    return None


class TracingFuture(Future):
    """Logs each lifecycle callback, then does what Future does."""

    trace: list


def _traced(name):
    original = getattr(Future, name)

    def callback(self, arg):
        TracingFuture.trace.append((self.task_id, name, arg))
        original(self, arg)

    return callback


for _name in lifecycle.CALLBACKS:
    setattr(TracingFuture, _name, _traced(_name))


class Reference:
    """A transitions model that records callbacks and the messages it would send."""

    def __init__(self, task_id, group_id, trace, sent, siblings):
        self.task_id, self.group_id = task_id, group_id
        self.trace, self.sent, self.siblings = trace, sent, siblings

    def send_cancel(self, force):
        self.trace.append((self.task_id, "send_cancel", force))
        # Requests are numbered per target, from 1: the epoch is one more
        # than the requests already sent for it.
        target = self.group_id or self.task_id
        epoch = 1 + sum(1 for sent in self.sent if isinstance(sent, TaskCancel) and sent.task_id == target)
        self.sent.append(TaskCancel(target, force, epoch))

    def cancel_group(self, force):
        self.trace.append((self.task_id, "cancel_group", force))
        if self.group_id is not None:
            for sibling in self.siblings:
                if sibling is not self:
                    sibling.trigger(lifecycle.GROUP_CANCEL, None)


def _recorder(name):
    def callback(self, arg):
        self.trace.append((self.task_id, name, arg))

    return callback


for _name in lifecycle.CALLBACKS:
    if not hasattr(Reference, _name):
        setattr(Reference, _name, _recorder(_name))


steps = st.lists(st.tuples(st.sampled_from(lifecycle.EVENTS), st.integers(0, 2), st.booleans()), max_size=25)


@given(st.sampled_from(lifecycle.POLICIES), st.integers(1, 3), steps)
def test_table_and_transitions_agree(policy, size, events):
    group_id = TaskID.new() if size > 1 else None
    h = Harness(policy, future_class=TracingFuture)
    TracingFuture.trace = []
    futures = [h.submit(group_id) for _ in range(size)]
    h.sent.clear()

    ref_trace, ref_sent, models = [], [], []
    machine = build_machine(policy)
    for future in futures:
        model = Reference(future.task_id, group_id, ref_trace, ref_sent, models)
        models.append(model)
        machine.add_model(model)

    for event, index, force in events:
        index %= size
        arg = argument(event, futures[index].task_id, force)
        h.manager.dispatch(futures[index], event, arg)
        models[index].trigger(event, arg)
        assert [f.state for f in futures] == [m.state for m in models]
        assert TracingFuture.trace == ref_trace
        assert h.sent == ref_sent


def message(event: str, target: TaskID):
    if event in RESULTS:
        return TaskResult(target, RESULTS[event], b"")
    return TaskCancelConfirm(target, CONFIRMS[event])


message_steps = st.lists(
    st.tuples(st.sampled_from(lifecycle.EVENTS), st.integers(0, 2), st.booleans(), st.booleans()), max_size=25
)


@given(st.sampled_from(lifecycle.POLICIES), st.integers(1, 3), message_steps)
def test_message_path_and_transitions_agree(policy, size, events):
    """The same agreement through the calls a client really makes: the
    scheduler's answers arrive as messages through ``on_message`` (addressed to
    a task, or to its group: a confirm reaches every live member, a result
    none), and the user cancels with ``Future.cancel``. Routing is part of what is checked: a
    message for a finished task reaches no future and is kept as late."""
    group_id = TaskID.new() if size > 1 else None
    h = Harness(policy, future_class=TracingFuture)
    TracingFuture.trace = []
    futures = [h.submit(group_id) for _ in range(size)]
    h.sent.clear()

    ref_trace, ref_sent, models, late = [], [], [], []
    machine = build_machine(policy)
    for future in futures:
        model = Reference(future.task_id, group_id, ref_trace, ref_sent, models)
        models.append(model)
        machine.add_model(model)

    def live(model):
        return model.state not in lifecycle.TERMINAL

    for event, index, force, to_group in events:
        index %= size
        future, model = futures[index], models[index]
        if event in RESULTS or event in CONFIRMS:
            target = group_id if to_group and group_id is not None else future.task_id
            msg = message(event, target)
            h.manager.on_message(msg)
            # A result is one task's outcome: addressed to the group it
            # reaches no member (and is kept as late); a confirm reaches all.
            if target == future.task_id:
                receivers = [model]
            else:
                receivers = [] if event in RESULTS else list(models)
            receivers = [m for m in receivers if live(m)]
            for receiver in receivers:
                receiver.trigger(event, msg)
            if not receivers and event in RESULTS:
                late.append(msg)
        elif event == lifecycle.CANCEL:
            future.cancel(0, force=force)
            model.trigger(event, force)
        else:
            arg = argument(event, future.task_id, force)
            h.manager.dispatch(future, event, arg)
            model.trigger(event, arg)
        assert [f.state for f in futures] == [m.state for m in models]
        assert TracingFuture.trace == ref_trace
        assert h.sent == ref_sent
        assert list(h.manager.late_results) == late
        assert len(h.manager) == sum(live(m) for m in models)
