"""The lifecycle of one remote task's future, declared once.

Rules of this module
--------------------

* Everything that decides how a future's state changes lives here, as data.
  The client layer executes it and the diagram and exploration tools read it;
  none of them adds a rule of its own. A rule missing here is missing
  everywhere, which is the point.
* The tables below are handed verbatim to ``transitions.Machine``. The
  diagram generator and the explorer read them too, so keep them plain data:
  names of states, triggers and callbacks, nothing computed.
* This module does not know about threads, sockets or waiting callers. It says
  *what* happens on each (state, event); *when* a callback's side effect reaches
  the outside world is the client's business.

Theory of operation
-------------------

A future starts ``pending`` when its task is submitted. The scheduler speaks
through ``TaskResult`` (success, failure, worker died) and, after a
``TaskCancel``, through ``TaskCancelConfirm`` (canceled, cancel failed, not
found). The user speaks through ``cancel()``; the owning manager through
``clear()``, ``close()``, lost connections and the confirm timer.

Cancelling is a conversation. ``cancel`` moves the future to
``cancel_requested`` *first* and only then sends ``TaskCancel``, so an answer
racing the send always finds the future waiting for it. The scheduler's answer
decides the outcome: confirmed or not found ends ``cancelled``; cancel failed
returns to ``pending`` (the result is still coming). A result that wins the
race is the policy question: with ``late_result="cancel"`` the future still
ends ``cancelled`` and the result is kept on the future as discarded; with
``late_result="deliver"`` the result wins and the future ends ``done`` or
``failed``. Nothing waits forever: entering ``cancel_requested`` arms a confirm
timeout that ends the future ``cancelled`` if the scheduler stays silent.

``done``, ``failed`` and ``cancelled`` are terminal: entered once, never left.
A result reaching a terminal future is recorded as discarded; any other event
there, and any (state, event) pair with no rule, changes nothing and is
counted as ignored by the client.

Graph tasks share a group id. Cancelling one member sends one ``TaskCancel``
for the whole group and moves its pending siblings to ``cancel_requested``
with ``group_cancel``, so the group's confirm (or each member's own answer,
or the timeout) ends every member.
"""

from __future__ import annotations

import copy

from typing import Any, Final

from taskfate.protocol import (
    CancelConfirmType,
    Message,
    TaskCancelConfirm,
    TaskResult,
    TaskResultType,
)

# -- States -----------------------------------------------------------------

PENDING: Final = "pending"
CANCEL_REQUESTED: Final = "cancel_requested"
DONE: Final = "done"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"

# -- Triggers: the protocol's messages and the local events -----------------

RESULT_SUCCESS: Final = "result_success"
RESULT_FAILED: Final = "result_failed"
RESULT_WORKER_DIED: Final = "result_worker_died"
CONFIRM_CANCELED: Final = "confirm_canceled"
CONFIRM_CANCEL_FAILED: Final = "confirm_cancel_failed"
CONFIRM_NOT_FOUND: Final = "confirm_not_found"
CANCEL: Final = "cancel"
GROUP_CANCEL: Final = "group_cancel"
CLEAR: Final = "clear"
CONFIRM_TIMEOUT: Final = "confirm_timeout"
CLOSE: Final = "close"
CONNECTION_LOST: Final = "connection_lost"

RESULT_EVENTS: Final = (RESULT_SUCCESS, RESULT_FAILED, RESULT_WORKER_DIED)
CONFIRM_EVENTS: Final = (CONFIRM_CANCELED, CONFIRM_CANCEL_FAILED, CONFIRM_NOT_FOUND)
LOCAL_EVENTS: Final = (CANCEL, GROUP_CANCEL, CLEAR, CONFIRM_TIMEOUT, CLOSE, CONNECTION_LOST)
EVENTS: Final = RESULT_EVENTS + CONFIRM_EVENTS + LOCAL_EVENTS

#: What each incoming message means to a future. Messages not listed here
#: (heartbeats, disconnects) are the transport's, not the lifecycle's.
MESSAGE_EVENTS: Final[dict[tuple[type[Message], int], str]] = {
    (TaskResult, TaskResultType.SUCCESS): RESULT_SUCCESS,
    (TaskResult, TaskResultType.FAILED): RESULT_FAILED,
    (TaskResult, TaskResultType.WORKER_DIED): RESULT_WORKER_DIED,
    (TaskCancelConfirm, CancelConfirmType.CANCELED): CONFIRM_CANCELED,
    (TaskCancelConfirm, CancelConfirmType.CANCEL_FAILED): CONFIRM_CANCEL_FAILED,
    (TaskCancelConfirm, CancelConfirmType.CANCEL_NOT_FOUND): CONFIRM_NOT_FOUND,
}

# -- Callbacks ---------------------------------------------------------------
# Named here so that every callback the declaration mentions is listed once;
# the client's Future implements each one as a method of the same name taking
# the event's single argument (the message, the force flag, the error, ...).

KEEP_RESULT: Final = "keep_result"  # store the result or failure to be read
DISCARD_RESULT: Final = "discard_result"  # record a result that lost to a cancel
SEND_CANCEL: Final = "send_cancel"  # one TaskCancel, for the task or its group
CANCEL_GROUP: Final = "cancel_group"  # move pending group siblings along
ARM_CONFIRM_TIMEOUT: Final = "arm_confirm_timeout"
DISARM_CONFIRM_TIMEOUT: Final = "disarm_confirm_timeout"
KEEP_CONNECTION_ERROR: Final = "keep_connection_error"
NOTE_NOT_FOUND: Final = "note_not_found"
NOTE_TIMEOUT: Final = "note_timeout"
NOTE_REFUSED: Final = "note_refused"

