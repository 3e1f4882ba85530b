"""How much the checks are worth: every single-point mutant of a declaration, explored.

A declaration is checked by the explorer's invariants; but an invariant that
nothing can break proves nothing. This module measures them the way mutation
testing measures a test suite: it derives every declaration that differs from
the given one at exactly one point, the kind of slip a developer makes

* a rule's destination changed (to each other state);
* a rule dropped;
* a callback dropped, or moved between ``before`` and ``after``;
* a state's ``on_enter`` or ``on_exit`` callback removed;
* a final state's outcome tag swapped for another outcome;

and explores each. A mutant is *refused* when :func:`declare` rejects it
(the declaration checks caught it), *caught* when some invariant is
violated, *equivalent* when nothing a future or its peer observes can tell it from
the original (see :func:`equivalence`), and
*survives* otherwise: a change to the lifecycle that no check noticed. Each
survivor is a question for the declaration's author: is that change really
harmless, or is a promise missing?

Rules that list several sources are split one per source first, so that a
mutant changes one (state, event) and no more.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from taskfate.fsm.declare import (
    CALLBACKS,
    NOTE_NOT_FOUND,
    NOTE_REFUSED,
    NOTE_STARTED,
    NOTE_TIMEOUT,
    OUTCOMES,
    SEND_CANCEL,
    DeclarationError,
    Lifecycle,
    Rule,
    declare,
)
from taskfate.fsm.explore import Report, explore

__all__ = ["Mutant", "MutationReport", "equivalence", "mutants", "mutation_report", "one_rule_per_source"]


@dataclass(frozen=True)
class Mutant:
    """One single-point change of a declaration: ``name`` says what changed
    (``kind`` is one of ``dest``, ``drop``, ``callback``, ``move``,
    ``state_callback``, ``tag``), ``declaration`` is the changed copy."""

    name: str
    kind: str
    declaration: Mapping[str, Any] = field(repr=False)


@dataclass
class MutationReport:
    """What became of every mutant of one lifecycle."""

    lifecycle: str
    depth: int
    #: The graph sizes each mutant was explored with, smallest first.
    futures: tuple[int, ...]
    scheduler: str
    refused: list[str] = field(default_factory=list)
    caught: dict[str, str] = field(default_factory=dict)
    equivalent: dict[str, str] = field(default_factory=dict)
    #: Mutants that change only the library's own callbacks (outside
    #: ``taskfate.fsm.declare.CALLBACKS``), which the explorer takes to have no
    #: protocol effect: neither caught nor surviving, for the library's own
    #: tests to judge.
    own_callbacks: list[str] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def derived(self) -> int:
        return len(self.refused) + len(self.caught) + len(self.equivalent) + len(self.own_callbacks) + len(self.survivors)

    @property
    def ok(self) -> bool:
        """No non-equivalent mutant survived."""
        return not self.survivors

    def summary(self) -> str:
        lines = [
            f"lifecycle {self.lifecycle!r}: {self.derived} single-point mutants, explored with {' and '.join(map(str, self.futures))} future(s), "
            f"depth {self.depth}, scheduler {self.scheduler}, in {self.seconds:.1f}s",
            f"  refused by declare: {len(self.refused)}; caught by an invariant: {len(self.caught)}; "
            f"equivalent: {len(self.equivalent)}; survived: {len(self.survivors)}",
        ]
        if self.own_callbacks:
            lines.append(f"  changing only the library's own callbacks, which the explorer cannot judge: {len(self.own_callbacks)}")
            lines += [f"    own callbacks: {name}" for name in self.own_callbacks]
        by_invariant: dict[str, int] = {}
        for invariant in self.caught.values():
            by_invariant[invariant] = by_invariant.get(invariant, 0) + 1
        if by_invariant:
            lines.append("  caught by: " + ", ".join(f"{name} {count}" for name, count in sorted(by_invariant.items(), key=lambda kv: -kv[1])))
        for name in self.survivors:
            lines.append(f"  SURVIVED: {name}")
        return "\n".join(lines)


def one_rule_per_source(declaration: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``declaration`` with one rule per (source, trigger)."""
    declared = copy.deepcopy(dict(declaration))
    rules = []
    for rule in declared["transitions"]:
        sources = rule["source"] if isinstance(rule["source"], list) else [rule["source"]]
        for source in sources:
            rules.append(dict(copy.deepcopy(rule), source=source))
    declared["transitions"] = rules
    return declared


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def mutants(lifecycle: Lifecycle) -> Iterator[Mutant]:
    """Every single-point mutant of ``lifecycle``'s declaration, in a stable order."""
    base = one_rule_per_source(lifecycle.declaration)
    state_names = [state["name"] if isinstance(state, dict) else str(state) for state in base["states"]]

    def changed(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        declared = copy.deepcopy(base)
        edit(declared)
        return declared

    for index, rule in enumerate(base["transitions"]):
        where = f"{rule['source']} --{rule['trigger']}-->"
        if rule.get("dest") is not None:
            for other in state_names:
                if other != rule["dest"]:

                    def edit(declared: dict[str, Any], index: int = index, other: str = other) -> None:
                        declared["transitions"][index]["dest"] = other

                    yield Mutant(f"{where} {rule['dest']} becomes --> {other}", "dest", changed(edit))

        def drop(declared: dict[str, Any], index: int = index) -> None:
            del declared["transitions"][index]

        yield Mutant(f"{where} dropped", "drop", changed(drop))
        for when, other_when in (("before", "after"), ("after", "before")):
            for position, callback in enumerate(_listed(rule.get(when))):

                def drop_callback(declared: dict[str, Any], index: int = index, when: str = when, position: int = position) -> None:
                    callbacks = _listed(declared["transitions"][index].get(when))
                    del callbacks[position]
                    declared["transitions"][index][when] = callbacks

                yield Mutant(f"{where} without {when} callback {callback}", "callback", changed(drop_callback))

                def move(
                    declared: dict[str, Any], index: int = index, when: str = when, other_when: str = other_when, position: int = position
                ) -> None:
                    target = declared["transitions"][index]
                    callbacks = _listed(target.get(when))
                    moved = callbacks.pop(position)
                    target[when] = callbacks
                    target[other_when] = [*_listed(target.get(other_when)), moved] if other_when == "after" else [moved, *_listed(target.get(other_when))]

                yield Mutant(f"{where} callback {callback} moved from {when} to {other_when}", "move", changed(move))
    for index, state in enumerate(base["states"]):
        if not isinstance(state, dict):
            continue
        for hook in ("on_enter", "on_exit"):
            for position, callback in enumerate(_listed(state.get(hook))):

                def drop_hook(declared: dict[str, Any], index: int = index, hook: str = hook, position: int = position) -> None:
                    callbacks = _listed(declared["states"][index].get(hook))
                    del callbacks[position]
                    declared["states"][index][hook] = callbacks

                yield Mutant(f"state {state['name']} without {hook} {callback}", "state_callback", changed(drop_hook))
        for tag in _listed(state.get("tags")):
            if tag in OUTCOMES:
                for other in OUTCOMES:
                    if other != tag:

                        def swap(declared: dict[str, Any], index: int = index, tag: str = tag, other: str = other) -> None:
                            tags = _listed(declared["states"][index].get("tags"))
                            declared["states"][index]["tags"] = [other if t == tag else t for t in tags]

                        yield Mutant(f"state {state['name']} tagged {other} instead of {tag}", "tag", changed(swap))


#: Library callbacks whose only effect is a log line or a counter in
#: ``stats``: no future, waiter or peer sees whether or when they run.
OBSERVATIONAL: tuple[str, ...] = (NOTE_NOT_FOUND, NOTE_TIMEOUT, NOTE_REFUSED, NOTE_STARTED)


def _calls(rule: Rule) -> tuple[str, ...] | None:
    """What an internal rule (no state change) runs, in order: for one, the
    split into ``before`` and ``after`` is not observable."""
    return rule.before + rule.after if rule.dest is None else None


def _around_sends(rule: Rule) -> tuple[tuple[str, ...], ...]:
    """What ``rule`` runs between the moments it hands control back (each
    ``send_cancel``), each stretch as a sorted multiset.

    Inside a step the manager's lock is held, so callbacks of one stretch
    can be told apart by order only at a ``send_cancel`` (the peer may answer
    while it runs) or at the state change into a final state (``done()``
    turns True, read without the lock); :func:`equivalence` uses this only
    for rules that do not end the future.
    """
    stretches: list[tuple[str, ...]] = []
    current: list[str] = []
    for name in rule.before + rule.after:
        if name == SEND_CANCEL:
            stretches.append(tuple(sorted(current)))
            current = []
        else:
            current.append(name)
    stretches.append(tuple(sorted(current)))
    return tuple(stretches)


def _same_shape(mutant: Lifecycle, original: Lifecycle) -> bool:
    """The same states mean the same: outcomes, awaiting, running, initial."""
    return (
        dict(mutant.outcomes) == dict(original.outcomes)
        and mutant.awaiting == original.awaiting
        and mutant.running == original.running
        and mutant.initial == original.initial
    )


def _without(rule: Rule, names: Callable[[str], bool]) -> Rule:
    """``rule`` without the callbacks ``names`` picks."""
    return rule._replace(before=tuple(name for name in rule.before if not names(name)), after=tuple(name for name in rule.after if not names(name)))


def _same_without(mutant: Lifecycle, original: Lifecycle, names: Callable[[str], bool]) -> bool:
    """Whether the two tables agree once the callbacks ``names`` picks are
    removed (and internal rules left running nothing, which do nothing)."""

    def stripped(life: Lifecycle) -> dict[str, dict[str, Rule]]:
        tables = {}
        for state, rules in life.table.items():
            kept = {event: _without(rule, names) for event, rule in rules.items()}
            tables[state] = {event: rule for event, rule in kept.items() if rule.dest is not None or rule.before or rule.after}
        return tables

    return stripped(mutant) == stripped(original)


def equivalence(mutant: Lifecycle, original: Lifecycle) -> str | None:
    """Why ``mutant`` cannot be told apart from ``original`` by anything a
    future or its peer observes, or ``None`` when it can be.

    Four reasons are recognised: the executed tables are the same; the
    only difference is a callback moved across an internal rule's (no state
    change) before/after split, which runs the same calls in the same order;
    a callback moved across a state change that does not end the future,
    without passing a ``send_cancel`` (see :func:`_around_sends`); or the
    only difference is where or whether an observational callback
    (:data:`OBSERVATIONAL`: a log line, a counter) runs.
    """
    if not _same_shape(mutant, original):
        return None
    if dict(mutant.table) == dict(original.table):
        return "the executed table is the same"
    if set(mutant.table) != set(original.table):
        return None
    if _same_without(mutant, original, lambda name: name in OBSERVATIONAL):
        return "only a callback that logs or counts (" + ", ".join(OBSERVATIONAL) + ") moved or went: nothing a future or its peer sees changed"
    reasons = set()
    final = set(original.outcomes)
    for state, rules in original.table.items():
        other = mutant.table[state]
        if set(rules) != set(other):
            return None
        for event, rule in rules.items():
            changed = other[event]
            if changed == rule:
                continue
            if changed.dest != rule.dest:
                return None
            if _calls(rule) is not None and _calls(changed) == _calls(rule):
                reasons.add("an internal rule runs the same callbacks in the same order")
            elif rule.dest not in final and _around_sends(changed) == _around_sends(rule):
                reasons.add(
                    "a callback moved across a state change that does not end the future, on the same side of send_cancel: "
                    "the step holds the manager's lock, so nothing sees the order"
                )
            else:
                return None
    return "; ".join(sorted(reasons))


def mutation_report(
    lifecycle: Lifecycle,
    *,
    depth: int = 10,
    futures: int | Iterable[int] = (1, 2),
    scheduler: str = "any",
    progress: Callable[[str], None] | None = None,
) -> MutationReport:
    """Explore every mutant of ``lifecycle`` and say which no check noticed.

    Each mutant is explored alone, then (if nothing caught it yet) as each
    larger graph in ``futures``: a group rule only a sibling exercises is
    seen only with two futures, and two cost a few hundredths of a second.
    The original must keep every promise at every size first (``ValueError``
    otherwise: a mutant of a broken lifecycle measures nothing).
    ``scheduler="any"`` by default: a mutant only a misbehaving peer exposes
    is still a mutant.
    """
    started = time.monotonic()
    sizes = tuple(sorted({futures} if isinstance(futures, int) else set(futures)))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"explore graphs of one future or more, got {futures!r}")
    for size in sizes:
        baseline: Report = explore(lifecycle, depth=depth, futures=size, scheduler=scheduler)
        if not baseline.ok:
            raise ValueError(f"lifecycle {lifecycle.name!r} breaks a promise already; fix it before measuring its checks:\n{baseline.summary()}")
    report = MutationReport(lifecycle.name, depth, sizes, scheduler)
    for number, mutant in enumerate(mutants(lifecycle), 1):
        try:
            mutated = declare(
                mutant.declaration, messages=lifecycle.messages, name=f"{lifecycle.name} mutant {number}", late_result=lifecycle.late_result
            )
        except DeclarationError:
            report.refused.append(mutant.name)
            continue
        reason = equivalence(mutated, lifecycle)
        if reason is not None:
            report.equivalent[mutant.name] = reason
            continue
        if _same_shape(mutated, lifecycle) and _same_without(mutated, lifecycle, lambda name: name not in CALLBACKS):
            report.own_callbacks.append(mutant.name)
            continue
        for size in sizes:
            found = explore(mutated, depth=depth, futures=size, scheduler=scheduler)
            if found.violations:
                report.caught[mutant.name] = next(iter(found.violations))
                break
        else:
            report.survivors.append(mutant.name)
        if progress is not None and number % 50 == 0:
            progress(f"{number} mutants explored, {len(report.survivors)} survived so far")
    report.seconds = time.monotonic() - started
    return report
