"""The compiled table, turned into one straight-line function per rule.

``taskfate.fsm.table`` reads the declaration back out of a real
``transitions.Machine`` into ``state -> event -> Rule``. Executing that table
with a generic loop (look the rule up, unpack it, loop over its callbacks,
record the step, check whether the state is terminal) costs more interpreter
work than the rule itself does. So, once per (future class, lifecycle,
history limit, timer), each rule is written out as the source of one small
Python function that does exactly that rule's work in the rule's order, and
compiled with ``compile``. The manager's dispatch is then a dict lookup and
one call.

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
* What a manager fixes at construction and never changes (how many steps a
  history keeps, whether a timer thread services deadlines) is written into
  the text as a constant rather than read on every step.

What a step returns
-------------------

A step runs under the manager's lock, so what it causes outside (a message
to send, done callbacks to run) must wait for the lock's release. Most steps
cause at most one such effect, and handing it back as the return value is
cheaper than queueing it: a step returns ``None``, the ``TaskCancel`` it
built, or its own future when that future has just ended with done
callbacks due. Any further effect (from an overriding callback, or from a
group's siblings moved along) is appended to the manager's ``_queue``: the
generator queues a message it is holding itself before anything that could
queue another, so the returned effect is always the last of its kind. Once
the lock is released, messages are sent (in order), then done callbacks run
(in order).

Which kind a step may hand back depends on its event, so that the two hot
callers need not test what they got: a step for a scheduler's message hands
back only its ended future (``on_message`` runs the callbacks), a step for
``cancel`` only its ``TaskCancel`` (``Future.cancel`` sends it); the other
kind, should a declaration ever produce it there, is queued. Steps for the
other events go through ``FutureManager._dispatch``, which queues either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union

from taskfate.client.future import Future
from taskfate.fsm import lifecycle as lc
from taskfate.fsm.table import Lifecycle, Rule
from taskfate.protocol import TaskCancel
from taskfate.protocol.codec import DRAFTS_FIT, _CancelDraft

if TYPE_CHECKING:
    from taskfate.client.manager import FutureManager

#: What a step hands back to be released once the lock is free: a message to
#: send, or the future whose done callbacks are due (see the module's doc).
Effect = Union[TaskCancel, Future, None]

#: One rule, executed: ``step(manager, future, argument)``, the manager's
#: lock held by the caller.
Step = Callable[["FutureManager", Future, Any], Effect]

#: How many transitions each future remembers, unless its manager says
#: otherwise (``FutureManager(history_limit=...)``).
DEFAULT_HISTORY_LIMIT = 16

# Base Future callbacks written in place when the class does not override
# them: each is exactly its method's body, with ``self`` as ``future`` and the
# event's argument as ``argument``. SEND_CANCEL and CANCEL_GROUP are written
# by the generator itself (they decide where the message goes).
_INLINE: dict[str, str] = {
    lc.KEEP_RESULT: "future._message = argument",
    # FutureManager._disarm_confirm_timeout's body.
    lc.DISARM_CONFIRM_TIMEOUT: (
        "future._deadline = None\n"
        "queue = manager._deadlines\n"
        "if queue and queue[0][1] is future:\n"
        "    queue.popleft()"
    ),
    lc.KEEP_CONNECTION_ERROR: "future._resolved = argument",
}

# Written in place only in a real state change's ``after`` callbacks, where
# the step has read the clock into ``now``: the base arm_confirm_timeout
# calls FutureManager._arm_confirm_timeout, whose body this is (with the
# manager's ``_use_timer`` fixed as TIMER).
_ARM = """\
deadline = now + manager.cancel_timeout
future._deadline = deadline
queue = manager._deadlines
while queue:
    head = queue[0]
    if head[1]._deadline is head[0]:
        break
    queue.popleft()
if queue and queue[-1][0] > deadline:
    manager._insert_deadline(deadline, future)
