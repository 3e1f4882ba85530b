"""The declaration, compiled into the table the futures execute.

Calling ``transitions`` for every message would cost more than a whole bare
``concurrent.futures.Future`` lifecycle, and a ``Machine`` (or ``add_model``)
per future costs far more again. So each policy's declaration is loaded into a
real ``transitions.Machine`` once, at import, and read back out of that machine
into a nested dict ``state -> event -> Rule``. Reading it back, rather than
re-reading our own lists, means the table holds exactly what ``transitions``
understood: the same callbacks in the same order (before, exit, enter, after).
A differential test drives both forms with the same messages and checks that
they agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from transitions import Machine

from taskfate.fsm import lifecycle


class Rule(NamedTuple):
    """What one event does in one state.

    ``dest`` is ``None`` for an internal transition (the state stays and no
    exit/enter callbacks run). ``before`` holds the transition's ``before``
    callbacks followed by the source state's ``on_exit`` (for a real change);
    ``after`` holds the destination's ``on_enter`` followed by the transition's
    ``after``: the order in which ``transitions`` calls them around the state
    change.
    """

    dest: str | None
    before: tuple[str, ...]
    after: tuple[str, ...]


class DeclarationError(ValueError):
    """The declaration uses something the compiled table cannot execute."""


@dataclass(frozen=True)
class Lifecycle:
    """One policy's lifecycle: the declared machine and its compiled table."""

    policy: str
    states: tuple[str, ...]
    initial: str
    terminal: frozenset[str]
    events: tuple[str, ...]
    machine: Any  # transitions.Machine: untyped upstream
    table: dict[str, dict[str, Rule]]

    def rule(self, state: str, event: str) -> Rule | None:
        """The rule for ``event`` in ``state``, or ``None`` when it is ignored."""
        return self.table[state].get(event)


def compile_machine(machine: Any, policy: str) -> Lifecycle:
    """Read ``machine`` (a declared ``transitions.Machine``) into a table.

    Refuses what the table executor does not implement (conditions, prepare
    callbacks, machine-wide callbacks, two rules for one state and event) so
    that the executed form can never silently differ from the declared one.
    """
    for hook in ("before_state_change", "after_state_change", "prepare_event", "finalize_event", "on_exception", "on_final"):
        if getattr(machine, hook, None):
            raise DeclarationError(f"machine-wide {hook} callbacks are not supported")
    states = tuple(machine.states)
    terminal = frozenset(name for name, state in machine.states.items() if getattr(state, "final", False))
    table: dict[str, dict[str, Rule]] = {state: {} for state in states}
    for event_name, event in machine.events.items():
        for source, candidates in event.transitions.items():
            if len(candidates) != 1:
                raise DeclarationError(f"{len(candidates)} rules for {event_name!r} in {source!r}")
            (transition,) = candidates
            if transition.conditions or transition.prepare:
                raise DeclarationError(f"{event_name!r} in {source!r} has conditions; declare a policy instead")
            before = [_name(cb) for cb in transition.before]
            after = [_name(cb) for cb in transition.after]
            if transition.dest is not None:
                before += [_name(cb) for cb in machine.states[source].on_exit]
                after = [_name(cb) for cb in machine.states[transition.dest].on_enter] + after
            table[source][event_name] = Rule(transition.dest, tuple(before), tuple(after))
    return Lifecycle(
        policy=policy,
        states=states,
        initial=machine.initial,
        terminal=terminal,
        events=tuple(machine.events),
        machine=machine,
        table=table,
    )


def _name(callback: Any) -> str:
    if not isinstance(callback, str):
        raise DeclarationError(f"callbacks must be named, got {callback!r}")
    return callback


def build_machine(policy: str = lifecycle.DEFAULT_POLICY, model: Any = None, machine_class: Any = Machine, **extra: Any) -> Any:
    """A ``transitions`` machine for ``policy``'s declaration.

    With ``model=None`` the machine drives no object, which is all the table
    compiler and the diagram tools need; tests pass a model to drive it.
    """
    return machine_class(model=model, **lifecycle.declaration(policy), **extra)


LIFECYCLES: dict[str, Lifecycle] = {
    policy: compile_machine(build_machine(policy), policy) for policy in lifecycle.POLICIES
}


def get_lifecycle(policy: str) -> Lifecycle:
    """The compiled lifecycle of ``policy``; ``ValueError`` for an unknown one."""
    try:
        return LIFECYCLES[policy]
    except KeyError:
        raise ValueError(f"unknown late_result policy {policy!r}; choose one of {lifecycle.POLICIES}") from None


class Executor:
    """Runs a compiled lifecycle on plain model objects.

    The generic form of what the client's ``FutureManager`` runs as
    generated steps (``taskfate.client.steps``): each model keeps its state
    name in ``state``; callbacks named in the declaration are methods of
    ``model_class`` taking the event's one argument, resolved once here. Used by the reference scheduler, whose
    tasks need no waiter or callback machinery.
    """

    def __init__(self, lifecycle: Lifecycle, model_class: type) -> None:
        self.lifecycle = lifecycle
        self._table = {
            state: {
                event: (
                    rule.dest,
                    tuple(getattr(model_class, name) for name in rule.before),
                    tuple(getattr(model_class, name) for name in rule.after),
                )
                for event, rule in rules.items()
            }
            for state, rules in lifecycle.table.items()
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
