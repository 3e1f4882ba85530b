"""The runtime's steps: stock callbacks against overriding ones, and both
against ``transitions``.

``taskfate.client.runtime`` runs each declared rule as a closure over the
future class's resolved callbacks. Here the stock ``Future`` runs beside a
subclass whose overrides only delegate, and beside the ``transitions``
machine, on the same arbitrary event sequences for every policy. Everything
a user or the scheduler can observe must agree: states, histories with their
times, confirm deadlines and when they fire, outgoing messages, done-callback
order, counters, kept and discarded results.

Also here: the explicit record of callback-running threads that keeps
``cancel()`` from waiting inside a done callback, and effects released once.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import FakeClock
from taskfate.client import Future, FutureManager
from taskfate.client.runtime import compile_steps
from taskfate.fsm import build_machine, declare, lifecycle
from taskfate.fsm.table import get_lifecycle
from taskfate.protocol import CancelConfirmType, Task, TaskCancelConfirm, TaskID, TaskResult, TaskResultType
from test_differential import CONFIRMS, RESULTS, Reference, argument


class DelegatingFuture(Future):
    """Overrides every lifecycle callback with a call to the base one, so
    the steps resolve the subclass's methods, not the stock ones."""


def _delegate(name):
    def callback(self, arg):
        getattr(Future, name)(self, arg)

    return callback


for _name in lifecycle.CALLBACKS:
    setattr(DelegatingFuture, _name, _delegate(_name))


class HistoryReference(Reference):
    """Reference, with its group's siblings moved through ``fire`` too, so
    their expected history is recorded like everyone else's."""

    fire = None

    def cancel_group(self, force):
        self.trace.append((self.task_id, "cancel_group", force))
        if self.group_id is not None:
            for sibling in self.siblings:
                if sibling is not self:
                    self.fire(sibling, lifecycle.GROUP_CANCEL, None)


class Side:
    """One manager and its futures, with everything observable recorded."""

    def __init__(self, policy, future_class, clock, ids, group_id, history_limit):
        self.sent = []
        self.ended = []
        self.manager = FutureManager(
            self.sent.append,
            late_result=policy,
            cancel_timeout=5.0,
            clock=clock,
            timer=False,
            history_limit=history_limit,
            future_class=future_class,
        )
        self.futures = [self.manager.track(task_id, group_id) for task_id in ids]
        for index, future in enumerate(self.futures):
            future.add_done_callback(lambda f, index=index: self.ended.append((index, f.state)))

    def observed(self):
        manager = self.manager
        return {
            "states": [f.state for f in self.futures],
            "history": [f.history for f in self.futures],
            "deadlines": [manager.deadlines.armed(f) for f in self.futures],
            "sent": list(self.sent),
            "ended": list(self.ended),
            "stats": dict(manager.stats),
            "late": list(manager.late_results),
            "discarded": [f.discarded_results for f in self.futures],
            "kept": [(f._message, f._resolved) for f in self.futures],
            "live": len(manager),
            "next_deadline": manager.next_deadline(),
        }


ERROR_EVENTS = lifecycle.EVENTS + ("advance",)
steps = st.lists(
    st.tuples(st.sampled_from(ERROR_EVENTS), st.integers(0, 2), st.booleans(), st.booleans(), st.sampled_from([1.0, 3.0, 6.0])),
    max_size=25,
)


