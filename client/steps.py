"""The compiled table, turned into one straight-line function per rule.

``taskfate.fsm.table`` reads the declaration back out of a real
``transitions.Machine`` into ``state -> event -> Rule``. Executing that table
with a generic loop (look the rule up, unpack it, loop over its callbacks,
record the step, check whether the state is terminal) costs more interpreter
work than the rule itself does. So, once per (future class, lifecycle), each
rule is written out as the source of one small Python function that does
exactly that rule's work in the rule's order, and compiled with ``compile``.
The manager's dispatch is then a dict lookup and one call.

What is generated, and why it cannot drift from the declaration:

* The text is produced from the ``Rule`` alone: its ``before`` callbacks,
  the state change and the history step, its ``after`` callbacks, then the
  terminal bookkeeping when the destination is terminal. No rule is written
  by hand; a new rule in ``fsm/lifecycle.py`` is a new function here.
* A callback is called as the future class's own method, resolved once with
  ``getattr`` (subclasses such as the Scaler adapter's future override some).
  Only when the resolved method *is* the base ``Future``'s is its body
  written in place instead (``_INLINE`` below, a line or two each), which
  saves a call per callback on the hottest paths. The differential tests run
  every policy both ways (inlined, and through overriding methods) against
  ``transitions`` itself.
* The confirm deadline's arming reads the clock once per step: the history's
  time and the deadline are counted from the same instant.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MemberDescriptorType
from typing import TYPE_CHECKING, Any

from taskfate.client.future import Future
from taskfate.fsm import lifecycle as lc
from taskfate.fsm.table import Lifecycle, Rule
from taskfate.protocol import TaskCancel

if TYPE_CHECKING:
    from taskfate.client.manager import FutureManager

#: One rule, executed: ``step(manager, future, argument)``, the manager's
#: lock held by the caller.
Step = Callable[["FutureManager", Future, Any], None]

# Base Future callbacks written in place when the class does not override
# them: each is exactly its method's body, with ``self`` as ``future`` and the
# event's argument as ``argument``.
_INLINE: dict[str, str] = {
    lc.KEEP_RESULT: "future._message = argument",
    lc.DISARM_CONFIRM_TIMEOUT: "future._deadline = None",
    # client.future.new_task_cancel's work, without the call (see _NAMES).
    lc.SEND_CANCEL: (
        "group_id = future.group_id\n"
        "message = object_new(TaskCancel)\n"
        "set_cancel_task_id(message, future.task_id if group_id is None else group_id)\n"
        "set_cancel_force(message, argument is not False)\n"
        "manager._outbox.append(message)"
    ),
    lc.CANCEL_GROUP: "if future.group_id is not None:\n    manager._cancel_siblings(future)",
    lc.KEEP_CONNECTION_ERROR: "future._error = argument",
}
# Written in place only in a real state change's ``after`` callbacks, where
# the step has read the clock into ``now``: the base arm_confirm_timeout
# calls FutureManager._arm_confirm_timeout, whose body this is.
_INLINE_AFTER_CHANGE: dict[str, str] = {
    lc.ARM_CONFIRM_TIMEOUT: """\
deadline = now + manager.cancel_timeout
future._deadline = deadline
queue = manager._deadlines
while queue and queue[0][1]._deadline != queue[0][0]:
    queue.popleft()
if not queue or queue[-1][0] <= deadline:
    queue.append((deadline, future))
else:
    manager._insert_deadline(deadline, future)
