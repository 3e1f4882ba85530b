"""Diagrams, tables and docs drawn from the declaration, and ``taskfate diagram``.

The Mermaid text is read back with a small parser that accepts only what
Mermaid's state-diagram grammar accepts (ids without ``-``, ``:`` or spaces;
labels without ``:`` or ``;``; the documented ``class`` keyword; front matter
that is a YAML mapping; notes between ``note ... of`` and ``end note``), and
every picture is compared with the compiled table the futures execute, not
with a snapshot. A line of a picture stands for one rule (``any result`` for
one rule per result event); a note for one rule per state it names and line.
How the pictures look once rendered is checked by
``tests/test_render_diagrams.py``.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import re
import shutil
import stat
import sys
from pathlib import Path

import pytest

import refresh_docs
from explored_lifecycles import PROGRESS, RUNNING
from helpers import Harness
from taskfate.client import cli
from taskfate.client.commands import diagram as command
from taskfate.fsm import LIFECYCLES, STARTED_LIFECYCLES, DeclarationError, diagram, lifecycle
from taskfate.protocol import CancelConfirmType, TaskResultType

ROOT = Path(__file__).resolve().parents[1]
POLICIES = list(lifecycle.POLICIES)

# -- Reading Mermaid back -------------------------------------------------------------

_ID = r"[^:\s\-{]+"
_KEYWORDS = {"state", "note", "class", "classdef", "direction", "default", "end"}


class Mermaid:
    """A stateDiagram-v2 read back into states, classes, edges and notes."""

    def __init__(self, text: str) -> None:
        lines = text.split("\n")
        assert lines[0] == "---", "front matter expected"
        closing = lines.index("---", 1)
        self.front = self._front(lines[1:closing])
        body = [line.strip() for line in lines[closing + 1 :] if line.strip()]
        assert body[0] == "stateDiagram-v2"
        self.states: dict[str, str] = {}
        self.classes: dict[str, str] = {}
        self.class_defs: dict[str, str] = {}
        self.edges: list[tuple[str, str, list[str]]] = []
        self.notes: list[tuple[str, list[str]]] = []
        self.direction = None
        statements = iter(body[1:])
        for line in statements:
            if m := re.fullmatch(rf"note (left|right) of ({_ID})", line):
                text = []
                for inside in statements:
                    if inside == "end note":
                        break
                    assert not re.search(r"[:;]", inside), inside
                    text.append(inside)
                else:
                    raise AssertionError("a note without end note")
                self.notes.append((self._id(m.group(2)), text))
            else:
                self._statement(line)

    @staticmethod
    def _front(lines: list[str]) -> dict[str, object]:
        """The front matter: a YAML mapping, here of a JSON string and nested mappings of numbers."""
        front: dict[str, object] = {}
        stack: list[tuple[int, dict[str, object]]] = [(-1, front)]
        for line in lines:
            depth = len(line) - len(line.lstrip())
            key, sep, value = line.strip().partition(":")
            assert sep and re.fullmatch(r"\w+", key), f"front matter must be a YAML mapping, got {line!r}"
            while stack[-1][0] >= depth:
                stack.pop()
            if value.strip():
                stack[-1][1][key] = json.loads(value.strip())
            else:
                child: dict[str, object] = {}
                stack[-1][1][key] = child
                stack.append((depth, child))
        return front

    def _statement(self, line: str) -> None:
        if m := re.fullmatch(r"direction (LR|TB|RL|BT)", line):
            self.direction = m.group(1)
        elif m := re.fullmatch(r"classDef (\w+) ([^\n]+)", line):
            self.class_defs[m.group(1)] = m.group(2)
        elif m := re.fullmatch(rf"class ({_ID}) (\w+)", line):
            self.classes[self._id(m.group(1))] = m.group(2)
        elif m := re.fullmatch(rf'state "([^"]*)" as ({_ID})', line):
            self.states[self._id(m.group(2))] = m.group(1)
        elif m := re.fullmatch(rf"(\[\*\]|{_ID}) --> (\[\*\]|{_ID})(?:: ([^:;]+))?", line):
            source, dest = self._id(m.group(1)), self._id(m.group(2))
            self.edges.append((source, dest, m.group(3).split("<br>") if m.group(3) else []))
        else:
            raise AssertionError(f"not a statement of Mermaid's state diagram grammar: {line!r}")

    @staticmethod
    def _id(name: str) -> str:
        assert name.lower() not in _KEYWORDS, f"{name!r} is a Mermaid keyword"
        return name

    def items(self) -> list[tuple[str, str, str]]:
        """Every (source, dest, line) on an edge between states."""
        return [(s, d, item) for s, d, labels in self.edges if "[*]" not in (s, d) for item in labels]

    def note_items(self) -> list[tuple[str, str]]:
        """Every (state, line) of a note, for each state its heading names."""
        found = []
        for _, (heading, *lines) in self.notes:
            assert heading.startswith("in "), heading
            found += [(state, line) for state in heading[3:].split(", ") for line in lines]
        return found


def _event(item: str) -> str:
    return re.sub(r"^\[[\d,]+\] ", "", item).split(" / ")[0]


def _effects(item: str) -> list[str]:
    return item.split(" / ", 1)[1].split(", ") if " / " in item else []


def _life(policy):
    return LIFECYCLES[policy] if isinstance(policy, str) else policy


def _expanded(item: str, policy) -> list[str]:
    """The events one line stands for."""
    event = _event(item)
    return list(_life(policy).result_events()) if event == diagram.ANY_RESULT else [event]


def _drawn_rules(edge_items, note_items, policy):
    """(source, event, dest, or None for a rule that keeps the state) of every line."""
    drawn = collections.Counter()
    for source, dest, item in edge_items:
        drawn.update((source, event, dest) for event in _expanded(item, policy))
    for state, item in note_items:
        drawn.update((state, event, None) for event in _expanded(item, policy))
    return drawn


def _mermaid_rules(text, policy):
    drawn = Mermaid(text)
    return _drawn_rules(drawn.items(), drawn.note_items(), policy)


def _declared_rules(policy):
    table = _life(policy).table
    return collections.Counter((state, event, rule.dest) for state, rules in table.items() for event, rule in rules.items())


def _messages():
    return {event: f"{cls.__name__} {kind.name}" for (cls, kind), event in lifecycle.MESSAGE_EVENTS.items()}


def _role(life, state):
    if state in life.terminal:
        return "s_terminal"
    if state in life.awaiting:
        return "s_running_awaiting" if state in life.running else "s_awaiting"
    return "s_running" if state in life.running else "s_default"


# -- Mermaid ------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_mermaid_has_exactly_the_declared_states_with_start_and_terminal_markers(policy):
    life = LIFECYCLES[policy]
    drawn = Mermaid(diagram.mermaid(policy))
    assert set(drawn.states) == set(life.states)
    assert [dest for source, dest, _ in drawn.edges if source == "[*]"] == [life.initial]
    assert {source for source, dest, _ in drawn.edges if dest == "[*]"} == set(life.terminal)
    for state in life.states:
        assert drawn.classes[state] == _role(life, state)
    assert drawn.classes["cancel_requested"] == "s_awaiting"


@pytest.mark.parametrize("policy", POLICIES)
def test_every_declared_rule_is_drawn_exactly_once(policy):
    text = diagram.mermaid(policy)
    assert _mermaid_rules(text, policy) == _declared_rules(policy)
    drawn = Mermaid(text)
    # One edge per pair of states: the events share it rather than stacking arrows.
    pairs = [(s, d) for s, d, _ in drawn.edges]
    assert len(pairs) == len(set(pairs))
    # No self-loops: a rule that keeps the state is a line of a note.
    assert all(s != d for s, d in pairs)


@pytest.mark.parametrize("policy", POLICIES)
def test_the_late_results_of_the_final_states_are_one_note(policy):
    life = LIFECYCLES[policy]
    drawn = Mermaid(diagram.mermaid(policy))
    finals = [state for state in life.states if state in life.terminal]
    (note,) = [lines for _, lines in drawn.notes if lines[0] == "in " + ", ".join(finals)]
    assert note[1:] == [f"{diagram.ANY_RESULT} / discarded"]
    # Each final state's three late-result rules are accounted for there, and nowhere else.
    assert len(drawn.notes) == 1
    assert sorted(drawn.note_items()) == sorted((state, note[1]) for state in finals)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_line_is_an_event_and_at_most_a_short_effect_never_a_message(policy):
    text = diagram.mermaid(policy)
    drawn = Mermaid(text)
    lines = [item for _, _, item in drawn.items()] + [item for _, item in drawn.note_items()]
    for item in lines:
        assert _event(item) in set(lifecycle.EVENTS) | {diagram.ANY_RESULT}, item
        assert all(len(effect) <= 16 for effect in _effects(item)), item
        assert len(item) <= 30, item
    assert not any(message in text for message in _messages().values())
    # The legend names the message behind each peer event instead.
    legend = diagram.legend_markdown(policy)
    for event, message in _messages().items():
        assert f"{message} → `{event}`" in legend


@pytest.mark.parametrize("policy", POLICIES)
def test_sent_cancels_are_on_the_edges_and_the_group_behaviour_in_the_legend(policy):
    table = LIFECYCLES[policy].table
    fanning = {event for rules in table.values() for event, rule in rules.items() if lifecycle.CANCEL_GROUP in rule.after}
    sending = {event for rules in table.values() for event, rule in rules.items() if lifecycle.SEND_CANCEL in rule.after}
    assert fanning and sending
    for _, _, item in Mermaid(diagram.mermaid(policy)).items():
        assert ("sends TaskCancel" in _effects(item)) == (_event(item) in sending), item
    (graphs,) = [line for line in diagram.legend_markdown(policy).splitlines() if line.startswith("- **Graphs**")]
    assert all(f"`{cause}`" in graphs for cause in fanning) and f"`{lifecycle.GROUP_CANCEL}`" in graphs


def test_the_legend_explains_every_style_effect_and_grouping_it_uses():
    legend = diagram.legend_markdown("cancel")
    assert "heavy border: final (`done`, `failed` and `cancelled`)" in legend
    assert "dashed amber: awaits the scheduler's answer to a cancel (`cancel_requested`)" in legend
    assert "`sends TaskCancel`:" in legend and "`discarded`:" in legend
    assert "`any result`: each of `result_success`, `result_failed` and `result_worker_died`" in legend
    assert "running" not in legend.split("- **Lines**")[0]  # no running state, no word on it
    started = diagram.legend_markdown(STARTED_LIFECYCLES["cancel"])
    assert "green: running, `running()` is True (`running`)" in started
    assert "- **Messages**: the table below" in diagram.legend_markdown("cancel", messages=False)


def test_policies_differ_exactly_where_the_declaration_differs():
    def as_map(counter):
        return {(source, event): dest for source, event, dest in counter}

    drawn = {policy: as_map(_mermaid_rules(diagram.mermaid(policy), policy)) for policy in POLICIES}
    declared = {policy: as_map(_declared_rules(policy)) for policy in POLICIES}
    first, *others = POLICIES
    for other in others:
        expected = {key for key in declared[first].keys() | declared[other].keys() if declared[first].get(key) != declared[other].get(key)}
        assert expected, "the policies are expected to differ somewhere"
        got = {key for key in drawn[first].keys() | drawn[other].keys() if drawn[first].get(key) != drawn[other].get(key)}
        assert got == expected


def test_mermaid_front_matter_is_a_mapping_and_every_class_is_defined():
    text = diagram.mermaid()
    drawn = Mermaid(text)  # the parser refuses "Class" and a bare front-matter title
    assert drawn.front["title"] == "the lifecycle of a taskfate future, late_result=cancel"
    assert set(drawn.front["config"]["state"]) == {"rankSpacing", "nodeSpacing"}
    assert drawn.direction == "LR"
    assert not re.search(r"^\s*Class ", text, re.M)
    assert set(drawn.classes.values()) == set(drawn.class_defs)


def test_a_diagram_machine_that_differs_from_the_executed_table_is_refused():
    life = LIFECYCLES["cancel"]
    declared = copy.deepcopy(dict(life.declaration))
    declared["transitions"] = declared["transitions"][:-1]
    tampered = dataclasses.replace(life, declaration=declared)
    with pytest.raises(DeclarationError, match="differs from the executed table"):
        diagram.mermaid(tampered)
    with pytest.raises(DeclarationError, match="differs from the executed table"):
        diagram.dot(tampered)


def test_declared_rules_split_multi_source_rules_one_per_source():
    rules = diagram.declared_rules("cancel")
    assert collections.Counter((r.source, r.event, r.dest) for r in rules) == _declared_rules("cancel")


# -- Any declared lifecycle ----------------------------------------------------------


@pytest.mark.parametrize("life", [STARTED_LIFECYCLES["cancel"], RUNNING], ids=lambda life: life.name)
def test_any_lifecycle_is_drawn_with_its_own_states_rules_and_messages(life):
    drawn = Mermaid(diagram.mermaid(life))
    assert drawn.front["title"] == f"the lifecycle of a taskfate future, {life.name}"
    assert set(drawn.states) == set(life.states)
    assert _mermaid_rules(diagram.mermaid(life), life) == _declared_rules(life)
    assert drawn.classes["running"] == "s_running" and "s_running" in drawn.class_defs
    assert "TaskStarted → `started`" in diagram.legend_markdown(life)
    assert _dot_rules(diagram.dot(life), life) == _declared_rules(life)


def test_a_librarys_own_message_is_drawn_as_a_peer_event_without_a_protocol_label():
    drawn = Mermaid(diagram.mermaid(RUNNING))
    assert ("running", PROGRESS) in drawn.note_items()
    assert f"the library's own messages → `{PROGRESS}`" in diagram.legend_markdown(RUNNING)
    rows = {line.split(" | ")[0].strip("| `"): line for line in diagram.table_markdown(RUNNING).splitlines() if line.startswith("| `")}
    assert rows[PROGRESS].split(" | ")[1] == "peer" and rows[lifecycle.CANCEL].split(" | ")[1] == "local"
    # Declared outside the package: no family to compare with, no bold.
    assert "**" not in diagram.table_markdown(RUNNING)


def test_a_history_is_checked_against_the_lifecycle_it_is_drawn_with():
    path = [("started", "pending", "running"), ("result_success", "running", "done")]
    assert [step.dest for step in diagram.check_history(path, RUNNING)] == ["running", "done"]
    drawn = Mermaid(diagram.mermaid(RUNNING, path))
    assert drawn.classes["done"] == "s_current" and drawn.classes["running"] == "s_visited"
    with pytest.raises(diagram.HistoryError, match="step 1 .* not a rule of late_result='cancel'"):
        diagram.check_history(path, "cancel")


def test_any_declared_machine_is_drawn_with_its_rules_once_and_a_table_of_what_they_do():
    from taskfate.scheduler import lifecycle as scheduler

    text = diagram.declaration_mermaid(scheduler.declaration(), "t", scheduler.EFFECTS, direction="TB")
    drawn = Mermaid(text)
    assert drawn.direction == "TB"
    declared = collections.Counter((r.source, r.event, r.dest) for r in diagram.split_rules(scheduler.declaration()))
    assert _mermaid_rules(text, RUNNING) == declared
    table = diagram.declaration_table_markdown(scheduler.declaration(), scheduler.MESSAGES, scheduler.EFFECTS)
    assert len(table.splitlines()) == 2 + sum(declared.values())
    assert "| `running` | `cancel_gentle` | TaskCancel not forced | stays | sends CANCEL_FAILED |" in table
    with pytest.raises(ValueError, match="direction"):
        diagram.declaration_mermaid(scheduler.declaration(), "t", direction="RL")


def test_declarations_side_by_side_compare_states_and_rules():
    text = diagram.side_by_side_markdown(["cancel", STARTED_LIFECYCLES["cancel"], RUNNING])
    states, rules = text.split("\n\n")
    state_rows = {row.split(" | ")[0].strip("| `"): [c.strip() for c in row.strip("|").split("|")[1:]] for row in states.splitlines()[2:]}
    assert state_rows["running"] == ["", "running", "running"]
    assert state_rows["cancel_requested"] == ["awaits"] * 3 and state_rows["done"] == ["result"] * 3
    rule_rows = {tuple(c.strip(" `") for c in row.strip("|").split("|")[:2]): [c.strip() for c in row.strip("|").split("|")[2:]] for row in rules.splitlines()[2:]}
    assert rule_rows[("pending", "started")] == ["", "`running`", "`running`"]
    assert rule_rows[("running", PROGRESS)] == ["", "", "stays"]
    assert rule_rows[("cancel_requested", "confirm_cancel_failed")] == ["`pending`", "`running`", "`running`"]
    declared = {(s, e) for life in (LIFECYCLES["cancel"], STARTED_LIFECYCLES["cancel"], RUNNING) for s, e, _ in life.rules()}
    assert set(rule_rows) == declared
    with pytest.raises(ValueError, match="at least one"):
        diagram.side_by_side_markdown([])


def test_lifecycle_page_draws_taskfates_own_declarations_beside_the_example_librarys():
    page = (ROOT / "docs/lifecycle.md").read_text(encoding="utf-8")
    drawn = refresh_docs.side_by_side(ROOT)
    assert [life.name for life in drawn] == ["cancel", "cancel+running", "scaler-cancel", "pulse"]
    for life in drawn[1:]:
        assert diagram.mermaid(life) in page and diagram.legend_markdown(life) in page
    assert diagram.side_by_side_markdown(drawn) in page
    # The Scaler adapter's submitted state is the one tagged running; pulse's
    # own states are drawn under its own names.
    assert "| `pending` | live | live | running |  |" in page and "| `cancelling` |  |  |  | awaits |" in page


# -- dot --------------------------------------------------------------------------


class Dot:
    """dot text read back: states, each edge's label node and lines, notes."""

    def __init__(self, text: str) -> None:
        quoted = r'"((?:[^"\\]|\\.)*)"'
        self.nodes = {name: attributes for name, attributes in re.findall(rf"^  {quoted} \[(.*)\];$", text, re.M)}
        self.arrows = re.findall(rf"^  {quoted} -> {quoted}(?: \[([^\]]*)\])?;$", text, re.M)
        self.labels = {name: self._lines(attributes) for name, attributes in self.nodes.items() if name.startswith("[label ")}
        self.notes = {name: self._lines(attributes) for name, attributes in self.nodes.items() if name.startswith("[note ")}

    @staticmethod
    def _lines(attributes: str) -> list[str]:
        (label,) = re.findall(r'(?:^|, )label="((?:[^"\\]|\\.)*)"', attributes)
        return [line.replace('\\"', '"') for line in label.split("\\n")]

    def edges(self) -> list[tuple[str, str, list[str]]]:
        """(source, dest, lines) of every labelled edge: source -> label node -> dest."""
        into = {dest: source for source, dest, _ in self.arrows if dest in self.labels}
        out = {source: dest for source, dest, _ in self.arrows if source in self.labels}
        assert set(into) == set(out) == set(self.labels)
        return [(into[name], out[name], lines) for name, lines in self.labels.items()]

    def note_items(self) -> list[tuple[str, str]]:
        found = []
        for name, (heading, *lines) in self.notes.items():
            assert any(dest == name for _, dest, _ in self.arrows), f"{name} is attached to no state"
            found += [(state, line) for state in heading[3:].split(", ") for line in lines]
        return found


