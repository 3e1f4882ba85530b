"""The fuzzing kit: its strategies, its reference, and the documented example.

The example in docs/fuzzing.md is extracted and run here, both the correct
client (which must pass) and the one with a routing bug (which must fail),
so the page cannot drift from what the kit does.
"""

from __future__ import annotations

import pickle
import re
import threading
import time
import traceback
import unittest
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import InvalidDefinition
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from taskfate.fsm import lifecycle
from taskfate.client import Future, FutureManager
from taskfate.fsm.declare import CANCEL, Lifecycle, declare
from taskfate.fsm.fuzz import AFTER_A_HEARTBEAT, AFTER_A_RESULT, AFTER_AN_ANSWER, PROMISES, BrokenPromise, ClientMachine, ReferenceClient, Sent, findings, messages, orderings, task_ids
from taskfate.protocol import CancelConfirmType, Heartbeat, Task, TaskCancel, TaskCancelConfirm, TaskID, TaskResult, TaskResultType, decode, encode

import pulse_lifecycle as pulse  # docs/examples, on the test path

DOC = Path(__file__).resolve().parents[1] / "docs" / "fuzzing.md"


def _example() -> dict:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 3, "docs/fuzzing.md lost its example"
    namespace: dict = {"__name__": "fuzzing_example"}
    exec(compile("\n".join(blocks), str(DOC), "exec"), namespace)
    return namespace


@given(messages())
def test_every_generated_message_survives_the_wire(message):
    assert decode(encode(message)) == message


@given(st.lists(task_ids(), min_size=1, max_size=4, unique=True).flatmap(lambda ids: st.tuples(st.just(ids), orderings(ids))))
def test_orderings_speak_only_of_the_given_tasks_and_settle_one_outcome_each(drawn):
    ids, ordering = drawn
    assert {m.task_id for m in ordering} <= set(ids)
    for task_id in ids:
        kinds = {m.result_type for m in ordering if isinstance(m, TaskResult) and m.task_id == task_id}
        assert len(kinds) <= 1


@given(orderings([TaskID(b"a" * 16), TaskID(b"b" * 16)], group_id=TaskID(b"g" * 16)))
def test_every_ordering_ends_the_reference_futures_it_answers(ordering):
    reference = ReferenceClient("cancel")
    ids, group = [TaskID(b"a" * 16), TaskID(b"b" * 16)], TaskID(b"g" * 16)
    for task_id in ids:
        reference.submit(Task(task_id, b"", group))
    for message in ordering:
        reference.on_message(message)
    for task_id in ids:
        # Without a cancel of ours, only a result or the scheduler's own
        # "canceled" (to the task or its group) ends a future.
        answered = any(
            isinstance(m, TaskResult) and m.task_id == task_id
            or isinstance(m, TaskCancelConfirm) and m.task_id in (task_id, group) and m.confirm_type == CancelConfirmType.CANCELED
            for m in ordering
        )
        assert (reference.state(task_id) in lifecycle.TERMINAL) == answered


def test_the_reference_routes_a_group_confirm_and_sends_one_cancel_per_group():
    reference = ReferenceClient("cancel", cancel_timeout=5.0)
    group = TaskID(b"g" * 16)
    first, second, alone = (Task(TaskID(bytes([n]) * 16), b"", group if n < 3 else None) for n in (1, 2, 3))
    for task in (first, second, alone):
        reference.submit(task)
    assert reference.cancel(first.task_id) is False
    assert reference.state(second.task_id) == lifecycle.CANCEL_REQUESTED
    assert [s for s in reference.sent if s.kind == "cancel"] == [Sent("cancel", group, force=True)]
    reference.on_message(TaskCancelConfirm(group, CancelConfirmType.CANCELED))
    assert reference.state(first.task_id) == reference.state(second.task_id) == lifecycle.CANCELLED
    assert reference.state(alone.task_id) == lifecycle.PENDING
    reference.cancel(alone.task_id)
    reference.advance(4.9)
    assert reference.state(alone.task_id) == lifecycle.CANCEL_REQUESTED
    reference.advance(0.1)
    assert reference.state(alone.task_id) == lifecycle.CANCELLED
    late = TaskResult(alone.task_id, TaskResultType.SUCCESS, b"")
    reference.on_message(late)
    assert reference.late_results == [late]


