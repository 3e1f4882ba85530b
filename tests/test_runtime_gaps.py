"""What the runtime promises and no other test compared: what ``clear()``
returns, how soon a refusal wakes a waiting ``cancel()``, and what code
that calls back into the manager while effects are queued (a ``send`` that
answers at once, a ``send`` handing work to another thread, a done
callback) can do and see.

Threads are joined with generous bounds and every test has a pytest
timeout, so a deadlock fails the test instead of freezing the suite.
"""

from __future__ import annotations

import concurrent.futures
import pickle
import threading
import time

import pytest

from helpers import FakeClock, Harness
from taskfate.client import FutureManager
from taskfate.fsm.table import get_lifecycle
from taskfate.protocol import (
    CancelConfirmType,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskID,
    TaskResult,
    TaskResultType,
    TaskStarted,
)

pytestmark = pytest.mark.timeout(60)

#: How long a thread may take to do what it should do at once: generous,
#: for a loaded machine; well under the timeouts the tests wait with.
PROMPT = 10.0


def _result(future, value=1):
    return TaskResult(future.task_id, TaskResultType.SUCCESS, pickle.dumps(value))


# -- clear()'s return value --------------------------------------------------------------


def test_clear_returns_exactly_the_live_futures_it_left_awaiting_an_answer_in_routing_order():
    h = Harness()
    group = TaskID.new()
    plain = h.submit()
    in_flight = h.submit()
    finished = h.submit()
    first, second = h.submit(group), h.submit(group)
    in_flight.cancel(timeout=0)
    h.result(finished)
    h.sent.clear()
    returned = h.manager.clear()
    assert returned == [plain, in_flight, first, second]
    assert all(future.state == "cancel_requested" for future in returned)
    # What it did: one forced request per target that had none in flight
    # (the group's one covers both members), none for the cancel in flight.
    assert h.sent == [TaskCancel(plain.task_id, True, 1), TaskCancel(group, True, 1)]
    assert finished not in returned and finished.state == "done"


def test_clear_returns_the_running_futures_of_a_lifecycle_with_a_running_state():
    h = Harness(get_lifecycle("cancel", started=True))
    running, queued = h.submit(), h.submit()
    h.manager.on_message(TaskStarted(running.task_id))
    assert h.manager.clear() == [running, queued]
    assert {future.state for future in (running, queued)} == {"cancel_requested"}


def test_clear_with_nothing_live_returns_nothing_and_sends_nothing():
    h = Harness()
    assert h.manager.clear() == []
    future = h.submit()
    h.result(future)
    h.sent.clear()
    assert h.manager.clear() == [] and h.sent == []
    h.manager.close()
    assert h.manager.clear() == []


def test_a_second_clear_returns_the_same_futures_and_sends_nothing_more():
    h = Harness()
    futures = [h.submit() for _ in range(3)]
    assert h.manager.clear() == futures
    sent = list(h.sent)
    assert h.manager.clear() == futures
    assert h.sent == sent


def test_futures_whose_answer_arrives_during_the_send_are_returned_and_already_ended():
    """clear() reports what its broadcast left awaiting; an answer that the
    send itself delivers (a loopback, a test double) may end a future before
    clear() returns, and the future is still among those it asked."""
    box = {}

    def send(message):
        if isinstance(message, TaskCancel):
            box["manager"].on_message(TaskCancelConfirm(message.task_id, CancelConfirmType.CANCELED, message.epoch))

    manager = box["manager"] = FutureManager(send, clock=FakeClock(), timer=False)
    futures = [manager.submit(Task(TaskID.new(), b"")) for _ in range(2)]
    assert manager.clear() == futures
    assert all(future.cancelled() for future in futures) and len(manager) == 0


# -- A refusal wakes a waiting cancel() ---------------------------------------------------


