"""The declared rules, executed: one closure per (state, event).

A :class:`~taskfate.fsm.Lifecycle` says, for each state and event, which
callbacks run before the state changes, the destination, and which run after
(``Rule``). :func:`compile_steps` turns each rule into a :data:`Step`: a
closure over the rule's resolved callbacks (the future class's own methods,
looked up once, so a subclass's overrides are the ones called) and the
constants the rule implies (the history entry it records, the outcome its
destination carries). The closure's body below is the whole interpreter;
nothing is generated and every step runs this same code.

A step runs with the manager's lock held. What it causes outside (a message
to send, done callbacks to run) is queued on the manager by the callbacks
and by :meth:`FutureManager.finish`, and released by the public method that
fired the event once the lock is free.

The runtime's fields on a future
--------------------------------
A step writes three fields of the future, which nothing else writes:
``_fsm`` (the state's name), ``_outcome`` (the destination's outcome tag, or
``None`` while live) and ``_history`` (flat pairs ``(event, source, dest),
time``, the first a constant of the step, so a step allocates one tuple).
``Future`` reads them; ``history_of`` below is the one reader of the layout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from taskfate.fsm.declare import Lifecycle, Rule

if TYPE_CHECKING:
    from taskfate.client.future import Future
    from taskfate.client.manager import FutureManager

__all__ = ["DEFAULT_HISTORY_LIMIT", "Rules", "Step", "compile_steps", "history_of", "missing_callbacks"]

#: One rule, executed: ``step(manager, future, argument)``, the manager's
#: lock held by the caller.
Step = Callable[["FutureManager", "Future", Any], None]

#: How many transitions each future remembers, unless its manager says
#: otherwise (``FutureManager(history_limit=...)``).
DEFAULT_HISTORY_LIMIT = 16


def missing_callbacks(lifecycle: Lifecycle, future_class: type) -> list[str]:
    """The callbacks ``lifecycle`` names that ``future_class`` lacks."""
    return [name for name in lifecycle.callbacks if not callable(getattr(future_class, name, None))]


class Rules(dict[str, Step]):
    """One state's steps by event. An event the state has no rule for gets
    the step that counts it as ignored, so a dispatch is two subscripts and
    a call, with no test for a missing rule."""

    __slots__ = ()

    def __missing__(self, event: str) -> Step:
        return _ignoring(event)


_IGNORING: dict[str, Step] = {}


def _ignoring(event: str) -> Step:
    step = _IGNORING.get(event)
    if step is None:

        def step(manager: FutureManager, future: Future, argument: Any) -> None:
            manager.ignored(future, event)

        step.__qualname__ = f"ignored[{event}]"
        _IGNORING[event] = step
    return step


def compile_steps(lifecycle: Lifecycle, future_class: type[Future], history_limit: int) -> dict[str, Rules]:
    """``state -> event -> step`` for every declared rule of ``lifecycle``,
    run on futures of ``future_class``, keeping ``history_limit`` steps; any
    other event maps to a step that counts it as ignored."""
    missing = missing_callbacks(lifecycle, future_class)
    if missing:
        raise TypeError(
            f"lifecycle {lifecycle.name!r} names callback(s) {missing} that {future_class.__qualname__} does not define; "
            "a lifecycle's own callbacks are methods of a Future subclass (future_class=...)"
        )
    return {
        state: Rules({event: _step(lifecycle, future_class, state, event, rule, history_limit) for event, rule in rules.items()})
        for state, rules in lifecycle.table.items()
    }


def _step(lifecycle: Lifecycle, future_class: type, source: str, event: str, rule: Rule, history_limit: int) -> Step:
    before = tuple(getattr(future_class, name) for name in rule.before)
    after = tuple(getattr(future_class, name) for name in rule.after)
    dest = rule.dest
    changes = dest is not None
    outcome = lifecycle.outcomes.get(dest) if dest is not None else None
    entry = (event, source, dest)
    limit = 2 * history_limit

    def step(manager: FutureManager, future: Future, argument: Any) -> None:
        for callback in before:
            callback(future, argument)
        if changes:
            future._fsm = dest  # type: ignore[assignment]
            future._outcome = outcome
            if limit:
                history = future._history + (entry, manager.clock())
                future._history = history if len(history) <= limit else history[-limit:]
        for callback in after:
            callback(future, argument)
        if outcome is not None:
            manager.finish(future, outcome)
        elif changes and future._waiting is not None:
            # Somebody may wait for this future to leave its state (a cancel
            # waiting for the answer).
            future._waiting.condition.notify_all()

    step.__qualname__ = f"step[{lifecycle.name}:{source}--{event}-->{dest}]"
    return step


def history_of(entries: tuple[Any, ...]) -> list[tuple[str, str, str, float]]:
    """A future's flat history as ``(event, source, dest, time)`` tuples."""
    return [(step[0], step[1], step[2], time) for step, time in zip(entries[::2], entries[1::2])]