def _generate_only() -> settings:
    # Finding the bug is the point, not shrinking it; deterministic, capped.
    return settings(
        max_examples=1000,
        phases=[Phase.generate],
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.mark.timeout(120)
def test_the_documented_example_passes():
    example = _example()
    run_state_machine_as_test(example["MiniClientMachine"])
    assert issubclass(example["TestMiniClient"], unittest.TestCase)


@pytest.mark.timeout(120)
def test_the_documented_routing_bug_is_found():
    # The page's own search: one finding, shrunk as the page shows it.
    found = _example()["chase_the_routing_bug"]()
    assert [type(f).__name__ for f in found] == ["BrokenPromise[done after an answer]"], found
    shrunk = [note for note in found[0].__notes__ if note.startswith(("tasks_", "state.s"))]
    assert shrunk == [
        "tasks_0 = state.submit_a_task(grouped=True)",
        "state.scheduler_sends_a_confirm(event='confirm_canceled', task_id=tasks_0, to_group=True)",
    ], shrunk
    # The output the page shows: those steps, then the message (task id elided).
    shown = re.search(r"It returns one finding.*?```text\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert shown is not None
    steps, message = shown.group(1).splitlines()[:2], " ".join(shown.group(1).splitlines()[2:])
    assert steps == shrunk
    assert re.sub(r"task [0-9a-f]{32}", "task ...", str(found[0])) == message
    # Unnarrowed, the machine finds it too.
    assert any(isinstance(f, BrokenPromise) for f in findings(_example()["FilteringMiniClientMachine"], _search(1000)))


class _ManagerMachine(ClientMachine):
    """The kit pointed at a bare FutureManager, every optional hook enabled."""

    future_class: type = Future

    def make_client(self, send, clock):
        chosen = {"lifecycle": self.lifecycle} if isinstance(self.lifecycle, Lifecycle) else {"late_result": self.lifecycle}
        self.manager = FutureManager(send, **chosen, future_class=self.future_class, clock=clock, timer=False, cancel_timeout=self.cancel_timeout)

    def submit(self, task):
        return self.manager.submit(task)

    def deliver(self, message):
        self.manager.on_message(message)

    def clear(self):
        self.manager.clear()

    def close(self):
        self.manager.close()

    def connection_lost(self):
        self.manager.connection_lost()

    def expire(self):
        self.manager.expire()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("policy", [*lifecycle.POLICIES, *lifecycle.STARTED_LIFECYCLES.values()], ids=lambda p: getattr(p, "name", p))
def test_the_manager_itself_agrees_with_the_reference(policy):
    """On every stock lifecycle, with and without the running state (whose
    ``TaskStarted`` notices the machine sends, and whose ``running()`` it holds)."""
    OnPolicy = type("OnPolicy", (_ManagerMachine,), {"lifecycle": policy})
    run_state_machine_as_test(OnPolicy, settings=settings(max_examples=100, deadline=None))


@pytest.mark.timeout(120)
def test_a_client_that_swallows_its_cancel_requests_is_caught():
    class Swallowing(_ManagerMachine):
        def make_client(self, send, clock):
            super().make_client(lambda m: None if isinstance(m, TaskCancel) else send(m), clock)

    with pytest.raises(AssertionError) as failure:
        run_state_machine_as_test(Swallowing, settings=_generate_only())
    checks = {frame.name for frame in traceback.extract_tb(failure.value.__traceback__)}
    assert "the_client_sends_what_the_lifecycle_sends" in checks, repr(failure.value)


def _search(examples: int = 100) -> settings:
    return settings(max_examples=examples, stateful_step_count=8, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


def test_a_narrowed_machine_loses_the_rules_it_leaves_out():
    narrowed = _ManagerMachine.narrowed(rules={"submit_a_task", "user_cancels"}, promises={"sends"})
    assert narrowed.time_passes is None and narrowed.client_clears is None
    assert narrowed.submit_a_task is not None and narrowed.only_promises == {"sends"}
    assert _ManagerMachine.time_passes is not None  # the machine it came from is untouched
    with pytest.raises(ValueError, match="unknown rules"):
        _ManagerMachine.narrowed(rules={"submit_a_tsak"})

    class Bare(ClientMachine):  # no clear, no blocking, no timers
        pass

    class WithClear(Bare):
        def clear(self):
            pass

    assert Bare.client_clears is None and Bare.time_passes is None and Bare.a_thread_cancels_and_waits is None
    assert WithClear.client_clears is not None  # the hook brings its rule back
    with pytest.raises(ValueError, match="unknown promises"):
        _ManagerMachine.narrowed(promises={"sent"})


class _TwoBugs(_ManagerMachine):
    """Swallows its cancel requests and drops every result: two bugs, each
    reached in two steps, so any Hypothesis finds both before it stops
    looking (it searches on only for as long again as the first took)."""

    def make_client(self, send, clock):
        super().make_client(lambda m: None if isinstance(m, TaskCancel) else send(m), clock)

    def deliver(self, message):
        if not isinstance(message, TaskResult):
            super().deliver(message)


@pytest.mark.timeout(120)
def test_distinct_bugs_are_distinct_findings_each_shrunk():
    rules = {"submit_a_task", "user_cancels", "scheduler_sends_a_result"}
    found = findings(_TwoBugs.narrowed(rules=rules, promises={"sends", "done"}), _search())
    assert sorted(type(f).__name__ for f in found) == sorted(
        k.__name__ for k in (_TwoBugs.finding("sends", CANCEL), _TwoBugs.finding("done", lifecycle.RESULT_FAILED))
    )
    assert _TwoBugs.finding("done", lifecycle.RESULT_FAILED) is _TwoBugs.finding("done", AFTER_A_RESULT)
    assert findings(_ManagerMachine.narrowed(rules=rules), _search()) == []


class _NeverWakes(_ManagerMachine):
    """Its blocking cancel sends the request, then waits on something the
    answer never sets: the client hangs however the scheduler answers."""

    blocking = True
    hang_seconds = 0.1
    wait_timeout = 3.0

    def cancel_blocking(self, future, timeout):
        if future.done():  # an ended future's cancel returns at once: only the answer's wake-up is missing
            return future.cancelled()
        future.cancel(0)
        threading.Event().wait(timeout)
        return future.cancelled()


@pytest.mark.timeout(120)
def test_a_hang_is_a_finding_after_what_should_have_released_it():
    rules = {"submit_a_task", "a_thread_cancels_and_waits", "scheduler_sends_a_confirm"}
    found = findings(_NeverWakes.narrowed(rules=rules, promises={"cancel-wait-ends"}), _search(50))
    assert [type(f) for f in found] == [_NeverWakes.finding("cancel-wait-ends", AFTER_AN_ANSWER)], found
    assert "state.a_thread_cancels_and_waits" in "\n".join(found[0].__notes__)


class _PulseMachine(_ManagerMachine):
    """The kit on pulse, the docs' own-lifecycle library: its event names,
    a running state, and a message of its own (``Progress``), built by the
    one hook it needs; the rest of its messages are taskfate's and the
    defaults find them through pulse's classifier."""

    lifecycle = pulse.LIFECYCLE
    future_class = pulse.PulseFuture
    blocking = True
    hang_seconds = 0.5

    def make_notice(self, task_id, event):
        return pulse.Progress(task_id, 50) if event == "progress" else super().make_notice(task_id, event)


@pytest.mark.timeout(120)
def test_the_kit_holds_a_libraries_own_lifecycle():
    machine = _PulseMachine()
    tid = TaskID(b"\x07" * 16)
    assert machine.make_result(tid, "succeeded", 1).result_type == TaskResultType.SUCCESS
    assert machine.make_confirm(tid, "cancel_refused").confirm_type == CancelConfirmType.CANCEL_FAILED
    with pytest.raises(NotImplementedError, match="make_notice"):
        ClientMachine.make_notice(machine, tid, "progress")  # pulse's own message: only its hook builds it
    machine.teardown()
    run_state_machine_as_test(_PulseMachine, settings=settings(max_examples=100, stateful_step_count=20, deadline=None))


class _StandingStill(pulse.PulseFuture):
    """A future that never says it is running."""

    __slots__ = ()

    def running(self) -> bool:
        return False


@pytest.mark.timeout(120)
def test_a_future_that_hides_its_running_state_is_a_finding():
    machine = _PulseMachine.narrowed(rules={"submit_a_task", "scheduler_sends_a_notice"}, promises={"running"})
    machine.future_class = _StandingStill
    found = findings(machine, _search(50))
    assert [type(f) for f in found] == [_PulseMachine.finding("running", "started")], found
    assert _PulseMachine.finding("running", "started") is _PulseMachine.finding("running", "progress")  # both are "a notice"


# -- Each promise, broken by a client with one bug ------------------------------------


class _WrongValue(_ManagerMachine):
    """Hands its futures another value than the scheduler sent."""

    def deliver(self, message):
        if isinstance(message, TaskResult) and message.result_type == TaskResultType.SUCCESS:
            message = TaskResult(message.task_id, message.result_type, pickle.dumps("another value"))
        super().deliver(message)


class _WrongError(_ManagerMachine):
    """Hands its futures another error than the scheduler sent."""

    def deliver(self, message):
        if isinstance(message, TaskResult) and message.result_type == TaskResultType.FAILED:
            message = TaskResult(message.task_id, message.result_type, pickle.dumps(ValueError("another error")))
        super().deliver(message)


class _CallsTwice(Future):
    __slots__ = ()

    def add_done_callback(self, fn):
        super().add_done_callback(fn)
        super().add_done_callback(fn)


class _DoubleCallbacks(_ManagerMachine):
    future_class = _CallsTwice


class _SlowClose(_ManagerMachine):
    """Its close() ends every future, then waits on something nobody sets."""

    blocking = True
    hang_seconds = 0.1

    def close(self):
        self.manager.close()
        threading.Event().wait(2.0)


class _SendsTwice(_ManagerMachine):
    def make_client(self, send, clock):
        super().make_client(lambda m: (send(m), send(m)) if isinstance(m, Task) else send(m), clock)


class _HeartbeatEnds(_ManagerMachine):
    """Takes a heartbeat for the scheduler cancelling every task."""

    def deliver(self, message):
        if isinstance(message, Heartbeat):
            for future in self.manager.live_futures():
                super().deliver(TaskCancelConfirm(future.task_id, CancelConfirmType.CANCELED))
            return
        super().deliver(message)


class _HeartbeatCancels(_ManagerMachine):
    """Sends a cancel request for every live task on a heartbeat."""

    def deliver(self, message):
        if isinstance(message, Heartbeat):
            for future in self.manager.live_futures():
                self.outbox.append(TaskCancel(future.task_id))
        super().deliver(message)


class _NotFoundCancels(_ManagerMachine):
    """Takes any "not found" for "cancelled", asked for or not."""

    def deliver(self, message):
        if isinstance(message, TaskCancelConfirm) and message.confirm_type == CancelConfirmType.CANCEL_NOT_FOUND:
            message = TaskCancelConfirm(message.task_id, CancelConfirmType.CANCELED)
        super().deliver(message)


_RESULTS_RULES = {"submit_a_task", "scheduler_sends_a_result"}
_HEARTBEAT_RULES = {"submit_a_task", "a_heartbeat_arrives"}


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "machine, rules, promise, after, ignored",
    [
        (_WrongValue, _RESULTS_RULES, "result", AFTER_A_RESULT, False),
        (_WrongError, _RESULTS_RULES, "exception", AFTER_A_RESULT, False),
        (_DoubleCallbacks, _RESULTS_RULES, "callbacks-once", AFTER_A_RESULT, False),
        (_SlowClose, {"submit_a_task", "client_closes"}, "close-wait-ends", lifecycle.CLOSE, False),
        (_SendsTwice, {"submit_a_task", "user_cancels"}, "one-task-per-submit", "submit", False),
        (_HeartbeatEnds, _HEARTBEAT_RULES, "done", AFTER_A_HEARTBEAT, True),
        (_NotFoundCancels, {"submit_a_task", "scheduler_sends_a_confirm"}, "done", AFTER_AN_ANSWER, True),
        (_HeartbeatCancels, _HEARTBEAT_RULES, "sends", f"{AFTER_A_HEARTBEAT}, unasked", False),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_each_promise_catches_the_client_that_breaks_it(machine, rules, promise, after, ignored):
    found = findings(machine.narrowed(rules=rules, promises={promise}), _search(50))
    assert [type(f) for f in found] == [machine.finding(promise, after, ignored=ignored)], found
    clean = type("Clean", (_ManagerMachine,), {"blocking": machine.blocking, "hang_seconds": machine.hang_seconds})
    assert findings(clean.narrowed(rules=rules, promises={promise}), _search(50)) == []


def test_a_step_the_lifecycle_ignores_is_a_finding_of_its_own():
    answer, ignored_answer = _ManagerMachine.finding("done", lifecycle.CONFIRM_CANCELED), _ManagerMachine.finding("done", AFTER_AN_ANSWER, ignored=True)
    assert answer is not ignored_answer and ignored_answer.event == "an answer the lifecycle ignores"


def test_a_search_that_cannot_run_raises_and_a_misspelt_event_is_refused():
    with pytest.raises(InvalidDefinition):
        findings(_ManagerMachine.narrowed(rules=set()), _search(5))  # no rule left: no search, and no finding
    with pytest.raises(ValueError, match="unknown events"):
        _ManagerMachine.narrowed(events={"result_sucess"})


def test_what_a_lifecycle_of_its_own_changes_in_the_machine():
    assert _PulseMachine.a_heartbeat_arrives is None  # pulse's classifier reads no taskfate Heartbeat
    assert _ManagerMachine.a_heartbeat_arrives is not None
    # "failed" is fired by a failure too, so its errors are checked: only the stock event is valueless.
    assert _PulseMachine()._valueless == {lifecycle.RESULT_WORKER_DIED}
    assert _time_steps(_ManagerMachine) == [6.0, 4.0, 1.0]  # cancel_timeout 5: 1.2, 0.8 and 0.2 of it
    assert _time_steps(type("Patient", (_ManagerMachine,), {"cancel_timeout": 30.0})) == [36.0, 24.0, 6.0]


def _time_steps(machine) -> list:
    """The seconds ``machine``'s time_passes rule draws from."""
    rule = getattr(machine.time_passes, "hypothesis_stateful_rule")
    return list(rule.arguments["seconds"].elements)


class _Gated(_ManagerMachine):
    """Its blocking cancel waits on a gate that only a lost connection opens."""

    blocking = True
    hang_seconds = 0.1

    def make_client(self, send, clock):
        super().make_client(send, clock)
        self.gate = threading.Event()

    def cancel_blocking(self, future, timeout):
        future.cancel(0)
        self.gate.wait(timeout)
        return future.cancelled()

    def connection_lost(self):
        self.gate.set()
        super().connection_lost()


@pytest.mark.timeout(60)
def test_a_hang_no_promise_asks_about_is_not_judged_and_teardown_releases_it():
    machine = _Gated.narrowed(promises={"cancel-returns"})()
    try:
        task_id = machine.submit_a_task(grouped=False)
        machine.promises_hold()
        machine.a_thread_cancels_and_waits(task_id=task_id)
        machine.promises_hold()
        machine.scheduler_sends_a_confirm(task_id=task_id, event=lifecycle.CONFIRM_CANCELED, to_group=False)
        machine.promises_hold()  # released, still waiting: a hang, but cancel-wait-ends is not checked, and it returned nothing
        (left,) = machine._abandoned
        assert left.thread.is_alive()
    finally:
        machine.teardown()
    assert not left.thread.is_alive()  # the lost connection opened the gate


def test_the_docs_name_every_rule_and_promise():
    text = DOC.read_text()
    full = type("Full", (_ManagerMachine,), {"blocking": True, "submit_graph": lambda self, graph, members: None})
    names = {*PROMISES, *(name for name in dir(full) if getattr(getattr(full, name, None), "hypothesis_stateful_rule", None) is not None)}
    assert "submit_a_graph" in names and "promises_hold" not in names
    assert sorted(name for name in names if f"`{name}`" not in text) == []


def _worker_lost(message):
    """The stock classifier, but a dead worker fires an event of its own."""
    if isinstance(message, TaskResult) and message.result_type == TaskResultType.WORKER_DIED:
        return "worker_lost"
    return lifecycle.stock_messages(message)


def _declaration_with_worker_lost() -> dict:
    declared = lifecycle.declaration("cancel")
    for transition in declared["transitions"]:
        if transition["trigger"] == lifecycle.RESULT_WORKER_DIED:
            transition["trigger"] = "worker_lost"
    return declared


@pytest.mark.timeout(120)
def test_a_dead_worker_of_its_own_name_carries_no_value_to_check():
    # The machine builds "worker_lost" as a taskfate WORKER_DIED result, whose
    # error is the client's own ("worker lost"), not a value the machine sent.
    Lost = type("Lost", (_ManagerMachine,), {"lifecycle": declare(_declaration_with_worker_lost(), messages=_worker_lost, name="lost")})
    assert Lost()._valueless == {lifecycle.RESULT_WORKER_DIED, "worker_lost"}
    assert findings(Lost.narrowed(rules=_RESULTS_RULES, promises={"exception"}), _search(50)) == []
    Checked = type("Checked", (Lost,), {"valueless_results": ()})  # told every error is the task's: a false finding
    assert [type(f) for f in findings(Checked.narrowed(rules=_RESULTS_RULES, promises={"exception"}), _search(50))] == [
        Checked.finding("exception", AFTER_A_RESULT)
    ]


class _Deadlocks(_ManagerMachine):
    """A blocking cancel that holds the client's lock for good; losing the
    connection needs that lock."""

    blocking = True
    settle_seconds = 0.1

    def make_client(self, send, clock):
        super().make_client(send, clock)
        self.lock, self.never = threading.Lock(), threading.Event()

    def cancel_blocking(self, future, timeout):
        future.cancel(0)
        with self.lock:
            self.never.wait(timeout)
        return future.cancelled()

    def connection_lost(self):
        with self.lock:
            super().connection_lost()


@pytest.mark.timeout(60)
def test_teardown_is_bounded_when_the_client_deadlocks_and_releases_a_judged_hang():
    machine = _Deadlocks()
    task_id = machine.submit_a_task(grouped=False)
    machine.a_thread_cancels_and_waits(task_id=task_id)
    started = time.monotonic()
    machine.teardown()  # its connection_lost waits for the lock the parked cancel holds
    assert time.monotonic() - started < 5
    machine.never.set()

    gated = _Gated.narrowed(promises={"cancel-wait-ends"})()
    task_id = gated.submit_a_task(grouped=False)
    gated.promises_hold()
    gated.a_thread_cancels_and_waits(task_id=task_id)
    gated.promises_hold()
    gated.scheduler_sends_a_confirm(task_id=task_id, event=lifecycle.CONFIRM_CANCELED, to_group=False)
    with pytest.raises(BrokenPromise) as hang:
        gated.promises_hold()
    assert type(hang.value) is gated.finding("cancel-wait-ends", AFTER_AN_ANSWER)
    (left,) = gated._abandoned
    gated.teardown()
    assert not left.thread.is_alive()


@pytest.mark.timeout(60)
def test_a_call_open_on_another_task_does_not_rename_a_finding():
    blocking = type("Blocking", (_NotFoundCancels,), {"blocking": True, "hang_seconds": 0.1})
    machine = blocking.narrowed(promises={"done"})()
    try:
        first = machine.submit_a_task(grouped=False)
        machine.promises_hold()
        second = machine.submit_a_task(grouped=False)
        machine.promises_hold()
        machine.a_thread_cancels_and_waits(task_id=first)  # parks: nobody answers it
        machine.promises_hold()
        machine.scheduler_sends_a_confirm(task_id=second, event=lifecycle.CONFIRM_NOT_FOUND, to_group=False)
        with pytest.raises(BrokenPromise) as broken:
            machine.promises_hold()
        assert type(broken.value) is blocking.finding("done", AFTER_AN_ANSWER, ignored=True)
    finally:
        machine.teardown()


class _CancelSaysYes(_ManagerMachine):
    def cancel(self, future):
        future.cancel(timeout=0)
        return True


def test_a_cancel_is_judged_only_if_its_promise_is_checked():
    unchecked = _CancelSaysYes.narrowed(promises={"done"})()
    unchecked.user_cancels(task_id=unchecked.submit_a_task(grouped=False))  # True while the answer is awaited: not asked about
    checked = _CancelSaysYes()
    with pytest.raises(checked.finding("cancel-returns", CANCEL)):
        checked.user_cancels(task_id=checked.submit_a_task(grouped=False))