@pytest.mark.parametrize("lifecycle", [("cancel", False), ("deliver", False), ("cancel", True)], ids=["cancel", "deliver", "running"])
@pytest.mark.parametrize("grouped", [False, True])
def test_a_refused_cancel_is_woken_by_the_refusal_not_by_its_timeout(lifecycle, grouped):
    """cancel(timeout=30) on a thread, refused from another: it must return
    False soon after the refusal, not when its 30 s run out."""
    policy, started = lifecycle
    sent = threading.Event()

    def send(message):
        if isinstance(message, TaskCancel):
            sent.set()

    manager = FutureManager(send, lifecycle=get_lifecycle(policy, started=started), cancel_timeout=60, timer=False)
    group = TaskID.new() if grouped else None
    future = manager.submit(Task(TaskID.new(), b"", group))
    if started:
        manager.on_message(TaskStarted(future.task_id))
    outcome = {}

    def cancel():
        began = time.monotonic()
        outcome["returned"] = future.cancel(timeout=30, force=False)
        outcome["took"] = time.monotonic() - began

    waiter = threading.Thread(target=cancel, daemon=True)
    waiter.start()
    assert sent.wait(PROMPT)
    deadline = time.monotonic() + PROMPT
    while future._waiting is None and time.monotonic() < deadline:  # the waiter is about to wait
        time.sleep(0.001)
    time.sleep(0.05)  # and, most likely, waits
    refused_at = time.monotonic()
    manager.on_message(TaskCancelConfirm(group or future.task_id, CancelConfirmType.CANCEL_FAILED, 1))
    waiter.join(PROMPT)
    assert not waiter.is_alive(), "cancel() was not woken by the refusal"
    assert outcome["returned"] is False
    assert outcome["took"] < PROMPT and time.monotonic() - refused_at < PROMPT
    assert future.state == ("running" if started else "pending")


# -- Calling back into the manager while effects are queued ----------------------------------


def test_a_send_sees_the_state_changed_and_the_timer_armed_and_may_use_the_manager():
    """The TaskCancel is sent after the lock is released, once the future
    awaits its answer with the deadline armed: the send may deliver the
    answer, read the future and submit, on the same thread."""
    box = {}
    seen = []

    def send(message):
        manager = box.get("manager")
        if manager is None or not isinstance(message, TaskCancel):
            return
        future = manager.get(message.task_id)
        seen.append((future.state, manager.deadlines.armed(future), manager.lock._is_owned()))
        manager.on_message(TaskCancelConfirm(message.task_id, CancelConfirmType.CANCELED, message.epoch))
        with pytest.raises(concurrent.futures.CancelledError):
            future.result(timeout=0)
        seen.append(manager.submit(Task(TaskID.new(), b"")))

    manager = FutureManager(send, clock=FakeClock(), timer=False)
    box["manager"] = manager
    future = manager.submit(Task(TaskID.new(), b""))
    assert future.cancel(timeout=5) is True
    (state, armed, owned), submitted = seen
    assert (state, armed, owned) == ("cancel_requested", True, False)
    assert manager.get(submitted.task_id) is submitted and len(manager) == 1
    assert not manager.deadlines.armed(future)


def test_a_send_that_waits_on_another_thread_using_the_manager_does_not_deadlock():
    """If a send ran under the manager's lock, a thread it waits for that
    needs the lock would never finish."""
    box = {}
    done = []

    def elsewhere(manager, other):
        manager.on_message(_result(other, "other"))
        done.append((len(manager.live_futures()), other.result(timeout=PROMPT), manager.clear()))

    def send(message):
        if isinstance(message, TaskCancel):
            helper = threading.Thread(target=elsewhere, args=(box["manager"], box["other"]), daemon=True)
            helper.start()
            helper.join(PROMPT)
            assert not helper.is_alive(), "the send ran with the manager's lock held"

    manager = box["manager"] = FutureManager(send, clock=FakeClock(), timer=False)
    future = manager.submit(Task(TaskID.new(), b""))
    box["other"] = manager.submit(Task(TaskID.new(), b""))
    assert future.cancel(timeout=0) is False
    assert done == [(1, "other", [future])]
    assert future.state == "cancel_requested"


