"""The lifecycle of one remote task's future, declared once.

Rules of this module
--------------------

* Everything that decides how a future's state changes lives here, as data.
  The client layer executes it and the diagram and exploration tools read it;
  none of them adds a rule of its own. A rule missing here is missing
  everywhere, which is the point.
* The tables below are handed to :func:`taskfate.fsm.declare`, which builds
  a ``transitions.Machine`` from them and checks them, exactly as a client
  library's own declaration is. The
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

``done``, ``failed`` and ``cancelled`` are terminal: entered once, never left,
and tagged with their outcome (``result``, ``exception``, ``cancelled``) so
the stdlib view of a future follows from the declaration, not from names.
A result reaching a terminal future is recorded as discarded; any other event
there, and any (state, event) pair with no rule, changes nothing and is
counted as ignored by the client.

taskfate's own scheduler also says when a worker starts a task
(``TaskStarted``): the lifecycles built with ``started=True`` have a
``running`` state, tagged ``running``, that the stock ones lack because a
peer that never sends the notice would leave ``running()`` False anyway.

Graph tasks share a group id. Cancelling one member sends one ``TaskCancel``
for the whole group and moves its pending siblings to ``cancel_requested``
with ``group_cancel``, so the group's confirm (or each member's own answer,
or the timeout) ends every member.
"""

from __future__ import annotations

import copy
from typing import Any, Final, TypeAlias, get_args

from taskfate.fsm.declare import (
    ARM_CONFIRM_TIMEOUT,
    CALLBACKS,
    CANCEL,
    CANCEL_GROUP,
    CLEAR,
    CLOSE,
    CONFIRM_TIMEOUT,
    CONNECTION_LOST,
    DISARM_CONFIRM_TIMEOUT,
    DISCARD_RESULT,
    GROUP_CANCEL,
    KEEP_CONNECTION_ERROR,
    KEEP_RESULT,
    LOCAL_EVENTS,
    NOTE_NOT_FOUND,
    NOTE_REFUSED,
    NOTE_STARTED,
    NOTE_TIMEOUT,
    SEND_CANCEL,
    LateResult,
    Lifecycle,
    declare,
)
from taskfate.protocol import (
    CancelConfirmType,
    Message,
    TaskCancelConfirm,
    TaskResult,
    TaskResultType,
    TaskStarted,
)

__all__ = [
    "CALLBACKS",
    "DEFAULT_POLICY",
    "EVENTS",
    "LOCAL_EVENTS",
    "MESSAGE_EVENTS",
    "POLICIES",
    "STARTED_LIFECYCLES",
    "STOCK_LIFECYCLES",
    "Policy",
    "declaration",
    "started_messages",
    "stock_messages",
]

# -- States -----------------------------------------------------------------

PENDING: Final = "pending"
RUNNING: Final = "running"
CANCEL_REQUESTED: Final = "cancel_requested"
DONE: Final = "done"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"

# -- Peer events: what the scheduler's messages mean --------------------------
# The local events (cancel, clear, close, connection_lost, confirm_timeout,
# group_cancel) are the library's vocabulary, in taskfate.fsm.declare.

RESULT_SUCCESS: Final = "result_success"
RESULT_FAILED: Final = "result_failed"
RESULT_WORKER_DIED: Final = "result_worker_died"
CONFIRM_CANCELED: Final = "confirm_canceled"
CONFIRM_CANCEL_FAILED: Final = "confirm_cancel_failed"
CONFIRM_NOT_FOUND: Final = "confirm_not_found"
STARTED: Final = "started"

RESULT_EVENTS: Final = (RESULT_SUCCESS, RESULT_FAILED, RESULT_WORKER_DIED)
CONFIRM_EVENTS: Final = (CONFIRM_CANCELED, CONFIRM_CANCEL_FAILED, CONFIRM_NOT_FOUND)
EVENTS: Final = RESULT_EVENTS + CONFIRM_EVENTS + LOCAL_EVENTS

#: What each incoming result or confirm means to a future: (type, kind) ->
#: event. Messages not listed (heartbeats, disconnects) are the transport's.
MESSAGE_EVENTS: Final[dict[tuple[type[Message], int], str]] = {
    (TaskResult, TaskResultType.SUCCESS): RESULT_SUCCESS,
    (TaskResult, TaskResultType.FAILED): RESULT_FAILED,
    (TaskResult, TaskResultType.WORKER_DIED): RESULT_WORKER_DIED,
    (TaskCancelConfirm, CancelConfirmType.CANCELED): CONFIRM_CANCELED,
    (TaskCancelConfirm, CancelConfirmType.CANCEL_FAILED): CONFIRM_CANCEL_FAILED,
    (TaskCancelConfirm, CancelConfirmType.CANCEL_NOT_FOUND): CONFIRM_NOT_FOUND,
}

