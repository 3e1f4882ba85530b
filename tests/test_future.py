"""The Future as a stdlib citizen: waiting, callbacks, asyncio, and cancel() that never hangs."""

from __future__ import annotations

import math
import asyncio
import concurrent.futures
import logging
import pickle
import threading
import time

import pytest

from helpers import Harness
from taskfate.client import FutureManager, ResultDecodeError
from taskfate.client.deadlines import Deadlines
from taskfate.protocol import CancelConfirmType, Task, TaskCancel, TaskCancelConfirm, TaskID, TaskResult, TaskResultType

pytestmark = pytest.mark.timeout(30)


def later(seconds, fn, *args):
    timer = threading.Timer(seconds, fn, args)
    timer.daemon = True
    timer.start()
    return timer


def success(future, value=1):
    return TaskResult(future.task_id, TaskResultType.SUCCESS, pickle.dumps(value))


def test_wait_and_as_completed_see_lifecycle_endings():
    h = Harness()
    a, b, c = h.submit(), h.submit(), h.submit()
    later(0.05, h.manager.on_message, success(a))
    done, not_done = concurrent.futures.wait([a, b], timeout=5, return_when=concurrent.futures.FIRST_COMPLETED)
    assert done == {a} and not_done == {b}
    later(0.02, h.manager.on_message, TaskCancelConfirm(b.task_id, CancelConfirmType.CANCELED))
    later(0.04, h.manager.on_message, TaskResult(c.task_id, TaskResultType.FAILED, pickle.dumps(KeyError("k"))))
    finished = list(concurrent.futures.as_completed([a, b, c], timeout=5))
    assert set(finished) == {a, b, c}
    assert (a.state, b.state, c.state) == ("done", "cancelled", "failed")


def test_result_blocks_until_delivered_and_times_out_otherwise():
    h = Harness()
    future = h.submit()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.05)
    later(0.05, h.manager.on_message, success(future, "v"))
    assert future.result(timeout=5) == "v"


def test_done_callbacks_run_exactly_once_outside_the_lock_and_errors_are_logged(caplog):
    h = Harness()
    future = h.submit()
    calls = []

    def bad(f):
        raise RuntimeError("callback bug")

    def good(f):
        # The manager lock is free: another thread can use the manager now.
        t = threading.Thread(target=lambda: calls.append(len(h.manager)))
        t.start()
        t.join(5)
        calls.append(f.state)

    future.add_done_callback(bad)
    future.add_done_callback(good)
    with caplog.at_level(logging.ERROR, logger="taskfate.client"):
        h.manager.on_message(success(future))
        h.manager.on_message(success(future))  # duplicate: no second run
    assert calls == [0, "done"]
    assert "callback bug" in caplog.text
    late_calls = []
    future.add_done_callback(late_calls.append)
    assert late_calls == [future]


def test_cancel_waits_for_the_confirm_and_returns_true():
    h = Harness()
    future = h.submit()
    later(0.05, h.manager.on_message, TaskCancelConfirm(future.task_id, CancelConfirmType.CANCELED))
    started = time.monotonic()
    assert future.cancel(timeout=5) is True
    assert time.monotonic() - started < 4


def test_cancel_returns_false_when_the_result_wins_under_deliver():
    h = Harness("deliver")
    future = h.submit()
    later(0.05, h.manager.on_message, success(future, "won"))
    assert future.cancel(timeout=5) is False
    assert future.result(timeout=0) == "won"


def test_cancel_with_a_short_timeout_returns_false_and_leaves_the_request_in_flight():
    h = Harness()
    future = h.submit()
    started = time.monotonic()
    assert future.cancel(timeout=0.05) is False
    assert time.monotonic() - started < 1
    assert future.state == "cancel_requested"


