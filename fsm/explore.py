"""Every ordering of a future's conversation, up to a bound, checked.

Random tests sample orderings; the bugs that ship live in the rare ones. The
future lifecycle is small enough to enumerate instead: starting from freshly
submitted futures, this module applies every action the world may take next,
breadth first, up to a depth bound, remembering each distinct state so that
no state is expanded twice. Breadth first means the first trace found to break
a promise is a shortest one.

What the explorer reads
-----------------------

Only a :class:`~taskfate.fsm.declare.Lifecycle` (a policy name or a
declaration dict is declared first). No stock state or event name decides
anything here: the states' tags say which are final and with what outcome,
``Lifecycle.awaiting`` which wait for the peer's answer, the split of
triggers into local and peer events what the library and the peer may fire.
What the explorer knows is the library's *vocabulary*: what each callback of
``taskfate.fsm.declare.CALLBACKS`` does to the outside world (``keep_result``
stores the result ``result()`` reports, ``send_cancel`` puts a
``TaskCancel`` on the wire, ``arm_confirm_timeout`` starts the timer that may
later fire ``confirm_timeout``, ...) and what the manager does around the
table with the local events (``cancel()`` fires ``cancel`` and waits while
the future is in an awaiting state; the timer fires ``confirm_timeout`` only
in one; ``cancel_group`` dispatches ``group_cancel`` to live siblings; a
group's confirm reaches every live member). A callback outside that
vocabulary (a user's own) is taken to have no protocol effect and is listed
in the report. Hand it a deliberately broken declaration and it reports what
broke.

The peer's events, by kind
--------------------------

Derived from the lifecycle, never from names:

* *results*: ``Lifecycle.result_events()`` (some rule keeps or discards what
  they bring). Whether one is a success or a failure is asked of the
  lifecycle's own message classifier, by classifying the protocol's
  ``TaskResult`` of each type; a result event no ``TaskResult`` maps to (a
  library's own message) is of unknown kind and accepted in a final state of
  either outcome, and the report says so.
* *confirms*: the other peer events some awaiting state has a rule for.
* *notices*: every other peer event (``started``, a library's progress
  message, ...).

The world
---------

* A faithful peer decides each task's outcome once (one result event) and
  may deliver it any number of times (duplicates) or never (loss). It sends
  a confirm only after a ``TaskCancel`` was sent for the task (or its
  group), any number of times, except a confirm the declaration accepts in
  a live state that does not await an answer (the scheduler cancelled on its
  own), which it may send at any time. It sends each notice at most once,
  and only before the result. With ``scheduler="any"`` every peer event may
  arrive at any moment, which is a superset of every peer and channel.
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
    ends in a state tagged ``cancelled``.
``result_matches_state``
    a state tagged ``result`` holds a success, one tagged ``exception`` a
    failure or a connection error; ``keep_result`` runs only for a result.
``cancel_returns_final_state``
    a ``cancel()`` that returned True is never contradicted later.
``one_request_per_cancel``
    a future in a cancelling state (one a ``cancel``, ``clear`` or
    ``group_cancel`` rule leads to, or an awaiting one) has sent its
    request; a request already in flight is not sent again.
``ends_once_timeouts_fire``
    from every reachable state, once the peer falls silent, every future in
    a cancelling state still ends (through its timer). Only a future that
    is not cancelling may wait for the peer indefinitely: it is owed a
    result.
``can_end``
    no future reaches a non-terminal state that no event ever leaves.
``close_ends_every_future``
    ``close()`` leaves no live future behind (after it no timer fires).

With ``strict=True`` a declared transition that no explored ordering took is
a failure too (the report lists them either way): a rule nothing exercises
is one the promises above say nothing about.

Every step is pure: no threads, no clock, no I/O.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from taskfate.fsm.declare import (
    ARM_CONFIRM_TIMEOUT,
    CALLBACKS,
    CANCEL,
    CANCELLED,
    CANCEL_GROUP,
    CLEAR,
    CLOSE,
    CONFIRM_TIMEOUT,
    CONNECTION_LOST,
    DISARM_CONFIRM_TIMEOUT,
    DISCARD_RESULT,
    EXCEPTION,
    GROUP_CANCEL,
    KEEP_CONNECTION_ERROR,
    KEEP_RESULT,
    LOCAL_EVENTS,
    RESULT,
    SEND_CANCEL,
    Lifecycle,
    Table,
    TaggedMachine,
    compile_machine,
    declare,
)
from taskfate.fsm.lifecycle import DEFAULT_POLICY, POLICIES, STOCK_LIFECYCLES, stock_messages
from taskfate.fsm.table import get_lifecycle
from taskfate.protocol import CancelConfirmType, TaskCancelConfirm, TaskID, TaskResult, TaskResultType, TaskStarted

__all__ = [
    "INVARIANTS",
    "Explorer",
    "PeerEvents",
    "Report",
    "Violation",
    "explore",
    "load_lifecycle",
    "load_table",
    "peer_events",
]

_log = logging.getLogger("taskfate.fsm.explore")

#: The promises, by name, in the order the report lists them.
INVARIANTS: Final = (
    "terminal_never_left",
    "callbacks_exactly_once",
    "result_recorded",
    "result_matches_state",
    "result_ends_future",
    "policy_kept",
    "notice_is_not_an_end",
    "started_means_running",
    "cancel_returns_final_state",
    "cancel_waits_for_answer",
    "cancel_is_requested",
    "group_cancelled_together",
    "one_request_per_cancel",
    "answer_ends_wait",
    "gone_ends_future",
    "refusal_is_not_an_end",
    "timer_armed_while_awaiting",
    "ends_once_timeouts_fire",
    "can_end",
    "close_ends_every_future",
    "loss_ends_every_future",
)

SCHEDULERS: Final = ("faithful", "any")

# A future is a tuple of small ints (hashable, cheap to copy). Field indices:
_ST = 0  # lifecycle state index, -1 before submission
_ARMED = 1  # a confirm timer is armed (a deadline is set)
_HELD = 2  # what keep_result stored: one of the _HELD_* codes below
_ERR = 3  # keep_connection_error stored the transport's error
_ENDS = 4  # terminal entries so far (capped at 2)
_WAITING = 5  # cancel() callers blocked on this future (capped at 2)
_PROMISED = 6  # some cancel() returned True
_OUTCOME = 7  # the peer's decided result: 0 none yet, else 1 + index in the result events
_ASKED = 8  # a TaskCancel naming this task's own id was sent
_NOTICED = 9  # bit i: the peer sent notice i
_FIELDS = 10
_UNSUBMITTED = -1

# What a future holds, and what a result event carries.
_NOTHING, _SUCCESS, _FAILURE, _NOT_A_RESULT, _UNKNOWN = 0, 1, 2, 3, 4
_HELD_NAMES = ("nothing", "a success", "a failure", "something that is not a result", "a result of unknown kind")

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

#: The local events that ask the peer to cancel: where they lead, a future
#: is cancelling.
_ASKING_EVENTS: Final = (CANCEL, CLEAR, GROUP_CANCEL)


@dataclass(frozen=True)
class PeerEvents:
    """A lifecycle's peer events split by what a faithful peer may do with
    them (see the module docstring), and what each result carries."""

    results: tuple[str, ...]
    confirms: tuple[str, ...]
    notices: tuple[str, ...]
    #: Confirms a live state that awaits no answer accepts: the peer may send
    #: them unasked.
    unasked: frozenset[str]
    #: Result event -> _SUCCESS, _FAILURE, _NOT_A_RESULT or _UNKNOWN.
    kinds: Mapping[str, int]

    @property
    def unclassified(self) -> tuple[str, ...]:
        """Result events no protocol ``TaskResult`` is classified as."""
        return tuple(event for event in self.results if self.kinds[event] == _UNKNOWN)


def peer_events(lifecycle: Lifecycle) -> PeerEvents:
    """Split ``lifecycle``'s peer events into results, confirms and notices.

    Derived from the rules and tags alone, so that any declaration gets the
    environment its own rules imply rather than the stock one.
    """
    results = lifecycle.result_events()
    return PeerEvents(
        results, lifecycle.confirm_events(), lifecycle.notice_events(), lifecycle.unasked_events(), _result_kinds(lifecycle, results)
    )


def _result_kinds(lifecycle: Lifecycle, results: tuple[str, ...]) -> dict[str, int]:
    """What each result event carries, asked of the lifecycle's classifier.

    The explorer must not learn it from the rules (a rule sending a success
    to a failed state is what it is looking for), so it asks what the
    protocol's own messages mean to this lifecycle: ``TaskResult`` SUCCESS is
    a success, the other types failures; a confirm or a started notice is
    not a result at all.
    """
    probe = TaskID(bytes(16))
    found: dict[str, set[int]] = {}
    samples: list[tuple[Any, int]] = [
        (TaskResult(probe, kind), _SUCCESS if kind == TaskResultType.SUCCESS else _FAILURE) for kind in TaskResultType
    ]
    samples += [(TaskCancelConfirm(probe, kind), _NOT_A_RESULT) for kind in CancelConfirmType]
    samples.append((TaskStarted(probe), _NOT_A_RESULT))
    for message, kind in samples:
        try:
            event = lifecycle.messages(message)
        except Exception:  # a library's classifier may not expect a foreign message
            _log.debug("the classifier of %r refused %r", lifecycle.name, message, exc_info=True)
            continue
        if event is not None:
            found.setdefault(event, set()).add(kind)
    kinds = {}
    for event in results:
        seen = found.get(event, set())
        kinds[event] = seen.pop() if len(seen) == 1 else _UNKNOWN
    return kinds


#: The answers after which the peer holds no task to report on.
_GONE_ANSWERS: Final = frozenset((CancelConfirmType.CANCELED, CancelConfirmType.CANCEL_NOT_FOUND))


def _confirm_meanings(lifecycle: Lifecycle) -> dict[str, frozenset[CancelConfirmType]]:
    """Event -> the protocol answers (``TaskCancelConfirm`` types) the
    lifecycle's classifier maps to it.

    Asked of the classifier, like :func:`_result_kinds`, so that a rule a
    mutant dropped or redirected cannot change what an answer means: the
    promises about answers (a "cancelled" ends the future, a refusal does
    not) hold the rules to what the message says.
    """
    probe = TaskID(bytes(16))
    found: dict[str, set[CancelConfirmType]] = {}
    for kind in CancelConfirmType:
        try:
            event = lifecycle.messages(TaskCancelConfirm(probe, kind))
        except Exception:  # a library's classifier may not expect a foreign message
            _log.debug("the classifier of %r refused a %s confirm", lifecycle.name, kind.name, exc_info=True)
            continue
        # Kept even when no rule names the event (a mutant dropped its only
        # rule): the peer still sends the answer, and the future ignores it.
        if isinstance(event, str) and event not in LOCAL_EVENTS:
            found.setdefault(event, set()).add(kind)
    return {event: frozenset(kinds) for event, kinds in found.items()}


def _started_events(lifecycle: Lifecycle) -> tuple[str, ...]:
    """The event the protocol's ``TaskStarted`` is classified as (none, for
    a lifecycle without a started notice), asked of the classifier."""
    try:
        event = lifecycle.messages(TaskStarted(TaskID(bytes(16))))
    except Exception:
        _log.debug("the classifier of %r refused a started notice", lifecycle.name, exc_info=True)
        return ()
    return (event,) if isinstance(event, str) and event not in LOCAL_EVENTS else ()


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
    """What one exploration visited and found.

    ``unexercised`` lists the declared ``(state, event)`` rules no explored
    ordering took; with ``strict`` they make the report fail. ``unmodelled``
    names the callbacks the explorer took to have no protocol effect;
    ``unclassified`` the result events of unknown kind; ``environment`` says
    which peer events were sent as results, confirms and notices.
    """

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
    strict: bool = False
    unmodelled: tuple[str, ...] = ()
    unclassified: tuple[str, ...] = ()
    environment: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every invariant held (and, when strict, every rule was exercised)."""
        return not self.violations and not (self.strict and self.unexercised)

    def summary(self) -> str:
        rate = self.states / self.seconds if self.seconds > 0 else float("inf")
        scope = "every reachable state" if self.exhausted else f"every ordering up to depth {self.depth}"
        lines = [
            f"lifecycle {self.policy!r}, {self.futures} future(s){' in one graph' if self.futures > 1 else ''}, "
            f"scheduler {self.scheduler}: {scope}",
            f"  distinct states {self.states}, edges {self.edges}, deepest new state at depth {self.depth_reached}, "
            f"{self.seconds:.3f}s ({rate:,.0f} states/s)",
        ]
        if self.environment:
            kinds = "; ".join(f"{kind} {', '.join(events) or '(none)'}" for kind, events in self.environment.items())
            lines.append(f"  the peer sends: {kinds}")
        if self.unmodelled:
            lines.append(f"  callbacks taken to have no protocol effect: {', '.join(self.unmodelled)}")
        if self.unclassified:
            lines.append(
                f"  results of unknown kind (no TaskResult maps to them; accepted as a success or a failure): {', '.join(self.unclassified)}"
            )
        if self.unexercised:
            listed = ", ".join(f"{state} --{event}-->" for state, event in self.unexercised)
            failing = "FAILED (strict) " if self.strict else ""
            lines.append(f"  {failing}declared transitions never exercised ({len(self.unexercised)}): {listed}")
        else:
            lines.append("  every declared transition was exercised")
        if self.violations:
            lines.append(f"  {len(self.violations)} invariant(s) violated: {', '.join(self.violations)}")
        else:
            lines.append(f"  every invariant held: {', '.join(self.invariants)}")
        return "\n".join(lines)


