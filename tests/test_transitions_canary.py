"""What taskfate.fsm.diagram takes from ``transitions``, pinned on a tiny machine.

The Mermaid diagrams are ``transitions``' own output, repaired in three
places by ``fsm/diagram.py`` (its module docstring says which and why).
pyproject.toml sets no upper bound on ``transitions``; this test is the guard
instead. It draws a two-state machine the way ``fsm/diagram.py`` does and
checks each shape of the raw text that the repair and the styling read. A
release that changes one of them fails here, naming the shape, instead of
surfacing as a diff of whole diagrams in the docs tests (or, for a user, as
a ``DeclarationError`` from ``taskfate diagram``).
"""

from __future__ import annotations

import re

import pytest
from transitions.extensions.diagrams import GraphMachine
from transitions.extensions.states import Tags, add_state_features

TITLE = "a canary"


@add_state_features(Tags)
class _Graph(GraphMachine):
    style_attributes = {
        "node": {"plain": {"fill": "#ffffff"}, "end": {"fill": "#e8e8e8", "stroke-width": "3px"}},
        "edge": {},
        "graph": {},
    }


class _Model:
    pass


@pytest.fixture(scope="module")
def drawn() -> tuple[_Graph, list[str]]:
    model = _Model()
    machine = _Graph(
        model=model,
        graph_engine="mermaid",
        title=TITLE,
        states=[{"name": "a", "tags": ["start"]}, {"name": "b", "final": True}],
        initial="a",
        auto_transitions=False,
        transitions=[
            {"trigger": "go", "source": "a", "dest": "b", "label": "go (Message X)"},
            {"trigger": "jump", "source": "a", "dest": "b", "label": "jump"},
            {"trigger": "stay", "source": "b", "dest": None, "label": "stay"},
        ],
    )
    # fsm/diagram.py reaches the model's graph through this mapping.
    graph = machine.model_graphs[id(model)]
    graph.reset_styling()
    graph.set_node_style("a", "plain")
    graph.set_node_style("b", "end")
    return machine, model.get_graph().source.split("\n")


def test_front_matter_is_three_lines_with_the_bare_title(drawn):
    _, lines = drawn
    assert lines[:4] == ["---", TITLE, "---", "stateDiagram-v2"], "front matter changed: review _repair_mermaid's title repair"


def test_styles_are_classdefs_named_after_style_attributes(drawn):
    _, lines = drawn
    classdefs = [line.strip() for line in lines if line.strip().startswith("classDef ")]
    assert classdefs == ["classDef s_plain fill:#ffffff", "classDef s_end fill:#e8e8e8,stroke-width:3px"], classdefs


def test_set_node_style_writes_a_capitalised_class_line(drawn):
    _, lines = drawn
    stripped = [line.strip() for line in lines]
    assert "Class a s_plain" in stripped and "Class b s_end" in stripped, "the class keyword changed: review _repair_mermaid"


def test_rules_between_two_states_share_one_edge_with_labels_joined(drawn):
    _, lines = drawn
    edges = [line.strip() for line in lines if " --> " in line and not line.strip().startswith("[*]")]
    assert edges[0] == "a --> b: go (Message X) | jump", "edge labels changed: review _repair_mermaid's line breaks"


def test_an_internal_rule_is_a_self_edge_marked_internal(drawn):
    _, lines = drawn
    assert "b --> b: stay [internal]" in [line.strip() for line in lines]


def test_every_line_is_a_shape_the_repair_knows(drawn):
    _, lines = drawn
    known = re.compile(
        r"^(---|stateDiagram-v2|direction LR|classDef s_\w+ .*|state \"\w+\" as \w+|Class \w+ s_\w+|\w+ --> \w+: .*|\[\*\] --> \w+|)$"
    )
    unknown = [line for line in lines[4:] if not known.match(line.strip())]
    assert not unknown, f"transitions writes lines fsm/diagram.py has not seen: {unknown}"


def test_the_machine_keeps_its_rules_for_compile_machine(drawn):
    machine, _ = drawn
    assert set(machine.events) == {"go", "jump", "stay"}
    assert machine.events["stay"].transitions["b"][0].dest is None
    assert machine.get_state("a").tags == ["start"] and machine.get_state("b").final
