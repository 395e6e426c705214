"""Base vs adapter: an evaluation's jobs paired by the Studio rows they evaluated, and the lines users
read in `ftctl status` (text and JSON), after an apply and in the markdown plan."""

from __future__ import annotations

import json

from reconciler.evaluations import compare
from reconciler.jobinput import job_prefix
from reconciler.live import ManagedRecord, Snapshot
from reconciler.plan import Comparison, Plan
from reconciler.runtime import JobObservation, JobState
from reconciler.views import render_plan
from reconciler.views.evaluations import change_text, evaluation_lines
from reconciler.views.status import render_status

STORE = "cb9fdcf3-6c06-1ba6-7236-2cd3ed655da5"
NAME = "demo-base-vs-lora"
FOUND = [Comparison(NAME, "exact_match", "tiny-llama (base)", 0.0, "demo-ticketing-lora", 0.96875),
         Comparison(NAME, "rougeL", "tiny-llama (base)", 0.04, "demo-ticketing-lora", 0.9)]


def snapshot() -> Snapshot:
    rows = {"models": {"m1": {"id": "m1", "name": "tiny-llama"}},
            "adapters": {"a1": {"id": "a1", "name": "demo-ticketing-lora"}},
            "evaluation_jobs": {"e0": {"id": "e0", "base_model_id": "m1", "adapter_id": None},
                                "e1": {"id": "e1", "base_model_id": "m1", "adapter_id": "a1"}}}
    record = ManagedRecord("EvaluationJob", NAME, "evaluation_jobs", "e0", ("e0", "e1"), "s", "r")
    return Snapshot(rows=rows, managed={("EvaluationJob", NAME): record}, store_id=STORE)


def observations(*jobs: tuple[int, dict[str, float]]) -> dict[str, JobObservation]:
    names = [(job_prefix("EvaluationJob", NAME, 1, index, store_id=STORE) + "0123abcd", metrics) for index, metrics in jobs]
    return {name: JobObservation(name, JobState.SUCCEEDED, metrics=metrics) for name, metrics in names}


def test_the_adapter_is_shown_beside_the_base_whatever_order_the_jobs_come_in() -> None:
    seen = observations((1, {"exact_match": 0.96875, "rougeL": 0.9, "latency_s": 0.01}), (0, {"exact_match": 0.0, "rougeL": 0.04}))
    assert compare(snapshot(), seen, names={NAME}) == FOUND
    assert [change_text(c) for c in FOUND] == ["exact_match 0.00 → 0.97 (+0.97)", "rougeL 0.04 → 0.90 (+0.86)"]


def test_a_loss_reads_as_negative() -> None:
    worse = Comparison("e", "exact_match", "m (base)", 0.5, "a", 0.25)
    assert change_text(worse) == "exact_match 0.50 → 0.25 (-0.25)"


def test_nothing_to_compare_until_both_sides_reported_or_when_not_planned() -> None:
    assert compare(snapshot(), observations((1, {"exact_match": 1.0}), (0, {})), names={NAME}) == []
    assert compare(snapshot(), {}, names={NAME}) == []
    both = observations((1, {"exact_match": 1.0}), (0, {"exact_match": 0.0}))
    assert compare(snapshot(), both, names={"another-evaluation"}) == []


def test_one_line_per_adapter_or_one_metric_a_line_when_narrow() -> None:
    line = f"EvaluationJob/{NAME}: tiny-llama (base) → demo-ticketing-lora: exact_match 0.00 → 0.97 (+0.97), rougeL 0.04 → 0.90 (+0.86)"
    assert evaluation_lines(FOUND, width=len(line)) == [line]
    assert evaluation_lines(FOUND, width=len(line) - 1) == [f"EvaluationJob/{NAME}: tiny-llama (base) → demo-ticketing-lora:",
                                                            "  exact_match 0.00 → 0.97 (+0.97)", "  rougeL 0.04 → 0.90 (+0.86)"]


def test_status_shows_the_comparisons_under_its_tables_within_100_columns() -> None:
    text = render_status("table", [], [], evaluations=FOUND, width=100)
    assert "Evaluations (base → adapter):" in text
    assert "  exact_match 0.00 → 0.97 (+0.97)" in text.splitlines()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "Evaluations" not in render_status("table", [], [], width=100)


def test_status_json_carries_the_comparisons_as_numbers() -> None:
    data = json.loads(render_status("json", [], [], evaluations=FOUND))
    assert data["evaluations"][0] == {"evaluation": NAME, "metric": "exact_match", "base_label": "tiny-llama (base)", "base": 0.0,
                                      "adapter_label": "demo-ticketing-lora", "adapter": 0.96875, "delta": 0.96875}
    assert json.loads(render_status("json", [], []))["evaluations"] == []


def test_the_markdown_plan_has_an_evaluations_section_only_with_results() -> None:
    plan = Plan(store="/p/.app/state.db", serial=3, read={}, evaluations=tuple(FOUND))
    text = render_plan("markdown", plan)
    assert (f"- **EvaluationJob/{NAME}**: tiny-llama (base) → demo-ticketing-lora: "
            "`exact_match 0.00 → 0.97 (+0.97)`, `rougeL 0.04 → 0.90 (+0.86)`") in text
    assert "Evaluations" not in render_plan("markdown", Plan(store="/p/.app/state.db", serial=3, read={}))


def test_the_comparisons_travel_in_the_plan_file_and_only_when_there_are_some() -> None:
    plan = Plan(store="s", serial=1, read={}, evaluations=tuple(FOUND))
    assert Plan.from_json(plan.to_json()) == plan
    assert "evaluations" not in Plan(store="s", serial=1, read={}).to_json()