# Indexed by the enums' values, which are 0, 1, 2: one subscript per message.
_RESULT_BY_TYPE: Final = tuple(MESSAGE_EVENTS[(TaskResult, kind)] for kind in sorted(TaskResultType))
_CONFIRM_BY_TYPE: Final = tuple(MESSAGE_EVENTS[(TaskCancelConfirm, kind)] for kind in sorted(CancelConfirmType))


def stock_messages(message: Any) -> str | None:
    """The stock classifier: a ``TaskResult`` or ``TaskCancelConfirm`` to its
    event, anything else ``None`` (not for futures)."""
    kind = type(message)
    if kind is TaskResult:
        event: str = _RESULT_BY_TYPE[message.result_type]
        return event
    if kind is TaskCancelConfirm:
        event = _CONFIRM_BY_TYPE[message.confirm_type]
        return event
    return None


def started_messages(message: Any) -> str | None:
    """The classifier of the lifecycles with a ``running`` state: the stock
    messages, and ``TaskStarted`` as ``started``."""
    if type(message) is TaskStarted:
        return STARTED
    return stock_messages(message)


# -- The declaration ---------------------------------------------------------
# Read by transitions, by fsm.diagram and by fsm.explore: plain data only.

STATES: Final[list[dict[str, Any]]] = [
    {"name": PENDING},
    {
        "name": CANCEL_REQUESTED,
        "on_enter": [ARM_CONFIRM_TIMEOUT],
        "on_exit": [DISARM_CONFIRM_TIMEOUT],
    },
    {"name": DONE, "final": True, "tags": ["result"]},
    {"name": FAILED, "final": True, "tags": ["exception"]},
    {"name": CANCELLED, "final": True, "tags": ["cancelled"]},
]

INITIAL: Final = PENDING
LIVE: Final = [PENDING, CANCEL_REQUESTED]
TERMINAL: Final = [DONE, FAILED, CANCELLED]


def _common(working: list[str]) -> list[dict[str, Any]]:
    """Rules shared by every policy; ``working`` are the states in which the
    task is the scheduler's to run (``pending``, and ``running`` where the
    lifecycle has it), which answer results and cancels alike."""
    live = [*working, CANCEL_REQUESTED]
    return [
        # The scheduler answers a task it was running or about to run.
        {"trigger": RESULT_SUCCESS, "source": working, "dest": DONE, "before": [KEEP_RESULT]},
        {"trigger": RESULT_FAILED, "source": working, "dest": FAILED, "before": [KEEP_RESULT]},
        {"trigger": RESULT_WORKER_DIED, "source": working, "dest": FAILED, "before": [KEEP_RESULT]},
        # Asking to cancel: the state changes before the request leaves, the
        # graph's other members' too, so that an answer arriving while the
        # request is sent finds every member waiting for it.
        {"trigger": CANCEL, "source": working, "dest": CANCEL_REQUESTED, "after": [CANCEL_GROUP, SEND_CANCEL]},
        {"trigger": CLEAR, "source": working, "dest": CANCEL_REQUESTED, "after": [CANCEL_GROUP, SEND_CANCEL]},
        # A sibling in the same graph already sent the group's TaskCancel.
        {"trigger": GROUP_CANCEL, "source": working, "dest": CANCEL_REQUESTED},
        # The scheduler cancelled on its own (a clear, an operator): accept it.
        {"trigger": CONFIRM_CANCELED, "source": working, "dest": CANCELLED},
        # The scheduler's answers to our TaskCancel.
        {"trigger": CONFIRM_CANCELED, "source": CANCEL_REQUESTED, "dest": CANCELLED},
        {"trigger": CONFIRM_NOT_FOUND, "source": CANCEL_REQUESTED, "dest": CANCELLED, "after": [NOTE_NOT_FOUND]},
        # The scheduler stayed silent: give up waiting, the future ends anyway.
        {"trigger": CONFIRM_TIMEOUT, "source": CANCEL_REQUESTED, "dest": CANCELLED, "after": [NOTE_TIMEOUT]},
        # The client goes away: nothing more will arrive.
        {"trigger": CLOSE, "source": live, "dest": CANCELLED},
        {"trigger": CONNECTION_LOST, "source": live, "dest": FAILED, "before": [KEEP_CONNECTION_ERROR]},
        # Terminal states are never left; a result reaching one is still recorded.
        *[{"trigger": event, "source": TERMINAL, "dest": None, "after": [DISCARD_RESULT]} for event in RESULT_EVENTS],
    ]


