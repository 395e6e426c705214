"""The pure selection: label selectors, the dependency closure of targets, and the plan's record of
what selected it (round trip and digest)."""

from __future__ import annotations

import pytest

from reconciler.addresses import Address
from reconciler.graph import Graph
from reconciler.plan import Plan, Selection
from reconciler.selection import LabelSelector, SelectionError, closure, known


@pytest.mark.parametrize(("text", "labels", "matches"), [
    ("team=support", {"team": "support"}, True),
    ("team=support", {"team": "sales"}, False),
    ("team!=support", {}, True),
    ("team!=support", {"team": "support"}, False),
    ("team", {"team": ""}, True),
    ("team", {}, False),
])
def test_label_selectors(text: str, labels: dict[str, str], matches: bool) -> None:
    assert LabelSelector.parse(text).matches(labels) is matches
    assert str(LabelSelector.parse(text)) == text


@pytest.mark.parametrize("text", ["=x", "team=", "a b=c", "!=x"])
def test_a_malformed_selector_is_one_line_naming_it(text: str) -> None:
    with pytest.raises(SelectionError, match=f"-l {text}: not a label selector"):
        LabelSelector.parse(text)


def test_a_target_brings_what_it_references_transitively_and_nothing_else() -> None:
    job, data, model, prompt, other = ("FineTuningJob", "j"), ("Dataset", "d"), ("Model", "m"), ("Prompt", "p"), ("Dataset", "x")
    graph = Graph((job, data, model, prompt, other), {job: (model, prompt), prompt: (data,)})
    assert closure(graph, [job]) == {job, model, prompt, data}
    with pytest.raises(SelectionError, match="did you mean Dataset/d"):
        known("--target", [Address("Dataset", "dd")], graph.nodes)


def test_the_selection_is_data_in_the_plan_file_and_under_its_digest() -> None:
    whole = Plan(store="sqlite:///s.db", serial=1, read={})
    part = Plan(store="sqlite:///s.db", serial=1, read={}, partial=Selection(targets=("Model/m",)), replace=("Model/m",))
    assert Plan.from_json(part.to_json()) == part and Plan.from_json(whole.to_json()) == whole
    assert part.digest() != whole.digest()
    assert "partial" not in whole.to_dict()  # a whole-project plan's file is as before
