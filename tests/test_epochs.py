"""Cancel epochs: an answer to an earlier cancel request cannot pass for the
answer to the latest one.

The client numbers its ``TaskCancel`` requests per target (a task, or a
group for a group's one request) and the scheduler echoes the number in its
``TaskCancelConfirm``. The manager drops a numbered confirm that is not the
answer to the latest request before the lifecycle sees it, and counts it in
``stats["stale_confirms"]``. Unnumbered confirms (epoch 0) are taken as
before. Sans-I/O here, with a fake clock; the reference scheduler's echo is
tried over loopback at the end.
"""

from __future__ import annotations

import logging
import sys
import time

import cloudpickle
import pytest
import zmq

from helpers import Harness
from taskfate.protocol import (
    MAX_EPOCH,
    CancelConfirmType,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskID,
    TaskStarted,
    decode,
    encode,
)

CANCELED = CancelConfirmType.CANCELED
CANCEL_FAILED = CancelConfirmType.CANCEL_FAILED
NOT_FOUND = CancelConfirmType.CANCEL_NOT_FOUND


def _refused_then_forced(h: Harness):
    """A future whose gentle cancel (epoch 1) was refused, then cleared
    (a forced cancel, epoch 2, in flight); and the refusal, for replaying."""
    future = h.submit()
    assert future.cancel(timeout=0, force=False) is False
    refusal = TaskCancelConfirm(future.task_id, CANCEL_FAILED, 1)
    h.manager.on_message(refusal)
    assert future.state == "pending"
    assert h.manager.clear() == [future]
    assert h.cancels() == [TaskCancel(future.task_id, False, 1), TaskCancel(future.task_id, True, 2)]
    return future, refusal


@pytest.mark.parametrize("policy", ["cancel", "deliver"])
def test_a_duplicated_refusal_of_an_earlier_gentle_cancel_does_not_undo_a_forced_one(policy):
    """The protocol hole the epochs close: without them the late copy of
    the refusal sends the future back to pending, where the forced cancel's
    answer is then taken as the scheduler cancelling on its own (or, under
    a lost answer, nothing ends it but a result)."""
    h = Harness(policy)
    future, refusal = _refused_then_forced(h)
    ignored = h.manager.stats["ignored"]
    h.manager.on_message(refusal)
    assert future.state == "cancel_requested"
    assert h.manager.stats["stale_confirms"] == 1 and h.manager.stats["ignored"] == ignored
    h.manager.on_message(TaskCancelConfirm(future.task_id, CANCELED, 2))
    assert future.cancelled()
    assert [step.event for step in future.history] == ["cancel", "confirm_cancel_failed", "clear", "confirm_canceled"]


def test_a_stale_refusal_leaves_the_forced_cancel_to_its_timeout_when_its_answer_is_lost():
    h = Harness(cancel_timeout=5.0)
    future, refusal = _refused_then_forced(h)
    h.manager.on_message(refusal)
    h.manager.on_message(refusal)
    assert future.state == "cancel_requested" and h.manager.stats["stale_confirms"] == 2
    assert h.advance(5.0) == 1
    assert future.cancelled() and future.history[-1].event == "confirm_timeout"


def test_a_waiting_cancel_is_not_woken_by_a_stale_answer(caplog):
    """The drop happens before the lifecycle: no state change, no history
    entry, and the debug log says which request the answer belonged to."""
    h = Harness()
    future, refusal = _refused_then_forced(h)
    history = future.history
    with caplog.at_level(logging.DEBUG, logger="taskfate.client"):
        h.manager.on_message(refusal)
    assert future.history == history
    assert any("answers cancel request 1, not the latest (2)" in record.getMessage() for record in caplog.records)


def test_an_older_refusal_is_dropped_but_an_older_cancelled_or_not_found_is_taken():
    h = Harness()
    future = h.submit()
    future.cancel(timeout=0, force=False)
    h.manager.on_message(TaskCancelConfirm(future.task_id, CANCEL_FAILED, 1))
    future.cancel(timeout=0, force=False)  # epoch 2
    assert h.cancels()[-1] == TaskCancel(future.task_id, False, 2)
    h.manager.on_message(TaskCancelConfirm(future.task_id, CANCEL_FAILED, 1))
    # A number never sent is no answer to the latest request either.
    h.manager.on_message(TaskCancelConfirm(future.task_id, CANCEL_FAILED, 3))
    assert future.state == "cancel_requested" and h.manager.stats["stale_confirms"] == 2
    h.manager.on_message(TaskCancelConfirm(future.task_id, CANCEL_FAILED, 2))
    assert future.state == "pending"
    # "The task is gone" is a fact whichever request it answers: dropping it
    # would leave the future waiting for a task that no longer exists.
    for kind in (CANCELED, NOT_FOUND):
        other = h.submit()
        other.cancel(timeout=0, force=False)
        h.manager.on_message(TaskCancelConfirm(other.task_id, CANCEL_FAILED, 1))
        other.cancel(timeout=0)  # epoch 2
        h.manager.on_message(TaskCancelConfirm(other.task_id, kind, 1))
        assert other.state == "cancelled", kind
    assert h.manager.stats["stale_confirms"] == 2


