"""Content-addressed reuse (reconciler/reuse.py): which inputs make two jobs the same run, and which
earlier job a plan may take the output of.

A table of job-input variations: those that must not matter (the job's name, output folders, MLflow
places, the lineage block, an evaluation's row ids) keep the reuse key; those that must (a config
body, the seed, the split, the dataset's bytes, the base revision) change it. `reusable` takes only
a succeeded job of the same object with the same key, never one of a dataset whose content is
unknown; a base revision one side does not know (a plan made offline, a job recorded before ftctl
read revisions) does not stop a match, two known and different ones do. `same_run` follows the
recorded job whatever the base revision says.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.lineage import UNKNOWN, LineageRecord, Provenance, of_input
from reconciler.live import Snapshot
from reconciler.reuse import ran_alike, reusable, reuse_key, same_run, with_lineage
from reconciler.runtime import JobObservation, JobState

DATASET = "data/tickets.csv"
MODEL = "models/tiny"


def _input(**train: Any) -> dict[str, Any]:
    return {"contract_version": 1, "kind": "train", "job_name": "ftctl-train-demo-g1-abc-12345678",
            "model": {"type": "project", "name_or_path": MODEL}, "dataset": {"type": "project", "name_or_path": DATASET},
            "outputs": {"adapter_dir": "/jobs/a/adapter"}, "tracking": {"uri": "sqlite:///mlflow.db", "experiment": "x"},
            "train": {"training_arguments": {"num_train_epochs": 3, "learning_rate": 0.001}, "lora_config": {"r": 8},
                      "seed": 42, "train_test_split": 0.9, **train}}


def _evaluation(row_id: str) -> dict[str, Any]:
    return {"contract_version": 1, "kind": "evaluate", "job_name": f"ftctl-eval-{row_id}", "dataset": {"name_or_path": DATASET},
            "evaluate": {"candidates": [{"evaluation_id": row_id, "adapter": "a"}], "generation_config": {"max_new_tokens": 8}}}


def _key(document: dict[str, Any], *, dataset: str = "d1", base: str = "b1") -> str:
    return reuse_key(document, dataset=dataset, base=base)


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(_input())
    target = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize("path, value", [
    (("job_name",), "ftctl-train-demo-g7-abc-87654321"),
    (("outputs", "adapter_dir"), "/elsewhere/adapter"),
    (("tracking", "uri"), "http://mlflow:5000"),
    (("lineage",), {"commit": "other", "ftctl_version": "9.9"}),
])
def test_what_follows_from_the_name_or_machine_keeps_the_key(path: tuple[str, ...], value: Any) -> None:
    assert _key(_with(path, value)) == _key(_input())


@pytest.mark.parametrize("path, value", [
    (("train", "training_arguments"), {"num_train_epochs": 5, "learning_rate": 0.001}),
    (("train", "lora_config"), {"r": 16}),
    (("train", "seed"), 7),
    (("train", "train_test_split"), 0.8),
    (("model", "name_or_path"), "models/other"),
])
def test_what_the_job_computes_from_changes_the_key(path: tuple[str, ...], value: Any) -> None:
    assert _key(_with(path, value)) != _key(_input())


def test_the_datas_bytes_and_the_base_revision_change_the_key() -> None:
    assert _key(_input(), dataset="d2") != _key(_input())
    assert _key(_input(), base="b2") != _key(_input())


def test_an_evaluations_row_ids_do_not_change_its_key() -> None:
    assert _key(_evaluation("row-1")) == _key(_evaluation("row-2"))


def test_with_lineage_records_the_provenance_and_keeps_the_job_name() -> None:
    provenance = Provenance(commit="c0ffee", dataset_digests={DATASET: "d1"}, model_revisions={MODEL: "files:b1"})
    document = with_lineage(_input(), provenance)
    assert document is not None and document["job_name"] == _input()["job_name"]
    block = of_input(document)
    assert (block["commit"], block["dataset_digest"], block["base_revision"]) == ("c0ffee", "d1", "files:b1")
    assert set(block["config_digests"]) == {"training_arguments", "lora_config"}
    assert block["reuse_key"] == _key(_input(), dataset="d1", base="files:b1")
    unknown = of_input(with_lineage(_input(), Provenance()) or {})
    assert (unknown["dataset_digest"], unknown["base_revision"]) == (UNKNOWN, UNKNOWN)


def _planned(dataset: str = "d1", base: str = "b1", **train: Any) -> dict[str, Any]:
    return with_lineage(_input(**train), Provenance(dataset_digests={DATASET: dataset} if dataset != UNKNOWN else {},
                                                    model_revisions={MODEL: base} if base != UNKNOWN else {})) or {}


def _record(document: dict[str, Any], *, job: str = "job-1", name: str = "demo", generation: int = 1, at: float = 1.0,
            reused_from: str = "") -> LineageRecord:
    block = of_input(document)
    return LineageRecord("FineTuningJob", name, generation, job, "train", "fine_tuning_jobs/r1", block["input_digest"],
                         block["reuse_key"], "c0ffee", block["dataset_digest"], block["base_revision"], {}, "0.1.0", {}, at,
                         reused_from)


def _reusable(document: dict[str, Any], records: list[LineageRecord], state: JobState = JobState.SUCCEEDED) -> LineageRecord | None:
    observations = {r.job_name: JobObservation(r.job_name, state) for r in records}
    return reusable("FineTuningJob", "demo", document, snapshot=Snapshot(lineage=tuple(records)), observations=observations)


def test_a_succeeded_job_of_the_same_inputs_is_reused_the_latest_first() -> None:
    old, new = _record(_planned(), job="job-1", at=1.0), _record(_planned(), job="job-2", generation=3, at=3.0)
    assert _reusable(_planned(), [old, new]) == new


@pytest.mark.parametrize("why, records, state", [
    ("it failed", [_record(_planned())], JobState.FAILED),
    ("it still runs", [_record(_planned())], JobState.RUNNING),
    ("other inputs", [_record(_planned(seed=1))], JobState.SUCCEEDED),
    ("another object", [_record(_planned(), name="other")], JobState.SUCCEEDED),
    ("a reuse is no run of its own", [_record(_planned(), reused_from="job-0")], JobState.SUCCEEDED),
    ("other bytes", [_record(_planned(dataset="d2"))], JobState.SUCCEEDED),
    ("another known base revision", [_record(_planned(base="b2"))], JobState.SUCCEEDED),
])
def test_what_is_not_reused(why: str, records: list[LineageRecord], state: JobState) -> None:
    assert _reusable(_planned(), records, state) is None, why


def test_a_dataset_of_unknown_content_is_never_reused() -> None:
    document = _planned(dataset=UNKNOWN)
    assert _reusable(document, [_record(document)]) is None


@pytest.mark.parametrize("planned_base, recorded_base", [(UNKNOWN, "b1"), ("b1", UNKNOWN)])
def test_a_base_revision_one_side_does_not_know_still_matches(planned_base: str, recorded_base: str) -> None:
    """An offline plan (no Hub revision) reuses an online run; a run recorded before ftctl read revisions is reused."""
    recorded = _record(_planned(base=recorded_base))
    assert _reusable(_planned(base=planned_base), [recorded]) == recorded
    assert ran_alike(recorded, _planned(base=planned_base))


def test_following_a_reused_job_ignores_the_base_revision() -> None:
    """A row of a generation that reused job-1 keeps following it when the Hub's main moved."""
    snapshot = Snapshot(lineage=(_record(_planned(base="b1")),))
    assert same_run("job-1", "job-9", _planned(base="b2"), snapshot)
    assert not same_run("job-1", "job-9", _planned(base="b2", seed=1), snapshot)  # other inputs: not the same run
    assert not same_run("job-1", "job-1", _planned(), snapshot)  # its own job is no earlier run
