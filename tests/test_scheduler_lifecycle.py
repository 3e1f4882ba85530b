"""The scheduler's declared task lifecycle answers every cancel truthfully."""

from __future__ import annotations

import pytest

from taskfate.fsm.table import Executor
from taskfate.scheduler import lifecycle as slc

LIFECYCLE = slc.compiled()
SENDS = {slc.SEND_CANCELED, slc.SEND_CANCEL_FAILED, slc.SEND_NOT_FOUND}


@pytest.mark.parametrize("state", slc.LIVE + slc.TERMINAL)
@pytest.mark.parametrize("event", [slc.CANCEL_FORCE, slc.CANCEL_GENTLE])
def test_every_cancel_in_every_state_gets_exactly_one_answer(state, event):
    rule = LIFECYCLE.rule(state, event)
    assert rule is not None
    answers = [name for name in rule.before + rule.after if name in SENDS]
    assert len(answers) == 1


@pytest.mark.parametrize(
    ("state", "event", "dest", "answer"),
    [
        (slc.QUEUED, slc.CANCEL_GENTLE, slc.CANCELED, slc.SEND_CANCELED),
        (slc.WAITING, slc.CANCEL_FORCE, slc.CANCELED, slc.SEND_CANCELED),
        (slc.RUNNING, slc.CANCEL_FORCE, slc.CANCELED, slc.SEND_CANCELED),
        (slc.RUNNING, slc.CANCEL_GENTLE, None, slc.SEND_CANCEL_FAILED),
        (slc.SUCCEEDED, slc.CANCEL_FORCE, None, slc.SEND_NOT_FOUND),
    ],
)
def test_cancel_answers_follow_the_task_state(state, event, dest, answer):
    rule = LIFECYCLE.rule(state, event)
    assert rule is not None and rule.dest == dest and answer in rule.after


def test_terminal_tasks_are_never_left_and_forget_themselves():
    for state in slc.TERMINAL:
        assert all(rule.dest is None for rule in LIFECYCLE.table[state].values())
    for state in slc.LIVE:
        for rule in LIFECYCLE.table[state].values():
            if rule.dest in slc.TERMINAL:
                assert slc.FORGET in rule.after


def test_the_executor_runs_callbacks_around_the_state_change():
    calls = []

    class Model:
        state = slc.RUNNING

    for name in slc.CALLBACKS:
        setattr(Model, name, lambda self, arg, name=name: calls.append((name, self.state)))
    executor = Executor(LIFECYCLE, Model)
    model = Model()
    assert executor.fire(model, slc.CANCEL_FORCE) is True
    assert calls == [
        (slc.STOP_WORKER, slc.RUNNING),
        (slc.FORGET, slc.CANCELED),
        (slc.SEND_CANCELED, slc.CANCELED),
        (slc.CANCEL_DEPENDANTS, slc.CANCELED),
    ]
    assert executor.fire(model, slc.ASSIGN) is False