def test_done_callbacks_that_call_back_into_the_manager_see_a_settled_manager_and_do_not_deadlock():
    """A result delivered on an I/O-like thread ends a future whose done
    callback cancels another future, reads results, submits and clears: the
    callback runs once the lock is free and the ended future is no longer
    routed; cancel() there sends without waiting."""
    h = Harness()
    ending, other, third = h.submit(), h.submit(), h.submit()
    observed = {}

    def callback(future):
        manager = h.manager
        observed["view"] = (future.done(), future.result(timeout=0), manager.get(future.task_id), manager.lock._is_owned())
        began = time.monotonic()
        observed["cancelled"] = other.cancel(timeout=30)  # a callback thread: no wait
        observed["took"] = time.monotonic() - began
        observed["submitted"] = manager.submit(Task(TaskID.new(), b""))
        observed["cleared"] = manager.clear()

    ending.add_done_callback(callback)
    deliverer = threading.Thread(target=h.manager.on_message, args=(_result(ending, "v"),), daemon=True)
    deliverer.start()
    deliverer.join(PROMPT)
    assert not deliverer.is_alive(), "on_message deadlocked in a done callback"
    assert observed["view"] == (True, "v", None, False)
    assert observed["cancelled"] is False and observed["took"] < PROMPT
    assert observed["cleared"] == [other, third, observed["submitted"]]
    assert [message.task_id for message in h.cancels()] == [other.task_id, third.task_id, observed["submitted"].task_id]


def test_a_done_callback_run_by_close_sees_the_manager_closed_and_every_future_ended():
    h = Harness()
    futures = [h.submit() for _ in range(3)]
    seen = []

    def callback(future):
        try:
            h.manager.submit(Task(TaskID.new(), b""))
        except RuntimeError as error:
            seen.append((future.state, str(error)))
        seen.append(future.cancel(timeout=30))

    for future in futures:
        future.add_done_callback(callback)
    closer = threading.Thread(target=h.manager.close, daemon=True)
    closer.start()
    closer.join(PROMPT)
    assert not closer.is_alive()
    assert seen == [("cancelled", "the future manager is closed"), True] * 3
    assert len(h.manager) == 0


def test_two_threads_cancelling_each_others_futures_from_sends_and_callbacks_all_end():
    """Sends answer from their own thread, callbacks cancel the next future:
    many threads in and out of the manager at once, and every future ends
    exactly once."""
    box = {}
    answerers = []

    def send(message):
        if isinstance(message, TaskCancel):
            answer = TaskCancelConfirm(message.task_id, CancelConfirmType.CANCELED, message.epoch)
            thread = threading.Thread(target=box["manager"].on_message, args=(answer,), daemon=True)
            answerers.append(thread)
            thread.start()

    manager = box["manager"] = FutureManager(send, cancel_timeout=60, timer=False)
    futures = [manager.submit(Task(TaskID.new(), b"")) for _ in range(50)]
    endings = []
    for index, future in enumerate(futures):
        nxt = futures[(index + 1) % len(futures)]
        future.add_done_callback(lambda f, nxt=nxt: (endings.append(f), nxt.cancel(timeout=30)))
    assert futures[0].cancel(timeout=30) is True
    done, not_done = concurrent.futures.wait(futures, timeout=PROMPT * 3)
    assert not not_done
    for thread in answerers:
        thread.join(PROMPT)
    assert sorted(map(id, endings)) == sorted(map(id, futures))
    assert all(future.cancelled() for future in futures) and len(manager) == 0
    assert manager.stats["stale_confirms"] == 0


def test_clear_leaves_out_a_live_future_its_lifecycle_does_not_clear():
    """A declaration whose clear spares running tasks: clear() returns the
    futures it asked about, not every live one."""
    from taskfate.fsm import declare, lifecycle

    declaration = lifecycle.declaration("cancel", started=True)
    for rule in declaration["transitions"]:
        if rule["trigger"] == "clear":
            rule["source"] = ["pending"]
    sparing = declare(declaration, messages=lifecycle.started_messages, name="clear-spares-running")
    h = Harness(sparing)
    running, queued = h.submit(), h.submit()
    h.manager.on_message(TaskStarted(running.task_id))
    assert h.manager.clear() == [queued]
    assert running.state == "running" and h.cancels() == [TaskCancel(queued.task_id, True, 1)]


