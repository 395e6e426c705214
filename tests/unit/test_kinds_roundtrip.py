"""Per kind: row → manifest → row and manifest → row → manifest are identities over every column.

Rows are generated in the Studio's value formats (`json.dumps` snapshots and features, YAML
axolotl bodies, '' for unset adapter strings, NULL elsewhere, paths relative to the project root,
0/1 flags), read back into a manifest by the kind's binding (`kinds.import_spec`, what `ftctl
import` writes), validated by the manifest models, and rendered again (`desired.render`, what the
planner writes). Every column the manifest carries comes back byte for byte.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.desired import PlanFacts, Scope, render
from reconciler.diagnostics import Location
from reconciler.kinds import BY_TABLE, ImportContext, import_spec
from reconciler.live import Snapshot
from reconciler.manifests.loader import Manifest
from reconciler.models import MODELS
from reconciler.records import Row, config_text

ROOT = "/project"
OUT = "/project/manifests"
NAMED = {"id-model": ("Model", "base"), "id-dataset": ("Dataset", "data"), "id-prompt": ("Prompt", "prompt"),
         "id-adapter": ("Adapter", "lora"), "id-job": ("FineTuningJob", "train"), "id-config": ("Config", "axo")}
IDS = {v: k for k, v in NAMED.items()}

words = st.text(alphabet="abcxyz -_:{}", min_size=1, max_size=12)
maybe_text = st.one_of(st.none(), st.just(""), words)
paths = st.one_of(st.sampled_from(["data/x.csv", "data/adapters/", "data/a b/c", "/abs/models/m", "out"]))
refs = st.sampled_from([*NAMED, "unmanaged-1", "unmanaged-2"])
ints = st.integers(min_value=0, max_value=64)
floats = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False)
json_bodies = st.dictionaries(st.sampled_from(["r", "alpha", "task", "steps"]), st.one_of(ints, words, st.booleans()), max_size=3)
snapshots = st.one_of(st.none(), json_bodies.map(json.dumps))


def _ref(kind: str, empty: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.just(empty), st.sampled_from([IDS[k] for k in IDS if k[0] == kind] + ["unmanaged-1"]))


ROWS: dict[str, st.SearchStrategy[Row]] = {
    "datasets": st.fixed_dictionaries({
        "type": st.sampled_from(["huggingface", "project_csv", "project"]), "name": words, "description": maybe_text,
        "huggingface_name": maybe_text, "location": st.one_of(st.none(), paths),
        "features": st.one_of(st.none(), st.lists(words, max_size=3).map(json.dumps)),
    }),
    "models": st.fixed_dictionaries({
        "type": st.sampled_from(["huggingface", "project", "model_registry"]),
        "framework": st.sampled_from([None, "pytorch"]), "name": words, "description": maybe_text,
        "huggingface_model_name": maybe_text, "location": st.one_of(st.none(), paths),
        "cml_registered_model_id": maybe_text, "mlflow_experiment_id": maybe_text, "mlflow_run_id": maybe_text,
    }),
    "adapters": st.fixed_dictionaries({
        "type": st.sampled_from(["project", "huggingface", "model_registry"]), "name": words,
        "description": maybe_text, "huggingface_name": maybe_text, "model_id": _ref("Model", ""),
        "location": st.one_of(st.just(""), paths), "fine_tuning_job_id": _ref("FineTuningJob", ""),
        "prompt_id": _ref("Prompt", ""), "cml_registered_model_id": maybe_text, "mlflow_experiment_id": maybe_text,
        "mlflow_run_id": maybe_text,
    }),
    "prompts": st.fixed_dictionaries({
        "type": st.sampled_from([None, "in_place"]), "name": words, "description": maybe_text,
        "dataset_id": _ref("Dataset", None), "prompt_template": maybe_text, "input_template": maybe_text,
        "completion_template": maybe_text,
    }),
    "configs": st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["lora_config", "generation_config"]), "config": json_bodies.map(json.dumps)}),
        st.fixed_dictionaries({"type": st.just("axolotl"), "config": json_bodies.filter(bool).map(lambda b: config_text("axolotl", b))}),
    ).flatmap(lambda base: st.fixed_dictionaries({
        **{k: st.just(v) for k, v in base.items()}, "description": maybe_text, "model_family": maybe_text,
        "is_default": st.sampled_from([0, 1, None]),
    })),
    "fine_tuning_jobs": st.fixed_dictionaries({
        "base_model_id": _ref("Model", None), "dataset_id": _ref("Dataset", None), "prompt_id": _ref("Prompt", ""),
        "num_workers": ints, "cml_job_id": maybe_text, "adapter_id": _ref("Adapter", None), "num_cpu": ints,
        "num_gpu": ints, "num_memory": ints, "num_epochs": st.one_of(st.none(), ints),
        "learning_rate": st.one_of(st.none(), floats), "out_dir": st.one_of(st.just(""), paths),
        "training_arguments_config": snapshots, "model_bnb_config": snapshots, "adapter_bnb_config": snapshots,
        "lora_config": snapshots, "dataset_fraction": floats, "train_test_split": floats,
        "user_script": st.one_of(st.just(""), paths), "user_config_id": _ref("Config", ""),
        "framework_type": st.sampled_from(["legacy", "axolotl"]), "axolotl_config_id": _ref("Config", ""),
        "gpu_label_id": st.one_of(st.none(), ints), "adapter_name": words,
    }),
}
EVALUATION_SHARED = st.fixed_dictionaries({
    "type": st.just("mlflow"), "parent_job_id": st.just("parent-1"), "dataset_id": _ref("Dataset", None),
    "prompt_id": _ref("Prompt", None), "num_workers": st.sampled_from([None, 1]), "num_cpu": st.one_of(st.none(), ints),
    "num_gpu": st.one_of(st.none(), ints), "num_memory": st.one_of(st.none(), ints), "model_bnb_config": snapshots,
    "adapter_bnb_config": snapshots, "generation_config": snapshots,
})
EVALUATION_ITEM = st.fixed_dictionaries({
    "cml_job_id": maybe_text, "base_model_id": _ref("Model", ""), "adapter_id": _ref("Adapter", ""),
    "evaluation_dir": st.one_of(st.none(), st.just(""), paths),
})


def _manifest(kind: str, name: str, spec: dict[str, Any], store_id: str) -> Manifest:
    doc = {"apiVersion": "ftctl/v1", "kind": kind, "metadata": {"name": name, "annotations": {"ftctl.io/store-id": store_id}},
           "spec": yaml.safe_load(yaml.safe_dump(spec, sort_keys=False))}  # as `ftctl import` writes it, read back
    return Manifest(MODELS[kind].model_validate(doc), Location(f"{OUT}/x.yaml"), OUT)


def _render(manifest: Manifest, own_id: str) -> list[Row]:
    scope = Scope(dict(IDS), Snapshot(), PlanFacts(root=ROOT), configs={}, models={}, producers={})
    return [dict(r.values) for r in render(manifest, scope, own_id=own_id).rows]


def _round_trip(table: str, rows: list[Row], *, name: str) -> tuple[dict[str, Any], list[Row]]:
    binding = BY_TABLE[table]
    spec = import_spec(binding, rows, ImportContext(NAMED, root=ROOT, out_dir=OUT, name=name), history=True)
    return spec, _render(_manifest(binding.kind, name, spec, rows[0]["id"]), own_id=rows[0].get("parent_job_id") or rows[0]["id"])


def _assert_identity(table: str, rows: list[Row], *, name: str) -> None:
    spec, rendered = _round_trip(table, rows, name=name)
    assert len(rendered) == len(rows)
    for row, again in zip(rows, rendered, strict=True):
        for column, value in again.items():
            assert value == row[column] and type(value) is type(row[column]), (column, row[column], value, spec)
        written = {c.name for c in BY_TABLE[table].columns if c.codec is not None or c.derived in ("name", "owner")}
        left_to_store = {c.name for c in BY_TABLE[table].columns  # NULL, left out, so a new row has NULL too
                         if (c.fallback is not None or c.history or c.when_given) and row[c.name] is None}
        assert written - set(again) <= left_to_store
    spec_again, _ = _round_trip(table, [{**r, "id": row["id"]} for r, row in zip(rendered, rows, strict=True)], name=name)
    assert spec_again == spec  # manifest -> row -> manifest


def _name_of(table: str, row: Row) -> str:
    column = BY_TABLE[table].name_column
    return str(row[column]) if column and BY_TABLE[table].column(column).derived == "name" else "object"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=st.sampled_from(sorted(ROWS)), data=st.data())
def test_row_manifest_row_is_identity(table: str, data: st.DataObject) -> None:
    row = {"id": "row-1", **data.draw(ROWS[table])}
    if table == "fine_tuning_jobs":
        for column in ("training_arguments_config_id", "model_bnb_config_id", "adapter_bnb_config_id", "lora_config_id"):
            row[column] = None
    _assert_identity(table, [row], name=_name_of(table, row))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shared=EVALUATION_SHARED, items=st.lists(EVALUATION_ITEM, min_size=1, max_size=3, unique_by=lambda i: (i["base_model_id"], i["adapter_id"])))
def test_evaluation_fan_out_round_trips(shared: Row, items: list[Row]) -> None:
    rows = [{"id": f"row-{i}", **shared, **item, "model_bnb_config_id": None, "adapter_bnb_config_id": None,
             "generation_config_id": None} for i, item in enumerate(items)]
    _assert_identity("evaluation_jobs", rows, name="evaluation")


def test_imported_history_keeps_each_combination_id() -> None:
    row = {"id": "eval-a", "type": "mlflow", "parent_job_id": "parent-1", "base_model_id": "id-model", "adapter_id": "",
           "cml_job_id": "cml-1", "evaluation_dir": "data/eval/eval-a", "num_workers": 1, "dataset_id": "id-dataset",
           "prompt_id": "id-prompt"}
    spec = import_spec(BY_TABLE["evaluation_jobs"], [row], ImportContext(NAMED, root=ROOT, out_dir=OUT), history=True)
    # evaluation_dir follows out_dir's rule: relative to the manifests' folder, as the project's paths are
    assert spec["combinations"] == [{"cml_job_id": "cml-1", "model": "base", "evaluation_dir": "../data/eval/eval-a", "store_id": "eval-a"}]
    managed = import_spec(BY_TABLE["evaluation_jobs"], [row], ImportContext(NAMED, root=ROOT, out_dir=OUT), history=False)
    assert managed["combinations"] == [{"model": "base"}]  # a run of ftctl's own is not pinned in its manifest


def test_config_description_is_null_unless_given() -> None:
    manifest = _manifest("Config", "alpaca", {"type": "lora_config", "config": {"r": 8}}, "c-1")
    [row] = _render(manifest, "c-1")
    assert row["description"] is None and row["is_default"] == 0 and row["config"] == '{"r": 8}'