#: What a result does to a future whose cancel is in flight, per policy.
LATE_RESULT_TRANSITIONS: Final[dict[str, list[dict[str, Any]]]] = {
    # The cancel wins: the result is recorded as discarded.
    "cancel": [
        {"trigger": event, "source": CANCEL_REQUESTED, "dest": CANCELLED, "before": [DISCARD_RESULT]}
        for event in RESULT_EVENTS
    ],
    # The result wins: the future ends as if no cancel had been asked.
    "deliver": [
        {"trigger": RESULT_SUCCESS, "source": CANCEL_REQUESTED, "dest": DONE, "before": [KEEP_RESULT]},
        {"trigger": RESULT_FAILED, "source": CANCEL_REQUESTED, "dest": FAILED, "before": [KEEP_RESULT]},
        {"trigger": RESULT_WORKER_DIED, "source": CANCEL_REQUESTED, "dest": FAILED, "before": [KEEP_RESULT]},
    ],
}

#: A late-result policy's name: what ``late_result=`` takes besides a
#: Lifecycle (``FutureManager``, ``Client``, the fuzz kit, the explorer).
#: The names are fixed, so a type checker catches a misspelt one; a
#: lifecycle of one's own is passed as the Lifecycle itself. One name per key
#: of ``LATE_RESULT_TRANSITIONS`` (tests/test_typing.py checks they agree).
Policy: TypeAlias = LateResult
POLICIES: Final[tuple[Policy, ...]] = get_args(Policy)
DEFAULT_POLICY: Final[Policy] = "cancel"

# Kept for readers of the plain lists (tests, the docs' tables).
COMMON_TRANSITIONS: Final = _common([PENDING])


def declaration(policy: str = DEFAULT_POLICY, *, started: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``transitions.Machine`` describing ``policy``.

    With ``started=True``, the lifecycle taskfate's own ``Client`` runs: a
    ``running`` state entered on the scheduler's ``TaskStarted``, in which
    ``running()`` is True; a refused cancel returns there (the scheduler
    refuses a gentle cancel only for a task that is running). A fresh copy
    each call, so a caller (a test breaking the declaration on purpose, a
    diagram tool adding styling) cannot alter the original.
    """
    if policy not in LATE_RESULT_TRANSITIONS:
        raise ValueError(f"unknown late_result policy {policy!r}; choose one of {POLICIES}")
    states = copy.deepcopy(STATES)
    working = [PENDING]
    refused_to = PENDING
    extra: list[dict[str, Any]] = []
    if started:
        states.insert(1, {"name": RUNNING, "tags": ["running"]})
        working = [PENDING, RUNNING]
        refused_to = RUNNING
        extra = [{"trigger": STARTED, "source": PENDING, "dest": RUNNING, "after": [NOTE_STARTED]}]
    refused = {"trigger": CONFIRM_CANCEL_FAILED, "source": CANCEL_REQUESTED, "dest": refused_to, "after": [NOTE_REFUSED]}
    transitions = extra + _common(working) + [refused] + copy.deepcopy(LATE_RESULT_TRANSITIONS[policy])
    return {"states": states, "transitions": transitions, "initial": INITIAL}


#: The stock lifecycles, one per late-result policy: what ``FutureManager``
#: runs by default (a peer that sends no started notice).
STOCK_LIFECYCLES: Final[dict[str, Lifecycle]] = {
    policy: declare(declaration(policy), messages=stock_messages, name=policy, late_result=policy) for policy in POLICIES
}
#: The lifecycles with a ``running`` state, one per policy: what taskfate's
#: own ``Client`` runs (its scheduler sends ``TaskStarted``).
STARTED_LIFECYCLES: Final[dict[str, Lifecycle]] = {
    policy: declare(declaration(policy, started=True), messages=started_messages, name=f"{policy}+running", late_result=policy)
    for policy in POLICIES
}
