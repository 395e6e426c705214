"""Base vs adapter: an evaluation's jobs paired by the Studio rows they evaluated, and the line users read."""

from __future__ import annotations

from reconciler.inspection import JobStatus
from reconciler.jobinput import job_prefix
from reconciler.live import ManagedRecord, Snapshot
from reconciler.views.evaluations import Comparison, change_text, compare

STORE = "cb9fdcf3-6c06-1ba6-7236-2cd3ed655da5"


def snapshot() -> Snapshot:
    rows = {"models": {"m1": {"id": "m1", "name": "tiny-llama"}},
            "adapters": {"a1": {"id": "a1", "name": "demo-ticketing-lora"}},
            "evaluation_jobs": {"e0": {"id": "e0", "model_id": "m1", "adapter_id": None},
                                "e1": {"id": "e1", "model_id": "m1", "adapter_id": "a1"}}}
    record = ManagedRecord("EvaluationJob", "demo-base-vs-lora", "evaluation_jobs", "e0", ("e0", "e1"), "s", "r")
    return Snapshot(rows=rows, managed={("EvaluationJob", "demo-base-vs-lora"): record}, store_id=STORE)


def job(index: int, metrics: dict[str, float]) -> JobStatus:
    name = job_prefix("EvaluationJob", "demo-base-vs-lora", 1, index, store_id=STORE) + "0123abcd"
    return JobStatus("EvaluationJob", "demo-base-vs-lora", name, "local", "succeeded", "", "", {}, 1, metrics)


def test_the_adapter_is_shown_beside_the_base_whatever_order_the_jobs_come_in() -> None:
    jobs = [job(1, {"exact_match": 0.875, "rougeL": 0.9, "latency_s": 0.01}), job(0, {"exact_match": 0.0, "rougeL": 0.04})]
    found = compare(snapshot(), jobs)
    assert found == [Comparison("demo-base-vs-lora", "exact_match", "tiny-llama (base)", 0.0, "demo-ticketing-lora", 0.875),
                     Comparison("demo-base-vs-lora", "rougeL", "tiny-llama (base)", 0.04, "demo-ticketing-lora", 0.9)]
    assert [change_text(c) for c in found] == ["exact_match 0.00 → 0.88 (+0.88)", "rougeL 0.04 → 0.90 (+0.86)"]


def test_a_loss_reads_as_negative() -> None:
    worse = Comparison("e", "exact_match", "m (base)", 0.5, "a", 0.25)
    assert change_text(worse) == "exact_match 0.50 → 0.25 (-0.25)"


def test_nothing_to_compare_until_both_sides_reported() -> None:
    assert compare(snapshot(), [job(1, {"exact_match": 1.0}), job(0, {})]) == []
    assert compare(snapshot(), []) == []