@given(st.sampled_from(lifecycle.POLICIES), st.integers(1, 3), st.sampled_from([16, 2, 1, 0]), steps)
def test_stock_and_overriding_callbacks_agree_with_each_other_and_with_transitions(policy, size, history_limit, events):
    clock = FakeClock()
    ids = [TaskID.new() for _ in range(size)]
    group_id = TaskID.new() if size > 1 else None
    inlined = Side(policy, Future, clock, ids, group_id, history_limit)
    called = Side(policy, DelegatingFuture, clock, ids, group_id, history_limit)

    ref_trace, ref_sent, models = [], [], []
    expected_history = [[] for _ in ids]
    table = get_lifecycle(policy).table
    machine = build_machine(policy)
    for task_id in ids:
        model = HistoryReference(task_id, group_id, ref_trace, ref_sent, models)
        models.append(model)
        machine.add_model(model)

    def fire(model, event, arg):
        # The history a future should show, from the declaration alone.
        rule = table[model.state].get(event)
        if rule is not None and rule.dest is not None:
            entries = expected_history[models.index(model)]
            entries.append((event, model.state, rule.dest, clock.now))
            del entries[: max(0, len(entries) - history_limit)]
        model.trigger(event, arg)

    for model in models:
        model.fire = fire

    for event, index, force, to_group, seconds in events:
        index %= size
        if event == "advance":
            clock.now += seconds
            fired = [side.manager.expire() for side in (inlined, called)]
            assert fired[0] == fired[1]
            for model, future in zip(models, inlined.futures):
                if model.state == lifecycle.CANCEL_REQUESTED and future.state == lifecycle.CANCELLED:
                    # The model has no clock: the stock side, checked
                    # against the overriding side, says which deadlines passed.
                    fire(model, lifecycle.CONFIRM_TIMEOUT, None)
        elif event in RESULTS or event in CONFIRMS:
            target = group_id if to_group and group_id is not None else ids[index]
            kind = RESULTS.get(event, CONFIRMS.get(event))
            msg = TaskResult(target, kind, b"") if event in RESULTS else TaskCancelConfirm(target, kind)
            for side in (inlined, called):
                side.manager.on_message(msg)
            if target == ids[index]:
                receivers = [models[index]]
            else:  # a group's confirm reaches every member, its result none
                receivers = [] if event in RESULTS else models
            for receiver in [m for m in receivers if m.state not in lifecycle.TERMINAL]:
                fire(receiver, event, msg)
        elif event == lifecycle.CANCEL:
            returned = [side.futures[index].cancel(0, force=force) for side in (inlined, called)]
            assert returned[0] == returned[1]
            fire(models[index], event, force)
        else:
            arg = argument(event, ids[index], force)
            for side in (inlined, called):
                side.manager.dispatch(side.futures[index], event, arg)
            fire(models[index], event, arg)
        seen = inlined.observed()
        assert seen == called.observed()
        assert seen["states"] == [m.state for m in models]
        assert seen["sent"] == ref_sent
        assert [[tuple(step) for step in history] for history in seen["history"]] == expected_history


@pytest.mark.parametrize("policy", lifecycle.POLICIES)
def test_every_declared_rule_has_exactly_one_step(policy):
    lc = get_lifecycle(policy)
    for future_class in (Future, DelegatingFuture):
        compiled = compile_steps(lc, future_class, FutureManager(lambda m: None, lifecycle=lc, timer=False, future_class=future_class), 16)
        assert {state: set(rules) for state, rules in compiled.items()} == {
            state: set(rules) for state, rules in lc.table.items()
        }
        assert all(callable(step) for rules in compiled.values() for step in rules.values())


def test_an_override_of_one_callback_is_the_one_called():
    calls = []

    class Keeping(Future):
        def keep_result(self, message):
            calls.append(message)
            super().keep_result(message)

    manager = FutureManager(lambda m: None, late_result="deliver", timer=False, future_class=Keeping)
    future = manager.track(TaskID.new())
    future.cancel(0)
    message = TaskResult(future.task_id, TaskResultType.SUCCESS, b"\x80\x04K\x07.")
    manager.on_message(message)
    assert calls == [message] and future.result() == 7 and not manager.deadlines.armed(future)


def test_a_step_that_fails_is_named_after_its_rule_in_the_traceback():
    class Exploding(Future):
        def keep_result(self, message):
            raise RuntimeError("boom")

    manager = FutureManager(lambda m: None, timer=False, future_class=Exploding)
    future = manager.track(TaskID.new())
    with pytest.raises(RuntimeError) as caught:
        manager.dispatch(future, lifecycle.RESULT_SUCCESS, TaskResult(future.task_id, TaskResultType.SUCCESS, b""))
    names = [entry.name for entry in caught.traceback]
    assert "step" in names and "keep_result" in names
    # The lock was released and the future is unchanged.
    assert future.state == lifecycle.PENDING and manager.may_block()


