"""Declaring a future lifecycle: the one way in, and what it refuses.

Rules of this module
--------------------

* A lifecycle is declared as ``transitions.Machine`` keyword arguments
  (``states``, ``transitions``, ``initial``) and handed to :func:`declare`
  with a message classifier. ``declare`` builds a real ``transitions`` machine
  from it, reads that machine back into a table (so the table holds exactly
  what ``transitions`` understood), checks that the table can be run safely,
  and returns an immutable :class:`Lifecycle`.
* Everything the client's futures, the explorer, the fuzz kit and the
  diagrams need to know about a lifecycle is on the ``Lifecycle``: which
  states are final and with what outcome, in which states ``running()`` is
  True, which states await the peer's answer, which events are local and
  which come from the peer, which callbacks are named. None of them reads a
  stock state or event name to decide behaviour.
* This module knows the library's *vocabulary* (the local events and the
  callbacks the stock ``Future`` implements) and nothing about any one
  protocol's messages: those are the classifier's business.

The vocabulary
--------------

States say what the stdlib future needs to know through transitions' own
``Tags`` state feature: every final state carries exactly one outcome tag
(``"result"``: ``result()`` returns a value; ``"exception"``: it raises the
task's error; ``"cancelled"``: ``cancelled()`` is True), and a live state
tagged ``"running"`` is one in which ``running()`` is True.

Local events are fired by the library itself: ``cancel`` (``Future.cancel``),
``clear``, ``close``, ``connection_lost`` (the manager's methods of those
names), ``confirm_timeout`` (the confirm timer), ``group_cancel`` (a graph
sibling's cancel). Every other trigger is a peer event: the classifier maps
an incoming message onto it.

A state whose ``on_enter`` names ``arm_confirm_timeout`` *awaits* the peer's
answer: ``cancel(timeout)`` waits while its future sits in such a state, the
timer fires ``confirm_timeout`` only there, and ``clear()`` reports the
futures left in one.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, TypeAlias

from transitions import Machine
from transitions.extensions.states import Tags, add_state_features

__all__ = [
    "CALLBACKS",
    "LOCAL_EVENTS",
    "OUTCOMES",
    "TAGS",
    "LATE_RESULTS",
    "DeclarationError",
    "LateResult",
    "Lifecycle",
    "MessageClassifier",
    "Rule",
    "Table",
    "compile_machine",
    "declare",
]

# -- Outcome and state tags ------------------------------------------------------

RESULT: Final = "result"
EXCEPTION: Final = "exception"
CANCELLED: Final = "cancelled"
RUNNING: Final = "running"

#: The tags of a final state; each final state carries exactly one.
OUTCOMES: Final = (RESULT, EXCEPTION, CANCELLED)
#: Every tag a state may carry.
TAGS: Final = frozenset((*OUTCOMES, RUNNING))

#: What a lifecycle may promise about a result that races a cancel
#: (``declare(late_result=...)``).
LateResult: TypeAlias = Literal["cancel", "deliver"]
LATE_RESULTS: Final = ("cancel", "deliver")

# -- Local events: fired by the library, never by a message -----------------------

CANCEL: Final = "cancel"
CLEAR: Final = "clear"
CLOSE: Final = "close"
CONNECTION_LOST: Final = "connection_lost"
CONFIRM_TIMEOUT: Final = "confirm_timeout"
GROUP_CANCEL: Final = "group_cancel"

LOCAL_EVENTS: Final = (CANCEL, CLEAR, CLOSE, CONNECTION_LOST, CONFIRM_TIMEOUT, GROUP_CANCEL)

# -- Callbacks the stock Future implements ------------------------------------------
# Each is a method of taskfate.client.Future taking the event's one argument
# (the message, the force flag, the connection error, ...); a declaration may
# also name methods of its own Future subclass.

KEEP_RESULT: Final = "keep_result"  # store the result or failure to be read
DISCARD_RESULT: Final = "discard_result"  # record a result that lost to a cancel
SEND_CANCEL: Final = "send_cancel"  # one TaskCancel, for the task or its group
CANCEL_GROUP: Final = "cancel_group"  # move the group's other members along
ARM_CONFIRM_TIMEOUT: Final = "arm_confirm_timeout"
DISARM_CONFIRM_TIMEOUT: Final = "disarm_confirm_timeout"
KEEP_CONNECTION_ERROR: Final = "keep_connection_error"
NOTE_NOT_FOUND: Final = "note_not_found"
NOTE_TIMEOUT: Final = "note_timeout"
NOTE_REFUSED: Final = "note_refused"
NOTE_STARTED: Final = "note_started"

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
    NOTE_STARTED,
)

#: message -> event name, or ``None`` for a message that is not for futures.
MessageClassifier = Callable[[Any], "str | None"]

#: What ``declare`` passes to ``transitions.Machine`` unless the declaration
#: says otherwise: no ``to_<state>`` triggers (they would be rules nobody
#: declared), and an event with no rule is ignored, not an error.
_MACHINE_DEFAULTS: Final = {"auto_transitions": False, "ignore_invalid_triggers": True}
_ACCEPTED_KEYS: Final = frozenset(("states", "transitions", "initial", "auto_transitions", "ignore_invalid_triggers", "name"))


@add_state_features(Tags)
class TaggedMachine(Machine):
    """``transitions.Machine`` whose states carry tags (its ``Tags`` feature)."""


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
    """A declaration that cannot be run safely; the message names the state
    and event at fault."""


@dataclass(frozen=True, eq=False)
class Table:
    """A declared machine read back into ``state -> event -> Rule``.

    The part of a lifecycle any executor needs (the reference scheduler's task
    lifecycle is one too); :class:`Lifecycle` adds what a future needs.
    """

    name: str
    states: tuple[str, ...]
    initial: str
    terminal: frozenset[str]
    events: tuple[str, ...]
    machine: Any = field(repr=False)  # transitions.Machine: untyped upstream
    table: Mapping[str, Mapping[str, Rule]] = field(repr=False)

    @property
    def policy(self) -> str:
        """The name, under the word older callers used for it."""
        return self.name

    def rule(self, state: str, event: str) -> Rule | None:
        """The rule for ``event`` in ``state``, or ``None`` when it is ignored."""
        return self.table[state].get(event)


@dataclass(frozen=True, eq=False, kw_only=True)
class Lifecycle(Table):
    """A future lifecycle, checked and ready to run. Made by :func:`declare`.

    ``outcomes`` maps each final state to its outcome tag; ``running`` holds
    the states tagged ``"running"``; ``awaiting`` the states that arm the
    confirm timeout on entry. ``local_events`` and ``peer_events`` split the
    declared triggers; ``messages`` is the classifier that turns an incoming
    message into a peer event. ``callbacks`` lists every callback the rules
    name, library and user ones alike. ``declaration`` is a private copy of
    what was declared (the diagrams draw from it).
    """

    outcomes: Mapping[str, str]
    running: frozenset[str]
    awaiting: frozenset[str]
    local_events: tuple[str, ...]
    peer_events: tuple[str, ...]
    callbacks: tuple[str, ...]
    messages: MessageClassifier = field(repr=False)
    declaration: Mapping[str, Any] = field(repr=False)
    #: The promise made about a result that arrives while a cancel awaits its
    #: answer: ``"cancel"`` (the future still ends cancelled), ``"deliver"``
    #: (it ends with that result), or ``None`` (no promise declared). The
    #: explorer holds the rules to it (``policy_kept``).
    late_result: LateResult | None = None

    @property
    def live(self) -> tuple[str, ...]:
        """The states that are not final, in declared order."""
        return tuple(state for state in self.states if state not in self.outcomes)

    @property
    def user_callbacks(self) -> tuple[str, ...]:
        """Callbacks the stock ``Future`` does not implement: a ``Future``
        subclass must (``FutureManager`` checks when it is built)."""
        return tuple(name for name in self.callbacks if name not in CALLBACKS)

    def outcome(self, state: str) -> str | None:
        """``state``'s outcome tag, or ``None`` for a live state."""
        return self.outcomes.get(state)

    def states_with(self, outcome: str) -> tuple[str, ...]:
        """The final states whose outcome is ``outcome``."""
        return tuple(state for state in self.states if self.outcomes.get(state) == outcome)

    def result_events(self) -> tuple[str, ...]:
        """Peer events that carry a task's result: some rule keeps or
        discards what they bring."""
        keeping = {KEEP_RESULT, DISCARD_RESULT}
        return tuple(
            event
            for event in self.peer_events
            if any(keeping.intersection(rules[event].before + rules[event].after) for rules in self.table.values() if event in rules)
        )

    def confirm_events(self) -> tuple[str, ...]:
        """Peer events that answer a cancel request: a state that awaits the
        answer has a rule for them, and they carry no result."""
        results = self.result_events()
        awaited = {event for state in self.awaiting for event in self.table[state]}
        return tuple(event for event in self.peer_events if event in awaited and event not in results)

    def notice_events(self) -> tuple[str, ...]:
        """Peer events that are neither results nor answers (a started
        notice, a progress report)."""
        answers = set(self.result_events()) | set(self.confirm_events())
        return tuple(event for event in self.peer_events if event not in answers)

    def unasked_events(self) -> frozenset[str]:
        """Answers the declaration accepts in a live state that awaits
        nothing: the peer may send them unasked (a scheduler cancelling a
        task on its own)."""
        calm = [state for state in self.live if state not in self.awaiting]
        return frozenset(event for event in self.confirm_events() if any(event in self.table[state] for state in calm))

    def rules(self) -> list[tuple[str, str, Rule]]:
        """Every declared ``(state, event, rule)``, in declared state order."""
        return [(state, event, rule) for state in self.states for event, rule in self.table[state].items()]


