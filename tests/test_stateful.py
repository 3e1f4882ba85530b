"""Arbitrary orderings of every message and user call, checked against the lifecycle's promises.

The rules read like the protocol: the scheduler sends results and confirms
(for tasks and for groups, duplicated, late, unsolicited), users cancel (from
several threads at once), the confirm clock moves, the client clears, closes
or loses its connection. The invariants are the promises docs/lifecycle.md
makes.
"""

from __future__ import annotations

import concurrent.futures
import pickle
import threading
import time

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule

from helpers import Harness
from taskfate.fsm import lifecycle
from taskfate.protocol import CancelConfirmType, Message, TaskCancel, TaskCancelConfirm, TaskID, TaskResult, TaskResultType

TERMINAL = set(lifecycle.TERMINAL)
CANCEL_WAIT = 0.02


class LifecycleMachine(RuleBasedStateMachine):
    futures = Bundle("futures")

    #: What the manager executes: policy names, or compiled lifecycles (the
    #: tests of the explorer run this machine on deliberately broken ones).
    lifecycles = lifecycle.POLICIES

    @initialize(data=st.data())
    def start(self, data):
        policy = data.draw(st.sampled_from(self.lifecycles), label="lifecycle")
        self.h = Harness(policy, cancel_timeout=5.0, history_limit=10_000)
        self.group = TaskID.new()
        self.all = []
        self.first_terminal = {}
        self.callback_calls = {}
        self.callbacks_added = {}
        self.results_sent: list[TaskResult] = []
        self.last: Message | None = None

    @precondition(lambda self: not self.h.manager.closed and len(self.all) < 6)
    @rule(target=futures, grouped=st.booleans())
    def submit(self, grouped):
        future = self.h.submit(self.group if grouped else None)
        self.all.append(future)
        self.callback_calls[future] = 0
        self.callbacks_added[future] = 0
        return future

    @precondition(lambda self: self.h.manager.closed)
    @rule()
    def submit_after_close_is_refused(self):
        with pytest.raises(RuntimeError, match="closed"):
            self.h.submit()

    def _deliver(self, message):
        self.last = message
        if isinstance(message, TaskResult):
            self.results_sent.append(message)
        self.h.manager.on_message(message)

    @rule(future=futures, kind=st.sampled_from(TaskResultType))
    def scheduler_sends_result(self, future, kind):
        payload = pickle.dumps(ValueError("x") if kind == TaskResultType.FAILED else 1)
        self._deliver(TaskResult(future.task_id, kind, payload))

    @rule(future=futures, kind=st.sampled_from(CancelConfirmType), to_group=st.booleans())
    def scheduler_sends_confirm(self, future, kind, to_group):
        target = self.group if to_group and future.group_id is not None else future.task_id
        self._deliver(TaskCancelConfirm(target, kind))

    @precondition(lambda self: self.last is not None)
    @rule()
    def network_duplicates_the_last_message(self):
        self._deliver(self.last)

    @rule(future=futures, event=st.sampled_from(lifecycle.EVENTS))
    def any_event_reaches_the_future_directly(self, future, event):
        self._dispatch_directly(future, event)

    @precondition(lambda self: any(f.done() for f in self.all))
    @rule(data=st.data(), event=st.sampled_from(lifecycle.EVENTS))
    def any_event_reaches_a_finished_future(self, data, event):
        finished = [f for f in self.all if f.done()]
        self._dispatch_directly(data.draw(st.sampled_from(finished)), event)

    def _dispatch_directly(self, future, event):
        # The manager stops routing to finished futures; an embedding library
        # may still hand them events, and the declaration must hold then too.
        argument = None
        if event in lifecycle.RESULT_EVENTS:
            kind = TaskResultType(lifecycle.RESULT_EVENTS.index(event))
            argument = TaskResult(future.task_id, kind, pickle.dumps(ValueError("y") if kind == TaskResultType.FAILED else 2))
            self.results_sent.append(argument)
        elif event in (lifecycle.CANCEL, lifecycle.CLEAR):
            argument = True
        elif event == lifecycle.CONNECTION_LOST:
            argument = ConnectionError("lost")
        self.h.manager.dispatch(future, event, argument)

    @rule(future=futures, force=st.booleans())
    def user_cancels_without_waiting(self, future, force):
        returned = future.cancel(timeout=0, force=force)
        assert returned == (future.state == lifecycle.CANCELLED)

    @rule(future=futures, callers=st.integers(2, 4))
    def several_threads_cancel(self, future, callers):
        returned, spent = [], []

        def call():
            started = time.monotonic()
            returned.append(future.cancel(timeout=CANCEL_WAIT))
            spent.append(time.monotonic() - started)

        threads = [threading.Thread(target=call) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
            assert not thread.is_alive(), "cancel() blocked past its timeout"
        assert max(spent) < CANCEL_WAIT + 1.0
        assert all(value == (future.state == lifecycle.CANCELLED) for value in returned)

    @rule(future=futures)
    def user_adds_callback(self, future):
        self.callbacks_added[future] += 1

        def count(f):
            self.callback_calls[f] += 1

        future.add_done_callback(count)

    @rule(seconds=st.sampled_from([0.5, 2.0, 5.0, 6.0]))
    def time_passes(self, seconds):
        self.h.advance(seconds)

    @rule()
    def client_clears(self):
        waiting = self.h.manager.clear()
        assert all(f.state == lifecycle.CANCEL_REQUESTED for f in waiting)

    @precondition(lambda self: len(self.all) >= 2)
    @rule()
    def client_closes(self):
        self.h.manager.close()
        assert all(f.done() for f in self.all)

    @rule()
    def connection_is_lost(self):
        live = self.h.manager.live_futures()
        self.h.manager.connection_lost()
        assert all(f.state == lifecycle.FAILED for f in live)

    # -- The promises ---------------------------------------------------------

    @invariant()
    def terminal_states_are_entered_once_and_never_left(self):
        for future in getattr(self, "all", []):
            entries = [step for step in future.history if step.dest in TERMINAL]
            assert len(entries) <= 1
            if future in self.first_terminal:
                assert future.state == self.first_terminal[future]
            elif future.state in TERMINAL:
                self.first_terminal[future] = future.state

    @invariant()
    def history_is_a_path_ending_in_the_state(self):
        for future in getattr(self, "all", []):
            steps = future.history
            previous = lifecycle.PENDING
            for step in steps:
                assert step.source == previous
                previous = step.dest
            assert previous == future.state

    @invariant()
    def callbacks_fire_exactly_once(self):
        for future in getattr(self, "all", []):
            expected = self.callbacks_added[future] if future.done() else 0
            assert self.callback_calls[future] == expected

    @invariant()
    def queries_agree_with_the_state(self):
        for future in getattr(self, "all", []):
            state = future.state
            assert future.done() == (state in TERMINAL)
            assert future.cancelled() == (state == lifecycle.CANCELLED)
            assert not future.running()
            if state == lifecycle.DONE:
                assert future.exception(timeout=0) is None
                assert future.result(timeout=0) in (1, 2)
            elif state == lifecycle.FAILED:
                assert isinstance(future.exception(timeout=0), BaseException)
            elif state == lifecycle.CANCELLED:
                with pytest.raises(concurrent.futures.CancelledError):
                    future.result(timeout=0)
            else:
                with pytest.raises(concurrent.futures.TimeoutError):
                    future.result(timeout=0)
        if hasattr(self, "h"):
            assert len(self.h.manager) == sum(1 for f in self.all if not f.done())

    @invariant()
    def cancel_requested_ends_within_the_timeout(self):
        if not hasattr(self, "h"):
            return
        for future in self.all:
            if future.state == lifecycle.CANCEL_REQUESTED:
                entered = future.history[-1].time
                assert self.h.clock.now < entered + self.h.manager.cancel_timeout

    @invariant()
    def every_result_is_delivered_or_recorded(self):
        if not hasattr(self, "h"):
            return
        by_id = {f.task_id: f for f in self.all}
        late = list(self.h.manager.late_results)
        for message in self.results_sent:
            future = by_id[message.task_id]
            assert future._message is message or message in future.discarded_results or message in late

    @invariant()
    def one_cancel_request_per_cancel_transition(self):
        if not hasattr(self, "h"):
            return
        sent = [m.task_id for m in self.h.sent if isinstance(m, TaskCancel)]
        for future in self.all:
            target = future.group_id or future.task_id
            asks = sum(1 for f in self.all if (f.group_id or f.task_id) == target for s in f.history if s.event in (lifecycle.CANCEL, lifecycle.CLEAR))
            assert sent.count(target) == asks


TestLifecycle = LifecycleMachine.TestCase
TestLifecycle.pytestmark = pytest.mark.timeout(300)
