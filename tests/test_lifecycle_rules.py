"""One example per row of the lifecycle table, for both late-result policies.

Each test names the row it pins down; docs/lifecycle.md states the same rules.
"""

from __future__ import annotations

import concurrent.futures
import pickle

import pytest

from helpers import Harness
from taskfate.client import ConnectionLost, WorkerDied
from taskfate.protocol import CancelConfirmType, TaskCancel, TaskID, TaskResult, TaskResultType

POLICIES = ["cancel", "deliver"]


@pytest.fixture(params=POLICIES)
def h(request):
    return Harness(request.param)


def test_pending_result_success_is_done(h):
    future = h.submit()
    h.result(future, {"answer": 42})
    assert future.state == "done" and future.done() and not future.cancelled()
    assert future.result(timeout=0) == {"answer": 42}
    assert future.exception(timeout=0) is None


def test_pending_result_failed_is_failed_with_the_tasks_exception(h):
    future = h.submit()
    h.result(future, ValueError("boom"), TaskResultType.FAILED)
    assert future.state == "failed"
    with pytest.raises(ValueError, match="boom"):
        future.result(timeout=0)


def test_pending_worker_died_is_failed_with_worker_died(h):
    future = h.submit()
    h.result(future, b"segfault", TaskResultType.WORKER_DIED)
    assert future.state == "failed"
    assert isinstance(future.exception(timeout=0), WorkerDied)
    assert "segfault" in str(future.exception(timeout=0))


def test_pending_user_cancel_sends_one_request_after_the_state_changed(h):
    future = h.submit()
    seen_states = []
    h.manager._send = lambda message: (seen_states.append(future.state), h.sent.append(message))
    assert future.cancel(timeout=0) is False  # not cancelled yet: the scheduler decides
    assert future.state == "cancel_requested"
    assert seen_states == ["cancel_requested"]
    assert h.cancels() == [TaskCancel(future.task_id, True, 1)]
    future.cancel(timeout=0)
    assert len(h.cancels()) == 1, "a second cancel() sends nothing"


def test_pending_unsolicited_confirm_canceled_is_cancelled(h):
    future = h.submit()
    h.confirm(future, CancelConfirmType.CANCELED)
    assert future.state == "cancelled" and future.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=0)


def test_cancel_requested_confirm_canceled_is_cancelled(h):
    future = h.submit()
    future.cancel(timeout=0)
    h.confirm(future, CancelConfirmType.CANCELED)
    assert future.state == "cancelled"
    assert future.cancel() is True


@pytest.mark.parametrize("kind", list(TaskResultType))
def test_cancel_requested_result_follows_the_policy(h, kind):
    future = h.submit()
    future.cancel(timeout=0)
    message = h.result(future, ValueError("x") if kind == TaskResultType.FAILED else 7, kind)
    if h.manager.late_result == "cancel":
        assert future.state == "cancelled"
        assert future.discarded_results == (message,)
        assert h.manager.stats["discarded_results"] == 1
        assert future.cancel() is True
    else:
        assert future.state == ("done" if kind == TaskResultType.SUCCESS else "failed")
        assert future.discarded_results == ()
        assert future.cancel() is False


def test_cancel_requested_confirm_cancel_failed_returns_to_pending_and_the_result_still_comes(h):
    future = h.submit()
    future.cancel(timeout=0)
    h.confirm(future, CancelConfirmType.CANCEL_FAILED)
    assert future.state == "pending"
    assert future.cancel(timeout=0) is False  # asks again: a new request
    assert len(h.cancels()) == 2
    h.confirm(future, CancelConfirmType.CANCEL_FAILED)
    h.result(future, "finished anyway")
    assert future.state == "done" and future.result(timeout=0) == "finished anyway"


def test_cancel_requested_confirm_not_found_is_cancelled(h):
    future = h.submit()
    future.cancel(timeout=0)
    h.confirm(future, CancelConfirmType.CANCEL_NOT_FOUND)
    assert future.state == "cancelled"
    assert future.history[-1].event == "confirm_not_found"


def test_cancel_requested_confirm_timeout_is_cancelled_and_late_messages_are_counted(h):
    future = h.submit()
    future.cancel(timeout=0)
    assert h.advance(4.9) == 0 and future.state == "cancel_requested"
    assert h.advance(0.2) == 1
    assert future.state == "cancelled" and future.history[-1].event == "confirm_timeout"
    with pytest.raises(concurrent.futures.CancelledError, match="confirm_timeout"):
        future.result(timeout=0)
    late = h.result(future, "late")
    h.confirm(future, CancelConfirmType.CANCELED)
    assert future.state == "cancelled"
    assert h.manager.stats["unknown_task"] == 2
    assert list(h.manager.late_results) == [late]


def test_a_stale_timeout_does_not_end_a_later_cancel_early(h):
    future = h.submit()
    future.cancel(timeout=0)
    h.advance(3)
    h.confirm(future, CancelConfirmType.CANCEL_FAILED)
    future.cancel(timeout=0)  # a fresh deadline, 5 s from now
    assert h.advance(2.5) == 0 and future.state == "cancel_requested"
    assert h.advance(2.6) == 1 and future.state == "cancelled"


def test_a_clock_that_steps_back_still_fires_deadlines_in_order(h):
    first, second, third = h.submit(), h.submit(), h.submit()
    first.cancel(timeout=0)  # at 1000, due at 1005
    h.clock.now -= 3
    second.cancel(timeout=0)  # at 997, due at 1002: armed out of order, goes first
    h.clock.now += 1
    third.cancel(timeout=0)  # at 998, due at 1003
    assert h.manager.next_deadline() == 1002
    assert h.advance(4.5) == 1 and second.cancelled() and first.state == third.state == "cancel_requested"
    assert h.manager.next_deadline() == 1003
    assert h.advance(1) == 1 and third.cancelled() and first.state == "cancel_requested"
    assert h.advance(2) == 1 and first.cancelled() and h.manager.next_deadline() is None