else:
    queue.append((deadline, future))"""
_ARM_TIMER = """
    if manager._timer_due is None or deadline < manager._timer_due:
        manager._wake_timer(deadline)"""

# taskfate.protocol.codec._new_cancel's body, without the call: the draft
# twin filled with plain stores, then given the real class. ``if
# group_id is None`` rather than ``or``: a falsy id is still an id.
_BUILD_CANCEL = """\
group_id = future.group_id
message = CancelDraft()
message.task_id = future.task_id if group_id is None else group_id
message.force = argument is not False
message.__class__ = TaskCancel"""

_NAMES: dict[str, Any] = {"TaskCancel": TaskCancel, "CancelDraft": _CancelDraft}
_MESSAGE_EVENTS = frozenset(lc.MESSAGE_EVENTS.values())
# Should TaskCancel ever stop fitting its draft (the codec checks at
# import), the method is called instead: correct if slower.
_CAN_BUILD_CANCEL = DRAFTS_FIT

_cache: dict[tuple[type[Future], int, int, bool], tuple[Lifecycle, dict[str, dict[str, Step]]]] = {}
_ignore_cache: dict[str, Step] = {}


def steps_for(
    future_class: type[Future], lifecycle: Lifecycle, history_limit: int = DEFAULT_HISTORY_LIMIT, timer: bool = True
) -> dict[str, dict[str, Step]]:
    """``state -> event -> step`` for ``future_class`` running ``lifecycle``,
    generated on first use and cached; only the declared rules.

    Keyed by the lifecycle's identity (the cache holds a reference, so an id
    is never reused while its entry lives): a hand-built lifecycle, such as a
    test's deliberately broken declaration, never shares steps with a stock one.
    """
    key = (future_class, id(lifecycle), history_limit, timer)
    cached = _cache.get(key)
    if cached is None:
        steps = {
            state: {
                event: _compile_rule(future_class, lifecycle, state, event, rule, history_limit, timer)
                for event, rule in rules.items()
            }
            for state, rules in lifecycle.table.items()
        }
        _cache[key] = (lifecycle, steps)
        return steps
    return cached[1]


def ignore_step(event: str) -> Step:
    """The step for ``event`` in a state with no rule for it: counted as
    ignored, nothing else. Filling the manager's tables with these spares
    every dispatch a test for a missing rule. One per event, shared."""
    step = _ignore_cache.get(event)
    if step is None:

        def step(manager: FutureManager, future: Future, argument: Any) -> Effect:
            manager._ignored(future, event)
            return None

        _ignore_cache[event] = step
    return step


def step_source(
    future_class: type[Future],
    lifecycle: Lifecycle,
    state: str,
    event: str,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
    timer: bool = True,
) -> str:
    """The generated source of one rule's step (for tests and for reading)."""
    rule = lifecycle.table[state][event]
    return _generate(future_class, lifecycle, state, event, rule, {}, history_limit, timer)


def _compile_rule(
    future_class: type[Future], lifecycle: Lifecycle, state: str, event: str, rule: Rule, history_limit: int, timer: bool
) -> Step:
    namespace: dict[str, Any] = {}
    source = _generate(future_class, lifecycle, state, event, rule, namespace, history_limit, timer)
    code = compile(source, f"<taskfate step {lifecycle.policy}:{state}:{event}>", "exec")
    exec(code, namespace)
    step: Step = namespace["step"]
    return step


