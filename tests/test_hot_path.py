"""What keeps a future cheap, pinned as structure rather than as time.

Times belong in ``bench/``; these tests pin down the choices the benchmarks
depend on, so a change that undoes one fails here whatever the machine:
no per-future Condition or waiter list until somebody waits, no attribute
spilling out of the slots on the common paths, and no log message formatted
(no task id turned into hex) when the log level is off.
"""

from __future__ import annotations

import concurrent.futures
import logging
import pickle
import threading

import pytest

from helpers import Harness
from taskfate.client import Future, FutureManager
from taskfate.protocol import CancelConfirmType, TaskCancelConfirm, TaskID, TaskResult, TaskResultType


def lifecycles(h: Harness):
    """A future through each common path: result, failure, cancel confirmed,
    cancel timed out, refused then result, and a duplicate result."""
    done = h.submit()
    done.add_done_callback(lambda f: None)
    h.result(done, 1)
    assert done.result() == 1

    failed = h.submit()
    h.result(failed, KeyError("k"), TaskResultType.FAILED)
    assert isinstance(failed.exception(), KeyError)

    cancelled = h.submit()
    cancelled.add_done_callback(lambda f: None)
    assert cancelled.cancel(0) is False
    h.confirm(cancelled, CancelConfirmType.CANCELED)
    assert cancelled.cancelled()

    timed_out = h.submit()
    timed_out.cancel(0)
    assert h.advance(10) == 1 and timed_out.cancelled()

    refused = h.submit()
    refused.cancel(0, force=False)
    h.confirm(refused, CancelConfirmType.CANCEL_FAILED)
    h.result(refused, 2)
    h.result(refused, 3)  # duplicate: unknown by now, kept as late
    assert refused.result() == 2
    return [done, failed, cancelled, timed_out, refused]


@pytest.mark.parametrize("policy", ["cancel", "deliver"])
def test_no_condition_waiter_list_or_instance_dict_on_the_common_paths(policy):
    h = Harness(policy)
    for future in lifecycles(h):
        assert future._waiting is None
        # Everything the common paths set lives in a slot.
        assert vars(future) == {}, vars(future)


@pytest.mark.timeout(30)
def test_a_waiter_gets_a_condition_on_the_managers_lock():
    h = Harness()
    future = h.submit()
    assert future._waiting is None
    timer = threading.Timer(0.05, h.result, (future, "v"))
    timer.start()
    assert future.result(timeout=10) == "v"
    timer.join()
    assert future._waiting is not None and future._condition._lock is h.manager.lock  # type: ignore[attr-defined]
    waited = h.submit()
    other = h.submit()
    threading.Timer(0.05, h.result, (other, "w")).start()
    finished, _ = concurrent.futures.wait([waited, other], timeout=10, return_when=concurrent.futures.FIRST_COMPLETED)
    assert finished == {other} and waited._waiters == []  # the waiter removed itself


def test_no_log_message_is_formatted_when_the_level_is_off(monkeypatch, request):
    calls = []
    original = TaskID.hex

    def counting_hex(self, *args):
        calls.append(self)
        return original(self, *args)

    monkeypatch.setattr(TaskID, "hex", counting_hex)
    logger = logging.getLogger("taskfate.client")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # setLevel, not the attribute: it clears the level cache
    request.addfinalizer(lambda: logger.setLevel(level))
    h = Harness()
    lifecycles(h)
    # Ignored events, discarded results and unknown ids, all logged below CRITICAL.
    ended = h.submit()
    h.result(ended, 1)
    h.manager.dispatch(ended, "result_success", TaskResult(ended.task_id, TaskResultType.SUCCESS, pickle.dumps(2)))
    h.manager.dispatch(ended, "cancel", True)
    h.manager.on_message(TaskCancelConfirm(TaskID.new(), CancelConfirmType.CANCEL_NOT_FOUND))
    pending = h.submit()
    pending.cancel(0)
    h.confirm(pending, CancelConfirmType.CANCEL_NOT_FOUND)
    assert ended.discarded_results and h.manager.stats["ignored"] and h.manager.stats["unknown_task"]
    assert calls == []

    # The same paths with the level on do format: the counter can see it.
    logger.setLevel(logging.DEBUG)
    lifecycles(Harness())
    assert calls


def test_track_starts_every_future_in_the_lifecycles_initial_state():
    from taskfate.fsm import declare, lifecycle, stock_messages

    declared = lifecycle.declaration()
    declared["states"].insert(0, {"name": "accepted"})
    declared["initial"] = "accepted"
    declared["transitions"] += [
        {"trigger": "result_success", "source": "accepted", "dest": "pending"},
        {"trigger": "close", "source": "accepted", "dest": "cancelled"},
        {"trigger": "connection_lost", "source": "accepted", "dest": "failed", "before": ["keep_connection_error"]},
    ]
    custom = declare(declared, messages=stock_messages, name="accepting")
    manager = FutureManager(lambda message: None, lifecycle=custom, timer=False)
    future = manager.track(TaskID.new())
    assert future.state == "accepted" and not future.done() and vars(future) == {}


def test_a_subclass_with_its_own_init_is_called():
    class Counted(Future):
        __slots__ = ("made",)

        def __init__(self, task_id, manager, group_id=None):
            super().__init__(task_id, manager, group_id)
            self.made = True

    manager = FutureManager(lambda message: None, timer=False, future_class=Counted)
    future = manager.track(TaskID.new())
    assert type(future) is Counted and future.made