def load_lifecycle(source: str | Lifecycle | Mapping[str, Any] = DEFAULT_POLICY, name: str = "custom") -> Lifecycle:
    """A :class:`Lifecycle` from a policy name, a ``Lifecycle``, or a
    declaration (the keyword arguments of ``transitions.Machine``, declared
    with the stock classifier ``taskfate.fsm.lifecycle.stock_messages``).
    Whatever cannot be run safely is refused by :func:`declare` with
    ``DeclarationError``."""
    if isinstance(source, Lifecycle):
        return source
    if isinstance(source, str):
        return get_lifecycle(source)
    if isinstance(source, Mapping):
        return declare(source, messages=stock_messages, name=name)
    raise TypeError(f"expected a policy name, a Lifecycle or a declaration dict, got {type(source).__name__}")


def load_table(source: Table | Mapping[str, Any], name: str = "custom") -> Table:
    """A plain :class:`Table` (no outcome tags needed) from a ``Table`` or a
    declaration dict: what the system explorer reads a scheduler's task
    lifecycle as."""
    if isinstance(source, Table):
        return source
    if isinstance(source, Mapping):
        options = {"auto_transitions": False, "ignore_invalid_triggers": True, **dict(source)}
        return compile_machine(TaggedMachine(model=None, **options), name)
    raise TypeError(f"expected a Table or a declaration dict, got {type(source).__name__}")


