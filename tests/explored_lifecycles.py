"""A lifecycle declared the way a client library would, and broken copies of it.

The library's scheduler says when a worker starts a task (``TaskStarted``)
and, while it runs, sends progress reports of its own (``Progress``, a
message taskfate does not know). Its lifecycle is the stock one with a
``running`` state, plus a ``progress`` rule that calls a callback of its own
(``note_progress``, which the explorer cannot model and must say so).

``tests/test_explore.py`` explores it and checks that the new rules are
exercised, and that each broken copy is caught with the promise it breaks.
Loadable from the command line, with this folder on ``PYTHONPATH``:
``taskfate explore --declaration explored_lifecycles:RUNNING``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskfate.fsm import Lifecycle, declare, lifecycle
from taskfate.protocol import TaskID

PROGRESS = "progress"


@dataclass(frozen=True)
class Progress:
    """The library's own message: how far a running task has got."""

    task_id: TaskID
    percent: int


def messages(message: Any) -> str | None:
    """The library's classifier: its own ``Progress``, then taskfate's messages."""
    if type(message) is Progress:
        return PROGRESS
    return lifecycle.started_messages(message)


def declaration() -> dict[str, Any]:
    """The declaration: taskfate's ``running`` lifecycle and a progress rule."""
    declared = lifecycle.declaration("cancel", started=True)
    declared["transitions"].append({"trigger": PROGRESS, "source": lifecycle.RUNNING, "dest": None, "after": ["note_progress"]})
    return declared


def _rule(declared: dict[str, Any], trigger: str, source: str) -> dict[str, Any]:
    (rule,) = [
        rule
        for rule in declared["transitions"]
        if rule["trigger"] == trigger and (rule["source"] == source or isinstance(rule["source"], list) and source in rule["source"])
    ]
    return rule


def _split(declared: dict[str, Any], trigger: str, source: str) -> dict[str, Any]:
    """The rule for ``trigger`` in ``source`` as a rule of its own, so that
    breaking it leaves the other sources' copies alone."""
    shared = _rule(declared, trigger, source)
    if isinstance(shared["source"], list) and len(shared["source"]) > 1:
        shared["source"] = [other for other in shared["source"] if other != source]
        shared = dict(shared, source=source)
        declared["transitions"].append(shared)
    return shared


RUNNING: Lifecycle = declare(declaration(), messages=messages, name="progress+running")


def result_dropped_in_running() -> Lifecycle:
    """A success reaching a running future has no rule: the result is lost."""
    declared = declaration()
    declared["transitions"].remove(_split(declared, lifecycle.RESULT_SUCCESS, lifecycle.RUNNING))
    return declare(declared, messages=messages, name="result_dropped_in_running")


def progress_finishes_the_future() -> Lifecycle:
    """A progress report ends the future ``done``, with no result to return."""
    declared = declaration()
    _rule(declared, PROGRESS, lifecycle.RUNNING)["dest"] = lifecycle.DONE
    return declare(declared, messages=messages, name="progress_finishes_the_future")


def cancel_from_running_sends_nothing() -> Lifecycle:
    """Cancelling a running task moves the future along but sends no
    ``TaskCancel``: it waits for an answer to a question never asked."""
    declared = declaration()
    _split(declared, lifecycle.CANCEL, lifecycle.RUNNING)["after"] = []
    return declare(declared, messages=messages, name="cancel_from_running_sends_nothing")


#: Each broken copy, and the promise the explorer must report it breaking.
BROKEN_RUNNING = {
    "result_dropped_in_running": (result_dropped_in_running, "result_recorded"),
    "progress_finishes_the_future": (progress_finishes_the_future, "result_matches_state"),
    "cancel_from_running_sends_nothing": (cancel_from_running_sends_nothing, "one_request_per_cancel"),
}