def declare(
    declaration: Mapping[str, Any], *, messages: MessageClassifier, name: str | None = None, late_result: LateResult | None = None
) -> Lifecycle:
    """Check ``declaration`` and return it as a :class:`Lifecycle`.

    ``declaration`` is ``transitions.Machine`` keyword arguments (``states``,
    ``transitions``, ``initial``); states carry their outcome and ``running``
    tags as transitions' ``Tags`` feature reads them. ``messages`` maps an
    incoming message to the event it fires (``None``: not for futures).
    ``late_result`` states the promise the rules make about a result that
    races a cancel (``"cancel"`` or ``"deliver"``), for the explorer to
    check; ``None`` makes none.

    Raises :class:`DeclarationError` for what cannot be run safely: a final
    state without exactly one outcome tag, an outcome tag on a live state,
    ``running`` on a final state, an unknown tag, a live state that ``close``
    or ``connection_lost`` does not end, a rule with conditions or unnamed
    callbacks, machine-wide callbacks, a state unreachable from the initial
    one. A callback the future class lacks is refused later, when a
    ``FutureManager`` is built with that class.
    """
    if not callable(messages):
        raise DeclarationError(f"messages must be a callable message -> event name, got {messages!r}")
    if late_result not in (None, *LATE_RESULTS):
        raise DeclarationError(f"late_result must be one of {LATE_RESULTS} or None, got {late_result!r}")
    if not isinstance(declaration, Mapping):
        raise DeclarationError(f"a declaration is transitions.Machine keyword arguments (a mapping), got {type(declaration).__name__}")
    unknown_keys = set(declaration) - _ACCEPTED_KEYS
    if unknown_keys:
        raise DeclarationError(f"declaration keys {sorted(unknown_keys)} are not supported; use {sorted(_ACCEPTED_KEYS)}")
    declared = copy.deepcopy(dict(declaration))
    for key, value in _MACHINE_DEFAULTS.items():
        declared.setdefault(key, value)
    if declared["auto_transitions"]:
        raise DeclarationError("auto_transitions would add a to_<state> rule from every state; declare the rules instead")
    name = name or str(declared.get("name") or "custom")
    declared.pop("name", None)
    try:
        machine = TaggedMachine(model=None, **declared)
    except DeclarationError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise DeclarationError(f"transitions refused the declaration: {exc}") from exc
    table = compile_machine(machine, name)
    outcomes: dict[str, str] = {}
    running: set[str] = set()
    for state_name in table.states:
        tags = list(getattr(machine.states[state_name], "tags", []) or [])
        unknown = [tag for tag in tags if tag not in TAGS]
        if unknown:
            raise DeclarationError(f"state {state_name!r} has unknown tag(s) {unknown}; tags are {sorted(TAGS)}")
        carried = [tag for tag in tags if tag in OUTCOMES]
        final = state_name in table.terminal
        if final and len(carried) != 1:
            raise DeclarationError(
                f"final state {state_name!r} must carry exactly one outcome tag of {list(OUTCOMES)}, has {carried or 'none'}"
            )
        if not final and carried:
            raise DeclarationError(f"live state {state_name!r} carries outcome tag {carried[0]!r}; only a final state ends a future")
        if RUNNING in tags:
            if final:
                raise DeclarationError(f"final state {state_name!r} is tagged 'running'; running() is False once a future is done")
            running.add(state_name)
        if final:
            outcomes[state_name] = carried[0]
    for state_name in table.states:
        if state_name in outcomes:
            continue
        for event in (CLOSE, CONNECTION_LOST):
            rule = table.table[state_name].get(event)
            if rule is None:
                raise DeclarationError(f"live state {state_name!r} has no rule for {event!r}; close() and a lost connection must end every future")
            if rule.dest not in outcomes:
                raise DeclarationError(
                    f"{state_name!r} --{event}--> {rule.dest!r} does not end the future; close() and a lost connection must end every future"
                )
    unreachable = _unreachable(table)
    if unreachable:
        raise DeclarationError(f"state(s) {unreachable} cannot be reached from the initial state {table.initial!r}")
    awaiting = frozenset(
        state_name for state_name in table.states if ARM_CONFIRM_TIMEOUT in [_name(cb, state_name, "on_enter") for cb in machine.states[state_name].on_enter]
    )
    callbacks = tuple(dict.fromkeys(name for rules in table.table.values() for rule in rules.values() for name in rule.before + rule.after))
    return Lifecycle(
        name=name,
        states=table.states,
        initial=table.initial,
        terminal=table.terminal,
        events=table.events,
        machine=machine,
        table=table.table,
        outcomes=outcomes,
        running=frozenset(running),
        awaiting=awaiting,
        local_events=tuple(event for event in table.events if event in LOCAL_EVENTS),
        peer_events=tuple(event for event in table.events if event not in LOCAL_EVENTS),
        callbacks=callbacks,
        messages=messages,
        declaration=declared,
        late_result=late_result,
    )