def _dot_rules(text, policy):
    drawn = Dot(text)
    items = [(s, d, item) for s, d, lines in drawn.edges() for item in lines]
    return _drawn_rules(items, drawn.note_items(), policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_dot_draws_every_declared_rule_once_and_marks_terminal_and_awaiting_states(policy):
    text = diagram.dot(policy)
    assert _dot_rules(text, policy) == _declared_rules(policy)
    drawn = Dot(text)
    life = LIFECYCLES[policy]
    for state in life.states:
        assert ("peripheries=2" in drawn.nodes[state]) == (state in life.terminal)
        assert ("dashed" in drawn.nodes[state]) == (state in life.awaiting)
    assert ("[*]", life.initial, "") in drawn.arrows
    finals = "; ".join(f'"{state}"' for state in life.states if state in life.terminal)
    assert f"{{ rank=same; {finals}; }}" in text  # the final states in one row


def test_dot_and_mermaid_carry_the_same_lines():
    for life in (LIFECYCLES["cancel"], STARTED_LIFECYCLES["cancel"], RUNNING):
        mermaid, dot = Mermaid(diagram.mermaid(life)), Dot(diagram.dot(life))
        assert sorted((s, d, tuple(lines)) for s, d, lines in mermaid.edges if "[*]" not in s + d) == sorted(
            (s, d, tuple(lines)) for s, d, lines in dot.edges()
        )
        assert sorted(mermaid.note_items()) == sorted(dot.note_items())


# -- The table ----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_table_has_every_state_and_event_with_next_state_or_ignored(policy):
    life = LIFECYCLES[policy]
    other = LIFECYCLES[next(p for p in POLICIES if p != policy)]
    rows = [line for line in diagram.table_markdown(policy).splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert header[2:] == [f"`{state}`" for state in life.states]
    body = {}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        body[cells[0].strip("`")] = dict(zip(life.states, cells[2:]))
    assert set(body) == set(lifecycle.EVENTS)
    for event, cells in body.items():
        for state, cell in cells.items():
            rule = life.rule(state, event)
            expected = "ignored" if rule is None else "stays" if rule.dest is None else f"`{rule.dest}`"
            bold = other.rule(state, event) != rule
            assert cell == (f"**{expected}**" if bold else expected), (event, state)


# -- A future's path ---------------------------------------------------------------------


def _refused_then_raced(policy):
    h = Harness(policy)
    future = h.submit()
    future.cancel(timeout=0)
    h.confirm(future, CancelConfirmType.CANCEL_FAILED)
    future.cancel(timeout=0)
    h.result(future, 7, TaskResultType.SUCCESS)
    return h, future


@pytest.mark.parametrize("policy", POLICIES)
def test_a_futures_history_is_highlighted_step_by_step(policy):
    h, future = _refused_then_raced(policy)
    history = future.history
    saved = diagram.history_from_json(diagram.history_to_json(history, policy=h.manager.late_result))
    assert saved.policy == policy
    assert [tuple(step) for step in saved.steps] == [tuple(step) for step in history]

    drawn = Mermaid(diagram.mermaid(policy, saved.steps))
    numbered = {}
    for source, _, item in drawn.items():
        prefix = re.match(r"^\[([\d,]+)\] ", item)
        if prefix:
            numbered[(source, _event(item))] = [int(n) for n in prefix.group(1).split(",")]
    expected = collections.defaultdict(list)
    for number, step in enumerate(history, 1):
        expected[(step.source, step.event)].append(number)
    assert numbered == expected
    visited = {step.source for step in history} | {step.dest for step in history}
    for state in LIFECYCLES[policy].states:
        role = "current" if state == future.state else "visited" if state in visited else "unvisited"
        assert drawn.classes[state] == f"s_{role}"
    # All the rules are still there; only the path is marked.
    assert _mermaid_rules(diagram.mermaid(policy, saved.steps), policy) == _declared_rules(policy)

    dot = diagram.dot(policy, saved.steps)
    taken = {(s, d) for s, d, labels in Dot(dot).edges() if any(re.match(r"^\[[\d,]+\] ", item) for item in labels)}
    assert taken == {(step.source, step.dest) for step in history}
    # Both halves of a taken edge (into its label and on to its state) are coloured.
    assert dot.count('color="#1d4ed8", penwidth=2') == 2 * len(taken)
    assert _dot_rules(dot, policy) == _declared_rules(policy)


def test_an_empty_history_marks_the_initial_state_current():
    drawn = Mermaid(diagram.mermaid("cancel", []))
    assert drawn.classes[LIFECYCLES["cancel"].initial] == "s_current"
    assert {cls for state, cls in drawn.classes.items() if state != LIFECYCLES["cancel"].initial} == {"s_unvisited"}


def test_a_history_from_the_other_policy_is_refused_with_the_policy_that_explains_it():
    _, future = _refused_then_raced("deliver")
    with pytest.raises(diagram.HistoryError, match=r"step 4 .*late_result='deliver'"):
        diagram.mermaid("cancel", future.history)


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([("cancel", "pending", "done")], "step 1 .* is not a rule"),
        ([("cancel", "pending", "cancel_requested"), ("cancel", "pending", "cancel_requested")], "step 2 starts in 'pending'"),
        ([("cancel", "nowhere", "done")], "not a rule"),
        ([("cancel", "pending")], "must be \\(event, source, dest"),
        ([(1, "pending", "cancel_requested")], "event must be a string"),
        ([("cancel", "pending", "cancel_requested", float("nan"))], "finite number"),
    ],
)
def test_a_history_that_is_not_a_declared_path_is_refused(steps, message):
    with pytest.raises(diagram.HistoryError, match=message):
        diagram.check_history(steps, "cancel")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not JSON"),
        ("[]", "not a saved taskfate history"),
        ('{"format": "taskfate-history", "version": 9, "steps": []}', "version 9"),
        ('{"format": "taskfate-history", "version": 1, "policy": "maybe", "steps": []}', "unknown late_result"),
        ('{"format": "taskfate-history", "version": 1, "steps": {}}', "must be a list"),
        ('{"format": "taskfate-history", "version": 1, "steps": [3]}', "step 1 must be an object"),
    ],
)
def test_a_saved_history_that_cannot_be_read_says_why(text, message):
    with pytest.raises(diagram.HistoryError, match=message):
        diagram.history_from_json(text)


