"""Every ordering of a future's conversation, up to a bound, checked.

Random tests sample orderings; the bugs that ship live in the rare ones. The
future lifecycle is small enough to enumerate instead: starting from freshly
submitted futures, this module applies every action the world may take next,
breadth first, up to a depth bound, remembering each distinct state so that
no state is expanded twice. Breadth first means the first trace found to break
a promise is a shortest one.

What the explorer reads
-----------------------

Only a compiled :class:`~taskfate.fsm.table.Lifecycle` (a policy name, a
declaration dict or a ``transitions`` machine is compiled first). It knows
nothing of the lifecycle's rules: it knows what each *callback* named in
:mod:`taskfate.fsm.lifecycle` does to the outside world (``keep_result``
stores the result ``result()`` reports, ``send_cancel`` puts a ``TaskCancel``
on the wire, ``arm_confirm_timeout`` starts the timer that may later fire
``confirm_timeout``, ...) and what the client's manager does around the
table (routing a group's confirm to every live member, dispatching
``group_cancel`` to pending siblings, firing the timer only for a future still
``cancel_requested``, waking ``cancel()`` callers when that state is left).
Hand it a deliberately broken declaration and it reports what broke.

The world
---------

* The scheduler decides each task's outcome once (one result type) and may
  deliver that result any number of times (duplicates) or never (loss). It
  may cancel a task on its own (``confirm_canceled`` at any time) and answers
  a ``TaskCancel`` it was sent with any confirm type, any number of times.
  With ``scheduler="any"`` every message may arrive at any moment, which is a
  superset of every scheduler and channel.
* Messages reach a future in whatever state it is in. The manager stops
  routing to finished futures, but an embedding library's routing may not,
  and the declaration says what happens then, so it is checked too. A
  confirm addressed to the group reaches the live members only, as the
  manager routes it.
* Users call ``cancel()`` (several callers may wait at once); the manager
  clears, closes or loses its connection; an armed confirm timer fires.
* With several futures they form one graph: they share a group id, the first
  is submitted at the start, the others by ``submit`` actions (so a node may
  join its graph while the graph is being cancelled, or after close).

The promises checked at every step
----------------------------------

``terminal_never_left``
    a terminal state is entered once and never left (nor re-entered).
``callbacks_exactly_once``
    done callbacks run exactly once: a future enters a terminal state once.
``result_recorded``
    every result that reaches a future is kept (``result()`` reports it) or
    recorded as discarded; none is overwritten or kept on a future that
    ends cancelled.
``result_matches_state``
    ``done`` holds a success, ``failed`` a failure or a connection error.
``cancel_returns_final_state``
    a ``cancel()`` that returned True is never contradicted later.
``one_request_per_cancel``
    a future waiting for a cancel answer has sent its request; a request
    already in flight is not sent again.
``ends_once_timeouts_fire``
    from every reachable state, once the scheduler falls silent, every
    future that asked to cancel still ends (through its timer). Only a future
    that never asked may wait for the scheduler indefinitely: it is owed a
    result.
``can_end``
    no future reaches a non-terminal state that no event ever leaves.
``close_ends_every_future``
    ``close()`` leaves no live future behind (after it no timer fires).

Every step is pure: no threads, no clock, no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from taskfate.fsm import lifecycle as lc
from taskfate.fsm.table import Lifecycle, compile_machine, get_lifecycle

__all__ = [
    "INVARIANTS",
    "Explorer",
    "Report",
    "Violation",
    "explore",
    "load_lifecycle",
]

#: The promises, by name, in the order the report lists them.
INVARIANTS: Final = (
    "terminal_never_left",
    "callbacks_exactly_once",
    "result_recorded",
    "result_matches_state",
    "cancel_returns_final_state",
    "one_request_per_cancel",
    "ends_once_timeouts_fire",
    "can_end",
    "close_ends_every_future",
)

SCHEDULERS: Final = ("faithful", "any")

# A future is a tuple of small ints (hashable, cheap to copy). Field indices:
_ST = 0  # lifecycle state index, -1 before submission
_ARMED = 1  # a confirm timer is armed (a deadline is set)
_HELD = 2  # what keep_result stored: 0 nothing, 1 success, 2 failure, 3 not a result
_ERR = 3  # keep_connection_error stored the transport's error
_ENDS = 4  # terminal entries so far (capped at 2)
_WAITING = 5  # cancel() callers blocked on this future (capped at 2)
_PROMISED = 6  # some cancel() returned True
_OUTCOME = 7  # the scheduler's decided result: 0 none yet, else 1 + index in RESULT_EVENTS
_ASKED = 8  # a TaskCancel naming this task's own id was sent
_FIELDS = 9
_UNSUBMITTED = -1

_HELD_NAMES = ("nothing", "a success", "a failure", "something that is not a result")

# Actions are tuples (kind, future index, event). Kinds:
_SUBMIT, _MESSAGE, _GROUP, _CANCEL, _TIMEOUT, _CLEAR, _CLOSE, _LOST = (
    "submit",
    "message",
    "group",
    "cancel",
    "timeout",
    "clear",
    "close",
    "connection_lost",
)
Action = tuple[str, int, str]
State = tuple[tuple[tuple[int, ...], ...], int, int]  # futures, group asked, closed

_KNOWN_CALLBACKS = frozenset(lc.CALLBACKS)


@dataclass(frozen=True)
class Violation:
    """A broken promise and the shortest ordering found that breaks it."""

    invariant: str
    message: str
    trace: tuple[Action, ...]
    replay: str

    def describe(self, explorer: Explorer | None = None) -> str:
        lines = [f"VIOLATED {self.invariant}: {self.message}", f"  shortest trace ({len(self.trace)} steps):"]
        describe = explorer.describe_action if explorer is not None else describe_action
        for number, action in enumerate(self.trace, 1):
            lines.append(f"    {number:>2}. {describe(action)}")
        if explorer is not None:
            lines.append("  states along it:")
            for number, (_, after, _) in enumerate(explorer.replay(self.trace), 1):
                lines.append(f"    {number:>2}. {explorer.describe_state(after)}")
        lines.append(f"  replay: {self.replay}")
        return "\n".join(lines)


@dataclass
class Report:
    """What one exploration visited and found."""

    policy: str
    futures: int
    depth: int
    scheduler: str
    states: int = 0
    edges: int = 0
    depth_reached: int = 0
    exhausted: bool = False
    seconds: float = 0.0
    violations: dict[str, Violation] = field(default_factory=dict)
    unexercised: list[tuple[str, str]] = field(default_factory=list)
    invariants: tuple[str, ...] = INVARIANTS

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        rate = self.states / self.seconds if self.seconds > 0 else float("inf")
        scope = "every reachable state" if self.exhausted else f"every ordering up to depth {self.depth}"
        lines = [
            f"lifecycle {self.policy!r}, {self.futures} future(s){' in one graph' if self.futures > 1 else ''}, "
            f"scheduler {self.scheduler}: {scope}",
            f"  distinct states {self.states}, edges {self.edges}, deepest new state at depth {self.depth_reached}, "
            f"{self.seconds:.3f}s ({rate:,.0f} states/s)",
        ]
        if self.unexercised:
            listed = ", ".join(f"{state} --{event}-->" for state, event in self.unexercised)
            lines.append(f"  declared transitions never exercised ({len(self.unexercised)}): {listed}")
        else:
            lines.append("  every declared transition was exercised")
        if self.violations:
            lines.append(f"  {len(self.violations)} invariant(s) violated: {', '.join(self.violations)}")
        else:
            lines.append(f"  every invariant held: {', '.join(self.invariants)}")
        return "\n".join(lines)


def load_lifecycle(source: str | Lifecycle | Mapping[str, Any] | Any = lc.DEFAULT_POLICY, name: str = "custom") -> Lifecycle:
    """A compiled lifecycle from a policy name, a compiled ``Lifecycle``, a
    declaration (the keyword arguments of ``transitions.Machine``) or a
    ``transitions.Machine``. Anything the table cannot execute is refused by
    :func:`~taskfate.fsm.table.compile_machine` with ``DeclarationError``."""
    if isinstance(source, Lifecycle):
        return source
    if isinstance(source, str):
        return get_lifecycle(source)
    if isinstance(source, Mapping):
        from transitions import Machine

        return compile_machine(Machine(model=None, **dict(source)), name)
    return compile_machine(source, name)


def describe_action(action: Action) -> str:
    kind, index, event = action
    if kind == _SUBMIT:
        return f"submit f{index}"
    if kind == _MESSAGE:
        return f"scheduler -> f{index}: {event}"
    if kind == _GROUP:
        return f"scheduler -> group: {event}"
    if kind == _CANCEL:
        return f"f{index}.cancel()"
    if kind == _TIMEOUT:
        return f"f{index}'s confirm timer fires"
    return f"manager.{kind}()"


def action_token(action: Action) -> str:
    """The compact form ``--replay`` reads back."""
    kind, index, event = action
    if kind == _MESSAGE:
        return f"{event}:{index}"
    if kind == _GROUP:
        return f"{event}:group"
    if kind in (_CANCEL, _TIMEOUT):
        return f"{kind}:{index}"
    return kind


def parse_trace(text: str) -> list[Action]:
    """Read a trace written by :func:`action_token` (space or comma separated).

    Raises ``ValueError`` naming the first token it cannot read.
    """
    actions: list[Action] = []
    for token in text.replace(",", " ").split():
        name, _, who = token.partition(":")
        if name in (_SUBMIT, _CLEAR, _CLOSE, _LOST) and not who:
            actions.append((name, 0, ""))
        elif who == "group" and name in lc.CONFIRM_EVENTS:
            actions.append((_GROUP, -1, name))
        elif who.isdigit() and name in (_CANCEL, _TIMEOUT):
            actions.append((name, int(who), ""))
        elif who.isdigit() and name in lc.RESULT_EVENTS + lc.CONFIRM_EVENTS:
            actions.append((_MESSAGE, int(who), name))
        else:
            raise ValueError(f"cannot read trace step {token!r}")
    return actions


class _Step:
    """The scratch record of one action: problems found and, when replaying,
    what the outside world saw."""

    __slots__ = ("problems", "effects", "tracing", "asked_group", "used", "sent", "force")

    def __init__(self, tracing: bool, asked_group: int, used: set[tuple[int, str]]) -> None:
        self.problems: list[tuple[str, str]] = []
        self.effects: list[str] = []
        self.tracing = tracing
        self.asked_group = asked_group
        self.used = used
        # TaskCancels put on the wire (task index, or -1 for the group) and
        # the force flag of the cancel being executed: read by the system
        # explorer, which carries them to the scheduler.
        self.sent: list[int] = []
        self.force = 1


class Explorer:
    """Breadth-first exploration of one lifecycle in a modelled world.

    ``futures`` futures (one graph when more than one); ``scheduler`` is
    ``"faithful"`` or ``"any"`` (see the module docstring). ``replay`` is the
    command that reproduces a trace; ``{trace}`` in it is replaced by the
    trace's tokens.
    """

    def __init__(
        self,
        source: str | Lifecycle | Mapping[str, Any] | Any = lc.DEFAULT_POLICY,
        *,
        futures: int = 1,
        scheduler: str = "faithful",
        replay: str | None = None,
    ) -> None:
        if futures < 1:
            raise ValueError("explore at least one future")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler model {scheduler!r}; choose one of {SCHEDULERS}")
        self.lifecycle = load_lifecycle(source)
        self.futures = futures
        self.grouped = futures > 1
        self.scheduler = scheduler
        names = self.lifecycle.states
        for required in (lc.CANCEL_REQUESTED, lc.CANCELLED, lc.DONE, lc.FAILED):
            if required not in names:
                # The client's Future and manager name these states in code
                # (waiting on cancel_requested, stdlib views of the ends).
                raise ValueError(f"the lifecycle has no {required!r} state, which the client relies on")
        self._names = names
        self._index = {name: number for number, name in enumerate(names)}
        self._initial = self._index[self.lifecycle.initial]
        self._terminal = frozenset(self._index[name] for name in self.lifecycle.terminal)
        self._cancel_requested = self._index[lc.CANCEL_REQUESTED]
        self._cancelled = self._index[lc.CANCELLED]
        self._done = self._index[lc.DONE]
        self._failed = self._index[lc.FAILED]
        # Rules by state index: event -> (dest index or None, before, after).
        self._rules: list[dict[str, tuple[int | None, tuple[str, ...], tuple[str, ...]]]] = []
        for name in names:
            rules = {}
            for event, rule in self.lifecycle.table[name].items():
                for callback in rule.before + rule.after:
                    if callback not in _KNOWN_CALLBACKS:
                        raise ValueError(f"{name} --{event}--> calls {callback!r}, whose effect the explorer does not know")
                rules[event] = (None if rule.dest is None else self._index[rule.dest], rule.before, rule.after)
            self._rules.append(rules)
        if replay is None:
            policy = self.lifecycle.policy
            options = f"--policy {policy} " if policy in lc.POLICIES else "--declaration MODULE:NAME "
            replay = f"taskfate explore {options}--futures {futures} --scheduler {scheduler} --replay '{{trace}}'"
        self._replay = replay
        self._silent_end_memo: dict[tuple[int, int], bool] = {}
        self._can_end = self._states_that_can_end()
        self._symmetric = self.grouped

    # -- Public --------------------------------------------------------------

    def initial(self) -> State:
        first = (self._initial,) + (0,) * (_FIELDS - 1)
        rest = ((_UNSUBMITTED,) + (0,) * (_FIELDS - 1),) * (self.futures - 1)
        return ((first,) + rest, 0, 0)

    def run(self, depth: int = 10, progress: Callable[[str], None] | None = None) -> Report:
        """Explore every ordering of at most ``depth`` actions.

        ``progress`` receives one line per depth level once the run has taken
        more than a second (long runs only, so short ones stay quiet).
        """
        started = time.perf_counter()
        report = Report(self.lifecycle.policy, self.futures, depth, self.scheduler)
        used: set[tuple[int, str]] = set()
        initial = self.initial()
        key = self._key
        parents: dict[Any, tuple[Any, Action] | None] = {key(initial): None}
        self._parents = parents
        self._check_state(initial, report, parents, key(initial), used)
        frontier = [initial]
        apply = self._apply
        actions = self._actions
        edges = 0
        level = 0
        for level in range(1, depth + 1):
            following: list[State] = []
            for state in frontier:
                state_key = key(state)
                for action in actions(state):
                    step = _Step(False, state[1], used)
                    successor = apply(state, action, step)
                    edges += 1
                    if step.problems:
                        for invariant, message in step.problems:
                            if invariant not in report.violations:
                                trace = self._path(parents, state_key) + (action,)
                                report.violations[invariant] = self._violation(invariant, message, trace)
                    successor_key = key(successor)
                    if successor_key not in parents:
                        parents[successor_key] = (state_key, action)
                        following.append(successor)
                        self._check_state(successor, report, parents, successor_key, used)
            if following:
                report.depth_reached = level
            frontier = following
            elapsed = time.perf_counter() - started
            if progress is not None and elapsed > 1.0:
                progress(f"depth {level}/{depth}: {len(parents)} states, {edges} edges, {elapsed:.1f}s")
            if not frontier:
                report.exhausted = True
                break
        report.states = len(parents)
        report.edges = edges
        report.seconds = time.perf_counter() - started
        report.unexercised = [
            (name, event)
            for number, name in enumerate(self._names)
            for event in self._rules[number]
            if (number, event) not in used
        ]
        return report

    def replay(self, trace: Iterable[Action]) -> list[tuple[Action, State, _Step]]:
        """Apply ``trace`` from the initial state; for each action, the state
        after it and what it did (effects seen outside, problems found).
        Raises ``ValueError`` at the first action that is not possible."""
        state = self.initial()
        steps = []
        for action in trace:
            if action not in self._actions(state):
                raise ValueError(f"{self.describe_action(action)} is not possible in {self.describe_state(state)}")
            step = _Step(True, state[1], set())
            state = self._apply(state, action, step)
            step.problems.extend(self._state_problems(state))
            steps.append((action, state, step))
        return steps

    def describe_action(self, action: Action) -> str:
        return describe_action(action)

    def describe_state(self, state: State) -> str:
        parts = []
        for number, future in enumerate(state[0]):
            if future[_ST] == _UNSUBMITTED:
                parts.append(f"f{number} not submitted")
                continue
            flags = []
            if future[_ARMED]:
                flags.append("timer armed")
            if future[_HELD]:
                flags.append(f"holds {_HELD_NAMES[future[_HELD]]}")
            if future[_ERR]:
                flags.append("holds connection error")
            if future[_WAITING]:
                flags.append(f"{future[_WAITING]} cancel() waiting")
            if future[_PROMISED]:
                flags.append("cancel() returned True")
            parts.append(f"f{number} {self._names[future[_ST]]}" + (f" ({', '.join(flags)})" if flags else ""))
        if state[2]:
            parts.append("manager closed")
        return "; ".join(parts)

    # -- The world's moves -----------------------------------------------------

    def _actions(self, state: State) -> list[Action]:
        futures, group_asked, closed = state
        actions: list[Action] = []
        faithful = self.scheduler == "faithful"
        any_live = False
        submitted_next = False
        for index, future in enumerate(futures):
            st = future[_ST]
            if st == _UNSUBMITTED:
                if not submitted_next and not closed:
                    actions.append((_SUBMIT, index, ""))
                    submitted_next = True
                continue
            live = st not in self._terminal
            any_live = any_live or live
            outcome = future[_OUTCOME]
            for number, event in enumerate(lc.RESULT_EVENTS, 1):
                if not faithful or outcome in (0, number):
                    actions.append((_MESSAGE, index, event))
            asked = group_asked if self.grouped else future[_ASKED]
            for event in lc.CONFIRM_EVENTS:
                if not faithful or asked or event == lc.CONFIRM_CANCELED:
                    actions.append((_MESSAGE, index, event))
            if live:
                actions.append((_CANCEL, index, ""))
            if future[_ARMED] and not closed:
                actions.append((_TIMEOUT, index, ""))
        if self.grouped and any_live:
            for event in lc.CONFIRM_EVENTS:
                if not faithful or group_asked or event == lc.CONFIRM_CANCELED:
                    actions.append((_GROUP, -1, event))
        if any_live:
            actions.append((_CLEAR, 0, ""))
            actions.append((_LOST, 0, ""))
        if not closed:
            actions.append((_CLOSE, 0, ""))
        return actions

    def _apply(self, state: State, action: Action, step: _Step) -> State:
        futures = [list(future) for future in state[0]]
        closed = state[2]
        kind, index, event = action
        before = [future[_ST] for future in futures]
        if kind == _MESSAGE:
            if event in lc.RESULT_EVENTS:
                futures[index][_OUTCOME] = 1 + lc.RESULT_EVENTS.index(event)
            self._dispatch(futures, index, event, step, before)
        elif kind == _GROUP:
            for member in self._live(futures):
                self._dispatch(futures, member, event, step, before)
        elif kind == _CANCEL:
            self._dispatch(futures, index, lc.CANCEL, step, before)
            future = futures[index]
            if future[_ST] == self._cancel_requested:
                future[_WAITING] = min(future[_WAITING] + 1, 2)
            elif future[_ST] == self._cancelled:
                future[_PROMISED] = 1
        elif kind == _TIMEOUT:
            future = futures[index]
            future[_ARMED] = 0  # the timer's entry is consumed whatever happens
            if future[_ST] == self._cancel_requested:
                self._dispatch(futures, index, lc.CONFIRM_TIMEOUT, step, before)
        elif kind == _SUBMIT:
            futures[index][_ST] = self._initial
        elif kind in (_CLEAR, _LOST):
            event = lc.CLEAR if kind == _CLEAR else lc.CONNECTION_LOST
            for member in self._live(futures):
                self._dispatch(futures, member, event, step, before)
        elif kind == _CLOSE:
            closed = 1
            for member in self._live(futures):
                self._dispatch(futures, member, lc.CLOSE, step, before)
            for number, future in enumerate(futures):
                future[_ARMED] = 0  # close drops every deadline
                if future[_ST] != _UNSUBMITTED and future[_ST] not in self._terminal:
                    step.problems.append(
                        ("close_ends_every_future", f"close() left f{number} {self._names[future[_ST]]}")
                    )
        # cancel() callers wake when the future leaves cancel_requested.
        for future in futures:
            if future[_WAITING] and future[_ST] != self._cancel_requested:
                future[_WAITING] = 0
                if future[_ST] == self._cancelled:
                    future[_PROMISED] = 1
        new_futures = tuple(tuple(future) for future in futures)
        if step.tracing:
            step.effects.insert(0, self.describe_action(action))
        return (new_futures, step.asked_group, closed)

    def _live(self, futures: list[list[int]]) -> list[int]:
        return [n for n, f in enumerate(futures) if f[_ST] != _UNSUBMITTED and f[_ST] not in self._terminal]

    def _dispatch(self, futures: list[list[int]], index: int, event: str, step: _Step, before: list[int], nesting: int = 0) -> None:
        """One lifecycle event on one future, as the manager executes it."""
        future = futures[index]
        source = future[_ST]
        rule = self._rules[source].get(event)
        is_result = event in lc.RESULT_EVENTS
        if rule is None:
            if is_result:
                step.problems.append(
                    ("result_recorded", f"{event} reached f{index} in {self._names[source]}, which has no rule for it: the result is lost")
                )
            if step.tracing:
                step.effects.append(f"f{index}: {event} ignored in {self._names[source]}")
            return
        step.used.add((source, event))
        dest, before_callbacks, after_callbacks = rule
        recorded = False
        for callback in before_callbacks:
            recorded |= self._callback(callback, futures, index, event, step, before, nesting)
        if dest is not None:
            if source in self._terminal:
                step.problems.append(
                    ("terminal_never_left", f"f{index} in terminal {self._names[source]} moved to {self._names[dest]} on {event}")
                )
            future[_ST] = dest
            if dest in self._terminal:
                future[_ENDS] = min(future[_ENDS] + 1, 2)
                if future[_ENDS] > 1:
                    step.problems.append(
                        ("callbacks_exactly_once", f"f{index} entered a terminal state a second time ({self._names[dest]}): done callbacks would run again")
                    )
        if step.tracing:
            step.effects.append(f"f{index}: {self._names[source]} --{event}--> {self._names[dest] if dest is not None else '(stays)'}")
        for callback in after_callbacks:
            recorded |= self._callback(callback, futures, index, event, step, before, nesting)
        if is_result and not recorded:
            step.problems.append(
                ("result_recorded", f"{event} took f{index} {self._names[source]} -> {self._names[future[_ST]]} with neither keep_result nor discard_result")
            )
        if dest is not None and dest in self._terminal:
            self._check_end(future, index, step)

    def _callback(self, name: str, futures: list[list[int]], index: int, event: str, step: _Step, before: list[int], nesting: int) -> bool:
        """Apply one named callback's outside effect; True if it recorded a result."""
        future = futures[index]
        if name == lc.KEEP_RESULT:
            if event not in lc.RESULT_EVENTS:
                future[_HELD] = 3
                step.problems.append(("result_matches_state", f"keep_result ran for {event}, which carries no result"))
                return False
            if future[_HELD]:
                step.problems.append(("result_recorded", f"{event} overwrote the result f{index} already held"))
            future[_HELD] = 1 if event == lc.RESULT_SUCCESS else 2
            return True
        if name == lc.DISCARD_RESULT:
            if step.tracing:
                step.effects.append(f"f{index}: {event} recorded in discarded_results")
            return event in lc.RESULT_EVENTS
        if name == lc.SEND_CANCEL:
            if before[index] == self._cancel_requested:
                step.problems.append(("one_request_per_cancel", f"f{index} sent a second TaskCancel while one was in flight"))
            if self.grouped:
                step.asked_group = 1
            else:
                future[_ASKED] = 1
            step.sent.append(-1 if self.grouped else index)
            if step.tracing:
                step.effects.append(f"TaskCancel({'group' if self.grouped else f'f{index}'}) sent")
            return False
        if name == lc.CANCEL_GROUP:
            if self.grouped:
                if nesting > len(futures):
                    step.problems.append(("can_end", "cancel_group keeps cancelling the group: the manager would recurse forever"))
                    return False
                for sibling in self._live(futures):
                    if sibling != index:
                        self._dispatch(futures, sibling, lc.GROUP_CANCEL, step, before, nesting + 1)
            return False
        if name == lc.ARM_CONFIRM_TIMEOUT:
            future[_ARMED] = 1
        elif name == lc.DISARM_CONFIRM_TIMEOUT:
            future[_ARMED] = 0
        elif name == lc.KEEP_CONNECTION_ERROR:
            future[_ERR] = 1
        return False

    # -- The promises about states ---------------------------------------------

    def _check_end(self, future: list[int], index: int, step: _Step) -> None:
        st, held = future[_ST], future[_HELD]
        if st == self._done and held != 1:
            step.problems.append(("result_matches_state", f"f{index} ended done holding {_HELD_NAMES[held]}: result() has no value to return"))
        elif st == self._failed and held != 2 and not future[_ERR]:
            step.problems.append(("result_matches_state", f"f{index} ended failed holding {_HELD_NAMES[held]} and no error"))
        elif st == self._cancelled and held in (1, 2):
            step.problems.append(("result_recorded", f"f{index} ended cancelled holding {_HELD_NAMES[held]} it never reports nor records as discarded"))

    def _state_problems(self, state: State) -> list[tuple[str, str]]:
        problems = []
        futures, group_asked, closed = state
        for index, future in enumerate(futures):
            st = future[_ST]
            if st == _UNSUBMITTED:
                continue
            if future[_PROMISED] and st != self._cancelled:
                problems.append(("cancel_returns_final_state", f"cancel() on f{index} returned True but it is now {self._names[st]}"))
            if st in self._terminal:
                continue
            if st == self._cancel_requested and not (group_asked if self.grouped else future[_ASKED]):
                problems.append(("one_request_per_cancel", f"f{index} waits in cancel_requested for the answer to a TaskCancel never sent"))
            if not self._can_end[st]:
                problems.append(("can_end", f"f{index} is in {self._names[st]}, which no event ever leaves for a terminal state"))
            elif st != self._initial and not closed and not self._silent_end(st, future[_ARMED]):
                problems.append(
                    ("ends_once_timeouts_fire", f"f{index} is in {self._names[st]} (timer {'armed' if future[_ARMED] else 'not armed'}) and never ends if the scheduler stays silent")
                )
        return problems

    def _check_state(self, state: State, report: Report, parents: dict[Any, Any], key: Any, used: set[tuple[int, str]]) -> None:
        for invariant, message in self._state_problems(state):
            if invariant not in report.violations:
                report.violations[invariant] = self._violation(invariant, message, self._path(parents, key))

    def _silent_end(self, st: int, armed: int) -> bool:
        """Whether a future in ``st`` ends with nothing but its timers firing."""
        key = (st, armed)
        memo = self._silent_end_memo
        if key in memo:
            return memo[key]
        seen_st, seen_armed = st, armed
        result = False
        for _ in range(len(self._names) * 2 + 2):
            if seen_st in self._terminal:
                result = True
                break
            if not seen_armed or seen_st != self._cancel_requested:
                break
            seen_armed = 0
            rule = self._rules[seen_st].get(lc.CONFIRM_TIMEOUT)
            if rule is None:
                break
            dest, before_callbacks, after_callbacks = rule
            # The callbacks run in order (before, exit, enter, after), so the
            # last arm or disarm among them decides.
            for callback in before_callbacks + after_callbacks:
                if callback == lc.ARM_CONFIRM_TIMEOUT:
                    seen_armed = 1
                elif callback == lc.DISARM_CONFIRM_TIMEOUT:
                    seen_armed = 0
            if dest is not None:
                seen_st = dest
        memo[key] = result
        return result

    def _states_that_can_end(self) -> list[bool]:
        can = [number in self._terminal for number in range(len(self._names))]
        changed = True
        while changed:
            changed = False
            for number, rules in enumerate(self._rules):
                if not can[number] and any(dest is not None and can[dest] for dest, _, _ in rules.values()):
                    can[number] = changed = True
        return can

    # -- Bookkeeping --------------------------------------------------------------

    def _key(self, state: State) -> Any:
        # Members of one graph are interchangeable, so states that differ only
        # by which member is which are one state.
        if self._symmetric:
            return (tuple(sorted(state[0])), state[1], state[2])
        return state

    @staticmethod
    def _path(parents: dict[Any, tuple[Any, Action] | None], key: Any) -> tuple[Action, ...]:
        actions = []
        link = parents[key]
        while link is not None:
            key, action = link
            actions.append(action)
            link = parents[key]
        return tuple(reversed(actions))

    def _violation(self, invariant: str, message: str, trace: tuple[Action, ...]) -> Violation:
        tokens = " ".join(action_token(action) for action in trace)
        return Violation(invariant, message, trace, self._replay.replace("{trace}", tokens))


def explore(
    source: str | Lifecycle | Mapping[str, Any] | Any = lc.DEFAULT_POLICY,
    *,
    depth: int = 10,
    futures: int = 1,
    scheduler: str = "faithful",
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Explore ``source``'s lifecycle (see :class:`Explorer`) and report."""
    return Explorer(source, futures=futures, scheduler=scheduler).run(depth, progress)