def test_epochs_count_per_task_from_one():
    h = Harness()
    first, second = h.submit(), h.submit()
    first.cancel(timeout=0, force=False)
    second.cancel(timeout=0)
    h.confirm(first, CANCEL_FAILED)
    first.cancel(timeout=0)
    assert [(c.task_id, c.epoch) for c in h.cancels()] == [(first.task_id, 1), (second.task_id, 1), (first.task_id, 2)]


def test_epoch_zero_is_always_taken():
    """An unnumbered answer (another peer's, a scheduler speaking on its own)
    reaches the lifecycle exactly as before the epochs."""
    h = Harness()
    future, _ = _refused_then_forced(h)
    h.manager.on_message(TaskCancelConfirm(future.task_id, CANCEL_FAILED, 0))
    assert future.state == "pending" and h.manager.stats["stale_confirms"] == 0
    h.manager.on_message(TaskCancelConfirm(future.task_id, CANCELED, 0))  # cancelled on its own
    assert future.cancelled()


def test_a_numbered_answer_for_a_target_never_asked_is_taken():
    """Nothing to compare with: taken as an unnumbered one, whether or not
    some other future's cancel is on record."""
    h = Harness()
    asked, unasked = h.submit(), h.submit()
    asked.cancel(timeout=0)
    h.manager.on_message(TaskCancelConfirm(unasked.task_id, CANCELED, 9))
    assert unasked.cancelled() and h.manager.stats["stale_confirms"] == 0
    assert asked.state == "cancel_requested"


def test_epochs_wrap_from_the_largest_to_one_never_zero():
    h = Harness()
    future = h.submit()
    h.manager._epochs[future.task_id] = MAX_EPOCH - 1
    future.cancel(timeout=0, force=False)
    h.manager.on_message(TaskCancelConfirm(future.task_id, CANCEL_FAILED, MAX_EPOCH))
    future.cancel(timeout=0)
    assert [c.epoch for c in h.cancels()] == [MAX_EPOCH, 1]
    assert decode(encode(h.cancels()[-1])) == h.cancels()[-1]


# -- Groups -----------------------------------------------------------------------------


def test_a_group_is_one_target_and_its_stale_answers_are_dropped_per_member_and_for_the_group():
    h = Harness()
    group = TaskID.new()
    a, b = h.submit(group), h.submit(group)
    a.cancel(timeout=0, force=False)
    assert h.cancels() == [TaskCancel(group, False, 1)]
    # The scheduler answers per member, with the group's epoch.
    h.manager.on_message(TaskCancelConfirm(a.task_id, CANCEL_FAILED, 1))
    h.manager.on_message(TaskCancelConfirm(b.task_id, CANCEL_FAILED, 1))
    assert (a.state, b.state) == ("pending", "pending")
    b.cancel(timeout=0)  # the group's next request, whichever member asks
    assert h.cancels()[-1] == TaskCancel(group, True, 2)
    assert (a.state, b.state) == ("cancel_requested", "cancel_requested")
    h.manager.on_message(TaskCancelConfirm(a.task_id, CANCEL_FAILED, 1))
    h.manager.on_message(TaskCancelConfirm(group, CANCEL_FAILED, 1))  # addressed to the group: one message
    assert (a.state, b.state) == ("cancel_requested", "cancel_requested")
    assert h.manager.stats["stale_confirms"] == 2
    h.manager.on_message(TaskCancelConfirm(group, CANCELED, 2))
    assert a.cancelled() and b.cancelled()
    assert not h.manager._epochs