# -- The docs ------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", list(refresh_docs.documents()))
def test_committed_docs_match_the_declaration(relative):
    committed = (ROOT / relative).read_text(encoding="utf-8")
    try:
        fresh = diagram.refresh_document(committed, refresh_docs.documents()[relative], refresh_docs.all_sections(ROOT))
    except diagram.DocsError as exc:
        pytest.fail(f"{relative}: {exc}")
    assert fresh == committed, (
        f"{relative} differs from the lifecycle declaration; refresh it from the repository root with: "
        f"{diagram.REFRESH_COMMAND}"
    )


def test_lifecycle_page_shows_both_policies_diagram_legend_and_table():
    page = (ROOT / "docs/lifecycle.md").read_text(encoding="utf-8")
    for policy in POLICIES:
        assert diagram.mermaid(policy) in page
        assert diagram.legend_markdown(policy, messages=False) in page
        assert diagram.table_markdown(policy) in page
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert diagram.mermaid() in readme and diagram.legend_markdown() in readme


def test_refresh_keeps_everything_outside_the_markers():
    sections = {"a": "new A\n", "b": "new B\n"}
    text = "intro\n<!-- BEGIN GENERATED a -->\nold\n<!-- END GENERATED a -->\nmiddle\n<!-- BEGIN GENERATED b: x -->\n<!-- END GENERATED b -->\nend"
    out = diagram.refresh_document(text, ["a", "b"], sections)
    assert out.startswith("intro\n<!-- BEGIN GENERATED a:") and out.endswith("<!-- END GENERATED b -->\nend")
    assert "\nnew A\n<!-- END GENERATED a -->\nmiddle\n" in out and "old" not in out
    assert diagram.refresh_document(out, ["a", "b"], sections) == out


