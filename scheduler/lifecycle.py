"""The reference scheduler's per-task lifecycle, declared once.

The other side of the conversation the client's lifecycle
(``taskfate.fsm.lifecycle``) listens to. Declared the same way, as plain data
for ``transitions``, so the two can be drawn and explored together: every
message the client's futures react to is sent by one of the callbacks named
here.

Rules of this module
--------------------

* Every decision the scheduler makes about one task lives in these tables.
  The scheduler's loop (``taskfate.scheduler.server``) turns socket traffic
  and worker events into the triggers below and implements the callbacks;
  it adds no rule of its own.
* A task is answered truthfully: a cancel of a task that has not started
  succeeds, a running task is stopped only when the cancel is forced (else
  the answer is "cancel failed" and the task runs on), and a task the
  scheduler has finished or never saw is "not found".
* An answer says which request it answers: the cancel triggers' argument is
  the ``TaskCancel``'s epoch, and the ``send_*`` callbacks echo it. Fired by
  any other trigger (a cancelled dependency, a client gone) they answer
  nobody's request and send epoch 0.
* A task whose dependency fails or is cancelled cannot run: it fails (naming
  the node) or is cancelled with it, and says so to the client, so no graph
  node is ever left unanswered.

States: ``waiting`` (dependencies unfinished), ``queued`` (ready, no worker
yet), ``running`` (on a worker), and the terminal ``succeeded``, ``failed``,
``canceled``.
"""

from __future__ import annotations

import copy
from typing import Any, Final

WAITING: Final = "waiting"
QUEUED: Final = "queued"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELED: Final = "canceled"

# Triggers
DEPENDENCIES_MET: Final = "dependencies_met"
DEPENDENCY_FAILED: Final = "dependency_failed"
DEPENDENCY_CANCELED: Final = "dependency_canceled"
ASSIGN: Final = "assign"
FINISH_SUCCESS: Final = "finish_success"
FINISH_FAILURE: Final = "finish_failure"
WORKER_LOST: Final = "worker_lost"
CANCEL_FORCE: Final = "cancel_force"
CANCEL_GENTLE: Final = "cancel_gentle"
CLIENT_GONE: Final = "client_gone"

EVENTS: Final = (
    DEPENDENCIES_MET,
    DEPENDENCY_FAILED,
    DEPENDENCY_CANCELED,
    ASSIGN,
    FINISH_SUCCESS,
    FINISH_FAILURE,
    WORKER_LOST,
    CANCEL_FORCE,
    CANCEL_GENTLE,
    CLIENT_GONE,
)

# Callbacks, implemented by the scheduler's task record.
ENQUEUE: Final = "enqueue"  # join the ready queue
START_ON_WORKER: Final = "start_on_worker"  # hand the payload to a worker
SEND_RESULT: Final = "send_result"  # TaskResult SUCCESS or FAILED
SEND_WORKER_DIED: Final = "send_worker_died"  # TaskResult WORKER_DIED
SEND_DEPENDENCY_FAILURE: Final = "send_dependency_failure"  # TaskResult FAILED naming the node
RELEASE_DEPENDANTS: Final = "release_dependants"  # dependants may become ready
FAIL_DEPENDANTS: Final = "fail_dependants"  # dependants get dependency_failed
CANCEL_DEPENDANTS: Final = "cancel_dependants"  # dependants get dependency_canceled
STOP_WORKER: Final = "stop_worker"  # kill the worker running the task
SEND_CANCELED: Final = "send_canceled"  # TaskCancelConfirm CANCELED
SEND_CANCEL_FAILED: Final = "send_cancel_failed"  # TaskCancelConfirm CANCEL_FAILED
SEND_NOT_FOUND: Final = "send_not_found"  # TaskCancelConfirm CANCEL_NOT_FOUND
FORGET: Final = "forget"  # drop the record once nobody can need it

CALLBACKS: Final = (
    ENQUEUE,
    START_ON_WORKER,
    SEND_RESULT,
    SEND_WORKER_DIED,
    SEND_DEPENDENCY_FAILURE,
    RELEASE_DEPENDANTS,
    FAIL_DEPENDANTS,
    CANCEL_DEPENDANTS,
    STOP_WORKER,
    SEND_CANCELED,
    SEND_CANCEL_FAILED,
    SEND_NOT_FOUND,
    FORGET,
)

NOT_STARTED: Final = [WAITING, QUEUED]
LIVE: Final = [WAITING, QUEUED, RUNNING]
TERMINAL: Final = [SUCCEEDED, FAILED, CANCELED]

STATES: Final[list[dict[str, Any]]] = [
    {"name": WAITING},
    {"name": QUEUED},
    {"name": RUNNING},
    {"name": SUCCEEDED, "final": True, "on_enter": [FORGET]},
    {"name": FAILED, "final": True, "on_enter": [FORGET]},
    {"name": CANCELED, "final": True, "on_enter": [FORGET]},
]

INITIAL: Final = WAITING

