"""A lifecycle declared outside taskfate runs, is refused when unsafe, is
drawn and is explored: docs/declaring.md's example library, end to end.

``pulse_lifecycle`` (docs/examples, on the test path) has its own message
(``Progress``), its own event names, a ``running`` state and a callback of
its own on a ``Future`` subclass.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import pickle
import re
import threading
import time
from typing import Any

import pulse_lifecycle as pulse
import pytest

from taskfate.client import Future, FutureManager
from taskfate.client.cli import main
from taskfate.fsm import DeclarationError, declare, diagram
from taskfate.fsm.explore import explore
from taskfate.protocol import CancelConfirmType, TaskCancel, TaskCancelConfirm, TaskID, TaskResult, TaskResultType, TaskStarted

WAIT = 10


def result(task_id: TaskID, value: Any) -> TaskResult:
    return TaskResult(task_id, TaskResultType.SUCCESS, pickle.dumps(value))


def confirm(task_id: TaskID, kind: CancelConfirmType = CancelConfirmType.CANCELED) -> TaskCancelConfirm:
    return TaskCancelConfirm(task_id, kind)


def later(seconds: float, function: Any, *arguments: Any) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), function(*arguments)), daemon=True)
    thread.start()
    return thread


# -- It runs ---------------------------------------------------------------------------


def test_the_librarys_messages_drive_its_own_states_and_callback():
    sent: list[Any] = []
    manager = pulse.manager(sent.append, timer=False)
    future = manager.track(TaskID.new())
    assert isinstance(future, pulse.PulseFuture) and future.state == "queued" and not future.running()
    manager.on_message(TaskStarted(future.task_id))
    assert future.running() and future.state == "running"
    manager.on_message(pulse.Progress(future.task_id, 40))
    assert future.percent == 40 and future.state == "running"
    manager.on_message(object())  # not for futures: counted, nothing moves
    assert manager.stats["not_for_futures"] == 1 and future.state == "running"
    manager.on_message(result(future.task_id, 7))
    assert future.result(timeout=0) == 7 and not future.running() and len(manager) == 0
    # progress stays in its state: a history records transitions only
    assert [step.event for step in future.history] == ["started", "succeeded"]
    assert sent == []


def test_wait_and_as_completed_see_the_librarys_outcomes():
    manager = pulse.manager(lambda message: None, timer=False)
    done, failed, cancelled, live = (manager.track(TaskID.new()) for _ in range(4))
    manager.on_message(TaskStarted(live.task_id))
    finished, pending = concurrent.futures.wait([done, failed, cancelled, live], timeout=0)
    assert finished == set() and pending == {done, failed, cancelled, live}
    cancelled.cancel(0)
    later(0.05, manager.on_message, result(done.task_id, "ok"))
    later(0.05, manager.on_message, TaskResult(failed.task_id, TaskResultType.FAILED, pickle.dumps(ValueError("no"))))
    later(0.05, manager.on_message, confirm(cancelled.task_id))
    seen = list(concurrent.futures.as_completed([done, failed, cancelled], timeout=WAIT))
    assert set(seen) == {done, failed, cancelled}
    assert done.result() == "ok" and isinstance(failed.exception(), ValueError) and cancelled.cancelled()
    finished, pending = concurrent.futures.wait([done, live], timeout=0, return_when=concurrent.futures.FIRST_COMPLETED)
    assert finished == {done} and pending == {live} and live.running()


def test_asyncio_awaits_the_librarys_future():
    manager = pulse.manager(lambda message: None, timer=False)
    future = manager.track(TaskID.new())

    async def main_() -> Any:
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, manager.on_message, TaskStarted(future.task_id))
        loop.call_later(0.04, manager.on_message, result(future.task_id, "awaited"))
        return await asyncio.wait_for(asyncio.wrap_future(future), WAIT), await future

    assert asyncio.run(main_()) == ("awaited", "awaited")


@pytest.mark.timeout(30)
def test_cancel_waits_in_the_awaiting_state_for_the_answer_and_returns_what_it_decided():
    sent: list[Any] = []
    manager = pulse.manager(sent.append, cancel_timeout=WAIT)
    future = manager.track(TaskID.new())
    manager.on_message(TaskStarted(future.task_id))
    later(0.1, manager.on_message, confirm(future.task_id))
    started = time.monotonic()
    assert future.cancel() is True
    assert 0.05 < time.monotonic() - started < WAIT
    assert future.cancelled() and sent == [TaskCancel(future.task_id, True)]
    assert [step.event for step in future.history] == ["started", "cancel", "cancel_confirmed"]
    # A refusal goes back to running; a result that races the next cancel wins.
    other = manager.track(TaskID.new())
    manager.on_message(TaskStarted(other.task_id))
    later(0.05, manager.on_message, confirm(other.task_id, CancelConfirmType.CANCEL_FAILED))
    assert other.cancel(timeout=WAIT) is False and other.running()
    assert other.cancel(0) is False and other.state == "cancelling"
    manager.on_message(result(other.task_id, 3))
    assert other.result() == 3 and not other.cancelled()
    manager.close()


def test_a_silent_peer_is_ended_by_the_confirm_timeout():
    manager = pulse.manager(lambda message: None, timer=False, cancel_timeout=5, clock=lambda: clock[0])
    clock = [100.0]
    future = manager.track(TaskID.new())
    assert future.cancel(0) is False and future.state == "cancelling"
    assert manager.expire(now=104.0) == 0 and future.state == "cancelling"
    assert manager.expire(now=105.0) == 1
    assert future.cancelled() and future.history[-1].event == "confirm_timeout" and manager.stats["confirm_timeouts"] == 1


def test_close_and_a_lost_connection_end_every_future_of_the_library():
    manager = pulse.manager(lambda message: None, timer=False)
    queued, running, cancelling = (manager.track(TaskID.new()) for _ in range(3))
    manager.on_message(TaskStarted(running.task_id))
    cancelling.cancel(0)
    manager.connection_lost()
    assert all(f.done() and f.state == "failed" for f in (queued, running, cancelling))
    other = pulse.manager(lambda message: None, timer=False)
    futures = [other.track(TaskID.new()) for _ in range(2)]
    other.close()
    assert all(f.cancelled() for f in futures) and len(other) == 0


def test_a_manager_refuses_a_future_class_without_the_librarys_callback():
    with pytest.raises(TypeError, match="note_progress"):
        FutureManager(lambda message: None, lifecycle=pulse.LIFECYCLE)
    with pytest.raises(TypeError, match="note_progress"):
        FutureManager(lambda message: None, lifecycle=pulse.LIFECYCLE, future_class=Future)


# -- It is refused when unsafe --------------------------------------------------------


def _declared(**changes: Any) -> dict[str, Any]:
    declared = copy.deepcopy(pulse.DECLARATION)
    declared.update(changes)
    return declared


def _state(declared: dict[str, Any], name: str) -> dict[str, Any]:
    (state,) = [state for state in declared["states"] if state["name"] == name]
    return state


def _without(trigger: str) -> dict[str, Any]:
    return _declared(transitions=[rule for rule in copy.deepcopy(pulse.TRANSITIONS) if rule["trigger"] != trigger])


def _tagged(name: str, tags: list[str], final: bool | None = None) -> dict[str, Any]:
    declared = _declared()
    _state(declared, name)["tags"] = tags
    if final is not None:
        _state(declared, name)["final"] = final
    return declared


def _with_rules(rules: list[dict[str, Any]], states: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    declared = _declared()
    declared["transitions"].extend(rules)
    declared["states"].extend(states or [])
    return declared


def _with_rule(rule: dict[str, Any]) -> dict[str, Any]:
    return _with_rules([rule])


REFUSED = {
    "final state without an outcome": (_tagged("done", []), r"final state 'done' must carry exactly one outcome tag"),
    "final state with two outcomes": (_tagged("done", ["result", "exception"]), r"final state 'done' must carry exactly one"),
    "outcome on a live state": (_tagged("running", ["running", "result"]), r"live state 'running' carries outcome tag 'result'"),
    "running on a final state": (_tagged("done", ["result", "running"]), r"final state 'done' is tagged 'running'"),
    "unknown tag": (_tagged("running", ["busy"]), r"state 'running' has unknown tag\(s\) \['busy'\]"),
    "no close rule": (_without("close"), r"live state 'queued' has no rule for 'close'"),
    "no connection_lost rule": (_without("connection_lost"), r"live state 'queued' has no rule for 'connection_lost'"),
    "close that does not end": (
        _declared(
            transitions=[
                rule if rule["trigger"] != "close" else {"trigger": "close", "source": "queued", "dest": "running"}
                for rule in pulse.TRANSITIONS
            ]
            + [{"trigger": "close", "source": ["running", "cancelling"], "dest": "cancelled"}]
        ),
        r"'queued' --close--> 'running' does not end the future",
    ),
    "a condition": (
        _with_rule({"trigger": "progress", "source": "queued", "dest": None, "conditions": ["is_late"]}),
        r"'queued' --progress--> has conditions",
    ),
    "unreachable state": (
        _with_rules(
            [
                {"trigger": "close", "source": "parked", "dest": "cancelled"},
                {"trigger": "connection_lost", "source": "parked", "dest": "failed"},
            ],
            [{"name": "parked"}],
        ),
        r"state\(s\) \['parked'\] cannot be reached from the initial state 'queued'",
    ),
    "a callback that is not a name": (
        _with_rule({"trigger": "progress", "source": "queued", "dest": None, "after": [print]}),
        r"callbacks are named by identifiers; 'queued' \(progress\)",
    ),
    "auto transitions": (_declared(auto_transitions=True), r"auto_transitions"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_cannot_be_run_safely_is_refused_naming_the_state_and_event(case):
    declared, message = REFUSED[case]
    with pytest.raises(DeclarationError, match=message) as raised:
        declare(declared, messages=pulse.classify)
    assert isinstance(raised.value, ValueError)


def test_the_refusal_shown_in_the_docs_is_the_one_declare_gives():
    docs = (pulse.__file__.rsplit("/docs/", 1)[0] + "/docs/declaring.md")
    with open(docs, encoding="utf-8") as page:
        text = page.read()
    with pytest.raises(DeclarationError) as raised:
        declare(_without("close"), messages=pulse.classify)
    shown = " ".join(line.lstrip("# ") for line in text.split("# DeclarationError: ", 1)[1].splitlines()[:2])
    assert str(raised.value) == shown.strip()


def test_a_classifier_that_is_not_callable_is_refused():
    with pytest.raises(DeclarationError, match="messages must be a callable"):
        declare(pulse.DECLARATION, messages={"Progress": "progress"})  # type: ignore[arg-type]


# -- It is drawn and explored ---------------------------------------------------------


def test_the_librarys_lifecycle_is_drawn_with_its_own_states_and_rules():
    text = diagram.mermaid(pulse.LIFECYCLE)
    for state in pulse.LIFECYCLE.states:
        assert state in text
    assert "queued --> running: started" in text and "cancelling --> running: cancel_refused" in text
    dot = diagram.dot(pulse.LIFECYCLE)
    # An edge's label is a node on its way: cancelling -> [label N] -> cancelled.
    labels = re.findall(r'^  "cancelling" -> "(\[label \d+\])"', dot, re.M)
    assert any(f'  "{label}" -> "cancelled";' in dot for label in labels)
    (refused,) = [row for row in diagram.table_markdown(pulse.LIFECYCLE).splitlines() if row.startswith("| `cancel_refused` |")]
    # queued, running: ignored; cancelling: back to running; final states: ignored
    assert [cell.strip() for cell in refused.strip("|").split("|")[2:]] == ["ignored", "ignored", "`running`", "ignored", "ignored", "ignored"]


def test_the_librarys_lifecycle_keeps_every_promise_and_strict_says_which_rule_a_faithful_peer_never_takes():
    alone = explore(pulse.LIFECYCLE, depth=10, scheduler="any")
    # A graph's rules need a sibling to fire them.
    assert alone.ok and alone.exhausted and alone.unexercised == [("queued", "group_cancel"), ("running", "group_cancel")], alone.summary()
    anything = explore(pulse.LIFECYCLE, depth=10, futures=2, scheduler="any", strict=True)
    assert anything.ok and anything.unexercised == [], anything.summary()
    assert anything.unmodelled == ("note_progress",)
    faithful = explore(pulse.LIFECYCLE, depth=10, futures=2, strict=True)
    assert not faithful.violations and faithful.unexercised == [("done", "failed")] and not faithful.ok


def test_a_broken_copy_of_the_librarys_lifecycle_is_caught_with_the_promise_it_breaks():
    broken = declare(_without("confirm_timeout"), messages=pulse.classify, name="pulse-without-timeout")
    report = explore(broken, depth=10)
    assert "ends_once_timeouts_fire" in report.violations, report.summary()
    trace = report.violations["ends_once_timeouts_fire"].trace
    # The shortest way to break it: cancel, and hear nothing back.
    assert [step[0] for step in trace] == ["cancel"]


def test_the_command_line_draws_and_explores_the_named_lifecycle(capsys):
    assert main(["explore", "--declaration", "pulse_lifecycle:LIFECYCLE", "--futures", "2", "--scheduler", "any", "--strict"]) == 0
    out = capsys.readouterr().out
    assert "lifecycle 'pulse'" in out and "every declared transition was exercised" in out
    assert main(["explore", "--declaration", "pulse_lifecycle:LIFECYCLE", "--futures", "2", "--strict"]) == 1
    assert "done --failed-->" in capsys.readouterr().out
    assert main(["diagram", "--declaration", "pulse_lifecycle:LIFECYCLE"]) == 0
    assert capsys.readouterr().out == diagram.mermaid(pulse.LIFECYCLE)