# -- cancel() inside done callbacks never waits ------------------------------------------


def _manager():
    return FutureManager(lambda m: None, cancel_timeout=30)


@pytest.mark.timeout(30)
def test_cancel_in_a_callback_run_at_once_by_add_done_callback_does_not_wait():
    manager = _manager()
    finished = manager.track(TaskID.new())
    other = manager.track(TaskID.new())
    manager.on_message(TaskResult(finished.task_id, TaskResultType.SUCCESS, b"\x80\x04N."))
    returned = []
    started = time.monotonic()
    finished.add_done_callback(lambda f: returned.append(other.cancel()))
    assert time.monotonic() - started < 5 and returned == [False] and other.state == "cancel_requested"
    manager.close()


@pytest.mark.timeout(30)
def test_cancel_in_callbacks_run_by_dispatch_expire_and_a_second_callback_does_not_wait():
    clock = FakeClock()
    manager = FutureManager(lambda m: None, cancel_timeout=30, clock=clock, timer=False)
    first, second, third, fourth = (manager.track(TaskID.new()) for _ in range(4))
    returned = []
    first.add_done_callback(lambda f: None)
    first.add_done_callback(lambda f: returned.append(second.cancel()))  # a list of callbacks
    third.add_done_callback(lambda f: returned.append(fourth.cancel()))
    started = time.monotonic()
    manager.dispatch(first, lifecycle.CLOSE)
    third.cancel(0)
    assert returned == [False] and second.state == "cancel_requested"
    clock.now += 31
    # second's and third's deadlines: third's callback cancels fourth.
    assert manager.expire() == 2 and second.cancelled() and third.cancelled()
    assert time.monotonic() - started < 5
    assert returned == [False, False] and fourth.state == "cancel_requested"


@pytest.mark.timeout(30)
def test_only_the_managers_own_callbacks_count_and_only_while_they_run():
    mine, theirs = _manager(), FutureManager(lambda m: None, cancel_timeout=0.2, timer=False)
    finished = mine.track(TaskID.new())
    waiting = theirs.track(TaskID.new())
    waited = []

    def cancel_elsewhere(f):
        started = time.monotonic()
        waiting.cancel(0.1)  # another manager's future: this thread may wait
        waited.append(time.monotonic() - started)

    finished.add_done_callback(cancel_elsewhere)
    mine.on_message(TaskResult(finished.task_id, TaskResultType.SUCCESS, b"\x80\x04N."))
    assert waited and waited[0] >= 0.1
    # The callbacks are over: a cancel on this thread waits again.
    later = mine.submit(Task(TaskID.new(), b""))
    started = time.monotonic()
    assert later.cancel(0.1) is False
    assert time.monotonic() - started >= 0.1
    mine.close()


# -- Effects a step cannot hand back go through the queue --------------------------------


def _custom_lifecycle(cancel_sends=True):
    """The stock declaration with two rules no stock step has: a cancel that
    ends the future at once (sending its request, or with ``cancel_sends``
    false nothing at all), and a refused gentle cancel retried on the spot
    (a scheduler's message that sends)."""
    declaration = lifecycle.declaration()
    for rule in declaration["transitions"]:
        if rule["trigger"] == lifecycle.CANCEL and rule["source"] in (lifecycle.PENDING, [lifecycle.PENDING]):
            rule["dest"] = lifecycle.CANCELLED
            if not cancel_sends:
                rule["after"] = []
        if rule["trigger"] == lifecycle.CONFIRM_CANCEL_FAILED:
            rule["dest"] = lifecycle.CANCEL_REQUESTED
            rule["after"] = [lifecycle.SEND_CANCEL]
    return declare(declaration, messages=lifecycle.stock_messages, name="custom")