@pytest.mark.parametrize("start", ["pending", "cancel_requested"])
def test_live_close_is_cancelled(h, start):
    future = h.submit()
    if start == "cancel_requested":
        future.cancel(timeout=0)
    h.manager.close()
    assert future.state == "cancelled"
    assert h.manager.next_deadline() is None
    with pytest.raises(RuntimeError, match="closed"):
        h.submit()


@pytest.mark.parametrize("start", ["pending", "cancel_requested"])
def test_live_connection_lost_is_failed_with_a_connection_error(h, start):
    future = h.submit()
    if start == "cancel_requested":
        future.cancel(timeout=0)
    h.manager.connection_lost()
    assert future.state == "failed"
    assert isinstance(future.exception(timeout=0), ConnectionLost)


@pytest.mark.parametrize("end", ["done", "failed", "cancelled"])
def test_terminal_futures_ignore_everything_and_record_late_results(h, end):
    future = h.submit()
    if end == "done":
        h.result(future)
    elif end == "failed":
        h.result(future, RuntimeError(), TaskResultType.FAILED)
    else:
        h.confirm(future, CancelConfirmType.CANCELED)
    manager = h.manager
    for event in ("result_success", "result_failed", "cancel", "confirm_canceled", "confirm_cancel_failed", "close", "connection_lost", "confirm_timeout", "clear"):
        late = TaskResult(future.task_id, TaskResultType.SUCCESS, b"") if event.startswith("result") else None
        manager.dispatch(future, event, late)
    assert future.state == end
    assert len(future.history) == 1
    assert len(future.discarded_results) == 2
    assert manager.stats["ignored"] == 7


def test_unsolicited_cancel_failed_while_pending_is_ignored_and_counted(h):
    future = h.submit()
    h.confirm(future, CancelConfirmType.CANCEL_FAILED)
    h.confirm(future, CancelConfirmType.CANCEL_NOT_FOUND)
    assert future.state == "pending"
    assert h.manager.stats["ignored"] == 2


def test_unknown_task_ids_are_counted_never_raised(h):
    h.confirm(TaskID.new(), CancelConfirmType.CANCELED)
    assert h.manager.stats["unknown_task"] == 1


def test_clear_requests_a_forced_cancel_for_every_live_future(h):
    futures = [h.submit() for _ in range(3)]
    h.result(futures[0])
    waiting = h.manager.clear()
    assert set(waiting) == set(futures[1:])
    assert {c.task_id for c in h.cancels()} == {f.task_id for f in futures[1:]}
    assert all(c.force for c in h.cancels())
    for future in futures[1:]:
        h.confirm(future, CancelConfirmType.CANCELED)
    assert [f.state for f in futures] == ["done", "cancelled", "cancelled"]


def test_cancelling_a_graph_member_sends_one_request_for_the_group(h):
    group = TaskID.new()
    a, b, c = (h.submit(group) for _ in range(3))
    h.result(a)
    b.cancel(timeout=0)
    assert h.cancels() == [TaskCancel(group, True, 1)]
    assert (a.state, b.state, c.state) == ("done", "cancel_requested", "cancel_requested")
    assert c.history[-1].event == "group_cancel"
    h.confirm(group, CancelConfirmType.CANCELED)
    assert (b.state, c.state) == ("cancelled", "cancelled")


def test_a_graph_member_left_unconfirmed_ends_by_timeout(h):
    group = TaskID.new()
    a, b = h.submit(group), h.submit(group)
    a.cancel(timeout=0)
    h.confirm(a, CancelConfirmType.CANCELED)  # the scheduler confirms one node only
    assert (a.state, b.state) == ("cancelled", "cancel_requested")
    h.advance(5.1)
    assert b.state == "cancelled" and b.history[-1].event == "confirm_timeout"


def test_a_result_addressed_to_a_group_reaches_no_member(h):
    # A result is one task's outcome. A graph's umbrella shares its id with
    # the group, so an umbrella result arriving after the umbrella ended
    # must not end the members with the umbrella's outcome.
    group = TaskID.new()
    umbrella = h.manager.track(group, group)
    member = h.submit(group)
    h.manager.on_message(TaskResult(group, TaskResultType.SUCCESS, pickle.dumps("graph")))
    assert umbrella.state == "done" and member.state == "pending"
    late = TaskResult(group, TaskResultType.FAILED, pickle.dumps("again"))
    h.manager.on_message(late)
    assert member.state == "pending" and member.history == ()
    assert list(h.manager.late_results) == [late] and h.manager.stats["unknown_task"] == 1
    assert h.manager.addresses_live(group)  # through its live member
    h.confirm(group, CancelConfirmType.CANCELED)  # a confirm to the group still reaches it
    assert member.state == "cancelled"
    assert not h.manager.addresses_live(group) and not h.manager.addresses_live(member.task_id)


def test_duplicate_task_ids_are_refused(h):
    future = h.submit()
    with pytest.raises(ValueError, match="already has a live future"):
        h.manager.track(future.task_id)


def test_history_is_bounded():
    h = Harness(history_limit=3)
    future = h.submit()
    for _ in range(4):
        future.cancel(timeout=0)
        h.confirm(future, CancelConfirmType.CANCEL_FAILED)
    assert len(future.history) == 3
    steps = future.history
    assert all(a.dest == b.source for a, b in zip(steps, steps[1:]))
    assert steps[-1].dest == future.state