def describe_action(action: Action) -> str:
    kind, index, event = action
    if kind in (_CANCEL, _CLEAR) and event:
        # An answer that arrives while the TaskCancel is being sent.
        plain = describe_action((kind, index, ""))
        return f"{plain}, and {event} arrives while its TaskCancel is sent"
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
    answer = f"/{event}" if event else ""
    if kind in (_CANCEL, _TIMEOUT):
        return f"{kind}:{index}{answer}"
    return kind + answer


def parse_trace(text: str, events: Iterable[str] | None = None) -> list[Action]:
    """Read a trace written by :func:`action_token` (space or comma separated).

    ``events`` are the peer events a message step may name (any identifier
    when ``None``; :meth:`Explorer.parse_trace` passes its lifecycle's).
    Raises ``ValueError`` naming the first token it cannot read.
    """
    known = None if events is None else frozenset(events)
    actions: list[Action] = []
    for token in text.replace(",", " ").split():
        token, _, answer = token.partition("/")
        name, _, who = token.partition(":")
        is_event = name.isidentifier() and (known is None or name in known)
        if answer and not (name in (_CANCEL, _CLEAR) and answer.isidentifier() and (known is None or answer in known)):
            raise ValueError(f"cannot read trace step {token}/{answer!r}: only cancel and clear take an answer during the send")
        if name in (_SUBMIT, _CLEAR, _CLOSE, _LOST) and not who:
            actions.append((name, 0, answer))
        elif who.isdigit() and name in (_CANCEL, _TIMEOUT):
            actions.append((name, int(who), answer))
        elif who == "group" and is_event:
            actions.append((_GROUP, -1, name))
        elif who.isdigit() and is_event:
            actions.append((_MESSAGE, int(who), name))
        else:
            raise ValueError(f"cannot read trace step {token!r}")
    return actions