def test_confirm_timeout_ends_futures_nobody_waits_on_with_one_timer_thread():
    sent = []
    manager = FutureManager(sent.append, cancel_timeout=0.2)
    futures = [manager.submit(Task(TaskID.new(), b"")) for _ in range(50)]
    ended = []
    for future in futures:
        future.add_done_callback(ended.append)
        future.cancel(timeout=0)
    timers = [t for t in threading.enumerate() if t.name == "taskfate-timer"]
    assert len(timers) == 1
    deadline = time.monotonic() + 5
    while len(ended) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(f.state == "cancelled" for f in futures) and len(ended) == 50
    timers[0].join(5)
    assert not timers[0].is_alive(), "the timer thread exits once nothing is left to time"


def test_default_cancel_is_bounded_by_the_lifecycle_timeout():
    manager = FutureManager(lambda m: None, cancel_timeout=0.2)
    future = manager.submit(Task(TaskID.new(), b""))
    started = time.monotonic()
    assert future.cancel() is True
    assert 0.15 < time.monotonic() - started < 3


def test_cancel_without_a_timer_thread_is_still_bounded():
    manager = FutureManager(lambda m: None, cancel_timeout=0.2, timer=False)
    future = manager.submit(Task(TaskID.new(), b""))
    assert future.cancel() is True
    assert future.history[-1].event == "confirm_timeout"


def test_cancel_inside_a_done_callback_does_not_wait():
    manager = FutureManager(lambda m: None, cancel_timeout=30)
    first = manager.submit(Task(TaskID.new(), b""))
    second = manager.submit(Task(TaskID.new(), b""))
    returned = []
    first.add_done_callback(lambda f: returned.append(second.cancel()))
    started = time.monotonic()
    manager.on_message(success(first))
    assert time.monotonic() - started < 5
    assert returned == [False] and second.state == "cancel_requested"
    manager.close()


def test_cancel_on_a_service_thread_does_not_wait():
    manager = FutureManager(lambda m: None, cancel_timeout=30)
    manager.mark_service_thread()
    future = manager.submit(Task(TaskID.new(), b""))
    assert future.cancel() is False and future.state == "cancel_requested"
    manager.close()


def test_asyncio_await_and_cancelling_the_awaiting_task_does_not_block_the_loop():
    sent = []
    manager = FutureManager(sent.append, cancel_timeout=30)
    done_future = manager.submit(Task(TaskID.new(), b""))
    stuck = manager.submit(Task(TaskID.new(), b""))

    async def main():
        asyncio.get_running_loop().call_later(0.02, manager.on_message, success(done_future, "async"))
        assert await done_future == "async"
        waiter = asyncio.ensure_future(asyncio.wrap_future(stuck))
        await asyncio.sleep(0.01)
        started = time.monotonic()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return time.monotonic() - started

    elapsed = asyncio.run(asyncio.wait_for(main(), 10))
    assert elapsed < 5
    assert stuck.state == "cancel_requested"
    assert TaskCancel(stuck.task_id, True, 1) in sent
    manager.close()


def test_undecodable_result_raises_result_decode_error():
    h = Harness()
    future = h.submit()
    h.manager.on_message(TaskResult(future.task_id, TaskResultType.SUCCESS, b"not a pickle"))
    assert future.state == "done"
    with pytest.raises(ResultDecodeError):
        future.result(timeout=0)
    assert isinstance(future.exception(timeout=0), ResultDecodeError)


def test_awaiting_an_undecodable_result_raises_instead_of_hanging():
    h = Harness()
    future = h.submit()

    async def main():
        asyncio.get_running_loop().call_soon(
            h.manager.on_message, TaskResult(future.task_id, TaskResultType.SUCCESS, b"not a pickle")
        )
        with pytest.raises(ResultDecodeError):
            await asyncio.wait_for(asyncio.wrap_future(future), 10)

    asyncio.run(main())


