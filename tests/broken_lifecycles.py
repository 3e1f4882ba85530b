"""Deliberately broken copies of the lifecycle declaration.

Each function returns the declaration of the default policy with one mistake
of a kind that ships in real clients. The explorer and the stateful suite must
both catch every one; ``tests/test_explore.py`` checks that they do. Also
loadable from the command line: ``taskfate explore --declaration
broken_lifecycles:wrong_destination`` with this folder on ``PYTHONPATH``.
"""

from __future__ import annotations

from typing import Any

from taskfate.fsm import lifecycle


def _rules(declaration: dict[str, Any], trigger: str, source: str) -> list[dict[str, Any]]:
    found = [
        rule
        for rule in declaration["transitions"]
        if rule["trigger"] == trigger and (rule["source"] == source or isinstance(rule["source"], list) and source in rule["source"])
    ]
    assert found, f"no rule for {trigger} in {source}"
    return found


def wrong_destination() -> dict[str, Any]:
    """A failed result completes the future as done. (Sending a success to
    ``failed`` instead leaves ``done`` unreachable, which ``declare``
    refuses.)"""
    declaration = lifecycle.declaration()
    (rule,) = _rules(declaration, lifecycle.RESULT_FAILED, lifecycle.PENDING)
    rule["dest"] = lifecycle.DONE
    return declaration


def dropped_transition() -> dict[str, Any]:
    """The rule for a failure reaching a pending future is missing: the result
    is ignored and the future waits for one forever. (Dropping the success
    rule instead leaves ``done`` unreachable, which ``declare`` refuses.)"""
    declaration = lifecycle.declaration()
    (rule,) = _rules(declaration, lifecycle.RESULT_FAILED, lifecycle.PENDING)
    declaration["transitions"].remove(rule)
    return declaration


def missing_timeout() -> dict[str, Any]:
    """Entering cancel_requested arms no confirm timer."""
    declaration = lifecycle.declaration()
    for state in declaration["states"]:
        if state["name"] == lifecycle.CANCEL_REQUESTED:
            state["on_enter"] = []
    return declaration


def unrecorded_late_result() -> dict[str, Any]:
    """A result that races a cancel ends the future cancelled without a record."""
    declaration = lifecycle.declaration()
    for event in lifecycle.RESULT_EVENTS:
        (rule,) = _rules(declaration, event, lifecycle.CANCEL_REQUESTED)
        rule["before"] = []
    return declaration


def leavable_terminal() -> dict[str, Any]:
    """A failure report reaching a finished future finishes it again, failed
    (the rule is shared by every terminal state, so all three are leavable)."""
    declaration = lifecycle.declaration()
    (rule,) = _rules(declaration, lifecycle.RESULT_FAILED, lifecycle.DONE)
    rule["dest"] = lifecycle.FAILED
    return declaration


BROKEN = {
    "wrong_destination": wrong_destination,
    "dropped_transition": dropped_transition,
    "missing_timeout": missing_timeout,
    "unrecorded_late_result": unrecorded_late_result,
    "leavable_terminal": leavable_terminal,
}


# -- The scheduler's side ------------------------------------------------------


def _scheduler_rules(declaration: dict[str, Any], trigger: str, source: str) -> list[dict[str, Any]]:
    return _rules(declaration, trigger, source)


def silent_dependants() -> dict[str, Any]:
    """A node whose dependency was cancelled is cancelled without a word: the
    bug of a graph node that becomes ready while its graph is cancelled."""
    from taskfate.scheduler import lifecycle as scheduler

    declaration = scheduler.declaration()
    (rule,) = _scheduler_rules(declaration, scheduler.DEPENDENCY_CANCELED, scheduler.WAITING)
    rule["after"] = [callback for callback in rule["after"] if callback != scheduler.SEND_CANCELED]
    return declaration


def unconfirmed_forced_cancel() -> dict[str, Any]:
    """A running task stopped by a forced cancel is never confirmed."""
    from taskfate.scheduler import lifecycle as scheduler

    declaration = scheduler.declaration()
    (rule,) = _scheduler_rules(declaration, scheduler.CANCEL_FORCE, scheduler.RUNNING)
    rule["after"] = [callback for callback in rule["after"] if callback != scheduler.SEND_CANCELED]
    return declaration
