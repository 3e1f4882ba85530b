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

What comes from ``transitions`` and what is added
-------------------------------------------------

The Mermaid text is ``transitions``' own: a ``GraphMachine`` with the
``mermaid`` engine, built from the declaration, lays out states, groups the
rules between the same two states onto one edge and marks internal rules.
Three things it emits do not render as written, and are repaired here:

* its front matter holds a bare title line, which Mermaid parses as YAML,
  finds not to be a mapping, and drops (the diagram loses its title);
  we write ``title: ...``;
* it applies styles with ``Class``; Mermaid's documented keyword is
  ``class`` (its lexer happens to be case-insensitive today, which is
  nothing to rely on);
* it joins the events of one edge with ``|`` on one line; we break them
  with ``<br>`` so an edge carrying seven events stays readable.

What ``transitions`` cannot know is added from the declaration: each edge
names the protocol message behind its event (``TaskResult SUCCESS``) and the
effects a reader must see (a ``TaskCancel`` leaving, the group's pending
siblings following with ``group_cancel``, a result discarded), terminal
states get their own style and an edge to Mermaid's end marker, and a
future's history is overlaid as numbered steps. Mermaid cannot style single
edges, so a history is shown there by numbering the edges taken and styling
the states visited; the dot form also colours the edges.

The dot text is written here, from the same labelled rules, because
``transitions``' Graphviz engines need Graphviz (or the ``graphviz``
package) just to produce text, and dot text must work with the base install.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from transitions.extensions.diagrams import GraphMachine
from transitions.extensions.states import Tags, add_state_features

from taskfate.fsm import lifecycle as lc
from taskfate.fsm.declare import CANCEL_GROUP, DISCARD_RESULT, GROUP_CANCEL, SEND_CANCEL
from taskfate.fsm.table import DeclarationError, Lifecycle, compile_machine, get_lifecycle
from taskfate.protocol import CancelConfirmType, TaskCancelConfirm, TaskID, TaskResult, TaskResultType, TaskStarted

_log = logging.getLogger("taskfate.fsm.diagram")

#: What the drawing functions accept: a stock policy's name or any Lifecycle.
Source = str | Lifecycle

__all__ = [
    "DeclaredRule",
    "DocsError",
    "HistoryError",
    "HistoryStep",
    "SavedHistory",
    "DOCUMENTS",
    "REFRESH_COMMAND",
    "check_history",
    "declared_rules",
    "docs_sections",
    "side_by_side_markdown",
    "dot",
    "history_from_json",
    "history_to_json",
    "mermaid",
    "refresh_document",
    "table_markdown",
]

#: What a state looks like in each role. Mermaid reads these as CSS; the dot
#: writer maps them to Graphviz attributes, so both pictures agree.
_STYLES: Final[dict[str, dict[str, str]]] = {
    "default": {"fill": "#ffffff", "stroke": "#444444"},
    "terminal": {"fill": "#e8e8e8", "stroke": "#222222", "stroke-width": "3px"},
    "visited": {"fill": "#dbeafe", "stroke": "#1d4ed8", "stroke-width": "2px"},
    "current": {"fill": "#fde68a", "stroke": "#b45309", "stroke-width": "3px"},
    "unvisited": {"fill": "#ffffff", "stroke": "#bbbbbb", "color": "#888888"},
}

#: What a callback does that a reader of the picture needs to see. Callbacks
#: not listed (keeping a result, logging, timers) are bookkeeping and would
#: only lengthen the labels; ``docs/lifecycle.md`` describes them.
_EFFECTS: Final[dict[str, str]] = {
    SEND_CANCEL: "sends TaskCancel",
    CANCEL_GROUP: f"pending siblings take {GROUP_CANCEL}",
    DISCARD_RESULT: "result discarded",
}

#: The callback through which one member's rule makes its siblings take an
#: event; the client implements ``cancel_group`` by dispatching
#: ``group_cancel`` to every pending member of the group.
_SIBLING_EVENTS: Final[dict[str, str]] = {CANCEL_GROUP: GROUP_CANCEL}

#: Mermaid's lexer ends a label at these; a label containing one would be cut.
_MERMAID_FORBIDDEN: Final = re.compile(r"[:;\n]")
_MERMAID_EDGE: Final = re.compile(r"^(\s*)(\S+) --> (\S+): (.*)$")
_TRANSITIONS_SEPARATOR: Final = " | "
_INTERNAL_MARK: Final = " [internal]"  # what transitions appends to an internal rule's label


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


def _rule_label(rule: DeclaredRule, messages: Mapping[str, str], fanned: Mapping[str, list[str]]) -> str:
    label = rule.event
    if rule.event in messages:
        label += f" ({messages[rule.event]})"
    elif rule.event in fanned:
        label += f" (a sibling's {', '.join(fanned[rule.event])})"
    effects = [_EFFECTS[callback] for callback in rule.callbacks if callback in _EFFECTS]
    if effects:
        label += " / " + ", ".join(effects)
    return label


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


