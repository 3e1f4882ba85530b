"""Pictures and tables of the lifecycle, drawn from the declaration.

Rules of this module
--------------------

* Nothing here names a state, an event or a rule. Every diagram, table and
  highlighted path is read from a :class:`~taskfate.fsm.declare.Lifecycle`
  (a stock policy's, by name, or any declared one): from its declaration,
  checked against the table the futures execute, so a rule added there is
  drawn everywhere the next time the docs are refreshed, and a doc that was
  not refreshed fails the test suite. The protocol message behind an event
  is what the lifecycle's own classifier makes of the protocol's messages.
* Pure text in, text out: no files, no subprocesses. Reading a saved
  history and rendering svg/png belong to the command line (``taskfate
  diagram``); writing the docs belongs to the maintainer's script
  ``maintainer/refresh_docs.py``.

Read at a glance
----------------

A picture is meant to be read at the width of a docs page: about 880 px,
where GitHub renders Mermaid. ``maintainer/render_diagrams.py`` renders
every diagram of the docs with the real Mermaid and Graphviz and checks that
no label overlaps another label, a state or the end marker, and that no text
is smaller than 12 px there. What keeps the pictures so:

* one short line per rule: the event, and an effect only where a reader
  must see one, in two words (``cancel / sends TaskCancel``, ``discarded``).
  The protocol message behind each event, and what an effect or a group of
  events stands for, are in the legend beside the picture
  (:func:`legend_markdown`) and in the table (:func:`table_markdown`);
* the events that carry a task's result, where one edge or note takes all
  of them alike, are one line: ``any result``;
* a rule that keeps the state is not a self-loop (Mermaid and Graphviz pile
  self-loop labels onto their neighbours): the states that keep their state
  on the same events share one note listing those events, so the late
  results of the final states are written once, beside the last of them;
* final states have a heavy border and an edge to the end marker; running
  states (tagged ``running``) are green and states that await the peer's
  answer are dashed amber; the legend says so in one line;
* layout hints, each checked by rendering: Mermaid draws left to right,
  with less room between columns than its default (so a six-state lifecycle
  keeps its text at 12 px or more) and the edges listed in the order that
  keeps labels apart; dot draws top to bottom, each label a node on its
  edge's way (so no label sits between two edges, or on another), the final
  states in one row above the end marker.

The text is written here, for Mermaid and for dot alike, rather than taken
from ``transitions``' ``GraphMachine``, whose Mermaid draws every internal
rule as a self-loop and leaves no say in the order of its text, and whose
Graphviz engines need Graphviz just to produce text. What is drawn is still
what ``transitions`` reads: the rules come from the declaration, and a
``transitions`` machine built from that same declaration is compiled and
compared with the table the futures execute before anything is drawn.

Mermaid cannot style single edges, so a history is shown there by numbering
the edges taken (``[1,3] cancel``) and styling the states visited; the dot
form also colours the edges.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from taskfate.fsm import lifecycle as lc
from taskfate.fsm.declare import CANCEL_GROUP, DISCARD_RESULT, GROUP_CANCEL, SEND_CANCEL, TaggedMachine
from taskfate.fsm.table import DeclarationError, Lifecycle, compile_machine, get_lifecycle
from taskfate.protocol import CancelConfirmType, TaskCancelConfirm, TaskID, TaskResult, TaskResultType, TaskStarted

_log = logging.getLogger("taskfate.fsm.diagram")

#: What the drawing functions accept: a stock policy's name or any Lifecycle.
Source = str | Lifecycle

__all__ = [
    "ANY_RESULT",
    "DeclaredRule",
    "DocsError",
    "HistoryError",
    "HistoryStep",
    "SavedHistory",
    "DOCUMENTS",
    "REFRESH_COMMAND",
    "check_history",
    "declaration_legend_markdown",
    "declaration_mermaid",
    "declaration_table_markdown",
    "declared_rules",
    "docs_sections",
    "dot",
    "history_from_json",
    "history_to_json",
    "legend_markdown",
    "mermaid",
    "refresh_document",
    "side_by_side_markdown",
    "table_markdown",
]

#: What a state looks like in each role. Mermaid reads these as CSS; the dot
#: writer maps them to Graphviz attributes, so both pictures agree.
_STYLES: Final[dict[str, dict[str, str]]] = {
    "default": {"fill": "#ffffff", "stroke": "#444444"},
    "running": {"fill": "#dcfce7", "stroke": "#15803d", "stroke-width": "2px"},
    "awaiting": {"fill": "#fff4d6", "stroke": "#b45309", "stroke-width": "2px", "stroke-dasharray": "5 3"},
    "running_awaiting": {"fill": "#dcfce7", "stroke": "#b45309", "stroke-width": "2px", "stroke-dasharray": "5 3"},
    "terminal": {"fill": "#e8e8e8", "stroke": "#222222", "stroke-width": "3px"},
    "visited": {"fill": "#dbeafe", "stroke": "#1d4ed8", "stroke-width": "2px"},
    "current": {"fill": "#fde68a", "stroke": "#b45309", "stroke-width": "3px"},
    "unvisited": {"fill": "#ffffff", "stroke": "#bbbbbb", "color": "#888888"},
}

#: The look of a note, in the dot form (Mermaid draws its own), and of the
#: box behind an edge's label (Mermaid's grey).
_NOTE_STYLE: Final = {"fill": "#fff5ad", "stroke": "#aaaa33"}
_LABEL_FILL: Final = "#ededed"

#: What a callback does that a reader of the picture needs to see, in two
#: words. Callbacks not listed (keeping a result, logging, timers) are
#: bookkeeping and would only lengthen the labels; ``docs/lifecycle.md``
#: describes them.
_EFFECTS: Final[dict[str, str]] = {
    SEND_CANCEL: "sends TaskCancel",
    DISCARD_RESULT: "discarded",
}

#: What the legend says each of those effects means.
_EFFECT_MEANINGS: Final[dict[str, str]] = {
    SEND_CANCEL: "one `TaskCancel` leaves, for the task's graph if it has one",
    DISCARD_RESULT: "the result is kept in `discarded_results`, never delivered",
}

#: The callback through which one member's rule makes its siblings take an
#: event; the client implements ``cancel_group`` by dispatching
#: ``group_cancel`` to every pending member of the group.
_SIBLING_EVENTS: Final[dict[str, str]] = {CANCEL_GROUP: GROUP_CANCEL}

#: The one line standing for every result event of a lifecycle, where an
#: edge or a note takes all of them alike.
ANY_RESULT: Final = "any result"

#: Mermaid's lexer ends a label at these; a label containing one would be cut.
_MERMAID_FORBIDDEN: Final = re.compile(r"[:;\n#<>\"{}]")
#: A state name Mermaid takes as an id as it is; others get a made-up id.
_MERMAID_ID: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Mermaid's room between ranks (columns, left to right) and between states
#: of one rank, in px: its defaults (50, 50) make a six-state lifecycle too
#: wide for a docs page, and Mermaid then shrinks its text.
_MERMAID_SPACING: Final = (20, 50)
_MERMAID_KEYWORDS: Final = frozenset({"state", "note", "class", "classdef", "direction", "default", "end", "as", "left", "right", "of"})


# -- Reading the declaration --------------------------------------------------


class DeclaredRule(NamedTuple):
    """One declared rule for one source state (a rule declared for a list of
    sources is one of these per source). ``dest`` is ``None`` for a rule that
    keeps the state (an internal transition)."""

    source: str
    event: str
    dest: str | None
    before: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def callbacks(self) -> tuple[str, ...]:
        return self.before + self.after


def resolve(source: Source) -> Lifecycle:
    """The :class:`Lifecycle` a drawing function was handed: a stock
    policy's by name, or the one given."""
    if isinstance(source, Lifecycle):
        return source
    if isinstance(source, str):
        return get_lifecycle(source)
    raise TypeError(f"expected a policy name or a Lifecycle, got {type(source).__name__}")