@pytest.mark.parametrize("future_class", [Future, DelegatingFuture])
def test_a_cancel_that_ends_the_future_sends_then_runs_its_callbacks(future_class):
    custom = _custom_lifecycle()
    log = []
    manager = FutureManager(lambda m: log.append(("sent", m)), lifecycle=custom, timer=False, future_class=future_class)
    future = manager.track(TaskID.new())
    future.add_done_callback(lambda f: log.append(("ended", f.state)))
    assert future.cancel(0) is True
    assert [entry[0] for entry in log] == ["sent", "ended"] and log[0][1].task_id == future.task_id
    assert log[1] == ("ended", "cancelled") and len(manager) == 0


@pytest.mark.parametrize("future_class", [Future, DelegatingFuture])
def test_a_message_whose_rule_sends_has_its_message_sent(future_class):
    custom = _custom_lifecycle()
    sent = []
    clock = FakeClock()
    manager = FutureManager(sent.append, lifecycle=custom, clock=clock, timer=False, future_class=future_class)
    future = manager.track(TaskID.new())
    assert future.cancel(0) is True  # the custom cancel ends it at once
    other = manager.track(TaskID.new())
    manager.dispatch(other, lifecycle.CLEAR, True)
    manager.on_message(TaskCancelConfirm(other.task_id, CancelConfirmType.CANCEL_FAILED))
    assert [type(m).__name__ for m in sent] == ["TaskCancel"] * 3 and sent[-1].task_id == other.task_id
    assert other.state == lifecycle.CANCEL_REQUESTED and manager.next_deadline() == clock.now + manager.cancel_timeout


@pytest.mark.parametrize("future_class", [Future, DelegatingFuture])
def test_a_cancel_that_ends_the_future_and_sends_nothing_runs_its_callbacks_once(future_class):
    # Nothing else is queued here, so a cancel step that handed its ended
    # future back (instead of queueing it) would have it sent as a message.
    sent, ended = [], []
    manager = FutureManager(sent.append, lifecycle=_custom_lifecycle(cancel_sends=False), timer=False, future_class=future_class)
    future = manager.track(TaskID.new())
    future.add_done_callback(ended.append)
    assert future.cancel(0) is True
    assert sent == [] and ended == [future] and future.cancelled()


# -- Effects released by one caller are never released by another ---------------------


class _HookedLock:
    """An RLock that runs ``hook`` once, right after a release: another
    thread's turn, at the worst moment, without threads."""

    def __init__(self):
        self._lock = threading.RLock()
        self.hook = None

    def acquire(self, *args):
        return self._lock.acquire(*args)

    def release(self):
        self._lock.release()
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()

    __enter__ = acquire

    def __exit__(self, *exc):
        self.release()

    def _is_owned(self):
        return self._lock._is_owned()


@pytest.mark.parametrize("caller", ["on_message", "cancel"])
def test_effects_another_caller_queues_after_the_lock_is_released_go_out_once(caller):
    sent = []
    manager = FutureManager(sent.append, timer=False)
    manager.lock = lock = _HookedLock()
    first, second = manager.track(TaskID.new()), manager.track(TaskID.new())
    first.cancel(0)
    sent.clear()
    # Right after the first caller releases the lock (with nothing queued
    # of its own), another caller's clear() queues and sends a TaskCancel.
    lock.hook = manager.clear
    if caller == "on_message":
        manager.on_message(TaskCancelConfirm(first.task_id, CancelConfirmType.CANCELED))
    else:
        first.cancel(0)  # in flight already: nothing of its own to send
    assert [m.task_id for m in sent] == [second.task_id]


# -- The fast path against the general step ------------------------------------------