# -- A lifecycle callback that calls back into the manager -------------------------------------


def _partnered_lifecycle():
    """The stock declaration, with a callback of its own after each cancel
    request: it calls back into the manager under the manager's lock."""
    from taskfate.fsm import declare, lifecycle

    declaration = lifecycle.declaration("cancel")
    for rule in declaration["transitions"]:
        if rule["trigger"] == "cancel":
            rule["after"] = [*rule["after"], "involve_partner"]
    return declare(declaration, messages=lifecycle.stock_messages, name="partnered")


def _partnered_manager(involve):
    from taskfate.client import Future

    class Partnered(Future):
        def involve_partner(self, force):
            involve(self)

    sent = []
    box = {}

    def send(message):
        sent.append((message, box["manager"].lock._is_owned()))

    manager = box["manager"] = FutureManager(send, lifecycle=_partnered_lifecycle(), clock=FakeClock(), timer=False, future_class=Partnered)
    return manager, sent


def test_a_cancel_from_a_lifecycle_callback_is_sent_once_the_outer_step_has_let_go_of_the_lock():
    partner = {}
    manager, sent = _partnered_manager(lambda future: partner[future].cancel(timeout=0) if future in partner else None)
    first = manager.submit(Task(TaskID.new(), b""))
    second = manager.submit(Task(TaskID.new(), b""))
    partner[first] = second
    sent.clear()
    assert first.cancel(timeout=0) is False
    assert [(message.task_id, owned) for message, owned in sent] == [(first.task_id, False), (second.task_id, False)]
    assert (first.state, second.state) == ("cancel_requested", "cancel_requested")


def test_a_done_callback_added_by_a_lifecycle_callback_to_a_finished_future_runs_after_the_lock():
    finished = {}
    ran = []

    def involve(future):
        finished["future"].add_done_callback(lambda f: ran.append((f.state, f._manager.lock._is_owned())))
        ran.append("added")

    manager, sent = _partnered_manager(involve)
    done = manager.submit(Task(TaskID.new(), b""))
    manager.on_message(_result(done))
    finished["future"] = done
    cancelling = manager.submit(Task(TaskID.new(), b""))
    cancelling.cancel(timeout=0)
    assert ran == ["added", ("done", False)]
    assert [(type(message).__name__, owned) for message, owned in sent] == [("Task", False), ("Task", False), ("TaskCancel", False)]


def test_a_lifecycle_callback_delivering_and_clearing_leaves_every_effect_to_after_the_lock():
    """From inside a cancel's step: deliver a result (a loopback) to a
    future with a done callback, and clear the rest. The done callback, and
    every send (each handing work to a thread that needs the lock), wait
    until the outer step has let go."""
    box = {}
    ran = []

    def involve(future):
        if future is box["first"]:
            box["manager"].on_message(_result(box["ending"], "v"))
            ran.append(("cleared", box["manager"].clear()))

    manager, sent = _partnered_manager(involve)
    box["manager"] = manager
    box["first"] = manager.submit(Task(TaskID.new(), b""))
    box["ending"] = manager.submit(Task(TaskID.new(), b""))
    rest = manager.submit(Task(TaskID.new(), b""))
    box["ending"].add_done_callback(lambda f: ran.append((f.result(timeout=0), manager.lock._is_owned())))
    helpers = []
    original = manager._send

    def send(message):
        original(message)
        if isinstance(message, TaskCancel):
            helper = threading.Thread(target=manager.live_futures, daemon=True)
            helper.start()
            helper.join(PROMPT)
            helpers.append(helper.is_alive())

    manager._send = send
    sent.clear()
    box["first"].cancel(timeout=0)
    assert ran == [("cleared", [box["first"], rest]), ("v", False)]
    assert [(message.task_id, owned) for message, owned in sent] == [(box["first"].task_id, False), (rest.task_id, False)]
    assert helpers == [False, False]