def declared_rules(policy: Source = lc.DEFAULT_POLICY) -> tuple[DeclaredRule, ...]:
    """The declaration's rules for ``policy`` (a stock policy's name or a
    Lifecycle), one per (source, event), in declaration order.

    ``transitions`` treats a rule with several sources exactly like one rule
    per source; splitting them here lets a diagram label each source's copy
    on its own (a history may have taken it from one source only).
    """
    return split_rules(resolve(policy).declaration)


def split_rules(declared: Mapping[str, Any]) -> tuple[DeclaredRule, ...]:
    """The rules of any declaration (``transitions.Machine`` keyword
    arguments), one per (source, event), in declaration order."""
    states = [state["name"] for state in declared["states"]]
    rules = []
    for transition in declared["transitions"]:
        sources = transition["source"]
        if sources == "*":
            sources = states
        elif isinstance(sources, str):
            sources = [sources]
        before, after = tuple(_listify(transition.get("before"))), tuple(_listify(transition.get("after")))
        for source in sources:
            rules.append(DeclaredRule(source, transition["trigger"], transition.get("dest"), before, after))
    return tuple(rules)


def _listify(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _messages(lifecycle: Lifecycle) -> dict[str, str]:
    """Event name -> the protocol message it stands for, e.g. ``TaskResult
    SUCCESS``: what ``lifecycle``'s classifier makes of each of the
    protocol's messages. A library's own message is not the protocol's and
    gets no label."""
    probe = TaskID(bytes(16))
    samples: list[tuple[Any, str]] = [(TaskResult(probe, kind), f"TaskResult {kind.name}") for kind in TaskResultType]
    samples += [(TaskCancelConfirm(probe, kind), f"TaskCancelConfirm {kind.name}") for kind in CancelConfirmType]
    samples.append((TaskStarted(probe), "TaskStarted"))
    labels: dict[str, str] = {}
    for message, label in samples:
        try:
            event = lifecycle.messages(message)
        except Exception:  # a library's classifier may not expect the protocol's messages
            _log.debug("the classifier of %r refused %r", lifecycle.name, message, exc_info=True)
            continue
        if event is not None and event not in labels:
            labels[event] = label
    return labels


def _sibling_sources(rules: Iterable[DeclaredRule]) -> dict[str, list[str]]:
    """For each event that a sibling's rule fans out, the events whose rules do it."""
    fanned: dict[str, list[str]] = {}
    for rule in rules:
        for callback in rule.callbacks:
            if callback in _SIBLING_EVENTS:
                causes = fanned.setdefault(_SIBLING_EVENTS[callback], [])
                if rule.event not in causes:
                    causes.append(rule.event)
    return fanned


# -- Histories ------------------------------------------------------------------


class HistoryStep(NamedTuple):
    """One step of a future's path, with the fields of an entry of
    ``Future.history``; ``time`` is ``None`` when it was not recorded."""

    event: str
    source: str
    dest: str
    time: float | None = None


class HistoryError(ValueError):
    """A history that is not a path through the declared lifecycle, or a
    saved history that cannot be read. The message says which step and why."""


class SavedHistory(NamedTuple):
    """What ``history_from_json`` reads: the steps and, when it was saved, the
    policy of the manager that owned the future."""

    policy: str | None
    steps: tuple[HistoryStep, ...]


_HISTORY_FORMAT: Final = "taskfate-history"
_HISTORY_VERSION: Final = 1


def history_to_json(history: Iterable[Sequence[Any]], policy: str | None = None) -> str:
    """``future.history`` as JSON, for ``taskfate diagram --history FILE``.

    Pass ``policy=manager.late_result`` so the drawing uses the rules the
    future actually ran under; without it the reader assumes the default.
    """
    if policy is not None and policy not in lc.POLICIES:
        raise ValueError(f"unknown late_result policy {policy!r}; choose one of {lc.POLICIES}")
    steps = [_coerce_step(entry, index) for index, entry in enumerate(history, 1)]
    document = {
        "format": _HISTORY_FORMAT,
        "version": _HISTORY_VERSION,
        "policy": policy,
        "steps": [step._asdict() for step in steps],
    }
    return json.dumps(document, indent=2) + "\n"


def history_from_json(text: str) -> SavedHistory:
    """Read what ``history_to_json`` wrote; ``HistoryError`` says what is wrong
    with anything else."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HistoryError(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != _HISTORY_FORMAT:
        raise HistoryError(f"not a saved taskfate history (no \"format\": \"{_HISTORY_FORMAT}\")")
    if document.get("version") != _HISTORY_VERSION:
        raise HistoryError(f"saved history version {document.get('version')!r}; this taskfate reads {_HISTORY_VERSION}")
    policy = document.get("policy")
    if policy is not None and policy not in lc.POLICIES:
        raise HistoryError(f"unknown late_result policy {policy!r}; choose one of {lc.POLICIES}")
    raw_steps = document.get("steps")
    if not isinstance(raw_steps, list):
        raise HistoryError("\"steps\" must be a list")
    steps = []
    for index, raw in enumerate(raw_steps, 1):
        if not isinstance(raw, dict):
            raise HistoryError(f"step {index} must be an object with event, source, dest and time")
        steps.append(_coerce_step((raw.get("event"), raw.get("source"), raw.get("dest"), raw.get("time")), index))
    return SavedHistory(policy, tuple(steps))


def _coerce_step(entry: Sequence[Any], index: int) -> HistoryStep:
    if isinstance(entry, (str, bytes)) or len(entry) not in (3, 4):
        raise HistoryError(f"step {index} must be (event, source, dest[, time]), got {entry!r}")
    event, source, dest = entry[0], entry[1], entry[2]
    time = entry[3] if len(entry) == 4 else None
    for name, value in (("event", event), ("source", source), ("dest", dest)):
        if not isinstance(value, str):
            raise HistoryError(f"step {index}: {name} must be a string, got {value!r}")
    if time is not None and (isinstance(time, bool) or not isinstance(time, (int, float)) or not math.isfinite(time)):
        raise HistoryError(f"step {index}: time must be a finite number or null, got {time!r}")
    return HistoryStep(event, source, dest, None if time is None else float(time))


def check_history(history: Iterable[Sequence[Any]], policy: Source = lc.DEFAULT_POLICY) -> tuple[HistoryStep, ...]:
    """The history as steps, after checking that it is a path through
    ``policy``'s lifecycle (a stock policy's name or a Lifecycle): every
    step a declared state change, each step starting where the previous one
    ended.

    A history may start anywhere (the future keeps only its most recent
    steps). A step no rule explains is reported with the policies that would
    explain it, since the usual cause is drawing under the wrong policy.
    """
    lifecycle = resolve(policy)
    steps = tuple(_coerce_step(entry, index) for index, entry in enumerate(history, 1))
    for index, step in enumerate(steps, 1):
        if not _step_declared(lifecycle, step):
            others = [other.name for other in _siblings(lifecycle) if _step_declared(other, step)]
            hint = f"; it is a rule of late_result={others[0]!r}: draw with that policy" if others else ""
            raise HistoryError(
                f"step {index} ({step.source} --{step.event}--> {step.dest}) is not a rule of {_named(lifecycle)}{hint}"
            )
        if index > 1 and steps[index - 2].dest != step.source:
            raise HistoryError(
                f"step {index} starts in {step.source!r} but step {index - 1} ended in {steps[index - 2].dest!r}"
            )
    return steps


def _step_declared(lifecycle: Lifecycle, step: HistoryStep) -> bool:
    if step.source not in lifecycle.table:
        return False
    rule = lifecycle.rule(step.source, step.event)
    return rule is not None and rule.dest == step.dest


def _steps_by_edge(steps: Sequence[HistoryStep]) -> dict[tuple[str, str], list[int]]:
    taken: dict[tuple[str, str], list[int]] = {}
    for number, step in enumerate(steps, 1):
        taken.setdefault((step.source, step.event), []).append(number)
    return taken


def _step_prefix(numbers: Sequence[int]) -> str:
    return f"[{','.join(map(str, numbers))}] " if numbers else ""


# -- What a picture shows ---------------------------------------------------------


def _stock(lifecycle: Lifecycle) -> bool:
    return lc.STOCK_LIFECYCLES.get(lifecycle.name) is lifecycle


def _siblings(lifecycle: Lifecycle) -> list[Lifecycle]:
    """The lifecycles declared alongside ``lifecycle`` under the other
    late-result policies (the stock ones, or those with a ``running``
    state), or none for a lifecycle declared elsewhere."""
    for family in (lc.STOCK_LIFECYCLES, lc.STARTED_LIFECYCLES):
        if lifecycle in family.values():
            return [other for other in family.values() if other is not lifecycle]
    return []


def _named(lifecycle: Lifecycle) -> str:
    return f"late_result={lifecycle.name!r}" if _stock(lifecycle) else f"lifecycle {lifecycle.name!r}"


def _title(lifecycle: Lifecycle, history: bool) -> str:
    what = "a future's path" if history else "the lifecycle of a taskfate future"
    return f"{what}, {'late_result=' if _stock(lifecycle) else ''}{lifecycle.name}"


def _role(lifecycle: Lifecycle, state: str) -> str:
    """How ``state`` is drawn when no history is shown."""
    if state in lifecycle.terminal:
        return "terminal"
    running, awaiting = state in lifecycle.running, state in lifecycle.awaiting
    return "running_awaiting" if running and awaiting else "awaiting" if awaiting else "running" if running else "default"


def _node_roles(lifecycle: Lifecycle, steps: Sequence[HistoryStep] | None) -> dict[str, str]:
    if steps is None:
        return {state: _role(lifecycle, state) for state in lifecycle.states}
    visited = {step.source for step in steps} | {step.dest for step in steps}
    # No step yet: the future has not left the state it was created in.
    current = steps[-1].dest if steps else lifecycle.initial
    return {
        state: "current" if state == current else "visited" if state in visited else "unvisited"
        for state in lifecycle.states
    }


class _Edge(NamedTuple):
    """One arrow between two different states: a line per rule (or per
    group of result events), and whether a shown history took it."""

    source: str
    dest: str
    lines: tuple[str, ...]
    taken: bool


class _Note(NamedTuple):
    """The rules that keep the state, shared by ``states``: a heading
    naming them, then a line per rule."""

    states: tuple[str, ...]
    lines: tuple[str, ...]


class _Picture(NamedTuple):
    title: str
    states: tuple[str, ...]
    initial: str
    terminal: tuple[str, ...]
    roles: Mapping[str, str]
    edges: tuple[_Edge, ...]
    notes: tuple[_Note, ...]


def _note_heading(states: Sequence[str]) -> str:
    return "in " + ", ".join(states)


def _lines(
    rules: Sequence[DeclaredRule], effects: Mapping[str, str], results: Sequence[str], taken: Mapping[tuple[str, str], list[int]]
) -> tuple[str, ...]:
    """A line per rule, ``[steps] event / effect``; the lifecycle's result
    events become one ``any result`` line where all of them are here, alike
    and untaken."""
    entries = []
    for rule in rules:
        shown = tuple(dict.fromkeys(effects[name] for name in rule.callbacks if name in effects))
        entries.append((_step_prefix(taken.get((rule.source, rule.event), ())), rule.event, shown))
    if len(results) >= 2:
        mine = [entry for entry in entries if entry[1] in results]
        if len(mine) == len(results) and not any(prefix for prefix, _, _ in mine) and len({shown for _, _, shown in mine}) == 1:
            first = entries.index(mine[0])
            entries[first] = ("", ANY_RESULT, mine[0][2])
            entries = [entry for entry in entries if entry not in mine[1:]]
    lines = tuple(prefix + event + (" / " + ", ".join(shown) if shown else "") for prefix, event, shown in entries)
    for line in lines:
        if _MERMAID_FORBIDDEN.search(line):
            raise DeclarationError(f"label {line!r} cannot be drawn in Mermaid")
    return lines


def _picture(
    title: str,
    declared: Mapping[str, Any],
    roles: Mapping[str, str],
    effects: Mapping[str, str],
    results: Sequence[str] = (),
    taken: Mapping[tuple[str, str], list[int]] | None = None,
) -> _Picture:
    """What a picture of ``declared`` shows, in the order it is drawn."""
    states = tuple(state["name"] for state in declared["states"])
    terminal = tuple(state["name"] for state in declared["states"] if state.get("final"))
    taken = taken or {}
    order = {state: index for index, state in enumerate(states)}
    changing: dict[tuple[str, str], list[DeclaredRule]] = {}
    keeping: dict[str, list[DeclaredRule]] = {}
    # Edges are listed from the last declared source state to the first: the
    # order of the text steers how Mermaid's layout (dagre) orders states and
    # labels within a column, and this one is what lays every lifecycle the
    # docs draw out with no two labels touching (maintainer/render_diagrams.py
    # checks it).
    for rule in sorted(split_rules(declared), key=lambda rule: -order[rule.source]):
        if rule.dest is None:
            keeping.setdefault(rule.source, []).append(rule)
        else:
            changing.setdefault((rule.source, rule.dest), []).append(rule)
    edges = tuple(
        _Edge(source, dest, _lines(rules, effects, results, taken), any((rule.source, rule.event) in taken for rule in rules))
        for (source, dest), rules in changing.items()
    )
    shared: dict[tuple[str, ...], list[str]] = {}
    for state in states:
        if state in keeping:
            shared.setdefault(_lines(keeping[state], effects, results, taken), []).append(state)
    notes = tuple(_Note(tuple(names), (_note_heading(names), *lines)) for lines, names in shared.items())
    return _Picture(title, states, declared["initial"], terminal, roles, edges, notes)


def _lifecycle_picture(lifecycle: Lifecycle, steps: Sequence[HistoryStep] | None) -> _Picture:
    """What a picture of ``lifecycle`` shows, after checking that the
    declaration drawn is the table executed."""
    declared = copy.deepcopy(dict(lifecycle.declaration))
    try:
        machine = TaggedMachine(model=None, **declared)
        drawn = compile_machine(machine, lifecycle.name).table
    except (DeclarationError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise DeclarationError(f"the declaration of {lifecycle.name!r} cannot be drawn: {exc}") from exc
    if drawn != lifecycle.table:
        raise DeclarationError(f"the diagram machine for {lifecycle.name!r} differs from the executed table")
    return _picture(
        _title(lifecycle, steps is not None),
        declared,
        _node_roles(lifecycle, steps),
        _EFFECTS,
        lifecycle.result_events(),
        _steps_by_edge(steps or ()),
    )


# -- Mermaid --------------------------------------------------------------------


def _mermaid_ids(states: Sequence[str]) -> dict[str, str]:
    """A Mermaid id per state: its name where Mermaid takes it as one."""
    ids = {}
    for index, state in enumerate(states):
        usable = _MERMAID_ID.fullmatch(state) and state.lower() not in _MERMAID_KEYWORDS and not state.startswith("state_")
        ids[state] = state if usable else f"state_{index}"
    return ids


def _css(style: Mapping[str, str]) -> str:
    return ",".join(f"{key}:{value}" for key, value in style.items())


def _mermaid_text(picture: _Picture, direction: str = "LR") -> str:
    ids = _mermaid_ids(picture.states)
    roles = list(dict.fromkeys(picture.roles[state] for state in picture.states))
    rank, node = _MERMAID_SPACING
    out = ["---", f"title: {json.dumps(picture.title)}", "config:", "  state:", f"    rankSpacing: {rank}", f"    nodeSpacing: {node}", "---"]
    out += ["stateDiagram-v2", f"  direction {direction}"]
    out += [f"  classDef s_{role} {_css(_STYLES[role])}" for role in roles]
    out.append("")
    for state in picture.states:
        if _MERMAID_FORBIDDEN.search(state):
            raise DeclarationError(f"state name {state!r} cannot be drawn in Mermaid")
        out += [f'  state "{state}" as {ids[state]}', f"  class {ids[state]} s_{picture.roles[state]}"]
    out += ["", f"  [*] --> {ids[picture.initial]}"]
    out += [f"  {ids[edge.source]} --> {ids[edge.dest]}: {'<br>'.join(edge.lines)}" for edge in picture.edges]
    out += [f"  {ids[state]} --> [*]" for state in picture.terminal]
    for note in picture.notes:
        # Left of the last of its states: Mermaid puts it in the column
        # before that state, and for the final states (declared last) under
        # the edges coming into them.
        out.append(f"  note left of {ids[note.states[-1]]}")
        out += [f"    {line}" for line in note.lines]
        out.append("  end note")
    return "\n".join(out) + "\n"


def mermaid(policy: Source = lc.DEFAULT_POLICY, history: Iterable[Sequence[Any]] | None = None) -> str:
    """The lifecycle of ``policy`` (a stock policy's name or any Lifecycle)
    as a Mermaid ``stateDiagram-v2``; :func:`legend_markdown` says how to
    read it.

    With ``history`` (``future.history`` or what ``history_from_json`` read),
    the states the future went through are styled, the state it is in is
    marked, and each edge it took starts with the numbers of its steps, e.g.
    ``[1,3] cancel``. ``HistoryError`` if the history is not a path of
    ``policy``.
    """
    lifecycle = resolve(policy)
    steps = None if history is None else check_history(history, lifecycle)
    return _mermaid_text(_lifecycle_picture(lifecycle, steps))


def declaration_mermaid(
    declared: Mapping[str, Any], title: str, effects: Mapping[str, str] | None = None, *, direction: str = "LR"
) -> str:
    """Any declared machine as Mermaid, drawn like the future's lifecycle.

    For machines other than the future's, such as the reference scheduler's
    task lifecycle (``taskfate.scheduler.lifecycle``), which this layer does
    not import: the caller passes its declaration, the visible effect of
    each callback it wants on the edges (``effects``, in two words each;
    none keeps the picture to the events, with the effects in
    :func:`declaration_table_markdown`) and the ``direction`` (``LR`` or
    ``TB``) in which it reads best. Final states are styled as terminal;
    :func:`declaration_legend_markdown` writes the legend.
    """
    if direction not in ("LR", "TB"):
        raise ValueError(f"direction must be 'LR' or 'TB', got {direction!r}")
    return _mermaid_text(_picture(title, declared, _declared_roles(declared), dict(effects or {})), direction)


def _declared_roles(declared: Mapping[str, Any]) -> dict[str, str]:
    return {state["name"]: "terminal" if state.get("final") else "default" for state in declared["states"]}


# -- dot --------------------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_lines(lines: Iterable[str]) -> str:
    """Label lines as one quoted dot string, each line centred."""
    return '"' + "\\n".join(_dot_quote(line)[1:-1] for line in lines) + '"'


def _dot_node_attributes(style: Mapping[str, str]) -> str:
    styles = "rounded,filled,dashed" if "stroke-dasharray" in style else "rounded,filled"
    attributes = {
        "style": styles,
        "fillcolor": style.get("fill", "#ffffff"),
        "color": style.get("stroke", "#444444"),
        "fontcolor": style.get("color", "#000000"),
        "penwidth": style.get("stroke-width", "1px").removesuffix("px"),
    }
    return ", ".join(f"{key}={_dot_quote(value)}" for key, value in attributes.items())


def _dot_text(picture: _Picture, history: bool) -> str:
    """The picture as dot. Each edge's label is a node of its own on the
    edge's way (as Mermaid draws labels), so Graphviz lays labels out like
    states, never one over another, and a label always sits on its edge."""
    out = [
        f"digraph {_dot_quote(picture.title)} {{",
        f'  label={_dot_quote(picture.title)}; labelloc=t; fontname="Helvetica"; fontsize=16; rankdir=TB;',
        # The label default is spelled out: a node that sets its own label
        # before any default exists can leave every other node unlabelled.
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=14, label="\\N"];',
        '  edge [arrowsize=0.7];',
        "  nodesep=0.15; ranksep=0.25;",
        '  "[*]" [shape=point, width=0.15];',
        '  "[*] end" [shape=point, width=0.15, peripheries=2];',
    ]
    for state in picture.states:
        extra = ", peripheries=2" if state in picture.terminal else ""
        out.append(f"  {_dot_quote(state)} [{_dot_node_attributes(_STYLES[picture.roles[state]])}{extra}];")
    out.append(f'  "[*]" -> {_dot_quote(picture.initial)};')
    for number, edge in enumerate(picture.edges, 1):
        label = _dot_quote(f"[label {number}]")
        colour = ""
        if history:
            shade = _STYLES["visited"]["stroke"] if edge.taken else _STYLES["unvisited"]["stroke"]
            colour = f', color="{shade}", penwidth={2 if edge.taken else 1}'
        font = f', fontcolor="{shade}"' if history else ""
        out.append(
            f'  {label} [shape=box, style=filled, fillcolor="{_LABEL_FILL}", color="{_LABEL_FILL}", '
            f'margin="0.06,0.03", width=0, height=0, label={_dot_lines(edge.lines)}{font}];'
        )
        out.append(f"  {_dot_quote(edge.source)} -> {label} [arrowhead=none{colour}];")
        out.append(f"  {label} -> {_dot_quote(edge.dest)} [{colour.lstrip(', ')}];".replace(" [];", ";"))
    out += [f'  {_dot_quote(state)} -> "[*] end";' for state in picture.terminal]
    for number, note in enumerate(picture.notes, 1):
        name = _dot_quote(f"[note {number}]")
        out.append(
            f"  {name} [shape=note, style=filled, fillcolor={_dot_quote(_NOTE_STYLE['fill'])}, "
            f"color={_dot_quote(_NOTE_STYLE['stroke'])}, label={_dot_lines(note.lines)}];"
        )
        # Under the last of its states.
        out.append(f"  {_dot_quote(note.states[-1])} -> {name} [style=dashed, arrowhead=none];")
    if len(picture.terminal) > 1:
        # The final states in one row, above the end marker.
        out.append(f"  {{ rank=same; {'; '.join(_dot_quote(state) for state in picture.terminal)}; }}")
    out.append("}")
    return "\n".join(out) + "\n"


def dot(policy: Source = lc.DEFAULT_POLICY, history: Iterable[Sequence[Any]] | None = None) -> str:
    """The same picture as :func:`mermaid`, as Graphviz dot text.

    Edges and notes carry the same lines; with ``history``, the edges taken
    are also drawn in colour and the others greyed.
    """
    lifecycle = resolve(policy)
    steps = None if history is None else check_history(history, lifecycle)
    return _dot_text(_lifecycle_picture(lifecycle, steps), steps is not None)


# -- The legend ---------------------------------------------------------------------


def _names(names: Iterable[str], last: str = "and") -> str:
    """``names`` in backticks, as a reader lists them: ``a``, ``b`` and ``c``."""
    quoted = [f"`{name}`" for name in names]
    return ", ".join(quoted[:-1]) + f" {last} {quoted[-1]}" if len(quoted) > 1 else "".join(quoted)


_ROLE_WORDS: Final[dict[str, str]] = {
    "terminal": "heavy border: final",
    "awaiting": "dashed amber: awaits the scheduler's answer to a cancel",
    "running": "green: running, `running()` is True",
    "running_awaiting": "green, dashed amber border: running, and awaits the scheduler's answer to a cancel",
}


def _effects_of(line: str) -> list[str]:
    """The effects a drawn line shows, after its ``/``."""
    return line.split(" / ", 1)[1].split(", ") if " / " in line else []


def _legend(picture: _Picture, meanings: Mapping[str, str], results: Sequence[str]) -> list[str]:
    """The legend's lines on the picture's states and labels; ``meanings``
    says what each drawn effect that needs explaining stands for."""
    words = []
    for role, text in _ROLE_WORDS.items():
        states = [state for state in picture.states if picture.roles[state] == role]
        if states:
            words.append(f"{text} ({_names(states)})")
    legend = ["- **States**: " + "; ".join(words) + "."] if words else []
    drawn = [line for edge in picture.edges for line in edge.lines] + [line for note in picture.notes for line in note.lines[1:]]
    shown = {effect for line in drawn for effect in _effects_of(line)}
    labels = ["one per rule, `event / effect`" if shown else "one per rule, naming its event"]
    labels += [f"`{effect}`: {meaning}" for effect, meaning in meanings.items() if effect in shown]
    if any(line.startswith(ANY_RESULT) for line in drawn):
        labels.append(f"`{ANY_RESULT}`: each of {_names(results)}")
    if picture.notes:
        labels.append("a note lists events that leave the states it names unchanged")
    legend.append("- **Lines**: " + "; ".join(labels) + ".")
    return legend


def legend_markdown(policy: Source = lc.DEFAULT_POLICY, *, messages: bool = True) -> str:
    """How to read :func:`mermaid`'s and :func:`dot`'s picture of ``policy``,
    as a short markdown list: what the state styles mean, what each effect
    and grouped line stands for, which events a graph's siblings take, and
    (``messages``) the protocol message behind each event; without it, a
    line pointing to :func:`table_markdown`, which names them."""
    lifecycle = resolve(policy)
    picture = _lifecycle_picture(lifecycle, None)
    meanings = {_EFFECTS[callback]: meaning for callback, meaning in _EFFECT_MEANINGS.items()}
    legend = _legend(picture, meanings, lifecycle.result_events())
    for event, causes in _sibling_sources(declared_rules(lifecycle)).items():
        legend.append(f"- **Graphs**: when one member of a graph takes {_names(causes, 'or')}, its pending siblings take `{event}`.")
    if not messages:
        legend.append("- **Messages**: the table below names the protocol message behind each event.")
        return "\n".join(legend) + "\n"
    known = _messages(lifecycle)
    heard = [f"{known[event]} → `{event}`" for event in lifecycle.peer_events if event in known]
    own = [event for event in lifecycle.peer_events if event not in known]
    if own:
        heard.append(f"the library's own messages → {_names(own)}")
    text = "; ".join(heard) or "none"
    legend.append(f"- **Messages** from the scheduler: {text}. {_names(lifecycle.local_events)} are the library's own calls and timers.")
    return "\n".join(legend) + "\n"


def declaration_legend_markdown(declared: Mapping[str, Any], effects: Mapping[str, str] | None = None) -> str:
    """The legend of :func:`declaration_mermaid`'s picture of ``declared``
    (drawn with ``effects``), pointing to :func:`declaration_table_markdown`
    for what each rule does."""
    legend = _legend(_picture("", declared, _declared_roles(declared), dict(effects or {})), {}, ())
    legend.append("- **Rules**: the table below names the message behind each event and says what each rule does.")
    return "\n".join(legend) + "\n"


# -- The table ------------------------------------------------------------------------


def table_markdown(policy: Source = lc.DEFAULT_POLICY) -> str:
    """Every event against every state, as a markdown table.

    A cell is the next state, *stays* for a rule that keeps the state, or
    *ignored* where no rule exists (the client counts those). Cells in bold
    are the ones another policy of the same family declares differently (a
    lifecycle declared elsewhere has no family, and no bold cells). The
    message column names the protocol message behind a peer event, *local*
    for the library's own events, and *peer* for an event only a library's
    own message fires.
    """
    lifecycle = resolve(policy)
    others = _siblings(lifecycle)
    messages = _messages(lifecycle)
    header = ["event", "message", *(f"`{state}`" for state in lifecycle.states)]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for event in _all_events(lifecycle, others):
        cells = [f"`{event}`", messages.get(event, "local" if event in lc.LOCAL_EVENTS else "peer")]
        for state in lifecycle.states:
            rule = lifecycle.rule(state, event)
            text = "ignored" if rule is None else "stays" if rule.dest is None else f"`{rule.dest}`"
            if any(other.rule(state, event) != rule for other in others):
                text = f"**{text}**"
            cells.append(text)
        rows.append("| " + " | ".join(cells) + " |")
    if others:
        names = ", ".join(f"`{other.name}`" if not _stock(other) else f"`late_result={other.name}`" for other in others)
        rows += ["", f"Rows are events, columns the state a future is in. **Bold**: declared differently under {names}."]
    return "\n".join(rows) + "\n"


def _all_events(lifecycle: Lifecycle, others: Iterable[Lifecycle]) -> list[str]:
    """Every event the lifecycle or its family declares, in declaration
    order, so each policy's table has the same rows even where one of them
    ignores an event."""
    events = list(lifecycle.events)
    for other in others:
        events += [event for event in other.events if event not in events]
    return events


def side_by_side_markdown(lifecycles: Sequence[Source]) -> str:
    """Several lifecycles' declarations side by side, as two markdown tables.

    The first lists every state any of them declares, with its tags in each
    (*awaits* marks a state that waits for the peer's answer; a blank cell, a
    lifecycle without the state); the second every declared ``(state,
    event)`` rule, with where it leads in each (*stays* for a rule that keeps
    the state, a blank cell where that lifecycle has no such rule). Meant for
    comparing a library's own declaration with the stock ones.
    """
    chosen = [resolve(source) for source in lifecycles]
    if not chosen:
        raise ValueError("side_by_side_markdown needs at least one lifecycle")
    names = [f"`{lifecycle.name}`" for lifecycle in chosen]
    states = list(dict.fromkeys(state for lifecycle in chosen for state in lifecycle.states))
    rows = ["| state | " + " | ".join(names) + " |", "|" + "---|" * (len(chosen) + 1)]
    for state in states:
        cells = []
        for lifecycle in chosen:
            if state not in lifecycle.states:
                cells.append("")
                continue
            tags = [lifecycle.outcomes[state]] if state in lifecycle.outcomes else []
            tags += ["running"] if state in lifecycle.running else []
            tags += ["awaits"] if state in lifecycle.awaiting else []
            cells.append(", ".join(tags) or "live")
        rows.append(f"| `{state}` | " + " | ".join(cells) + " |")
    rows += ["", "| state | event | " + " | ".join(names) + " |", "|" + "---|" * (len(chosen) + 2)]
    keys = list(dict.fromkeys((state, event) for lifecycle in chosen for state, event, _ in lifecycle.rules()))
    for state, event in keys:
        cells = []
        for lifecycle in chosen:
            rule = lifecycle.rule(state, event) if state in lifecycle.table else None
            cells.append("" if rule is None else "stays" if rule.dest is None else f"`{rule.dest}`")
        rows.append(f"| `{state}` | `{event}` | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def declaration_table_markdown(
    declared: Mapping[str, Any], messages: Mapping[str, str] | None = None, effects: Mapping[str, str] | None = None
) -> str:
    """Every rule of any declared machine, one row per source state and
    event, in declared state order: the message behind the event
    (``messages``), where the rule leads (*stays* for a rule that keeps the
    state) and what its callbacks do (``effects``, in the order they run;
    callbacks without an entry are left out)."""
    messages, effects = dict(messages or {}), dict(effects or {})
    order = {state["name"]: index for index, state in enumerate(declared["states"])}
    rows = ["| state | event | message | next | what it does |", "|---|---|---|---|---|"]
    for rule in sorted(split_rules(declared), key=lambda rule: order[rule.source]):
        dest = "stays" if rule.dest is None else f"`{rule.dest}`"
        does = ", ".join(dict.fromkeys(effects[name] for name in rule.callbacks if name in effects))
        rows.append(f"| `{rule.source}` | `{rule.event}` | {messages.get(rule.event, '')} | {dest} | {does} |")
    return "\n".join(rows) + "\n"


# -- Generated sections of the docs -----------------------------------------------------

#: What the docs' markers name as the way to refresh them: the maintainer's
#: script of a taskfate checkout, run from its root.
REFRESH_COMMAND: Final = "python maintainer/refresh_docs.py"

#: Which generated sections each document (relative to the repository root) holds.
DOCUMENTS: Final[dict[str, tuple[str, ...]]] = {
    "README.md": ("readme-diagram",),
    "docs/lifecycle.md": tuple(f"lifecycle-{policy}" for policy in lc.POLICIES),
}

_BEGIN: Final = "<!-- BEGIN GENERATED {name}: made from the declarations by `{command}`; do not edit by hand -->"
_END: Final = "<!-- END GENERATED {name} -->"
#: A marker line, whatever it says after the section's name (older markers
#: named another command; a refresh rewrites them).
_MARKER: Final = re.compile(r"^\s*<!--\s*(BEGIN|END) GENERATED ([\w-]+)(?=[\s:]|-->)")


class DocsError(ValueError):
    """A document's generated-section markers are missing, doubled or unknown."""


def docs_sections() -> dict[str, str]:
    """The text of every generated section, by name."""
    sections = {"readme-diagram": fenced(mermaid(lc.DEFAULT_POLICY)) + "\n" + legend_markdown(lc.DEFAULT_POLICY)}
    for policy in lc.POLICIES:
        picture = fenced(mermaid(policy)) + "\n" + legend_markdown(policy, messages=False)
        sections[f"lifecycle-{policy}"] = picture + "\n" + table_markdown(policy)
    return sections


def fenced(text: str) -> str:
    """``text`` as a fenced mermaid block."""
    return "```mermaid\n" + text + "```\n"


def refresh_document(text: str, names: Iterable[str], sections: Mapping[str, str] | None = None) -> str:
    """``text`` with the sections ``names`` regenerated between their markers.

    Everything outside the markers is kept byte for byte. ``DocsError`` (and
    no change) when a marker is missing, doubled, out of order, or names a
    section this document should not hold.
    """
    sections = docs_sections() if sections is None else sections
    wanted = list(names)
    lines = text.split("\n")
    found: dict[str, list[tuple[str, int]]] = {}
    for number, line in enumerate(lines):
        marker = _MARKER.match(line)
        if marker:
            found.setdefault(marker.group(2), []).append((marker.group(1), number))
    for name in found:
        if name not in wanted:
            raise DocsError(f"marker for unknown generated section {name!r}; expected only {wanted}")
    spans = []
    for name in wanted:
        kinds = [kind for kind, _ in found.get(name, [])]
        if kinds != ["BEGIN", "END"]:
            raise DocsError(
                f"section {name!r} needs one BEGIN and then one END marker, found {kinds or 'none'}; "
                f"mark where it goes with the lines\n{_BEGIN.format(name=name, command=REFRESH_COMMAND)}\n{_END.format(name=name)}"
            )
        spans.append((found[name][0][1], found[name][1][1], name))
    spans.sort()
    for (_, end, name), (begin, _, following) in zip(spans, spans[1:]):
        if begin < end:
            raise DocsError(f"sections {name!r} and {following!r} overlap")
    for begin, end, name in reversed(spans):
        body = sections[name].rstrip("\n").split("\n")
        lines[begin : end + 1] = [_BEGIN.format(name=name, command=REFRESH_COMMAND), *body, _END.format(name=name)]
    return "\n".join(lines)
