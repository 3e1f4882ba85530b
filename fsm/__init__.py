"""The future lifecycle, declared once, and everything derived from it.

:func:`declare` is the one way to declare a lifecycle (``taskfate.fsm.declare``
says what it refuses and why); ``taskfate.fsm.lifecycle`` holds the stock
declarations, built with it. The explorer, the diagrams and the fuzz kit read
any :class:`Lifecycle`. This package imports the protocol layer and never
does I/O.
"""

from taskfate.fsm.declare import (
    CALLBACKS,
    LOCAL_EVENTS,
    OUTCOMES,
    TAGS,
    DeclarationError,
    Lifecycle,
    MessageClassifier,
    Rule,
    Table,
    compile_machine,
    declare,
)
from taskfate.fsm.lifecycle import (
    CANCEL_REQUESTED,
    CANCELLED,
    DEFAULT_POLICY,
    DONE,
    EVENTS,
    FAILED,
    MESSAGE_EVENTS,
    PENDING,
    POLICIES,
    RUNNING,
    STARTED_LIFECYCLES,
    STOCK_LIFECYCLES,
    TERMINAL,
    Policy,
    declaration,
    started_messages,
    stock_messages,
)
from taskfate.fsm.table import LIFECYCLES, Executor, build_machine, get_lifecycle

__all__ = [
    "CALLBACKS",
    "CANCELLED",
    "CANCEL_REQUESTED",
    "DEFAULT_POLICY",
    "DONE",
    "EVENTS",
    "FAILED",
    "LIFECYCLES",
    "LOCAL_EVENTS",
    "MESSAGE_EVENTS",
    "OUTCOMES",
    "PENDING",
    "POLICIES",
    "RUNNING",
    "STARTED_LIFECYCLES",
    "STOCK_LIFECYCLES",
    "TAGS",
    "TERMINAL",
    "DeclarationError",
    "Executor",
    "Lifecycle",
    "MessageClassifier",
    "Policy",
    "Rule",
    "Table",
    "build_machine",
    "compile_machine",
    "declaration",
    "declare",
    "get_lifecycle",
    "started_messages",
    "stock_messages",
]
