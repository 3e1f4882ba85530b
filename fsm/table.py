"""The stock lifecycles by policy name, and the generic table executor.

Reading a declaration into a table (:func:`~taskfate.fsm.declare.compile_machine`)
and checking it (:func:`~taskfate.fsm.declare.declare`) live in
``taskfate.fsm.declare``; this module keeps the names older callers import
and the plain :class:`Executor` that runs any table on model objects.
"""

from __future__ import annotations

from typing import Any

from taskfate.fsm import lifecycle
from taskfate.fsm.declare import DeclarationError, Lifecycle, Rule, Table, TaggedMachine, compile_machine

__all__ = [
    "LIFECYCLES",
    "DeclarationError",
    "Executor",
    "Lifecycle",
    "Rule",
    "Table",
    "build_machine",
    "compile_machine",
    "get_lifecycle",
]

#: The stock lifecycles by late-result policy.
LIFECYCLES: dict[str, Lifecycle] = lifecycle.STOCK_LIFECYCLES


def get_lifecycle(policy: str, *, started: bool = False) -> Lifecycle:
    """The stock lifecycle of ``policy`` (with ``started=True``, the one with a
    ``running`` state); ``ValueError`` for an unknown policy."""
    chosen = lifecycle.STARTED_LIFECYCLES if started else lifecycle.STOCK_LIFECYCLES
    try:
        return chosen[policy]
    except KeyError:
        raise ValueError(f"unknown late_result policy {policy!r}; choose one of {lifecycle.POLICIES}") from None


def build_machine(policy: str = lifecycle.DEFAULT_POLICY, model: Any = None, machine_class: Any = TaggedMachine, **extra: Any) -> Any:
    """A ``transitions`` machine for ``policy``'s stock declaration.

    With ``model=None`` the machine drives no object; tests pass a model to
    drive it (the differential tests compare it with the client's runtime).
    """
    options = {"auto_transitions": False, "ignore_invalid_triggers": True, **extra}
    return machine_class(model=model, **lifecycle.declaration(policy), **options)


class Executor:
    """Runs a table on plain model objects.

    Each model keeps its state name in ``state``; callbacks named in the
    declaration are methods of ``model_class`` taking the event's one
    argument, resolved once here. Used by the reference scheduler and the
    fuzz kit's reference model, which need no waiter or callback machinery.
    """

    def __init__(self, table: Table, model_class: type) -> None:
        self.lifecycle = table
        self._table = {
            state: {
                event: (
                    rule.dest,
                    tuple(getattr(model_class, name) for name in rule.before),
                    tuple(getattr(model_class, name) for name in rule.after),
                )
                for event, rule in rules.items()
            }
            for state, rules in table.table.items()
        }

    def fire(self, model: Any, event: str, argument: Any = None) -> bool:
        """Apply ``event`` to ``model``; False when its state has no rule for it."""
        rule = self._table[model.state].get(event)
        if rule is None:
            return False
        dest, before, after = rule
        for callback in before:
            callback(model, argument)
        if dest is not None:
            model.state = dest
        for callback in after:
            callback(model, argument)
        return True