class _Step:
    """The scratch record of one action: problems found and, when replaying,
    what the outside world saw."""

    __slots__ = ("problems", "effects", "tracing", "asked_group", "used", "sent", "force", "answer", "interleaved", "answered_sends")

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
        # The answer the peer gives while the action's first TaskCancel is
        # being sent (the send hands control back to the world), and whether
        # one was given.
        self.answer = ""
        self.interleaved = False
        self.answered_sends = 0  # TaskCancels sent when that answer came


class Explorer:
    """Breadth-first exploration of one lifecycle in a modelled world.

    ``futures`` futures (one graph when more than one); ``scheduler`` is
    ``"faithful"`` or ``"any"`` (see the module docstring). ``replay`` is the
    command that reproduces a trace; ``{trace}`` in it is replaced by the
    trace's tokens. With ``strict``, declared transitions never exercised
    fail the report.
    """

    def __init__(
        self,
        source: str | Lifecycle | Mapping[str, Any] = DEFAULT_POLICY,
        *,
        futures: int = 1,
        scheduler: str = "faithful",
        replay: str | None = None,
        strict: bool = False,
    ) -> None:
        if futures < 1:
            raise ValueError("explore at least one future")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler model {scheduler!r}; choose one of {SCHEDULERS}")
        self.lifecycle = load_lifecycle(source)
        self.futures = futures
        self.grouped = futures > 1
        self.scheduler = scheduler
        self.strict = strict
        life = self.lifecycle
        names = life.states
        self._names = names
        self._index = {name: number for number, name in enumerate(names)}
        self._initial = self._index[life.initial]
        self._terminal = frozenset(self._index[name] for name in life.terminal)
        self._outcome = tuple(life.outcome(name) for name in names)
        self._awaiting = frozenset(self._index[name] for name in life.awaiting)
        # Cancelling states: where a request to cancel leads, and those that
        # await the answer. A future there has asked; it must end even if the
        # peer falls silent.
        self._asking = self._awaiting | frozenset(
            self._index[rule.dest]
            for _, event, rule in life.rules()
            if event in _ASKING_EVENTS and rule.dest is not None and rule.dest not in life.terminal
        )
        self.peer = peer_events(life)
        # What the protocol's cancel answers mean to this lifecycle (asked of
        # its classifier, never read off the rules a mutant may have changed).
        meanings = _confirm_meanings(life)
        self._answers = tuple(meanings)
        self._gone = frozenset(event for event, kinds in meanings.items() if kinds <= _GONE_ANSWERS)
        self._cancelled_word = frozenset(event for event, kinds in meanings.items() if CancelConfirmType.CANCELED in kinds)
        self._refusals = frozenset(event for event, kinds in meanings.items() if kinds == {CancelConfirmType.CANCEL_FAILED})
        self._confirms = self.peer.confirms + tuple(event for event in meanings if event not in self.peer.confirms)
        self._unasked = self.peer.unasked | self._cancelled_word
        self._late_result = life.late_result
        self._running = frozenset(self._index[name] for name in life.running)
        self._started = frozenset(_started_events(life))
        self._results = self.peer.results
        self._result_number = {event: number for number, event in enumerate(self._results, 1)}
        # The started notice is sent even where no rule names it (a mutant
        # dropped its only rule), as the confirms are.
        self._notices = self.peer.notices + tuple(
            event for event in self._started if event not in self.peer.notices and event not in self._result_number and event not in self._answers
        )
        self._notice_bit = {event: 1 << number for number, event in enumerate(self._notices)}
        self.unmodelled = tuple(name for name in life.callbacks if name not in CALLBACKS)
        if self.unmodelled:
            _log.info("lifecycle %r: callbacks %s taken to have no protocol effect", life.name, ", ".join(self.unmodelled))
        # Rules by state index: event -> (dest index or None, before, after).
        self._rules: list[dict[str, tuple[int | None, tuple[str, ...], tuple[str, ...]]]] = [
            {
                event: (None if rule.dest is None else self._index[rule.dest], rule.before, rule.after)
                for event, rule in life.table[name].items()
            }
            for name in names
        ]
        if replay is None:
            stock = life.name in POLICIES and STOCK_LIFECYCLES[life.name] is life
            options = f"--policy {life.name} " if stock else "--declaration MODULE:NAME "
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

    def parse_trace(self, text: str) -> list[Action]:
        """:func:`parse_trace`, accepting only this lifecycle's peer events."""
        return parse_trace(text, (*self.lifecycle.peer_events, *self._answers, *self._notices))

    def run(self, depth: int = 10, progress: Callable[[str], None] | None = None) -> Report:
        """Explore every ordering of at most ``depth`` actions.

        ``progress`` receives one line per depth level once the run has taken
        more than a second (long runs only, so short ones stay quiet).
        """
        started = time.perf_counter()
        report = Report(
            self.lifecycle.name,
            self.futures,
            depth,
            self.scheduler,
            strict=self.strict,
            unmodelled=self.unmodelled,
            unclassified=self.peer.unclassified,
            environment={"results": self.peer.results, "confirms": self.peer.confirms, "notices": self.peer.notices},
        )
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
        peer = self.peer
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
            for number, event in enumerate(peer.results, 1):
                if not faithful or outcome in (0, number):
                    actions.append((_MESSAGE, index, event))
            asked = group_asked if self.grouped else future[_ASKED]
            for event in self._confirms:
                if not faithful or asked or event in self._unasked:
                    actions.append((_MESSAGE, index, event))
            for event in self._notices:
                if not faithful or (not outcome and not future[_NOTICED] & self._notice_bit[event]):
                    actions.append((_MESSAGE, index, event))
            if live:
                actions.append((_CANCEL, index, ""))
                for answer in self._answers:
                    actions.append((_CANCEL, index, answer))
            if future[_ARMED] and not closed:
                actions.append((_TIMEOUT, index, ""))
        if self.grouped and any_live:
            for event in self._confirms:
                if not faithful or group_asked or event in self._unasked:
                    actions.append((_GROUP, -1, event))
        if any_live:
            actions.append((_CLEAR, 0, ""))
            for answer in self._answers:
                actions.append((_CLEAR, 0, answer))
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
            future = futures[index]
            if event in self._result_number:
                future[_OUTCOME] = self._result_number[event]
            future[_NOTICED] |= self._notice_bit.get(event, 0)
            self._deliver(futures, index, event, step, before)
        elif kind == _GROUP:
            for member in self._live(futures):
                self._deliver(futures, member, event, step, before)
        elif kind == _CANCEL:
            step.answer = event
            self._user_cancel(futures, index, step, before)
            self._check_asked(futures, [index], before, step, "cancel()")
        elif kind == _TIMEOUT:
            self._timer_fires(futures, index, step, before)
        elif kind == _SUBMIT:
            futures[index][_ST] = self._initial
        elif kind == _CLEAR:
            step.answer = event
            members = self._live(futures)
            for member in members:
                self._dispatch(futures, member, CLEAR, step, before)
            self._check_asked(futures, members, before, step, "clear()")
        elif kind == _LOST:
            for member in self._live(futures):
                self._dispatch(futures, member, CONNECTION_LOST, step, before)
            self._check_lost(futures, before, step)
        elif kind == _CLOSE:
            closed = 1
            self._close(futures, step, before)
        if self.grouped and -1 in step.sent and not step.interleaved:
            self._check_group_asked(futures, step)
        if step.interleaved and len(step.sent) == step.answered_sends:
            self._check_answer_not_awaited(futures, step)
        self._wake_cancellers(futures)
        new_futures = tuple(tuple(future) for future in futures)
        if step.tracing:
            step.effects.insert(0, self.describe_action(action))
        return (new_futures, step.asked_group, closed)

    # What the manager does around the table, shared with the system explorer.

    def _deliver(self, futures: list[list[int]], index: int, event: str, step: _Step, before: list[int]) -> None:
        """A peer event reaches one future: the rule runs, then the promises
        about what that message means are checked."""
        source = futures[index][_ST]
        self._dispatch(futures, index, event, step, before)
        self._check_message(futures[index], index, event, source, step)

    def _user_cancel(self, futures: list[list[int]], index: int, step: _Step, before: list[int]) -> None:
        """``cancel()``: fire ``cancel``; the caller waits while the future
        awaits the answer, and has its answer at once otherwise."""
        self._dispatch(futures, index, CANCEL, step, before)
        future = futures[index]
        if future[_ST] in self._awaiting:
            future[_WAITING] = min(future[_WAITING] + 1, 2)
        elif self._outcome[future[_ST]] == CANCELLED:
            future[_PROMISED] = 1

    def _timer_fires(self, futures: list[list[int]], index: int, step: _Step, before: list[int]) -> None:
        """The confirm timer: its entry is consumed whatever happens, and it
        fires ``confirm_timeout`` only for a future still awaiting."""
        future = futures[index]
        future[_ARMED] = 0
        if future[_ST] in self._awaiting:
            self._dispatch(futures, index, CONFIRM_TIMEOUT, step, before)

    def _close(self, futures: list[list[int]], step: _Step, before: list[int]) -> None:
        """``close()``: ``close`` to every live future, every deadline dropped."""
        for member in self._live(futures):
            self._dispatch(futures, member, CLOSE, step, before)
        for number, future in enumerate(futures):
            future[_ARMED] = 0
            if future[_ST] != _UNSUBMITTED and future[_ST] not in self._terminal:
                step.problems.append(("close_ends_every_future", f"close() left f{number} {self._names[future[_ST]]}"))

    def _wake_cancellers(self, futures: list[list[int]]) -> None:
        """``cancel()`` callers wake when the future stops awaiting; they
        return True iff it ended cancelled."""
        for future in futures:
            if future[_WAITING] and future[_ST] not in self._awaiting:
                future[_WAITING] = 0
                if self._outcome[future[_ST]] == CANCELLED:
                    future[_PROMISED] = 1

    def _live(self, futures: list[list[int]]) -> list[int]:
        return [n for n, f in enumerate(futures) if f[_ST] != _UNSUBMITTED and f[_ST] not in self._terminal]

    def _dispatch(self, futures: list[list[int]], index: int, event: str, step: _Step, before: list[int], nesting: int = 0) -> None:
        """One lifecycle event on one future, as the manager executes it."""
        future = futures[index]
        source = future[_ST]
        rule = self._rules[source].get(event)
        is_result = event in self._result_number
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
            recorded |= self._callback(callback, futures, index, event, step, before, nesting, source)
        if dest is not None:
            # Where the future is now: an answer during a send in the
            # before callbacks may have moved it since the rule began.
            current = future[_ST]
            if current in self._terminal:
                step.problems.append(
                    ("terminal_never_left", f"f{index} in terminal {self._names[current]} moved to {self._names[dest]} on {event}")
                )
            elif dest in self._terminal and event in _ASKING_EVENTS:
                step.problems.append(
                    ("cancel_waits_for_answer", f"{event} ended f{index} ({self._names[source]} -> {self._names[dest]}) without an answer from the peer")
                )
            future[_ST] = dest
            if dest in self._terminal:
                future[_ENDS] = min(future[_ENDS] + 1, 2)
                if future[_ENDS] > 1:
                    step.problems.append(
                        ("callbacks_exactly_once", f"f{index} entered a terminal state a second time ({self._names[dest]}): done callbacks would run again")
                    )
                # done() is True from here on, read without the lock: what the
                # future reports must already be in place.
                if is_result and not recorded:
                    step.problems.append(
                        ("result_recorded", f"{event} ended f{index} {self._names[dest]} before its result was kept or recorded as discarded")
                    )
                self._check_end(future, index, step)
        if step.tracing:
            step.effects.append(f"f{index}: {self._names[source]} --{event}--> {self._names[dest] if dest is not None else '(stays)'}")
        for callback in after_callbacks:
            recorded |= self._callback(callback, futures, index, event, step, before, nesting, source)
        if is_result and not recorded:
            step.problems.append(
                ("result_recorded", f"{event} took f{index} {self._names[source]} -> {self._names[future[_ST]]} with neither keep_result nor discard_result")
            )

    def _callback(
        self, name: str, futures: list[list[int]], index: int, event: str, step: _Step, before: list[int], nesting: int, source: int
    ) -> bool:
        """Apply one named callback's outside effect; True if it recorded a
        result. A callback outside the modelled vocabulary has none.
        ``source`` is the state the rule running it started from."""
        future = futures[index]
        if name == KEEP_RESULT:
            kind = self.peer.kinds.get(event, _NOT_A_RESULT)
            if kind == _NOT_A_RESULT:
                future[_HELD] = _NOT_A_RESULT
                step.problems.append(("result_matches_state", f"keep_result ran for {event}, which carries no result"))
                return False
            if future[_HELD]:
                step.problems.append(("result_recorded", f"{event} overwrote the result f{index} already held"))
            future[_HELD] = kind
            return True
        if name == DISCARD_RESULT:
            if step.tracing:
                step.effects.append(f"f{index}: {event} recorded in discarded_results")
            return event in self._result_number
        if name == SEND_CANCEL:
            if source in self._asking:
                step.problems.append(("one_request_per_cancel", f"f{index} sent a second TaskCancel while one was in flight"))
            if self.grouped:
                if -1 in step.sent[step.answered_sends :]:
                    step.problems.append(("one_request_per_cancel", f"the group's TaskCancel was sent twice in one step (again by f{index})"))
                step.asked_group = 1
            else:
                future[_ASKED] = 1
            step.sent.append(-1 if self.grouped else index)
            if step.tracing:
                step.effects.append(f"TaskCancel({'group' if self.grouped else f'f{index}'}) sent")
            answer = step.answer
            if answer:
                # The send hands control back: the peer's answer to this very
                # request arrives before the rest of the rule has run.
                step.answer = ""
                step.interleaved = True
                step.answered_sends = len(step.sent)
                for member in self._live(futures) if self.grouped else [index]:
                    source = futures[member][_ST]
                    self._dispatch(futures, member, answer, step, before, nesting + 1)
                    self._check_message(futures[member], member, answer, source, step)
            return False
        if name == CANCEL_GROUP:
            if self.grouped:
                if nesting > len(futures):
                    step.problems.append(("can_end", "cancel_group keeps cancelling the group: the manager would recurse forever"))
                    return False
                for sibling in self._live(futures):
                    if sibling != index:
                        self._dispatch(futures, sibling, GROUP_CANCEL, step, before, nesting + 1)
            return False
        if name == ARM_CONFIRM_TIMEOUT:
            future[_ARMED] = 1
        elif name == DISARM_CONFIRM_TIMEOUT:
            future[_ARMED] = 0
        elif name == KEEP_CONNECTION_ERROR:
            future[_ERR] = 1
        elif step.tracing and name in self.unmodelled:
            step.effects.append(f"f{index}: {name} runs (a callback of its own; no protocol effect modelled)")
        return False

    # -- The promises about states ---------------------------------------------

    def _check_message(self, future: list[int], index: int, event: str, source: int, step: _Step) -> None:
        """What a peer message means, held against where it took a live
        future (``source`` is where it found it)."""
        if source == _UNSUBMITTED or source in self._terminal:
            return
        st = future[_ST]
        ended = st in self._terminal
        outcome = self._outcome[st]
        where = f"{event} took f{index} {self._names[source]} -> {self._names[st]}"
        if event in self._result_number and self.peer.kinds[event] != _NOT_A_RESULT:
            kind = self.peer.kinds[event]
            if not ended:
                step.problems.append(("result_ends_future", f"{where}: the task is over, but the future is still live"))
            elif source in self._awaiting and self._late_result is not None and kind != _UNKNOWN:
                if self._late_result == "cancel":
                    expected = CANCELLED
                else:
                    expected = RESULT if kind == _SUCCESS else EXCEPTION
                if outcome != expected:
                    step.problems.append(
                        ("policy_kept", f"{where} (tagged {outcome!r}): late_result={self._late_result!r} promises {expected!r} for a result that races a cancel")
                    )
            return
        if event in self._notice_bit:
            if ended:
                step.problems.append(("notice_is_not_an_end", f"{where}: a notice ended the future, which is owed a result or an answer"))
            elif event in self._started and self._running and source not in self._asking and st not in self._running:
                step.problems.append(("started_means_running", f"{where}: the peer started the task, yet running() is False"))
        if event not in self._answers:
            return
        awaiting = source in self._awaiting
        if event in self._cancelled_word or (awaiting and event in self._gone):
            if outcome != CANCELLED:
                step.problems.append(("gone_ends_future", f"{where}: the peer holds no task any more, yet the future is not cancelled"))
        if awaiting and st in self._awaiting:
            step.problems.append(("answer_ends_wait", f"{where}: the request was answered, yet the future waits for an answer still"))
        if awaiting and event in self._refusals:
            if ended:
                step.problems.append(("refusal_is_not_an_end", f"{where}: the peer refused to cancel, so the task runs on and its result is owed"))
            elif self._running and st not in self._running:
                # The peer refuses a cancel only for a task a worker runs.
                step.problems.append(("refusal_is_not_an_end", f"{where}: the peer refused because the task runs, yet running() is False"))

    def _check_asked(self, futures: list[list[int]], members: list[int], before: list[int], step: _Step, call: str) -> None:
        """After ``cancel()`` or ``clear()`` (no answer during the send), the
        futures it was called on that were not already cancelling are."""
        if step.interleaved:
            return
        for member in members:
            was = before[member]
            if was == _UNSUBMITTED or was in self._terminal or was in self._asking:
                continue
            st = futures[member][_ST]
            if st not in self._asking:
                step.problems.append(("cancel_is_requested", f"{call} left f{member} {self._names[st]}: nothing was asked of the peer"))

    def _check_group_asked(self, futures: list[list[int]], step: _Step) -> None:
        """The group's one ``TaskCancel`` went out: every live member is
        cancelling (each waits for the group's answer and ends by it)."""
        for member in self._live(futures):
            st = futures[member][_ST]
            if st not in self._asking:
                step.problems.append(
                    ("group_cancelled_together", f"the group's TaskCancel was sent, but f{member} is {self._names[st]}: it will not wait for the answer")
                )

    def _check_answer_not_awaited(self, futures: list[list[int]], step: _Step) -> None:
        """The peer answered while the request was being sent, and nothing
        was asked since: no future may now wait for that answer (it will
        not come again; a member that began waiting only after it arrived
        missed it)."""
        for member in self._live(futures):
            st = futures[member][_ST]
            if st in self._awaiting:
                step.problems.append(
                    ("answer_ends_wait", f"f{member} waits in {self._names[st]} for the answer that arrived while its TaskCancel was sent")
                )

    def _check_lost(self, futures: list[list[int]], before: list[int], step: _Step) -> None:
        """After the connection is lost, every future that was live has
        failed with the transport's error."""
        for member, was in enumerate(before):
            if was == _UNSUBMITTED or was in self._terminal:
                continue
            future = futures[member]
            st = future[_ST]
            if self._outcome[st] != EXCEPTION or not future[_ERR]:
                error = "holding the connection error" if future[_ERR] else "without the connection error"
                step.problems.append(
                    ("loss_ends_every_future", f"connection_lost left f{member} {self._names[st]} {error}: it must fail with ConnectionLost")
                )

    def _check_end(self, future: list[int], index: int, step: _Step) -> None:
        st, held = future[_ST], future[_HELD]
        outcome = self._outcome[st]
        where = f"f{index} ended {self._names[st]} (tagged {outcome!r}) holding {_HELD_NAMES[held]}"
        if outcome == RESULT and held not in (_SUCCESS, _UNKNOWN):
            step.problems.append(("result_matches_state", f"{where}: result() has no value to return"))
        elif outcome == EXCEPTION and held not in (_FAILURE, _UNKNOWN) and not future[_ERR]:
            step.problems.append(("result_matches_state", f"{where} and no error"))
        elif outcome == CANCELLED and held in (_SUCCESS, _FAILURE, _UNKNOWN):
            step.problems.append(("result_recorded", f"{where}, which it never reports nor records as discarded"))

    def _state_problems(self, state: State) -> list[tuple[str, str]]:
        problems = []
        futures, group_asked, closed = state
        for index, future in enumerate(futures):
            st = future[_ST]
            if st == _UNSUBMITTED:
                continue
            if future[_PROMISED] and self._outcome[st] != CANCELLED:
                problems.append(("cancel_returns_final_state", f"cancel() on f{index} returned True but it is now {self._names[st]}"))
            if bool(future[_ARMED]) != (st in self._awaiting):
                armed = "armed" if future[_ARMED] else "not armed"
                problems.append(("timer_armed_while_awaiting", f"f{index} is {self._names[st]} and its confirm timer is {armed}"))
            if st in self._terminal:
                continue
            if st in self._asking and not (group_asked if self.grouped else future[_ASKED]):
                problems.append(("one_request_per_cancel", f"f{index} is cancelling in {self._names[st]}, but no TaskCancel was sent"))
            if not self._can_end[st]:
                problems.append(("can_end", f"f{index} is in {self._names[st]}, which no event ever leaves for a terminal state"))
            elif st in self._asking and not closed and not self._silent_end(st, future[_ARMED]):
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
            if not seen_armed or seen_st not in self._awaiting:
                break
            seen_armed = 0
            rule = self._rules[seen_st].get(CONFIRM_TIMEOUT)
            if rule is None:
                break
            dest, before_callbacks, after_callbacks = rule
            # The callbacks run in order (before, exit, enter, after), so the
            # last arm or disarm among them decides.
            for callback in before_callbacks + after_callbacks:
                if callback == ARM_CONFIRM_TIMEOUT:
                    seen_armed = 1
                elif callback == DISARM_CONFIRM_TIMEOUT:
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
    source: str | Lifecycle | Mapping[str, Any] = DEFAULT_POLICY,
    *,
    depth: int = 10,
    futures: int = 1,
    scheduler: str = "faithful",
    strict: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Explore ``source``'s lifecycle (see :class:`Explorer`) and report."""
    return Explorer(source, futures=futures, scheduler=scheduler, strict=strict).run(depth, progress)