def test_refresh_rewrites_markers_that_name_an_older_command():
    text = (
        "<!-- BEGIN GENERATED a: made from the declarations by `taskfate diagram --update-docs`; do not edit by hand -->\n"
        "old\n  <!--END GENERATED a-->\n"
    )
    out = diagram.refresh_document(text, ["a"], {"a": "A\n"})
    assert out == f"<!-- BEGIN GENERATED a: made from the declarations by `{diagram.REFRESH_COMMAND}`; do not edit by hand -->\nA\n<!-- END GENERATED a -->\n"
    assert diagram.REFRESH_COMMAND == "python maintainer/refresh_docs.py"
    # A longer name is another section, not this one.
    with pytest.raises(diagram.DocsError, match="unknown generated section 'a-b'"):
        diagram.refresh_document(out + "<!-- BEGIN GENERATED a-b -->\n", ["a"], {"a": "A\n"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no markers", "needs one BEGIN and then one END"),
        ("<!-- END GENERATED a -->\n<!-- BEGIN GENERATED a -->", "found \\['END', 'BEGIN'\\]"),
        ("<!-- BEGIN GENERATED a -->\n<!-- BEGIN GENERATED a -->\n<!-- END GENERATED a -->", "found"),
        ("<!-- BEGIN GENERATED a -->\n<!-- END GENERATED a -->\n<!-- BEGIN GENERATED zz -->", "unknown generated section 'zz'"),
    ],
)
def test_refresh_refuses_broken_markers(text, message):
    with pytest.raises(diagram.DocsError, match=message):
        diagram.refresh_document(text, ["a"], {"a": "A\n"})