if manager._use_timer and not manager._closed:
    if manager._timer_thread is None:
        manager._start_timer()
    elif manager._timer_due is not None and deadline < manager._timer_due:
        manager._timer_wakeup.notify()""",
}


_NAMES: dict[str, Any] = {"TaskCancel": TaskCancel, "object_new": object.__new__}
_cancel_setters = [getattr(TaskCancel, field, None) for field in ("task_id", "force")]
if all(isinstance(setter, MemberDescriptorType) for setter in _cancel_setters):
    _NAMES["set_cancel_task_id"] = _cancel_setters[0].__set__  # type: ignore[union-attr]
    _NAMES["set_cancel_force"] = _cancel_setters[1].__set__  # type: ignore[union-attr]
else:
    # TaskCancel is no longer slotted: the method (its constructor) is
    # called instead, correct if slower.
    del _INLINE[lc.SEND_CANCEL]

_cache: dict[tuple[type[Future], int], tuple[Lifecycle, dict[str, dict[str, Step]]]] = {}


def steps_for(future_class: type[Future], lifecycle: Lifecycle) -> dict[str, dict[str, Step]]:
    """``state -> event -> step`` for ``future_class`` running ``lifecycle``,
    generated on first use and cached.

    Keyed by the lifecycle's identity (the cache holds a reference, so an id
    is never reused while its entry lives): a hand-built lifecycle, such as a
    test's deliberately broken declaration, never shares steps with a stock one.
    """
    key = (future_class, id(lifecycle))
    cached = _cache.get(key)
    if cached is None:
        steps = {
            state: {event: _compile_rule(future_class, lifecycle, state, event, rule) for event, rule in rules.items()}
            for state, rules in lifecycle.table.items()
        }
        _cache[key] = (lifecycle, steps)
        return steps
    return cached[1]


def step_source(future_class: type[Future], lifecycle: Lifecycle, state: str, event: str) -> str:
    """The generated source of one rule's step (for tests and for reading)."""
    rule = lifecycle.table[state][event]
    return _generate(future_class, lifecycle, state, event, rule, {})


def _compile_rule(future_class: type[Future], lifecycle: Lifecycle, state: str, event: str, rule: Rule) -> Step:
    namespace: dict[str, Any] = {}
    source = _generate(future_class, lifecycle, state, event, rule, namespace)
    code = compile(source, f"<taskfate step {lifecycle.policy}:{state}:{event}>", "exec")
    exec(code, namespace)
    step: Step = namespace["step"]
    return step


def _generate(future_class: type[Future], lifecycle: Lifecycle, state: str, event: str, rule: Rule, namespace: dict[str, Any]) -> str:
    """The source of ``rule``'s step; fills ``namespace`` with what it refers to."""
    namespace.update(_NAMES)
    changes = rule.dest is not None
    lines: list[str] = []

    def call(name: str, clock_read: bool) -> None:
        method = getattr(future_class, name)
        base = getattr(Future, name, None)
        if method is base and name in _INLINE:
            lines.extend(_INLINE[name].splitlines())
        elif method is base and clock_read and name in _INLINE_AFTER_CHANGE:
            lines.extend(_INLINE_AFTER_CHANGE[name].splitlines())
        else:
            # Bound under a generated name: callback names are identifiers,
            # but nothing in the namespace should depend on that.
            alias = f"callback_{len(namespace)}"
            namespace[alias] = method
            lines.append(f"{alias}(future, argument)")

    for name in rule.before:
        call(name, False)
    if changes:
        lines.append(f"future._fsm = {rule.dest!r}")
        lines.append("now = manager._clock()")
        # Flat pairs (step, time), the step a constant: see Future._history.
        entry = f"({event!r}, {state!r}, {rule.dest!r}), now"
        lines.append("history = future._history")
        lines.append("if history:")
        lines.append(f"    history = history + ({entry})")
        lines.append("    limit = 2 * manager.history_limit")
        lines.append("    if len(history) > limit:")
        lines.append("        history = history[len(history) - limit :]")
        # A first step (most are) needs neither the concatenation nor the
        # trim, unless the manager keeps no history at all.
        lines.append("elif manager.history_limit > 0:")
        lines.append(f"    history = ({entry})")
        lines.append("future._history = history")
    for name in rule.after:
        call(name, changes)
    if changes and rule.dest in lifecycle.terminal:
        lines.extend(
            [
                "task_id = future.task_id",
                "live = manager._live",
                # One lookup on the common path; put back a different future
                # that a tool dispatched around.
                "other = live.pop(task_id, None)",
                "if other is not future and other is not None:",
                "    live[task_id] = other",
                "if future.group_id is not None:",
                "    manager._leave_group(future)",
                "if future._waiter_list:",
                f"    manager._notify_waiters(future, {rule.dest!r})",
                "if future._callbacks is not None:",
                "    manager._finished.append(future)",
            ]
        )
    if changes:
        lines.append("if future._cond is not None:")
        lines.append("    future._cond.notify_all()")
    if not lines:
        lines.append("pass")
    body = "\n".join("    " + line for line in lines)
    return f"def step(manager, future, argument):\n{body}\n"