def _node_roles(lifecycle: Lifecycle, steps: Sequence[HistoryStep] | None) -> dict[str, str]:
    if steps is None:
        return {state: "terminal" if state in lifecycle.terminal else "default" for state in lifecycle.states}
    visited = {step.source for step in steps} | {step.dest for step in steps}
    # No step yet: the future has not left the state it was created in.
    current = steps[-1].dest if steps else lifecycle.initial
    return {
        state: "current" if state == current else "visited" if state in visited else "unvisited"
        for state in lifecycle.states
    }


# -- Mermaid --------------------------------------------------------------------


@add_state_features(Tags)
class _LifecycleGraph(GraphMachine):
    """``transitions``' diagram machine with taskfate's node styles; its
    states take tags, as declared states carry them."""

    style_attributes = {"node": {name: dict(style) for name, style in _STYLES.items()}, "edge": {}, "graph": {}}


class _Model:
    """The object a ``GraphMachine`` hangs its graph and triggers on."""

    get_graph: Any  # bound by the machine when the model is added


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


def mermaid(policy: Source = lc.DEFAULT_POLICY, history: Iterable[Sequence[Any]] | None = None) -> str:
    """The lifecycle of ``policy`` (a stock policy's name or any Lifecycle)
    as a Mermaid ``stateDiagram-v2``.

    With ``history`` (``future.history`` or what ``history_from_json`` read),
    the states the future went through are styled, the state it is in is
    marked, and each edge it took starts with the numbers of its steps, e.g.
    ``[1,3] cancel``. ``HistoryError`` if the history is not a path of
    ``policy``.
    """
    lifecycle = resolve(policy)
    steps = None if history is None else check_history(history, lifecycle)
    rules = declared_rules(lifecycle)
    messages, fanned = _messages(lifecycle), _sibling_sources(rules)
    taken = _steps_by_edge(steps or ())
    declared = copy.deepcopy(dict(lifecycle.declaration))
    labelled = []
    for rule in rules:
        label = _step_prefix(taken.get((rule.source, rule.event), ())) + _rule_label(rule, messages, fanned)
        if _MERMAID_FORBIDDEN.search(label) or _TRANSITIONS_SEPARATOR in label:
            raise DeclarationError(f"label {label!r} cannot be drawn in Mermaid")
        labelled.append(
            {
                "trigger": rule.event,
                "source": rule.source,
                "dest": rule.dest,
                "before": list(rule.before),
                "after": list(rule.after),
                "label": label,
            }
        )
    declared["transitions"] = labelled
    model = _Model()
    title = _title(lifecycle, steps is not None)
    machine = _LifecycleGraph(model=model, graph_engine="mermaid", title=title, **declared)
    # The drawn machine must be the executed one: compare their tables.
    if compile_machine(machine, lifecycle.name).table != lifecycle.table:
        raise DeclarationError(f"the diagram machine for {lifecycle.name!r} differs from the executed table")
    graph = machine.model_graphs[id(model)]
    graph.reset_styling()
    roles = _node_roles(lifecycle, steps)
    for state, role in roles.items():
        graph.set_node_style(state, role)
    source = model.get_graph().source
    terminal = [state for state in lifecycle.states if state in lifecycle.terminal]
    return _repair_mermaid(source, title, set(roles.values()), terminal)


def declaration_mermaid(
    declared: Mapping[str, Any],
    title: str,
    messages: Mapping[str, str] | None = None,
    effects: Mapping[str, str] | None = None,
) -> str:
    """Any declared machine as Mermaid, drawn like the future's lifecycle.

    For machines other than the future's, such as the reference scheduler's
    task lifecycle (``taskfate.scheduler.lifecycle``), which this layer does
    not import: the caller passes its declaration, the protocol message
    behind each trigger (``messages``) and the visible effect of each
    callback (``effects``). Final states are styled as terminal.
    """
    messages, effects = dict(messages or {}), dict(effects or {})
    labelled = []
    for rule in split_rules(declared):
        label = rule.event + (f" ({messages[rule.event]})" if rule.event in messages else "")
        shown = [effects[name] for name in rule.callbacks if name in effects]
        if shown:
            label += " / " + ", ".join(shown)
        if _MERMAID_FORBIDDEN.search(label) or _TRANSITIONS_SEPARATOR in label:
            raise DeclarationError(f"label {label!r} cannot be drawn in Mermaid")
        labelled.append(
            {"trigger": rule.event, "source": rule.source, "dest": rule.dest, "before": list(rule.before), "after": list(rule.after), "label": label}
        )
    drawn = {**copy.deepcopy(dict(declared)), "transitions": labelled}
    model = _Model()
    machine = _LifecycleGraph(model=model, graph_engine="mermaid", title=title, **drawn)
    terminal = [state["name"] for state in declared["states"] if state.get("final")]
    graph = machine.model_graphs[id(model)]
    graph.reset_styling()
    for state in declared["states"]:
        graph.set_node_style(state["name"], "terminal" if state.get("final") else "default")
    used = {"terminal", "default"} if terminal else {"default"}
    return _repair_mermaid(model.get_graph().source, title, used, terminal)