CALLBACKS: Final = (
    KEEP_RESULT,
    DISCARD_RESULT,
    SEND_CANCEL,
    CANCEL_GROUP,
    ARM_CONFIRM_TIMEOUT,
    DISARM_CONFIRM_TIMEOUT,
    KEEP_CONNECTION_ERROR,
    NOTE_NOT_FOUND,
    NOTE_TIMEOUT,
    NOTE_REFUSED,
)

# -- The declaration ---------------------------------------------------------
# Read by transitions, by fsm.diagram and by fsm.explore: plain data only.

STATES: Final[list[dict[str, Any]]] = [
    {"name": PENDING},
    {
        "name": CANCEL_REQUESTED,
        "on_enter": [ARM_CONFIRM_TIMEOUT],
        "on_exit": [DISARM_CONFIRM_TIMEOUT],
    },
    {"name": DONE, "final": True},
    {"name": FAILED, "final": True},
    {"name": CANCELLED, "final": True},
]

INITIAL: Final = PENDING
LIVE: Final = [PENDING, CANCEL_REQUESTED]
TERMINAL: Final = [DONE, FAILED, CANCELLED]

#: Rules shared by every policy.
COMMON_TRANSITIONS: Final[list[dict[str, Any]]] = [
    # The scheduler answers a pending task.
    {"trigger": RESULT_SUCCESS, "source": PENDING, "dest": DONE, "before": [KEEP_RESULT]},
    {"trigger": RESULT_FAILED, "source": PENDING, "dest": FAILED, "before": [KEEP_RESULT]},
    {"trigger": RESULT_WORKER_DIED, "source": PENDING, "dest": FAILED, "before": [KEEP_RESULT]},
    # Asking to cancel: the state changes before the request leaves.
    {
        "trigger": CANCEL,
        "source": PENDING,
        "dest": CANCEL_REQUESTED,
        "after": [SEND_CANCEL, CANCEL_GROUP],
    },
    {
        "trigger": CLEAR,
        "source": PENDING,
        "dest": CANCEL_REQUESTED,
        "after": [SEND_CANCEL, CANCEL_GROUP],
    },
    # A sibling in the same graph already sent the group's TaskCancel.
    {"trigger": GROUP_CANCEL, "source": PENDING, "dest": CANCEL_REQUESTED},
    # The scheduler cancelled on its own (a clear, an operator): accept it.
    {"trigger": CONFIRM_CANCELED, "source": PENDING, "dest": CANCELLED},
    # The scheduler's answers to our TaskCancel.
    {"trigger": CONFIRM_CANCELED, "source": CANCEL_REQUESTED, "dest": CANCELLED},
    {
        "trigger": CONFIRM_CANCEL_FAILED,
        "source": CANCEL_REQUESTED,
        "dest": PENDING,
        "after": [NOTE_REFUSED],
    },
    {
        "trigger": CONFIRM_NOT_FOUND,
        "source": CANCEL_REQUESTED,
        "dest": CANCELLED,
        "after": [NOTE_NOT_FOUND],
    },
    # The scheduler stayed silent: give up waiting, the future ends anyway.
    {
        "trigger": CONFIRM_TIMEOUT,
        "source": CANCEL_REQUESTED,
        "dest": CANCELLED,
        "after": [NOTE_TIMEOUT],
    },
    # The client goes away: nothing more will arrive.
    {"trigger": CLOSE, "source": LIVE, "dest": CANCELLED},
    {
        "trigger": CONNECTION_LOST,
        "source": LIVE,
        "dest": FAILED,
        "before": [KEEP_CONNECTION_ERROR],
    },
    # Terminal states are never left; a result reaching one is still recorded.
    *[
        {"trigger": event, "source": TERMINAL, "dest": None, "after": [DISCARD_RESULT]}
        for event in RESULT_EVENTS
    ],
]

#: What a result does to a future whose cancel is in flight, per policy.
LATE_RESULT_TRANSITIONS: Final[dict[str, list[dict[str, Any]]]] = {
    # The cancel wins: the result is recorded as discarded.
    "cancel": [
        {
            "trigger": event,
            "source": CANCEL_REQUESTED,
            "dest": CANCELLED,
            "before": [DISCARD_RESULT],
        }
        for event in RESULT_EVENTS
    ],
    # The result wins: the future ends as if no cancel had been asked.
    "deliver": [
        {"trigger": RESULT_SUCCESS, "source": CANCEL_REQUESTED, "dest": DONE, "before": [KEEP_RESULT]},
        {"trigger": RESULT_FAILED, "source": CANCEL_REQUESTED, "dest": FAILED, "before": [KEEP_RESULT]},
        {
            "trigger": RESULT_WORKER_DIED,
            "source": CANCEL_REQUESTED,
            "dest": FAILED,
            "before": [KEEP_RESULT],
        },
    ],
}

POLICIES: Final = tuple(LATE_RESULT_TRANSITIONS)
DEFAULT_POLICY: Final = "cancel"


def declaration(policy: str = DEFAULT_POLICY) -> dict[str, Any]:
    """Keyword arguments for ``transitions.Machine`` describing ``policy``.

    A fresh copy each call, so a caller (a test breaking the declaration on
    purpose, a diagram tool adding styling) cannot alter the original.
    """
    if policy not in LATE_RESULT_TRANSITIONS:
        raise ValueError(f"unknown late_result policy {policy!r}; choose one of {POLICIES}")
    return {
        "states": copy.deepcopy(STATES),
        "transitions": copy.deepcopy(COMMON_TRANSITIONS + LATE_RESULT_TRANSITIONS[policy]),
        "initial": INITIAL,
        "auto_transitions": False,
        "ignore_invalid_triggers": True,
    }
