"""The declared rules, executed: one closure per (state, event).

A :class:`~taskfate.fsm.Lifecycle` says, for each state and event, which
callbacks run before the state changes, the destination, and which run after
(``Rule``). :func:`compile_steps` turns each rule into a :data:`Step`: a
closure over the rule's resolved callbacks and the constants the rule
implies (the history entry it records, the outcome its destination carries).
The closure's body in :func:`_step` is the whole interpreter; nothing is
generated and every step of every lifecycle runs this same code.

Resolving a callback
--------------------
A callback name resolves, once, to what the future class defines under it,
so a subclass's override is the one called. The library callbacks that only
forward to the manager (the :data:`HOST_CALLBACKS`: sending a cancel,
cancelling a group, the confirm deadline) resolve to the manager's own
implementation when the class does not override them: the same code the
``Future`` method would reach, one call sooner.

Who does what
-------------
A step runs with its :class:`Host`'s lock held (the ``FutureManager``). What
it causes outside (a message to send) is queued on the host and released once
the lock is free. When a step ends a future it also does the ending: stops
the host routing to it, wakes whoever waits on it, and returns the future's
done callbacks (a :data:`Due`) to whoever called the step, which runs them
once the lock is free (``on_message`` and ``dispatch`` do so themselves, a
step fired from inside another step queues them). Returning rather than
queueing is what keeps the commonest path, one result ending one future,
free of any queue.

The runtime's fields on a future
--------------------------------
A step writes three fields of the future, which nothing else writes:
``_fsm`` (the state's name), ``_outcome`` (the destination's outcome tag, or
``None`` while live) and ``_history`` (flat pairs ``(event, source, dest),
time``, the first a constant of the step, so a step allocates one tuple).
``Future`` reads them; :func:`history_of` is the one reader of the layout.
When the future ends, the step takes ``_callbacks`` (what
``add_done_callback`` gathered while the future was live) and, if somebody
waits (``_waiting``), calls ``_wake``.

Library callbacks that are one store
------------------------------------
``keep_result`` and ``keep_connection_error`` only store their argument in a
slot of the future. Unless the future class overrides them they resolve to
that slot's own setter (:data:`STORE_CALLBACKS`): the same store, without a
Python frame around it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from taskfate.fsm.declare import (
    ARM_CONFIRM_TIMEOUT,
    CANCEL_GROUP,
    DISARM_CONFIRM_TIMEOUT,
    KEEP_CONNECTION_ERROR,
    KEEP_RESULT,
    SEND_CANCEL,
    Lifecycle,
    Rule,
)

if TYPE_CHECKING:
    from taskfate.client.future import Future

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "HOST_CALLBACKS",
    "PLAIN_ENDING_CALLBACKS",
    "PlainEnding",
    "STORE_CALLBACKS",
    "Due",
    "Host",
    "Rules",
    "Step",
    "compile_steps",
    "history_of",
    "plain_endings",
    "missing_callbacks",
]

#: A finished future and the done callbacks it handed over: one callable,
#: or a list of them (as ``add_done_callback`` gathered them).
Due = tuple["Future", Any]

#: One rule, executed: ``step(future, argument)``, the host's lock held by
#: the caller; returns the :data:`Due` when the step ended a future that has
#: done callbacks, else ``None``.
Step = Callable[["Future", Any], "Due | None"]

#: How many transitions each future remembers, unless its manager says
#: otherwise (``FutureManager(history_limit=...)``).
DEFAULT_HISTORY_LIMIT = 16

#: Library callbacks whose ``Future`` methods forward to the host: resolved
#: to the host's implementation unless the future class overrides them.
HOST_CALLBACKS = (SEND_CANCEL, CANCEL_GROUP, ARM_CONFIRM_TIMEOUT, DISARM_CONFIRM_TIMEOUT)

#: Library callbacks that store their argument in a slot of the future, by
#: the slot they store it in: resolved to the slot's setter unless the
#: future class overrides them.
STORE_CALLBACKS = {KEEP_RESULT: "_message", KEEP_CONNECTION_ERROR: "_resolved"}


class Host(Protocol):
    """What the steps need of the manager that runs them, all of it, read
    once when they are compiled."""

    def clock(self) -> float:
        """The time a history entry records."""

    def forget(self, future: Future) -> None:
        """Stop routing messages (its own and its group's) to ``future``."""

    def ignored(self, future: Future, event: str) -> None:
        """``future``'s state has no rule for ``event``."""

    def send_cancel(self, future: Future, force: object) -> None: ...

    def cancel_group(self, future: Future, force: object) -> None: ...

    def arm_confirm_timeout(self, future: Future, argument: object) -> None: ...

    def disarm_confirm_timeout(self, future: Future, argument: object) -> None: ...


def missing_callbacks(lifecycle: Lifecycle, future_class: type) -> list[str]:
    """The callbacks ``lifecycle`` names that ``future_class`` lacks."""
    return [name for name in lifecycle.callbacks if not callable(getattr(future_class, name, None))]


def resolve(name: str, future_class: type[Future], host: Host) -> Callable[[Future, Any], object]:
    """What the rules call for callback ``name``: see the module's doc."""
    from taskfate.client.future import Future

    method: Callable[[Future, Any], object] = getattr(future_class, name)
    if method is getattr(Future, name, None):
        if name in HOST_CALLBACKS:
            forwarded: Callable[[Future, Any], object] = getattr(host, name)
            return forwarded
        if name in STORE_CALLBACKS:
            store: Callable[[Future, Any], object] = getattr(Future, STORE_CALLBACKS[name]).__set__
            return store
    return method


class Rules(dict[str, Step]):
    """One state's steps by event. An event the state has no rule for gets
    the step that counts it as ignored, so a dispatch is two subscripts and
    a call, with no test for a missing rule."""

    __slots__ = ("_ignoring",)

    def __init__(self, steps: dict[str, Step], ignoring: Callable[[str], Step]) -> None:
        super().__init__(steps)
        self._ignoring = ignoring

    def __missing__(self, event: str) -> Step:
        return self._ignoring(event)


def compile_steps(lifecycle: Lifecycle, future_class: type[Future], host: Host, history_limit: int) -> dict[str, Rules]:
    """``state -> event -> step`` for every declared rule of ``lifecycle``,
    run on futures of ``future_class`` for ``host``, keeping
    ``history_limit`` steps; any other event maps to a step that tells the
    host it was ignored."""
    missing = missing_callbacks(lifecycle, future_class)
    if missing:
        raise TypeError(
            f"lifecycle {lifecycle.name!r} names callback(s) {missing} that {future_class.__qualname__} does not define; "
            "a lifecycle's own callbacks are methods of a Future subclass (future_class=...)"
        )
    callbacks = {name: resolve(name, future_class, host) for name in lifecycle.callbacks}
    ignoring: dict[str, Step] = {}

    def ignoring_step(event: str) -> Step:
        step = ignoring.get(event)
        if step is None:
            ignored = host.ignored

            def step(future: Future, argument: Any) -> Due | None:
                ignored(future, event)
                return None

            step.__qualname__ = f"ignored[{event}]"
            ignoring[event] = step
        return step

    return {
        state: Rules(
            {event: _step(lifecycle, host, callbacks, state, event, rule, history_limit) for event, rule in rules.items()},
            ignoring_step,
        )
        for state, rules in lifecycle.table.items()
    }


def _step(
    lifecycle: Lifecycle,
    host: Host,
    callbacks: Mapping[str, Callable[[Future, Any], object]],
    source: str,
    event: str,
    rule: Rule,
    history_limit: int,
) -> Step:
    before = tuple(callbacks[name] for name in rule.before)
    after = tuple(callbacks[name] for name in rule.after)
    dest = rule.dest
    changes = dest is not None
    outcome = lifecycle.outcomes.get(dest) if dest is not None else None
    entry = (event, source, dest)
    limit = 2 * history_limit
    clock = host.clock
    forget = host.forget

    def step(future: Future, argument: Any) -> Due | None:
        for callback in before:
            callback(future, argument)
        if changes:
            future._fsm = dest  # type: ignore[assignment]
            future._outcome = outcome
            if limit:
                history = future._history
                if history:
                    history += (entry, clock())
                    future._history = history if len(history) <= limit else history[-limit:]
                else:
                    future._history = (entry, clock())
        for callback in after:
            callback(future, argument)
        if outcome is not None:
            # The future ended: route nothing more to it, wake its waiters,
            # and hand its done callbacks over, once.
            forget(future)
            if future._waiting is not None:
                future._wake(outcome)
            done = future._callbacks
            if done is not None:
                future._callbacks = None
                return future, done
        elif changes and future._waiting is not None:
            # Somebody may wait for this future to leave its state (a cancel
            # waiting for the answer).
            future._waiting.condition.notify_all()
        return None

    step.__qualname__ = f"step[{lifecycle.name}:{source}--{event}-->{dest}]"
    return step


def history_of(entries: tuple[Any, ...]) -> list[tuple[str, str, str, float]]:
    """A future's flat history as ``(event, source, dest, time)`` tuples."""
    return [(step[0], step[1], step[2], time) for step, time in zip(entries[::2], entries[1::2])]


# -- The one fast path -------------------------------------------------------------

#: The callbacks a rule may name and still be a plain ending: stores into the
#: future and taking back its confirm deadline, all of which commute with
#: each other and with the state change under the lock.
PLAIN_ENDING_CALLBACKS = (KEEP_RESULT, KEEP_CONNECTION_ERROR, DISARM_CONFIRM_TIMEOUT)


#: A rule that ends a future and does nothing else that the manager cannot
#: do in place: ``(dest, outcome, entry, store, disarm)``, what
#: ``FutureManager.on_message``'s fast path unpacks to run it without the
#: step (see :func:`plain_endings`). ``entry`` is the history entry,
#: ``store`` the setter of the slot ``keep_result`` or
#: ``keep_connection_error`` stores into (called ``store(future,
#: message)``) or ``None``, ``disarm`` whether the confirm deadline is taken
#: back. A plain tuple: one unpacking on the hot path.
PlainEnding = tuple[str, str, tuple[str, str, str], Any, bool]


def plain_endings(lifecycle: Lifecycle, future_class: type[Future]) -> dict[str, dict[str, PlainEnding]]:
    """``state -> event -> PlainEnding`` for the rules that one message may
    run without a step: a final destination, and no callback but the base
    ``Future``'s stores and ``disarm_confirm_timeout`` (none overridden by
    ``future_class``), each at most once.

    These are the rules that end most futures (a result ending a live one, a
    confirm ending a cancel), and the only rules with a second
    implementation: ``FutureManager.on_message`` runs them in place, with
    the same effects as their step; ``tests/test_runtime.py`` checks the two
    agree on every such rule of every lifecycle in the repository.
    """
    from taskfate.client.future import Future

    endings: dict[str, dict[str, PlainEnding]] = {state: {} for state in lifecycle.table}
    for state, rules in lifecycle.table.items():
        for event, rule in rules.items():
            names = rule.before + rule.after
            outcome = lifecycle.outcomes.get(rule.dest) if rule.dest is not None else None
            if rule.dest is None or outcome is None or event not in lifecycle.peer_events:
                continue
            if len(set(names)) != len(names) or not set(names) <= set(PLAIN_ENDING_CALLBACKS):
                continue
            if any(getattr(future_class, name) is not getattr(Future, name) for name in names):
                continue
            stores = [getattr(Future, STORE_CALLBACKS[name]).__set__ for name in names if name in STORE_CALLBACKS]
            if len(stores) > 1:
                continue
            endings[state][event] = (rule.dest, outcome, (event, state, rule.dest), stores[0] if stores else None, DISARM_CONFIRM_TIMEOUT in names)
    return endings