def test_non_exception_failure_payload_becomes_task_failed():
    from taskfate.client import TaskFailed

    h = Harness()
    future = h.submit()
    h.manager.on_message(TaskResult(future.task_id, TaskResultType.FAILED, pickle.dumps("just text")))
    error = future.exception(timeout=0)
    assert isinstance(error, TaskFailed) and "just text" in str(error)
    assert future.exception(timeout=0) is error


def test_executor_setters_are_refused_and_running_is_false():
    h = Harness()
    future = h.submit()
    assert future.running() is False
    for call in (lambda: future.set_result(1), lambda: future.set_exception(ValueError()), future.set_running_or_notify_cancel):
        with pytest.raises(RuntimeError, match="lifecycle"):
            call()
    assert "pending" in repr(future)


def test_a_send_that_fails_on_submit_forgets_the_future():
    def broken(message):
        raise OSError("socket gone")

    manager = FutureManager(broken)
    with pytest.raises(OSError):
        manager.submit(Task(TaskID.new(), b""))
    assert len(manager) == 0


@pytest.mark.timeout(30)
def test_cancels_answered_one_by_one_keep_one_timer_thread(monkeypatch):
    """Answered cancels leave the deadline queue at once; a timer thread that
    finds the queue empty lingers (one cancel_timeout) instead of leaving, so
    a client that cancels now and then does not start a thread per cancel."""
    started = []
    original = Deadlines._start_thread

    def counting(self):
        started.append(1)
        original(self)

    monkeypatch.setattr(Deadlines, "_start_thread", counting)
    manager = FutureManager(lambda m: None, cancel_timeout=30)
    for _ in range(5):
        future = manager.track(TaskID.new())
        # Cancel and answer while holding the manager's lock, so the timer
        # thread (started by the first cancel) looks at the queue only once
        # the answer has emptied it.
        with manager.lock:
            future.cancel(0)
            manager.on_message(TaskCancelConfirm(future.task_id, CancelConfirmType.CANCELED))
        deadline = time.monotonic() + 10
        timer = manager.deadlines
        while timer._sleeps_until == -math.inf and timer._thread is not None and time.monotonic() < deadline:
            time.sleep(0.001)  # until it sleeps again, or has left
    assert future.cancelled() and len(started) == 1 and manager.deadlines._thread is not None
    manager.close()


# -- What a history's times are ----------------------------------------------------


def test_history_times_are_the_managers_monotonic_clock_and_convert_to_wall_time():
    manager = FutureManager(lambda m: None, timer=False)
    future = manager.track(TaskID.new())
    before_wall, before = time.time(), time.monotonic()
    manager.on_message(success(future))
    after_wall, after = time.time(), time.monotonic()
    (step,) = future.history
    assert before <= step.time <= after  # time.monotonic, the default clock
    # Paired once: the offset between the clocks drifts by at most the
    # time the two readings took (well under a millisecond).
    assert before_wall - 1e-3 <= manager.wall_time(step.time) <= after_wall + 1e-3
    manager.close()


def test_wall_time_pairs_the_clocks_once_and_keeps_intervals():
    h = Harness()  # a fake clock, at 1000.0
    first = h.submit()
    h.clock.now += 2.5
    h.manager.on_message(success(first))
    (step,) = first.history
    assert step.time == 1002.5
    asked = time.time()
    assert abs(h.manager.wall_time(step.time) - asked) < 0.5  # paired now, at 1002.5
    # Paired once: later readings of the clock do not move the offset.
    h.clock.now += 100.0
    assert abs(h.manager.wall_time(step.time) - asked) < 0.5
    assert h.manager.wall_time(step.time) - h.manager.wall_time(1000.0) == pytest.approx(2.5, abs=1e-6)


def test_a_managers_clock_is_not_read_until_a_step_or_wall_time_needs_it():
    readings = []
    manager = FutureManager(lambda m: None, timer=False, clock=lambda: readings.append(1) or 5.0)
    assert readings == []
    manager.wall_time(5.0)
    manager.wall_time(6.0)
    assert readings == [1]