def test_a_groups_record_lives_while_any_member_does():
    h = Harness()
    group = TaskID.new()
    a, b = h.submit(group), h.submit(group)
    a.cancel(timeout=0, force=False)
    h.manager.on_message(TaskCancelConfirm(a.task_id, CANCEL_FAILED, 1))
    h.manager.on_message(TaskCancelConfirm(b.task_id, CANCEL_FAILED, 1))
    h.result(a)  # a ends; the group's numbering goes on for b
    assert h.manager._epochs == {group: 1}
    b.cancel(timeout=0)
    assert h.cancels()[-1] == TaskCancel(group, True, 2)
    h.manager.on_message(TaskCancelConfirm(b.task_id, CANCEL_FAILED, 1))
    assert b.state == "cancel_requested"
    h.confirm(b, NOT_FOUND)
    assert b.cancelled() and not h.manager._epochs


# -- The record goes with its future -------------------------------------------------------


@pytest.mark.parametrize(
    "ending",
    [
        "result_after_refusal",  # on_message's fast path, from pending
        "delivered_result",  # the fast path, from cancel_requested (deliver)
        "canceled",  # the fast path, a confirm
        "not_found",  # a step
        "timeout",
        "close",
        "connection_lost",
    ],
)
def test_the_record_of_a_futures_cancels_is_dropped_when_it_ends(ending):
    h = Harness("deliver" if ending == "delivered_result" else "cancel")
    future = h.submit()
    future.cancel(timeout=0, force=False)
    assert h.manager._epochs == {future.task_id: 1}
    if ending == "result_after_refusal":
        h.manager.on_message(TaskCancelConfirm(future.task_id, CANCEL_FAILED, 1))
        h.result(future)
    elif ending == "delivered_result":
        h.result(future)
    elif ending == "canceled":
        h.manager.on_message(TaskCancelConfirm(future.task_id, CANCELED, 1))
    elif ending == "not_found":
        h.manager.on_message(TaskCancelConfirm(future.task_id, NOT_FOUND, 1))
    elif ending == "timeout":
        h.advance(10)
    elif ending == "close":
        h.manager.close()
    else:
        h.manager.connection_lost()
    assert future.done() and not h.manager._epochs


def test_futures_nobody_cancels_leave_no_record():
    h = Harness()
    futures = [h.submit() for _ in range(3)]
    for future in futures:
        h.result(future)
    assert not h.manager._epochs and h.manager.stats["stale_confirms"] == 0


# -- Over loopback, with the reference scheduler ----------------------------------------------

cloudpickle.register_pickle_by_value(sys.modules[__name__])
WAIT = 20


def _sleep(seconds):
    time.sleep(seconds)


class _Raw:
    """A bare DEALER speaking the protocol to a scheduler."""

    def __init__(self, address):
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(address)

    def send(self, message):
        self.socket.send_multipart(encode(message))

    def until(self, wanted, count=1):
        """The next ``count`` messages that ``wanted`` accepts (others skipped)."""
        found = []
        deadline = time.monotonic() + WAIT
        while len(found) < count and time.monotonic() < deadline:
            if self.socket.poll(100):
                message = decode(self.socket.recv_multipart())
                if wanted(message):
                    found.append(message)
        assert len(found) == count, f"only {found} within {WAIT}s"
        return found

    def close(self):
        self.socket.close()


def _confirms(message):
    return isinstance(message, TaskCancelConfirm)


@pytest.fixture(scope="module")
def scheduler():
    from taskfate.scheduler import Scheduler

    with Scheduler("tcp://127.0.0.1:*", workers=2) as running:
        yield running


@pytest.mark.timeout(60)
def test_the_reference_scheduler_echoes_the_epoch_of_the_cancel_it_answers(scheduler):
    from taskfate.protocol.calls import dump_call

    raw = _Raw(scheduler.address)
    try:
        running = TaskID.new()
        raw.send(Task(running, dump_call(_sleep, (30,))))
        raw.until(lambda m: m == TaskStarted(running))
        raw.send(TaskCancel(running, False, 7))
        assert raw.until(_confirms) == [TaskCancelConfirm(running, CANCEL_FAILED, 7)]
        raw.send(TaskCancel(running, True, 8))
        assert raw.until(_confirms) == [TaskCancelConfirm(running, CANCELED, 8)]
        raw.send(TaskCancel(running, True, 9))  # finished: not found, still numbered
        unknown = TaskID.new()
        raw.send(TaskCancel(unknown, False, MAX_EPOCH))
        assert raw.until(_confirms, 2) == [TaskCancelConfirm(running, NOT_FOUND, 9), TaskCancelConfirm(unknown, NOT_FOUND, MAX_EPOCH)]
        raw.send(TaskCancel(unknown, False))  # unnumbered stays unnumbered
        assert raw.until(_confirms) == [TaskCancelConfirm(unknown, NOT_FOUND, 0)]
    finally:
        raw.close()


