"""A client library's own future lifecycle, declared with taskfate.

"pulse" is a made-up client library whose scheduler says when a worker
starts a task (taskfate's ``TaskStarted``) and then reports how far the task
has got with a message of pulse's own, ``Progress``. Everything below is what
pulse writes: the message, the classifier that names an event for each
message, the declaration, and a ``Future`` subclass for the one callback
taskfate does not provide. taskfate does the rest: the futures, the confirm
timeout, the diagrams, the explorer.

``docs/declaring.md`` walks through this file; the test suite runs it
(``tests/test_declare.py``), and it can be explored and drawn from the
command line with ``docs/examples`` on ``PYTHONPATH``::

    taskfate explore --declaration pulse_lifecycle:LIFECYCLE --strict
    taskfate diagram --declaration pulse_lifecycle:LIFECYCLE
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskfate.client import Future, FutureManager
from taskfate.fsm import declare
from taskfate.protocol import CancelConfirmType, TaskCancelConfirm, TaskID, TaskResult, TaskResultType, TaskStarted


@dataclass(frozen=True)
class Progress:
    """pulse's own message: how far a running task has got."""

    task_id: TaskID
    percent: int


# -- Which event each message fires ---------------------------------------------
# A message maps to one event name, or to None when it is not for futures
# (a heartbeat). Every message that maps to an event carries ``task_id``.

_RESULTS = {
    TaskResultType.SUCCESS: "succeeded",
    TaskResultType.FAILED: "failed",
    TaskResultType.WORKER_DIED: "failed",
}
_ANSWERS = {
    CancelConfirmType.CANCELED: "cancel_confirmed",
    CancelConfirmType.CANCEL_FAILED: "cancel_refused",
    CancelConfirmType.CANCEL_NOT_FOUND: "cancel_confirmed",
}


def classify(message: Any) -> str | None:
    """pulse's classifier: message -> event name (None: not for futures)."""
    kind = type(message)
    if kind is Progress:
        return "progress"
    if kind is TaskStarted:
        return "started"
    if kind is TaskResult:
        return _RESULTS[message.result_type]
    if kind is TaskCancelConfirm:
        return _ANSWERS[message.confirm_type]
    return None


# -- The declaration ------------------------------------------------------------
# transitions.Machine keyword arguments. Tags say what a state means to the
# stdlib future: each final state has exactly one outcome, "running" makes
# running() True. Entering "cancelling" arms taskfate's confirm timeout, so
# cancel() waits there for the scheduler's answer, and never past it.

STATES = [
    {"name": "queued"},
    {"name": "running", "tags": ["running"]},
    {"name": "cancelling", "on_enter": ["arm_confirm_timeout"], "on_exit": ["disarm_confirm_timeout"]},
    {"name": "done", "final": True, "tags": ["result"]},
    {"name": "failed", "final": True, "tags": ["exception"]},
    {"name": "cancelled", "final": True, "tags": ["cancelled"]},
]

LIVE = ["queued", "running", "cancelling"]
WORKING = ["queued", "running"]

TRANSITIONS = [
    # What the scheduler says.
    {"trigger": "started", "source": "queued", "dest": "running"},
    {"trigger": "progress", "source": "running", "dest": None, "after": ["note_progress"]},
    {"trigger": "succeeded", "source": WORKING, "dest": "done", "before": ["keep_result"]},
    {"trigger": "failed", "source": WORKING, "dest": "failed", "before": ["keep_result"]},
    # A result that races a cancel wins: pulse's users asked for that.
    {"trigger": "succeeded", "source": "cancelling", "dest": "done", "before": ["keep_result"]},
    {"trigger": "failed", "source": "cancelling", "dest": "failed", "before": ["keep_result"]},
    {"trigger": "cancel_confirmed", "source": "cancelling", "dest": "cancelled"},
    {"trigger": "cancel_refused", "source": "cancelling", "dest": "running", "after": ["note_refused"]},
    # The scheduler may cancel on its own (an operator, a clear): accept it.
    {"trigger": "cancel_confirmed", "source": WORKING, "dest": "cancelled"},
    # What the library does: taskfate fires these local events. A cancel
    # moves the graph's other members too, then sends one request for all.
    {"trigger": "cancel", "source": WORKING, "dest": "cancelling", "after": ["cancel_group", "send_cancel"]},
    {"trigger": "clear", "source": WORKING, "dest": "cancelling", "after": ["cancel_group", "send_cancel"]},
    {"trigger": "group_cancel", "source": WORKING, "dest": "cancelling"},
    {"trigger": "confirm_timeout", "source": "cancelling", "dest": "cancelled", "after": ["note_timeout"]},
    {"trigger": "close", "source": LIVE, "dest": "cancelled"},
    {"trigger": "connection_lost", "source": LIVE, "dest": "failed", "before": ["keep_connection_error"]},
    # A result for a future that already ended is kept on it, not lost.
    {"trigger": "succeeded", "source": ["done", "failed", "cancelled"], "dest": None, "after": ["discard_result"]},
    {"trigger": "failed", "source": ["done", "failed", "cancelled"], "dest": None, "after": ["discard_result"]},
]

DECLARATION = {"states": STATES, "transitions": TRANSITIONS, "initial": "queued"}

#: pulse's lifecycle, checked by taskfate (declare raises DeclarationError
#: for anything it cannot run safely).
LIFECYCLE = declare(DECLARATION, messages=classify, name="pulse", late_result="deliver")


class PulseFuture(Future):
    """pulse's future: taskfate's, plus the callback its declaration adds.

    A lifecycle's own callbacks are methods of a ``Future`` subclass. They
    run under the manager's lock with the event's one argument (here the
    ``Progress`` message), so they only record: no waiting, no I/O.
    """

    __slots__ = ("percent",)

    def __init__(self, task_id: TaskID, manager: FutureManager, group_id: TaskID | None = None) -> None:
        super().__init__(task_id, manager, group_id)
        self.percent = 0

    def note_progress(self, message: Progress) -> None:
        self.percent = message.percent


def manager(send: Any, **options: Any) -> FutureManager:
    """A ``FutureManager`` running pulse's lifecycle on ``PulseFuture``s;
    ``send`` gets every outgoing message (pulse's transport frames them)."""
    return FutureManager(send, lifecycle=LIFECYCLE, future_class=PulseFuture, **options)
