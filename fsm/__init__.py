"""The future lifecycle, declared once, and everything derived from it.

``taskfate.fsm.lifecycle`` holds the declaration (states, triggers, rules per
late-result policy) as plain data for ``transitions``; ``taskfate.fsm.table``
compiles it into the table the client's futures execute. This package imports
the protocol layer and never does I/O.
"""

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
    TERMINAL,
    declaration,
)
from taskfate.fsm.table import LIFECYCLES, DeclarationError, Lifecycle, Rule, build_machine, compile_machine, get_lifecycle

__all__ = [
    "CANCELLED",
    "CANCEL_REQUESTED",
    "DEFAULT_POLICY",
    "DONE",
    "EVENTS",
    "FAILED",
    "LIFECYCLES",
    "MESSAGE_EVENTS",
    "PENDING",
    "POLICIES",
    "TERMINAL",
    "DeclarationError",
    "Lifecycle",
    "Rule",
    "build_machine",
    "compile_machine",
    "declaration",
    "get_lifecycle",
]