def _generate(
    future_class: type[Future],
    lifecycle: Lifecycle,
    state: str,
    event: str,
    rule: Rule,
    namespace: dict[str, Any],
    history_limit: int,
    timer: bool,
) -> str:
    """The source of ``rule``'s step; fills ``namespace`` with what it refers to."""
    namespace.update(_NAMES)
    changes = rule.dest is not None
    terminal = changes and rule.dest in lifecycle.terminal
    # What this step may hand back (see the module's doc): a message-driven
    # step only its ended future, a cancel only its message, so on_message
    # and cancel() need not ask which they got; anything else is queued.
    may_return_message = event not in _MESSAGE_EVENTS
    may_return_future = event != lc.CANCEL
    lines: list[str] = []
    # Whether the local ``message`` holds a TaskCancel not yet queued:
    # False, True, or "maybe" (queued on some runs, then set to None).
    holding: bool | str = False

    def queue_held() -> None:
        # Put a held message in the outbox, so that whatever comes next
        # (which may queue messages of its own) is sent after it.
        nonlocal holding
        if holding is True:
            lines.append("manager._queue.append(message)")
        elif holding == "maybe":
            lines.append("if message is not None:")
            lines.append("    manager._queue.append(message)")
        holding = False

    def call(name: str, clock_read: bool) -> None:
        nonlocal holding
        method = getattr(future_class, name)
        inline = method is getattr(Future, name, None)
        if inline and name in _INLINE:
            lines.extend(_INLINE[name].splitlines())
        elif inline and clock_read and name == lc.ARM_CONFIRM_TIMEOUT:
            lines.extend((_ARM + (_ARM_TIMER if timer else "")).splitlines())
        elif inline and name == lc.SEND_CANCEL and _CAN_BUILD_CANCEL:
            queue_held()
            lines.extend(_BUILD_CANCEL.splitlines())
            holding = True
        elif inline and name == lc.CANCEL_GROUP:
            # Siblings' steps may queue effects: a held message goes first.
            lines.append("if future.group_id is not None:")
            if holding:
                lines.append("    manager._queue.append(message)" if holding is True else "    if message is not None:")
                if holding == "maybe":
                    lines.append("        manager._queue.append(message)")
                lines.append("    message = None")
                holding = "maybe"
            lines.append("    manager._cancel_siblings(future)")
        else:
            queue_held()
            # Bound under a generated name: callback names are identifiers,
            # but nothing in the namespace should depend on that.
            alias = f"callback_{len(namespace)}"
            namespace[alias] = method
            lines.append(f"{alias}(future, argument)")

    for name in rule.before:
        call(name, False)
    if changes:
        lines.append(f"future._fsm = {rule.dest!r}")
        # The clock is an instance attribute: read it first, then call it
        # (``manager._clock()`` compiles to a method load that CPython
        # cannot specialise for an instance attribute, and is slower).
        lines.append("clock = manager._clock")
        lines.append("now = clock()")
        if history_limit > 0:
            # Flat pairs (step, time), the step a constant: see Future._history.
            entry = f"({event!r}, {state!r}, {rule.dest!r}), now"
            lines.append("history = future._history")
            lines.append("if not history:")
            lines.append(f"    future._history = ({entry})")
            if history_limit > 1:
                # A second step (most futures take two) is written out in
                # full: one tuple, where a concatenation makes two.
                lines.append("elif len(history) == 2:")
                lines.append(f"    future._history = (history[0], history[1], {entry})")
            lines.append("else:")
            lines.append(f"    history += ({entry})")
            lines.append(f"    if len(history) > {2 * history_limit}:")
            lines.append(f"        history = history[{-2 * history_limit}:]")
            lines.append("    future._history = history")
    for name in rule.after:
        call(name, changes)
    if not may_return_message:
        queue_held()
    if terminal:
        queue_held()
        lines.extend(
            [
                # One lookup on the common path; put back a different future
                # that a tool dispatched around.
                "other = manager._live.pop(future.task_id, None)",
                "if other is not future and other is not None:",
                "    manager._live[future.task_id] = other",
                "if future.group_id is not None:",
                "    manager._leave_group(future)",
                "if future._waiting is not None:",
                f"    manager._wake(future, {rule.dest!r})",
                "if future._callbacks is not None:",
                "    return future" if may_return_future else "    manager._queue.append(future)",
            ]
        )
    elif changes:
        # Somebody may wait for this future to leave its state (a cancel
        # waiting for the answer).
        lines.append("if future._waiting is not None:")
        lines.append("    future._waiting.condition.notify_all()")
    if holding:
        lines.append("return message")
    if not lines:
        lines.append("pass")
    body = "\n".join("    " + line for line in lines)
    return f"def step(manager, future, argument):\n{body}\n"