TRANSITIONS: Final[list[dict[str, Any]]] = [
    {"trigger": DEPENDENCIES_MET, "source": WAITING, "dest": QUEUED, "after": [ENQUEUE]},
    {
        "trigger": DEPENDENCY_FAILED,
        "source": WAITING,
        "dest": FAILED,
        "after": [SEND_DEPENDENCY_FAILURE, FAIL_DEPENDANTS],
    },
    {
        "trigger": DEPENDENCY_CANCELED,
        "source": WAITING,
        "dest": CANCELED,
        "after": [SEND_CANCELED, CANCEL_DEPENDANTS],
    },
    {"trigger": ASSIGN, "source": QUEUED, "dest": RUNNING, "after": [START_ON_WORKER]},
    {
        "trigger": FINISH_SUCCESS,
        "source": RUNNING,
        "dest": SUCCEEDED,
        "before": [SEND_RESULT],
        "after": [RELEASE_DEPENDANTS],
    },
    {
        "trigger": FINISH_FAILURE,
        "source": RUNNING,
        "dest": FAILED,
        "before": [SEND_RESULT],
        "after": [FAIL_DEPENDANTS],
    },
    {
        "trigger": WORKER_LOST,
        "source": RUNNING,
        "dest": FAILED,
        "before": [SEND_WORKER_DIED],
        "after": [FAIL_DEPENDANTS],
    },
    # Cancels: a task that has not started is always cancelled.
    {
        "trigger": CANCEL_FORCE,
        "source": NOT_STARTED,
        "dest": CANCELED,
        "after": [SEND_CANCELED, CANCEL_DEPENDANTS],
    },
    {
        "trigger": CANCEL_GENTLE,
        "source": NOT_STARTED,
        "dest": CANCELED,
        "after": [SEND_CANCELED, CANCEL_DEPENDANTS],
    },
    # A running one only when forced; otherwise it runs on and says so.
    {
        "trigger": CANCEL_FORCE,
        "source": RUNNING,
        "dest": CANCELED,
        "before": [STOP_WORKER],
        "after": [SEND_CANCELED, CANCEL_DEPENDANTS],
    },
    {"trigger": CANCEL_GENTLE, "source": RUNNING, "dest": None, "after": [SEND_CANCEL_FAILED]},
    # A finished task is no longer the scheduler's to cancel.
    {"trigger": CANCEL_FORCE, "source": TERMINAL, "dest": None, "after": [SEND_NOT_FOUND]},
    {"trigger": CANCEL_GENTLE, "source": TERMINAL, "dest": None, "after": [SEND_NOT_FOUND]},
    # The client left or went silent: free everything it had, and say so.
    # A client that only seemed silent (a stalled I/O thread, a heartbeat
    # slower than the scheduler's patience) learns its tasks were cancelled
    # instead of waiting for results that will never come.
    {"trigger": CLIENT_GONE, "source": NOT_STARTED, "dest": CANCELED, "after": [SEND_CANCELED]},
    {"trigger": CLIENT_GONE, "source": RUNNING, "dest": CANCELED, "before": [STOP_WORKER], "after": [SEND_CANCELED]},
]

POLICY: Final = "scheduler"

#: For the docs' table of rules: the client message behind each trigger that has one.
MESSAGES: Final[dict[str, str]] = {
    CANCEL_FORCE: "TaskCancel force",
    CANCEL_GENTLE: "TaskCancel not forced",
    CLIENT_GONE: "ClientDisconnect or silence",
}

#: For the docs' table of rules: what a reader must see a callback do.
EFFECTS: Final[dict[str, str]] = {
    SEND_RESULT: "sends TaskResult",
    SEND_WORKER_DIED: "sends TaskResult WORKER_DIED",
    SEND_DEPENDENCY_FAILURE: "sends TaskResult FAILED naming the node",
    SEND_CANCELED: "sends CANCELED",
    SEND_CANCEL_FAILED: "sends CANCEL_FAILED",
    SEND_NOT_FOUND: "sends CANCEL_NOT_FOUND",
    STOP_WORKER: "kills the worker",
    RELEASE_DEPENDANTS: "dependants may start",
    FAIL_DEPENDANTS: "dependants take dependency_failed",
    CANCEL_DEPENDANTS: "dependants take dependency_canceled",
}


def declaration() -> dict[str, Any]:
    """Keyword arguments for ``transitions.Machine``; a fresh copy each call."""
    return {
        "states": copy.deepcopy(STATES),
        "transitions": copy.deepcopy(TRANSITIONS),
        "initial": INITIAL,
        "auto_transitions": False,
        "ignore_invalid_triggers": True,
    }


def build_machine(model: Any = None, **extra: Any) -> Any:
    """A ``transitions`` machine for the declaration (drives ``model`` if given)."""
    from transitions import Machine

    return Machine(model=model, **declaration(), **extra)


TITLE: Final = "the reference scheduler's task lifecycle"


def mermaid() -> str:
    """The task lifecycle as a Mermaid state diagram: states and events,
    top to bottom; :func:`table` says what each rule does."""
    from taskfate.fsm.diagram import declaration_mermaid

    return declaration_mermaid(declaration(), TITLE, direction="TB")


def legend() -> str:
    """How to read :func:`mermaid`'s picture, as markdown."""
    from taskfate.fsm.diagram import declaration_legend_markdown

    return declaration_legend_markdown(declaration())


def table() -> str:
    """Every rule, with the client message behind its trigger and what its
    callbacks do, as a markdown table."""
    from taskfate.fsm.diagram import declaration_table_markdown

    return declaration_table_markdown(declaration(), MESSAGES, EFFECTS)


def compiled() -> Any:
    """The declaration compiled into a ``taskfate.fsm.Lifecycle`` table."""
    from taskfate.fsm.table import compile_machine

    return compile_machine(build_machine(), POLICY)