def _lifecycles_with_future_classes():
    import pulse_lifecycle

    cases = [(get_lifecycle(policy, started=started), Future) for policy in lifecycle.POLICIES for started in (False, True)]
    cases.append((pulse_lifecycle.LIFECYCLE, pulse_lifecycle.PulseFuture))
    try:
        from taskfate.client import scaler
    except ImportError:  # the scaler extra is not installed
        pass
    else:
        cases.extend((declared, scaler.Future) for declared in scaler.SCALER_LIFECYCLES.values())
    return cases


@dataclasses.dataclass(frozen=True)
class _Message:
    """A message of no particular protocol: the test's classifier names its
    event, so every rule can be reached through ``on_message``."""

    task_id: TaskID
    number: int


def _path_to(declared, state):
    """Events leading from the initial state to ``state`` (breadth first)."""
    paths = {declared.initial: []}
    frontier = [declared.initial]
    while frontier:
        source = frontier.pop(0)
        for event, rule in declared.table[source].items():
            if rule.dest is not None and rule.dest not in paths:
                paths[rule.dest] = paths[source] + [event]
                frontier.append(rule.dest)
    return paths[state]


@pytest.mark.parametrize("history_limit", [16, 1, 0])
@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("waited_on", [False, True])
def test_the_fast_path_does_what_the_general_step_does_for_every_plain_ending(history_limit, grouped, waited_on):
    """``FutureManager.on_message`` runs the rules ``plain_endings`` lists in
    place; the same manager with that table emptied runs their steps. For
    every such rule of every lifecycle in the repository, reached through a
    real path of events, with and without a group, a waiter and history,
    everything observable after the message must be the same."""
    from taskfate.client.runtime import plain_endings

    checked = 0
    for declared, future_class in _lifecycles_with_future_classes():
        for state, endings in plain_endings(declared, future_class).items():
            for event in endings:
                observed = []
                task_id, sibling_id, group = TaskID.new(), TaskID.new(), TaskID.new()
                for fast in (True, False):
                    clock = FakeClock()
                    sent, ended = [], []
                    manager = FutureManager(
                        sent.append, lifecycle=declared, future_class=future_class, clock=clock, timer=False, history_limit=history_limit
                    )
                    if not fast:
                        manager._plain_endings = {name: {} for name in manager._plain_endings}
                    group_id = group if grouped else None
                    future = manager.track(task_id, group_id)
                    sibling = manager.track(sibling_id, group_id) if grouped else None
                    future.add_done_callback(lambda f: ended.append(("first", f.state)))
                    future.add_done_callback(lambda f: ended.append(("second", f.state)))
                    for number, step in enumerate(_path_to(declared, state)):
                        clock.now += 1.0
                        manager.dispatch(future, step, True if step in (lifecycle.CANCEL, lifecycle.CLEAR) else _Message(future.task_id, number))
                    woken = []
                    if waited_on:

                        class Waiter:
                            def add_result(self, f):
                                woken.append("result")

                            def add_exception(self, f):
                                woken.append("exception")

                            def add_cancelled(self, f):
                                woken.append("cancelled")

                        future._waiters.append(Waiter())
                    clock.now += 1.0
                    message = _Message(future.task_id, 99)
                    manager._classify = lambda m, event=event: event
                    manager.on_message(message)
                    observed.append(
                        {
                            "state": future.state,
                            "outcome": future.outcome,
                            "history": future.history,
                            "kept": (future._message, future._resolved),
                            "armed": manager.deadlines.armed(future),
                            "routed": manager.get(future.task_id) is future,
                            "sibling routed": sibling is not None and manager.get(sibling.task_id) is sibling,
                            "group members": {k: sorted(v) for k, v in manager._groups.items()},
                            "ended": list(ended),
                            "woken": woken,
                            "sent": list(sent),
                            "stats": dict(manager.stats),
                        }
                    )
                assert observed[0] == observed[1], (declared.name, state, event)
                assert observed[0]["outcome"] == declared.outcomes[observed[0]["state"]]
                checked += 1
    # Results and confirms end futures in every lifecycle here: the fast path
    # must have had real rules to compare (stock: 3 results x live states, ...).
    assert checked >= 30