def _checkout_copy(tmp_path):
    for relative in [*refresh_docs.documents(), refresh_docs.EXAMPLE]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)


def test_the_maintainers_refresh_regenerates_only_the_marked_sections(capsys, tmp_path):
    _checkout_copy(tmp_path)
    page = tmp_path / "docs/lifecycle.md"
    committed = page.read_text()
    stale = committed.replace(diagram.table_markdown("deliver"), "| stale |\n")
    assert stale != committed
    page.write_text(stale)
    assert refresh_docs.main(["--root", str(tmp_path), "--check"]) == 1
    assert page.read_text() == stale and f"{page}: stale" in capsys.readouterr().out
    assert refresh_docs.main(["--root", str(tmp_path)]) == 0
    assert page.read_text() == committed
    assert (tmp_path / "README.md").read_text() == (ROOT / "README.md").read_text()
    out = capsys.readouterr().out
    assert f"{page}: updated" in out and "README.md: up to date" in out
    assert refresh_docs.main(["--root", str(tmp_path), "--check"]) == 0


def test_the_maintainers_refresh_with_a_missing_marker_changes_no_file(capsys, tmp_path):
    _checkout_copy(tmp_path)
    readme, page = tmp_path / "README.md", tmp_path / "docs/lifecycle.md"
    readme.write_text(readme.read_text().replace("late_result=cancel", "stale"))
    page.write_text(page.read_text().replace("<!-- END GENERATED lifecycle-deliver -->", ""))
    before = readme.read_text(), page.read_text()
    assert refresh_docs.main(["--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "lifecycle-deliver" in err and "Traceback" not in err and err.count("\n") >= 1
    assert (readme.read_text(), page.read_text()) == before


# -- The command line ------------------------------------------------------------------------


def run_cli(capsysbinary, *argv):
    status = cli.main(["diagram", *argv])
    out, err = capsysbinary.readouterr()
    return status, out, err.decode()


def test_cli_prints_mermaid_by_default(capsysbinary):
    status, out, err = run_cli(capsysbinary)
    assert status == 0 and err == ""
    assert out.decode() == diagram.mermaid()


def test_cli_writes_dot_for_a_policy_and_infers_format_from_the_suffix(capsysbinary, tmp_path):
    target = tmp_path / "life.dot"
    status, out, _ = run_cli(capsysbinary, "--policy", "deliver", "--output", str(target))
    assert status == 0 and out == b""
    assert target.read_text() == diagram.dot("deliver")
    status, out, _ = run_cli(capsysbinary, "--format", "mermaid", "--policy", "deliver")
    assert out.decode() == diagram.mermaid("deliver")


def test_cli_draws_a_named_declaration(capsysbinary):
    status, out, err = run_cli(capsysbinary, "--declaration", "explored_lifecycles:RUNNING")
    assert status == 0, err
    assert out.decode() == diagram.mermaid(RUNNING)
    status, out, err = run_cli(capsysbinary, "--declaration", "explored_lifecycles:declaration", "--format", "dot")
    assert status == 0, err
    assert ("running", PROGRESS) in Dot(out.decode()).note_items()
    assert ("running", "done") in [(s, d) for s, d, _ in Dot(out.decode()).edges()]
    status, out, err = run_cli(capsysbinary, "--declaration", "explored_lifecycles:RUNNING", "--policy", "cancel")
    assert status == 1 and out == b"" and "not both" in err
    status, out, err = run_cli(capsysbinary, "--declaration", "no_such_module:X")
    assert status == 1 and err.count("\n") == 1 and "cannot load the lifecycle" in err


def test_cli_draws_a_saved_history_under_its_policy(capsysbinary, tmp_path):
    h, future = _refused_then_raced("deliver")
    saved = tmp_path / "future.json"
    saved.write_text(diagram.history_to_json(future.history, policy=h.manager.late_result))
    status, out, err = run_cli(capsysbinary, "--history", str(saved))
    assert status == 0, err
    assert out.decode() == diagram.mermaid("deliver", future.history)
    status, out, err = run_cli(capsysbinary, "--history", str(saved), "--policy", "cancel")
    assert status == 1 and out == b""
    assert err.count("\n") == 1 and "late_result='deliver'" in err


@pytest.mark.parametrize("content", [None, "not json", '{"format": "taskfate-history", "version": 1, "steps": [["x"]]}'])
def test_cli_reports_an_unreadable_history_in_one_line(capsysbinary, tmp_path, content):
    saved = tmp_path / "future.json"
    if content is not None:
        saved.write_text(content)
    status, out, err = run_cli(capsysbinary, "--history", str(saved))
    assert status == 1 and out == b""
    assert err.startswith("taskfate diagram: ") and err.count("\n") == 1 and "Traceback" not in err


def _no_renderer(monkeypatch, path=""):
    monkeypatch.setitem(sys.modules, "pygraphviz", None)  # import now raises ImportError
    monkeypatch.setenv("PATH", path)


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_cli_without_graphviz_says_how_to_install_it_and_writes_nothing(capsysbinary, monkeypatch, tmp_path, fmt):
    _no_renderer(monkeypatch, str(tmp_path / "empty"))
    target = tmp_path / f"life.{fmt}"
    target.write_bytes(b"previous picture")
    status, out, err = run_cli(capsysbinary, "--format", fmt, "--output", str(target))
    assert status == 1 and out == b""
    assert err == f"taskfate diagram: {fmt} output needs Graphviz: {command.INSTALL_HINT}\n"
    assert "pip install 'taskfate[diagrams]'" in err
    assert target.read_bytes() == b"previous picture"


def _fake_dot(tmp_path, script):
    folder = tmp_path / "bin"
    folder.mkdir()
    program = folder / "dot"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return folder


@pytest.mark.timeout(60)
def test_cli_falls_back_to_the_dot_program(capsysbinary, monkeypatch, tmp_path):
    folder = _fake_dot(tmp_path, 'echo "format $1"; cat\n')
    _no_renderer(monkeypatch, f"{folder}:/usr/bin:/bin")
    status, out, err = run_cli(capsysbinary, "--format", "svg")
    assert status == 0, err
    assert out.decode() == "format -Tsvg\n" + diagram.dot()
    h, future = _refused_then_raced("deliver")
    saved = tmp_path / "future.json"
    saved.write_text(diagram.history_to_json(future.history, policy=h.manager.late_result))
    status, out, err = run_cli(capsysbinary, "--history", str(saved), "--format", "png", "--output", str(tmp_path / "path.png"))
    assert status == 0, err
    assert (tmp_path / "path.png").read_text() == "format -Tpng\n" + diagram.dot("deliver", future.history)


@pytest.mark.timeout(60)
def test_cli_reports_a_failing_dot_program_in_one_line(capsysbinary, monkeypatch, tmp_path):
    folder = _fake_dot(tmp_path, 'cat > /dev/null; echo "Error: syntax error in line 1" >&2; exit 3\n')
    _no_renderer(monkeypatch, f"{folder}:/usr/bin:/bin")
    status, out, err = run_cli(capsysbinary, "--format", "png", "--output", str(tmp_path / "x.png"))
    assert status == 1 and out == b""
    assert err.count("\n") == 1 and "exited 3: Error: syntax error in line 1" in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.timeout(120)
def test_pygraphviz_renders_svg_and_png(capsysbinary, tmp_path):
    pytest.importorskip("pygraphviz", reason="the taskfate[diagrams] extra is not installed")
    status, out, err = run_cli(capsysbinary, "--format", "svg")
    assert status == 0, err
    svg = out.decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    texts = set(re.findall(r"<text[^>]*>([^<]*)</text>", svg))
    assert set(LIFECYCLES["cancel"].states) <= texts
    target = tmp_path / "life.png"
    status, _, err = run_cli(capsysbinary, "--output", str(target))
    assert status == 0, err
    assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.timeout(120)
def test_the_system_dot_program_renders_svg(capsysbinary, monkeypatch):
    program = shutil.which("dot")
    if program is None:
        pytest.skip("no dot program on PATH")
    monkeypatch.setitem(sys.modules, "pygraphviz", None)
    status, out, err = run_cli(capsysbinary, "--format", "svg")
    assert status == 0, err
    assert "<svg" in out.decode() and ">cancel_requested<" in out.decode()


def test_the_command_line_does_not_refresh_docs(capsysbinary):
    with pytest.raises(SystemExit) as exited:
        cli.main(["diagram", "--update-docs"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --update-docs" in capsysbinary.readouterr().err.decode()