def _repair_mermaid(source: str, title: str, used_styles: set[str], terminal: Sequence[str]) -> str:
    lines = source.split("\n")
    # Front matter: transitions writes ---, the bare title, ---.
    if lines[:1] == ["---"] and len(lines) > 2 and lines[2] == "---":
        lines[1] = f"title: {json.dumps(title)}"
    else:
        raise DeclarationError("transitions' Mermaid output no longer starts with front matter; review _repair_mermaid")
    repaired = []
    for line in lines:
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith("Class "):
            line = indent + "class " + stripped[len("Class ") :]
        elif stripped.startswith("classDef s_"):
            if stripped.split()[1][2:] not in used_styles:
                continue
        else:
            edge = _MERMAID_EDGE.match(line)
            if edge:
                labels = edge.group(4).split(_TRANSITIONS_SEPARATOR)
                line = f"{edge.group(1)}{edge.group(2)} --> {edge.group(3)}: {'<br>'.join(labels)}"
        repaired.append(line.rstrip())
    repaired += [f"  {state} --> [*]" for state in terminal]
    return "\n".join(repaired).rstrip() + "\n"


# -- dot --------------------------------------------------------------------------------


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_node_attributes(style: Mapping[str, str]) -> str:
    attributes = {
        "fillcolor": style.get("fill", "#ffffff"),
        "color": style.get("stroke", "#444444"),
        "fontcolor": style.get("color", "#000000"),
        "penwidth": style.get("stroke-width", "1px").removesuffix("px"),
    }
    return ", ".join(f"{key}={_dot_quote(value)}" for key, value in attributes.items())


def dot(policy: Source = lc.DEFAULT_POLICY, history: Iterable[Sequence[Any]] | None = None) -> str:
    """The same picture as :func:`mermaid`, as Graphviz dot text.

    Edges carry the same labels; with ``history``, the edges taken are also
    drawn in colour and the others greyed.
    """
    lifecycle = resolve(policy)
    steps = None if history is None else check_history(history, lifecycle)
    rules = declared_rules(lifecycle)
    messages, fanned = _messages(lifecycle), _sibling_sources(rules)
    title = _title(lifecycle, steps is not None)
    taken = _steps_by_edge(steps or ())
    roles = _node_roles(lifecycle, steps)
    edges: dict[tuple[str, str], list[tuple[str, bool]]] = {}
    for rule in rules:
        dest = rule.source if rule.dest is None else rule.dest
        numbers = taken.get((rule.source, rule.event), [])
        label = _step_prefix(numbers) + _rule_label(rule, messages, fanned)
        if rule.dest is None:
            label += _INTERNAL_MARK
        edges.setdefault((rule.source, dest), []).append((label, bool(numbers)))
    out = [
        f"digraph {_dot_quote(title)} {{",
        f"  label={_dot_quote(title)}; labelloc=t; rankdir=LR;",
        # The label default is spelled out: a node that sets its own label
        # before any default exists can leave every other node unlabelled.
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", label="\\N"];',
        '  edge [fontname="Helvetica", fontsize=10];',
        "  nodesep=0.5; ranksep=1.0;",
        '  "[*]" [shape=point, width=0.15];',
        '  "[*] end" [shape=point, width=0.15, peripheries=2];',
    ]
    for state in lifecycle.states:
        extra = ", peripheries=2" if state in lifecycle.terminal else ""
        out.append(f"  {_dot_quote(state)} [{_dot_node_attributes(_STYLES[roles[state]])}{extra}];")
    out.append(f'  "[*]" -> {_dot_quote(lifecycle.initial)};')
    for (source, dest), labels in edges.items():
        text = "\\n".join(_dot_quote(label)[1:-1] for label, _ in labels)
        attributes = f'label="{text}"'
        if steps is not None:
            hit = any(was_taken for _, was_taken in labels)
            colour = _STYLES["visited"]["stroke"] if hit else _STYLES["unvisited"]["stroke"]
            attributes += f', color="{colour}", fontcolor="{colour}", penwidth={2 if hit else 1}'
        out.append(f"  {_dot_quote(source)} -> {_dot_quote(dest)} [{attributes}];")
    for state in lifecycle.states:
        if state in lifecycle.terminal:
            out.append(f'  {_dot_quote(state)} -> "[*] end";')
    out.append("}")
    return "\n".join(out) + "\n"


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
    sections = {"readme-diagram": fenced(mermaid(lc.DEFAULT_POLICY))}
    for policy in lc.POLICIES:
        sections[f"lifecycle-{policy}"] = fenced(mermaid(policy)) + "\n" + table_markdown(policy)
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
