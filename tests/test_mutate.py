"""The mutation kit: every single-point mutant of a declaration, explored.

It measures the explorer's invariants; these tests measure the kit: that a
mutant differs from its original at exactly one point, that a mutant the
invariants must notice is caught, that an equivalent one is recognised and
not counted as a survivor, and that a survivor is reported by name.
"""

from __future__ import annotations

import copy

import pulse_lifecycle as pulse
import pytest

from taskfate.fsm import declare, get_lifecycle
from taskfate.fsm.mutate import equivalence, mutants, mutation_report, one_rule_per_source


def _split_rules(declaration):
    return [(rule["source"], rule["trigger"], rule.get("dest"), tuple(rule.get("before", ())), tuple(rule.get("after", ()))) for rule in declaration["transitions"]]


@pytest.mark.parametrize("lifecycle", [get_lifecycle("cancel"), pulse.LIFECYCLE], ids=lambda life: life.name)
def test_every_mutant_changes_exactly_one_point(lifecycle):
    derived = list(mutants(lifecycle))
    assert len({m.name for m in derived}) == len(derived)
    assert {m.kind for m in derived} == {"dest", "drop", "callback", "move", "state_callback", "tag"}
    original = one_rule_per_source(lifecycle.declaration)
    for mutant in derived:
        before, after = _split_rules(original), _split_rules(mutant.declaration)
        states_changed = sum(a != b for a, b in zip(original["states"], mutant.declaration["states"]))
        if mutant.kind == "drop":
            assert len(after) == len(before) - 1 and states_changed == 0, mutant.name
            assert sum(rule not in after for rule in before) == 1, mutant.name
        elif mutant.kind in ("state_callback", "tag"):
            assert after == before and states_changed == 1, mutant.name
        else:
            assert states_changed == 0 and sum(a != b for a, b in zip(before, after)) == 1, mutant.name


def test_a_mutant_dest_the_invariants_must_notice_is_caught_and_a_logging_move_is_not_counted():
    report = mutation_report(get_lifecycle("cancel"), depth=8)
    # A failure that ends the future done breaks "the result matches the state".
    assert report.caught["pending --result_failed--> failed becomes --> done"] == "result_matches_state"
    # One that would leave a state unreachable is refused before it is explored.
    assert "pending --result_success--> done becomes --> failed" in report.refused
    # Moving discard_result across a rule that changes no state runs the same calls in the same order.
    assert "done --result_success--> callback discard_result moved from after to before" in report.equivalent
    assert report.derived == len(list(mutants(get_lifecycle("cancel"))))
    assert set(report.survivors).isdisjoint(report.caught) and set(report.survivors).isdisjoint(report.equivalent)
    assert "SURVIVED" in report.summary() if report.survivors else report.ok


def test_an_undeclarable_mutant_counts_as_refused():
    report = mutation_report(pulse.LIFECYCLE, depth=6, futures=1)
    # Dropping a live state's close rule leaves a future close() cannot end: declare refuses it.
    assert "queued --close--> dropped" in report.refused


def test_equivalence_needs_the_same_calls_in_the_same_order():
    original = get_lifecycle("cancel")
    declared = copy.deepcopy(dict(original.declaration))
    for rule in declared["transitions"]:
        if rule["trigger"] == "cancel":
            rule["after"] = list(reversed(rule["after"]))
    reordered = declare(declared, messages=original.messages, name="reordered")
    assert equivalence(reordered, original) is None
    assert equivalence(original, original) == "the executed table is the same"


def test_a_lifecycle_that_already_breaks_a_promise_is_refused():
    declared = copy.deepcopy(dict(pulse.DECLARATION))
    declared["transitions"] = [rule for rule in declared["transitions"] if rule["trigger"] != "confirm_timeout"]
    broken = declare(declared, messages=pulse.classify, name="no-timeout")
    with pytest.raises(ValueError, match="breaks a promise already"):
        mutation_report(broken, depth=6)


def test_the_command_line_reports_survivors_with_status_1_and_bad_input_with_2(capsys):
    from taskfate.client.cli import main

    # Two steps are too few to reach a sibling's group cancel: mutants survive.
    assert main(["mutants", "--declaration", "pulse_lifecycle:LIFECYCLE", "--depth", "2"]) == 1
    out = capsys.readouterr().out
    assert "lifecycle 'pulse'" in out and "SURVIVED: running --group_cancel--> dropped" in out and "refused by declare" in out
    assert main(["mutants", "--policy", "deliver"]) == 0
    out = capsys.readouterr().out
    assert "lifecycle 'deliver'" in out and "survived: 0" in out and "explored with 1 and 2 future(s)" in out
    assert main(["mutants", "--declaration", "no_such_module:X"]) == 2
    assert "taskfate mutants:" in capsys.readouterr().err
