"""Both sides together: client futures, scheduler tasks and the wire between.

:mod:`taskfate.fsm.explore` checks the client's lifecycle against every
message a scheduler *might* send. Here the scheduler is the declared one: its
per-task lifecycle (``taskfate.scheduler.lifecycle``, handed in compiled, so
this layer does not import the scheduler) decides what it sends, and a
channel carries messages both ways.

The model
---------

* The client: the futures of :mod:`taskfate.fsm.explore`, with the manager's
  routing (finished futures receive nothing more; a group's confirm reaches
  its live members). Users submit (the graph's nodes in order), cancel (forced
  or gentle), clear, close; the connection may be lost; armed timers fire.
* The scheduler: one declared task lifecycle per node, node ``i`` depending
  on node ``i - 1`` (a chain, the smallest graph whose nodes become ready
  one by one), routed as the reference scheduler's loop routes: a ``Task``
  it holds is ignored; a node whose dependency it holds waits; one whose
  dependency it no longer holds runs if that dependency succeeded (its
  result is kept) and fails otherwise; a ``TaskCancel`` fires
  ``cancel_force``/``cancel_gentle`` on the task or on every member of the
  group it still holds, and an id it does not hold is answered "not found";
  ``forget`` drops a record. Workers assign, finish, fail and die at any
  moment; after the client closed (``ClientDisconnect``) or lost its
  connection the scheduler may notice (``client_gone``).
* The channel, both ways. What is in flight in each direction is a set:
  any message may be delivered next (reordering), delivered and kept
  (duplication) or dropped. A ``Task`` delivered again after the scheduler
  forgot the first is run again, as the reference scheduler would. A real
  transport drops only when the connection breaks, and the client then
  learns it from the heartbeat; so once anything was dropped, the
  connection loss counts as something that will happen. (``lossy_requests=
  False`` keeps the client's messages in order and loses them only by
  breaking, as one ZeroMQ connection does.)
* Cancel epochs. Each ``TaskCancel`` carries its request number for the
  cancel target (the lone future, or the graph); the scheduler echoes it in
  the confirms that answer it, and sends 0 in a confirm nobody asked for.
  The client drops a refusal that answers an earlier request, as the
  manager does; a stale "cancelled" or "not found" is still acted on (the
  task is gone whichever request found it so). ``epochs=False`` models a
  protocol without the field (Scaler's): every confirm is acted on.

What is checked
---------------

Every promise of :mod:`taskfate.fsm.explore` on the client side, at every
step; on the scheduler side, that a task's result is one result
(``scheduler_answers_once``); that a refusal the client acts on answers its
latest request (``refusal_answers_latest_request``: a stale "cannot cancel"
for an earlier gentle request must not undo a later forced one, which the
scheduler never refuses); and across the whole system,
``futures_can_end``: from every reachable joint state, with no further user
action, the scheduler making progress, the channel delivering what is in
flight (a connection already broken being noticed) and timeouts firing,
every submitted future ends. That is the property real schedulers have
broken (a node that becomes ready while its graph is being cancelled is
never answered, and the client waits forever on exit). With
``timeouts=False`` the client's confirm timer is taken away, which shows
what the scheduler alone guarantees.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from taskfate.fsm.declare import CANCEL, CLEAR, CLOSE, CONNECTION_LOST, Lifecycle, Table
from taskfate.fsm.explore import (
    _ARMED,
    _ST,
    _UNSUBMITTED,
    Explorer,
    Report,
    Violation,
    _Step,
    load_table,
)
from taskfate.fsm.lifecycle import DEFAULT_POLICY, Policy
from taskfate.protocol import CancelConfirmType, TaskCancelConfirm, TaskID, TaskResult, TaskResultType, TaskStarted

__all__ = ["SYSTEM_INVARIANTS", "SystemExplorer"]

SYSTEM_INVARIANTS: Final = ("scheduler_answers_once", "refusal_answers_latest_request", "futures_can_end")

# Messages in flight are (kind, target, code, epoch) tuples of ints; target
# -1 is the group. Codes: force flag, or the TaskResultType /
# CancelConfirmType. Epoch: a TaskCancel's request number, echoed by the
# confirms that answer it (0: not an answer to a numbered request).
_TASK, _CANCEL, _RESULT, _CONFIRM, _DISCONNECT, _STARTED = 0, 1, 2, 3, 4, 5
Wire = tuple[int, int, int, int]

# A scheduler task is (state index or -1 before its Task arrived, result sent:
# 0 none, else 1 + the TaskResultType, forgotten: the record was dropped
# by ``forget`` and the scheduler no longer knows the id).
_SCHEDULER_EFFECTS = frozenset(
    {
        "enqueue",
        "start_on_worker",
        "send_result",
        "send_worker_died",
        "send_dependency_failure",
        "release_dependants",
        "fail_dependants",
        "cancel_dependants",
        "stop_worker",
        "send_canceled",
        "send_cancel_failed",
        "send_not_found",
        "forget",
    }
)
#: The scheduler's confirm callbacks and the CancelConfirmType each sends.
_CONFIRMS_SENT: Final = {
    "send_canceled": CancelConfirmType.CANCELED,
    "send_cancel_failed": CancelConfirmType.CANCEL_FAILED,
    "send_not_found": CancelConfirmType.CANCEL_NOT_FOUND,
}
_WORKER_EVENTS = ("assign", "finish_success", "finish_failure", "worker_lost")

# System state: (futures, group asked, closed, scheduler tasks, to scheduler,
# to client, flags, requests) where flags bit 0 = something was dropped, bit
# 1 = the client is gone (closed or lost its connection), and requests is
# how many TaskCancels the client has sent for its cancel target (the lone
# future, or the graph): the latest one's epoch. To the client is a set in
# flight; to the scheduler a sorted tuple of distinct messages (a set) when
# requests are lossy, the connection's queue in order when they are not.
SystemState = tuple[Any, int, int, tuple[tuple[int, int, int], ...], tuple[Wire, ...], frozenset[Wire], int, int]
Action = tuple[Any, ...]


def _wire_name(message: Wire) -> str:
    kind, target, code, epoch = message
    who = "group" if target < 0 else f"t{target}"
    if kind == _TASK:
        return f"Task({who})"
    if kind == _DISCONNECT:
        return "ClientDisconnect"
    if kind == _CANCEL:
        return f"TaskCancel({who}, force={bool(code)}, epoch={epoch})"
    if kind == _STARTED:
        return f"TaskStarted({who})"
    if kind == _RESULT:
        return f"TaskResult({who}, {TaskResultType(code).name})"
    return f"TaskCancelConfirm({who}, {CancelConfirmType(code).name}, epoch={epoch})"


def _protocol_message(message: Wire) -> Any:
    """The protocol message a scheduler-to-client wire tuple stands for."""
    kind, target, code, _ = message
    task_id = TaskID(bytes(16))
    if kind == _STARTED:
        return TaskStarted(task_id)
    if kind == _RESULT:
        return TaskResult(task_id, TaskResultType(code))
    return TaskCancelConfirm(task_id, CancelConfirmType(code))


class SystemExplorer(Explorer):
    """Explore client futures and declared scheduler tasks together.

    ``scheduler_lifecycle`` is the scheduler's compiled declaration
    (``taskfate.scheduler.lifecycle.compiled()``, or a declaration dict);
    ``client`` is anything :class:`~taskfate.fsm.explore.Explorer` accepts.
    The scheduler speaks the reference protocol, so the client's events are
    what its lifecycle's classifier makes of ``TaskResult``,
    ``TaskCancelConfirm`` and ``TaskStarted``: any lifecycle that reads
    those can be explored here, and a library's own message never arrives.
    """

    def __init__(
        self,
        client: Policy | Lifecycle | Mapping[str, Any] = DEFAULT_POLICY,
        scheduler_lifecycle: Table | Mapping[str, Any] | None = None,
        *,
        futures: int = 1,
        timeouts: bool = True,
        epochs: bool = True,
        lossy_requests: bool = True,
        replay: str | None = None,
    ) -> None:
        if scheduler_lifecycle is None:
            raise ValueError("pass the scheduler's compiled lifecycle (taskfate.scheduler.lifecycle.compiled())")
        scheduler_table = load_table(scheduler_lifecycle, "custom scheduler")
        if replay is None:
            client_option = f"--policy {client}" if isinstance(client, str) else "--declaration MODULE:NAME"
            if scheduler_table.name != "scheduler":
                client_option += " --scheduler-declaration MODULE:NAME"
            switches = ("" if timeouts else " --no-timeouts") + ("" if epochs else " --no-epochs") + ("" if lossy_requests else " --ordered-requests")
            replay = f"taskfate explore --system {client_option} --futures {futures}{switches} --replay '{{trace}}'"
        super().__init__(client, futures=futures, scheduler="any", replay=replay)
        self.sched = scheduler_table
        self.timeouts = timeouts
        self.epochs = epochs
        self.lossy_requests = lossy_requests
        self._answering = 0  # the epoch of the TaskCancel the scheduler is answering
        self._symmetric = False  # chain dependencies tell the nodes apart
        self._s_names = scheduler_table.states
        self._s_index = {name: number for number, name in enumerate(self._s_names)}
        self._s_initial = self._s_index[scheduler_table.initial]
        self._s_terminal = frozenset(self._s_index[name] for name in scheduler_table.terminal)
        self._s_rules: list[dict[str, tuple[int | None, tuple[str, ...], tuple[str, ...]]]] = []
        for name in self._s_names:
            rules = {}
            for event, rule in scheduler_table.table[name].items():
                for callback in rule.before + rule.after:
                    if callback not in _SCHEDULER_EFFECTS:
                        raise ValueError(f"scheduler {name} --{event}--> calls {callback!r}, whose effect the explorer does not know")
                rules[event] = (None if rule.dest is None else self._s_index[rule.dest], rule.before, rule.after)
            self._s_rules.append(rules)
        self._succeeded = self._s_index.get("succeeded", -2)
        self._s_used: set[tuple[int, str]] = set()
        # The manager drops a message its classifier does not map; so does
        # the model, which keeps TaskStarted off the wire for a lifecycle
        # that ignores it (the state space stays the stock one's).
        self._event_of = {
            (wire[0], wire[2]): self._classify(wire)
            for wire in [(_RESULT, 0, int(kind), 0) for kind in TaskResultType]
            + [(_CONFIRM, 0, int(kind), 0) for kind in CancelConfirmType]
            + [(_STARTED, 0, 0, 0)]
        }
        self._sends_started = self._event_of[(_STARTED, 0)] is not None

    def _classify(self, wire: Wire) -> str | None:
        try:
            return self.lifecycle.messages(_protocol_message(wire))
        except Exception:  # a classifier that does not expect the message ignores it
            return None

    # -- Public ------------------------------------------------------------------

    def initial(self) -> SystemState:  # type: ignore[override]
        futures, asked, closed = super().initial()
        # The first node is submitted at the start: its Task is on the wire.
        scheduler = ((-1, 0, 0),) * self.futures
        return (futures, asked, closed, scheduler, ((_TASK, 0, 0, 0),), frozenset(), 0, 0)

    def run(self, depth: int = 14, progress: Callable[[str], None] | None = None) -> Report:
        """Explore to ``depth``, then check that futures can end from every state reached."""
        started = time.perf_counter()
        self._s_used = set()
        self._reached: list[Any] = []
        report = super().run(depth, progress)
        report.policy = f"{self.lifecycle.name} + scheduler {self.sched.name}"
        report.invariants = report.invariants + SYSTEM_INVARIANTS
        report.scheduler = "declared" + ("" if self.timeouts else ", client timeouts off")
        report.environment = {}  # the declared scheduler decides what is sent, not the kinds
        self._check_liveness(report, progress)
        report.unexercised += [
            (f"scheduler:{name}", event)
            for number, name in enumerate(self._s_names)
            for event in self._s_rules[number]
            if (number, event) not in self._s_used
        ]
        report.seconds = time.perf_counter() - started
        return report

    def describe_state(self, state: Any) -> str:
        client = super().describe_state(state[:3])
        tasks = ", ".join(
            f"t{number} {'unknown' if st < 0 else self._s_names[st]}{' (forgotten)' if forgotten else ''}"
            for number, (st, _, forgotten) in enumerate(state[3])
        )
        to_sched = ", ".join(_wire_name(m) for m in state[4]) or "nothing"
        to_client = ", ".join(sorted(_wire_name(m) for m in state[5])) or "nothing"
        flags = (" [connection broke]" if state[6] & 1 else "") + (" [client gone]" if state[6] & 2 else "")
        requests = f" | cancel requests sent: {state[7]}" if state[7] else ""
        return f"client: {client} | scheduler: {tasks} | to scheduler: {to_sched} | to client: {to_client}{flags}{requests}"

    # -- Moves -------------------------------------------------------------------

    def _actions(self, state: Any) -> list[Action]:
        futures, _, closed, tasks, to_sched, to_client, flags, _ = state
        actions: list[Action] = []
        any_live = False
        submitted_next = False
        for index, future in enumerate(futures):
            st = future[_ST]
            if st == _UNSUBMITTED:
                # One connection per exploration: once the client closed or
                # lost it, nothing more is submitted on it.
                if not submitted_next and not closed and not flags & 2:
                    actions.append(("submit", index))
                    submitted_next = True
                continue
            if st not in self._terminal:
                any_live = True
                actions.append(("cancel", index, 1))
                actions.append(("cancel", index, 0))
            if future[_ARMED] and not closed and self.timeouts:
                actions.append(("timeout", index))
        if any_live:
            actions += [("clear",), ("connection_lost",)]
        if not closed:
            actions.append(("close",))
        if self.lossy_requests:
            in_flight = list(to_sched) + sorted(to_client)
        else:
            # One connection keeps the client's messages in order; it loses
            # them only by breaking.
            if to_sched:
                actions += [("deliver", *to_sched[0]), ("drop", *to_sched[0])]
            in_flight = sorted(to_client)
        for message in in_flight:
            for how in ("deliver", "duplicate", "drop"):
                actions.append((how, *message))
        actions += self._scheduler_moves(tasks, flags)
        return actions

    def _scheduler_moves(self, tasks: tuple[tuple[int, int, int], ...], flags: int) -> list[Action]:
        moves: list[Action] = []
        for index, (st, _, forgotten) in enumerate(tasks):
            if st < 0 or forgotten:
                continue
            rules = self._s_rules[st]
            for event in _WORKER_EVENTS:
                if event in rules:
                    moves.append((event, index))
            if flags & 2 and "client_gone" in rules:
                moves.append(("client_gone", index))
        return moves

    def _progress(self, state: Any) -> list[Action]:
        """Moves that need nobody to act: the scheduler, deliveries, timers,
        and a broken connection being noticed."""
        futures, _, closed, tasks, to_sched, to_client, flags, _ = state
        moves: list[Action] = [("deliver", *message) for message in sorted(to_client)]
        if to_sched:
            moves += [("deliver", *message) for message in (to_sched if self.lossy_requests else to_sched[:1])]
        moves += self._scheduler_moves(tasks, flags)
        if self.timeouts and not closed:
            moves += [("timeout", index) for index, future in enumerate(futures) if future[_ARMED]]
        if flags & 1 and any(f[_ST] != _UNSUBMITTED and f[_ST] not in self._terminal for f in futures):
            moves.append(("connection_lost",))
        return moves

    def _apply(self, state: Any, action: Action, step: _Step) -> Any:
        futures_t, _, closed, tasks_t, to_sched_t, to_client_t, flags, requests = state
        futures = [list(future) for future in futures_t]
        tasks = [list(task) for task in tasks_t]
        to_sched, to_client = list(to_sched_t), set(to_client_t)
        before = [future[_ST] for future in futures]
        kind = action[0]
        if kind == "submit":
            futures[action[1]][_ST] = self._initial
            to_sched.append((_TASK, action[1], 0, 0))
        elif kind == "cancel":
            step.force = action[2]
            self._user_cancel(futures, action[1], step, before)
            self._check_asked(futures, [action[1]], before, step, "cancel()")
        elif kind == "timeout":
            self._timer_fires(futures, action[1], step, before)
        elif kind == "close":
            closed = 1
            flags |= 2
            to_sched.append((_DISCONNECT, 0, 0, 0))
            self._close(futures, step, before)
        elif kind == "clear":
            members = self._live(futures)
            for member in members:
                self._dispatch(futures, member, CLEAR, step, before)
            self._check_asked(futures, members, before, step, "clear()")
        elif kind == "connection_lost":
            for member in self._live(futures):
                self._dispatch(futures, member, CONNECTION_LOST, step, before)
            self._check_lost(futures, before, step)
            flags |= 2
        elif kind in ("deliver", "duplicate", "drop"):
            message: Wire = (action[1], action[2], action[3], action[4])
            to_scheduler = message[0] in (_TASK, _CANCEL, _DISCONNECT)
            if kind != "duplicate":
                if to_scheduler:
                    to_sched.remove(message)
                else:
                    to_client.discard(message)
            if kind == "drop":
                flags |= 1
            elif to_scheduler:
                self._scheduler_receives(message, tasks, to_client, step)
            else:
                self._client_receives(message, futures, requests, step, before)
        else:  # a worker event or client_gone on scheduler task action[1]
            self._fire(tasks, action[1], kind, to_client, step)
        if self.grouped and -1 in step.sent:
            self._check_group_asked(futures, step)
        self._wake_cancellers(futures)
        for target in step.sent:
            requests += 1
            to_sched.append((_CANCEL, target, step.force, requests))
        if self.lossy_requests:
            to_sched = sorted(set(to_sched))  # a set in flight: one copy of each
        if step.tracing:
            step.effects.insert(0, self.describe_action(action))
        return (
            tuple(tuple(future) for future in futures),
            step.asked_group,
            closed,
            tuple((task[0], task[1], task[2]) for task in tasks),
            tuple(to_sched),
            frozenset(to_client),
            flags,
            requests,
        )

    def _client_receives(self, message: Wire, futures: list[list[int]], requests: int, step: _Step, before: list[int]) -> None:
        kind, target, code, epoch = message
        event = self._event_of[(kind, code)]
        if event is None:
            if step.tracing:
                step.effects.append(f"{_wire_name(message)}: not for futures, the manager drops it")
            return
        # An answer to an earlier request. Only a refusal is dropped: "cancelled"
        # and "not found" say the task is gone, whichever request they answer,
        # and dropping them would leave a future waiting for a task that no
        # longer exists (a reordered pair of requests does exactly that).
        stale = kind == _CONFIRM and epoch != 0 and epoch != requests
        if stale and self.epochs and code == CancelConfirmType.CANCEL_FAILED:
            if step.tracing:
                step.effects.append(f"{_wire_name(message)} answers request {epoch}, not the latest ({requests}): the manager drops it")
            return
        members = [target] if target >= 0 else self._live(futures)
        for member in members:
            future = futures[member]
            if future[_ST] in self._terminal:
                if step.tracing:
                    step.effects.append(f"{event} for finished f{member}: recorded by the manager as late")
                continue
            if stale and code == CancelConfirmType.CANCEL_FAILED and future[_ST] in self._awaiting:
                step.problems.append(
                    (
                        "refusal_answers_latest_request",
                        f"f{member} acted on a refusal of request {epoch} while it waits for the answer to request {requests}",
                    )
                )
            self._deliver(futures, member, event, step, before)

    def _known(self, tasks: list[list[int]], index: int) -> bool:
        """Whether the scheduler holds a record for node ``index``."""
        return tasks[index][0] >= 0 and not tasks[index][2]

    def _scheduler_receives(self, message: Wire, tasks: list[list[int]], to_client: set[Wire], step: _Step) -> None:
        """What the reference scheduler's loop does with a client message."""
        kind, target, code, epoch = message
        if kind == _DISCONNECT:
            for index in range(len(tasks)):
                self._fire(tasks, index, "client_gone", to_client, step)
            return
        if kind == _TASK:
            if self._known(tasks, target):
                return  # a Task it already holds is counted and ignored
            if tasks[target][2]:
                tasks[target][1] = 0  # forgotten: delivered again, it is a new run
            tasks[target][0], tasks[target][2] = self._s_initial, 0
            if step.tracing:
                step.effects.append(f"scheduler: t{target} created {self._s_names[self._s_initial]}")
            if target > 0 and self._known(tasks, target - 1):
                return  # waits for its dependency to finish
            if target == 0 or tasks[target - 1][0] == self._succeeded:
                # No dependency, or one that succeeded: its result is kept
                # for the graph's nodes still on their way.
                self._fire(tasks, target, "dependencies_met", to_client, step)
            else:
                # A dependency the scheduler does not hold and has no
                # result of: failed, cancelled or never seen.
                self._fire(tasks, target, "dependency_failed", to_client, step)
            return
        event = "cancel_force" if code else "cancel_gentle"
        if target >= 0:
            members = [target] if self._known(tasks, target) else []
        else:
            members = [member for member in range(len(tasks)) if self._known(tasks, member)]
        if not members:
            to_client.add((_CONFIRM, target, int(CancelConfirmType.CANCEL_NOT_FOUND), epoch))
            if step.tracing:
                step.effects.append(f"scheduler: {'the group' if target < 0 else f't{target}'} unknown: not found")
            return
        # Every confirm sent while this request is handled answers it.
        self._answering = epoch
        try:
            for member in members:
                # Members cancelled along the way (as dependants) are skipped.
                if self._known(tasks, member):
                    self._fire(tasks, member, event, to_client, step)
        finally:
            self._answering = 0

    def _fire(self, tasks: list[list[int]], index: int, event: str, to_client: set[Wire], step: _Step) -> None:
        task = tasks[index]
        if not self._known(tasks, index):
            return
        source = task[0]
        rule = self._s_rules[source].get(event)
        if rule is None:
            return
        self._s_used.add((source, event))
        dest, before_callbacks, after_callbacks = rule
        for callback in before_callbacks:
            self._scheduler_effect(callback, tasks, index, event, to_client, step)
        if dest is not None:
            task[0] = dest
        if step.tracing:
            step.effects.append(f"scheduler: t{index} {self._s_names[source]} --{event}--> {self._s_names[dest] if dest is not None else '(stays)'}")
        for callback in after_callbacks:
            self._scheduler_effect(callback, tasks, index, event, to_client, step)

    def _scheduler_effect(self, name: str, tasks: list[list[int]], index: int, event: str, to_client: set[Wire], step: _Step) -> None:
        result = -1
        if name == "send_result":
            result = 0 if event == "finish_success" else 1
        elif name == "send_worker_died":
            result = 2
        elif name == "send_dependency_failure":
            result = 1
        elif name in _CONFIRMS_SENT:
            to_client.add((_CONFIRM, index, int(_CONFIRMS_SENT[name]), self._answering))
        elif name == "start_on_worker" and self._sends_started:
            to_client.add((_STARTED, index, 0, 0))
        elif name in ("release_dependants", "fail_dependants", "cancel_dependants"):
            event = {"release_dependants": "dependencies_met", "fail_dependants": "dependency_failed", "cancel_dependants": "dependency_canceled"}[name]
            if index + 1 < len(tasks):
                self._fire(tasks, index + 1, event, to_client, step)
        elif name == "forget":
            tasks[index][2] = 1
        if result >= 0:
            sent = tasks[index][1]
            if sent and sent != result + 1:
                step.problems.append(
                    ("scheduler_answers_once", f"scheduler sent t{index} {TaskResultType(result).name} after {TaskResultType(sent - 1).name}")
                )
            tasks[index][1] = result + 1
            to_client.add((_RESULT, index, result, 0))

    # -- Liveness --------------------------------------------------------------------

    def _check_state(self, state: Any, report: Report, parents: dict[Any, Any], key: Any, used: set[tuple[int, str]]) -> None:
        self._reached.append(key)
        super()._check_state(state, report, parents, key, used)

    def _state_problems(self, state: Any) -> list[tuple[str, str]]:
        return super()._state_problems(state[:3])

    def _check_liveness(self, report: Report, progress: Callable[[str], None] | None) -> None:
        """Every reached state must reach "every submitted future ended"
        through progress moves alone.

        Most states get there along one obvious path (deliver what is in
        flight, let workers finish, let timers fire), so that path is tried
        first and every state on it remembered as able to end; only a state
        where it stalls gets the exhaustive search of its progress moves.
        """
        self._ends: set[Any] = set()
        for number, state in enumerate(self._reached):  # breadth-first: the first failure is the shallowest
            if progress is not None and number and number % 200_000 == 0:
                progress(f"liveness: {number}/{len(self._reached)} states checked")
            if self._reaches_the_end(state):
                continue
            stuck = [f"f{n}" for n in self.stuck_futures(state)]
            message = f"{', '.join(stuck)} can never end from here: {self.describe_state(state)}"
            trace = self._path(self._parents, state)
            report.violations.setdefault("futures_can_end", self._violation("futures_can_end", message, trace))
            return

    def _reaches_the_end(self, state: Any) -> bool:
        ends = self._ends
        path: list[Any] = []
        current = state
        for _ in range(64):
            if current in ends or self._all_ended(current):
                ends.update(path)
                ends.add(current)
                return True
            path.append(current)
            moves = self._progress(current)
            if not moves:
                break
            current = self._apply(current, min(moves, key=self._eagerness), _Step(False, current[1], set()))
        # The obvious path stalled: search every progress move from here.
        seen = {state: None}
        frontier = [state]
        while frontier:
            following = []
            for current in frontier:
                if current in ends or self._all_ended(current):
                    ends.add(state)
                    return True
                for action in self._progress(current):
                    successor = self._apply(current, action, _Step(False, current[1], set()))
                    if successor not in seen:
                        seen[successor] = None
                        following.append(successor)
            frontier = following
        return False

    def stuck_futures(self, state: Any) -> list[int]:
        """The futures that no progress from ``state`` ever ends."""
        live = {n for n, f in enumerate(state[0]) if f[_ST] != _UNSUBMITTED and f[_ST] not in self._terminal}
        seen = {state}
        frontier = [state]
        while frontier and live:
            current = frontier.pop()
            live -= {n for n in live if current[0][n][_ST] in self._terminal}
            for action in self._progress(current):
                successor = self._apply(current, action, _Step(False, current[1], set()))
                if successor not in seen:
                    seen.add(successor)
                    frontier.append(successor)
        return sorted(live)

    @staticmethod
    def _eagerness(action: Action) -> int:
        """The obvious path: answers reach the client first, then requests
        the scheduler, then workers finish their tasks, then timers fire."""
        kind = action[0]
        if kind == "deliver":
            return 0 if action[1] in (_RESULT, _CONFIRM) else 1
        return {"assign": 2, "finish_success": 3, "timeout": 5, "connection_lost": 6}.get(kind, 4)

    def _all_ended(self, state: Any) -> bool:
        return all(f[_ST] == _UNSUBMITTED or f[_ST] in self._terminal for f in state[0])

    # -- Presentation --------------------------------------------------------------

    def describe_action(self, action: Action) -> str:
        kind = action[0]
        if kind in ("deliver", "duplicate", "drop"):
            verb = {"deliver": "delivers", "duplicate": "delivers a copy of", "drop": "drops"}[kind]
            return f"the channel {verb} {_wire_name((action[1], action[2], action[3], action[4]))}"
        if kind == "cancel":
            return f"f{action[1]}.cancel(force={bool(action[2])})"
        if kind == "submit":
            return f"submit f{action[1]} (node t{action[1]})"
        if kind == "timeout":
            return f"f{action[1]}'s confirm timer fires"
        if kind in ("clear", "close", "connection_lost"):
            return f"manager.{kind}()"
        return f"scheduler: t{action[1]} {kind}"

    def _violation(self, invariant: str, message: str, trace: Iterable[Action]) -> Violation:
        trace = tuple(trace)
        tokens = " ".join(":".join(str(part) for part in action) for action in trace)
        return Violation(invariant, message, trace, self._replay.replace("{trace}", tokens))


def parse_system_trace(text: str) -> list[Action]:
    """Read the trace tokens :class:`SystemExplorer` prints (``kind:n:...``)."""
    actions: list[Action] = []
    for token in text.replace(",", " ").split():
        parts = token.split(":")
        try:
            actions.append((parts[0], *(int(part) for part in parts[1:])))
        except ValueError:
            raise ValueError(f"cannot read trace step {token!r}") from None
    return actions
