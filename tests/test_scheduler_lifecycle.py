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


def test_the_drawn_scheduler_machine_shows_every_declared_rule_once():
    import re

    from taskfate.fsm.diagram import split_rules

    text = slc.mermaid()
    drawn = []
    for source, dest, label in re.findall(r"^  (\w+) --> (\w+): (.*)$", text, flags=re.M):
        drawn += [(source, dest, part.split(" / ")[0]) for part in label.split("<br>")]
    # A rule that keeps the state is a line of the note naming the states it holds in.
    for heading, lines in re.findall(r"^  note left of \w+\n    in ([^\n]*)\n((?:    [^\n]*\n)*?)  end note$", text, flags=re.M):
        drawn += [(state, None, line.strip().split(" / ")[0]) for state in heading.split(", ") for line in lines.splitlines()]
    declared = [(r.source, r.dest, r.event) for r in split_rules(slc.declaration())]
    assert sorted(drawn, key=repr) == sorted(declared, key=repr)
    for state in slc.TERMINAL:
        assert f"class {state} s_terminal" in text and f"{state} --> [*]" in text
    # What each rule does is in the table beside the picture.
    table = slc.table()
    assert "| `running` | `cancel_force` | TaskCancel force | `canceled` | kills the worker, sends CANCELED, dependants take dependency_canceled |" in table


def test_the_transport_docs_show_the_current_scheduler_machine():
    from pathlib import Path

    from refresh_docs import SCHEDULER_DOCUMENTS, scheduler_sections
    from taskfate.fsm.diagram import REFRESH_COMMAND, refresh_document

    root = Path(__file__).resolve().parents[1]
    for relative, names in SCHEDULER_DOCUMENTS.items():
        text = (root / relative).read_text(encoding="utf-8")
        assert refresh_document(text, names, scheduler_sections()) == text, f"{relative} is stale: run {REFRESH_COMMAND}"