def compile_machine(machine: Any, name: str) -> Table:
    """Read ``machine`` (a declared ``transitions.Machine``) into a :class:`Table`.

    Refuses what a table executor does not implement (conditions, prepare
    callbacks, machine-wide callbacks, two rules for one state and event,
    callbacks that are not names) so that the executed form can never
    silently differ from the declared one.
    """
    for hook in ("before_state_change", "after_state_change", "prepare_event", "finalize_event", "on_exception", "on_final"):
        if getattr(machine, hook, None):
            raise DeclarationError(f"machine-wide {hook} callbacks are not supported")
    states = tuple(machine.states)
    terminal = frozenset(state_name for state_name, state in machine.states.items() if getattr(state, "final", False))
    table: dict[str, dict[str, Rule]] = {state: {} for state in states}
    for event_name, event in machine.events.items():
        for source, candidates in event.transitions.items():
            if len(candidates) != 1:
                raise DeclarationError(f"{len(candidates)} rules for {event_name!r} in {source!r}; declare one")
            (transition,) = candidates
            where = f"{source!r} --{event_name}-->"
            if transition.conditions or transition.prepare:
                raise DeclarationError(f"{where} has conditions or prepare callbacks; declare separate events instead")
            before = [_name(cb, source, event_name) for cb in transition.before]
            after = [_name(cb, source, event_name) for cb in transition.after]
            if transition.dest is not None:
                before += [_name(cb, source, "on_exit") for cb in machine.states[source].on_exit]
                after = [_name(cb, transition.dest, "on_enter") for cb in machine.states[transition.dest].on_enter] + after
            table[source][event_name] = Rule(transition.dest, tuple(before), tuple(after))
    return Table(
        name=name,
        states=states,
        initial=machine.initial,
        terminal=terminal,
        events=tuple(machine.events),
        machine=machine,
        table=table,
    )


def _name(callback: Any, state: str, where: str) -> str:
    if not isinstance(callback, str) or not callback.isidentifier():
        raise DeclarationError(f"callbacks are named by identifiers; {state!r} ({where}) has {callback!r}")
    return callback


def _unreachable(table: Table) -> list[str]:
    seen = {table.initial}
    frontier = [table.initial]
    while frontier:
        state = frontier.pop()
        for rule in table.table[state].values():
            if rule.dest is not None and rule.dest not in seen:
                seen.add(rule.dest)
                frontier.append(rule.dest)
    return [state for state in table.states if state not in seen]
