"""Rows -> manifests (`reconciler.importer`, what `ftctl import` and `export-manifests` write), over a
snapshot built here: one manifest per object in its kind's file, annotated with its row's id; names
from the Studio's names (a clash numbered, configs and evaluations named by their ids); references
by the other manifests' names (managed objects by theirs); an evaluation's rows as one fan-out;
local paths relative to the output folder; secrets named, never written; what a managed job owns
left out. The documents load as manifests. (Row -> manifest -> row per kind: test_kinds_roundtrip.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.importer import FILES, Layout, manifests_for, to_yaml, unnamed_secrets, variables_to_set
from reconciler.live import ManagedRecord, Snapshot
from reconciler.manifests.loader import load_paths
from reconciler.planner import STORE_ID_ANNOTATION
from reconciler.records import Row

LAYOUT = Layout(root="/project", out_dir="/project/specs")
TOKEN = "hf_" + "a" * 30


def _rows() -> dict[str, dict[str, Row]]:
    job = {"id": "j1", "base_model_id": "m1", "dataset_id": "d1", "prompt_id": "p1", "num_workers": 1, "cml_job_id": "cml-1",
           "num_cpu": 2, "num_gpu": 0, "num_memory": 8, "num_epochs": 1, "learning_rate": 0.0002, "out_dir": "data/adapters/",
           "lora_config_id": "c1", "lora_config": '{"r": 8}', "dataset_fraction": 1.0, "train_test_split": 0.9,
           "framework_type": "legacy", "adapter_name": "ticket-adapter"}
    evaluation = {"type": "mlflow", "parent_job_id": "run-1", "base_model_id": "m1", "dataset_id": "d1", "prompt_id": "p1",
                  "num_workers": 1}
    return {
        "models": {"m1": {"id": "m1", "type": "huggingface", "name": "tiny", "huggingface_model_name": "org/tiny"},
                   "m2": {"id": "m2", "type": "huggingface", "name": "tiny", "huggingface_model_name": "org/tiny-2"}},
        "datasets": {"d1": {"id": "d1", "type": "huggingface", "name": "tickets", "huggingface_name": "org/tickets",
                            "features": '["q", "a"]'}},
        "prompts": {"p1": {"id": "p1", "type": "in_place", "name": "qa", "dataset_id": "d1", "prompt_template": "Q: {q} A: {a}",
                           "input_template": "Q: {q} A:", "completion_template": "{a}"}},
        "configs": {"c1a2b3c4-0000": {"id": "c1a2b3c4-0000", "type": "lora_config", "config": '{"r": 8}', "is_default": 1},
                    "c5d6e7f8-0000": {"id": "c5d6e7f8-0000", "type": "training_arguments",
                                      "config": f'{{"hub_token": "{TOKEN}"}}', "is_default": 0}},
        "fine_tuning_jobs": {"j1": job},
        "adapters": {"a1": {"id": "a1", "type": "project", "name": "ticket-adapter", "model_id": "m1",
                            "location": "data/adapters/j1", "fine_tuning_job_id": "j1", "prompt_id": "p1"}},
        "evaluation_jobs": {"e1": {**evaluation, "id": "e1", "cml_job_id": "cml-2", "adapter_id": None, "evaluation_dir": "data/e1"},
                            "e2": {**evaluation, "id": "e2", "cml_job_id": "cml-3", "adapter_id": "a1", "evaluation_dir": "data/e2"}},
    }


def _by_kind(files: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, dict[str, Any]]]:
    return {kind: {d["metadata"]["name"]: d for d in files.get(file, [])} for kind, file in FILES.items()}


def test_each_object_is_one_manifest_in_its_kinds_file_annotated_with_its_row() -> None:
    files = manifests_for(Snapshot(rows=_rows()), layout=LAYOUT, unmanaged_only=False)
    assert set(files) == set(FILES.values())
    ids = {(d["kind"], d["metadata"]["name"]): d["metadata"]["annotations"][STORE_ID_ANNOTATION] for docs in files.values() for d in docs}
    assert ids == {
        ("Model", "tiny"): "m1", ("Model", "tiny-2"): "m2",  # the clash numbered, in id order
        ("Dataset", "tickets"): "d1", ("Prompt", "qa"): "p1",
        ("Config", "lora_config-c1a2b3c4"): "c1a2b3c4-0000", ("Config", "training_arguments-c5d6e7f8"): "c5d6e7f8-0000",
        ("FineTuningJob", "ticket-adapter"): "j1", ("Adapter", "ticket-adapter"): "a1",
        ("EvaluationJob", "evaluation-run-1"): "run-1",  # its rows as one object, named by their parent
    }
    assert {file: {d["kind"] for d in docs} for file, docs in files.items()} == {file: {kind} for kind, file in FILES.items()}


def test_references_name_the_other_manifests_and_runs_keep_their_history() -> None:
    kinds = _by_kind(manifests_for(Snapshot(rows=_rows()), layout=LAYOUT, unmanaged_only=False))
    assert kinds["Prompt"]["qa"]["spec"]["dataset"] == "tickets"
    job = kinds["FineTuningJob"]["ticket-adapter"]["spec"]
    assert (job["base_model"], job["dataset"], job["prompt"], job["cml_job_id"]) == ("tiny", "tickets", "qa", "cml-1")
    assert job["out_dir"] == "../data/adapters/", "a project path, relative to the manifests' folder, trailing '/' kept"
    adapter = kinds["Adapter"]["ticket-adapter"]["spec"]
    assert (adapter["model"], adapter["fine_tuning_job"], adapter["location"]) == ("tiny", "ticket-adapter", "../data/adapters/j1")
    combinations = kinds["EvaluationJob"]["evaluation-run-1"]["spec"]["combinations"]
    assert [(c["store_id"], c["cml_job_id"], c["model"], c["adapter"]) for c in combinations] == [
        ("e1", "cml-2", "tiny", None), ("e2", "cml-3", "tiny", "ticket-adapter")]
    assert kinds["Config"]["lora_config-c1a2b3c4"]["spec"]["is_default"] is True


def test_a_secret_is_named_never_written() -> None:
    files = manifests_for(Snapshot(rows=_rows()), layout=LAYOUT, unmanaged_only=False)
    config = _by_kind(files)["Config"]["training_arguments-c5d6e7f8"]["spec"]["config"]
    assert config == {"hub_token": {"from_env": "CONFIG_TRAINING_ARGUMENTS_C5D6E7F8_HUB_TOKEN"}}
    assert variables_to_set(files) == ["CONFIG_TRAINING_ARGUMENTS_C5D6E7F8_HUB_TOKEN"]
    assert TOKEN not in str(files) and unnamed_secrets(files) == []


def test_a_secret_no_reference_can_replace_is_reported() -> None:
    rows = _rows()
    rows["models"]["m2"]["description"] = f"pulled with {TOKEN}"
    files = manifests_for(Snapshot(rows=rows), layout=LAYOUT, unmanaged_only=False)
    assert unnamed_secrets(files) == ["Model/tiny-2"]


def _managed(rows: dict[str, dict[str, Row]]) -> Snapshot:
    records = {("Model", "base"): ManagedRecord("Model", "base", "models", "m1", ("m1",), "s", "r"),
               ("FineTuningJob", "train"): ManagedRecord("FineTuningJob", "train", "fine_tuning_jobs", "j1", ("j1",), "s", "r")}
    return Snapshot(rows=rows, managed=records)


@pytest.mark.parametrize("unmanaged_only", [True, False])
def test_what_ftctl_manages_is_referenced_by_its_name_and_its_jobs_adapter_left_out(unmanaged_only: bool) -> None:
    """A managed job's registered adapter is the job's history (adoption.owned_rows): never an
    Adapter manifest of its own, which would clash with the job (NM-002) and which prune would delete."""
    kinds = _by_kind(manifests_for(_managed(_rows()), layout=LAYOUT, unmanaged_only=unmanaged_only))
    assert kinds["Adapter"] == {}
    exported_models = {d["metadata"]["annotations"][STORE_ID_ANNOTATION] for d in kinds["Model"].values()}
    assert exported_models == ({"m2"} if unmanaged_only else {"m1", "m2"})
    assert set(kinds["FineTuningJob"]) == (set() if unmanaged_only else {"train"})
    assert kinds["Prompt"]["qa"]["spec"]["dataset"] == "tickets"
    combinations = kinds["EvaluationJob"]["evaluation-run-1"]["spec"]["combinations"]
    assert [c["model"] for c in combinations] == ["base", "base"], "the managed model by its manifest name, exported or not"
    assert [c.get("adapter") for c in combinations] == [None, "ticket-adapter"], "the managed job's adapter by the name it trains"
    assert kinds["FineTuningJob"].get("train", {}).get("spec", {}).get("base_model", "base") == "base"
    if not unmanaged_only:
        assert kinds["Model"]["base"]["metadata"]["annotations"][STORE_ID_ANNOTATION] == "m1"


def test_the_written_documents_load_as_manifests(tmp_path: Path) -> None:
    files = manifests_for(Snapshot(rows=_rows()), layout=Layout(root=str(tmp_path), out_dir=str(tmp_path / "specs")),
                          unmanaged_only=False)
    (tmp_path / "specs").mkdir()
    for name, docs in files.items():
        (tmp_path / "specs" / name).write_text(to_yaml(docs, header="ftctl import"), encoding="utf-8")
    loaded = load_paths([str(tmp_path / "specs")])
    assert [d for d in loaded.diagnostics if d.severity.is_error()] == []
    assert sorted((m.kind, m.name) for m in loaded.manifests) == sorted(
        (d["kind"], d["metadata"]["name"]) for docs in files.values() for d in docs)