@pytest.mark.timeout(60)
def test_the_reference_scheduler_answers_a_group_cancel_per_member_with_the_groups_epoch(scheduler):
    from taskfate.protocol.calls import dump_call

    raw = _Raw(scheduler.address)
    try:
        group = TaskID.new()
        members = [TaskID.new() for _ in range(3)]
        for member in members:
            raw.send(Task(member, dump_call(_sleep, (30,)), group))
        raw.send(TaskCancel(group, True, 5))
        answers = raw.until(_confirms, 3)
        assert sorted(answers, key=lambda m: m.task_id) == sorted(
            (TaskCancelConfirm(member, CANCELED, 5) for member in members), key=lambda m: m.task_id
        )
        raw.send(TaskCancel(group, True, 6))  # nothing of the group is left
        assert raw.until(_confirms) == [TaskCancelConfirm(group, NOT_FOUND, 6)]
    finally:
        raw.close()


@pytest.mark.timeout(60)
def test_a_confirm_the_scheduler_sends_on_its_own_is_unnumbered():
    """A client it gave up on (silent past client_timeout) learns its tasks
    were cancelled: nobody asked, so the answer carries epoch 0."""
    from taskfate.protocol.calls import dump_call
    from taskfate.scheduler import Scheduler

    with Scheduler("tcp://127.0.0.1:*", workers=1, client_timeout=0.5, heartbeat_interval=0.1) as quick:
        raw = _Raw(quick.address)
        try:
            task_id = TaskID.new()
            raw.send(Task(task_id, dump_call(_sleep, (30,))))
            assert raw.until(_confirms) == [TaskCancelConfirm(task_id, CANCELED, 0)]
        finally:
            raw.close()


@pytest.mark.timeout(60)
def test_a_client_and_the_reference_scheduler_number_and_echo_end_to_end(scheduler):
    """taskfate's Client against the real scheduler: a gentle cancel of a
    running task is refused (its answer taken, not stale), the clear that
    follows is answered with its own epoch and ends the future."""
    from taskfate.client import Client

    with Client(scheduler.address, cancel_timeout=10, heartbeat_timeout=5) as client:
        future = client.submit(_sleep, 30)
        deadline = time.monotonic() + WAIT
        while future.state != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert future.state == "running"
        assert future.cancel(timeout=WAIT, force=False) is False
        assert future.state == "running"
        client.clear()
        assert future.cancelled()
        assert [step.event for step in future.history] == ["started", "cancel", "confirm_cancel_failed", "clear", "confirm_canceled"]
        assert client.manager.stats["stale_confirms"] == 0 and not client.manager._epochs
        # A late copy of the refusal now finds nobody: it is not a stale
        # answer to a live request but a message for a finished task.
        client.manager.on_message(TaskCancelConfirm(future.task_id, CANCEL_FAILED, 1))
        assert future.cancelled() and client.manager.stats["unknown_task"] >= 1


@pytest.mark.timeout(60)
def test_the_scaler_adapters_confirms_are_unnumbered_and_keep_todays_behaviour():
    """Scaler's protocol has no epoch: its confirms map to epoch 0 and are
    taken as they always were, even one that repeats an earlier refusal."""
    tfs = pytest.importorskip("taskfate.client.scaler")
    capnp = pytest.importorskip("scaler.protocol.capnp")
    import types

    sent = []
    manager = tfs.ScalerFutureManager(sent.append, late_result="cancel", cancel_timeout=5)
    future = manager.make_future(task=types.SimpleNamespace(taskId=TaskID.new()), is_delayed=True, group_task_id=None)
    manager.add_future(future)
    refusal = capnp.TaskCancelConfirm(taskId=bytes(future.task_id), cancelConfirmType=capnp.TaskCancelConfirmType.cancelFailed)
    assert tfs.confirm_from_scaler(refusal).epoch == 0
    future.cancel(timeout=0, force=False)
    manager.on_task_cancel_confirm(refusal)
    future.cancel(timeout=0)
    manager.on_task_cancel_confirm(refusal)  # today's behaviour: taken
    assert future.state == "pending" and manager.lifecycle.stats["stale_confirms"] == 0
    assert len(sent) == 2 and all(isinstance(message, capnp.TaskCancel) for message in sent)
    assert [bytes(message.taskId) for message in sent] == [future.task_id] * 2
    # Leave no timer thread behind for the tests that count them.
    timer = manager.lifecycle.deadlines._thread
    manager.lifecycle.close()
    if timer is not None:
        timer.join(10)
        assert not timer.is_alive()
